"""A deletion a system pushes (a Business Central webhook with changeType "deleted") is handled in the next run that
takes the notification: the record is fetched, found gone, and its Zoho Account tagged, with no read of every id
(that happens at most once a day)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from mlconnector import api
from tests.pairs.deleting import audit, cli
from tests.pairs.world import make_world, wait_for


def test_a_customer_deleted_in_bc_is_pushed_and_tagged_in_the_next_run_without_a_scan(tmp_path, monkeypatch):
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
