"""Push with a safety net: channels subscribed and renewed before expiry, the receiver verifying and
storing notifications before answering, the inbox drained by the next sync or at once by `listen --process`."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import uvicorn

from mlconnector import api
from mlconnector.config import load_config
from mlconnector.sync import Engine, open_pair
from mlconnector.errors import EXIT_OK
from mlconnector.sandbox.common import InProcessTransport
from mlconnector.state import State
from mlconnector.systems import ConnectorContext
from tests.fakes import Store


@pytest.fixture
def push_config(tmp_path: Path, erp: Store, crm: Store) -> Path:
    path = tmp_path / "connections.toml"
    path.write_text(f'''
[systems.erp]
kind = "testerp"
path = "{erp.path}"
[systems.crm]
kind = "testcrm"
path = "{crm.path}"
notify_url = "https://hooks.example.com/hooks/crm"
[pairs.erp-crm]
overlap_seconds = 60
''')
    return path


def engine_at(config_file: Path, tmp_path: Path, when: datetime) -> Engine:
    session = open_pair(load_config(config_file), "erp-crm", ConnectorContext(secrets=None))
    for connector in session.connectors.values():
        connector.clock = lambda: when
    return Engine(session.pair, session.config, session.connectors, State(tmp_path / "state.db"),
                  counter=session.counter, now=lambda: when)


def test_sync_subscribes_once_renews_before_expiry_and_resubscribes_when_gone(push_config, tmp_path, crm):
    start = datetime.now(timezone.utc)
    first = engine_at(push_config, tmp_path, start).sync(["accounts"])
    assert first.channels == [f"crm account: subscribed until {start + timedelta(days=1):%Y-%m-%d %H:%M} UTC"]
    assert [c["channel_id"] for c in first_state(tmp_path)] == ["ch-account-1"]

    assert engine_at(push_config, tmp_path, start + timedelta(hours=1)).sync(["accounts"]).channels == []

    near_expiry = start + timedelta(hours=23)  # within the two-hour margin
    renewed = engine_at(push_config, tmp_path, near_expiry).sync(["accounts"])
    assert renewed.channels[0].startswith("crm account: renewed until")
    assert first_state(tmp_path)[0]["expires"] == near_expiry + timedelta(days=1)

    crm.set_fault("channels", {})  # the system forgot the channel
    later = near_expiry + timedelta(hours=23)
    again = engine_at(push_config, tmp_path, later).sync(["accounts"])
    assert again.channels[0].startswith("crm account: re-subscribed")
    assert len(first_state(tmp_path)) == 1


def first_state(tmp_path: Path) -> list[dict]:
    with State(tmp_path / "state.db") as state:
        return state.channels("crm")


def test_a_failed_subscription_is_reported_and_the_poll_still_runs(push_config, tmp_path, crm, erp):
    crm.put("account", {"number": "A1", "account_name": "Acme"})
    crm.set_fault("no_subscribe", True)
    result = engine_at(push_config, tmp_path, datetime.now(timezone.utc)).sync(["accounts"])
    assert "NO_PERMISSION" in result.channel_problems[0] and "polling only" in result.channel_problems[0]
    assert result.exit_code == 5
    assert [c["number"] for c in erp.all("customer")] == ["A1"]


def post(listener: api.Listener, path: str, body: bytes, headers: dict | None = None,
         params: dict | None = None) -> httpx.Response:
    transport = InProcessTransport(listener.app)
    try:
        with httpx.Client(transport=transport, base_url="http://listener") as client:
            return client.post(path, content=body, headers=headers or {}, params=params)
    finally:
        transport.close()


def subscribed(push_config: Path, tmp_path: Path) -> dict:
    engine_at(push_config, tmp_path, datetime.now(timezone.utc)).sync(["accounts"])
    return {"channel_id": "ch-account-1", "token": "tok-ch-account-1"}


def test_receiver_stores_verified_notifications_and_rejects_the_rest(push_config, tmp_path, monkeypatch):
    monkeypatch.setenv("MLCONNECTOR_STATE", str(tmp_path / "state.db"))
    channel = subscribed(push_config, tmp_path)
    listener = api.Listener(api.Runtime(config_path=push_config))
    good = json.dumps({"channel_id": channel["channel_id"], "ids": ["a-1", "a-2"]}).encode()
    try:
        assert post(listener, "/hooks/crm", good, {"x-token": channel["token"]}).status_code == 202
        assert post(listener, "/hooks/crm", good, {"x-token": "wrong"}).status_code == 403
        assert post(listener, "/hooks/crm", b"{not json", {"x-token": channel["token"]}).status_code == 400
        assert post(listener, "/hooks/crm", b"x" * 1_000_001, {"x-token": channel["token"]}).status_code == 413
        assert post(listener, "/hooks/nope", good).status_code == 404
        handshake = post(listener, "/hooks/crm", b"", params={"validationToken": "abc 123"})
        assert handshake.status_code == 200 and handshake.text == "abc 123"
    finally:
        listener.close()
    with State(tmp_path / "state.db") as state:
        pending = state.pending_inbox("erp-crm")
    assert [(p["system"], p["entity"], p["ids"]) for p in pending] == [("crm", "account", ["a-1", "a-2"])]


def test_receiver_answers_503_when_it_cannot_store(push_config, tmp_path, monkeypatch):
    monkeypatch.setenv("MLCONNECTOR_STATE", str(tmp_path / "state.db"))
    channel = subscribed(push_config, tmp_path)
    listener = api.Listener(api.Runtime(config_path=push_config))
    monkeypatch.setattr(listener.inbox, "store", lambda notes: (_ for _ in ()).throw(OSError("disk full")))
    try:
        body = json.dumps({"channel_id": channel["channel_id"], "ids": ["a-1"]}).encode()
        response = post(listener, "/hooks/crm", body, {"x-token": channel["token"]})
    finally:
        listener.close()
    assert response.status_code == 503 and response.headers["retry-after"] == "5"


def test_the_next_sync_drains_the_inbox_then_polls(push_config, tmp_path, monkeypatch, crm, erp):
    monkeypatch.setenv("MLCONNECTOR_STATE", str(tmp_path / "state.db"))
    channel = subscribed(push_config, tmp_path)
    account = crm.put("account", {"number": "A7", "account_name": "Pushed Ltd"})
    listener = api.Listener(api.Runtime(config_path=push_config))
    try:
        body = json.dumps({"channel_id": channel["channel_id"], "ids": [account["id"]]}).encode()
        assert post(listener, "/hooks/crm", body, {"x-token": channel["token"]}).status_code == 202
    finally:
        listener.close()

    result = api.sync(api.Runtime(config_path=push_config), "erp-crm", flows=["accounts"])

    assert result.exit_code == EXIT_OK and result.notifications == 1
    assert [c["name"] for c in erp.all("customer")] == ["Pushed Ltd"]
    with State(tmp_path / "state.db") as state:
        rows = state.audit_rows(record=account["id"])
        assert [(r["action"], r["note"]) for r in rows] == [("create", "push")]  # the poll skipped it
        assert state.pending_inbox() == []
    status = api.status(api.Runtime(config_path=push_config))
    assert status.arrivals == [{"pair": "erp-crm", "flow": "accounts", "by_push": 1, "by_poll_only": 0}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_listen_process_moves_a_change_within_seconds_over_loopback(push_config, tmp_path, monkeypatch, crm, erp):
    monkeypatch.setenv("MLCONNECTOR_STATE", str(tmp_path / "state.db"))
    channel = subscribed(push_config, tmp_path)
    listener = api.Listener(api.Runtime(config_path=push_config), process=True)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(listener.app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the listener did not start"
            time.sleep(0.02)
        account = crm.put("account", {"number": "A9", "account_name": "Fast GmbH"})
        sent = time.monotonic()
        response = httpx.post(f"http://127.0.0.1:{port}/hooks/crm", headers={"x-token": channel["token"]},
                              json={"channel_id": channel["channel_id"], "ids": [account["id"]]})
        assert response.status_code == 202
        while not erp.find("customer", "number", "A9") and time.monotonic() - sent < 10:
            time.sleep(0.05)
        assert erp.find("customer", "number", "A9")[0]["name"] == "Fast GmbH"
        assert time.monotonic() - sent < 5
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


def test_a_changed_notify_url_moves_the_channel(push_config, tmp_path, crm):
    start = datetime.now(timezone.utc)
    engine_at(push_config, tmp_path, start).sync(["accounts"])
    push_config.write_text(push_config.read_text().replace("hooks.example.com", "new-hooks.example.com"))

    moved = engine_at(push_config, tmp_path, start + timedelta(minutes=5)).sync(["accounts"])

    assert moved.channels[0].startswith("crm account: moved to the new notify_url")
    [channel] = first_state(tmp_path)
    assert channel["notify_url"] == "https://new-hooks.example.com/hooks/crm"
    assert list(crm.fault("channels")) == [channel["channel_id"]]  # the old one was removed
