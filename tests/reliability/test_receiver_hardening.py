"""`mlconnector listen` as a hostile client finds it: a token no system would send, JSON nested to break a parser,
bodies cut off or sent a byte at a time, a handshake that is not one, and a state file gone under it. Every answer
is a deliberate 4xx (or 503 from /health), no traceback reaches the log, and no connection is held for good."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.reliability.harness import Rig, count, exit_code_ok, wait_until
from tests.reliability.test_webhook_abuse import _free_port

BODY_TIMEOUT = 2.0


@dataclass
class Receiver:
    rig: Rig
    port: int
    proc: subprocess.Popen

    def stop(self) -> str:
        """Stop the receiver; its log."""
        self.rig.kill(self.proc)
        return self.rig.finish(self.proc)[2]


@pytest.fixture
def receiver(make_rig) -> Iterator[Receiver]:
    port = _free_port()
    hook = f"http://127.0.0.1:{port}/hooks"
    rig = make_rig(notify_urls={"zoho": f"{hook}/zoho", "bc": f"{hook}/bc"})
    proc = rig.popen("listen", "--port", str(port), "--body-timeout", str(BODY_TIMEOUT))
    assert wait_until(lambda: _health(port) is not None or proc.poll() is not None, timeout=20)
    assert proc.poll() is None, rig.finish(proc)
    running = Receiver(rig, port, proc)
    try:
        for pair in ("nav-zoho", "bc-zoho"):  # subscribes: Zoho's channel token, BC's clientState and handshake
            result = rig.cli("sync", pair)
            exit_code_ok(result.returncode, (0,), result.stderr)
        yield running
    finally:
        if proc.poll() is None:
            running.stop()


def _health(port: int) -> httpx.Response | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
    except httpx.HTTPError:
        return None


def _post(port: int, system: str, body: bytes, **params: str) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/hooks/{system}", content=body, params=params,
                      headers={"Content-Type": "application/json"}, timeout=30)


def test_forged_tokens_and_deep_json_get_4xx_not_500(receiver):
    rig, port = receiver.rig, receiver.port
    token = rig.setup.secret_store().get("zoho", "notify_token")
    accounts = [a["id"] for a in rig.zoho("nav-zoho").records("Accounts")][:1]
    forged = {"module": "Accounts", "ids": accounts, "operation": "update", "channel_id": "x"}
    for bad in ("tökén-ñ", token[:-1] + "é", "\ud800", "\u202e" + token):
        answer = _post(port, "zoho", json.dumps({**forged, "token": bad}).encode())
        assert answer.status_code == 403, (bad, answer.status_code, answer.text)
    deep = b"[" * 100_000 + b"]" * 100_000
    for system in ("zoho", "bc"):
        assert _post(port, system, deep).status_code == 400
        assert _post(port, system, b'{"value": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001).status_code == 400
    # The genuine token still gets in.
    assert _post(port, "zoho", json.dumps({**forged, "token": token}).encode()).status_code == 202
    count("notifications_rejected", 12)


def test_a_handshake_is_answered_only_when_it_is_one(receiver):
    rig, port = receiver.rig, receiver.port
    # A POST carrying a body is a notification, whatever its query says: verified as one (a forged clientState).
    item = {"subscriptionId": "x", "clientState": "forged", "changeType": "updated",
            "resource": "api/v2.0/companies(1)/customers(2)"}
    forged = _post(port, "bc", json.dumps({"value": [item]}).encode(), validationToken="abc123")
    assert forged.status_code == 403 and "abc123" not in forged.text
    # A token no BC would send is not echoed back (the receiver is no reflector).
    for token in ("<script>alert(1)</script>", "x" * 5000, "a b"):
        answer = _post(port, "bc", b"", validationToken=token)
        assert answer.status_code == 400 and token not in answer.text, (token, answer.status_code)
    # BC's own handshake: a POST without a body.
    genuine = _post(port, "bc", b"", validationToken="0f8fad5b-d9cb-469f-a165-70867728950e")
    assert genuine.status_code == 200 and genuine.text == "0f8fad5b-d9cb-469f-a165-70867728950e"


def test_cut_off_and_slow_bodies_are_closed_in_bounded_time_with_one_log_line_each(receiver):
    port = receiver.port
    head = (b"POST /hooks/zoho HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{\"module\": ")
    # Clients that go away half way through their body.
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(head)
    # Clients that send a little and then nothing: each is answered 408 and closed after BODY_TIMEOUT.
    slow = []
    for _ in range(30):
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        sock.sendall(head)
        slow.append(sock)
    started = time.monotonic()
    closed = 0
    try:
        for sock in slow:
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            assert received.startswith(b"HTTP/1.1 408"), received[:200]
            closed += 1
    finally:
        for sock in slow:
            sock.close()
    took = time.monotonic() - started
    assert closed == 30 and took < BODY_TIMEOUT + 6, f"{closed} of 30 closed in {took:.1f} s"
    assert _health(port).status_code == 200  # still serving
    log = receiver.stop()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("went away before sending its whole body") == 5, log[-3000:]
    assert len(log.strip().splitlines()) <= 5 + 30 + 2, log[-3000:]  # a line per event at most
    count("slow_connections_closed", closed)


def test_health_says_so_when_the_state_file_cannot_be_written(receiver):
    rig, port = receiver.rig, receiver.port
    ok = _health(port)
    assert ok.status_code == 200 and ok.json()["ok"] is True
    state = rig.setup.state_path
    for path in (state, state.with_name(state.name + "-wal"), state.with_name(state.name + "-shm")):
        path.unlink(missing_ok=True)  # a cleanup took it: nothing the receiver stores would be found again
    time.sleep(1.1)  # /health proves it at most once a second
    gone = _health(port)
    assert gone.status_code == 503 and gone.json()["ok"] is False and str(state) in gone.json()["error"], gone.text
