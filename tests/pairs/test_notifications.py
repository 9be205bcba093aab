"""One change, one fetch: a notification delivered many times waits in the inbox once, and the records a
notification names are fetched once for every flow that reads them, at Zoho's maximum of 100 ids per call."""

from __future__ import annotations

import httpx
import pytest

from mlconnector import api
from mlconnector.sandbox.common import InProcessTransport
from tests.pairs.world import World, make_world, wait_for

EXTRA_CUSTOMERS = 1_000


@pytest.fixture
def world(tmp_path, monkeypatch):
    made = make_world(tmp_path, monkeypatch, "nav")
    yield made
    made.close()


def post(world: World, body: dict) -> int:
    """POST a notification to `listen`, as Zoho delivers it."""
    with httpx.Client(transport=InProcessTransport(world.listener_slot), base_url="http://listener.test") as client:
        return client.post("/hooks/zoho", json=body).status_code


def waiting(world: World) -> list[dict]:
    with world.state() as state:
        return state.pending_inbox("nav-zoho")


def id_fetches(world: World) -> int:
    """Zoho calls that fetch records by id (GET /crm/v8/{module}?ids= or /{module}/{id})."""
    return sum(n for name, n in world.zoho.calls.items() if name in ("records.list", "records.get"))


def test_fifty_copies_of_one_notification_wait_once_and_are_fetched_once(world: World):
    assert world.sync("nav-zoho").exit_code == 0  # subscribes the Zoho channels
    listener = api.Listener(world.runtime(), process=False)
    world.listener_slot.app = listener.app
    try:
        world.zoho.edit("Accounts", world.account("C00020")["id"], Billing_City="Evanston")
        assert wait_for(lambda: len(waiting(world)) >= 1)
        genuine = [d.payload for d in world.zoho.deliveries if d.payload.get("module") == "Accounts"][-1]
        assert all(post(world, genuine) == 202 for _ in range(49))  # the sender retried, or replayed
    finally:
        listener.close()

    assert len(waiting(world)) == 1
    before = id_fetches(world)
    run = world.sync("nav-zoho")

    assert run.exit_code == 0 and run.notifications == 1, run.to_dict()
    assert id_fetches(world) - before == 1, "the two flows reading Accounts share one fetch"
    assert [c for c in world.erp("customers") if c["number"] == "C00020"][0]["city"] == "Evanston"
    with world.state() as state:
        arrived = [r for r in state.audit_rows(limit=None)
                   if r["flow"] == "accounts_to_customers" and r["action"] == "update"]
    assert len(arrived) == 1

    # The same notification once more, after it was processed: a new change, stored again.
    listener = api.Listener(world.runtime(), process=False)
    world.listener_slot.app = listener.app
    try:
        assert post(world, genuine) == 202
    finally:
        listener.close()
    assert len(waiting(world)) == 1


def test_a_notification_naming_many_ids_is_fetched_100_ids_a_call_once_for_both_flows(world: World):
    world.dynamics.seed(world.company, "customers", [
        {"displayName": f"Customer {i:04d}", "city": "Oslo"} for i in range(EXTRA_CUSTOMERS)])
    assert world.sync("nav-zoho").exit_code == 0
    accounts = [a["id"] for a in world.crm("Accounts")]
    listener = api.Listener(world.runtime(), process=False)
    world.listener_slot.app = listener.app
    try:
        world.zoho.edit("Accounts", accounts[0], Billing_City="Bergen")
        assert wait_for(lambda: len(waiting(world)) >= 1)
        genuine = [d.payload for d in world.zoho.deliveries if d.payload.get("module") == "Accounts"][-1]
        # A mass update in Zoho: one notification naming every account.
        assert post(world, {**genuine, "ids": accounts}) == 202
    finally:
        listener.close()

    before = id_fetches(world)
    run = world.sync("nav-zoho")

    assert run.exit_code == 0, run.to_dict()
    pages = -(-len(accounts) // 100)
    assert id_fetches(world) - before == pages, f"{len(accounts)} ids: {pages} calls of 100"
    assert run.flows["accounts_to_customers"].read >= len(accounts) - 2  # every customer account, once
