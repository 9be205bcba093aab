"""gp-zoho deletions: GP lists no deleted records, so a customer or vendor deleted there is found missing from its
GetList summaries (or SBA's list) and its Zoho Account tagged; a Zoho order deleted after GP got it closes the link
and leaves GP's order alone; two of three customers gone at once is the mass-delete guard's case. Each test runs with
the state in the SQLite file and in PostgreSQL (``state_store``)."""

from __future__ import annotations

import json

import pytest

from mlconnector.errors import EXIT_RECORDS_FAILED
from tests.pairs.deleting import audit, cli, set_pair, zoho_user
from tests.pairs.gp_world import GPWorld, make_gp_world
from tests.pairs.test_gp_zoho import seed_zoho_order


@pytest.fixture
def world(tmp_path, monkeypatch, state_store):
    made = make_gp_world(tmp_path, monkeypatch, pair_settings="deletes_every_hours = 0")
    yield made
    made.close()


def tags(world: GPWorld, number: str) -> list[str]:
    return [t["name"] for t in world.account(number).get("Tag") or []]


def test_a_customer_and_a_vendor_deleted_in_gp_are_tagged_in_zoho(world: GPWorld):
    assert cli(world, "sync", "gp-zoho").exit_code == 0
    world.gp.remove("customers", "ALTONMAN0001")
    world.gp.remove("vendors", "ADVANCED0001")
    world.gp.reset_counters()

    ran = cli(world, "sync", "gp-zoho")

    assert ran.exit_code == 0, ran.output
    assert "customers: 1 record(s) deleted in the source: 1 marked deleted in the target" in ran.stdout
    assert tags(world, "ALTONMAN0001") == ["Deleted in gp"]
    assert tags(world, "V-ADVANCED0001") == ["Deleted in gp"]
    assert tags(world, "AARONFIT0001") == [] and tags(world, "V-ACETRAVE0001") == []
    [row] = [r for r in audit(world, "ALTONMAN0001") if r["action"] == "flag"]
    assert row["note"] == "deleted in gp; marked deleted in zoho"
    # Found from GetCustomerList's summaries: the cards read are only those the poll reads anyway (today's).
    assert world.gp.counts["GetCustomerByKey"] <= 2

    again = json.loads(cli(world, "sync", "gp-zoho", "--json").stdout)
    assert again["flows"]["customers"]["deletions"] == {}


def test_a_zoho_order_deleted_after_gp_got_it_closes_the_link_and_gp_keeps_its_order(world: GPWorld):
    assert cli(world, "sync", "gp-zoho").exit_code == 0
    order_id = seed_zoho_order(world, "AARONFIT0001")
    assert cli(world, "sync", "gp-zoho").exit_code == 0
    [booked] = world.gp.sales_orders()
    zoho_user(world.router, world.zoho).delete("Sales_Orders", order_id)

    ran = cli(world, "sync", "gp-zoho", "--json")

    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["flows"]["sales_orders_to_gp"]["deletions"] == {"unlink": 1}
    assert world.gp.sales_orders() == [booked]
    [row] = [r for r in audit(world, order_id) if r["action"] == "unlink"]
    assert row["note"] == "deleted in zoho; link closed, gp's record kept"


def test_the_guard_stops_two_of_three_customers_until_allow_deletes_then_delete_removes_them(world: GPWorld):
    set_pair(world, "gp-zoho", 'on_delete = {customers = "delete"}')
    assert cli(world, "sync", "gp-zoho").exit_code == 0
    for number in ("ADAMPARK0001", "ALTONMAN0001"):
        world.gp.remove("customers", number)

    guarded = cli(world, "sync", "gp-zoho")

    assert guarded.exit_code == EXIT_RECORDS_FAILED
    assert ("customers: 2 of 3 linked records look deleted in gp (more than 5%): nothing was done about them; "
            "if that is right, run again with --allow-deletes") in guarded.stdout
    assert world.account("ADAMPARK0001") and world.account("ALTONMAN0001")

    allowed = cli(world, "sync", "gp-zoho", "--allow-deletes")

    assert allowed.exit_code == 0, allowed.output
    numbers = {a.get("Account_Number") for a in world.crm("Accounts")}
    assert "ADAMPARK0001" not in numbers and "ALTONMAN0001" not in numbers and "AARONFIT0001" in numbers


def test_over_sba_a_customer_deleted_in_gp_is_found_in_the_list_and_tagged(tmp_path, monkeypatch, state_store):
    world = make_gp_world(tmp_path, monkeypatch, sba=True, pair_settings="deletes_every_hours = 0")
    try:
        assert cli(world, "sync", "gp-zoho").exit_code == 0
        world.gp.remove("customers", "ADAMPARK0001")

        ran = cli(world, "sync", "gp-zoho")

        assert ran.exit_code == 0, ran.output
        assert tags(world, "ADAMPARK0001") == ["Deleted in gp"]
    finally:
        world.close()


def test_ignore_looks_for_no_deletions_of_that_flow(world: GPWorld):
    set_pair(world, "gp-zoho", 'on_delete = {vendors = "ignore"}')
    assert cli(world, "sync", "gp-zoho").exit_code == 0
    world.gp.remove("vendors", "ADVANCED0001")

    ran = json.loads(cli(world, "sync", "gp-zoho", "--json").stdout)

    assert ran["flows"]["vendors"]["deletions"] == {}
    assert tags(world, "V-ADVANCED0001") == []
