"""The NAV / Business Central connector against the Dynamics sandbox, in-process, for cloud BC (Entra), on-prem BC
API (Basic + web service access key) and NAV page web services (Basic): the same story for each."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from mlconnector.errors import AuthError, ConfigError, NotificationRejected
from mlconnector.secrets import SecretStore
from mlconnector.state import State
from mlconnector.systems import make_connector, ConnectorContext
from mlconnector.systems.dynamics import DynamicsConnector, odata_time

from tests.systems.dynamics_env import ACCESS_KEY, CLIENT_SECRET, COMPANY, CONFIGS, DynamicsEnv, make_env

ALL = list(CONFIGS)
API_CONFIGS = ["bc-cloud", "bc-onprem"]
ENTITIES = ["customers", "vendors", "contacts", "items", "salesOrders", "postedSalesInvoices", "purchaseOrders"]


@pytest.fixture(params=ALL)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DynamicsEnv]:
    made = make_env(request.param, tmp_path)
    yield made
    made.close()


@pytest.fixture(params=API_CONFIGS)
def bc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DynamicsEnv]:
    made = make_env(request.param, tmp_path)
    yield made
    made.close()


def ids_by_number(connector: DynamicsConnector, entity: str) -> dict[str, str]:
    return {r["number"]: r.id for r in connector.changes(entity, None)}


# -- reads -----------------------------------------------------------------------------------------------------

def test_every_entity_reads_in_the_api_v2_shape(env: DynamicsEnv) -> None:
    connector = env.connector()
    customers = list(connector.changes("customers", None))
    assert [c["number"] for c in customers] and {c["number"] for c in customers} == {"C00010", "C00020", "C00030"}
    adatum = next(c for c in customers if c["number"] == "C00010")
    assert adatum["displayName"] == "Adatum Corporation" and adatum["email"] == "robert.townes@contoso.com"
    assert adatum["addressLine1"] == "192 Market Square" and adatum["postalCode"] == "31772"
    assert adatum["country"] == "US" and adatum["phoneNumber"] == "+1 404 555 0100"
    assert adatum["blocked"] == " " and adatum["currencyCode"] == "USD"
    assert adatum.modified is not None and adatum.modified.tzinfo is not None
    if env.page_mode:
        assert adatum.id == "C00010"  # page mode: the page key
    else:
        uuid.UUID(adatum.id)

    items = ids_by_number(connector, "items")
    desk = connector.get("items", items["1896-S"])
    assert desk is not None and desk["displayName"] == "ATHENS Desk" and desk["unitPrice"] == 1000.8
    assert desk["baseUnitOfMeasureCode"] == "PCS" and desk["inventory"] == 4 and desk["type"] == "Inventory"

    [order] = list(connector.changes("salesOrders", None))
    assert order["customerNumber"] == "C00010" and order["customerId"] == adatum.id
    assert order["status"] == "Draft" and order["orderDate"]
    lines = order["salesOrderLines"]
    assert [(l["lineObjectNumber"], l["quantity"]) for l in lines] == [("1896-S", 1), ("1928-S", 2)]
    assert lines[0]["itemId"] == items["1896-S"] and lines[0]["unitPrice"] == 1000.8
    assert lines[0]["amountExcludingTax"] == 1000.8 and lines[0]["description"] == "ATHENS Desk"
    assert order["totalAmountExcludingTax"] == round(1000.8 + 2 * 54.9, 2)

    [invoice] = list(connector.changes("postedSalesInvoices", None))  # the draft is not posted
    assert invoice["number"] == "PS-INV103001" and invoice["status"] == "Open"
    assert invoice["invoiceDate"] and invoice["customerNumber"] == "C00030"
    assert [l["lineObjectNumber"] for l in invoice["salesInvoiceLines"]] == ["1936-S"]
    assert invoice["totalAmountExcludingTax"] == round(3 * 192.8, 2)
    again = connector.get("postedSalesInvoices", invoice.id)
    assert again is not None and again["salesInvoiceLines"][0]["itemId"] == items["1936-S"]

    [purchase] = list(connector.changes("purchaseOrders", None))
    assert purchase["vendorNumber"] == "V00010" and purchase["vendorId"] == ids_by_number(connector, "vendors")["V00010"]

    contacts = {c["displayName"]: c for c in connector.changes("contacts", None)}
    expected = [{"type": "Customer", "id": adatum.id, "number": "C00010"}]
    assert contacts["Robert Townes"]["relations"] == expected
    assert contacts["Adatum Corporation"]["relations"] == expected
    assert contacts["Robert Townes"]["companyNumber"] == "CT000010"
    fetched = connector.get("contacts", contacts["Robert Townes"].id)
    assert fetched is not None and fetched["relations"] == expected

    # Each record's fields are in its entity's field list from $metadata, which configured mappings are checked
    # against; read once for them all.
    before = env.sandbox.call_count(path_contains="$metadata")
    for entity, record in (("customers", adatum), ("items", desk), ("salesOrders", order),
                           ("postedSalesInvoices", invoice), ("purchaseOrders", purchase), ("contacts", fetched)):
        assert set(record.data) - connector.field_names(entity) == set(), entity
    assert env.sandbox.call_count(path_contains="$metadata") == before + 1


def test_get_of_a_missing_record_is_none(env: DynamicsEnv) -> None:
    connector = env.connector()
    missing = "C99999" if env.page_mode else str(uuid.uuid4())
    assert connector.get("customers", missing) is None
    if not env.page_mode:
        draft = env.sandbox.get(env.company, "salesInvoices", "S-INV102001")
        assert connector.get("postedSalesInvoices", draft["id"]) is None


@pytest.mark.parametrize("config", API_CONFIGS)
def test_window_is_exact_to_the_millisecond(config: str, tmp_path: Path) -> None:
    env = make_env(config, tmp_path)
    try:
        stamp = datetime(2026, 3, 2, 10, 15, 30, 123000, tzinfo=timezone.utc)
        env.sandbox.seed(env.company, "vendors", [
            {"number": "V-EQ1", "displayName": "Same ms A", "lastModifiedDateTime": stamp},
            {"number": "V-EQ2", "displayName": "Same ms B", "lastModifiedDateTime": stamp},
            {"number": "V-LATER", "displayName": "Later", "lastModifiedDateTime": stamp + timedelta(seconds=5)}])
        connector = env.connector()
        # A watermark inside the same millisecond still includes both rows stamped in it (floor for ge) ...
        got = list(connector.changes("vendors", stamp + timedelta(microseconds=600), stamp + timedelta(seconds=4)))
        assert sorted(r["number"] for r in got) == ["V-EQ1", "V-EQ2"]
        assert [r.id for r in got] == sorted(r.id for r in got)  # equal stamps: ordered by id
        # ... and an upper bound inside a millisecond keeps the row stamped in it (ceiling for lt).
        upper = list(connector.changes("vendors", stamp, stamp + timedelta(seconds=5, microseconds=1)))
        assert [r["number"] for r in upper][-1] == "V-LATER" and len(upper) == 3
        assert [r.modified for r in upper] == sorted(r.modified for r in upper)
        assert odata_time(stamp + timedelta(microseconds=600)) == "2026-03-02T10:15:30.123Z"
        assert odata_time(stamp + timedelta(microseconds=600), up=True) == "2026-03-02T10:15:30.124Z"
        sent = [r for r in env.transport.requests if r.url.path.endswith("/vendors")]
        assert "lastModifiedDateTime ge 2026-03-02T10:15:30.123Z" in sent[0].url.params["$filter"]
        assert sent[0].url.params["$orderby"] == "lastModifiedDateTime,id"
    finally:
        env.close()


def test_pages_with_maxpagesize_and_nextlink_never_top(env: DynamicsEnv) -> None:
    env.sandbox.seed(env.company, "items", [{"number": f"P-{i:03d}", "displayName": f"Part {i}"} for i in range(7)])
    connector = env.connector(page_size=3)
    env.transport.requests.clear()
    got = list(connector.changes("items", None))
    assert len(got) == 10 and len({r.id for r in got}) == 10
    reads = [r for r in env.transport.requests if "Item" in r.url.path or "items" in r.url.path]
    assert len(reads) == 4
    assert all(r.headers["Prefer"] == "odata.maxpagesize=3" for r in reads)
    assert not any("$top" in str(r.url) for r in reads)
    assert "$skiptoken" in str(reads[1].url)
    keys = [(r.modified, r.id) for r in got]
    assert keys == sorted(keys, key=lambda k: (k[0] is not None, k[0] or datetime.min.replace(tzinfo=timezone.utc),
                                                k[1]))


def test_the_next_page_is_asked_for_while_this_ones_rows_are_taken(env: DynamicsEnv) -> None:
    env.sandbox.seed(env.company, "items", [{"number": f"P-{i:03d}", "displayName": f"Part {i}"} for i in range(7)])
    connector = env.connector(page_size=3)
    env.transport.requests.clear()
    rows = connector.changes("items", None)
    first = next(rows)

    def reads() -> list:
        return [r for r in list(env.transport.requests) if "Item" in r.url.path or "items" in r.url.path]

    deadline = time.monotonic() + 5
    while len(reads()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(reads()) == 2 and "$skiptoken" in str(reads()[1].url)  # one row taken, the second page on its way
    rest = list(rows)
    assert len([first, *rest]) == 10 and len({r.id for r in [first, *rest]}) == 10
    assert len(reads()) == 4  # each page once, none past the last
    connector.close()


def test_whole_reads_of_documents_with_lines_take_smaller_pages(env: DynamicsEnv) -> None:
    env.sandbox.post_invoice(env.company, "S-INV102001")  # two posted invoices: two pages of one
    connector = env.connector(page_size=1000, document_page_size=1)
    env.transport.requests.clear()
    before = set(threading.enumerate())
    invoices = list(connector.changes("postedSalesInvoices", None))
    # and with no second page held: no page read ahead (the connector's page thread never started)
    assert not any(t.name.startswith(f"{connector.name}-pages") for t in set(threading.enumerate()) - before)
    customers = list(connector.changes("customers", None))
    assert invoices and customers
    prefer = [r.headers.get("Prefer") for r in env.transport.requests if "nvoice" in r.url.path]
    assert set(prefer) == {"odata.maxpagesize=1"} and len(prefer) > 1 and len(invoices) == 2
    assert {r.headers.get("Prefer") for r in env.transport.requests
            if "ustomer" in r.url.path and "Invoice" not in r.url.path} == {"odata.maxpagesize=1000"}


def test_rows_never_stamped_are_read_once_on_a_full_run(env: DynamicsEnv) -> None:
    env.sandbox.clear_last_modified(env.company, "customers", ["C00020"])
    connector = env.connector()
    full = list(connector.changes("customers", None))
    assert [r["number"] for r in full][0] == "C00020" and full[0].modified is None
    assert all(r.modified is not None for r in full[1:])
    since = min(r.modified for r in full[1:]) - timedelta(minutes=5)
    incremental = [r["number"] for r in connector.changes("customers", since)]
    assert "C00020" not in incremental and "C00010" in incremental


def test_nav_pages_read_from_the_day_before_and_stamp_the_end_of_the_day(tmp_path: Path) -> None:
    env = make_env("nav", tmp_path)
    try:
        connector = env.connector()
        until = datetime.now(timezone.utc)
        first = list(connector.changes("customers", until - timedelta(hours=1), until))
        assert {r["number"] for r in first} == {"C00010", "C00020", "C00030"}
        assert all(r.modified == until - timedelta(milliseconds=1) for r in first)  # today's rows, capped
        sent = [r for r in env.transport.requests if r.url.path.endswith("/Customer")][-1]
        day_before = (until - timedelta(hours=1, days=1)).date().isoformat()
        assert sent.url.params["$filter"] == f"Last_Date_Modified ge {day_before}"
        # Documents carry no modification date on their pages: read whole, modified None.
        assert [r.modified for r in connector.changes("salesOrders", until - timedelta(hours=1), until)] == [None]
    finally:
        env.close()


# -- writes ----------------------------------------------------------------------------------------------------

def test_upsert_creates_then_updates_with_if_match(env: DynamicsEnv) -> None:
    connector = env.connector()
    payload = {"number": "CZ-1", "displayName": "Zylker Ltd", "email": "info@zylker.test", "city": "Austin"}
    [created] = connector.write("customers", [payload], "number")
    assert created.action == "create" and created.target_id and created.version is not None
    [updated] = connector.write("customers", [{**payload, "city": "Dallas", "id": "ignored"}], "number")
    assert updated.action == "update" and updated.target_id == created.target_id
    assert env.sandbox.get(env.company, "customers", "CZ-1")["city"] == "Dallas"
    patch = [r for r in env.transport.requests if r.method == "PATCH"][-1]
    assert patch.headers["If-Match"].startswith('W/"')
    [vendor] = connector.write("vendors", [{"number": "VZ-1", "displayName": "Supplier"}], "number")
    [contact] = connector.write("contacts", [{"number": "CTZ-1", "displayName": "Pat Boyle", "type": "Person",
                                              "email": "pat@zylker.test"}], "number")
    assert vendor.action == contact.action == "create"
    assert env.sandbox.get(env.company, "contacts", "CTZ-1")["email"] == "pat@zylker.test"
    # Without a number (an account born in the CRM) the ERP numbers the new customer itself.
    [numbered] = connector.write("customers", [{"number": None, "displayName": "No number yet"}], "number")
    assert numbered.action == "create"
    rows = [r for r in env.sandbox.records(env.company, "customers") if r["displayName"] == "No number yet"]
    assert len(rows) == 1 and rows[0]["number"]


def test_find_returns_every_record_with_that_value_as_the_server_compares_it(env: DynamicsEnv) -> None:
    connector = env.connector()
    [first] = connector.write("customers", [{"number": None, "displayName": "O'Brien & Sons"}], "number")
    [second] = connector.write("customers", [{"number": None, "displayName": "O'Brien & Sons"}], "number")
    connector.write("customers", [{"number": None, "displayName": "O'Brien & Daughters"}], "number")

    found = connector.find("customers", "displayName", "o'brien & sons")

    assert sorted(r.id for r in found) == sorted([first.target_id, second.target_id])
    assert {r["displayName"] for r in found} == {"O'Brien & Sons"} and all(r["number"] for r in found)
    assert connector.find("customers", "displayName", "Nobody") == []


def test_a_linked_record_is_updated_by_its_id_even_when_renumbered(env: DynamicsEnv) -> None:
    connector = env.connector()
    [created] = connector.write("customers", [{"number": "CZ-9", "displayName": "Linked"}], "number")
    [again] = connector.write("customers", [{"number": None, "displayName": "Linked, renamed"}], "number",
                              ids=[created.target_id])
    assert again.action == "update" and again.target_id == created.target_id
    assert env.sandbox.get(env.company, "customers", "CZ-9")["displayName"] == "Linked, renamed"
    names = [r["displayName"] for r in env.sandbox.records(env.company, "customers")]
    assert "Linked" not in names and names.count("Linked, renamed") == 1


def test_a_record_changed_between_read_and_write_is_read_again_once(env: DynamicsEnv) -> None:
    connector = env.connector()
    connector.write("customers", [{"number": "CZ-2", "displayName": "Before"}], "number")
    refused = []

    def stale_once(request: httpx.Request) -> httpx.Response | None:
        if request.method == "PATCH" and not refused:
            refused.append(request)
            env.sandbox.modify(env.company, "customers", "CZ-2", city="Changed by a user")
        return None

    env.transport.intercept = stale_once
    [result] = connector.write("customers", [{"number": "CZ-2", "displayName": "After"}], "number")
    assert result.action == "update" and refused
    row = env.sandbox.get(env.company, "customers", "CZ-2")
    assert row["displayName"] == "After" and row["city"] == "Changed by a user"
    assert len([r for r in env.transport.requests if r.method == "PATCH"]) == 2


def test_a_refused_field_fails_that_record_only(env: DynamicsEnv) -> None:
    connector = env.connector()
    results = connector.write("customers", [{"number": "CZ-3", "displayName": "Good"},
                                            {"number": "CZ-4", "noSuchField": 1}], "number")
    assert [r.action for r in results] == ["create", "fail"]
    assert "noSuchField" in (results[1].error or "")


# -- throttling --------------------------------------------------------------------------------------------------

def test_429_503_and_deadlocks_are_retried(env: DynamicsEnv) -> None:
    connector = env.connector()
    answers = [httpx.Response(429, headers={"Retry-After": "1"},
                              json={"error": {"code": "Application_TooManyRequests", "message": "slow down"}}),
               httpx.Response(503, headers={"Retry-After": "1"}),
               httpx.Response(409, json={"error": {"code": "Internal_ServerError", "message":
                              "The operation could not complete because a record was locked by another user."}})]

    def flaky(request: httpx.Request) -> httpx.Response | None:
        if "oauth2" not in request.url.path and answers:
            return answers.pop(0)
        return None

    env.transport.intercept = flaky
    assert len(list(connector.changes("customers", None))) == 3
    assert not answers
    assert connector.http._slots._initial_value == 5  # type: ignore[attr-defined]


# -- push (Business Central API only) -----------------------------------------------------------------------------

def test_subscribe_handshake_notify_renew_unsubscribe(bc: DynamicsEnv) -> None:
    state = State(bc.state_path)
    connector = bc.connector(notify_url=f"http://listener.test/hooks/{bc.config}", state=state)
    assert "contacts" not in connector.push_entities() and "purchaseOrders" not in connector.push_entities()
    channel = connector.subscribe("customers")
    assert channel.expires - datetime.now(timezone.utc) > timedelta(days=2, hours=23)
    assert SecretStore().get(bc.config, "client_state")
    [sub] = bc.sandbox.subscriptions()
    assert sub["resource"].endswith("/customers") and sub["subscriptionId"] == channel.channel_id

    bc.sandbox.modify(bc.company, "customers", "C00010", city="Savannah")
    assert bc.sandbox.wait_for_notifications()
    [delivery] = bc.sandbox.deliveries
    assert delivery.status == 202
    [row] = state.pending_inbox()
    assert row["entity"] == "customers" and row["ids"] == [bc.sandbox.get(bc.company, "customers", "C00010")["id"]]

    bc.sandbox.advance(days=2, hours=12)
    renewed = connector.renew(channel)
    assert renewed.expires > channel.expires and renewed.extra["etag"] != channel.extra["etag"]
    connector.unsubscribe(renewed)
    assert bc.sandbox.subscriptions() == []
    state.close()


def test_renewing_a_vanished_subscription_raises_so_the_engine_resubscribes(bc: DynamicsEnv) -> None:
    connector = bc.connector(notify_url=f"http://listener.test/hooks/{bc.config}")
    channel = connector.subscribe("items")
    bc.sandbox.advance(days=3, minutes=1)
    with pytest.raises(Exception) as caught:
        connector.renew(channel)
    assert "404" in str(caught.value)
    assert connector.renew_margin == timedelta(days=1)


def test_verify_checks_client_state_and_never_drops_a_genuine_notification(bc: DynamicsEnv) -> None:
    connector = bc.connector(notify_url="http://listener.test/hooks/x")
    with pytest.raises(NotificationRejected) as missing:
        connector.verify(b'{"value": []}', {}, {})
    assert missing.value.status == 503  # our secret is missing: BC must retry, not delete the subscription
    state = connector.subscriptions.client_state()
    company = bc.company
    body = {"value": [
        {"subscriptionId": "s1", "clientState": state, "expirationDateTime": "2026-10-29T07:52:31Z",
         "resource": f"api/v2.0/companies({company})/items(26814998-936a-401c-81c1-0e848a64971d)",
         "changeType": "updated", "lastModifiedDateTime": "2026-10-26T12:54:20.467Z"},
        {"subscriptionId": "s2", "clientState": state, "expirationDateTime": "2026-10-29T12:50:30Z",
         "resource": f"api/v2.0/companies({company})/customers(4b4f31f0-dc1c-4033-b2aa-ab03ca1d6ebc)",
         "changeType": "deleted", "lastModifiedDateTime": "2026-10-26T12:54:30.503Z"},
        {"subscriptionId": "s3", "clientState": state, "expirationDateTime": "2026-10-20T10:55:01Z",
         "resource": f"/api/v2.0/companies({company})/salesInvoices?$filter=lastModifiedDateTime%20gt%20"
                     "2026-10-15T11:00:00Z", "changeType": "collection",
         "lastModifiedDateTime": "2026-10-26T12:54:30.503Z"},
        {"subscriptionId": "s4", "clientState": state, "resource": f"api/v2.0/companies({company})/journals(x)",
         "changeType": "updated"}]}
    notes = connector.verify(json.dumps(body).encode(), {}, {})
    assert [(n.entity, n.ids, n.operation) for n in notes] == [
        ("items", ("26814998-936a-401c-81c1-0e848a64971d",), "update"),
        ("customers", ("4b4f31f0-dc1c-4033-b2aa-ab03ca1d6ebc",), "delete"),
        ("postedSalesInvoices", (), "update")]
    assert notes[2].since == datetime(2026, 10, 15, 11, 0, tzinfo=timezone.utc)
    forged = {"value": [{**body["value"][0], "clientState": "guess"}]}
    with pytest.raises(NotificationRejected) as bad_state:
        connector.verify(json.dumps(forged).encode(), {}, {})
    assert bad_state.value.status == 403
    for junk in (b"not json", b'{"foo": 1}', b"[1, 2]"):
        with pytest.raises(NotificationRejected) as malformed:
            connector.verify(junk, {}, {})
        assert malformed.value.status == 400
    assert connector.handshake({"validationToken": "abc"}) == "abc" and connector.handshake({}) is None


def test_nav_page_mode_has_no_push(tmp_path: Path) -> None:
    env = make_env("nav", tmp_path)
    try:
        assert env.connector(notify_url="http://listener.test/hooks/nav").push_entities() == ()
    finally:
        env.close()


# -- ping ------------------------------------------------------------------------------------------------------

def test_ping_reports_base_url_company_and_readable_entities(env: DynamicsEnv) -> None:
    result = env.connector().ping()
    assert result.ok, result.error
    assert result.base_url.endswith("/api/v2.0") or result.base_url.endswith("/ODataV4")
    assert any(COMPANY in d for d in result.details)
    assert "readable: customers, items" in result.details


def test_ping_explains_a_company_name_in_the_wrong_case(env: DynamicsEnv) -> None:
    result = env.connector(company="cronus usa, inc.").ping()
    assert not result.ok and result.exit_code == 2
    assert "case-sensitive" in (result.error or "") and "'CRONUS USA, Inc.'" in (result.error or "")


@pytest.mark.parametrize("config", ["bc-onprem", "nav"])
def test_ping_says_when_the_server_wants_windows_authentication(config: str, tmp_path: Path) -> None:
    env = make_env(config, tmp_path)
    try:
        env.sandbox.use_windows_authentication()
        result = env.connector().ping()
        assert not result.ok and result.exit_code == 4
        assert 'server expects Windows authentication; set auth = "windows"' in (result.error or "")
        with pytest.raises(AuthError, match="Windows authentication"):
            list(env.connector("again").changes("customers", None))
        # With auth = "windows" the connector answers the Negotiate challenge (pyspnego); the sandbox cannot
        # complete a Windows login, so it ends refused, and says so.
        SecretStore().set("win", "password", "p4ss-w0rd")
        windows = env.connector("win", auth="windows", user="CONTOSO\\svc")
        refused = windows.ping()
        assert refused.exit_code == 4 and "Windows authentication refused" in (refused.error or "")
        negotiated = [r for r in env.transport.requests if r.headers.get("authorization", "").startswith(
            ("Negotiate ", "NTLM "))]
        assert negotiated
    finally:
        env.close()


@pytest.mark.parametrize("config", ["bc-onprem", "nav"])
def test_ping_explains_a_closed_port(config: str, tmp_path: Path) -> None:
    env = make_env(config, tmp_path)
    try:
        env.transport.intercept = lambda request: (_ for _ in ()).throw(
            httpx.ConnectError("[Errno 111] Connection refused", request=request))
        result = env.connector().ping()
        assert not result.ok and result.exit_code == 5
        assert "is the OData/API port (7048) open and the service tier running?" in (result.error or "")
    finally:
        env.close()


def test_ping_explains_an_unpublished_page(tmp_path: Path) -> None:
    env = make_env("nav", tmp_path)
    try:
        env.sandbox.unpublish_page("Item")
        result = env.connector().ping()
        assert not result.ok and result.exit_code == 5
        assert "OData services not enabled or page not published" in (result.error or "")
        assert env.connector("renamed", services={"items": "ItemCard"}).ping().exit_code == 5
        env.sandbox.publish_page("ItemCard", "Item")
        assert env.connector("renamed2", services={"items": "ItemCard"}).ping().ok
    finally:
        env.close()


def test_ping_with_a_wrong_secret_exits_4(env: DynamicsEnv) -> None:
    field, _ = {"bc-cloud": ("client_secret", 0), "bc-onprem": ("password", 0), "nav": ("password", 0)}[env.config]
    SecretStore().set(env.config, field, "wrong-value")
    result = env.connector().ping()
    assert not result.ok and result.exit_code == 4
    assert f"mlconnector secrets set {env.config}" in (result.error or "")


def test_the_registry_builds_both_kinds(env: DynamicsEnv) -> None:
    made = make_connector(env.system(), ConnectorContext(secrets=SecretStore(), transport=env.transport))
    try:
        assert isinstance(made, DynamicsConnector) and made.kind == CONFIGS[env.config]["kind"]
    finally:
        made.close()


def test_missing_settings_name_the_key(tmp_path: Path) -> None:
    from mlconnector.config import SystemConfig

    with pytest.raises(ConfigError, match="systems.nav.base_url"):
        DynamicsConnector(SystemConfig("nav", "nav", {"company": "X", "user": "u"}),
                          ConnectorContext(secrets=SecretStore()))
    with pytest.raises(ConfigError, match="systems.bc.tenant"):
        DynamicsConnector(SystemConfig("bc", "bc", {"company": "X", "client_id": "c"}),
                          ConnectorContext(secrets=SecretStore()))


# -- no secret anywhere ----------------------------------------------------------------------------------------

def test_no_secret_in_outputs_errors_logs_or_state(env: DynamicsEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    state = State(env.state_path)
    connector = env.connector(notify_url=f"http://listener.test/hooks/{env.config}", state=state)
    texts = [repr(connector.ping())]
    texts += [repr(r) for r in connector.changes("customers", None)]
    texts += [repr(connector.write("customers", [{"number": "CS-1", "displayName": "S"}], "number"))]
    if not env.page_mode:
        channel = connector.subscribe("customers")
        state.save_channel(system=channel.system, entity=channel.entity, channel_id=channel.channel_id,
                           expires=channel.expires, notify_url=channel.notify_url, extra=dict(channel.extra))
        texts.append(repr(channel))
    field, _ = {"bc-cloud": ("client_secret", 0), "bc-onprem": ("password", 0), "nav": ("password", 0)}[env.config]
    SecretStore().set(env.config, field, "wrong-value")
    try:
        list(env.connector("other").changes("customers", None))
    except Exception as exc:  # the refusal message itself
        texts.append(str(exc))
    SecretStore().set(env.config, field, {"bc-cloud": CLIENT_SECRET}.get(env.config, ACCESS_KEY))
    state.close()
    tokens = list(env.sandbox.identity.tokens)
    client_state = SecretStore().get(env.config, "client_state") or "no-client-state-here"
    haystack = "\n".join(texts) + caplog.text + env.state_path.read_bytes().decode("latin-1")
    for secret in [CLIENT_SECRET, ACCESS_KEY, client_state, *tokens]:
        assert secret not in haystack


# -- through the engine ------------------------------------------------------------------------------------------

def test_engine_backfills_unstamped_rows_once_and_then_runs_incrementally(env: DynamicsEnv, tmp_path: Path) -> None:
    from mlconnector.config import PairConfig
    from mlconnector.sync import Engine
    from mlconnector.flows import Flow, PairSpec
    from tests import fakes

    env.sandbox.clear_last_modified(env.company, "customers", ["C00020"])
    pair = PairSpec(name="dyn-test", roles={"erp": ("bc", "nav"), "crm": ("testcrm",)}, flows=(
        Flow("customers", "erp", "customers", "crm", "account", "number",
             lambda c, ctx: {"number": c["number"], "account_name": c["displayName"], "city": c.get("city")}),))
    crm = fakes.Store(tmp_path / "crm.db")
    state = State(tmp_path / "engine.db")
    target = fakes.StoreConnector("crm", crm, ConnectorContext(secrets=SecretStore()))
    engine = Engine(pair, PairConfig("dyn-test", overlap_seconds=1), {"erp": env.connector(), "crm": target}, state)
    first = engine.sync()
    assert first.exit_code == 0 and first.flows["customers"].created == 3
    assert {a["number"] for a in crm.all("account")} == {"C00010", "C00020", "C00030"}
    assert state.watermark("dyn-test", "customers") is not None
    env.sandbox.modify(env.company, "customers", "C00030", city="Denver")
    second = engine.sync()
    stats = second.flows["customers"]
    assert second.exit_code == 0 and stats.updated == 1 and stats.created == 0
    assert next(a for a in crm.all("account") if a["number"] == "C00030")["city"] == "Denver"
    state.close()


# -- the company id, remembered across runs ---------------------------------------------------------------------

def company_lookups(env: DynamicsEnv) -> int:
    return sum(1 for call in env.sandbox.calls if call.method == "GET" and call.path.endswith("/api/v2.0/companies"))


def recreate_company(env: DynamicsEnv) -> str:
    """The company deleted and made again under the same name: same rows, a new id."""
    company = env.sandbox.db.companies.pop(env.company)
    company.id = str(uuid.uuid4())
    env.sandbox.db.companies[company.id] = company
    return company.id


def test_a_later_run_uses_the_company_id_an_earlier_run_looked_up(bc: DynamicsEnv) -> None:
    first = bc.connector()
    assert {c["number"] for c in first.changes("customers", None)} == {"C00010", "C00020", "C00030"}
    first.close()
    assert company_lookups(bc) == 1

    second = bc.connector()  # the next run: a new connector, the same state directory
    assert {c["number"] for c in second.changes("customers", None)} == {"C00010", "C00020", "C00030"}
    assert second.company_id() == bc.company and company_lookups(bc) == 1
    record = json.loads(second.company_record.path.read_text(encoding="utf-8"))
    assert list(record.values()) == [bc.company]


def test_a_remembered_company_id_bc_no_longer_knows_is_looked_up_again_once(bc: DynamicsEnv) -> None:
    first = bc.connector()
    adatum = next(c for c in first.changes("customers", None) if c["number"] == "C00010")
    first.close()
    fresh = recreate_company(bc)
    bc.sandbox.reset_calls()

    second = bc.connector()
    found = second.get("customers", adatum.id)  # a 404 here must not read as "the record is gone"
    assert found is not None and found["displayName"] == "Adatum Corporation"
    assert len(list(second.changes("customers", None))) == 3
    result = second.write("customers", [{"number": "C00010", "displayName": "Adatum Corp."}], "number",
                          [adatum.id])
    assert [r.action for r in result] == ["update"]
    assert second.company_id() == fresh and company_lookups(bc) == 1
    assert sum(1 for call in bc.sandbox.calls if call.status == 404) == 1

    third = bc.connector()
    assert len(list(third.changes("customers", None))) == 3 and company_lookups(bc) == 1


def test_a_company_that_is_really_gone_is_still_a_config_error(bc: DynamicsEnv) -> None:
    bc.connector().company_id()
    bc.sandbox.db.companies.pop(bc.company)
    with pytest.raises(ConfigError, match="does not exist"):
        list(bc.connector().changes("customers", None))


def test_nav_pages_name_the_company_in_the_url_and_remember_nothing(tmp_path: Path) -> None:
    env = make_env("nav", tmp_path)
    try:
        for _ in range(2):
            assert len(list(env.connector().changes("customers", None))) == 3
        assert company_lookups(env) == 0 and not list(tmp_path.rglob("dynamics-*-company.json"))
        assert all("/Company('" in call.path for call in env.sandbox.calls if call.form.startswith("odatav4"))
    finally:
        env.close()
