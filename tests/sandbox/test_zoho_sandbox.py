"""The Zoho CRM sandbox behaves as Zoho documents: tokens, records, COQL, bulk write, notifications, faults."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mlconnector.sandbox.common import Faults, InProcessTransport, SandboxClock
from mlconnector.sandbox.zoho import ZohoSandbox, create_app

ZOHO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


class FrozenClock(SandboxClock):
    """Sandbox time that moves only when the test advances it, so equal Modified_Times are certain."""

    def __init__(self) -> None:
        super().__init__()
        self.start = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self.start + self.offset


@dataclass
class Receiver:
    """A tiny webhook endpoint standing in for the connector's listener."""

    bodies: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def notify(request: Request) -> JSONResponse:
            self.bodies.append(await request.json())
            return JSONResponse({"ok": True})
        return Starlette(routes=[Route("/zoho/notify", notify, methods=["POST"]),
                                 Route("/zoho/bulk", notify, methods=["POST"])])


@dataclass
class Sandbox:
    app: Starlette
    zoho: ZohoSandbox
    transport: InProcessTransport
    http: httpx.Client
    receiver: Receiver
    clock: FrozenClock
    client_id: str = ""
    client_secret: str = ""

    def token(self, **form: str) -> httpx.Response:
        return self.http.post("/oauth/v2/token", data=form)

    def login(self) -> str:
        """Authorise the http client with a fresh access token; returns the refresh token."""
        refresh = self.zoho.issue_refresh_token(self.client_id)
        body = self.token(grant_type="refresh_token", client_id=self.client_id, client_secret=self.client_secret,
                          refresh_token=refresh).json()
        self.http.headers["Authorization"] = f"Zoho-oauthtoken {body['access_token']}"
        return refresh

    def drain(self) -> None:
        self.transport.run(self.zoho.drain)


def make_sandbox(faults: str | None = None, **kwargs: Any) -> Iterator[Sandbox]:
    clock = FrozenClock()
    receiver = Receiver()
    app = create_app(clock=clock, faults=faults, notify_transport=httpx.ASGITransport(app=receiver.app()), **kwargs)
    transport = InProcessTransport(app)
    http = httpx.Client(transport=transport, base_url="https://www.zohoapis.com")
    sandbox = Sandbox(app, app.state.zoho, transport, http, receiver, clock)
    client = sandbox.zoho.register_client("1000.CLIENT", "s3cret", redirect_uri="http://localhost/callback")
    sandbox.client_id, sandbox.client_secret = client.client_id, client.client_secret
    yield sandbox
    http.close()
    transport.close()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    yield from make_sandbox()


@pytest.fixture
def crm(sandbox: Sandbox) -> Sandbox:
    """A sandbox whose http client already carries a valid access token."""
    sandbox.login()
    return sandbox


# -- OAuth ------------------------------------------------------------------------------------------------------

def exchange_code(sandbox: Sandbox, code: str) -> dict[str, Any]:
    response = sandbox.token(grant_type="authorization_code", client_id=sandbox.client_id,
                             client_secret=sandbox.client_secret, code=code, redirect_uri="http://localhost/callback")
    assert response.status_code == 200  # Zoho answers 200 even for errors
    return response.json()


def test_grant_code_exchanges_once_for_a_refresh_and_access_token(sandbox: Sandbox) -> None:
    code = sandbox.zoho.issue_grant_code(sandbox.client_id, redirect_uri="http://localhost/callback")
    first = exchange_code(sandbox, code)
    assert first["expires_in"] == 3600 and first["token_type"] == "Bearer"
    assert first["api_domain"] == "https://www.zohoapis.com"
    assert first["refresh_token"] and first["access_token"]
    assert exchange_code(sandbox, code) == {"error": "invalid_code"}


def test_grant_code_expires_after_three_minutes(sandbox: Sandbox) -> None:
    code = sandbox.zoho.issue_grant_code(sandbox.client_id)
    sandbox.zoho.advance(minutes=3, seconds=1)
    assert exchange_code(sandbox, code) == {"error": "invalid_code"}


def test_refresh_token_mints_ten_access_tokens_per_ten_minutes(sandbox: Sandbox) -> None:
    refresh = sandbox.zoho.issue_refresh_token(sandbox.client_id)
    form = dict(grant_type="refresh_token", client_id=sandbox.client_id, client_secret=sandbox.client_secret,
                refresh_token=refresh)
    for _ in range(10):
        assert "access_token" in sandbox.token(**form).json()
    throttled = sandbox.token(**form)
    assert throttled.status_code == 200
    assert throttled.json()["error"] == "Access Denied"
    assert "too many requests" in throttled.json()["error_description"]
    sandbox.zoho.advance(minutes=10)
    assert "access_token" in sandbox.token(**form).json()


def test_client_is_unknown_to_another_data_centres_accounts_server(sandbox: Sandbox) -> None:
    form = dict(grant_type="refresh_token", client_id=sandbox.client_id, client_secret=sandbox.client_secret,
                refresh_token=sandbox.zoho.issue_refresh_token(sandbox.client_id))
    assert sandbox.http.post("/accounts/eu/oauth/v2/token", data=form).json() == {"error": "invalid_client"}
    eu_host = sandbox.http.post("/oauth/v2/token", data=form, headers={"Host": "accounts.zoho.eu"})
    assert eu_host.json() == {"error": "invalid_client"}
    assert "access_token" in sandbox.http.post("/accounts/us/oauth/v2/token", data=form).json()


def test_tokens_from_another_data_centre_do_not_open_this_one(sandbox: Sandbox) -> None:
    eu = sandbox.zoho.register_client("1000.EU", "eu-secret", data_centre="eu")
    body = sandbox.http.post("/accounts/eu/oauth/v2/token", data=dict(
        grant_type="refresh_token", client_id=eu.client_id, client_secret=eu.client_secret,
        refresh_token=sandbox.zoho.issue_refresh_token(eu.client_id))).json()
    assert body["api_domain"] == "https://www.zohoapis.eu"
    sandbox.http.headers["Authorization"] = f"Zoho-oauthtoken {body['access_token']}"
    assert sandbox.http.get("/crm/v8/org").json()["code"] == "INVALID_TOKEN"


def test_wrong_secret_and_unknown_client(sandbox: Sandbox) -> None:
    refresh = sandbox.zoho.issue_refresh_token(sandbox.client_id)
    assert sandbox.token(grant_type="refresh_token", client_id=sandbox.client_id, client_secret="nope",
                         refresh_token=refresh).json() == {"error": "invalid_client_secret"}
    assert sandbox.token(grant_type="refresh_token", client_id="1000.OTHER", client_secret="x",
                         refresh_token=refresh).json() == {"error": "invalid_client"}


def test_token_parameters_in_the_query_string_work_as_in_zohos_docs(sandbox: Sandbox) -> None:
    refresh = sandbox.zoho.issue_refresh_token(sandbox.client_id)
    response = sandbox.http.post("/oauth/v2/token", params=dict(
        grant_type="refresh_token", client_id=sandbox.client_id, client_secret=sandbox.client_secret,
        refresh_token=refresh))
    assert "access_token" in response.json()


def test_revoked_refresh_token_stops_minting_and_kills_its_access_tokens(crm: Sandbox) -> None:
    refresh = crm.login()
    assert crm.http.get("/crm/v8/org").status_code == 200
    crm.zoho.revoke_refresh_token(refresh)
    assert crm.http.get("/crm/v8/org").status_code == 401
    again = crm.token(grant_type="refresh_token", client_id=crm.client_id, client_secret=crm.client_secret,
                      refresh_token=refresh)
    assert again.json() == {"error": "invalid_code"}


def test_access_token_expires_after_an_hour(crm: Sandbox) -> None:
    crm.zoho.advance(minutes=59)
    assert crm.http.get("/crm/v8/org").status_code == 200
    crm.zoho.advance(minutes=1)
    response = crm.http.get("/crm/v8/org")
    assert response.status_code == 401
    assert response.json() == {"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token",
                               "status": "error"}


def test_missing_authorization_is_an_authentication_failure(sandbox: Sandbox) -> None:
    response = sandbox.http.get("/crm/v8/org")
    assert response.status_code == 401
    assert response.json()["code"] == "AUTHENTICATION_FAILURE"


def test_client_credentials_need_the_org_as_soid(sandbox: Sandbox) -> None:
    form = dict(grant_type="client_credentials", client_id=sandbox.client_id, client_secret=sandbox.client_secret,
                scope="ZohoCRM.org.READ")
    assert sandbox.token(**form).json() == {"error": "missing_org_info"}
    body = sandbox.token(**form, soid=f"ZohoCRM.{sandbox.zoho.zgid}").json()
    assert "refresh_token" not in body
    sandbox.http.headers["Authorization"] = f"Zoho-oauthtoken {body['access_token']}"
    assert sandbox.http.get("/crm/v8/org").status_code == 200
    mismatch = sandbox.http.get("/crm/v8/Accounts", params={"fields": "Account_Name"})
    assert mismatch.status_code == 401 and mismatch.json()["code"] == "OAUTH_SCOPE_MISMATCH"


# -- records ----------------------------------------------------------------------------------------------------

def test_insert_get_update_delete_round_trip(crm: Sandbox) -> None:
    created = crm.http.post("/crm/v8/Accounts", json={"data": [{"Account_Name": "Acme", "ERP_Number": "C100"}]})
    assert created.status_code == 201
    item = created.json()["data"][0]
    assert item["code"] == "SUCCESS" and item["message"] == "record added"
    record_id = item["details"]["id"]
    assert len(record_id) == 19 and record_id.isdigit()
    assert ZOHO_TIME.match(item["details"]["Created_Time"])
    assert item["details"]["Created_Time"].endswith("-08:00")  # the org user's zone (Los Angeles, January)

    crm.zoho.advance(seconds=5)
    updated = crm.http.put("/crm/v8/Accounts", json={"data": [{"id": record_id, "Phone": "555-0100"}]})
    assert updated.status_code == 200 and updated.json()["data"][0]["message"] == "record updated"
    record = crm.http.get(f"/crm/v8/Accounts/{record_id}").json()["data"][0]
    assert record["Phone"] == "555-0100" and record["ERP_Number"] == "C100"
    assert record["Modified_Time"] > record["Created_Time"]
    assert record["Created_By"] == {"name": "Patricia Boyle", "id": crm.zoho.user.id}

    deleted = crm.http.delete("/crm/v8/Accounts", params={"ids": record_id})
    assert deleted.json()["data"][0]["message"] == "record deleted"
    assert crm.http.get(f"/crm/v8/Accounts/{record_id}").status_code == 204


def test_text_over_the_fields_length_is_refused_except_in_multi_line_fields_and_system_fields_are_ignored(
        crm: Sandbox) -> None:
    long = "x" * 256  # Account_Name takes 200 characters, Description (multi-line) 32,000
    answer = crm.http.post("/crm/v8/Accounts", json={"data": [
        {"Account_Name": long},
        {"Account_Name": "Acme", "Description": long, "Created_Time": "2001-01-01T00:00:00+00:00",
         "$approved": False, "Employees": 12, "Tag": [{"name": "erp"}]}]})
    assert answer.status_code == 207
    refused, added = answer.json()["data"]
    assert refused["code"] == "INVALID_DATA" and refused["details"]["api_name"] == "Account_Name"
    assert refused["details"]["maximum_length"] == 200 and refused["details"]["json_path"] == "$.data[0].Account_Name"
    record = crm.http.get(f"/crm/v8/Accounts/{added['details']['id']}").json()["data"][0]
    assert record["Description"] == long and record["Employees"] == 12 and record["Tag"] == [{"name": "erp"}]
    assert record["Created_Time"] == added["details"]["Created_Time"] != "2001-01-01T00:00:00+00:00"
    assert "$approved" not in record


def test_list_needs_fields_and_a_known_module(crm: Sandbox) -> None:
    missing = crm.http.get("/crm/v8/Accounts")
    assert missing.status_code == 400
    assert missing.json() == {"code": "REQUIRED_PARAM_MISSING", "details": {"param_name": "fields"},
                              "message": "required param is missing", "status": "error"}
    assert crm.http.get("/crm/v8/Accounts", params={"fields": "Account_Name"}).status_code == 204
    bad = crm.http.get("/crm/v8/Widgets", params={"fields": "Name"})
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_MODULE"


def test_update_of_an_unknown_id_fails_per_record(crm: Sandbox) -> None:
    response = crm.http.put("/crm/v8/Accounts", json={"data": [{"id": "5725767000000000001", "Phone": "1"}]})
    assert response.status_code == 400
    assert response.json()["data"][0]["code"] == "INVALID_DATA"


def test_mandatory_fields_and_lookups_are_checked(crm: Sandbox) -> None:
    response = crm.http.post("/crm/v8/Contacts", json={"data": [
        {"First_Name": "Ann"},
        {"Last_Name": "Lee", "Account_Name": {"id": "5725767000000999999"}},
    ]})
    assert response.status_code == 400
    first, second = response.json()["data"]
    assert first == {"code": "MANDATORY_NOT_FOUND", "details": {"api_name": "Last_Name",
                                                                "json_path": "$.data[0].Last_Name"},
                     "message": "required field not found", "status": "error"}
    assert second["code"] == "INVALID_DATA"
    assert second["details"]["json_path"] == "$.data[1].Account_Name"

    deal = crm.http.post("/crm/v8/Deals", json={"data": [{"Deal_Name": "Big"}]}).json()["data"][0]
    assert deal["details"]["api_name"] == "Stage"


def test_line_items_need_existing_products_and_come_back_only_on_single_reads(crm: Sandbox) -> None:
    account_id, = crm.zoho.seed("Accounts", [{"Account_Name": "Acme"}])
    product_id, = crm.zoho.seed("Products", [{"Product_Name": "Widget", "Unit_Price": 2.5}])
    bad = crm.http.post("/crm/v8/Sales_Orders", json={"data": [
        {"Subject": "SO-1", "Ordered_Items": [{"Product_Name": {"id": "5725767000000999999"}, "Quantity": 1}]},
        {"Subject": "SO-2", "Ordered_Items": []},
    ]}).json()["data"]
    assert bad[0]["code"] == "INVALID_DATA"
    assert bad[0]["details"]["json_path"] == "$.data[0].Ordered_Items[0].Product_Name"
    assert bad[1]["code"] == "MANDATORY_NOT_FOUND" and bad[1]["details"]["api_name"] == "Ordered_Items"

    created = crm.http.post("/crm/v8/Sales_Orders", json={"data": [{
        "Subject": "SO-3", "Account_Name": {"id": account_id},
        "Ordered_Items": [{"Product_Name": {"id": product_id}, "quantity": 4}]}]})
    assert created.status_code == 201
    order_id = created.json()["data"][0]["details"]["id"]
    full = crm.http.get(f"/crm/v8/Sales_Orders/{order_id}").json()["data"][0]
    line, = full["Ordered_Items"]
    assert line["Product_Name"] == {"name": "Widget", "id": product_id}
    assert line["Quantity"] == 4 and line["Total"] == 10.0 and line["id"]
    assert full["Account_Name"] == {"name": "Acme", "id": account_id}
    listed = crm.http.get("/crm/v8/Sales_Orders", params={"fields": "Subject,Ordered_Items"}).json()["data"][0]
    assert "Ordered_Items" not in listed
    coql = crm.http.post("/crm/v8/coql", json={
        "select_query": "select Subject, Ordered_Items from Sales_Orders where Subject = 'SO-3'"}).json()
    assert "Ordered_Items" not in coql["data"][0]


def test_edition_decides_which_modules_exist(crm: Sandbox) -> None:
    crm.zoho.set_edition("standard")
    org = crm.http.get("/crm/v8/org").json()["org"][0]
    assert org["license_details"]["paid_type"] == "standard"
    assert crm.http.get("/crm/v8/Invoices", params={"fields": "Subject"}).json()["code"] == "INVALID_MODULE"


def test_unknown_paths_and_methods_answer_in_zohos_shape(crm: Sandbox) -> None:
    assert crm.http.get("/crm/v8/Accounts/1/2/3").json()["code"] == "INVALID_URL_PATTERN"
    wrong = crm.http.patch("/crm/v8/Accounts")
    assert wrong.status_code == 400 and wrong.json()["code"] == "INVALID_REQUEST_METHOD"


def test_org_and_current_user(crm: Sandbox) -> None:
    org = crm.http.get("/crm/v8/org").json()["org"][0]
    assert org["zgid"] == crm.zoho.zgid and org["license_details"]["paid_type"] == "enterprise"
    users = crm.http.get("/crm/v8/users", params={"type": "CurrentUser"}).json()
    assert users["users"][0]["email"] == crm.zoho.user.email


def test_multi_currency_adds_currency_and_exchange_rate_to_records_that_keep_amounts(crm: Sandbox) -> None:
    product, = crm.zoho.seed("Products", [{"Product_Name": "Desk"}])
    items = [{"Product_Name": {"id": product}, "Quantity": 2, "List_Price": 50}]
    before, = crm.zoho.seed("Invoices", [{"Subject": "Before", "Invoiced_Items": items}])
    # Without multi-currency records carry no Currency field, and a write naming one is refused.
    assert "Currency" not in crm.http.get(f"/crm/v8/Invoices/{before}").json()["data"][0]
    refused = crm.http.post("/crm/v8/Invoices", json={"data": [{"Subject": "X", "Currency": "EUR",
                                                                "Invoiced_Items": items}]}).json()["data"][0]
    assert refused["code"] == "INVALID_DATA" and refused["details"]["api_name"] == "Currency"
    assert crm.http.get("/crm/v8/org").json()["org"][0]["mc_status"] is False

    crm.zoho.enable_multi_currency("USD")
    crm.zoho.add_currency("EUR", "0.92")
    org = crm.http.get("/crm/v8/org").json()["org"][0]
    assert (org["mc_status"], org["iso_code"]) == (True, "USD")
    listed = crm.http.get("/crm/v8/org/currencies").json()["currencies"]
    assert [(c["iso_code"], c["is_base"], c["exchange_rate"]) for c in listed] == [("USD", True, "1"),
                                                                                 ("EUR", False, "0.92")]
    made = crm.http.post("/crm/v8/Invoices", json={"data": [
        {"Subject": "Euro", "Currency": "EUR", "Invoiced_Items": items},
        {"Subject": "Home", "Invoiced_Items": items},
        {"Subject": "Yen", "Currency": "JPY", "Invoiced_Items": items}]}).json()["data"]
    assert [m["code"] for m in made] == ["SUCCESS", "SUCCESS", "INVALID_DATA"]  # only active currencies
    read = {r["Subject"]: r for r in crm.http.get("/crm/v8/Invoices", params={
        "fields": "Subject,Currency,Exchange_Rate,Grand_Total"}).json()["data"]}
    assert (read["Euro"]["Currency"], read["Euro"]["Exchange_Rate"], read["Euro"]["Grand_Total"]) == ("EUR", 0.92,
                                                                                                      100.0)
    assert (read["Home"]["Currency"], read["Home"]["Exchange_Rate"]) == ("USD", 1.0)
    assert (read["Before"]["Currency"], read["Before"]["Exchange_Rate"]) == ("USD", 1.0)  # set on activation


# -- upsert -----------------------------------------------------------------------------------------------------

def test_upsert_matches_on_system_then_marked_unique_fields(crm: Sandbox) -> None:
    crm.zoho.mark_unique("Accounts", "ERP_Number")
    existing, = crm.zoho.seed("Accounts", [{"Account_Name": "Old Name", "ERP_Number": "C100"}])
    response = crm.http.post("/crm/v8/Accounts/upsert", json={
        "data": [{"Account_Name": "New Name", "ERP_Number": "C100"},
                 {"Account_Name": "Fresh", "ERP_Number": "C200"}],
        "duplicate_check_fields": ["ERP_Number"]})
    assert response.status_code == 200
    updated, inserted = response.json()["data"]
    assert updated["action"] == "update" and updated["duplicate_field"] == "ERP_Number"
    assert updated["details"]["id"] == existing and updated["message"] == "record updated"
    assert inserted["action"] == "insert" and inserted["duplicate_field"] is None
    assert crm.zoho.record("Accounts", existing)["Account_Name"] == "New Name"

    # without duplicate_check_fields the system field (Account_Name) is checked first
    again = crm.http.post("/crm/v8/Accounts/upsert", json={"data": [{"Account_Name": "fresh", "Phone": "1"}]})
    assert again.json()["data"][0]["duplicate_field"] == "Account_Name"
    assert len(crm.zoho.records("Accounts")) == 2


def test_unique_fields_refuse_duplicates_on_insert(crm: Sandbox) -> None:
    crm.zoho.mark_unique("Accounts", "ERP_Number")
    crm.zoho.seed("Accounts", [{"Account_Name": "A", "ERP_Number": "C1"}])
    response = crm.http.post("/crm/v8/Accounts", json={"data": [{"Account_Name": "B", "ERP_Number": "c1"}]})
    assert response.status_code == 400
    assert response.json()["data"][0]["code"] == "DUPLICATE_DATA"


def test_upsert_takes_at_most_100_records_and_reports_mixed_results_as_207(crm: Sandbox) -> None:
    too_many = crm.http.post("/crm/v8/Accounts/upsert",
                             json={"data": [{"Account_Name": f"A{i}"} for i in range(101)]})
    assert too_many.status_code == 400 and too_many.json()["code"] == "LIMIT_EXCEEDED"
    mixed = crm.http.post("/crm/v8/Accounts/upsert", json={"data": [{"Account_Name": "A"}, {"Phone": "1"}]})
    assert mixed.status_code == 207
    assert [i["status"] for i in mixed.json()["data"]] == ["success", "error"]
    none = crm.http.post("/crm/v8/Accounts/upsert", json={"data": [{"Phone": "1"}]})
    assert none.status_code == 400


def test_writes_are_charged_one_credit_per_ten_records(crm: Sandbox) -> None:
    crm.zoho.reset_counters()
    crm.http.post("/crm/v8/Accounts/upsert", json={"data": [{"Account_Name": f"A{i}"} for i in range(25)]})
    assert crm.zoho.credits == 3 and crm.zoho.calls["records.upsert"] == 1


# -- COQL -------------------------------------------------------------------------------------------------------

def coql(crm: Sandbox, query: str) -> httpx.Response:
    return crm.http.post("/crm/v8/coql", json={"select_query": query})


def test_coql_incremental_read_with_tie_breaker_pages_without_gaps(crm: Sandbox) -> None:
    crm.zoho.seed("Accounts", [{"Account_Name": f"Early {i}"} for i in range(5)])
    crm.zoho.advance(minutes=1)
    same_second = crm.zoho.seed("Accounts", [{"Account_Name": f"Tied {i}"} for i in range(450)])
    since = (crm.clock.now() - timedelta(seconds=30)).isoformat()
    seen: list[str] = []
    cursor: tuple[str, str] | None = None
    while True:
        if cursor is None:
            where = f"(Modified_Time >= '{since}')"
        else:
            stamp, last_id = cursor
            where = f"((Modified_Time > '{stamp}') or (Modified_Time = '{stamp}' and id > '{last_id}'))"
        response = coql(crm, f"select Account_Name, Modified_Time from Accounts where {where} "
                             f"order by Modified_Time asc, id asc limit 0, 200")
        if response.status_code == 204:
            break
        body = response.json()
        seen += [r["id"] for r in body["data"]]
        last = body["data"][-1]
        cursor = (last["Modified_Time"], last["id"])
        if not body["info"]["more_records"]:
            break
    assert seen == same_second  # in id order, none twice, none missed


def test_coql_offset_paging_more_records_and_204(crm: Sandbox) -> None:
    crm.zoho.seed("Accounts", [{"Account_Name": f"A{i:03}"} for i in range(250)])
    first = coql(crm, "select Account_Name from Accounts where Account_Name like 'A%' order by id asc limit 200")
    assert first.json()["info"] == {"count": 200, "more_records": True}
    second = coql(crm, "select Account_Name from Accounts where Account_Name like 'A%' "
                       "order by id asc limit 200 offset 200")
    assert second.json()["info"] == {"count": 50, "more_records": False}
    assert coql(crm, "select Account_Name from Accounts where Account_Name = 'nobody'").status_code == 204


def test_coql_errors(crm: Sandbox) -> None:
    no_where = coql(crm, "select Account_Name from Accounts")
    assert no_where.status_code == 400
    assert no_where.json() == {"code": "SYNTAX_ERROR", "details": {"clause": "where"}, "message": "missing clause",
                               "status": "error"}
    chained = coql(crm, "select id from Accounts where Phone = '1' and Fax = '2' and Website = '3'")
    assert chained.json()["code"] == "SYNTAX_ERROR"
    too_big = coql(crm, "select id from Accounts where id is not null limit 2001")
    assert too_big.json()["code"] == "LIMIT_EXCEEDED"
    too_far = coql(crm, "select id from Accounts where id is not null limit 99000, 2000")
    assert too_far.json()["code"] == "LIMIT_EXCEEDED"
    bad_module = coql(crm, "select id from Widgets where id is not null")
    assert bad_module.json()["code"] == "INVALID_MODULE"
    naive = coql(crm, "select id from Accounts where Modified_Time > '2026-01-01T00:00:00'")
    assert naive.json()["code"] == "INVALID_QUERY"
    missing = crm.http.post("/crm/v8/coql", json={})
    assert missing.json()["code"] == "MANDATORY_NOT_FOUND"


def test_coql_credits_follow_the_limit(crm: Sandbox) -> None:
    crm.zoho.seed("Accounts", [{"Account_Name": "A"}])
    crm.zoho.reset_counters()
    coql(crm, "select id from Accounts where id is not null limit 200")
    coql(crm, "select id from Accounts where id is not null limit 1000")
    coql(crm, "select id from Accounts where id is not null limit 2000")
    assert crm.zoho.credits == 1 + 2 + 3


# -- list paging ------------------------------------------------------------------------------------------------

def test_pages_stop_at_2000_records_and_page_token_goes_on(crm: Sandbox) -> None:
    crm.zoho.seed("Accounts", [{"Account_Name": f"A{i}"} for i in range(2100)])
    params = {"fields": "Account_Name", "per_page": "200", "sort_order": "asc"}
    beyond = crm.http.get("/crm/v8/Accounts", params={**params, "page": "11"})
    assert beyond.status_code == 400 and beyond.json()["code"] == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"

    ids: list[str] = []
    token = None
    while True:
        response = crm.http.get("/crm/v8/Accounts", params={**params, **({"page_token": token} if token else {})})
        body = response.json()
        ids += [r["id"] for r in body["data"]]
        if not body["info"]["more_records"]:
            break
        token = body["info"]["next_page_token"]
    assert len(ids) == len(set(ids)) == 2100

    first = crm.http.get("/crm/v8/Accounts", params=params).json()["info"]["next_page_token"]
    mismatch = crm.http.get("/crm/v8/Accounts", params={**params, "fields": "Phone", "page_token": first})
    assert mismatch.json()["code"] == "TOKEN_BOUND_DATA_MISMATCH"
    both = crm.http.get("/crm/v8/Accounts", params={**params, "page": "1", "page_token": first})
    assert both.json()["code"] == "AMBIGUITY_DURING_PROCESSING"
    crm.zoho.advance(hours=24)
    crm.login()
    assert crm.http.get("/crm/v8/Accounts", params={**params, "page_token": first}).json()["code"] == "EXPIRED_VALUE"


# -- Bulk Write -------------------------------------------------------------------------------------------------

def zipped_csv(rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Accounts.csv", text.getvalue())
    return buffer.getvalue()


def test_bulk_write_upload_job_poll_and_result(crm: Sandbox) -> None:
    crm.zoho.seed("Accounts", [{"Account_Name": "Existing", "Phone": "old"}])
    upload = crm.http.post("/crm/v8/upload", files={"file": ("data.zip", zipped_csv([
        ["Account_Name", "Phone"], ["New One", "1"], ["", "2"], ["Existing", "3"]]), "application/zip")},
        headers={"feature": "bulk-write", "X-CRM-ORG": crm.zoho.zgid})
    assert upload.status_code == 200 and upload.json()["code"] == "FILE_UPLOAD_SUCCESS"
    file_id = upload.json()["details"]["file_id"]

    job = crm.http.post("/crm/bulk/v8/write", json={
        "operation": "upsert", "callback": {"url": "http://receiver.test/zoho/bulk", "method": "post"},
        "resource": [{"type": "data", "module": {"api_name": "Accounts"}, "file_id": file_id,
                      "find_by": "Account_Name",
                      "field_mappings": [{"api_name": "Account_Name", "index": 0}, {"api_name": "Phone", "index": 1}]}]})
    assert job.status_code == 201
    job_id = job.json()["details"]["id"]
    assert crm.zoho.credits >= 500

    polled = crm.http.get(f"/crm/bulk/v8/write/{job_id}").json()
    assert polled["status"] == "IN PROGRESS" and "result" not in polled
    done = crm.http.get(f"/crm/bulk/v8/write/{job_id}").json()
    assert done["status"] == "COMPLETED"
    counts = {k: v for k, v in done["resource"][0]["file"].items() if k.endswith("_count")}
    assert counts == {"added_count": 1, "updated_count": 1, "skipped_count": 1, "total_count": 3}
    result_path = done["result"]["download_url"].replace(crm.zoho.api_domain, "")
    archive = zipfile.ZipFile(io.BytesIO(crm.http.get(result_path).content))
    rows = list(csv.DictReader(io.StringIO(archive.read(archive.namelist()[0]).decode())))
    assert [r["STATUS"] for r in rows] == ["ADDED", "SKIPPED", "UPDATED"]
    assert rows[1]["ERRORS"] == "MANDATORY_NOT_FOUND-Account_Name"
    assert {r["Account_Name"]: r["Phone"] for r in crm.zoho.records("Accounts")} == {"Existing": "3", "New One": "1"}
    crm.drain()
    assert crm.receiver.bodies[-1]["id"] == job_id and crm.receiver.bodies[-1]["status"] == "COMPLETED"


def test_bulk_write_rejects_bad_uploads_and_jobs(crm: Sandbox) -> None:
    no_header = crm.http.post("/crm/v8/upload", files={"file": ("d.zip", b"x")})
    assert no_header.json()["message"] == "Required key feature is not available"
    not_zip = crm.http.post("/crm/v8/upload", files={"file": ("d.csv", b"a,b\n1,2\n")},
                            headers={"feature": "bulk-write", "X-CRM-ORG": crm.zoho.zgid})
    assert not_zip.json()["code"] == "INVALID_FILE_FORMAT"
    bad_file = crm.http.post("/crm/bulk/v8/write", json={"operation": "insert", "resource": [
        {"type": "data", "module": {"api_name": "Accounts"}, "file_id": "123"}]})
    assert bad_file.status_code == 400 and bad_file.json()["code"] == "INVALID_FILE_ID"
    assert crm.http.get("/crm/bulk/v8/write/1").status_code == 404


# -- notifications ----------------------------------------------------------------------------------------------

def enable(crm: Sandbox, **extra: Any) -> httpx.Response:
    return crm.http.post("/crm/v8/actions/watch", json={"watch": [{
        "channel_id": "1000000068001", "events": ["Accounts.all", "Contacts.edit"],
        "notify_url": "http://receiver.test/zoho/notify?key1=val1", "token": "verify-me",
        "return_affected_field_values": True, **extra}]})


def test_watch_channel_lifecycle_and_real_notifications(crm: Sandbox) -> None:
    expiry = (crm.clock.now() + timedelta(hours=2)).isoformat()
    enabled = enable(crm, channel_expiry=expiry)
    assert enabled.status_code == 201
    events = enabled.json()["watch"][0]["details"]["events"]
    assert {e["resource_name"] for e in events} == {"Accounts", "Contacts"}

    listed = crm.http.get("/crm/v8/actions/watch").json()
    assert {w["resource_name"] for w in listed["watch"]} == {"Accounts", "Contacts"}

    created = crm.http.post("/crm/v8/Accounts", json={"data": [{"Account_Name": "Acme"}, {"Account_Name": "B"}]})
    ids = [i["details"]["id"] for i in created.json()["data"]]
    crm.http.put("/crm/v8/Accounts", json={"data": [{"id": ids[0], "Phone": "555"}]})
    crm.http.post("/crm/v8/Contacts", json={"data": [{"Last_Name": "Only edits are watched"}]})
    crm.drain()
    insert, update = crm.receiver.bodies
    assert insert["operation"] == "insert" and insert["ids"] == ids and insert["module"] == "Accounts"
    assert insert["channel_id"] == "1000000068001" and insert["token"] == "verify-me"
    assert insert["query_params"] == {"key1": "val1"} and isinstance(insert["server_time"], int)
    assert update["operation"] == "update" and update["affected_fields"] == [{ids[0]: ["Phone"]}]
    assert update["affected_values"] == [{"record_id": ids[0], "values": {"Phone": "555"}}]

    patched = crm.http.patch("/crm/v8/actions/watch", json={"watch": [
        {"channel_id": "1000000068001", "events": ["Accounts.all"], "_delete_events": True}]})
    assert patched.status_code == 200
    assert [w["resource_name"] for w in crm.http.get("/crm/v8/actions/watch").json()["watch"]] == ["Contacts"]
    disabled = crm.http.delete("/crm/v8/actions/watch", params={"channel_ids": "1000000068001"})
    assert disabled.json()["watch"][0]["message"] == "Successfully un-subscribed from actions-watch"
    assert crm.http.get("/crm/v8/actions/watch").status_code == 204


def test_expired_channel_delivers_nothing(crm: Sandbox) -> None:
    enable(crm)  # no channel_expiry: one hour
    crm.zoho.advance(minutes=61)
    crm.login()
    crm.http.post("/crm/v8/Accounts", json={"data": [{"Account_Name": "Late"}]})
    crm.drain()
    assert crm.receiver.bodies == [] and crm.zoho.deliveries == []
    assert crm.http.get("/crm/v8/actions/watch").status_code == 204


def test_channel_expiry_beyond_a_week_falls_back_to_an_hour_and_token_is_capped(crm: Sandbox) -> None:
    far = (crm.clock.now() + timedelta(days=8)).isoformat()
    enable(crm, channel_expiry=far)
    listed = crm.http.get("/crm/v8/actions/watch").json()["watch"][0]
    expiry = datetime.fromisoformat(listed["channel_expiry"])
    assert expiry - crm.clock.now() == timedelta(hours=1)
    long_token = enable(crm, channel_id="2", token="x" * 51)
    assert long_token.status_code == 400 and long_token.json()["watch"][0]["code"] == "INVALID_DATA"


def test_user_edit_in_the_crm_notifies_watchers(crm: Sandbox) -> None:
    enable(crm)
    record_id, = crm.zoho.seed("Accounts", [{"Account_Name": "Acme"}])
    crm.zoho.edit("Accounts", record_id, Website="https://acme.test")
    crm.drain()
    assert crm.receiver.bodies[0]["affected_fields"] == [{record_id: ["Website"]}]


# -- faults -----------------------------------------------------------------------------------------------------

def test_injected_throttling_answers_429_with_retry_after() -> None:
    for sandbox in make_sandbox("429=1,retry_after=7"):
        sandbox.login()
        response = sandbox.http.get("/crm/v8/org")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        assert response.json()["code"] == "TOO_MANY_REQUESTS"
        assert sandbox.zoho.credits == 0


def test_injected_server_errors() -> None:
    for sandbox in make_sandbox("5xx=1,seed=3"):
        sandbox.login()
        statuses = {sandbox.http.get("/crm/v8/org").status_code for _ in range(20)}
        assert statuses == {500, 503}


def test_token_ttl_fault_expires_tokens_early() -> None:
    for sandbox in make_sandbox("token_ttl=5"):
        sandbox.login()
        assert sandbox.http.get("/crm/v8/org").status_code == 200
        sandbox.zoho.advance(seconds=6)
        assert sandbox.http.get("/crm/v8/org").json()["code"] == "INVALID_TOKEN"


def test_dropped_notifications_are_recorded_but_not_sent() -> None:
    for sandbox in make_sandbox("drop=1"):
        sandbox.login()
        enable(sandbox)
        sandbox.http.post("/crm/v8/Accounts", json={"data": [{"Account_Name": "Acme"}]})
        sandbox.drain()
        assert sandbox.receiver.bodies == []
        assert [d.dropped for d in sandbox.zoho.deliveries] == [True]


def test_faults_object_can_be_passed_directly() -> None:
    for sandbox in make_sandbox(Faults.parse("latency=1ms")):  # type: ignore[arg-type]
        sandbox.login()
        assert sandbox.http.get("/crm/v8/org").status_code == 200


# -- concurrency limits -----------------------------------------------------------------------------------------

Send = tuple[str, str, dict[str, Any]]


def at_once(sandbox: Sandbox, calls: list[Send], headers: dict[str, str] | None = None) -> list[httpx.Response]:
    """Send every call at the same moment (on the app's loop), so that with latency all are in flight together."""
    async def send_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=sandbox.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://www.zohoapis.com",
                                     headers=headers or dict(sandbox.http.headers)) as client:
            return list(await asyncio.gather(*(client.request(m, u, **kw) for m, u, kw in calls)))
    return sandbox.transport.run(send_all)


def upsert(count: int, tag: str = "A") -> Send:
    return "POST", "/crm/v8/Accounts/upsert", {"json": {"data": [{"Account_Name": f"{tag}{i}"} for i in range(count)]}}


COQL_CALL: Send = ("POST", "/crm/v8/coql", {"json": {"select_query": "select Account_Name from Accounts where "
                                                                      "Account_Name is not null limit 10"}})
LIGHT_CALL: Send = ("GET", "/crm/v8/org", {})


def test_an_eleventh_heavy_write_in_flight_is_refused_with_429() -> None:
    for sandbox in make_sandbox("latency=50ms"):
        sandbox.login()
        answers = at_once(sandbox, [upsert(11, f"T{n}-") for n in range(11)])
        refused = [a for a in answers if a.status_code == 429]
        assert len(refused) == 1
        assert refused[0].json()["code"] == "TOO_MANY_REQUESTS" and refused[0].headers["Retry-After"] == "1"
        assert sum(a.status_code == 200 for a in answers) == 10
        zoho = sandbox.zoho
        assert zoho.concurrency_refused == 1 and zoho.peak_heavy_in_flight == 10 and zoho.peak_in_flight == 10
        assert zoho.credits == 10 * 2 and zoho.calls["records.upsert"] == 10  # the refused call costs nothing
        assert not zoho.in_flight and not zoho.heavy_in_flight


def test_writes_of_ten_records_are_not_resource_intensive() -> None:
    for sandbox in make_sandbox("latency=50ms"):
        sandbox.login()
        answers = at_once(sandbox, [upsert(10, f"T{n}-") for n in range(15)])
        assert [a.status_code for a in answers] == [200] * 15
        assert sandbox.zoho.peak_heavy_in_flight == 0 and sandbox.zoho.peak_in_flight == 15


def test_ten_heavy_calls_and_light_ones_up_to_the_edition_limit_pass() -> None:
    for sandbox in make_sandbox("latency=50ms"):  # enterprise: 20 at once
        sandbox.login()
        sandbox.zoho.seed("Accounts", [{"Account_Name": "Acme"}])
        answers = at_once(sandbox, [COQL_CALL] * 10 + [LIGHT_CALL] * 10)
        assert [a.status_code for a in answers] == [200] * 20
        assert sandbox.zoho.peak_in_flight == 20 and sandbox.zoho.peak_heavy_in_flight == 10
        answers = at_once(sandbox, [COQL_CALL] * 10 + [LIGHT_CALL] * 11)
        assert sorted(a.status_code for a in answers) == [200] * 20 + [429]
        # a list with sort_by is resource-intensive; without, it is not
        listing = ("GET", "/crm/v8/Accounts", {"params": {"fields": "Account_Name", "sort_by": "Modified_Time"}})
        plain = ("GET", "/crm/v8/Accounts", {"params": {"fields": "Account_Name"}})
        answers = at_once(sandbox, [COQL_CALL] * 10 + [listing, plain])
        assert [a.status_code for a in answers] == [200] * 10 + [429, 200]
        assert sandbox.zoho.concurrency_refused == 2


def test_free_edition_refuses_a_sixth_call_in_flight() -> None:
    for sandbox in make_sandbox("latency=50ms", edition="free"):
        sandbox.login()
        assert sandbox.zoho.concurrency_limit == 5
        answers = at_once(sandbox, [LIGHT_CALL] * 6)
        assert sorted(a.status_code for a in answers) == [200] * 5 + [429]
        assert sandbox.zoho.concurrency_refused == 1 and sandbox.zoho.peak_in_flight == 5
        # in flight means in flight: one after another, any number pass
        assert all(sandbox.http.get("/crm/v8/org").status_code == 200 for _ in range(6))


def test_token_calls_and_calls_without_a_live_token_are_not_counted() -> None:
    for sandbox in make_sandbox("latency=50ms", edition="free"):
        sandbox.login()
        refresh = sandbox.zoho.issue_refresh_token(sandbox.client_id)
        mint: Send = ("POST", "/oauth/v2/token", {"data": {
            "grant_type": "refresh_token", "client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
            "refresh_token": refresh}})
        answers = at_once(sandbox, [mint] * 5 + [LIGHT_CALL] * 5)
        assert all("access_token" in a.json() for a in answers[:5])
        assert [a.status_code for a in answers[5:]] == [200] * 5
        stranger = {"Authorization": "Zoho-oauthtoken 1000.nosuchtoken"}
        answers = at_once(sandbox, [LIGHT_CALL] * 5) + at_once(sandbox, [LIGHT_CALL] * 3, headers=stranger)
        assert [a.status_code for a in answers] == [200] * 5 + [401] * 3
        assert sandbox.zoho.concurrency_refused == 0 and sandbox.zoho.peak_in_flight == 5


def test_each_client_app_has_its_own_limits() -> None:
    for sandbox in make_sandbox("latency=50ms"):
        sandbox.login()
        other = sandbox.zoho.register_client("1000.OTHER", "other-secret")
        body = sandbox.token(grant_type="refresh_token", client_id=other.client_id, client_secret="other-secret",
                             refresh_token=sandbox.zoho.issue_refresh_token(other.client_id)).json()
        theirs = {"Authorization": f"Zoho-oauthtoken {body['access_token']}"}
        mine = [upsert(11, f"M{n}-") for n in range(10)]
        yours = [upsert(11, f"Y{n}-") for n in range(10)]

        async def send_all() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=sandbox.app)
            async with httpx.AsyncClient(transport=transport, base_url="https://www.zohoapis.com",
                                         headers=dict(sandbox.http.headers)) as me, \
                    httpx.AsyncClient(transport=transport, base_url="https://www.zohoapis.com",
                                      headers=theirs) as you:
                return list(await asyncio.gather(*(me.request(m, u, **kw) for m, u, kw in mine),
                                                 *(you.request(m, u, **kw) for m, u, kw in yours)))
        answers = sandbox.transport.run(send_all)
        assert [a.status_code for a in answers] == [200] * 20
        assert sandbox.zoho.peak_heavy_in_flight == 10 and sandbox.zoho.concurrency_refused == 0


def test_concurrency_limits_can_be_switched_off_and_still_counted() -> None:
    for sandbox in make_sandbox("latency=50ms"):
        sandbox.login()
        sandbox.zoho.limit_concurrency = False
        answers = at_once(sandbox, [upsert(11, f"T{n}-") for n in range(12)] + [LIGHT_CALL] * 10)
        assert [a.status_code for a in answers] == [200] * 22
        assert sandbox.zoho.peak_heavy_in_flight == 12 and sandbox.zoho.peak_in_flight == 22
        assert sandbox.zoho.concurrency_refused == 0
        sandbox.zoho.reset_counters()
        assert sandbox.zoho.peak_in_flight == 0 and sandbox.zoho.peak_heavy_in_flight == 0
