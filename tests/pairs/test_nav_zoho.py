"""nav-zoho end to end: NAV data in the Dynamics sandbox, Zoho records in the Zoho sandbox, the real
connectors and engine in between. Assertions are on the records in the target system, the audit and
the exit codes. Each test runs with the state in the SQLite file and in PostgreSQL (``state_store``)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from mlconnector import api
from mlconnector.cli.main import build_app
from tests.pairs.world import World, make_world, wait_for


@pytest.fixture
def world(tmp_path, monkeypatch, state_store):
    made = make_world(tmp_path, monkeypatch, "nav")
    yield made
    made.close()


def zoho_writes(world: World) -> int:
    calls = world.zoho.calls
    return sum(n for name, n in calls.items() if name.startswith("records.") and not name.endswith(("get", "list")))


def test_first_sync_moves_every_flow_and_a_second_writes_nothing(world: World):
    result = world.sync("nav-zoho")

    assert result.exit_code == 0, result.to_dict()
    customers, vendors = world.erp("customers"), world.erp("vendors")
    accounts = world.crm("Accounts")
    assert sorted(a["Account_Number"] for a in accounts) == sorted(
        [c["number"] for c in customers] + [f"V-{v['number']}" for v in vendors])
    adatum = world.account("C00010")
    assert adatum["Account_Name"] == "Adatum Corporation" and adatum["Billing_City"] == "Atlanta"
    assert adatum["Account_Type"] == "Customer" and world.account("V-V00010")["Account_Type"] == "Vendor"
    [robert] = world.crm("Contacts")
    assert robert["Last_Name"] == "Townes" and robert["Account_Name"]["id"] == adatum["id"]
    products = {p["Product_Code"]: p for p in world.crm("Products")}
    assert set(products) == {"1896-S", "1928-S", "1936-S"} and products["1928-S"]["Unit_Price"] == 54.9
    [order] = world.crm("Sales_Orders")
    assert order["Account_Name"]["id"] == adatum["id"]
    assert sorted(line["Product_Name"]["id"] for line in order["Ordered_Items"]) == sorted(
        [products["1896-S"]["id"], products["1928-S"]["id"]])
    [posted] = [i for i in world.erp("salesInvoices") if i["status"] != "Draft"]
    [invoice] = world.crm("Invoices")  # only the posted one; the draft stays out
    assert invoice["ERP_Number"] == posted["number"] and invoice["Invoiced_Items"][0]["Quantity"] == 3
    with world.state() as state:
        rows = state.audit_rows(run=result.run_id, limit=None)
    assert {r["action"] for r in rows} >= {"create"} and not [r for r in rows if r["action"] == "fail"]

    writes = zoho_writes(world)
    again = world.sync("nav-zoho")
    assert again.exit_code == 0
    assert zoho_writes(world) == writes
    assert all(s.created == s.updated == 0 for s in again.flows.values()), again.to_dict()
    assert len(world.crm("Accounts")) == len(accounts)


def test_only_changes_move_and_our_own_echo_is_skipped(world: World):
    world.sync("nav-zoho")
    world.dynamics.modify(world.company, "customers", "C00020", phoneNumber="+1 312 555 0199")
    trey = world.account("C00020")

    result = world.sync("nav-zoho")

    assert result.flows["customers"].updated == 1 and result.flows["items"].updated == 0
    assert world.account("C00020")["Phone"] == "+1 312 555 0199"
    with world.state() as state:
        notes = [r["note"] for r in state.audit_rows(record=trey["id"], limit=None)]
    # the next run reads back the account we wrote and knows it for our own echo
    world.sync("nav-zoho")
    with world.state() as state:
        notes = [r["note"] for r in state.audit_rows(record=trey["id"], limit=None) if r["flow"] == "accounts_to_customers"]
    assert "echo of our own write by customers" in notes
    assert [c for c in world.erp("customers") if c["number"] == "C00020"][0]["phoneNumber"] == "+1 312 555 0199"


def test_a_change_in_zoho_goes_back_to_nav_and_a_new_zoho_account_gets_its_nav_number(world: World):
    world.sync("nav-zoho")
    world.zoho.edit("Accounts", world.account("C00030")["id"], Billing_City="Orlando")
    [new_id] = world.zoho.seed("Accounts", [{"Account_Name": "Born in Zoho Ltd", "Account_Type": "Customer",
                                             "Billing_City": "Denver"}])

    result = world.sync("nav-zoho")
    assert result.exit_code == 0, result.to_dict()
    nav = {c["displayName"]: c for c in world.erp("customers")}
    assert nav["School of Fine Art"]["city"] == "Orlando"
    assert nav["Born in Zoho Ltd"]["city"] == "Denver" and nav["Born in Zoho Ltd"]["number"]

    world.sync("nav-zoho")  # the NAV number goes back to the same Zoho account, once
    born = world.zoho.record("Accounts", new_id)
    assert born["Account_Number"] == nav["Born in Zoho Ltd"]["number"]
    assert [a["Account_Name"] for a in world.crm("Accounts")].count("Born in Zoho Ltd") == 1
    assert [c["displayName"] for c in world.erp("customers")].count("Born in Zoho Ltd") == 1


def test_when_both_sides_changed_the_later_change_wins_and_the_audit_says_which_rule(world: World):
    world.sync("nav-zoho")
    account = world.account("C00010")
    world.zoho.edit("Accounts", account["id"], Phone="+1 111 111 1111")
    world.zoho.advance(seconds=2)
    world.dynamics.advance(seconds=2)
    world.dynamics.modify(world.company, "customers", "C00010", phoneNumber="+1 222 222 2222")

    world.sync("nav-zoho")

    assert world.account("C00010")["Phone"] == "+1 222 222 2222"
    assert [c for c in world.erp("customers") if c["number"] == "C00010"][0]["phoneNumber"] == "+1 222 222 2222"
    with world.state() as state:
        notes = [r["note"] for r in state.audit_rows(record=account["id"], limit=None)]
    assert "conflict: both sides changed; rule later-wins: applied nav's change" in notes


def test_an_invoice_whose_item_is_not_in_zoho_yet_fails_with_the_reason_then_replays(world: World, tmp_path):
    world.sync("nav-zoho")
    world.dynamics.seed(world.company, "items", [{"number": "1988-S", "displayName": "MEXICO Swivel Chair",
                                                  "unitPrice": 190.1}])
    world.dynamics.seed(world.company, "salesInvoices", [{"customerNumber": "C00010", "salesInvoiceLines": [
        {"lineObjectNumber": "1988-S", "quantity": 1}]}])
    [draft] = [i for i in world.erp("salesInvoices") if i["status"] == "Draft" and i["customerNumber"] == "C00010"]
    world.dynamics.post_invoice(world.company, draft["number"])

    runner = CliRunner()
    only_invoices = runner.invoke(build_app(), ["--config", str(world.config_path), "sync", "nav-zoho",
                                                "--flow", "invoices", "--json"], obj=world.runtime())
    assert only_invoices.exit_code == 3
    failed = json.loads(runner.invoke(build_app(), ["audit", "--status", "failed", "--json"],
                                      obj=world.runtime()).stdout)
    assert failed[0]["error_class"] == "unresolved_reference" and "item 1988-S" in failed[0]["error"]
    assert len(world.crm("Invoices")) == 1

    assert runner.invoke(build_app(), ["sync", "nav-zoho", "--flow", "items"], obj=world.runtime()).exit_code == 0
    replay = runner.invoke(build_app(), ["replay", "--all"], obj=world.runtime())
    assert replay.exit_code == 0, replay.output
    assert len(world.crm("Invoices")) == 2


def test_a_zoho_notification_reaches_nav_within_seconds_through_listen_process(world: World):
    world.sync("nav-zoho")  # subscribes the Zoho channels
    listener = api.Listener(world.runtime(), process=True)
    world.listener_slot.app = listener.app
    try:
        world.zoho.edit("Accounts", world.account("C00020")["id"], Billing_City="Evanston")
        assert wait_for(lambda: [c for c in world.erp("customers") if c["number"] == "C00020"][0]["city"]
                        == "Evanston", timeout=10)
    finally:
        listener.close()
    with world.state() as state:
        pushed = [r for r in state.audit_rows(limit=None) if r["note"] and "push" in r["note"]]
    assert pushed and pushed[-1]["flow"] == "accounts_to_customers"


def test_conflict_checks_cost_one_zoho_read_however_many_records_changed(world: World):
    world.sync("nav-zoho")
    for number in ("C00010", "C00020", "C00030"):
        world.dynamics.modify(world.company, "customers", number, phoneNumber=f"+1 555 {number[-4:]}")
    before = dict(world.zoho.calls)

    result = world.sync("nav-zoho", flows=["customers"])

    assert result.flows["customers"].updated == 3
    calls = {k: v - before.get(k, 0) for k, v in world.zoho.calls.items() if v - before.get(k, 0)}
    # One COQL read of the Accounts changed since accounts_to_customers last read, no fetch per record.
    assert calls.get("coql") == 1 and "records.get" not in calls and "records.list" not in calls


def test_posted_invoices_are_read_whole_once_a_day_and_by_posting_date_in_between(world: World):
    # NAV's Posted Sales Invoices page has no modification date; what changes on a posted invoice (paid,
    # cancelled) NAV computes. Between whole reads (posted_full_read_hours, 24 by default) only invoices posted
    # since the last one are asked for.
    world.dynamics.modify(world.company, "salesInvoices", "PS-INV103001", postingDate="2026-09-30")
    world.sync("nav-zoho")
    [old] = world.crm("Invoices")
    assert old["Status"] == "Approved"
    world.dynamics.modify(world.company, "salesInvoices", "PS-INV103001", status="Paid")
    [draft] = [i for i in world.erp("salesInvoices") if i["status"] == "Draft"]
    new = world.dynamics.post_invoice(world.company, draft["number"])

    between = world.sync("nav-zoho", flows=["invoices"])

    assert between.flows["invoices"].read == 1 and between.flows["invoices"].created == 1  # the new one only
    assert {i["ERP_Number"]: i["Status"] for i in world.crm("Invoices")} == {"PS-INV103001": "Approved",
                                                                            new["number"]: "Approved"}

    # A day after the last whole read, the next run reads them all again: the payment reaches Zoho.
    with world.state() as state:
        mark = state.watermark("nav-zoho", "invoices")
        state.reset_watermark("nav-zoho", "invoices")  # a watermark never moves back: set anew, a day earlier
        state.set_watermark("nav-zoho", "invoices", mark - timedelta(hours=25))
    whole = world.sync("nav-zoho", flows=["invoices"])

    assert whole.flows["invoices"].read == 2 and whole.flows["invoices"].updated == 1
    assert {i["ERP_Number"]: i["Status"] for i in world.crm("Invoices")}["PS-INV103001"] == "Paid"
    with world.state() as state:
        assert state.watermark("nav-zoho", "invoices") > mark
