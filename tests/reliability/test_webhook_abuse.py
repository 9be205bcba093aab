"""Scenario 3: `mlconnector listen` under abuse. Thousands of notifications, genuine and forged, duplicated and
reordered, malformed and oversized, sent concurrently while the receiver is killed with -9 and started again.
Verified ones are stored (and later processed) exactly once, rejected ones leave no trace, nothing the receiver
acknowledged is lost, and Business Central never gets a non-retryable 4xx for a notification of its own."""

from __future__ import annotations

import json
import random
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from tests.reliability.harness import SOAK, Rig, check_pair, count, exit_code_ok, wait_until

GENUINE_ZOHO = 1500 if SOAK else 700
GENUINE_BC = 600 if SOAK else 200
FORGED = 1500 if SOAK else 500
FAKE_BASE = 970_000_000_000_000


@dataclass
class Sent:
    """One notification and what happened to it."""

    system: str
    body: bytes
    genuine: bool
    marker: str | None            # the unique id only this notification carries
    status: int | None = None     # the receiver's answer; None: no answer (it was down)
    attempts: int = 0
    history: list[int | None] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listen(rig: Rig, port: int):
    proc = rig.popen("listen", "--port", str(port))
    assert wait_until(lambda: _up(port) or proc.poll() is not None, timeout=20)
    assert proc.poll() is None, rig.finish(proc)
    return proc


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _notifications(rig: Rig, rng: random.Random) -> list[Sent]:
    store = rig.setup.secret_store()
    token, state = store.get("zoho", "notify_token"), store.get("bc", "client_state")
    assert token and state, "the first sync did not subscribe the Zoho channel and the BC subscriptions"
    accounts = [a["id"] for a in rig.zoho("nav-zoho").records("Accounts")]
    company = rig.sandboxes.dynamics.records(rig.company("bc-zoho"), "customers")[0]
    company_id = rig.sandboxes.dynamics.db.company(rig.company("bc-zoho")).id
    subscription = rig.sandboxes.dynamics.subscriptions()[0]["subscriptionId"]
    sent: list[Sent] = []
    marker = iter(range(FAKE_BASE, FAKE_BASE + 10_000_000))

    def zoho(ids: list[str], tok: str | None, genuine: bool, mark: str | None) -> Sent:
        body = {"module": "Accounts", "ids": ids, "operation": "update", "channel_id": "abuse", "token": tok,
                "server_time": int(time.time() * 1000), "resource_uri": "x", "affected_fields": []}
        return Sent("zoho", json.dumps(body).encode(), genuine, mark)

    def bc(key: str, client_state: str, genuine: bool, mark: str | None) -> Sent:
        item = {"subscriptionId": subscription, "clientState": client_state, "changeType": "updated",
                "resource": f"api/v2.0/companies({company_id})/customers({key})",
                "lastModifiedDateTime": "2026-11-23T10:00:00Z", "expirationDateTime": "2026-11-26T10:00:00Z"}
        return Sent("bc", json.dumps({"value": [item]}).encode(), genuine, mark)

    for _ in range(GENUINE_ZOHO):
        mark = str(next(marker))
        sent.append(zoho([rng.choice(accounts), mark], token, True, mark))
    for _ in range(GENUINE_BC):
        mark = f"{next(marker):032x}"
        key = f"{mark[:8]}-{mark[8:12]}-{mark[12:16]}-{mark[16:20]}-{mark[20:]}"
        real = rng.random() < 0.1  # some name a real customer, the rest carry their marker as the key
        sent.append(bc(company["id"], state, True, None) if real else bc(key, state, True, key))
    for index in range(FORGED):
        mark = str(next(marker))
        kind = index % 6
        if kind == 0:
            sent.append(zoho([mark], token[:-2] + "xx", False, mark))             # wrong token
        elif kind == 1:
            sent.append(zoho([mark], None, False, mark))                          # no token
        elif kind == 2:
            key = f"{int(mark):032x}"
            sent.append(bc(f"{key[:8]}-{key[8:12]}-{key[12:16]}-{key[16:20]}-{key[20:]}", "not-" + state,
                           False, key))                                           # wrong clientState
        elif kind == 3:
            sent.append(Sent(rng.choice(["zoho", "bc"]), rng.choice(
                [b"{not json", b"", b"[]", b'{"value": "x"}', b'{"ids": "1"}', b"\xff\xfe"]), False, None))
        elif kind == 4:
            sent.append(Sent(rng.choice(["zoho", "bc"]), b'{"ids": ["' + b"9" * 1_100_000 + b'"]}', False, None))
        else:
            sent.append(Sent("nobody", b"{}", False, None))                       # unknown route
    # Duplicates (a sender retrying, or at-least-once delivery) and any order.
    sent += [Sent(s.system, s.body, s.genuine, s.marker) for s in rng.sample(sent, len(sent) // 5)]
    rng.shuffle(sent)
    return sent


def _send(client: httpx.Client, port: int, item: Sent) -> None:
    item.attempts += 1
    try:
        response = client.post(f"http://127.0.0.1:{port}/hooks/{item.system}", content=item.body,
                               headers={"Content-Type": "application/json"})
        item.status = response.status_code
    except httpx.HTTPError:
        item.status = None
    item.history.append(item.status)


def test_thousands_of_abusive_notifications_and_a_killed_receiver(make_rig):
    port = _free_port()
    hook = f"http://127.0.0.1:{port}/hooks"
    rig = make_rig(notify_urls={"zoho": f"{hook}/zoho", "bc": f"{hook}/bc"})
    rng = random.Random(7)
    listener = _listen(rig, port)
    for pair in ("nav-zoho", "bc-zoho"):  # subscribes Zoho's channel and BC's subscriptions (handshake: listen)
        result = rig.cli("sync", pair)
        exit_code_ok(result.returncode, (0,), result.stderr)
    notes = _notifications(rig, rng)

    # Send from 8 threads; kill the receiver with -9 a third of the way in, start it again a moment later.
    kill_at, restart_at = len(notes) // 3, len(notes) // 3 + 150
    edits = rng.sample([a for a in rig.zoho("nav-zoho").records("Accounts") if a["Account_Type"] == "Customer"], 5)
    bc_customers = rig.sandboxes.dynamics.records(rig.company("bc-zoho"), "customers")[:5]
    started = time.monotonic()
    with httpx.Client(timeout=10, limits=httpx.Limits(max_connections=8)) as client, \
            ThreadPoolExecutor(8) as pool:
        futures = []
        for index, item in enumerate(notes):
            if index == kill_at:
                for future in futures:
                    future.result()
                futures.clear()
                # Real changes go out by the systems' own deliveries too, some while the receiver is down.
                for account in edits[:3]:
                    rig.zoho("nav-zoho").edit("Accounts", account["id"], Billing_City="Hamar")
                rig.kill(listener)
                rig.finish(listener)
                for customer in bc_customers[:3]:
                    rig.sandboxes.dynamics.modify(rig.company("bc-zoho"), "customers", customer["number"],
                                                  city="Tromsø")
            if index == restart_at:
                for future in futures:
                    future.result()
                futures.clear()
                listener = _listen(rig, port)
                for account in edits[3:]:
                    rig.zoho("nav-zoho").edit("Accounts", account["id"], Billing_City="Moss")
                for customer in bc_customers[3:]:
                    rig.sandboxes.dynamics.modify(rig.company("bc-zoho"), "customers", customer["number"],
                                                  city="Alta")
            futures.append(pool.submit(_send, client, port, item))
        for future in futures:
            future.result()
        # Senders retry what got no answer (BC does; for Zoho the next poll is the net, but retrying is fair).
        unanswered = [item for item in notes if item.status is None]
        assert unanswered, "the receiver was killed, yet every notification was answered"
        for item in unanswered:
            _send(client, port, item)
    rig.sandboxes.dynamics.wait_for_notifications(10)
    elapsed = time.monotonic() - started
    rig.kill(listener)
    rig.finish(listener)

    statuses = Counter(item.status for item in notes)
    assert all(item.status == 202 for item in notes if item.genuine), statuses
    for item in notes:
        if not item.genuine:
            assert item.status in (400, 403, 404, 413), (item.system, item.status, item.body[:80])
        if item.system == "bc" and item.genuine:
            assert all(s is None or s < 400 or s in (408, 429) or s >= 500 for s in item.history)
    # The BC sandbox's own deliveries: never a 4xx, which would make BC delete the subscription.
    bc_answers = [d.status for d in rig.sandboxes.dynamics.deliveries if d.status is not None]
    assert bc_answers and all(s < 400 or s >= 500 for s in bc_answers), bc_answers
    assert rig.sandboxes.dynamics.subscriptions(), "BC dropped a subscription"

    # Nothing acknowledged is lost; nothing rejected is stored; each stored once, however often it was delivered.
    with rig.state() as state:
        rows = state.pending_inbox()
    stored = Counter(i for row in rows for i in row["ids"])
    acknowledged = Counter(item.marker for item in notes if item.status == 202 and item.marker)
    for marker in acknowledged:
        assert stored[marker.lower()] >= 1, f"acknowledged notification {marker} lost"
    copies = {m: n for m, n in acknowledged.items() if n > 1 and stored[m.lower()] > 1}
    assert not copies, f"a notification delivered several times waits more than once: {copies}"
    forged = {item.marker.lower() for item in notes if not item.genuine and item.marker}
    assert not forged & set(stored), "a rejected notification reached the inbox"

    # The next syncs process every stored notification once, and the poll picks up what was missed.
    for pair in ("nav-zoho", "bc-zoho"):
        result = rig.cli("sync", pair)
        exit_code_ok(result.returncode, (0,), result.stderr)
    with rig.state() as state:
        assert state.pending_inbox() == []
        gone = Counter((r[0], r[1]) for r in state.db.execute(
            "SELECT flow, source_id FROM audit WHERE note = 'no longer exists in the source'").fetchall())
    # Once per consuming flow (Zoho Accounts feed two flows of nav-zoho), however often it was delivered.
    assert [key for key, times in gone.items() if times != 1] == [], "a notification was processed twice"
    processed = {source_id for _, source_id in gone}
    assert {m.lower() for m in acknowledged} <= processed, "an acknowledged notification was never processed"
    nav = {c["number"]: c for c in rig.sandboxes.dynamics.records(rig.company("nav-zoho"), "customers")}
    for account in edits:
        assert nav[account["Account_Number"]]["city"] in ("Hamar", "Moss")
    for pair in ("nav-zoho", "bc-zoho"):
        check_pair(rig, pair).assert_clean()

    count("notifications_sent", sum(item.attempts for item in notes))
    count("notifications_rejected", sum(1 for item in notes if not item.genuine))
    count("notifications_acknowledged", sum(acknowledged.values()))
    count("receiver_kills")
    print(f"webhooks: {len(notes)} notifications ({dict(statuses)}) in {elapsed:.1f} s")
