"""The Zuora connector on the in-process sandbox: the base URL from region and environment, a token cached
across runs and renewed before its hour, error categories, entities, and callouts verified as configured."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import httpx
import pytest

from mlconnector.config import SystemConfig
from mlconnector.errors import AuthError, ConfigError, NotificationRejected, RemoteError
from mlconnector.sandbox.common import HostRouter, InProcessTransport
from mlconnector.sandbox.zuora import create_app
from mlconnector.secrets import SecretStore
from mlconnector.state import State
from mlconnector.systems import ConnectorContext
from mlconnector.systems.base import Notification
from mlconnector.systems.zuora import ZuoraConnector, base_url_of, failure_of
from mlconnector.webhooks import Inbox, create_receiver


def system(**settings) -> SystemConfig:
    return SystemConfig("zuora", "zuora", {"client_id": "c", **settings})


@pytest.mark.parametrize("region, environment, url", [
    ("us1", "production", "https://rest.na.zuora.com"), ("us1", "sandbox", "https://rest.sandbox.na.zuora.com"),
    ("us1", "test", "https://rest.test.zuora.com"), ("us2", "production", "https://rest.zuora.com"),
    ("us2", "sandbox", "https://rest.apisandbox.zuora.com"), ("us2", "test", "https://rest.test.zuora.com"),
    ("eu", "production", "https://rest.eu.zuora.com"), ("eu", "sandbox", "https://rest.sandbox.eu.zuora.com"),
    ("eu", "central-sandbox", "https://rest.test.eu.zuora.com"), ("apac", "production", "https://rest.ap.zuora.com"),
    ("apac", "test", "https://rest.test.ap.zuora.com"),
])
def test_the_base_url_follows_region_and_environment(region, environment, url):
    assert base_url_of(system(region=region, environment=environment))[0] == url


def test_an_undocumented_host_or_unknown_region_is_a_config_error_and_base_url_overrides():
    with pytest.raises(ConfigError, match="no sandbox host for apac"):
        base_url_of(system(region="apac", environment="sandbox"))
    with pytest.raises(ConfigError, match="region = 'mars'"):
        base_url_of(system(region="mars"))
    assert base_url_of(system(region="mars", base_url="https://rest.pt1.zuora.com/"))[0] == "https://rest.pt1.zuora.com"


@pytest.mark.parametrize("code, retryable, category", [
    (53100350, True, "zuora_locking_contention"), (50000061, True, "zuora_temporary_error"),
    ("51000070", True, "zuora_concurrency_limit"), (53100399, True, "zuora_integration_error"),
    (53100320, False, "zuora_invalid_value"), (50000040, False, "zuora_not_found"),
    (53100330, False, "zuora_business_rule"), (50000060, False, "zuora_internal_error"),
])
def test_business_errors_are_retryable_by_their_category(code, retryable, category):
    response = httpx.Response(200, json={"success": False, "processId": "P1",
                                         "reasons": [{"code": code, "message": "m"}]})
    found = failure_of("zuora", response)
    assert found is not None and found.retryable is retryable and found.error_class == category
    assert failure_of("zuora", httpx.Response(200, json={"success": True})) is None


APPS: dict[int, object] = {}


def zuora_app_of(zuora):
    return APPS[id(zuora)]


@pytest.fixture
def env(tmp_path):
    app = create_app(entity_ids=("e-one", "e-two"))
    zuora = app.state.zuora
    APPS[id(zuora)] = app
    client = zuora.register_client()
    router = HostRouter({"rest.test.eu.zuora.com": InProcessTransport(app)})
    store = SecretStore()
    store.set("zuora", "client_secret", client.client_secret)
    store.set("zuora", "callout_password", "pw-Callout-1")
    store.set("zuora", "callout_secret", "hdr-Secret-2")

    def connector(**settings) -> ZuoraConnector:
        config = SystemConfig("zuora", "zuora", {"client_id": client.client_id, "region": "eu", "environment": "test",
                                                 "entity_ids": ["e-two"], **settings})
        return ZuoraConnector(config, ConnectorContext(secrets=store, transport=router), sleep=lambda s: None)

    yield zuora, connector, store, client
    store.delete("zuora", "access_token_cache")
    router.close()


def test_ping_shows_region_host_and_entity_and_the_token_is_reused_by_the_next_run(env):
    zuora, connector, _, _ = env
    first = connector()
    result = first.ping()
    assert result.ok, result.error
    assert result.base_url == "https://rest.test.eu.zuora.com"
    assert "eu test (https://rest.test.eu.zuora.com)" in result.details and "entity e-two" in result.details
    first.close()
    second = connector()
    assert second.ping().ok and zuora.minted == 1   # cached across runs in the secret store
    second.close()


def test_a_token_is_renewed_before_its_hour_is_up(env):
    zuora, connector, _, _ = env
    zuora.faults.token_ttl = 240   # tokens with four minutes left as they come: inside the five-minute margin
    made = connector()
    made.ping()
    minted = zuora.minted
    assert minted >= 1
    made.ping()
    assert zuora.minted > minted   # renewed, not used to its last minutes (an hour's token is kept: the test above)
    made.close()


def test_a_tenant_with_several_entities_needs_the_entity_header(env):
    _, connector, _, _ = env
    plain = connector(entity_ids=[])
    result = plain.ping()
    assert not result.ok and "Zuora-Entity-Ids" in (result.error or "")
    with pytest.raises(ConfigError, match="one entity per call"):
        connector(entity_ids=["a", "b"])


def test_refused_credentials_name_the_fix_and_never_the_secret(env):
    _, connector, store, client = env
    store.set("zuora", "client_secret", "wrong-secret-value")
    made = connector()
    with pytest.raises(AuthError) as refused:
        made.auth.token()
    assert "check region/environment" in str(refused.value) and "wrong-secret-value" not in str(refused.value)
    assert client.client_secret not in str(refused.value)


def xml(**params: str) -> bytes:
    return ("<callout>" + "".join(f'<parameter name="{k}">{v}</parameter>' for k, v in params.items())
            + "</callout>").encode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_basic_callout_is_challenged_then_accepted_and_names_the_invoice(env):
    _, connector, _, _ = env
    made = connector(callout_auth="basic", callout_user="zuora")
    with pytest.raises(NotificationRejected) as challenge:
        made.verify(xml(InvoiceId="inv1"), {}, {})
    assert challenge.value.status == 401 and challenge.value.headers["WWW-Authenticate"].startswith("Basic realm=")
    with pytest.raises(NotificationRejected):
        made.verify(xml(InvoiceId="inv1"), {"Authorization": basic("zuora", "nope")}, {})
    assert made.verify(xml(EventType="InvoicePosted", InvoiceId="inv1"),
                       {"Authorization": basic("zuora", "pw-Callout-1")}, {}) == [
        Notification("zuora", "invoices", ("inv1",), "update")]


def test_a_json_template_callout_with_a_shared_header(env):
    _, connector, _, _ = env
    made = connector(callout_auth="header", callout_header="X-Callout-Token")
    body = json.dumps({"eventType": "PaymentProcessed", "PaymentId": "pay1"}).encode()
    with pytest.raises(NotificationRejected) as refused:
        made.verify(body, {"X-Callout-Token": "guess"}, {})
    assert refused.value.status == 403
    [note] = made.verify(body, {"x-callout-token": "hdr-Secret-2"}, {})
    assert (note.entity, note.ids) == ("payments", ("pay1",))
    with pytest.raises(NotificationRejected) as empty:
        made.verify(b'{"eventType": "Other"}', {"x-callout-token": "hdr-Secret-2"}, {})
    assert empty.value.status == 400


def test_the_receiver_sends_the_basic_challenge_zuora_waits_for(env, tmp_path):
    _, connector, _, _ = env
    made = connector(callout_auth="basic", notify_url="http://listener.test/hooks/zuora")
    inbox = Inbox(tmp_path / "state.db", {("zuora", "invoices"): ["nav-zuora"]})
    app = create_receiver({"zuora": made}, inbox)
    transport = InProcessTransport(app)
    with httpx.Client(transport=transport, base_url="http://listener.test") as http:
        first = http.post("/hooks/zuora", content=xml(InvoiceId="inv9"))
        assert first.status_code == 401 and first.headers["www-authenticate"].startswith("Basic realm=")
        second = http.post("/hooks/zuora", content=xml(InvoiceId="inv9"),
                           headers={"Authorization": basic("zuora", "pw-Callout-1")})
        assert second.status_code == 202
    transport.close()
    inbox.close()
    with State(tmp_path / "state.db") as state:
        assert [row["ids"] for row in state.pending_inbox("nav-zuora")] == [["inv9"]]


# -- ZOQL reads (read_api = "zoql") ----------------------------------------------------------------------------
ZOQL = {"read_api": "zoql", "zoql_fields": {"accounts": ["NAVCustomerNumber__c"]}}


def seed_accounts(zuora, count: int) -> list[dict]:
    """Accounts ten seconds apart, so each has its own updated second."""
    made = []
    for index in range(count):
        made.append(zuora.seed_account(f"Account {index}", email=f"ap{index}@example.org",
                                       NAVCustomerNumber__c=f"C{index:05d}"))
        zuora.advance(seconds=10)
    return made


def seen(records) -> list[tuple]:
    return [(r.id, r.modified, r.data["name"], r.data["billTo"]["workEmail"], r.data["NAVCustomerNumber__c"])
            for r in records]


def test_zoql_reads_page_through_query_more_and_match_object_query_in_updated_order(env):
    zuora, connector, _, _ = env
    accounts = seed_accounts(zuora, 7)
    zuora.edit("accounts", accounts[0]["id"], name="Account 0 renamed")   # the oldest is now the newest

    oq = list(connector().changes("accounts", None))
    zuora.reset_counters()
    zoql = list(connector(**ZOQL, zoql_batch_size=3).changes("accounts", None))

    assert seen(zoql) == seen(oq) and len(zoql) == 7
    assert [r.data["name"] for r in zoql][-1] == "Account 0 renamed"
    assert zuora.calls["action.queryMore"] >= 2          # 7 accounts in batches of 3: query + 2 x queryMore
    assert zuora.calls["query.list"] == 0                 # no Object Query call on the way


def test_custom_fields_a_mapping_reads_are_named_by_zoql_reads_too(env):
    zuora, connector, _, _ = env
    zuora.add_custom_field("accounts", "Region__c")
    seed_accounts(zuora, 2)
    zuora.edit("accounts", zuora.records("accounts")[0]["id"], Region__c="EMEA")
    made = connector(**ZOQL)
    made.also_read("accounts", ["Region__c", "name"])  # what [pairs.*.mappings] asks the engine to read
    regions = {r.data["name"]: r.data.get("Region__c") for r in made.changes("accounts", None)}
    assert regions == {"Account 0": "EMEA", "Account 1": None}
    # Describe lists the custom field, and every field an Object Query record carries, under Object Query's names
    known = connector().field_names("accounts")
    [record] = [r for r in connector().changes("accounts", None) if r.data["name"] == "Account 0"]
    assert "Region__c" in known and set(record.data) - known == set()


def test_a_zoql_window_fuller_than_the_limit_is_split_and_still_read_in_order(env):
    zuora, connector, _, _ = env
    seed_accounts(zuora, 9)
    oq = list(connector().changes("accounts", None))

    zoql = list(connector(**ZOQL, zoql_batch_size=2, zoql_window_records=3).changes("accounts", None))

    assert seen(zoql) == seen(oq)


def test_zoql_incremental_reads_take_exactly_the_records_updated_in_since_until(env):
    zuora, connector, _, _ = env
    accounts = seed_accounts(zuora, 5)
    stamps = [connector().get("accounts", a["id"]).modified for a in accounts]
    since, until = stamps[1], stamps[3]

    oq = list(connector().changes("accounts", since, until))
    zoql = list(connector(**ZOQL, zoql_batch_size=1).changes("accounts", since, until))

    assert [r.id for r in zoql] == [accounts[1]["id"], accounts[2]["id"]]
    assert seen(zoql) == seen(oq)
    assert list(connector(**ZOQL).changes("accounts", stamps[4] + timedelta(seconds=1))) == []


class ExpireOnQueryMore(httpx.BaseTransport):
    """Lets Zuora's 15 minutes pass before every queryMore, as a stalled read would."""

    def __init__(self, inner: httpx.BaseTransport, zuora) -> None:
        self.inner, self.zuora = inner, zuora

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/action/queryMore":
            self.zuora.advance(minutes=16)
        return self.inner.handle_request(request)


def test_an_expired_query_locator_restarts_the_window_once_then_fails_with_a_clear_error(env):
    zuora, _, store, client = env
    seed_accounts(zuora, 3)
    app_transport = InProcessTransport(zuora_app_of(zuora))
    router = HostRouter({"rest.test.eu.zuora.com": ExpireOnQueryMore(app_transport, zuora)})
    config = SystemConfig("zuora", "zuora", {"client_id": client.client_id, "region": "eu", "environment": "test",
                                             "entity_ids": ["e-two"], **ZOQL, "zoql_batch_size": 2})
    made = ZuoraConnector(config, ConnectorContext(secrets=store, transport=router), sleep=lambda s: None)
    store.delete("zuora", "access_token_cache")
    with pytest.raises(RemoteError) as expired:
        list(made.changes("accounts", None))
    message = str(expired.value)
    assert "INVALID_QUERY_LOCATOR" in message and "15 minutes" in message and "Traceback" not in message
    assert zuora.calls["action.query"] == 2               # the window was started again once
    assert client.client_secret not in message
    made.close()
    router.close()


def test_zoql_faults_reach_the_user_as_one_line_naming_the_fix(env):
    zuora, connector, _, _ = env
    seed_accounts(zuora, 1)
    made = connector(read_api="zoql", zoql_fields={"accounts": ["NAVCustomerNumber"]})
    with pytest.raises(RemoteError) as refused:
        list(made.changes("accounts", None))
    assert "INVALID_FIELD" in str(refused.value) and "check zoql_fields" in str(refused.value)
    assert "Account.NAVCustomerNumber" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(ConfigError, match="read_api"):
        connector(read_api="soap")
    with pytest.raises(ConfigError, match="zoql_batch_size"):
        connector(read_api="zoql", zoql_batch_size=5000)


def test_the_sandbox_speaks_zoql_as_zuora_documents_it(env):
    zuora, connector, _, _ = env
    seed_accounts(zuora, 3)
    made = connector()

    def post(path: str, body: dict) -> httpx.Response:
        return made.http.request("POST", path, json=body, idempotent=True)

    first = post("/v1/action/query", {"queryString": "select Id, Name from Account", "conf": {"batchSize": 2}})
    body = first.json()
    assert first.status_code == 200 and body["size"] == 2 and body["done"] is False and "success" not in body
    assert set(body["records"][0]) == {"Id", "Name"}
    rest = post("/v1/action/queryMore", {"queryLocator": body["queryLocator"]}).json()
    assert rest["size"] == 1 and rest["done"] is True and "queryLocator" not in rest
    big = post("/v1/action/query", {"queryString": "select Id from Account", "conf": {"batchSize": 5000}}).json()
    assert big["size"] == 3 and big["done"] is True        # more than 2,000 is taken as 2,000
    for query, code in [("select * from Account", "MALFORMED_QUERY"), ("SELECT Id FROM Account", "MALFORMED_QUERY"),
                        ("select Id from Account order by Id", "MALFORMED_QUERY"),
                        ("select Id from Account where Id in ('a')", "MALFORMED_QUERY"),
                        ("select Nope from Account", "INVALID_FIELD"), ("select Id from Order", "INVALID_TYPE"),
                        ("select Id from Widget", "INVALID_TYPE")]:
        fault = post("/v1/action/query", {"queryString": query})
        assert fault.status_code == 400 and fault.json()["faultcode"] == f"fns:{code}", (query, fault.json())
        assert fault.json()["detail"], fault.json()
    bad = post("/v1/action/queryMore", {"queryLocator": "2c92c0f9602fb240016049ac7e0b47e7-2000"})
    assert bad.json()["faultcode"] == "fns:INVALID_QUERY_LOCATOR"
    made.close()


def test_read_api_can_be_chosen_per_entity(env):
    zuora, connector, _, _ = env
    seed_accounts(zuora, 2)
    zuora.seed_product("Widget", "W-1", 9.5)
    made = connector(read_api={"products": "zoql"})

    [product] = list(made.changes("products", None))
    assert (product.data["sku"], product.data["price"], product.data["currency"]) == ("W-1", 9.5, "USD")
    assert zuora.calls["action.query"] > 0 and zuora.calls["query.list"] == 0
    assert len(list(made.changes("accounts", None))) == 2 and zuora.calls["query.list"] == 1
    made.close()


def test_one_second_holding_more_than_a_window_is_still_read_whole(env):
    zuora, connector, _, _ = env
    made = [zuora.seed_account(f"Burst {i}", email=f"b{i}@example.org", NAVCustomerNumber__c=f"B{i}") for i in range(5)]

    read = list(connector(**ZOQL, zoql_batch_size=1, zoql_window_records=2).changes("accounts", None))

    assert sorted(r.id for r in read) == sorted(a["id"] for a in made)
    assert [r.modified for r in read] == sorted(r.modified for r in read)


# -- the read clock: where an incremental read's window provably ends ----------------------------------------------

@pytest.mark.parametrize("read_api", ["object_query", "zoql"])
def test_read_clock_is_zuoras_clock_when_the_read_began(env, read_api):
    zuora, connector, _, _ = env
    zuora.advance(hours=-2)  # Zuora's clock, not this host's
    seed_accounts(zuora, 3)
    reader = connector(read_api=read_api, zoql_batch_size=1)
    assert reader.read_clock("accounts") is None

    began = zuora.clock.now().replace(microsecond=0)
    records = reader.changes("accounts", None)
    next(records)
    clock = reader.read_clock("accounts")
    list(records)  # later calls of the same read (pages, queryMore, lookups) do not move it
    zuora.advance(seconds=30)
    list(reader.changes("products", None))
    reader.get("accounts", zuora.records("accounts")[0]["id"])

    assert clock is not None and began - timedelta(seconds=1) <= clock <= zuora.clock.now()
    assert reader.read_clock("accounts") == clock
    assert reader.read_clock("products") > clock + timedelta(seconds=29)


def test_a_sync_without_changes_reads_nothing_old_from_zuora_and_one_call_per_flow(tmp_path, monkeypatch):
    from tests.pairs.zuora_world import make_zuora_world

    world = make_zuora_world(tmp_path, monkeypatch)
    try:
        # Zuora's clock runs half a minute behind this host's: records, Date and windows all follow Zuora's.
        world.zuora.advance(seconds=-30)
        first = world.sync()
        assert first.exit_code == 0, first.to_dict()
        runs = []
        for _ in range(2):
            world.zuora.advance(seconds=10)  # time passes between runs, past the 5 s overlap
            runs.append(world.sync())
        from_zuora = ("accounts_to_customers", "products_to_items", "invoice_status", "payment_status")
        for run in runs:
            assert run.exit_code == 0, run.to_dict()
            assert all(run.flows[f].calls == {"zuora": 1} for f in from_zuora), run.to_dict()
            assert all(s.created == s.updated == 0 for s in run.flows.values()), run.to_dict()
        # The second run still re-reads, through the 5 s overlap, the accounts and products the first run created
        # just before reading them back; the third reads nothing old: the window closed at Zuora's clock.
        assert [runs[0].flows[f].read for f in from_zuora[:2]] == [3, 3]
        assert [runs[1].flows[f].read for f in from_zuora[:2]] == [0, 0]
        zuora_now = world.zuora.clock.now()
        with world.state() as state:
            mark = state.watermark("nav-zuora", "accounts_to_customers")
        assert mark is not None and zuora_now - timedelta(seconds=12) < mark <= zuora_now
    finally:
        world.close()
