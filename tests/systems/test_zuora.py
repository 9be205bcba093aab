"""The Zuora connector on the in-process sandbox: the base URL from region and environment, a token cached
across runs and renewed before its hour, error categories, entities, and callouts verified as configured."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import httpx
import pytest

from mlconnector.auth import utcnow
from mlconnector.config import SystemConfig
from mlconnector.errors import AuthError, ConfigError, NotificationRejected
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


@pytest.fixture
def env(tmp_path):
    app = create_app(entity_ids=("e-one", "e-two"))
    zuora = app.state.zuora
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
    made = connector()
    made.ping()
    made.ping()
    assert zuora.minted == 1
    later = utcnow() + timedelta(minutes=56)   # four minutes left: inside the five-minute margin
    made.auth._now = lambda: later
    made.auth.token()
    assert zuora.minted == 2
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
