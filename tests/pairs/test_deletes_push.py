"""A deletion a system pushes is handled as soon as the notification is taken: a Business Central webhook with
changeType "deleted" by the next run (the record is fetched, found gone, and its Zoho Account tagged, with no read
of every id: that happens at most once a day), a Zoho delete notification by `listen --process` within seconds.
Each test runs with the state in the SQLite file and in PostgreSQL (``state_store``)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from mlconnector import api
from tests.pairs.deleting import audit, cli
from tests.pairs.world import make_world, wait_for


def test_a_customer_deleted_in_bc_is_pushed_and_tagged_in_the_next_run_without_a_scan(tmp_path, monkeypatch, state_store):
    world = make_world(tmp_path, monkeypatch, "bc")
    try:
        notified_deletion_is_handled(world)
    finally:
        world.close()


def notified_deletion_is_handled(world) -> None:
    listener = api.Listener(world.runtime(), process=False)
    world.listener_slot.app = listener.app
    try:
        first = cli(world, "sync", "bc-zoho", "--json")  # subscribes; the daily read of ids is done
        assert first.exit_code == 0, first.output
        assert any("subscribed" in line for line in json.loads(first.stdout)["channels"])
        world.dynamics.calls.clear()
        world.dynamics.delete(world.company, "customers", "C00030")
        with world.state() as state:
            assert wait_for(lambda: any(row["ids"] for row in state.pending_inbox("bc-zoho")))
    finally:
        listener.close()

    ran = cli(world, "sync", "bc-zoho", "--json")

    assert ran.exit_code == 0, ran.output
    result = json.loads(ran.stdout)
    assert result["notifications"] >= 1
    assert result["flows"]["customers"]["deletions"] == {"flag": 1}
    assert [t["name"] for t in world.account("C00030")["Tag"]] == ["Deleted in bc"]
    assert [r["note"] for r in audit(world, "C00030") if r["action"] == "flag"] == [
        "deleted in bc; marked deleted in zoho"]
    selects = [parse_qs(c.query).get("$select") for c in world.dynamics.calls if c.path.endswith("/customers")]
    assert ["id"] not in selects  # found from the notification, not from a read of every id


def test_an_account_deleted_in_zoho_is_unlinked_within_seconds_by_listen_process(tmp_path, monkeypatch, state_store):
    world = make_world(tmp_path, monkeypatch, "nav")
    try:
        assert cli(world, "sync", "nav-zoho").exit_code == 0  # subscribes the Zoho channels
        account = world.account("C00020")["id"]
        listener = api.Listener(world.runtime(), process=True)
        world.listener_slot.app = listener.app
        try:
            world.zoho_user().delete("Accounts", account)

            def unlinked() -> bool:
                return any(r["action"] == "unlink" for r in audit(world, account))

            assert wait_for(unlinked, timeout=10)
        finally:
            listener.close()
        [row] = [r for r in audit(world, account) if r["action"] == "unlink"]
        assert row["note"] == "deleted in zoho; link closed, nav's record kept"
        assert [c for c in world.erp("customers") if c["number"] == "C00020"]
    finally:
        world.close()
