"""The F&O sandbox speaks F&O's OData: Entra tokens for the environment URL, company context and cross-company,
keys with dataAreaId, enum literals, wildcards, paging, creates with number sequences and checks, throttling."""

from __future__ import annotations

from typing import Any, Iterator

import httpx
import pytest

from mlconnector.sandbox.common import Faults, InProcessTransport, SandboxClock
from mlconnector.sandbox.finops import FinOpsSandbox, create_app

TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "c0ffee00-0000-4000-8000-0000000000f0"
SECRET = "fo~sandbox-secret"
RESOURCE = "https://usmf-test.operations.dynamics.com"
ENUM = "Microsoft.Dynamics.DataEntities"


class Env:
    def __init__(self, faults: Faults | None = None) -> None:
        self.clock = SandboxClock()
        app = create_app(clock=self.clock, faults=faults, resource=RESOURCE)
        self.fo: FinOpsSandbox = app.state.finops
        self.fo.register_app(TENANT, CLIENT_ID, SECRET, default_company="dat")
        self.fo.seed_demo("usmf")
        self.transport = InProcessTransport(app)
        self.http = httpx.Client(transport=self.transport, base_url="http://fo.test")
        self._token: str | None = None

    def token(self, **form: str) -> httpx.Response:
        data = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET,
                "scope": f"{RESOURCE}/.default", **form}
        return self.http.post(f"/{TENANT}/oauth2/v2.0/token", data=data)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.call("GET", path, params=params)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._token is None:
            self._token = self.token().json()["access_token"]
        headers = {"Authorization": f"Bearer {self._token}", **kwargs.pop("headers", {})}
        return self.http.request(method, f"/data/{path}", headers=headers, **kwargs)

    def close(self) -> None:
        self.http.close()
        self.transport.close()


@pytest.fixture
def env() -> Iterator[Env]:
    made = Env()
    yield made
    made.close()


def test_tokens_are_for_the_environment_url_and_refusals_carry_aadsts_codes(env: Env):
    ok = env.token()
    assert ok.status_code == 200 and ok.json()["expires_in"] == 3599 and ok.json()["token_type"] == "Bearer"
    wrong_scope = env.token(scope="https://api.businesscentral.dynamics.com/.default")
    assert wrong_scope.status_code == 400 and wrong_scope.json()["error_codes"] == [70011]
    trailing = env.token(scope=f"{RESOURCE}//.default")
    assert trailing.status_code == 400
    bad_secret = env.token(client_secret="nope")
    assert bad_secret.status_code == 401 and "AADSTS7000215" in bad_secret.json()["error_description"]


def test_an_app_not_registered_in_fo_gets_a_token_but_401_from_data(env: Env):
    env.fo.register_app(TENANT, "unregistered", "s", user_id=None)
    token = env.token(client_id="unregistered", client_secret="s").json()["access_token"]
    answer = env.http.get("/data/CustomersV3", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401 and answer.content == b"" and "Bearer" in answer.headers["WWW-Authenticate"]


def test_without_cross_company_only_the_default_company_is_visible(env: Env):
    assert env.get("CustomersV3").json()["value"] == []  # the app user's default company is DAT
    key = "CustomersV3(dataAreaId='usmf',CustomerAccount='US-001')"
    assert env.get(key).status_code == 404
    assert env.get(key, **{"cross-company": "true"}).json()["OrganizationName"] == "Contoso Retail San Diego"
    env.fo.create_company("demf")
    env.fo.seed("demf", "CustomersV3", [{"CustomerAccount": "DE-001", "OrganizationName": "Contoso Europe",
                                          "PartyType": "Organization", "CustomerGroupId": "30",
                                          "SalesCurrencyCode": "EUR"}])
    every = env.get("CustomersV3", **{"cross-company": "true"}).json()["value"]
    assert {c["dataAreaId"] for c in every} == {"usmf", "demf"}
    one = env.get("CustomersV3", **{"cross-company": "true", "$filter": "dataAreaId eq 'usmf'"}).json()["value"]
    assert [c["CustomerAccount"] for c in one] == ["US-001", "US-002", "US-003"]


def test_enums_take_fo_literals_and_strings_take_wildcards(env: Env):
    cc = {"cross-company": "true"}
    held = env.get("CustomersV3", **cc, **{"$filter": f"OnHoldStatus eq {ENUM}.CustVendorBlocked'Invoice'"})
    assert [c["CustomerAccount"] for c in held.json()["value"]] == ["US-003"]
    plain = env.get("CustomersV3", **cc, **{"$filter": "OnHoldStatus eq 'Invoice'"})
    assert plain.status_code == 400 and "incompatible types" in plain.json()["error"]["message"]
    wrong_type = env.get("CustomersV3", **cc, **{"$filter": f"OnHoldStatus eq {ENUM}.NoYes'Yes'"})
    assert wrong_type.status_code == 400
    retail = env.get("CustomersV3", **cc, **{"$filter": "OrganizationName eq '*retail*'"}).json()["value"]
    assert len(retail) == 2
    for refused in ("contains(OrganizationName,'x')", "CustomerAccount in ('US-001')", "Nope eq 'x'"):
        assert env.get("CustomersV3", **cc, **{"$filter": refused}).status_code == 400, refused


def test_paging_follows_maxpagesize_with_an_opaque_next_link_and_top_has_none(env: Env):
    env.fo.seed("usmf", "ReleasedProductsV2", [{"ItemNumber": f"P{i:04d}", "ProductNumber": f"P{i:04d}"}
                                                for i in range(25)])
    params = {"cross-company": "true", "$filter": "dataAreaId eq 'usmf'"}
    seen: list[str] = []
    response = env.call("GET", "ReleasedProductsV2", params=params, headers={"Prefer": "odata.maxpagesize=10"})
    pages = 0
    while True:
        body = response.json()
        pages += 1
        seen += [p["ItemNumber"] for p in body["value"]]
        link = body.get("@odata.nextLink")
        if not link:
            break
        assert "cross-company=true" in link and "$skiptoken=" in link
        response = env.call("GET", link.split("/data/", 1)[1], headers={"Prefer": "odata.maxpagesize=10"})
    assert pages == 3 and len(seen) == len(set(seen)) == 28
    top = env.get("ReleasedProductsV2", **params, **{"$top": "5"}).json()
    assert len(top["value"]) == 5 and "@odata.nextLink" not in top


def test_modified_field_is_an_extension_and_filters_when_added(env: Env):
    params = {"cross-company": "true", "$filter": "ModifiedDateTime ge 2020-01-01T00:00:00Z"}
    assert env.get("VendorsV2", **params).status_code == 400  # not on the standard entity
    env.fo.add_modified_field("VendorsV2")
    env.clock.advance(minutes=30)
    env.fo.modify("usmf", "VendorsV2", "US-104", AddressCity="Dallas")
    rows = env.get("VendorsV2", **{"cross-company": "true",
                                   "$filter": f"ModifiedDateTime ge {env.clock.now().strftime('%Y-%m-%dT%H:%M')}:00Z"
                                   }).json()["value"]
    assert [v["VendorAccountNumber"] for v in rows] == ["US-104"]


def test_creates_number_documents_check_references_and_compute_totals(env: Env):
    header = env.call("POST", "SalesOrderHeadersV2", json={"dataAreaId": "usmf",
                                                            "OrderingCustomerAccountNumber": "US-001"})
    assert header.status_code == 201 and header.json()["SalesOrderStatus"] == "Backorder"
    number = header.json()["SalesOrderNumber"]
    assert header.headers["Location"].endswith(f"SalesOrderHeadersV2(dataAreaId='usmf',SalesOrderNumber='{number}')")
    line = env.call("POST", "SalesOrderLines", json={"dataAreaId": "usmf", "SalesOrderNumber": number,
                                                     "ItemNumber": "D0001", "OrderedSalesQuantity": 3,
                                                     "SalesPrice": 230.0})
    assert line.status_code == 201 and line.json()["LineAmount"] == 690.0
    assert env.fo.get("usmf", "SalesOrderHeadersV2", number)["OrderTotalAmount"] == 690.0
    unknown_item = env.call("POST", "SalesOrderLines", json={"dataAreaId": "usmf", "SalesOrderNumber": number,
                                                             "ItemNumber": "NOPE", "OrderedSalesQuantity": 1})
    inner = unknown_item.json()["error"]["innererror"]
    assert unknown_item.status_code == 400 and "Item NOPE does not exist in company usmf" in inner["message"]
    assert inner["type"].endswith("AxODataWriteException")
    unknown_field = env.call("POST", "SalesOrderHeadersV2", json={"dataAreaId": "usmf", "Customer": "US-001"})
    assert unknown_field.status_code == 400
    computed = env.call("POST", "SalesOrderHeadersV2", json={"dataAreaId": "usmf", "OrderTotalAmount": 1,
                                                             "OrderingCustomerAccountNumber": "US-001"})
    assert computed.status_code == 400


def test_free_text_invoices_key_on_a_recid_and_posted_ones_refuse_changes(env: Env):
    header = env.call("POST", "FreeTextInvoiceHeaders", json={"dataAreaId": "usmf", "CustomerAccount": "US-002",
                                                               "CustomerReference": "zoho-1"}).json()
    identifier = header["InvoiceIdentifier"]
    assert isinstance(identifier, int) and header["IsPosted"] == "No"
    no_account = env.call("POST", "FreeTextInvoiceLines", json={"dataAreaId": "usmf", "ParentRecId": identifier,
                                                                "LineNumber": 1, "Quantity": 1, "UnitPrice": 5})
    assert no_account.status_code == 400 and "MainAccountDisplayValue" in no_account.text
    env.fo.post_invoice("usmf", identifier)
    late = env.call("POST", "FreeTextInvoiceLines", json={"dataAreaId": "usmf", "ParentRecId": identifier,
                                                          "LineNumber": 1, "MainAccountDisplayValue": "401100"})
    assert late.status_code == 400 and "posted" in late.text
    by_key = env.get(f"FreeTextInvoiceHeaders(dataAreaId='usmf',InvoiceIdentifier={identifier})",
                     **{"cross-company": "true"})
    assert by_key.json()["InvoiceId"].startswith("FTI-")
    partial_key = env.get("FreeTextInvoiceLines(dataAreaId='usmf',LineNumber=1)", **{"cross-company": "true"})
    assert partial_key.status_code == 400


def test_patch_answers_204_and_a_stale_if_match_412(env: Env):
    key = "VendorsV2(dataAreaId='usmf',VendorAccountNumber='US-101')"
    etag = env.get(key, **{"cross-company": "true"}).json()["@odata.etag"]
    assert env.call("PATCH", key, json={"AddressCity": "Evanston"}, headers={"If-Match": etag}).status_code == 204
    assert env.call("PATCH", key, json={"AddressCity": "Skokie"}, headers={"If-Match": etag}).status_code == 412
    assert env.fo.get("usmf", "VendorsV2", "US-101")["AddressCity"] == "Evanston"


def test_entity_set_names_are_case_sensitive(env: Env):
    assert env.get("customersv3").status_code == 404
    assert env.get("CustomerV3").status_code == 404
    assert {e["name"] for e in env.get("").json()["value"]} >= {"CustomersV3", "FreeTextInvoiceHeaders"}


def test_the_request_window_answers_429_with_retry_after_and_the_documented_message(env: Env):
    env.fo.rate_limit = 3
    statuses = [env.get("LegalEntities").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = env.get("LegalEntities")
    assert int(refused.headers["Retry-After"]) > 0
    assert "exeeded the limit of 3 over the time window of 300 seconds" in refused.json()["error"]["message"]
    env.clock.advance(seconds=301)
    assert env.get("LegalEntities").status_code == 200


def test_injected_faults_and_early_token_expiry():
    env = Env(Faults.parse("429=1,retry_after=2"))
    try:
        answer = env.get("LegalEntities")
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "2"
    finally:
        env.close()
    env = Env(Faults.parse("token_ttl=60"))
    try:
        assert env.get("LegalEntities").status_code == 200
        env.clock.advance(seconds=61)
        expired = env.get("LegalEntities")
        assert expired.status_code == 401 and "expired" in expired.headers["WWW-Authenticate"]
    finally:
        env.close()
