"""The F&O connector against the F&O sandbox: it reads only across companies for its legal entity, pages by
nextLink, honours Retry-After, books each document once (also when its link was lost or a crash cut it short),
refuses a document whose line does not resolve, and ping says what is wrong."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from mlconnector.config import SystemConfig
from mlconnector.errors import ConfigError, RateLimited
from mlconnector.http import RetryPolicy
from mlconnector.sandbox.common import Faults, InProcessTransport
from mlconnector.sandbox.finops import FinOpsSandbox, create_app
from mlconnector.secrets import SecretStore
from mlconnector.systems import ConnectorContext
from mlconnector.systems.finops import FinOpsConnector, enum_literal, parse_batch_response
from tests.helpers import Recording as SharedRecording

TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "5e1f0000-0000-4000-8000-0000000000f0"
SECRET = "fo~connector-secret-3c2b1a"
ENVIRONMENT = "contoso-test.sandbox.operations.dynamics.com"
SETTINGS = {"environment": ENVIRONMENT, "base_url": "http://fo.test", "tenant": TENANT, "client_id": CLIENT_ID,
            "legal_entity": "USMF", "token_url": f"http://fo.test/{TENANT}/oauth2/v2.0/token"}


class Recording(SharedRecording):
    """The shared recording transport, plus what these tests ask of it."""

    def data_gets(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "GET" and "/data/" in r.url.path
                and r.url.path.rstrip("/") != "/data" and "LegalEntities" not in r.url.path]


class Env:
    def __init__(self, faults: Faults | None = None) -> None:
        app = create_app(faults=faults, resource=f"https://{ENVIRONMENT}")
        self.fo: FinOpsSandbox = app.state.finops
        self.fo.register_app(TENANT, CLIENT_ID, SECRET, default_company="dat")
        self.fo.seed_demo("usmf")
        self.inner = InProcessTransport(app)
        self.transport = Recording(self.inner)
        self.sleeps: list[float] = []
        self.made: list[FinOpsConnector] = []
        SecretStore().set("fo", "client_secret", SECRET)

    def connector(self, **overrides: Any) -> FinOpsConnector:
        made = FinOpsConnector(SystemConfig("fo", "finops", {**SETTINGS, **overrides}),
                               ConnectorContext(secrets=SecretStore(), transport=self.transport),
                               sleep=self.sleeps.append)
        self.made.append(made)
        return made

    def close(self) -> None:
        for made in self.made:
            made.close()
        self.inner.close()


@pytest.fixture
def env() -> Iterator[Env]:
    made = Env()
    yield made
    made.close()


def order(reference: str, customer: str = "US-001", items: tuple[tuple[str, float], ...] = (("D0001", 2),)
          ) -> dict[str, Any]:
    return {"OrderingCustomerAccountNumber": customer, "CustomersOrderReference": reference,
            "lines": [{"ItemNumber": i, "OrderedSalesQuantity": q, "SalesPrice": 10.0} for i, q in items]}


def test_settings_name_what_is_missing(env: Env):
    with pytest.raises(ConfigError, match="legal_entity is missing"):
        FinOpsConnector(SystemConfig("fo", "finops", {k: v for k, v in SETTINGS.items() if k != "legal_entity"}),
                        ConnectorContext(secrets=SecretStore()))
    with pytest.raises(ConfigError, match="environment is missing"):
        FinOpsConnector(SystemConfig("fo", "finops", {"tenant": TENANT, "client_id": CLIENT_ID,
                                                      "legal_entity": "usmf"}), ConnectorContext(secrets=SecretStore()))


def test_every_read_is_cross_company_for_the_legal_entity_and_pages_by_next_link(env: Env):
    env.fo.seed("usmf", "ReleasedProductsV2", [{"ItemNumber": f"P{i:03d}", "ProductNumber": f"P{i:03d}"}
                                                for i in range(7)])
    fo = env.connector(page_size=4)

    items = [r.id for r in fo.changes("ReleasedProductsV2", None)]
    customers = list(fo.changes("CustomersV3", None))

    assert len(items) == len(set(items)) == 10
    assert [c.id for c in customers] == ["US-001", "US-002", "US-003"] and customers[0].modified is None
    gets = env.transport.data_gets()
    assert len(gets) == 4  # three pages of products, one of customers
    for request in gets:
        assert request.url.params.get("cross-company") == "true"
        assert request.url.params["$filter"].startswith("dataAreaId eq 'usmf'")
        assert request.headers["Prefer"] == "odata.maxpagesize=4"
    # the entity's field list from /data/$metadata (what configured mappings are checked against) holds them all
    assert set(customers[0].data) - fo.field_names("CustomersV3") == set()


def test_a_modified_field_makes_reads_incremental(env: Env):
    env.fo.add_modified_field("CustomersV3")
    fo = env.connector(modified_fields={"CustomersV3": "ModifiedDateTime"})
    first = list(fo.changes("CustomersV3", None))
    mark = max(r.modified for r in first)
    env.fo.advance(seconds=5)
    env.fo.modify("usmf", "CustomersV3", "US-002", AddressCity="Pasadena")

    later = list(fo.changes("CustomersV3", mark + timedelta(milliseconds=1)))

    assert [r.id for r in later] == ["US-002"] and later[0]["AddressCity"] == "Pasadena"
    assert "ModifiedDateTime ge" in env.transport.requests[-1].url.params["$filter"]


def test_read_filters_take_enum_literals(env: Env):
    blocked = enum_literal("CustVendorBlocked", "No")
    fo = env.connector(read_filters={"CustomersV3": f"OnHoldStatus eq {blocked}"})
    assert [r.id for r in fo.changes("CustomersV3", None)] == ["US-001", "US-002"]
    assert blocked == "Microsoft.Dynamics.DataEntities.CustVendorBlocked'No'"


def test_429_is_retried_after_the_announced_seconds():
    env = Env(Faults.parse("429=1,retry_after=3"))
    try:
        fo = env.connector()
        env.fo.faults.rate_limit = 0.0
        calls = {"n": 0}

        def throttle_twice(request: httpx.Request) -> httpx.Response | None:
            if "/data/" in request.url.path and calls["n"] < 2:
                calls["n"] += 1
                return httpx.Response(429, headers={"Retry-After": "3"}, json={"error": {"message": "busy"}})
            return None

        env.transport.intercept = throttle_twice
        assert len(list(fo.changes("VendorsV2", None))) == 2
        assert env.sleeps == [3.0, 3.0]
    finally:
        env.close()


def test_an_expired_token_is_replaced_once_and_cached_between_connectors():
    env = Env(Faults.parse("token_ttl=0"))
    try:
        fo = env.connector()
        with pytest.raises(Exception, match="refused the access token"):
            list(fo.changes("VendorsV2", None))
        assert env.fo.tokens_issued == 2  # the first, then one replacement after the 401; no loop
        env.fo.faults.token_ttl = None
        fo.auth.token(force=True)
        again = env.connector()
        assert len(list(again.changes("VendorsV2", None))) == 2
        assert env.fo.tokens_issued == 3  # the second connector reused the cached token
    finally:
        env.close()


def test_an_order_is_booked_once_even_when_its_link_was_lost(env: Env):
    fo = env.connector()
    [created] = fo.write("SalesOrderHeadersV2", [order("zoho-1")], "CustomersOrderReference")
    assert created.action == "create" and created.target_id

    [again] = fo.write("SalesOrderHeadersV2", [order("zoho-1")], "CustomersOrderReference")  # no id: link lost
    [by_id] = fo.write("SalesOrderHeadersV2", [order("zoho-1")], "CustomersOrderReference", ids=[created.target_id])

    assert again.action == by_id.action == "update" and again.target_id == by_id.target_id == created.target_id
    assert len(env.fo.records("usmf", "SalesOrderHeadersV2")) == 1
    assert len(env.fo.records("usmf", "SalesOrderLines")) == 1
    record = fo.get("SalesOrderHeadersV2", created.target_id)
    assert record is not None and [x["ItemNumber"] for x in record["lines"]] == ["D0001"]


def batches(env: Env) -> list:
    """The $batch requests F&O received, each with the operations it ran ("POST ... -> 201")."""
    return [c for c in env.fo.calls if c.form == "data" and c.path.endswith("/$batch")]


def single_writes(env: Env) -> list:
    return [c for c in env.fo.calls if c.form == "data" and c.method in ("POST", "PATCH", "DELETE")
            and not c.path.endswith("/$batch")]


def test_a_batch_of_documents_is_one_batch_call_and_a_refused_line_fails_only_its_document(env: Env):
    fo = env.connector()
    results = fo.write("SalesOrderHeadersV2", [
        order("zoho-10", items=(("D0001", 1), ("D0003", 2))),
        order("zoho-11", items=(("D0001", 1), ("NOPE", 1), ("T0001", 3))),
        order("zoho-12", customer="US-002", items=(("T0001", 5),)),
    ], "CustomersOrderReference")

    assert [r.action for r in results] == ["create", "fail", "create"]
    bad = results[1]
    assert bad.error_class == "http_400" and bad.target_id is None
    assert "line 2 (item NOPE)" in (bad.error or "") and "Item NOPE does not exist in company usmf" in bad.error
    assert "nothing of the document was booked" in bad.error
    # What F&O holds: the two good orders with all their lines; not even a header of the refused one.
    headers = env.fo.records("usmf", "SalesOrderHeadersV2")
    assert sorted(h["CustomersOrderReference"] for h in headers) == ["zoho-10", "zoho-12"]
    lines = {h["CustomersOrderReference"]: [x["ItemNumber"] for x in
                                            env.fo.lines("usmf", "SalesOrderHeadersV2", h["SalesOrderNumber"])]
             for h in headers}
    assert lines == {"zoho-10": ["D0001", "D0003"], "zoho-12": ["T0001"]}
    assert len(env.fo.records("usmf", "SalesOrderLines")) == 3
    # One $batch for the three documents (one changeset each); no header or line was sent on its own.
    [call] = batches(env)
    assert call.status == 200 and single_writes(env) == []
    assert call.operations[-1].endswith("/SalesOrderLines -> 201")
    assert sum(op.endswith("-> 400") for op in call.operations) == 1


def test_a_kill_after_the_batch_reached_fo_never_books_twice(env: Env):
    """F&O committed the changesets but the answer never came back (the run was killed, the link dropped):
    the re-run finds every document by its reference and books none again."""
    fo = env.connector()
    documents = [order("zoho-20", items=(("D0001", 1), ("D0003", 2))), order("zoho-21", customer="US-002")]

    def lose_the_answer(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/$batch"):
            env.inner.handle_request(request)        # F&O applies the batch ...
            raise httpx.ReadTimeout("connection lost", request=request)   # ... and we never hear back
        return None

    env.transport.intercept = lose_the_answer
    with pytest.raises(Exception, match="may or may not have been applied"):
        fo.write("SalesOrderHeadersV2", documents, "CustomersOrderReference")
    env.transport.intercept = None
    assert len(env.fo.records("usmf", "SalesOrderHeadersV2")) == 2

    again = env.connector().write("SalesOrderHeadersV2", documents, "CustomersOrderReference")

    assert [r.action for r in again] == ["update", "update"]
    headers = env.fo.records("usmf", "SalesOrderHeadersV2")
    assert sorted(r.target_id for r in again) == sorted(h["SalesOrderNumber"] for h in headers)
    assert len(headers) == 2 and len(env.fo.records("usmf", "SalesOrderLines")) == 3
    assert len(batches(env)) == 1   # the re-run had nothing left to send


def test_429_on_the_batch_is_retried_after_the_announced_seconds_and_books_once(env: Env):
    fo = env.connector()
    refused = {"n": 0}

    def throttle_once(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/$batch") and refused["n"] == 0:
            refused["n"] += 1
            return httpx.Response(429, headers={"Retry-After": "7"}, json={"error": {"message": "busy"}})
        return None

    env.transport.intercept = throttle_once
    results = fo.write("SalesOrderHeadersV2", [order("zoho-30"), order("zoho-31")], "CustomersOrderReference")

    assert [r.action for r in results] == ["create", "create"] and env.sleeps == [7.0]
    assert len(env.fo.records("usmf", "SalesOrderHeadersV2")) == 2
    assert len(env.fo.records("usmf", "SalesOrderLines")) == 2


def test_the_sandbox_throttles_a_batch_as_one_request(env: Env):
    fo = env.connector()
    list(fo.changes("VendorsV2", None))      # one request in the 5-minute window
    env.fo.rate_limit = 2                    # the look-up for existing documents fills the window
    fo.http.retry = RetryPolicy(attempts=1)
    with pytest.raises(RateLimited, match="rate limited"):
        fo.write("SalesOrderHeadersV2", [order("zoho-40"), order("zoho-41")], "CustomersOrderReference")
    [call] = batches(env)
    assert call.status == 429 and call.operations == []   # refused as a whole: no part ran
    assert env.fo.records("usmf", "SalesOrderHeadersV2") == []


def test_a_document_booked_line_by_line_earlier_gets_its_missing_lines_in_one_changeset(env: Env):
    # As an older version left it: the header and its first line, the second line lost with the run.
    [header] = env.fo.seed("usmf", "SalesOrderHeadersV2", [{"OrderingCustomerAccountNumber": "US-001",
                                                            "CustomersOrderReference": "zoho-2",
                                                            "lines": [{"ItemNumber": "D0001",
                                                                       "OrderedSalesQuantity": 1}]}])
    fo = env.connector()

    [done] = fo.write("SalesOrderHeadersV2", [order("zoho-2", items=(("D0001", 1), ("D0003", 2)))],
                      "CustomersOrderReference")

    assert done.action == "update" and done.target_id == header["SalesOrderNumber"]
    assert len(env.fo.records("usmf", "SalesOrderHeadersV2")) == 1
    lines = env.fo.lines("usmf", "SalesOrderHeadersV2", done.target_id)
    assert [(x["ItemNumber"], x["LineCreationSequenceNumber"]) for x in lines] == [("D0001", 1), ("D0003", 2)]
    [call] = batches(env)
    assert call.operations == ["POST SalesOrderLines -> 201"]


def test_a_document_whose_customer_does_not_exist_is_refused_by_fo_and_writes_nothing(env: Env):
    fo = env.connector()
    [bad_customer] = fo.write("SalesOrderHeadersV2", [order("zoho-4", customer="US-999")],
                              "CustomersOrderReference")

    assert bad_customer.action == "fail" and bad_customer.error_class == "http_400"
    assert "header refused by F&O" in (bad_customer.error or "")
    assert "Customer US-999 does not exist in company usmf" in (bad_customer.error or "")
    assert env.fo.records("usmf", "SalesOrderHeadersV2") == [] and env.fo.records("usmf", "SalesOrderLines") == []


def test_the_sandbox_batch_is_one_guarded_request_and_a_changeset_is_all_or_nothing(env: Env):
    """The wire protocol itself, as any OData client sends it: no token is a 401 for the whole batch; a
    changeset whose second request fails leaves nothing; a single request outside changesets still runs."""
    client = httpx.Client(transport=env.inner, base_url="http://fo.test")
    body = ("--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n"
            "--c\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n"
            "POST /data/FreeTextInvoiceHeaders HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
            '{"dataAreaId": "usmf", "CustomerAccount": "US-001"}\r\n'
            "--c\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\n"
            "POST $1/FreeTextInvoiceLines HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
            '{"LineNumber": 1, "Description": "no main account"}\r\n'
            "--c--\r\n"
            "--b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            "GET VendorsV2?cross-company=true HTTP/1.1\r\nAccept: application/json\r\n\r\n\r\n"
            "--b--\r\n").encode()
    headers = {"Content-Type": "multipart/mixed; boundary=b"}
    try:
        assert client.post("/data/$batch", content=body, headers=headers).status_code == 401
        token = env.connector().auth.token().access_token
        answer = client.post("/data/$batch", content=body, headers={**headers, "Authorization": f"Bearer {token}"})
    finally:
        client.close()

    assert answer.status_code == 200
    [[failed], [vendors]] = parse_batch_response(answer.headers["content-type"], answer.content)
    assert failed.status == 400 and failed.content_id == "2"
    assert "Field 'MainAccountDisplayValue' must be filled in" in failed.message
    assert vendors.status == 200 and {v["VendorAccountNumber"] for v in vendors.json()["value"]} == {"US-101",
                                                                                                    "US-104"}
    assert env.fo.records("usmf", "FreeTextInvoiceHeaders") == []    # the header of the changeset was undone


def test_free_text_invoices_are_booked_once_unposted_and_never_moved_to_another_customer(env: Env):
    fo = env.connector()
    invoice = {"CustomerAccount": "US-002", "CustomerReference": "zoho-inv-1", "InvoiceDate": "2026-11-02T12:00:00Z",
               "lines": [{"ItemNumber": "T0001", "Description": "T0001 cable", "Quantity": 3, "UnitPrice": 12.5,
                          "MainAccountDisplayValue": "401100"}]}
    [created] = fo.write("FreeTextInvoiceHeaders", [invoice], "CustomerReference")
    [again] = fo.write("FreeTextInvoiceHeaders", [invoice], "CustomerReference")
    [by_id] = fo.write("FreeTextInvoiceHeaders", [invoice], "CustomerReference", ids=[created.target_id])
    [moved] = fo.write("FreeTextInvoiceHeaders", [{**invoice, "CustomerAccount": "US-001"}], "CustomerReference")

    assert created.action == "create" and again.target_id == by_id.target_id == created.target_id
    assert moved.action == "fail" and moved.error_class == "conflict"
    [header] = env.fo.records("usmf", "FreeTextInvoiceHeaders")
    assert header["IsPosted"] == "No" and header["CustomerAccount"] == "US-002"
    [line] = env.fo.records("usmf", "FreeTextInvoiceLines")
    assert "ItemNumber" not in line and line["ParentRecId"] == header["InvoiceIdentifier"]


def test_writing_master_data_is_refused(env: Env):
    with pytest.raises(ConfigError, match="not supported"):
        env.connector().write("CustomersV3", [{"CustomerAccount": "X"}], "CustomerAccount")


def test_ping_checks_token_environment_legal_entity_and_entities(env: Env):
    ok = env.connector().ping()
    assert ok.ok, ok.error
    assert any("legal entity USMF" in d for d in ok.details) and any("readable: CustomersV3" in d for d in ok.details)
    assert any("modified_fields" in w for w in ok.warnings)

    wrong = env.connector(legal_entity="usmx").ping()
    assert not wrong.ok and wrong.exit_code == 2 and "USMF" in (wrong.error or "") and "DAT" in (wrong.error or "")

    env.fo.register_app(TENANT, "not-in-fo", "x", user_id=None)
    SecretStore().set("fo2", "client_secret", "x")
    unregistered = FinOpsConnector(SystemConfig("fo2", "finops", {**SETTINGS, "client_id": "not-in-fo"}),
                                   ConnectorContext(secrets=SecretStore(), transport=env.transport)).ping()
    assert not unregistered.ok and unregistered.exit_code == 4 and "Microsoft Entra applications" in unregistered.error

    SecretStore().set("fo", "client_secret", "wrong")
    SecretStore().delete("fo", "access_token_cache")
    refused = env.connector().ping()
    assert not refused.ok and refused.exit_code == 4 and "client secret refused" in (refused.error or "")
    for result in (ok, wrong, unregistered, refused):
        assert SECRET not in repr(result)


def test_the_same_document_twice_in_one_write_is_booked_once(env: Env):
    results = env.connector().write("SalesOrderHeadersV2", [order("zoho-50"), order("zoho-50")],
                                    "CustomersOrderReference")
    assert [r.action for r in results] == ["create", "update"] and results[0].target_id == results[1].target_id
    assert len(env.fo.records("usmf", "SalesOrderHeadersV2")) == 1
