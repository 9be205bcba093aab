"""gp-zoho end to end: GP customers, vendors and their contacts land in Zoho with what sales needs to see; the
chart of accounts and journal entries land in the two reference modules; Zoho sales orders and won deals
become GP sales orders, once; re-runs write nothing twice; GP never sees more concurrent calls than allowed;
and the domain password shows up nowhere. The tests on the ``world`` fixture run with the state in the SQLite file and
in PostgreSQL (``state_store``; there GP's seen-lists live in the database's ledger)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, time, timedelta, timezone

import pytest

from mlconnector.api import RunResult
from mlconnector.sync import Engine, open_pair
from mlconnector.errors import AuthError

from tests.pairs.gp_world import GP_PASSWORD, GPWorld, make_gp_world


@pytest.fixture
def world(tmp_path, monkeypatch, state_store):
    made = make_gp_world(tmp_path, monkeypatch)
    yield made
    made.close()


def writes(result) -> int:
    return sum(s.created + s.updated for s in result.flows.values())


def test_gp_parties_and_ledger_land_in_zoho_and_a_rerun_writes_nothing(world: GPWorld):
    result = world.sync()

    assert result.exit_code == 0, result.to_dict()
    aaron = world.account("AARONFIT0001")
    assert aaron["Account_Name"] == "Aaron Fitz Electrical" and aaron["Account_Type"] == "Customer"
    assert aaron["Billing_City"] == "Redmond" and aaron["Shipping_City"] == "Tacoma"
    assert aaron["Credit_Limit"] == 15000 and aaron["Balance"] == pytest.approx(2318.4)
    vendor = world.account("V-ACETRAVE0001")
    assert vendor["Account_Type"] == "Vendor" and vendor["Billing_City"] == "Fargo"
    contacts = {c["Last_Name"]: c for c in world.crm("Contacts")}
    assert contacts["Martin"]["Account_Name"]["id"] == vendor["id"] and contacts["Martin"]["First_Name"] == "Greg"
    assert sorted(g["GL_Account_Number"] for g in world.crm("GL_Accounts")) == [
        "000-1100-00", "000-1200-00", "000-2100-00", "000-4100-00", "000-4110-00", "000-5100-00"]
    journal = {j["GL_Journal_Id"]: j for j in world.crm("GL_Journal_Entries")}
    assert journal["2301"]["Total"] == 1200 and journal["2301"]["GL_Accounts"] == "000-1200-00, 000-4100-00"
    assert world.gp.sales_orders() == []  # nothing in Zoho to order yet

    again = world.sync()
    assert again.exit_code == 0 and writes(again) == 0, again.to_dict()
    assert len(world.crm("Accounts")) == 5 and len(world.crm("Contacts")) == 2


def test_a_change_in_gp_moves_alone(world: GPWorld):
    world.sync()
    world.gp.clock.advance(days=1)
    world.gp.modify("customers", "ADAMPARK0001", address="PRIMARY", City="Evanston")
    world.gp.modify("gl_accounts", "000-4110-00", Description="Sales - Consulting")

    result = world.sync()

    assert result.flows["customers"].updated == 1 and result.flows["vendors"].updated == 0
    assert result.flows["gl_accounts"].updated == 1 and result.flows["journal_entries"].updated == 0
    assert world.account("ADAMPARK0001")["Billing_City"] == "Evanston"


def sync_at(world: GPWorld, now: Callable[[], datetime], flows: list[str]) -> RunResult:
    """A run whose clock (the engine's, which gives GP's reads their window) is the GP sandbox's, set to a chosen
    moment."""
    runtime = world.runtime()
    with world.state() as state:
        session = open_pair(runtime.config, "gp-zoho", runtime.context(state))
        try:
            return Engine(session.pair, session.config, session.connectors, state, counter=session.counter,
                          now=now).sync(flows)
        finally:
            session.close()


def move_clock_to(world: GPWorld, moment: datetime) -> None:
    world.gp.clock.advance(seconds=(moment - world.gp.clock.now()).total_seconds())


def card_reads(world: GPWorld) -> int:
    return sum(1 for c in world.gp.calls if c.operation == "GetCustomerByKey" and c.status == 200)


def test_a_card_changed_again_on_the_same_gp_day_after_utc_midnight_is_not_lost(tmp_path, monkeypatch):
    # A GP server in Chicago (UTC-6) dates a card by its own day, which UTC has left behind by 01:00 UTC.
    world = make_gp_world(tmp_path, monkeypatch, gp_options={"server_zone": timezone(timedelta(hours=-6))})
    try:
        tomorrow = world.gp.clock.now().date() + timedelta(days=1)
        move_clock_to(world, datetime.combine(tomorrow, time(1), tzinfo=timezone.utc))  # 19:00 in Chicago
        world.gp.modify("customers", "ADAMPARK0001", address="PRIMARY", City="Evanston")
        assert sync_at(world, world.gp.clock.now, ["customers"]).exit_code == 0
        assert world.account("ADAMPARK0001")["Billing_City"] == "Evanston"

        world.gp.clock.advance(minutes=30)  # 19:30 in Chicago: the card keeps the same date
        world.gp.modify("customers", "ADAMPARK0001", address="PRIMARY", City="Skokie")
        result = sync_at(world, world.gp.clock.now, ["customers"])

        assert result.exit_code == 0 and result.flows["customers"].updated == 1, result.to_dict()
        assert world.account("ADAMPARK0001")["Billing_City"] == "Skokie"
        # A card read again with the content last synced is neither mapped nor written again.
        again = sync_at(world, world.gp.clock.now, ["customers"])
        stats = again.flows["customers"]
        assert stats.updated == 0 and stats.unchanged == stats.read, again.to_dict()
        with world.state() as state:  # known as seen, not mapped and compared: no attempt, no audit row
            assert state.audit_rows(run=again.run_id) == []
    finally:
        world.close()


def test_cards_of_a_day_gp_has_ended_everywhere_are_not_read_again(world: GPWorld):
    today = world.gp.clock.now().date()
    assert sync_at(world, world.gp.clock.now, ["customers"]).flows["customers"].created == 3
    # Two days on, the cards' day has ended in every time zone: a run reads them once more (the first run
    # could not know they were final), and from then on they are not read at all.
    move_clock_to(world, datetime.combine(today + timedelta(days=2), time(15), tzinfo=timezone.utc))
    sync_at(world, world.gp.clock.now, ["customers"])
    before, lists = card_reads(world), len(world.gp.calls)
    quiet = sync_at(world, world.gp.clock.now, ["customers"])

    assert quiet.exit_code == 0 and quiet.flows["customers"].read == 0, quiet.to_dict()
    assert card_reads(world) == before
    assert [c.operation for c in world.gp.calls[lists:] if c.status == 200] == ["GetCustomerList"]
    # A card changed now is read and moves.
    world.gp.modify("customers", "ADAMPARK0001", address="PRIMARY", City="Evanston")
    changed = sync_at(world, world.gp.clock.now, ["customers"])
    assert changed.flows["customers"].updated == 1 and world.account("ADAMPARK0001")["Billing_City"] == "Evanston"


def vendor_reads(world: GPWorld) -> dict[str, int]:
    return {op: sum(1 for c in world.gp.calls if c.operation == op and c.status == 200)
            for op in ("GetVendorList", "GetVendorByKey")}


def test_the_three_vendor_flows_share_a_runs_vendor_lists_and_cards(world: GPWorld):
    result = world.sync()

    assert result.exit_code == 0, result.to_dict()
    vendors = len([a for a in world.crm("Accounts") if a["Account_Type"] == "Vendor"])
    # vendors -> Accounts, vendors -> Vendors and vendor contacts each read the vendors: each card once a run.
    assert vendors > 0 and vendor_reads(world)["GetVendorByKey"] == vendors, vendor_reads(world)
    lists = vendor_reads(world)["GetVendorList"]

    world.gp.clock.advance(days=1)
    world.gp.calls.clear()
    [vendor] = [a["Account_Number"] for a in world.crm("Accounts") if a["Account_Type"] == "Vendor"][:1]
    world.gp.modify("vendors", vendor.removeprefix("V-"), CheckName="Renamed for checks")

    again = world.sync()

    assert again.exit_code == 0, again.to_dict()
    # The cards in the read window (the changed one, and those dated the watermark's day: GP dates carry no time)
    # are read once, by the first vendor flow; the other two read as many records without a call of their own.
    read = again.flows["vendors"].read
    assert read >= 1 and again.flows["vendors_to_vendor_module"].read == read
    assert vendor_reads(world)["GetVendorByKey"] == read and vendor_reads(world)["GetVendorList"] <= lists


def test_a_zoho_account_of_the_same_gp_number_is_updated_not_duplicated(world: GPWorld):
    world.zoho.seed("Accounts", [{"Account_Name": "Aaron Fitz (old CRM entry)", "Account_Number": "AARONFIT0001"}])
    world.sync(flows=["customers"])
    [aaron] = [a for a in world.crm("Accounts") if a.get("Account_Number") == "AARONFIT0001"]
    assert aaron["Account_Name"] == "Aaron Fitz Electrical" and len(world.crm("Accounts")) == 3


def test_an_account_entered_by_hand_in_zoho_is_matched_by_name_and_gets_the_gp_id(world: GPWorld):
    [by_hand] = world.zoho.seed("Accounts", [{"Account_Name": "Adam Park Resort", "Phone": "555-0100"}])
    world.sync(flows=["customers"])
    adam = world.account("ADAMPARK0001")
    assert adam["id"] == by_hand and len(world.crm("Accounts")) == 3
    assert world.state().link("gp-zoho", "customers", "ADAMPARK0001").target_id == by_hand


def test_name_matching_can_be_switched_off(tmp_path, monkeypatch):
    world = make_gp_world(tmp_path, monkeypatch, pair_settings="[pairs.gp-zoho.options]\nmatch_by_name = false\n")
    try:
        world.zoho.mark_unique("Accounts", "Account_Number")
        world.zoho.seed("Accounts", [{"Account_Name": "Adam Park Resort"}])
        world.sync(flows=["customers"])
        assert len(world.crm("Accounts")) == 4
    finally:
        world.close()


def seed_zoho_order(world: GPWorld, account_number: str, stage_or_status: str = "Created") -> str:
    [product] = world.zoho.seed("Products", [{"Product_Name": "100XLG", "Product_Code": "100XLG", "Unit_Price": 79.99}])
    account = world.account(account_number)["id"]
    [order] = world.zoho.seed("Sales_Orders", [{
        "Subject": "Phones for the new office", "Account_Name": {"id": account}, "Status": stage_or_status,
        "Ordered_Items": [{"Product_Name": {"id": product}, "Quantity": 4, "List_Price": 75.0}]}])
    return order


def test_zoho_sales_orders_and_won_deals_become_gp_sales_orders_once(world: GPWorld):
    world.sync()
    order_id = seed_zoho_order(world, "AARONFIT0001")
    adam = world.account("ADAMPARK0001")["id"]
    [won, open_deal] = world.zoho.seed("Deals", [
        {"Deal_Name": "Spa consulting", "Stage": "Closed Won", "Amount": 4200, "Account_Name": {"id": adam}},
        {"Deal_Name": "Maybe later", "Stage": "Qualification", "Amount": 100, "Account_Name": {"id": adam}}])

    result = world.sync()

    assert result.exit_code == 0, result.to_dict()
    orders = {o["Key"]["Id"]: o for o in world.gp.sales_orders()}
    assert set(orders) == {f"Z{order_id}", f"D{won}"}
    phones = orders[f"Z{order_id}"]
    assert phones["CustomerKey"]["Id"] == "AARONFIT0001" and phones["BatchKey"]["Id"] == "MLCONNECTOR"
    assert phones["Lines"]["SalesOrderLine"][0]["ItemKey"]["Id"] == "100XLG"
    assert phones["TotalAmount"]["Value"] == 300
    assert orders[f"D{won}"]["Lines"]["SalesOrderLine"][0]["ItemKey"]["Id"] == "SERVICES"
    assert world.gp.counts["GetPolicyByOperation"] == 1

    world.zoho.edit("Sales_Orders", order_id, Subject="Phones for the new office (rush)")
    again = world.sync()
    assert again.exit_code == 0 and len(world.gp.sales_orders()) == 2
    assert again.flows["sales_orders_to_gp"].created == 0


def test_an_order_for_an_account_not_from_gp_waits_in_the_replay_queue(world: GPWorld):
    world.sync()
    [stranger] = world.zoho.seed("Accounts", [{"Account_Name": "Walk-in Customer"}])
    [product] = world.zoho.seed("Products", [{"Product_Name": "100XLG"}])
    world.zoho.seed("Sales_Orders", [{"Subject": "Cash sale", "Account_Name": {"id": stranger},
                                      "Ordered_Items": [{"Product_Name": {"id": product}, "Quantity": 1}]}])
    result = world.sync()
    assert result.exit_code == 3 and result.flows["sales_orders_to_gp"].failed == 1
    [queued] = world.state().replay_items(pair="gp-zoho")
    assert queued["error_class"] == "unresolved_reference" and "not linked to a GP customer" in queued["error"]
    assert world.gp.sales_orders() == []


def test_gp_never_sees_more_concurrent_calls_than_allowed(tmp_path, monkeypatch):
    world = make_gp_world(tmp_path, monkeypatch, gp_options={"delay": 0.01, "max_concurrent": 2, "overflow": "reject"})
    try:
        for i in range(12):
            world.gp.add_customer(f"BULK{i:04d}", f"Bulk Customer {i}")
        result = world.sync(flows=["customers"])
        assert result.exit_code == 0 and result.flows["customers"].created == 15
        assert world.gp.rejected == 0 and world.gp.max_in_flight <= 2
    finally:
        world.close()


def test_the_domain_password_shows_up_nowhere(world: GPWorld, caplog, state_store):
    caplog.set_level(logging.DEBUG)
    result = world.sync()
    text = json.dumps(result.to_dict(), default=str) + caplog.text + world.config_path.read_text()
    assert GP_PASSWORD not in text
    if state_store == "sqlite":
        assert GP_PASSWORD.encode() not in world.state_path.read_bytes()
        seen = [p.read_text() for p in world.state_path.parent.glob("gp-*.json")]
    else:  # every table of the state database, the seen-lists among them
        import psycopg

        with psycopg.connect(state_store) as conn:
            tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables "
                                                 "WHERE table_schema = current_schema()")]
            assert GP_PASSWORD not in json.dumps([conn.execute(f"SELECT * FROM {t}").fetchall() for t in tables],
                                                 default=str)
            seen = [r[0] for r in conn.execute("SELECT body FROM ledger_documents WHERE name LIKE 'gp % seen'")]
    assert seen and all(GP_PASSWORD not in body for body in seen)


def test_ping_and_a_dry_run_go_through_the_configuration(world: GPWorld):
    from mlconnector import api

    [gp] = api.ping(world.runtime(), "gp")
    assert gp.ok and "company -1 readable" in gp.details
    planned = world.sync(dry_run=True)
    assert planned.exit_code == 0 and world.crm("Accounts") == [] and world.gp.sales_orders() == []
    assert {p.flow for p in planned.planned} >= {"customers", "vendors", "gl_accounts", "journal_entries"}


def test_the_wsdl_is_fetched_once_a_day_and_anew_by_ping(world: GPWorld, monkeypatch):
    from mlconnector import api
    from mlconnector.sandbox.gp import schema
    from mlconnector.systems import gp as gp_connector

    served: list[str] = []
    wsdl = schema.wsdl
    monkeypatch.setattr(schema, "wsdl", lambda address: served.append(address) or wsdl(address))

    assert world.sync(flows=["customers"]).flows["customers"].created == 3
    assert world.sync(flows=["customers"]).exit_code == 0
    assert len(served) == 1 and (world.state_path.parent / "gp-gp-wsdl.db").exists()
    [ping] = api.ping(world.runtime(), "gp")
    assert ping.ok and "WSDL read" in ping.details and len(served) == 2
    monkeypatch.setattr(gp_connector, "WSDL_CACHE_SECONDS", 0)  # a day later
    assert world.sync(flows=["customers"]).exit_code == 0
    assert len(served) == 3


def test_gp_over_sba_moves_parties_then_only_what_changed_and_says_what_it_cannot_do(tmp_path, monkeypatch, caplog):
    """transport = "sba" without Web Services: customers, vendors and contacts arrive; each run reads GP's whole
    lists but writes only what changed; the ledger and order flows say why they did not run; GP never sees more
    than the allowed concurrent calls; a wrong password stops the run with exit code 4 and the fix."""
    world = make_gp_world(tmp_path, monkeypatch, sba=True,
                          gp_options={"delay": 0.01, "max_concurrent": 2, "overflow": "reject"})
    try:
        caplog.set_level(logging.WARNING)
        result = world.sync()

        assert result.exit_code == 0, result.to_dict()
        aaron = world.account("AARONFIT0001")
        assert aaron["Billing_City"] == "Redmond" and aaron["Shipping_City"] == "Tacoma"
        assert aaron["Credit_Limit"] == 15000 and world.account("V-ACETRAVE0001")["Account_Type"] == "Vendor"
        assert sorted(c["Last_Name"] for c in world.crm("Contacts")) == ["Birkby", "Martin"]
        assert all(not c.operation.startswith("Get") for c in world.gp.calls)  # REST only, no SOAP
        assert "not in the Service Based Architecture" in result.flows["sales_orders_to_gp"].note
        # GP is the source of these two: the run summary says why they did not run.
        assert "GL accounts are not in the Service Based Architecture" in result.flows["gl_accounts"].note
        assert "journal entries are not in the Service Based Architecture" in result.flows["journal_entries"].note
        assert world.crm("GL_Accounts") == [] and world.gp.rejected == 0 and world.gp.max_in_flight <= 2

        world.gp.modify("customers", "ADAMPARK0001", address="PRIMARY", City="Evanston")
        reads = world.gp.counts["GET Sales/Customers"]
        again = world.sync()
        assert again.exit_code == 0, again.to_dict()
        assert world.gp.counts["GET Sales/Customers"] == reads + 1  # the whole list is read again ...
        assert again.flows["customers"].updated == 1 and again.flows["customers"].created == 0  # ... one moves
        assert writes(again) == 1 and world.account("ADAMPARK0001")["Billing_City"] == "Evanston"
        assert world.gp.rejected == 0 and world.gp.max_in_flight <= 2

        monkeypatch.setenv("MLCONNECTOR_GP_PASSWORD", "Wrong-Pass-3e4R")
        with pytest.raises(AuthError) as refused:
            world.sync()
        assert refused.value.exit_code == 4 and "mlconnector secrets set gp password" in str(refused.value)
        shown = str(refused.value) + caplog.text + json.dumps(result.to_dict(), default=str)
        assert "Wrong-Pass-3e4R" not in shown and GP_PASSWORD not in shown
        assert all(GP_PASSWORD not in p.read_text() for p in world.state_path.parent.glob("gp-*.json"))
    finally:
        world.close()


def test_deals_are_watched_by_default_and_a_deal_won_in_zoho_reaches_gp_through_its_channel(tmp_path, monkeypatch):
    from mlconnector import api
    from tests.pairs.world import wait_for

    made = make_gp_world(tmp_path, monkeypatch, listen=True)
    listener = api.Listener(made.runtime(), process=True)
    made.listener_slot.app = listener.app
    try:
        first = made.sync()
        assert first.exit_code == 0 and any("Deals" in line for line in first.channels), first.channels
        adam = made.account("ADAMPARK0001")["id"]
        [deal] = made.zoho.seed("Deals", [{"Deal_Name": "Spa consulting", "Stage": "Negotiation", "Amount": 4200,
                                           "Account_Name": {"id": adam}}])
        made.zoho.edit("Deals", deal, Stage="Closed Won")   # a user's save notifies the channel
        assert wait_for(lambda: any(o["Key"]["Id"] == f"D{deal}" for o in made.gp.sales_orders()), timeout=10)
    finally:
        listener.close()
        made.close()


def test_a_zoho_quote_becomes_a_gp_sales_quote_once_and_a_lost_quote_is_not_sent(world: GPWorld):
    world.sync()
    aaron = world.account("AARONFIT0001")["id"]
    [product] = world.zoho.seed("Products", [{"Product_Name": "100XLG"}])
    [quote, lost] = world.zoho.seed("Quotes", [
        {"Subject": "Phones for the new office", "Quote_Stage": "Delivered", "Account_Name": {"id": aaron},
         "Valid_Till": "2026-12-31", "Quoted_Items": [{"Product_Name": {"id": product}, "Quantity": 3}]},
        {"Subject": "Old offer", "Quote_Stage": "Closed Lost", "Account_Name": {"id": aaron},
         "Quoted_Items": [{"Product_Name": {"id": product}, "Quantity": 1}]}])

    result = world.sync()

    assert result.exit_code == 0, result.to_dict()
    [gp_quote] = world.gp.sales_quotes()
    assert gp_quote["Key"]["Id"] == f"Q{quote}" and gp_quote["CustomerKey"]["Id"] == "AARONFIT0001"
    [line] = gp_quote["Lines"]["SalesQuoteLine"]
    assert (line["ItemKey"]["Id"], line["Quantity"]["Value"], line["QuantityToOrder"]["Value"]) == ("100XLG", 3, 3)
    assert world.gp.sales_orders() == []          # a quote is not an order
    world.zoho.edit("Quotes", quote, Subject="Phones for the new office (v2)")
    assert world.sync().exit_code == 0 and len(world.gp.sales_quotes()) == 1
