"""The Zoho connector against the Zoho sandbox: auth per data centre, token reuse, reads, writes, channels, quotas."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from mlconnector.auth import SecretTokenCache, Token
from mlconnector.errors import (
    EXIT_AUTH,
    EXIT_UNREACHABLE,
    AuthError,
    BudgetExhausted,
    NotificationRejected,
    RateLimited,
)
from mlconnector.secrets import SecretStore
from mlconnector.state import State
from mlconnector.systems import make_connector
from mlconnector.systems.zoho import DATA_CENTRES, QuotaFile, ZohoConnector, is_heavy, token_from
from mlconnector.config import SystemConfig
from mlconnector.systems import ConnectorContext

from tests.helpers import run_in_threads
from tests.systems.zoho_env import CLIENT_ID, ZohoEnv, make_env


@pytest.fixture
def env() -> Iterator[ZohoEnv]:
    made = make_env()
    yield made
    made.inner.close()


def accounts_hosts(env: ZohoEnv) -> list[str]:
    return [r.url.host for r in env.transport.requests if r.url.path.endswith("/oauth/v2/token")]


# -- OAuth and data centres ---------------------------------------------------------------------------------

def test_data_centre_table_routes_accounts_and_api_hosts() -> None:
    assert DATA_CENTRES["eu"].accounts_url == "https://accounts.zoho.eu"
    assert DATA_CENTRES["au"].api_domain == "https://www.zohoapis.com.au"
    assert DATA_CENTRES["ca"].accounts_url == "https://accounts.zohocloud.ca"
    assert DATA_CENTRES["sa"].upload_url == "https://files.zoho.sa"
    assert DATA_CENTRES["eu-sandbox"].accounts_url == "https://accounts.zoho.eu"
    assert DATA_CENTRES["eu-sandbox"].api_domain == "https://sandbox.zohoapis.eu"
    assert DATA_CENTRES["developer"].api_domain == "https://developer.zohoapis.com"


def test_eu_client_signs_in_at_the_eu_accounts_server() -> None:
    env = make_env(data_centre="eu")
    try:
        connector = env.connector(data_centre="eu")
        result = connector.ping()
        assert result.ok, result.error
        assert accounts_hosts(env) == ["accounts.zoho.eu"]
        assert result.base_url == "https://www.zohoapis.eu"  # the api_domain of the token response
    finally:
        env.inner.close()


def test_wrong_data_centre_is_an_auth_error_that_says_so() -> None:
    env = make_env(data_centre="eu")
    try:
        connector = env.connector(data_centre="us")
        with pytest.raises(AuthError, match="wrong data centre or client") as caught:
            connector.get("Accounts", "1")
        assert caught.value.exit_code == EXIT_AUTH == 4
        assert accounts_hosts(env) == ["accounts.zoho.com"]
        ping = env.connector(data_centre="us").ping()
        assert not ping.ok and ping.exit_code == 4 and "wrong data centre" in (ping.error or "")
    finally:
        env.inner.close()


def test_revoked_refresh_token_tells_the_user_to_run_auth(env: ZohoEnv) -> None:
    env.zoho.revoke_refresh_token(env.refresh_token)
    with pytest.raises(AuthError, match=r"refresh token revoked or expired; run `mlconnector auth zoho") as caught:
        env.connector().get("Accounts", "1")
    assert caught.value.exit_code == 4
    assert env.connector().ping().exit_code == 4


def test_refresh_grant_sends_the_documented_form(env: ZohoEnv) -> None:
    env.connector().get("Accounts", "1")
    token_call = next(r for r in env.transport.requests if r.url.path == "/oauth/v2/token")
    form = dict(httpx.QueryParams(token_call.content.decode()))
    assert form["grant_type"] == "refresh_token" and form["client_id"] == CLIENT_ID
    assert form["refresh_token"] == env.refresh_token
    api_call = next(r for r in env.transport.requests if r.url.path.startswith("/crm/"))
    assert api_call.headers["Authorization"].startswith("Zoho-oauthtoken 1000.")


def test_api_domain_from_the_token_response_is_the_base_url() -> None:
    app_domain = "https://crm.example-dc.test"
    env = make_env()
    env.zoho.api_domain = app_domain
    env.zoho.accounts.api_domain = app_domain
    try:
        env.connector().get("Accounts", "1")
        api_hosts = {r.url.host for r in env.transport.requests if r.url.path.startswith("/crm/")}
        assert api_hosts == {"crm.example-dc.test"}
    finally:
        env.inner.close()


def test_a_refresh_without_api_domain_keeps_the_last_one() -> None:
    first = token_from({"access_token": "a", "expires_in": 3600, "api_domain": "https://www.zohoapis.eu"}, None)
    second = token_from({"access_token": "b", "expires_in": 3600}, first)
    assert second.extra["api_domain"] == "https://www.zohoapis.eu"
    legacy = token_from({"access_token": "c", "expires_in": 3600000, "expires_in_sec": 3600}, None)
    assert timedelta(minutes=59) < legacy.expires_at - datetime.now(timezone.utc) <= timedelta(hours=1)


def test_token_is_reused_by_the_next_run(env: ZohoEnv) -> None:
    env.connector().get("Accounts", "1")
    assert env.zoho.accounts.minted == 1
    # A second "CLI run": a new connector, a new secret store reading the same keyring.
    second = env.connector(secrets=SecretStore())
    second.get("Accounts", "1")
    assert env.zoho.accounts.minted == 1
    assert second.auth.minted == 0


def test_client_credentials_grant_with_soid(env: ZohoEnv) -> None:
    connector = env.connector(auth="client_credentials", soid=env.zoho.zgid)
    assert connector.ping().ok
    token_call = next(r for r in env.transport.requests if r.url.path == "/oauth/v2/token")
    form = dict(httpx.QueryParams(token_call.content.decode()))
    assert form["grant_type"] == "client_credentials" and form["soid"] == f"ZohoCRM.{env.zoho.zgid}"


def test_invalid_token_refreshes_once_and_retries_once(env: ZohoEnv) -> None:
    cache = SecretTokenCache(SecretStore(), "zoho")
    cache.save(Token("1000.stale-token", datetime.now(timezone.utc) + timedelta(hours=1),
                     {"api_domain": "https://www.zohoapis.com"}))
    env.zoho.seed("Accounts", [{"Account_Name": "Acme"}])
    connector = env.connector()
    rows = list(connector.changes("Accounts", None))
    assert [r["Account_Name"] for r in rows] == ["Acme"]
    assert env.zoho.accounts.minted == 1
    assert env.transport.paths("/crm/v8/coql") == ["/crm/v8/coql", "/crm/v8/coql"]


def test_a_token_refused_again_after_refresh_is_not_looped() -> None:
    env = make_env(faults="token_ttl=0")  # every access token is dead on arrival
    try:
        with pytest.raises(AuthError, match="even after a refresh"):
            env.connector().get("Accounts", "1")
        assert env.zoho.accounts.minted == 2
        assert len(env.transport.paths("/crm/")) == 2
    finally:
        env.inner.close()


def test_mint_governor_is_shared_and_fails_clearly(env: ZohoEnv, tmp_path: Path) -> None:
    path = tmp_path / "quota.json"
    one, other = QuotaFile(path), QuotaFile(path)  # two processes' views of the same record
    for _ in range(5):
        assert one.reserve_mint("k", 9) == 0
    for _ in range(4):
        assert other.reserve_mint("k", 9) == 0
    assert 0 < one.reserve_mint("k", 9) <= 600
    assert "k" in path.read_text() and env.refresh_token not in path.read_text()

    connector = env.connector(mint_limit=1, mint_wait_seconds=0)
    connector.quota.reserve_mint(_governor_key(env), 1)
    with pytest.raises(RateLimited, match="minted in the last 10 minutes"):
        connector.get("Accounts", "1")
    assert env.zoho.accounts.minted == 0


def test_mint_governor_waits_when_allowed(env: ZohoEnv, tmp_path: Path) -> None:
    moments = [datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)]
    quota = QuotaFile(tmp_path / "quota.json", now=lambda: moments[0])
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        moments[0] += timedelta(seconds=seconds)

    config = SystemConfig("zoho", "zoho", {"client_id": CLIENT_ID, "mint_limit": 1, "mint_wait_seconds": 900})
    connector = ZohoConnector(config, ConnectorContext(secrets=SecretStore(), transport=env.transport),
                              sleep=sleep, quota=quota)
    quota.reserve_mint(_governor_key(env), 1)
    connector.get("Accounts", "1")
    assert slept and 590 < sum(slept) <= 600
    assert env.zoho.accounts.minted == 1


def _governor_key(env: ZohoEnv) -> str:
    from mlconnector.systems.zoho import _digest

    return _digest(CLIENT_ID, env.refresh_token)


def test_made_by_kind_through_the_registry(env: ZohoEnv) -> None:
    connector = make_connector(SystemConfig("crm", "zoho", {"client_id": CLIENT_ID}),
                               ConnectorContext(secrets=SecretStore(), transport=env.transport))
    assert isinstance(connector, ZohoConnector)


# -- reads --------------------------------------------------------------------------------------------------

def test_get_returns_the_full_record_with_line_items(env: ZohoEnv) -> None:
    [product] = env.zoho.seed("Products", [{"Product_Name": "Widget"}])
    [account] = env.zoho.seed("Accounts", [{"Account_Name": "Acme"}])
    [invoice] = env.zoho.seed("Invoices", [{"Subject": "INV-1", "Account_Name": {"id": account},
                                            "Invoiced_Items": [{"Product_Name": {"id": product}, "Quantity": 2}]}])
    record = env.connector().get("Invoices", invoice)
    assert record is not None and record.id == invoice and record.entity == "Invoices"
    assert record["Invoiced_Items"][0]["Product_Name"]["id"] == product
    assert record.modified is not None and record.modified.tzinfo == timezone.utc
    assert env.connector().get("Invoices", "5725767000999999999") is None


def test_changes_pages_by_modified_time_and_id_within_the_window(env: ZohoEnv) -> None:
    early = env.zoho.seed("Accounts", [{"Account_Name": f"Early {i}"} for i in range(3)])
    env.zoho.advance(minutes=1)
    since = env.clock.now()
    tied = env.zoho.seed("Accounts", [{"Account_Name": f"Tied {i}"} for i in range(7)])
    env.zoho.advance(minutes=1)
    later = env.zoho.seed("Accounts", [{"Account_Name": f"Later {i}"} for i in range(2)])
    env.zoho.advance(minutes=1)
    until = env.clock.now()
    env.zoho.seed("Accounts", [{"Account_Name": "After"}])

    rows = list(env.connector(coql_page_size=3).changes("Accounts", since, until))
    assert [r.id for r in rows] == tied + later  # none twice, none missed, early and after left out
    assert all(r.system == "zoho" and r.entity == "Accounts" for r in rows)
    keys = [(r.modified, r.id) for r in rows]
    assert keys == sorted(keys) and all(r.modified.tzinfo == timezone.utc for r in rows)
    assert len(env.transport.paths("/crm/v8/coql")) == 3
    assert early[0] not in {r.id for r in rows}
    everything = list(env.connector().changes("Accounts", None))
    assert len(everything) == 13


def test_changes_bounds_are_exact_with_sub_second_times(env: ZohoEnv) -> None:
    [first] = env.zoho.seed("Accounts", [{"Account_Name": "First"}])
    env.zoho.advance(seconds=1)
    [second] = env.zoho.seed("Accounts", [{"Account_Name": "Second"}])
    start = env.clock.now() - timedelta(seconds=1)
    rows = list(env.connector().changes("Accounts", start + timedelta(microseconds=500), env.clock.now()
                                        + timedelta(microseconds=1)))
    assert [r.id for r in rows] == [second]


def test_changes_selects_configured_fields(env: ZohoEnv) -> None:
    env.zoho.add_field("Accounts", "Custom_Rating__c")
    env.zoho.seed("Accounts", [{"Account_Name": "Acme", "Custom_Rating__c": "A"}])
    rows = list(env.connector(fields={"Accounts": ["Account_Name", "Custom_Rating__c"]}).changes("Accounts", None))
    assert rows[0]["Custom_Rating__c"] == "A"
    query = json.loads(env.transport.requests[-1].content)["select_query"]
    assert query.startswith("select Account_Name, Custom_Rating__c, Modified_Time from Accounts where")


def test_changes_of_line_item_modules_fetch_each_record_in_full(env: ZohoEnv) -> None:
    [product] = env.zoho.seed("Products", [{"Product_Name": "Widget"}])
    [account] = env.zoho.seed("Accounts", [{"Account_Name": "Acme"}])
    env.zoho.seed("Sales_Orders", [{"Subject": "SO-1", "Account_Name": {"id": account},
                                    "Ordered_Items": [{"Product_Name": {"id": product}, "Quantity": 1}]}])
    [order] = list(env.connector().changes("Sales_Orders", None))
    assert order["Ordered_Items"][0]["Quantity"] == 1


def test_get_many_fetches_up_to_a_hundred_records_in_one_call(env: ZohoEnv) -> None:
    ids = env.zoho.seed("Accounts", [{"Account_Name": f"A{i}"} for i in range(3)])
    connector = env.connector()
    env.transport.requests.clear()
    found = connector.get_many("Accounts", [*ids, "5725767000999999999"])
    assert sorted(found) == sorted(ids) and found[ids[1]]["Account_Name"] == "A1"
    assert [r.url.path for r in env.transport.requests if r.url.path.startswith("/crm")] == ["/crm/v8/Accounts"]


# -- writes -------------------------------------------------------------------------------------------------

def test_upsert_in_batches_of_100_creates_then_updates(env: ZohoEnv) -> None:
    connector = env.connector()
    payloads = [{"Account_Name": f"Customer {i:03}", "Phone": "1"} for i in range(150)]
    results = connector.write("Accounts", payloads, "Account_Name")
    assert [r.action for r in results] == ["create"] * 150
    assert all(r.target_id and r.version and r.version.tzinfo for r in results)
    upserts = [r for r in env.transport.requests if r.url.path == "/crm/v8/Accounts/upsert"]
    assert [len(json.loads(r.content)["data"]) for r in upserts] == [100, 50]
    assert json.loads(upserts[0].content)["duplicate_check_fields"] == ["Account_Name"]

    again = connector.write("Accounts", [{"Account_Name": "Customer 007", "Phone": "2"}], "Account_Name")
    assert again[0].action == "update" and again[0].target_id == results[7].target_id
    assert env.zoho.record("Accounts", results[7].target_id)["Phone"] == "2"


def test_linked_records_are_updated_by_id_even_without_their_key(env: ZohoEnv) -> None:
    env.zoho.mark_unique("Accounts", "Account_Number")
    [linked, other] = env.zoho.seed("Accounts", [{"Account_Name": "Made in CRM"}, {"Account_Name": "Other"}])
    connector = env.connector()
    env.transport.requests.clear()
    results = connector.write("Accounts", [
        {"Account_Name": "Made in CRM", "Account_Number": "C-0001"},   # linked: gets its ERP number
        {"Account_Name": "Brand new", "Account_Number": "C-0002"},     # not linked: upserted by key
    ], "Account_Number", ids=[linked, None])
    assert [r.action for r in results] == ["update", "create"]
    assert results[0].target_id == linked
    assert env.zoho.record("Accounts", linked)["Account_Number"] == "C-0001"
    assert len(env.zoho.records("Accounts")) == 3
    paths = [(r.method, r.url.path) for r in env.transport.requests]
    assert ("PUT", "/crm/v8/Accounts") in paths and ("POST", "/crm/v8/Accounts/upsert") in paths


def test_a_linked_record_deleted_in_zoho_is_upserted_again_by_key(env: ZohoEnv) -> None:
    env.zoho.mark_unique("Accounts", "Account_Number")
    results = env.connector().write("Accounts", [{"Account_Name": "Back again", "Account_Number": "C-0009"}],
                                    "Account_Number", ids=["5725767000999999999"])
    assert results[0].action == "create" and results[0].target_id != "5725767000999999999"
    assert [r["Account_Number"] for r in env.zoho.records("Accounts")] == ["C-0009"]


def test_partial_failure_gives_per_record_outcomes(env: ZohoEnv) -> None:
    env.zoho.mark_unique("Accounts", "Account_Number")
    env.zoho.seed("Accounts", [{"Account_Name": "Holder", "Account_Number": "N-1"}])
    results = env.connector().write("Accounts", [
        {"Account_Name": "Fine"},
        {"Phone": "no name"},
        {"Account_Name": "Clash", "Account_Number": "N-1"},
        {"Account_Name": "Bad parent", "Parent_Account": {"id": "5725767000999999999"}},
    ], "Account_Name")
    assert [r.action for r in results] == ["create", "fail", "fail", "fail"]
    assert [r.error_class for r in results[1:]] == ["MANDATORY_NOT_FOUND", "DUPLICATE_DATA", "INVALID_DATA"]
    assert "Account_Name at $.data[1].Account_Name" in results[1].error
    assert "Account_Number at $.data[2].Account_Number" in results[2].error
    assert "Parent_Account" in results[3].error


def test_a_refused_key_fails_every_record_of_the_batch(env: ZohoEnv) -> None:
    results = env.connector().write("Accounts", [{"Account_Name": "A"}, {"Account_Name": "B"}], "Phone")
    assert [r.action for r in results] == ["fail", "fail"]
    assert results[0].error_class == "INVALID_DATA"


def test_bulk_write_above_the_threshold(env: ZohoEnv) -> None:
    [existing] = env.zoho.seed("Accounts", [{"Account_Name": "Existing", "Phone": "old"}])
    [parent] = env.zoho.seed("Accounts", [{"Account_Name": "Parent"}])
    connector = env.connector(bulk_threshold=2)
    results = connector.write("Accounts", [
        {"Account_Name": "New One", "Phone": "1", "Parent_Account": {"id": parent}},
        {"Phone": "2"},
        {"Account_Name": "Existing", "Phone": "3"},
    ], "Account_Name")
    assert [r.action for r in results] == ["create", "fail", "update"]
    assert results[1].error_class == "MANDATORY_NOT_FOUND" and "Account_Name" in results[1].error
    assert results[2].target_id == existing
    assert env.zoho.record("Accounts", existing)["Phone"] == "3"
    created = env.zoho.record("Accounts", results[0].target_id)
    assert created["Parent_Account"]["id"] == parent
    assert env.transport.paths("/crm/v8/upsert") == []
    assert "/crm/v8/upload" in env.transport.paths() and connector.credits_used >= 500


def test_records_with_line_items_never_go_through_bulk_write(env: ZohoEnv) -> None:
    [product] = env.zoho.seed("Products", [{"Product_Name": "Widget"}])
    [account] = env.zoho.seed("Accounts", [{"Account_Name": "Acme"}])
    payloads = [{"Subject": f"SO-{i}", "Account_Name": {"id": account},
                 "Ordered_Items": [{"Product_Name": {"id": product}, "Quantity": i + 1}]} for i in range(3)]
    results = env.connector(bulk_threshold=1).write("Sales_Orders", payloads, "Subject")
    assert [r.action for r in results] == ["create"] * 3
    assert "/crm/v8/upload" not in env.transport.paths()


# -- channels -----------------------------------------------------------------------------------------------

@pytest.fixture
def live_env() -> Iterator[ZohoEnv]:
    made = make_env(real_time=True)
    yield made
    made.inner.close()


def test_channel_lifecycle_notifications_and_verification(live_env: ZohoEnv, tmp_path: Path) -> None:
    env = live_env
    with State(tmp_path / "state.db") as state:
        connector = env.connector(state=state, notify_url="http://listener.test/zoho/notify")
        assert "Accounts" in connector.push_entities()
        channel = connector.subscribe("Accounts", "http://listener.test/zoho/notify")
        assert channel.channel_id in env.zoho.channels
        assert [c["channel_id"] for c in state.channels("zoho")] == [channel.channel_id]
        assert timedelta(hours=23) < channel.expires - datetime.now(timezone.utc) <= timedelta(hours=24)

        [account] = env.zoho.seed("Accounts", [{"Account_Name": "Acme"}])
        env.zoho.edit("Accounts", account, Phone="555")
        env.drain()
        body = env.receiver.bodies[-1]
        [note] = connector.verify(json.dumps(body).encode(), {}, {})
        assert (note.entity, note.ids, note.operation, note.channel_id) == \
            ("Accounts", (account,), "update", channel.channel_id)
        assert connector.get(note.entity, note.ids[0])["Phone"] == "555"

        forged = {**body, "token": "guessed"}
        with pytest.raises(NotificationRejected) as caught:
            connector.verify(json.dumps(forged).encode(), {}, {})
        assert caught.value.status == 403
        with pytest.raises(NotificationRejected) as caught:
            connector.verify(b"not json", {}, {})
        assert caught.value.status == 400

        connector.unsubscribe(channel)
        assert channel.channel_id not in env.zoho.channels and state.channels("zoho") == []


def test_channels_are_renewed_only_within_the_margin(live_env: ZohoEnv, tmp_path: Path) -> None:
    env = live_env
    with State(tmp_path / "state.db") as state:
        connector = env.connector(state=state, notify_url="http://listener.test/zoho/notify",
                                  channel_hours=24, channel_margin_minutes=120)
        channel = connector.subscribe("Contacts")
        now = datetime.now(timezone.utc)
        assert connector.renew_expiring_channels([channel], now) == [channel]
        assert env.transport.paths("/crm/v8/actions/watch") == ["/crm/v8/actions/watch"]

        later = channel.expires - timedelta(minutes=90)  # 90 minutes left: inside the margin
        [renewed] = connector.renew_expiring_channels([channel], later)
        assert env.transport.requests[-1].method == "PATCH"
        assert renewed.channel_id == channel.channel_id and renewed.expires >= channel.expires
        assert state.channels("zoho")[0]["expires"] == renewed.expires
        sandbox_expiry = env.zoho.channels[channel.channel_id].expiry
        assert abs((sandbox_expiry - renewed.expires).total_seconds()) < 2


# -- ping, quotas, errors -----------------------------------------------------------------------------------

def test_ping_reports_org_edition_and_user(env: ZohoEnv) -> None:
    result = env.connector().ping()
    assert result.ok and result.exit_code == 0
    assert result.base_url == "https://www.zohoapis.com"
    assert any("Sandbox Trading Ltd" in d and "enterprise" in d for d in result.details)
    assert any("Patricia Boyle" in d for d in result.details)
    assert result.warnings == ()


def test_ping_warns_when_the_edition_lacks_needed_modules() -> None:
    env = make_env(edition="standard")
    try:
        result = env.connector().ping()
        assert result.ok
        assert result.warnings and "Sales_Orders, Invoices" in result.warnings[0]
    finally:
        env.inner.close()


def test_ping_unreachable_exits_5(env: ZohoEnv) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    env.transport.intercept = refuse
    result = env.connector().ping()
    assert not result.ok and result.exit_code == EXIT_UNREACHABLE == 5


def test_429_is_retried_after_retry_after(env: ZohoEnv) -> None:
    answered: list[int] = []

    def throttle_once(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.startswith("/crm/") and not answered:
            answered.append(429)
            return httpx.Response(429, headers={"Retry-After": "1"},
                                  json={"code": "TOO_MANY_REQUESTS", "details": {}, "message": "slow down",
                                        "status": "error"})
        return None

    env.transport.intercept = throttle_once
    env.zoho.seed("Accounts", [{"Account_Name": "Acme"}])
    assert len(list(env.connector().changes("Accounts", None))) == 1
    assert len(env.transport.paths("/crm/v8/coql")) == 2


def test_too_many_requests_inside_a_200_is_retried_and_a_record_naming_it_is_not(env: ZohoEnv) -> None:
    answered: list[int] = []

    def throttle_once(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.startswith("/crm/") and not answered:
            answered.append(200)
            return httpx.Response(200, json={"code": "TOO_MANY_REQUESTS", "details": {}, "message": "slow down",
                                             "status": "error"})
        return None

    env.transport.intercept = throttle_once
    env.zoho.seed("Accounts", [{"Account_Name": "TOO_MANY_REQUESTS Ltd"}])
    assert [r["Account_Name"] for r in env.connector().changes("Accounts", None)] == ["TOO_MANY_REQUESTS Ltd"]
    # Once for the refused call, once for its retry; the answer naming the code in a record is taken as it is.
    assert len(env.transport.paths("/crm/v8/coql")) == 2


def test_credits_are_counted_and_the_daily_budget_stops_the_run(env: ZohoEnv) -> None:
    connector = env.connector(coql_page_size=200)
    connector.set_budget(3)
    connector.get("Accounts", "1")
    connector.get("Accounts", "1")
    assert connector.credits_used == 2
    list(connector.changes("Accounts", None))  # 1 credit (COQL limit 200): exactly the budget
    with pytest.raises(BudgetExhausted, match="daily budget of 3") as caught:
        connector.get("Accounts", "1")
    assert caught.value.exit_code == 3
    assert connector.credits_used == 3
    # The budget is a rolling day shared by runs: the next run on this host is refused too.
    with pytest.raises(BudgetExhausted):
        env.connector(daily_credit_budget=3).get("Accounts", "1")


def test_writes_are_counted_one_credit_per_ten_records(env: ZohoEnv) -> None:
    connector = env.connector()
    connector.write("Accounts", [{"Account_Name": f"A{i}"} for i in range(25)], "Account_Name")
    assert connector.credits_used == 3
    assert connector.credits_used == env.zoho.credits


# -- concurrency limits -------------------------------------------------------------------------------------

def accounts(tag: str, count: int) -> list[dict[str, object]]:
    return [{"Account_Name": f"{tag}-{i}"} for i in range(count)]


def test_twenty_threads_upserting_100_keep_ten_in_flight_and_are_never_refused() -> None:
    env = make_env(faults="latency=40ms")
    try:
        connector = env.connector(edition="enterprise")
        assert connector.http.max_concurrency == 20 and connector.sub_concurrency == 10
        connector.org()  # the access token is minted before the threads start
        env.zoho.reset_counters()
        errors = run_in_threads(20, lambda n: connector.write("Accounts", accounts(f"T{n}", 100), "Account_Name"))
        assert errors == []
        assert env.zoho.concurrency_refused == 0
        assert env.zoho.peak_heavy_in_flight == 10
        assert len(env.zoho.records("Accounts")) == 2000
        assert connector.credits_used - 1 == env.zoho.credits == 20 * 10
    finally:
        env.inner.close()


def test_light_calls_use_the_whole_edition_limit() -> None:
    env = make_env(faults="latency=80ms")
    try:
        connector = env.connector(edition="enterprise")
        connector.org()
        env.zoho.reset_counters()
        errors = run_in_threads(25, lambda n: connector.write("Accounts", accounts(f"T{n}", 10), "Account_Name"))
        assert errors == []
        assert env.zoho.concurrency_refused == 0
        # not held to 10; never above the edition's 20 (exactly 20 needs all 25 threads to start within the latency)
        assert 10 < env.zoho.peak_in_flight <= 20 and env.zoho.peak_heavy_in_flight == 0
    finally:
        env.inner.close()


def test_concurrency_429s_are_retried_and_cost_no_credits() -> None:
    env = make_env(faults="latency=40ms")
    try:
        # sub_concurrency raised past Zoho's 10: the sandbox refuses some, the client sends them again
        connector = env.connector(edition="enterprise", sub_concurrency=20, retry_attempts=20)
        connector.org()
        env.zoho.reset_counters()
        errors = run_in_threads(20, lambda n: connector.write("Accounts", accounts(f"T{n}", 100), "Account_Name"))
        assert errors == []
        assert env.zoho.concurrency_refused > 0
        assert len(env.zoho.records("Accounts")) == 2000
        assert connector.credits_used - 1 == env.zoho.credits == 20 * 10
    finally:
        env.inner.close()


def test_write_concurrency_is_the_sub_concurrency_for_writes_of_more_than_ten(env: ZohoEnv) -> None:
    enterprise = env.connector(edition="enterprise")
    assert enterprise.write_concurrency("Accounts", 100) == 10
    assert enterprise.write_concurrency("Accounts", 11) == 10
    assert enterprise.write_concurrency("Accounts", 10) == 20
    assert enterprise.write_concurrency("Accounts", 1) == 20
    assert env.connector(edition="ultimate").write_concurrency("Invoices", 100) == 10
    assert env.connector(edition="free").write_concurrency("Accounts", 100) == 5
    assert env.connector(edition="free").write_concurrency("Accounts", 5) == 5
    assert env.connector(concurrency=8).write_concurrency("Accounts", 100) == 8
    assert env.connector(edition="enterprise", sub_concurrency=4).write_concurrency("Accounts", 100) == 4
    assert env.connector(edition="enterprise", sub_concurrency=4).write_concurrency("Accounts", 10) == 20


def test_which_calls_are_resource_intensive() -> None:
    assert is_heavy("POST", "/crm/v8/coql", body={"select_query": "select id from Accounts where id is not null"})
    assert is_heavy("POST", "https://www.zohoapis.com/crm/v8/coql")
    assert is_heavy("GET", "/crm/v8/Accounts", {"fields": "id", "sort_by": "Modified_Time"})
    assert is_heavy("GET", "/crm/v8/Accounts", {"fields": "id", "cvid": "5725767000000087501"})
    assert not is_heavy("GET", "/crm/v8/Accounts", {"fields": "id", "ids": "1,2"})
    assert not is_heavy("GET", "/crm/v8/Accounts/1")
    assert is_heavy("POST", "/crm/v8/Accounts/upsert", body={"data": [{}] * 11})
    assert not is_heavy("POST", "/crm/v8/Accounts/upsert", body={"data": [{}] * 10})
    assert is_heavy("PUT", "/crm/v8/Accounts", body={"data": [{"id": "1"}] * 11})
    assert is_heavy("POST", "/crm/v8/Accounts", body={"data": [{}] * 100})
    assert not is_heavy("POST", "/crm/v8/actions/watch", body={"watch": [{}] * 20})
    assert not is_heavy("POST", "/crm/bulk/v8/write", body={"operation": "upsert"})


# -- secrets never leak -------------------------------------------------------------------------------------

def test_no_secret_appears_in_output_errors_or_state(env: ZohoEnv, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    texts: list[str] = []
    with State(tmp_path / "state.db") as state:
        connector = env.connector(state=state, notify_url="http://listener.test/zoho/notify", bulk_threshold=1)
        texts.append(repr(connector.ping()))
        connector.write("Accounts", [{"Account_Name": "A"}, {"Phone": "x"}], "Account_Name")
        texts += [repr(r) for r in connector.write("Accounts", [{"Phone": "x"}], "Account_Name")]
        channel = connector.subscribe("Accounts")
        texts.append(repr(channel))
        texts.append(repr(connector.auth.token()))
        try:
            connector.verify(b'{"module": "Accounts", "ids": ["1"], "token": "x"}', {}, {})
        except NotificationRejected as exc:
            texts.append(str(exc))
        env.zoho.revoke_refresh_token(env.refresh_token)
        for attempt in (lambda: env.connector(secrets=SecretStore()).ping(),):
            texts.append(repr(attempt()))
        SecretTokenCache(SecretStore(), "zoho").clear()
        try:
            env.connector(secrets=SecretStore()).get("Accounts", "1")
        except AuthError as exc:
            texts.append(str(exc))
        access = connector.auth.token().access_token
        notify_token = SecretStore().get("zoho", "notify_token")
    captured = capsys.readouterr()
    haystack = "\n".join([*texts, captured.out, captured.err, caplog.text,
                          (tmp_path / "state.db").read_bytes().decode("latin-1")])
    quota = Path(__import__("mlconnector.systems.zoho", fromlist=["default_quota_path"]).default_quota_path())
    if quota.exists():
        haystack += quota.read_text()
    from tests.systems.zoho_env import CLIENT_SECRET

    for secret in (CLIENT_SECRET, env.refresh_token, access, notify_token):
        assert secret and secret not in haystack


def test_documents_written_by_key_are_looked_up_with_one_query_per_batch_and_keep_their_lines_once(
        env: ZohoEnv) -> None:
    # Zoho adds the line items an update sends to those the record has: documents that may exist already (a
    # run killed after Zoho took them) are looked up by key first, 100 keys a COQL query (two "in" lists).
    env.zoho.mark_unique("Invoices", "ERP_Number")
    [product] = env.zoho.seed("Products", [{"Product_Name": "Widget"}])
    [account] = env.zoho.seed("Accounts", [{"Account_Name": "Acme"}])

    def invoice(n: int) -> dict:
        return {"Subject": f"INV-{n}", "ERP_Number": f"PS-{n:05d}", "Account_Name": {"id": account},
                "Invoiced_Items": [{"Product_Name": {"id": product}, "Quantity": 1 + n % 3}]}

    env.zoho.seed("Invoices", [invoice(n) for n in range(60)])
    before = env.zoho.calls["coql"]

    results = env.connector().write("Invoices", [invoice(n) for n in range(100)], "ERP_Number")

    assert env.zoho.calls["coql"] - before == 1
    assert [r.action for r in results] == ["update"] * 60 + ["create"] * 40
    stored = {r["ERP_Number"]: r for r in (env.zoho.record("Invoices", x.target_id) for x in results)}
    assert len(stored) == 100 and all(len(r["Invoiced_Items"]) == 1 for r in stored.values())
