"""nav-zoho after a first load through Zoho Bulk Write: the accounts it created come back on the next poll of
Zoho, and must be recognised as our own writes (a bulk job's results carry no record version), not sent to NAV
again; a real edit in Zoho still goes through. Found by the benchmarks: 100,000 echo writes to NAV."""

from __future__ import annotations

import time

from tests.pairs.world import make_world


def nav_writes(world) -> list[str]:
    return [f"{c.method} {c.path}" for c in world.dynamics.calls if c.method in ("POST", "PATCH", "DELETE")]


def test_accounts_created_by_bulk_write_are_not_echoed_back_to_nav(tmp_path, monkeypatch):
    world = make_world(tmp_path, monkeypatch, "nav", zoho_settings="bulk_threshold = 2")
    try:
        first = world.sync("nav-zoho")
        assert first.exit_code == 0, first.to_dict()
        assert world.zoho.calls["bulk_write.create"] >= 1
        before = len(nav_writes(world))
        time.sleep(1.1)  # Zoho keeps whole seconds: the next run's window starts after the load

        again = world.sync("nav-zoho")

        assert again.exit_code == 0, again.to_dict()
        assert len(nav_writes(world)) == before, nav_writes(world)[before:]
        assert again.flows["accounts_to_customers"].updated == again.flows["accounts_to_customers"].created == 0

        account = world.account("C00010")
        world.zoho.edit("Accounts", account["id"], Billing_City="Savannah")
        edited = world.sync("nav-zoho")
        assert edited.flows["accounts_to_customers"].updated == 1
        [adatum] = [c for c in world.erp("customers") if c["number"] == "C00010"]
        assert adatum["city"] == "Savannah"
    finally:
        world.close()
