"""bc-zoho end to end: Business Central is the source of truth; its customers, items, contacts and
posted invoices land in Zoho, nothing is written back, first loads go through Bulk Write, and a Zoho
edition without the Invoices module gets the flow skipped with the reason. Each test runs with the state in the
SQLite file and in PostgreSQL (``state_store``)."""

from __future__ import annotations

import threading

import pytest

from mlconnector import api
from mlconnector.systems import register_kind, unregister_kind
from mlconnector.systems.dynamics import DynamicsConnector
from tests.pairs.world import World, make_world, wait_for


@pytest.fixture
def world(tmp_path, monkeypatch, state_store):
    made = make_world(tmp_path, monkeypatch, "bc")
    yield made
    made.close()


def bc_business_writes(world: World) -> list[str]:
    return [f"{c.method} {c.path}" for c in world.dynamics.calls
            if c.method in ("POST", "PATCH", "DELETE") and "/subscriptions" not in c.path and c.form != "token"]


def test_bc_records_land_in_zoho_keyed_on_the_bc_number_and_nothing_goes_back(world: World):
    result = world.sync("bc-zoho")

    assert result.exit_code == 0, result.to_dict()
    assert sorted(a["Account_Number"] for a in world.crm("Accounts")) == sorted(c["number"] for c in world.erp("customers"))
    assert sorted(p["Product_Code"] for p in world.crm("Products")) == sorted(i["number"] for i in world.erp("items"))
    [contact] = world.crm("Contacts")
    assert contact["Email"] == "robert.townes@contoso.com" and contact["Account_Name"]["id"] == world.account("C00010")["id"]
    [posted] = [i for i in world.erp("salesInvoices") if i["status"] != "Draft"]
    [invoice] = world.crm("Invoices")
    assert invoice["ERP_Number"] == posted["number"]
    assert invoice["Account_Name"]["id"] == world.account(posted["customerNumber"])["id"]
    assert [line["Quantity"] for line in invoice["Invoiced_Items"]] == [3]
    assert invoice["Sub_Total"] == pytest.approx(posted["totalAmountExcludingTax"])  # header totals agree
    assert bc_business_writes(world) == []

    again = world.sync("bc-zoho")
    assert all(s.created == s.updated == 0 for s in again.flows.values()), again.to_dict()
    assert len(world.crm("Accounts")) == len(world.erp("customers"))


def test_a_change_in_bc_moves_alone(world: World):
    world.sync("bc-zoho")
    world.dynamics.modify(world.company, "items", "1928-S", unitPrice=59.9)

    result = world.sync("bc-zoho")

    assert result.flows["items"].updated == 1 and result.flows["customers"].updated == 0
    assert [p for p in world.crm("Products") if p["Product_Code"] == "1928-S"][0]["Unit_Price"] == 59.9


def test_first_load_above_the_bulk_threshold_goes_through_bulk_write(tmp_path, monkeypatch, state_store):
    world = make_world(tmp_path, monkeypatch, "bc", zoho_settings="bulk_threshold = 2")
    try:
        assert world.sync("bc-zoho", flows=["customers"]).exit_code == 0
        assert world.zoho.calls["bulk_write.create"] == 1 and world.zoho.calls["records.upsert"] == 0
        assert len(world.crm("Accounts")) == 3
        world.dynamics.modify(world.company, "customers", "C00010", city="Savannah")
        world.sync("bc-zoho", flows=["customers"])  # increments are small: plain calls
        assert world.zoho.calls["bulk_write.create"] == 1
        assert world.account("C00010")["Billing_City"] == "Savannah"
    finally:
        world.close()


def test_a_first_load_in_bulk_jobs_reads_no_page_ahead_and_later_runs_do(tmp_path, monkeypatch, state_store):
    # A bulk job holds a whole file's records: the read waits for it with one page in memory, not two.
    ahead: list[bool] = []  # as each record was taken: whether the connector's page-reading thread was at work

    class Watched(DynamicsConnector):  # the BC connector, as a plugin would register it
        def changes(self, entity, since, until=None):
            for record in super().changes(entity, since, until):
                ahead.append(any(t.name.startswith(f"{self.name}-pages") for t in threading.enumerate()))
                yield record

    register_kind("bc", Watched)
    world = make_world(tmp_path, monkeypatch, "bc", zoho_settings="bulk_threshold = 2", erp_settings="page_size = 1\n")
    try:
        assert world.sync("bc-zoho", flows=["customers"]).exit_code == 0
        assert world.zoho.calls["bulk_write.create"] == 1 and len(world.crm("Accounts")) == 3
        assert len(ahead) == 3 and not any(ahead)
        ahead.clear()
        for number, city in (("C00010", "Savannah"), ("C00020", "Evanston")):
            world.dynamics.modify(world.company, "customers", number, city=city)
        assert world.sync("bc-zoho", flows=["customers"]).exit_code == 0  # plain upserts, pages read ahead
        assert any(ahead) and world.account("C00020")["Billing_City"] == "Evanston"
    finally:
        world.close()
        unregister_kind("bc")


def test_an_edition_without_invoices_skips_that_flow_with_the_reason(tmp_path, monkeypatch, state_store):
    world = make_world(tmp_path, monkeypatch, "bc", edition="standard")
    try:
        result = world.sync("bc-zoho")
        assert result.exit_code == 0
        assert "standard edition has no Invoices module" in result.flows["invoices"].note
        assert result.flows["invoices"].read == 0 and result.flows["invoices"].failed == 0
        assert len(world.crm("Accounts")) == 3
    finally:
        world.close()


def test_a_bc_webhook_brings_a_change_to_zoho_within_seconds(world: World):
    listener = api.Listener(world.runtime(), process=True)
    world.listener_slot.app = listener.app
    try:
        first = world.sync("bc-zoho")  # subscribes (the handshake goes through the listener)
        assert first.exit_code == 0, first.to_dict()
        assert any("subscribed" in line for line in first.channels)
        world.dynamics.modify(world.company, "customers", "C00020", city="Evanston")
        assert wait_for(lambda: world.account("C00020")["Billing_City"] == "Evanston", timeout=10)
    finally:
        listener.close()


def test_reading_contacts_costs_a_call_per_page_not_per_contact(world: World):
    world.dynamics.seed(world.company, "contacts", [
        {"number": f"CT9{i:04d}", "displayName": f"Person {i}", "type": "Person", "companyNumber": "CT000010",
         "companyName": "Adatum Corporation", "email": f"p{i}@adatum.example"} for i in range(40)])
    result = world.sync("bc-zoho", flows=["customers", "contacts"])
    assert result.flows["contacts"].created == 41
    assert result.flows["contacts"].calls["bc"] <= 2


def test_a_taxed_and_discounted_invoice_shows_bcs_own_totals_in_zoho_and_then_that_it_was_paid(world: World):
    [draft] = world.dynamics.seed(world.company, "salesInvoices", [{
        "customerNumber": "C00010", "discountAmount": 25.0, "salesInvoiceLines": [
            {"lineObjectNumber": "1896-S", "quantity": 2, "discountPercent": 10, "taxPercent": 8.25},
            {"lineObjectNumber": "1928-S", "quantity": 3, "taxPercent": 8.25}]}])
    posted = world.dynamics.post_invoice(world.company, draft["id"])
    assert posted["totalTaxAmount"] > 0 and posted["discountAmount"] == 25.0

    assert world.sync("bc-zoho").exit_code == 0

    [linked] = [i for i in world.crm("Invoices") if i.get("ERP_Number") == posted["number"]]
    invoice = world.zoho_user().record("Invoices", str(linked["id"]))
    figures = {name: invoice[name] for name in ("Discount", "Tax", "Grand_Total", "Remaining_Amount")}
    assert figures == pytest.approx({"Discount": 25.0, "Tax": posted["totalTaxAmount"],
                                     "Grand_Total": posted["totalAmountIncludingTax"],
                                     "Remaining_Amount": posted["totalAmountIncludingTax"]}, abs=0.001)
    assert invoice["Status"] == "Approved"

    world.dynamics.modify(world.company, "salesInvoices", draft["id"], status="Paid", remainingAmount=0)
    assert world.sync("bc-zoho").exit_code == 0
    invoice = world.zoho_user().record("Invoices", str(linked["id"]))
    assert invoice["Status"] == "Paid" and invoice["Remaining_Amount"] == 0


def test_purchase_orders_are_optional_and_when_named_reach_zoho_under_their_vendor_with_bcs_totals(world: World):
    for module in ("Vendors", "Purchase_Orders"):
        world.zoho.mark_unique(module, "ERP_Number")   # "Do not allow duplicate values", as setup --apply asks
    default = world.sync("bc-zoho")
    assert "purchase_orders" not in default.flows and world.crm("Purchase_Orders") == []

    result = world.sync("bc-zoho", flows=["vendors", "purchase_orders"])

    assert result.exit_code == 0, result.to_dict()
    [order] = world.erp("purchaseOrders")
    [linked] = world.crm("Purchase_Orders")
    zoho_order = world.zoho_user().record("Purchase_Orders", str(linked["id"]))
    [vendor] = [v for v in world.crm("Vendors") if v.get("ERP_Number") == order["vendorNumber"]]
    assert zoho_order["ERP_Number"] == order["number"] and zoho_order["Vendor_Name"]["id"] == vendor["id"]
    assert [(line["Quantity"], line["List_Price"]) for line in zoho_order["Purchased_Items"]] == [(10, 42.8)]
    assert zoho_order["Grand_Total"] == pytest.approx(order["totalAmountIncludingTax"])
    assert bc_business_writes(world) == []
    # polled: a change in BC arrives with the next run, nothing else is written again
    world.dynamics.add_line(world.company, "purchaseOrders", order["number"], lineObjectNumber="1896-S", quantity=1)
    again = world.sync("bc-zoho", flows=["vendors", "purchase_orders"])
    assert again.flows["purchase_orders"].updated == 1 and again.flows["vendors"].updated == 0, again.to_dict()
