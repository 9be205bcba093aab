"""nav-zoho over NAV's page web services (OData V4 pages, no deletion list, no webhooks): a customer deleted in NAV
is found missing from a read of the page's keys alone and its Zoho Account tagged (or left, or deleted, as the flow
says); what NAV deleted is not brought back by the flow the other way, until NAV creates it again; an account
deleted in Zoho comes back when its NAV customer next changes (NAV's record is the master). Each test runs with
the state in the SQLite file and in PostgreSQL (``state_store``)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest

from tests.pairs.deleting import audit, cli, set_pair
from tests.pairs.world import make_world


def test_a_customer_deleted_in_nav_is_tagged_in_zoho_and_not_sent_back(tmp_path, monkeypatch, state_store):
    world = make_world(tmp_path, monkeypatch, "nav")
    try:
        set_pair(world, "nav-zoho", "deletes_every_hours = 0")
        # A customer with no documents (NAV refuses to delete one with ledger entries).
        world.dynamics.seed(world.company, "customers", [{"number": "C00090", "displayName": "Walk-in Customer"}])
        assert cli(world, "sync", "nav-zoho").exit_code == 0
        world.dynamics.calls.clear()
        world.dynamics.delete(world.company, "customers", "C00090")

        ran = cli(world, "sync", "nav-zoho")

        assert ran.exit_code == 0, ran.output
        assert "customers: 1 record(s) deleted in the source: 1 marked deleted in the target" in ran.stdout
        assert [t["name"] for t in world.account("C00090")["Tag"]] == ["Deleted in nav"]
        [row] = [r for r in audit(world, "C00090") if r["action"] == "flag"]
        assert row["note"] == "deleted in nav; marked deleted in zoho"
        # The page's keys alone were read.
        selects = [parse_qs(c.query).get("$select") for c in world.dynamics.calls if c.path.endswith("/Customer")]
        assert ["No"] in selects

        again = cli(world, "sync", "nav-zoho", "--json")
        assert again.exit_code == 0, again.output
        flows = json.loads(again.stdout)["flows"]
        assert flows["accounts_to_customers"]["created"] == 0, flows["accounts_to_customers"]
        assert not [c for c in world.erp("customers") if c["number"] == "C00090"]

        # Reconcile counts the tagged account as kept after a deletion, on both flows, not as a disagreement.
        checked = cli(world, "reconcile", "nav-zoho", "--json")
        report = json.loads(checked.stdout)
        assert report["flows"]["customers"]["kept_after_delete"] == 1
        assert report["flows"]["accounts_to_customers"]["kept_after_delete"] == 1
        assert checked.exit_code == 0, {n: f["records"] for n, f in report["flows"].items() if f["records"]}
    finally:
        world.close()


def test_a_customer_created_again_in_nav_under_its_number_links_again_and_the_tag_comes_off(tmp_path, monkeypatch, state_store):
    world = make_world(tmp_path, monkeypatch, "nav")
    try:
        set_pair(world, "nav-zoho", "deletes_every_hours = 0")
        world.dynamics.seed(world.company, "customers", [{"number": "C00090", "displayName": "Walk-in Customer"}])
        assert cli(world, "sync", "nav-zoho").exit_code == 0
        account = world.account("C00090")["id"]
        world.dynamics.delete(world.company, "customers", "C00090")
        assert cli(world, "sync", "nav-zoho").exit_code == 0
        world.dynamics.seed(world.company, "customers", [{"number": "C00090", "displayName": "Walk-in Customer Ltd"}])

        ran = cli(world, "sync", "nav-zoho")

        assert ran.exit_code == 0, ran.output
        assert world.account("C00090")["id"] == account
        assert world.account("C00090")["Account_Name"] == "Walk-in Customer Ltd"
        assert not world.account("C00090").get("Tag")  # no longer deleted in NAV: the tag is off
        world.zoho_user().edit("Accounts", account, Phone="555-0190")  # and the way back carries edits again
        assert cli(world, "sync", "nav-zoho").exit_code == 0
        assert [c for c in world.erp("customers") if c["number"] == "C00090"][0]["phoneNumber"] == "555-0190"
    finally:
        world.close()


def test_an_account_deleted_in_zoho_comes_back_when_its_nav_customer_next_changes(tmp_path, monkeypatch, state_store):
    world = make_world(tmp_path, monkeypatch, "nav")
    try:
        assert cli(world, "sync", "nav-zoho").exit_code == 0
        gone = world.account("C00020")["id"]
        world.zoho_user().delete("Accounts", gone)
        first = json.loads(cli(world, "sync", "nav-zoho", "--json").stdout)
        assert first["flows"]["accounts_to_customers"]["deletions"] == {"unlink": 1}
        assert not [a for a in world.crm("Accounts") if a.get("Account_Number") == "C00020"]

        world.nav_user().edit("customers", "C00020", City="Evanston")  # NAV's record is the master
        ran = cli(world, "sync", "nav-zoho")

        assert ran.exit_code == 0, ran.output
        back = world.account("C00020")
        assert back["id"] != gone and back["Billing_City"] == "Evanston"
    finally:
        world.close()


@pytest.mark.parametrize("policy", ["unlink", "delete"])
def test_unlink_keeps_and_delete_removes_the_account_of_a_customer_deleted_in_nav(tmp_path, monkeypatch, policy, state_store):
    world = make_world(tmp_path, monkeypatch, "nav")
    try:
        set_pair(world, "nav-zoho", "deletes_every_hours = 0", f'on_delete = {{customers = "{policy}"}}')
        world.dynamics.seed(world.company, "customers", [{"number": "C00090", "displayName": "Walk-in Customer"}])
        assert cli(world, "sync", "nav-zoho").exit_code == 0
        account = world.account("C00090")
        world.dynamics.delete(world.company, "customers", "C00090")

        ran = cli(world, "sync", "nav-zoho", "--json")

        assert ran.exit_code == 0, ran.output
        assert json.loads(ran.stdout)["flows"]["customers"]["deletions"] == {policy: 1}
        numbers = {a.get("Account_Number") for a in world.crm("Accounts")}
        if policy == "unlink":
            assert world.account("C00090")["id"] == account["id"] and not world.account("C00090").get("Tag")
            world.zoho_user().edit("Accounts", account["id"], Phone="555-0190")  # an edit in Zoho stays there
            assert cli(world, "sync", "nav-zoho").exit_code == 0
        else:
            assert "C00090" not in numbers
        assert not [c for c in world.erp("customers") if c["number"] == "C00090"]
    finally:
        world.close()
