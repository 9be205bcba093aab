"""`listen` keeps push channels alive on its own schedule (no sync needed); a channel it cannot renew raises an
alert and, with --process, its pair is polled instead until it can be renewed again.
Each test runs with the state in the SQLite file and in PostgreSQL (``state_store``)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mlconnector import api
from mlconnector.config import load_config
from mlconnector.api import Runtime
from mlconnector.sync import Engine, open_pair
from mlconnector.systems import ConnectorContext
from tests.cli.test_alerts import Catcher


@pytest.fixture
def catcher():
    made = Catcher()
    yield made
    made.close()


@pytest.fixture
def push_config(config_file: Path, catcher: Catcher) -> Path:
    config_file.write_text(config_file.read_text().replace(
        'kind = "testcrm"', 'kind = "testcrm"\nnotify_url = "https://hooks.example.com/hooks/crm"')
        + f'\n[alerts]\nwebhook_url = "{catcher.url}"\n')
    return config_file


def subscribe_at(config: Path, when: datetime) -> None:
    """A sync made at ``when``: its channels expire a day after it (the test systems' channel life)."""
    session = open_pair(load_config(config), "erp-crm", ConnectorContext(secrets=None))
    for connector in session.connectors.values():
        connector.clock = lambda: when
    with Runtime().open_state() as state:
        Engine(session.pair, session.config, session.connectors, state, counter=session.counter,
               now=lambda: when).sync(["accounts"])


def channel_expiry() -> datetime:
    with Runtime().open_state() as state:
        [channel] = state.channels("crm")
    return channel["expires"]


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


def test_listen_renews_a_channel_near_expiry_without_any_sync(push_config, crm, state_store):
    subscribe_at(push_config, datetime.now(timezone.utc) - timedelta(hours=23, minutes=30))  # 30 min left
    assert channel_expiry() - datetime.now(timezone.utc) < timedelta(minutes=31)
    listener = api.Listener(api.Runtime(config_path=push_config))
    listener.keep_channels_alive(0.2)
    try:
        wait_for(lambda: channel_expiry() - datetime.now(timezone.utc) > timedelta(hours=23))
    finally:
        listener.close()
    assert json.loads(crm_channels(crm))["ch-account-1"]["expires"] == channel_expiry().isoformat()
    with Runtime().open_state() as state:
        assert [r["kind"] for r in state.last_runs()] == ["sync"]  # renewing is not a run


def crm_channels(crm) -> str:
    return json.dumps(crm.fault("channels"))


def test_a_renewal_that_fails_alerts_and_polls_instead_until_it_works(push_config, crm, erp, catcher, state_store):
    subscribe_at(push_config, datetime.now(timezone.utc) - timedelta(hours=23, minutes=30))
    crm.set_fault("channels", {})  # the system forgot the channel: renewing means subscribing again ...
    crm.set_fault("no_subscribe", True)  # ... which it refuses
    crm.put("account", {"number": "A7", "account_name": "Polled GmbH"})  # no notification will come for it

    listener = api.Listener(api.Runtime(config_path=push_config), process=True)
    listener.keep_channels_alive(0.2)
    try:
        wait_for(lambda: erp.find("customer", "number", "A7"))  # the poll that stands in for push
        wait_for(lambda: "channel_failed" in catcher.events())
        assert catcher.events().count("channel_failed") == 1  # once, however many rounds fail
        channel = next(b for b in catcher.bodies if b["event"] == "channel_failed")
        assert "push channel crm account cannot be renewed" in channel["text"] and "NO_PERMISSION" in channel["text"]
        problems = api.check(api.Runtime(config_path=push_config), api.Limits())
        assert [p.code for p in problems if p.code == 13] == [13]

        crm.set_fault("no_subscribe", False)
        wait_for(lambda: "channel_recovered" in catcher.events())
    finally:
        listener.close()
    assert channel_expiry() - datetime.now(timezone.utc) > timedelta(hours=23)
    assert [p.code for p in api.check(api.Runtime(config_path=push_config), api.Limits())] == []


def test_listen_renews_the_zoho_sandbox_channels_with_their_life_shortened(tmp_path, monkeypatch, state_store):
    """Zoho channels living 36 seconds, renewed when under 30 are left: `listen` renews them (PATCH), no sync."""
    from tests.pairs.world import make_world

    world = make_world(tmp_path, monkeypatch, "nav", zoho_settings="channel_hours = 0.01\n"
                                                                   "channel_margin_minutes = 0.5\n")
    try:
        assert world.sync("nav-zoho", flows=["accounts_to_customers"]).exit_code == 0  # subscribes
        [channel] = world.zoho.channels.values()
        first = channel.expiry
        assert timedelta(seconds=30) < first - datetime.now(timezone.utc) <= timedelta(seconds=37)
        listener = api.Listener(world.runtime())
        listener.keep_channels_alive(0.5)
        try:
            # (It also subscribes the modules the pair's other flows read, which this sync did not run.)
            wait_for(lambda: world.zoho.channels[channel.channel_id].expiry > first, timeout=20)
        finally:
            listener.close()
        renewed = world.zoho.channels[channel.channel_id]  # renewed in place, not subscribed anew
        with world.state() as state:
            kept = next(c for c in state.channels("zoho") if c["channel_id"] == channel.channel_id)
            assert [r["kind"] for r in state.last_runs()] == ["sync"]
        assert abs((kept["expires"] - renewed.expiry).total_seconds()) < 2
    finally:
        world.close()


def test_listen_renews_business_central_subscriptions(tmp_path, monkeypatch, state_store):
    """BC subscriptions live three days; renewed by `listen` (PATCH, BC's handshake again) once within the margin,
    set here wider than their life so that the first round renews them."""
    from tests.pairs.world import make_world

    world = make_world(tmp_path, monkeypatch, "bc", erp_settings="renew_margin_hours = 100\n")
    try:
        assert world.sync("bc-zoho", flows=["customers"]).exit_code == 0  # subscribes
        with world.state() as state:
            before = {c["channel_id"]: c["expires"] for c in state.channels("bc")}
        assert before
        time.sleep(1.1)  # BC stamps the expiry to the second
        listener = api.Listener(world.runtime())
        listener.keep_channels_alive(30)  # one round now, the next long after the test

        def renewed() -> bool:
            with world.state() as state:
                now = {c["channel_id"]: c["expires"] for c in state.channels("bc")}
            # (It also subscribes the entities the pair's other flows read, which this sync did not run.)
            return set(now) >= set(before) and all(now[i] > before[i] for i in before)
        try:
            wait_for(renewed, timeout=20)
        finally:
            listener.close()
    finally:
        world.close()


@pytest.mark.parametrize("option", ["--renew-every", "--max-age"])
def test_listen_refuses_a_bad_duration_in_one_line_before_listening(config_file, option):
    from typer.testing import CliRunner

    from mlconnector.cli.main import build_app

    result = CliRunner().invoke(build_app(), ["listen", option, "soon"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {option} 'soon' is not a duration: use e.g. 30m, 2h, 1d or 1h30m"

