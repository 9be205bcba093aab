"""fo-zoho deletions: F&O lists no deleted records, so a customer, product or vendor deleted there is found missing
from a read of every key (keys only, at F&O's largest page) and its Zoho record tagged, or deleted where the flow
says so; a Zoho order deleted after F&O booked it closes the link and leaves F&O's order alone. Each test runs with
the state in the SQLite file and in PostgreSQL (``state_store``)."""

from __future__ import annotations

import json

import pytest

from mlconnector.sandbox.finops import ENTITIES
from tests.pairs.deleting import audit, cli, set_pair, zoho_user
from tests.pairs.fo_world import LEGAL_ENTITY, FoWorld, make_fo_world


@pytest.fixture
def world(tmp_path, monkeypatch, state_store):
    made = make_fo_world(tmp_path, monkeypatch)
    yield made
    made.close()


def delete_in_fo(world: FoWorld, entity: str, key_field: str, value: str) -> None:
    spec = ENTITIES[entity]
    world.finops.delete(spec, world.finops.find(spec, {"dataAreaId": LEGAL_ENTITY, key_field: value}))


def by(world: FoWorld, module: str, field: str) -> dict[str, dict]:
    return {r.get(field): r for r in world.crm(module)}


def test_a_customer_and_a_vendor_deleted_in_fo_are_tagged_in_zoho_from_a_read_of_keys_only(world: FoWorld):
    set_pair(world, "fo-zoho", "deletes_every_hours = 0")
    assert cli(world, "sync", "fo-zoho").exit_code == 0
    delete_in_fo(world, "CustomersV3", "CustomerAccount", "US-003")
    delete_in_fo(world, "VendorsV2", "VendorAccountNumber", "US-104")
    world.finops.calls.clear()

    ran = cli(world, "sync", "fo-zoho")

    assert ran.exit_code == 0, ran.output
    assert "customers: 1 record(s) deleted in the source: 1 marked deleted in the target" in ran.stdout
    assert "vendors: 1 record(s) deleted in the source: 1 marked deleted in the target" in ran.stdout
    assert [t["name"] for t in by(world, "Accounts", "Account_Number")["US-003"]["Tag"]] == ["Deleted in fo"]
    assert [t["name"] for t in by(world, "Vendors", "ERP_Number")["US-104"]["Tag"]] == ["Deleted in fo"]
    assert not by(world, "Accounts", "Account_Number")["US-001"].get("Tag")
    [row] = [r for r in audit(world, "US-003") if r["action"] == "flag"]
    assert row["note"] == "deleted in fo; marked deleted in zoho"
    # The keys were read alone, across companies, for the legal entity only.
    keys = [c for c in world.finops.calls if c.method == "GET" and "CustomersV3" in c.path
            and c.params.get("$select")]
    assert [c.params["$select"] for c in keys] == ["dataAreaId,CustomerAccount"]
    assert "dataAreaId eq 'usmf'" in keys[0].params["$filter"] and keys[0].params["cross-company"] == "true"

    again = json.loads(cli(world, "sync", "fo-zoho", "--json").stdout)
    assert again["flows"]["customers"]["deletions"] == {}  # told once: the link is closed


def test_delete_policy_removes_the_zoho_product_and_the_default_keeps_the_others_tagged(world: FoWorld):
    set_pair(world, "fo-zoho", "deletes_every_hours = 0", 'on_delete = {products = "delete"}')
    assert cli(world, "sync", "fo-zoho").exit_code == 0
    gone = by(world, "Products", "Product_Code")["D0003"]["id"]
    delete_in_fo(world, "ReleasedProductsV2", "ItemNumber", "D0003")

    ran = cli(world, "sync", "fo-zoho")

    assert ran.exit_code == 0, ran.output
    assert "D0003" not in by(world, "Products", "Product_Code")
    user = zoho_user(world.router, world.zoho)
    deleted = user.http.get("/crm/v8/Products/deleted", params={"type": "recycle"}).json()["data"]
    assert [d["id"] for d in deleted] == [gone]
    assert "deleted in fo; deleted in zoho too" in {r["note"] for r in audit(world, "D0003")}


def test_a_zoho_order_deleted_after_fo_booked_it_closes_the_link_and_fo_keeps_its_order(world: FoWorld):
    assert cli(world, "sync", "fo-zoho").exit_code == 0
    order_id = world.zoho_order("US-002", [("D0001", 2)], SO_Number="SO-1001")
    assert cli(world, "sync", "fo-zoho").exit_code == 0
    [booked] = world.fo("SalesOrderHeadersV2")
    zoho_user(world.router, world.zoho).delete("Sales_Orders", order_id)

    ran = cli(world, "sync", "fo-zoho", "--json")

    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["flows"]["sales_orders"]["deletions"] == {"unlink": 1}
    assert world.fo("SalesOrderHeadersV2") == [booked]
    [row] = [r for r in audit(world, order_id) if r["action"] == "unlink"]
    assert row["note"] == "deleted in zoho; link closed, fo's record kept"


def test_flag_or_delete_into_fo_is_refused_naming_the_fix(world: FoWorld):
    set_pair(world, "fo-zoho", 'on_delete = {invoices = "delete"}')
    ran = cli(world, "sync", "fo-zoho")
    assert ran.exit_code == 2
    assert "pairs.fo-zoho.on_delete.invoices = 'delete': the ERP's records are its own" in ran.output


@pytest.mark.parametrize("policy, summary, tagged, kept", [
    ("flag", "1 marked deleted in the target", True, True),
    ("unlink", "1 unlinked (the target's record kept)", False, True),
    ("delete", "1 deleted in the target too", False, False),
    ("ignore", None, False, True),
])
def test_each_policy_for_a_customer_deleted_in_fo(world: FoWorld, policy, summary, tagged, kept):
    set_pair(world, "fo-zoho", "deletes_every_hours = 0", f'on_delete = {{customers = "{policy}"}}')
    assert cli(world, "sync", "fo-zoho").exit_code == 0
    delete_in_fo(world, "CustomersV3", "CustomerAccount", "US-002")

    ran = cli(world, "sync", "fo-zoho")

    assert ran.exit_code == 0, ran.output
    accounts = by(world, "Accounts", "Account_Number")
    assert ("US-002" in accounts) is kept
    if kept:
        assert bool(accounts["US-002"].get("Tag")) is tagged
    if summary:
        assert f"customers: 1 record(s) deleted in the source: {summary}" in ran.stdout
    else:
        assert "customers: 1 record(s) deleted" not in ran.stdout
    assert {"US-001", "US-003"} <= set(accounts)
