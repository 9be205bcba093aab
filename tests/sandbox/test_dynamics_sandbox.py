"""The Dynamics NAV / Business Central sandbox speaks BC's wire protocol: tokens, API v2.0, ODataV4, webhooks."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mlconnector.sandbox.common import Faults, InProcessTransport, SandboxClock
from mlconnector.sandbox.dynamics import DynamicsSandbox, create_app

TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "0b7c8f0e-1111-2222-3333-444455556666"
SECRET = "s3cret~value"
SCOPE = "https://api.businesscentral.dynamics.com/.default"
COMPANY = "CRONUS USA, Inc."
API = f"/v2.0/{TENANT}/production/api/v2.0"
HOOK_URL = "http://receiver/hooks/bc"


class Receiver:
    """A subscriber endpoint: echoes the validation token, records notifications, answers ``status``."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self.handshakes = 0
        self.echo = True
        self.statuses: list[int] = []   # answers to the next notifications, then 202
        self.app = Starlette(routes=[Route("/hooks/bc", self.endpoint, methods=["POST"])])

    async def endpoint(self, request: Request) -> Response:
        token = request.query_params.get("validationToken")
        if token is not None:
            self.handshakes += 1
            return PlainTextResponse(token if self.echo else "not the token")
        self.notifications.append(await request.json())
        return Response(status_code=self.statuses.pop(0) if self.statuses else 202)

    def items(self) -> list[dict[str, Any]]:
        return [item for body in self.notifications for item in body["value"]]


@pytest.fixture
def clock() -> SandboxClock:
    return SandboxClock()


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


def _make(clock: SandboxClock, receiver: Receiver, faults: Faults | None = None) -> Any:
    app = create_app(clock=clock, faults=faults, notify_transport=httpx.ASGITransport(app=receiver.app),
                     debounce=0.05)
    sandbox: DynamicsSandbox = app.state.dynamics
    sandbox.register_app(TENANT, CLIENT_ID, SECRET)
    sandbox.set_web_service_user("ADMIN", "Xq8s5Ga3JdV2hYbNwU6kLmPrT9eZcF1oA4iS7uB0yH=")
    sandbox.webhook_settings.retry_delays = (0.05, 0.05)
    return app


@pytest.fixture
def app(clock: SandboxClock, receiver: Receiver) -> Any:
    return _make(clock, receiver)


@pytest.fixture
def sandbox(app: Any) -> DynamicsSandbox:
    return app.state.dynamics


@pytest.fixture
def company(sandbox: DynamicsSandbox) -> str:
    return sandbox.create_company(COMPANY)


@pytest.fixture
def http(app: Any) -> Iterator[httpx.Client]:
    transport = InProcessTransport(app)
    with httpx.Client(transport=transport, base_url="http://sandbox") as client:
        yield client
    transport.close()


def get_token(http: httpx.Client, **overrides: str) -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET, "scope": SCOPE}
    return http.post(f"/{TENANT}/oauth2/v2.0/token", data={**form, **overrides})


@pytest.fixture
def bearer(http: httpx.Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {get_token(http).json()['access_token']}"}


def basic(user: str = "ADMIN", key: str = "Xq8s5Ga3JdV2hYbNwU6kLmPrT9eZcF1oA4iS7uB0yH=") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


# -- Entra token endpoint --------------------------------------------------------------------------------------

def test_client_credentials_token_is_a_bearer_token_for_3599_seconds(http: httpx.Client) -> None:
    response = get_token(http)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599 and body["access_token"]


@pytest.mark.parametrize("overrides, status, error, aadsts", [
    ({"client_secret": "wrong"}, 401, "invalid_client", "AADSTS7000215"),
    ({"client_id": "unknown-app"}, 400, "unauthorized_client", "AADSTS700016"),
    ({"scope": "https://graph.microsoft.com/.default"}, 400, "invalid_scope", "AADSTS70011"),
    ({"grant_type": "password"}, 400, "unsupported_grant_type", "AADSTS70003"),
])
def test_token_errors_are_entra_json(http: httpx.Client, overrides: dict[str, str], status: int, error: str,
                                     aadsts: str) -> None:
    response = get_token(http, **overrides)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["error_description"].startswith(aadsts)


def test_expired_token_is_rejected(http: httpx.Client, sandbox: DynamicsSandbox, company: str,
                                   bearer: dict[str, str]) -> None:
    assert http.get(f"{API}/companies", headers=bearer).status_code == 200
    sandbox.advance(seconds=3600)
    response = http.get(f"{API}/companies", headers=bearer)
    assert response.status_code == 401
    assert error_code(response) == "Authentication_InvalidCredentials"
    assert "token is expired" in response.headers["www-authenticate"]


def test_token_ttl_fault_expires_tokens_early(clock: SandboxClock, receiver: Receiver) -> None:
    app = _make(clock, receiver, Faults.parse("token_ttl=5"))
    app.state.dynamics.create_company(COMPANY)
    with httpx.Client(transport=InProcessTransport(app), base_url="http://sandbox") as http:
        token = get_token(http).json()
        assert token["expires_in"] == 3599
        clock.advance(seconds=6)
        response = http.get(f"{API}/companies", headers={"Authorization": f"Bearer {token['access_token']}"})
        assert response.status_code == 401


def test_online_api_refuses_basic_auth_and_apps_not_enabled_in_bc(http: httpx.Client, sandbox: DynamicsSandbox,
                                                                  company: str) -> None:
    assert http.get(f"{API}/companies", headers=basic()).status_code == 401
    sandbox.register_app(TENANT, "other-app", "pw", bc_enabled=False)
    token = get_token(http, client_id="other-app", client_secret="pw").json()["access_token"]
    response = http.get(f"{API}/companies", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and error_code(response) == "Authentication_InvalidCredentials"


# -- API v2.0 CRUD ---------------------------------------------------------------------------------------------

def test_create_assigns_number_id_etag_and_utc_timestamp(http: httpx.Client, company: str,
                                                         bearer: dict[str, str]) -> None:
    response = http.post(f"{API}/companies({company})/customers", headers=bearer,
                         json={"displayName": "Adatum Corporation", "email": "robert@contoso.com"})
    assert response.status_code == 201
    customer = response.json()
    assert customer["number"] == "C00010"
    assert customer["@odata.etag"].startswith('W/"JzQ0O')
    assert customer["lastModifiedDateTime"].endswith("Z") and len(customer["lastModifiedDateTime"]) == 24
    assert customer["blocked"] == " " and customer["type"] == "Company"
    second = http.post(f"{API}/companies({company})/customers", headers=bearer, json={"displayName": "Trey"})
    assert second.json()["number"] == "C00020"
    duplicate = http.post(f"{API}/companies({company})/customers", headers=bearer,
                          json={"number": "C00010", "displayName": "Again"})
    assert duplicate.status_code == 409 and error_code(duplicate) == "Internal_EntityWithSameKeyExists"


def test_patch_and_delete_need_the_current_etag(http: httpx.Client, company: str, bearer: dict[str, str]) -> None:
    created = http.post(f"{API}/companies({company})/customers", headers=bearer,
                        json={"displayName": "Adatum"}).json()
    url = f"{API}/companies({company})/customers({created['id']})"

    missing = http.patch(url, headers=bearer, json={"city": "Atlanta"})
    assert missing.status_code == 400 and error_code(missing) == "BadRequest_InvalidToken"

    updated = http.patch(url, headers={**bearer, "If-Match": created["@odata.etag"]}, json={"city": "Atlanta"})
    assert updated.status_code == 200
    assert updated.json()["city"] == "Atlanta"
    assert updated.json()["@odata.etag"] != created["@odata.etag"]
    assert updated.json()["lastModifiedDateTime"] >= created["lastModifiedDateTime"]

    stale = http.patch(url, headers={**bearer, "If-Match": created["@odata.etag"]}, json={"city": "Chicago"})
    assert stale.status_code == 409 and error_code(stale) == "Request_EntityChanged"

    read_only = http.patch(url, headers={**bearer, "If-Match": "*"}, json={"balanceDue": 5})
    assert read_only.status_code == 400

    assert http.delete(url, headers={**bearer, "If-Match": updated.json()["@odata.etag"]}).status_code == 204
    gone = http.get(url, headers=bearer)
    assert gone.status_code == 404 and error_code(gone) == "BadRequest_NotFound"


def test_unknown_company_and_malformed_keys(http: httpx.Client, company: str, bearer: dict[str, str]) -> None:
    assert http.get(f"{API}/companies(00000000-0000-0000-0000-000000000001)/customers",
                    headers=bearer).status_code == 404
    assert error_code(http.get(f"{API}/companies({company})/customers('C00010')",
                               headers=bearer)) == "BadRequest_NotFound"
    assert http.get(f"{API}/companies({company})/widgets", headers=bearer).status_code == 404


# -- OData query options and paging ---------------------------------------------------------------------------

@pytest.fixture
def customers(sandbox: DynamicsSandbox, company: str) -> list[dict[str, Any]]:
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return sandbox.seed(company, "customers", [
        {"displayName": f"Customer {i:02d}", "city": "Atlanta" if i % 2 else "Chicago",
         "lastModifiedDateTime": base + timedelta(hours=i)} for i in range(25)])


def test_filter_on_last_modified_with_server_paging(http: httpx.Client, company: str, bearer: dict[str, str],
                                                    customers: list[dict[str, Any]]) -> None:
    url = f"{API}/companies({company})/customers"
    params = {"$filter": "lastModifiedDateTime gt 2026-01-01T04:00:00Z and lastModifiedDateTime lt 2026-01-02T00:00:00Z",
              "$orderby": "lastModifiedDateTime"}
    headers = {**bearer, "Prefer": "odata.maxpagesize=8"}
    first = http.get(url, params=params, headers=headers)
    assert first.headers["preference-applied"] == "odata.maxpagesize=8"
    seen = [row["displayName"] for row in first.json()["value"]]
    link = first.json().get("@odata.nextLink")
    while link:
        page = http.get(link, headers=headers).json()
        seen += [row["displayName"] for row in page["value"]]
        link = page.get("@odata.nextLink")
    assert seen == [f"Customer {i:02d}" for i in range(5, 24)]


def test_paging_by_modified_time_follows_changes_between_pages(http: httpx.Client, sandbox: DynamicsSandbox,
                                                               clock: SandboxClock, company: str,
                                                               bearer: dict[str, str],
                                                               customers: list[dict[str, Any]]) -> None:
    """Rows changed while a client pages move to the end of the order, though their old order was known."""
    url = f"{API}/companies({company})/customers"
    headers = {**bearer, "Prefer": "odata.maxpagesize=8"}
    first = http.get(url, params={"$orderby": "lastModifiedDateTime,id"}, headers=headers).json()
    seen = [row["displayName"] for row in first["value"]]
    assert seen == [f"Customer {i:02d}" for i in range(8)]
    sandbox.modify(company, "customers", customers[2]["id"], city="Boston")    # already read: read again
    clock.advance(seconds=1)
    sandbox.modify(company, "customers", customers[12]["id"], city="Boston")   # not yet read: read once, last
    link = first["@odata.nextLink"]
    while link:
        page = http.get(link, headers=headers).json()
        seen += [row["displayName"] for row in page["value"]]
        link = page.get("@odata.nextLink")
    assert seen == ([f"Customer {i:02d}" for i in range(25) if i != 12] + ["Customer 02", "Customer 12"])


def test_paging_follows_rows_added_and_deleted_between_pages(http: httpx.Client, clock: SandboxClock, company: str,
                                                           bearer: dict[str, str],
                                                           customers: list[dict[str, Any]]) -> None:
    """The order a read pages through is kept between its pages, and never outlives a row added or deleted."""
    url, pages = f"{API}/companies({company})/customers", []

    def page_on(link: str, **params: str) -> str | None:
        pages.append(http.get(link, params=params or None, headers={**bearer, "Prefer": "odata.maxpagesize=8"}).json())
        return pages[-1].get("@odata.nextLink")

    link = page_on(url, **{"$orderby": "lastModifiedDateTime,id"})
    http.delete(f"{url}({customers[15]['id']})", headers={**bearer, "If-Match": "*"}).raise_for_status()
    link = page_on(link)
    clock.advance(seconds=1)
    http.post(url, json={"displayName": "Customer new"}, headers=bearer).raise_for_status()
    while link:
        link = page_on(link)
    seen = [row["displayName"] for page in pages for row in page["value"]]
    assert seen == [f"Customer {i:02d}" for i in range(25) if i != 15] + ["Customer new"]


def test_server_default_page_size_and_top_without_next_link(http: httpx.Client, sandbox: DynamicsSandbox,
                                                            company: str, bearer: dict[str, str],
                                                            customers: list[dict[str, Any]]) -> None:
    url = f"{API}/companies({company})/customers"
    sandbox.max_page_size = 10
    page = http.get(url, headers=bearer).json()
    assert len(page["value"]) == 10 and "@odata.nextLink" in page
    top = http.get(url, params={"$top": "3"}, headers=bearer).json()
    assert len(top["value"]) == 3 and "@odata.nextLink" not in top


def test_filter_eq_ne_select_orderby_and_errors(http: httpx.Client, company: str, bearer: dict[str, str],
                                                customers: list[dict[str, Any]]) -> None:
    url = f"{API}/companies({company})/customers"
    one = http.get(url, params={"$filter": "number eq 'C00030'", "$select": "number,displayName"},
                   headers=bearer).json()["value"]
    assert one == [{"@odata.etag": one[0]["@odata.etag"], "number": "C00030", "displayName": "Customer 02"}]
    by_id = http.get(url, params={"$filter": f"id eq {customers[3]['id']}"}, headers=bearer).json()["value"]
    assert [row["number"] for row in by_id] == ["C00040"]
    newest = http.get(url, params={"$orderby": "lastModifiedDateTime desc", "$top": "1"}, headers=bearer)
    assert newest.json()["value"][0]["displayName"] == "Customer 24"
    not_atlanta = http.get(url, params={"$filter": "city ne 'Atlanta'", "$count": "true"}, headers=bearer).json()
    assert not_atlanta["@odata.count"] == 13
    same_field_or = http.get(url, params={"$filter": "city eq 'Atlanta' or city eq 'Chicago'"}, headers=bearer)
    assert len(same_field_or.json()["value"]) == 25

    distinct_or = http.get(url, params={"$filter": "city eq 'Atlanta' or number eq 'C00010'"}, headers=bearer)
    assert distinct_or.status_code == 400
    unknown = http.get(url, params={"$filter": "colour eq 'red'"}, headers=bearer)
    assert unknown.status_code == 400 and "colour" in unknown.json()["error"]["message"]
    quoted_date = http.get(url, params={"$filter": "lastModifiedDateTime gt '2026-01-01T00:00:00Z'"}, headers=bearer)
    assert quoted_date.status_code == 400


def test_rows_without_system_modified_at_read_as_year_one(http: httpx.Client, sandbox: DynamicsSandbox,
                                                          company: str, bearer: dict[str, str],
                                                          customers: list[dict[str, Any]]) -> None:
    sandbox.clear_last_modified(company, "customers", ["C00010", "C00020"])
    url = f"{API}/companies({company})/customers"
    blank = http.get(url, params={"$filter": "lastModifiedDateTime lt 1753-01-01T00:00:00Z"}, headers=bearer)
    assert [row["lastModifiedDateTime"] for row in blank.json()["value"]] == ["0001-01-01T00:00:00Z"] * 2


# -- documents -------------------------------------------------------------------------------------------------

@pytest.fixture
def catalogue(sandbox: DynamicsSandbox, company: str) -> None:
    sandbox.seed(company, "customers", [{"displayName": "Adatum", "city": "Atlanta"}])
    sandbox.seed(company, "items", [{"number": "1928-S", "displayName": "AMSTERDAM Lamp", "unitPrice": 54.9}])


def test_sales_order_deep_insert_and_expand_lines(http: httpx.Client, company: str, bearer: dict[str, str],
                                                  catalogue: None) -> None:
    created = http.post(f"{API}/companies({company})/salesOrders", headers=bearer, json={
        "customerNumber": "C00010",
        "salesOrderLines": [{"lineType": "Item", "lineObjectNumber": "1928-S", "quantity": 3}]})
    assert created.status_code == 201
    order = created.json()
    assert order["customerName"] == "Adatum" and order["totalAmountExcludingTax"] == 164.7
    expanded = http.get(f"{API}/companies({company})/salesOrders({order['id']})",
                        params={"$expand": "salesOrderLines"}, headers=bearer).json()
    line = expanded["salesOrderLines"][0]
    assert (line["documentId"], line["sequence"], line["description"]) == (order["id"], 10000, "AMSTERDAM Lamp")

    added = http.post(f"{API}/companies({company})/salesOrders({order['id']})/salesOrderLines", headers=bearer,
                      json={"lineObjectNumber": "1928-S", "quantity": 1})
    assert added.status_code == 201 and added.json()["sequence"] == 20000
    listed = http.get(f"{API}/companies({company})/salesOrders", params={"$expand": "salesOrderLines"},
                      headers=bearer).json()["value"]
    assert len(listed[0]["salesOrderLines"]) == 2 and listed[0]["totalAmountExcludingTax"] == 219.6

    line_url = f"{API}/companies({company})/salesOrderLines({added.json()['id']})"
    patched = http.patch(line_url, headers={**bearer, "If-Match": added.json()["@odata.etag"]}, json={"quantity": 2})
    assert patched.status_code == 200 and patched.json()["amountExcludingTax"] == 109.8
    by_document = http.get(f"{API}/companies({company})/salesOrderLines",
                           params={"$filter": f"documentId eq {order['id']}"}, headers=bearer).json()["value"]
    assert [line["sequence"] for line in by_document] == [10000, 20000]

    no_customer = http.post(f"{API}/companies({company})/salesOrders", headers=bearer, json={})
    assert no_customer.status_code == 400 and error_code(no_customer) == "Application_DialogException"


def test_posted_invoices_are_the_ones_not_in_draft(http: httpx.Client, sandbox: DynamicsSandbox, company: str,
                                                   bearer: dict[str, str], catalogue: None) -> None:
    lines = [{"lineObjectNumber": "1928-S", "quantity": 1}]
    sandbox.seed(company, "salesInvoices", [
        {"customerNumber": "C00010", "salesInvoiceLines": lines},
        {"customerNumber": "C00010", "status": "Paid", "salesInvoiceLines": lines},
    ])
    draft = http.post(f"{API}/companies({company})/salesInvoices", headers=bearer,
                      json={"customerNumber": "C00010", "salesInvoiceLines": lines}).json()
    assert draft["status"] == "Draft" and draft["number"].startswith("S-INV")
    posted = http.post(f"{API}/companies({company})/salesInvoices({draft['id']})/Microsoft.NAV.post",
                       headers=bearer)
    assert posted.status_code == 204
    rows = http.get(f"{API}/companies({company})/salesInvoices",
                    params={"$filter": "status ne 'Draft'", "$expand": "salesInvoiceLines"},
                    headers=bearer).json()["value"]
    assert sorted(row["status"] for row in rows) == ["Open", "Paid"]
    assert all(row["number"].startswith("PS-INV") or row["status"] == "Paid" for row in rows)
    assert all(row["salesInvoiceLines"] for row in rows)


def test_customer_payments_are_cash_receipt_lines_applied_only_to_a_posted_invoice_of_the_customer(
        http: httpx.Client, sandbox: DynamicsSandbox, bearer: dict[str, str]) -> None:
    company = sandbox.seed_demo()
    base = f"{API}/companies({company})"
    [journal] = http.get(f"{base}/customerPaymentJournals", params={"$filter": "code eq 'ZUORA'"},
                         headers=bearer).json()["value"]
    invoices = {row["number"]: row for row in sandbox.records(company, "salesInvoices")}
    posted, draft = invoices["PS-INV103001"], invoices["S-INV102001"]
    lines = f"{base}/customerPaymentJournals({journal['id']})/customerPayments"
    refused = http.post(lines, headers=bearer, json={"customerNumber": draft["customerNumber"], "documentNumber": "P-1",
                                                     "amount": -1, "appliesToInvoiceId": draft["id"]})
    assert refused.status_code == 400 and error_code(refused) == "Internal_RecordNotFound"
    assert http.post(lines, headers=bearer, json={"documentType": "Refund"}).status_code == 400

    made = http.post(lines, headers=bearer, json={"customerNumber": posted["customerNumber"], "documentNumber": "P-1",
                                                  "amount": -10.5, "appliesToInvoiceNumber": "PS-INV103001"})
    assert made.status_code == 201
    line = made.json()
    assert (line["appliesToInvoiceId"], line["lineNumber"], line["journalDisplayName"]) == (posted["id"], 10000,
                                                                                            "ZUORA")
    [row] = [r for r in sandbox.journal_lines(company, "CASHRCPT") if r["Document_No"] == "P-1"]
    assert (row["Document_Type"], row["Applies_to_Doc_Type"], row["Applies_to_Doc_No"]) == (
        "Payment", "Invoice", "PS-INV103001")
    assert http.patch(f"{base}/customerPayments({line['id']})", headers=bearer, json={"amount": -11}).status_code == 400
    assert [r["id"] for r in http.get(f"{base}/customerPayments", headers=bearer).json()["value"]] == [line["id"]]


# -- on-premises forms -----------------------------------------------------------------------------------------

def test_on_premises_api_with_web_service_access_key(http: httpx.Client, sandbox: DynamicsSandbox,
                                                     company: str) -> None:
    sandbox.seed(company, "items", [{"displayName": "Lamp"}])
    ok = http.get(f"/BC/api/v2.0/companies({company})/items", headers=basic())
    assert ok.status_code == 200 and ok.json()["value"][0]["displayName"] == "Lamp"
    wrong = http.get(f"/BC/api/v2.0/companies({company})/items", headers=basic(key="nope"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Basic")
    sandbox.use_windows_authentication()
    windows = http.get(f"/BC/api/v2.0/companies({company})/items", headers=basic())
    assert windows.status_code == 401 and "Negotiate" in windows.headers["www-authenticate"]


def test_nav_odatav4_card_page(http: httpx.Client, sandbox: DynamicsSandbox, company: str) -> None:
    sandbox.seed(company, "customers", [
        {"displayName": "Adatum", "email": "a@contoso.com", "phoneNumber": "555", "city": "Atlanta",
         "lastModifiedDateTime": "2026-03-01T10:00:00Z"},
        {"displayName": "Trey", "lastModifiedDateTime": "2026-01-15T10:00:00Z"}])
    base = "/DynamicsNAV/ODataV4/Company('CRONUS%20USA%2C%20Inc.')"
    rows = http.get(f"{base}/Customer", headers=basic()).json()["value"]
    assert rows[0]["No"] == "C00010" and rows[0]["Name"] == "Adatum" and rows[0]["E_Mail"] == "a@contoso.com"
    assert rows[0]["Phone_No"] == "555" and rows[0]["Blocked"] == "_x0020_"
    assert rows[0]["Last_Date_Modified"] == "2026-03-01"

    changed = http.get(f"{base}/Customer", params={"$filter": "Last_Date_Modified ge 2026-02-01"},
                       headers=basic()).json()["value"]
    assert [row["No"] for row in changed] == ["C00010"]

    one = http.get(f"{base}/Customer('C00010')", headers=basic()).json()
    patched = http.patch(f"{base}/Customer('C00010')", headers={**basic(), "If-Match": one["@odata.etag"]},
                         json={"City": "Chicago"})
    assert patched.status_code == 200 and sandbox.get(company, "customers", "C00010")["city"] == "Chicago"
    read_only = http.patch(f"{base}/Customer('C00010')", headers={**basic(), "If-Match": "*"},
                           json={"Last_Date_Modified": "2026-01-01"})
    assert read_only.status_code == 400 and error_code(read_only) == "BadRequest_InvalidOperation"

    wrong_case = http.get("/DynamicsNAV/ODataV4/Company('cronus usa, inc.')/Customer", headers=basic())
    assert wrong_case.status_code == 404 and error_code(wrong_case) == "Internal_CompanyNotFound"
    unpublished = http.get(f"{base}/Customers", headers=basic())
    assert unpublished.status_code == 404 and error_code(unpublished) == "BadRequest_ResourceNotFound"
    companies = http.get("/DynamicsNAV/ODataV4/Company", headers=basic()).json()["value"]
    assert companies[0]["Name"] == COMPANY


def test_nav_service_names_are_configurable_and_orders_expand_lines(http: httpx.Client, sandbox: DynamicsSandbox,
                                                                    company: str, catalogue: None) -> None:
    sandbox.publish_page("CustomerCard", "Customer")
    sandbox.seed(company, "salesOrders", [{"customerNumber": "C00010",
                                           "salesOrderLines": [{"lineObjectNumber": "1928-S", "quantity": 2}]}])
    base = "/BC/ODataV4/Company('CRONUS%20USA%2C%20Inc.')"
    assert http.get(f"{base}/CustomerCard", headers=basic()).json()["value"][0]["Name"] == "Adatum"
    order = http.get(f"{base}/SalesOrder('Order','S-ORD101001')", params={"$expand": "SalesOrderSalesLines"},
                     headers=basic()).json()
    assert order["Sell_to_Customer_No"] == "C00010"
    assert order["SalesOrderSalesLines"][0]["Line_Amount"] == 109.8


def test_nav_paging_with_maxpagesize(http: httpx.Client, sandbox: DynamicsSandbox, company: str) -> None:
    sandbox.seed(company, "items", [{"displayName": f"Item {i}"} for i in range(5)])
    headers = {**basic(), "Prefer": "odata.maxpagesize=2"}
    page = http.get(f"/BC/ODataV4/Company('CRONUS%20USA%2C%20Inc.')/Item", headers=headers).json()
    numbers = [row["No"] for row in page["value"]]
    while "@odata.nextLink" in page:
        page = http.get(page["@odata.nextLink"], headers=headers).json()
        numbers += [row["No"] for row in page["value"]]
    assert numbers == ["1000", "1001", "1002", "1003", "1004"]


def test_nav_paging_by_last_date_modified_follows_changes_between_pages(http: httpx.Client, sandbox: DynamicsSandbox,
                                                                         company: str) -> None:
    """Ordered by the stored date and number, filtered by a computed field: changes between pages still show."""
    old = datetime(2026, 1, 1, tzinfo=timezone.utc)
    items = sandbox.seed(company, "items", [{"displayName": f"Item {i}", "lastModifiedDateTime": old + timedelta(days=i)}
                                            for i in range(7)])
    headers = {**basic(), "Prefer": "odata.maxpagesize=2"}
    url = "/BC/ODataV4/Company('CRONUS%20USA%2C%20Inc.')/Item"
    page = http.get(url, params={"$orderby": "Last_Date_Modified,No", "$filter": "Description ne 'Item 5'"},
                    headers=headers).json()
    names = [row["Description"] for row in page["value"]]
    sandbox.modify(company, "items", items[0]["id"], displayName="Item 0 again")   # read already: read again
    sandbox.modify(company, "items", items[3]["id"], displayName="Item 5")         # now filtered out
    while "@odata.nextLink" in page:
        page = http.get(page["@odata.nextLink"], headers=headers).json()
        names += [row["Description"] for row in page["value"]]
    assert names == ["Item 0", "Item 1", "Item 2", "Item 4", "Item 6", "Item 0 again"]


# -- webhooks --------------------------------------------------------------------------------------------------

def subscribe(http: httpx.Client, bearer: dict[str, str], company: str, entity: str = "customers") -> httpx.Response:
    return http.post(f"{API}/subscriptions", headers=bearer, json={
        "notificationUrl": HOOK_URL, "resource": f"/api/v2.0/companies({company})/{entity}",
        "clientState": "state-123"})


def test_subscription_requires_the_handshake(http: httpx.Client, sandbox: DynamicsSandbox, company: str,
                                             bearer: dict[str, str], receiver: Receiver) -> None:
    created = subscribe(http, bearer, company)
    assert created.status_code == 201 and receiver.handshakes == 1
    sub = created.json()
    expires = datetime.fromisoformat(sub["expirationDateTime"].replace("Z", "+00:00"))
    assert timedelta(days=2, hours=23) < expires - sandbox.clock.now() <= timedelta(days=3)
    listed = http.get(f"{API}/subscriptions", headers=bearer).json()["value"]
    assert [s["subscriptionId"] for s in listed] == [sub["subscriptionId"]]

    receiver.echo = False
    refused = subscribe(http, bearer, company)
    assert refused.status_code == 400 and len(sandbox.subscriptions()) == 1


@pytest.mark.parametrize("entity", ["contacts", "purchaseOrders"])
def test_entities_without_webhook_support_cannot_be_subscribed(http: httpx.Client, company: str,
                                                               bearer: dict[str, str], entity: str) -> None:
    assert subscribe(http, bearer, company, entity).status_code == 400


def test_change_is_notified_after_the_debounce(http: httpx.Client, sandbox: DynamicsSandbox, company: str,
                                               bearer: dict[str, str], receiver: Receiver) -> None:
    [customer] = sandbox.seed(company, "customers", [{"displayName": "Adatum"}])
    sub = subscribe(http, bearer, company).json()
    sandbox.modify(company, "customers", "C00010", city="Atlanta")
    sandbox.modify(company, "customers", "C00010", city="Boston")   # same window: one notification
    assert sandbox.wait_for_notifications()
    [item] = receiver.items()
    assert item["subscriptionId"] == sub["subscriptionId"] and item["clientState"] == "state-123"
    assert item["changeType"] == "updated"
    assert item["resource"] == f"api/v2.0/companies({company})/customers({customer['id']})"
    assert item["lastModifiedDateTime"] == sandbox.get(company, "customers", "C00010")["lastModifiedDateTime"]

    url = f"{API}/companies({company})/customers({customer['id']})"
    http.delete(url, headers={**bearer, "If-Match": "*"})
    assert sandbox.wait_for_notifications()
    assert receiver.items()[-1]["changeType"] == "deleted"


def test_many_changes_collapse_into_a_collection_notification(http: httpx.Client, sandbox: DynamicsSandbox,
                                                              company: str, bearer: dict[str, str],
                                                              receiver: Receiver) -> None:
    sandbox.webhook_settings.collection_threshold = 3
    subscribe(http, bearer, company)
    sandbox.seed(company, "customers", [{"displayName": f"C{i}"} for i in range(5)], notify=True)
    assert sandbox.wait_for_notifications()
    [item] = receiver.items()
    assert item["changeType"] == "collection"
    assert item["resource"].startswith(f"/api/v2.0/companies({company})/customers?$filter=lastModifiedDateTime%20gt%20")


def test_subscription_expires_after_three_days_unless_renewed(http: httpx.Client, sandbox: DynamicsSandbox,
                                                              company: str, bearer: dict[str, str],
                                                              receiver: Receiver) -> None:
    sandbox.seed(company, "customers", [{"displayName": "Adatum"}])
    sub = subscribe(http, bearer, company).json()
    url = f"{API}/subscriptions('{sub['subscriptionId']}')"
    sandbox.advance(days=2)
    bearer = {"Authorization": f"Bearer {get_token(http).json()['access_token']}"}   # the old one expired
    assert http.patch(url, headers=bearer, json={}).status_code == 400   # If-Match required
    renewed = http.patch(url, headers={**bearer, "If-Match": sub["@odata.etag"]},
                         json={"notificationUrl": HOOK_URL, "resource": sub["resource"], "clientState": "state-123"})
    assert renewed.status_code == 200 and receiver.handshakes == 2
    assert renewed.json()["expirationDateTime"] > sub["expirationDateTime"]

    sandbox.advance(days=3, seconds=1)
    bearer = {"Authorization": f"Bearer {get_token(http).json()['access_token']}"}
    sandbox.modify(company, "customers", "C00010", city="Atlanta")
    assert sandbox.wait_for_notifications()
    assert receiver.items() == []
    assert http.get(url, headers=bearer).status_code == 404


def test_subscription_delete_needs_quoted_id_and_etag(http: httpx.Client, company: str, bearer: dict[str, str],
                                                      sandbox: DynamicsSandbox) -> None:
    sub = subscribe(http, bearer, company).json()
    assert http.delete(f"{API}/subscriptions({sub['subscriptionId']})", headers=bearer).status_code == 400
    url = f"{API}/subscriptions('{sub['subscriptionId']}')"
    assert http.delete(url, headers=bearer).status_code == 400
    assert http.delete(url, headers={**bearer, "If-Match": sub["@odata.etag"]}).status_code == 204
    assert sandbox.subscriptions() == []


def test_subscription_is_deleted_when_the_endpoint_answers_4xx(http: httpx.Client, sandbox: DynamicsSandbox,
                                                               company: str, bearer: dict[str, str],
                                                               receiver: Receiver) -> None:
    sandbox.seed(company, "customers", [{"displayName": "Adatum"}])
    subscribe(http, bearer, company)
    receiver.statuses = [404]
    sandbox.modify(company, "customers", "C00010", city="Atlanta")
    assert sandbox.wait_for_notifications()
    assert sandbox.subscriptions() == []


def test_5xx_and_429_answers_are_retried(http: httpx.Client, sandbox: DynamicsSandbox, company: str,
                                         bearer: dict[str, str], receiver: Receiver) -> None:
    sandbox.seed(company, "customers", [{"displayName": "Adatum"}])
    subscribe(http, bearer, company)
    receiver.statuses = [503, 429]
    sandbox.modify(company, "customers", "C00010", city="Atlanta")
    assert sandbox.wait_for_notifications()
    assert [d.status for d in sandbox.deliveries] == [503, 429, 202]
    assert len(sandbox.subscriptions()) == 1


def test_a_line_change_notifies_the_document(http: httpx.Client, sandbox: DynamicsSandbox, company: str,
                                             bearer: dict[str, str], receiver: Receiver, catalogue: None) -> None:
    [order] = sandbox.seed(company, "salesOrders", [{"customerNumber": "C00010"}])
    subscribe(http, bearer, company, "salesOrders")
    sandbox.add_line(company, "salesOrders", order["id"], lineObjectNumber="1928-S", quantity=1)
    assert sandbox.wait_for_notifications()
    assert receiver.items()[0]["resource"].endswith(f"salesOrders({order['id']})")


def test_dropped_notifications_fault(clock: SandboxClock, receiver: Receiver) -> None:
    app = _make(clock, receiver, Faults.parse("drop=1"))
    sandbox: DynamicsSandbox = app.state.dynamics
    company = sandbox.create_company(COMPANY)
    sandbox.seed(company, "items", [{"displayName": "Lamp"}])
    with httpx.Client(transport=InProcessTransport(app), base_url="http://sandbox") as http:
        bearer = {"Authorization": f"Bearer {get_token(http).json()['access_token']}"}
        assert subscribe(http, bearer, company, "items").status_code == 201
        sandbox.modify(company, "items", "1000", unitPrice=10)
        assert sandbox.wait_for_notifications()
    assert receiver.items() == [] and sandbox.deliveries[0].error is not None


# -- faults and limits -----------------------------------------------------------------------------------------

def test_injected_429_carries_retry_after(clock: SandboxClock, receiver: Receiver) -> None:
    app = _make(clock, receiver, Faults.parse("429=1,retry_after=7"))
    with httpx.Client(transport=InProcessTransport(app), base_url="http://sandbox") as http:
        response = http.get(f"{API}/companies")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7" and error_code(response) == "Application_TooManyRequests"


def test_injected_5xx(clock: SandboxClock, receiver: Receiver) -> None:
    app = _make(clock, receiver, Faults.parse("5xx=1,seed=3"))
    with httpx.Client(transport=InProcessTransport(app), base_url="http://sandbox") as http:
        statuses = {http.get(f"{API}/companies").status_code for _ in range(10)}
    assert statuses <= {500, 503} and statuses


def test_per_user_request_limit_in_a_sliding_window(http: httpx.Client, sandbox: DynamicsSandbox, company: str,
                                                    bearer: dict[str, str]) -> None:
    sandbox.rate_limit = 3
    assert [http.get(f"{API}/companies", headers=bearer).status_code for _ in range(4)] == [200, 200, 200, 429]
    throttled = http.get(f"{API}/companies", headers=bearer)
    assert int(throttled.headers["retry-after"]) > 0
    sandbox.advance(minutes=5)
    assert http.get(f"{API}/companies", headers=bearer).status_code == 200


def test_tenantless_url_and_company_query_parameter(http: httpx.Client, sandbox: DynamicsSandbox,
                                                     company: str, bearer: dict[str, str]) -> None:
    sandbox.seed(company, "vendors", [{"displayName": "Fabrikam"}])
    by_path = http.get(f"/v2.0/production/api/v2.0/companies({company})/vendors", headers=bearer)
    by_query = http.get(f"{API}/vendors", params={"company": company}, headers=bearer)
    assert by_path.json()["value"][0]["number"] == by_query.json()["value"][0]["number"] == "V00010"


def test_demo_company_is_consistent(sandbox: DynamicsSandbox) -> None:
    company = sandbox.seed_demo()
    invoices = {row["number"]: row for row in sandbox.records(company, "salesInvoices")}
    assert invoices["PS-INV103001"]["status"] == "Open" and invoices["S-INV102001"]["status"] == "Draft"
    [order] = sandbox.records(company, "salesOrders")
    assert order["totalAmountExcludingTax"] == round(1000.8 + 2 * 54.9, 2)


def test_calls_are_counted(http: httpx.Client, sandbox: DynamicsSandbox, company: str,
                           bearer: dict[str, str]) -> None:
    sandbox.reset_calls()
    http.get(f"{API}/companies({company})/customers", headers=bearer)
    http.get(f"/BC/ODataV4/Company('{COMPANY}')/Customer", headers=basic())
    assert sandbox.call_count(form="api", method="GET") == 1
    assert sandbox.call_count(path_contains="ODataV4") == 1


def test_a_customers_default_dimensions_in_the_api_as_on_page_540(http: httpx.Client, sandbox: DynamicsSandbox,
                                                                   bearer: dict[str, str]) -> None:
    """API v2.0 defaultDimensions (dynamics_defaultdimension): the customer's, the company's (filtered by
    parentType) and $expand on customers, all the rows page 540 Default Dimensions shows."""
    company = sandbox.seed_demo()
    sandbox.set_default_dimension(company, "C00010", "CUSTGROUP", "C00030")
    adatum = sandbox.get(company, "customers", "C00010")
    base = f"{API}/companies({company})"

    [row] = http.get(f"{base}/customers({adatum['id']})/defaultDimensions", headers=bearer).json()["value"]
    assert (row["parentType"], row["parentId"], row["dimensionCode"], row["dimensionValueCode"],
            row["postingValidation"]) == ("Customer", adatum["id"], "CUSTGROUP", "C00030", " ")
    filtered = http.get(f"{base}/defaultDimensions", params={"$filter": "parentType eq 'Customer'"}, headers=bearer)
    assert [r["id"] for r in filtered.json()["value"]] == [row["id"]]
    assert http.get(f"{base}/defaultDimensions({row['id']})", headers=bearer).json()["dimensionId"] == row["dimensionId"]
    expanded = http.get(f"{base}/customers", params={"$select": "number", "$expand": "defaultDimensions"},
                        headers=bearer).json()["value"]
    assert {c["number"]: [d["dimensionValueCode"] for d in c["defaultDimensions"]] for c in expanded} == {
        "C00010": ["C00030"], "C00020": [], "C00030": []}
    page = http.get(f"/BC/ODataV4/Company('{COMPANY}')/DefaultDimensions", headers=basic()).json()["value"]
    assert [(r["No"], r["Dimension_Value_Code"]) for r in page] == [("C00010", "C00030")]


def test_contact_business_relations_in_the_api_and_on_page_5054(http: httpx.Client, sandbox: DynamicsSandbox,
                                                                bearer: dict[str, str]) -> None:
    company = sandbox.seed_demo()
    [person] = [c for c in sandbox.records(company, "contacts") if c["type"] == "Person"]
    customer = sandbox.get(company, "customers", "C00010")
    info = http.get(f"{API}/companies({company})/contacts({person['id']})/contactInformation", headers=bearer)
    assert info.status_code == 200
    assert info.json()["value"] == [{"contactId": person["id"], "contactNumber": "CT000020",
                                     "contactName": "Robert Townes", "contactType": "Person",
                                     "relatedId": customer["id"], "relatedType": "Customer"}]
    expanded = http.get(f"{API}/companies({company})/contacts", params={"$expand": "contactInformation"},
                        headers=bearer).json()["value"]
    assert [len(c["contactInformation"]) for c in expanded] == [1, 1]
    assert sandbox.get(company, "contacts", "CT000010")["contactBusinessRelation"] == "Customer"

    page = http.get(f"/BC/ODataV4/Company('{COMPANY}')/ContactBusinessRelations",
                    params={"$filter": "Contact_No eq 'CT000010'"}, headers=basic())
    assert page.status_code == 200
    assert page.json()["value"] == [{"Contact_No": "CT000010", "Business_Relation_Code": "CUST",
                                     "Link_to_Table": "Customer", "No": "C00010",
                                     "Business_Relation_Description": "Customer",
                                     "Contact_Name": "Adatum Corporation"}]
    sandbox.relations_service = None
    assert http.get(f"/BC/ODataV4/Company('{COMPANY}')/ContactBusinessRelations", headers=basic()).status_code == 404


def test_nav_last_date_modified_filters_stay_exact(http: httpx.Client, sandbox: DynamicsSandbox, company: str) -> None:
    # A lower bound on the date is answered from the stored stamp first: gt, ge, a conjunction and an 'or'
    # (no bound then) must still return exactly what the filter says.
    sandbox.seed(company, "customers", [
        {"displayName": f"Customer {day}", "lastModifiedDateTime": f"2026-03-{day:02d}T23:30:00Z"}
        for day in (1, 2, 3, 4)])
    base = "/DynamicsNAV/ODataV4/Company('CRONUS%20USA%2C%20Inc.')"

    def names(expression: str) -> list[str]:
        rows = http.get(f"{base}/Customer", params={"$filter": expression}, headers=basic()).json()["value"]
        return [row["Name"] for row in rows]

    assert names("Last_Date_Modified ge 2026-03-03") == ["Customer 3", "Customer 4"]
    assert names("Last_Date_Modified gt 2026-03-03") == ["Customer 4"]
    assert names("Last_Date_Modified ge 2026-03-02 and Name eq 'Customer 2'") == ["Customer 2"]
    assert names("Last_Date_Modified ge 2026-03-04 or Last_Date_Modified le 2026-03-01") == ["Customer 1",
                                                                                            "Customer 4"]


def test_nav_card_pages_show_every_change_between_reads(http: httpx.Client, sandbox: DynamicsSandbox,
                                                        company: str) -> None:
    # Page rows of card tables are kept between reads (per row version): each kind of change must still show.
    sandbox.seed(company, "customers", [{"displayName": "Adatum", "lastModifiedDateTime": "2026-03-01T10:00:00Z"}])
    base = "/DynamicsNAV/ODataV4/Company('CRONUS%20USA%2C%20Inc.')"

    def adatum() -> dict:
        [row] = http.get(f"{base}/Customer", headers=basic()).json()["value"]
        return row

    first = adatum()
    sandbox.modify(company, "customers", first["No"], phoneNumber="+1 555 0100")
    second = adatum()
    assert second["Phone_No"] == "+1 555 0100" and second["@odata.etag"] != first["@odata.etag"]
    patched = http.patch(f"{base}/Customer('{first['No']}')", json={"Name": "Adatum Corp"},
                         headers={**basic(), "If-Match": second["@odata.etag"]})
    assert patched.status_code == 200 and adatum()["Name"] == "Adatum Corp"
    sandbox.clear_last_modified(company, "customers")
    assert adatum()["Last_Date_Modified"] == "0001-01-01"


def test_nav_posted_invoices_filtered_by_posting_date(http: httpx.Client, sandbox: DynamicsSandbox,
                                                      company: str) -> None:
    sandbox.seed(company, "customers", [{"number": "C1", "displayName": "Adatum"}])
    for day in ("2026-03-01", "2026-03-02", "2026-03-03"):
        sandbox.seed(company, "items", [{"number": f"I{day[-1]}", "displayName": "Chair", "unitPrice": 10}])
        sandbox.seed(company, "salesInvoices", [{"customerNumber": "C1", "postingDate": day, "salesInvoiceLines": [
            {"lineObjectNumber": f"I{day[-1]}", "quantity": 1}]}])
    for draft in [i for i in sandbox.records(company, "salesInvoices") if i["status"] == "Draft"]:
        sandbox.post_invoice(company, draft["number"])
    sandbox.modify(company, "salesInvoices", sandbox.records(company, "salesInvoices")[0]["number"],
                   postingDate="2026-03-01")
    base = "/DynamicsNAV/ODataV4/Company('CRONUS%20USA%2C%20Inc.')"

    def dates(expression: str) -> list[str]:
        rows = http.get(f"{base}/PostedSalesInvoice", params={"$filter": expression}, headers=basic()).json()
        return sorted(row["Posting_Date"] for row in rows["value"])

    assert dates("Posting_Date ge 2026-03-02") == ["2026-03-02", "2026-03-03"]
    assert dates("Posting_Date gt 2026-03-02") == ["2026-03-03"]
    assert dates("Posting_Date ge 2026-03-03 or Posting_Date le 2026-03-01") == ["2026-03-01", "2026-03-03"]


def test_a_table_and_page_extension_adds_a_field_to_the_card_page_but_not_to_the_standard_api(
        http: httpx.Client, bearer: dict[str, str], sandbox: DynamicsSandbox, company: str) -> None:
    base = "/DynamicsNAV/ODataV4/Company('CRONUS%20USA%2C%20Inc.')"
    sandbox.seed(company, "customers", [{"displayName": "Adatum", "lastModifiedDateTime": "2026-03-01T10:00:00Z"}])
    before = http.get(f"{base}/Customer", params={"$select": "Industry_Code"}, headers=basic())
    assert before.status_code == 400  # the page has no such control yet

    sandbox.extend_table("customers", {"industryCode": "string", "creditRating": "integer"})
    sandbox.extend_page("Customer", {"Industry_Code": "industryCode", "Credit_Rating": "creditRating"})

    [row] = http.get(f"{base}/Customer", headers=basic()).json()["value"]
    assert row["Industry_Code"] == "" and row["Credit_Rating"] == 0  # the types' blank values
    metadata = http.get("/DynamicsNAV/ODataV4/$metadata", headers=basic()).text
    assert '<Property Name="Credit_Rating" Type="Edm.Int32"/>' in metadata
    patched = http.patch(f"{base}/Customer('C00010')", headers={**basic(), "If-Match": row["@odata.etag"]},
                         json={"Industry_Code": "RETAIL", "Credit_Rating": 7})
    assert patched.status_code == 200 and patched.json()["Industry_Code"] == "RETAIL"
    found = http.get(f"{base}/Customer", params={"$filter": "Industry_Code eq 'RETAIL'"}, headers=basic())
    assert [r["No"] for r in found.json()["value"]] == ["C00010"]
    created = http.post(f"{base}/Customer", headers=basic(), json={"Name": "Trey", "Industry_Code": "FOOD"})
    assert created.status_code == 201
    assert sandbox.get(company, "customers", created.json()["No"])["industryCode"] == "FOOD"
    bad = http.patch(f"{base}/Customer('C00010')", headers={**basic(), "If-Match": "*"}, json={"Credit_Rating": "x"})
    assert bad.status_code == 400

    # API v2.0's standard customers page cannot be extended: it neither shows nor takes the field.
    api = f"{API}/companies({company})/customers"
    [customer] = [c for c in http.get(api, headers=bearer).json()["value"] if c["number"] == "C00010"]
    assert "industryCode" not in customer
    refused = http.patch(f"{api}({customer['id']})", headers={**bearer, "If-Match": "*"},
                         json={"industryCode": "X"})
    assert refused.status_code == 400
    with pytest.raises(ValueError):
        sandbox.extend_page("Customer", {"Region": "noSuchField"})
