"""nav-zuora end to end: NAV in the Dynamics sandbox, Zuora in the Zuora sandbox (reached by its region's real
host name), the real connectors, engine and receiver in between."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from mlconnector import api
from mlconnector.cli.main import build_app
from tests.pairs.world import wait_for
from tests.pairs.zuora_world import ZuoraWorld, make_zuora_world


@pytest.fixture
def world(tmp_path, monkeypatch):
    made = make_zuora_world(tmp_path, monkeypatch, zuora_settings='account_match = "company_name"\n')
    yield made
    made.close()


def zuora_writes(world: ZuoraWorld) -> int:
    return sum(n for name, n in world.zuora.calls.items()
               if name.endswith((".create", ".update")) and name != "query.list")


def test_first_sync_creates_accounts_products_and_a_subscription_and_a_second_writes_nothing(world):
    result = world.sync()

    assert result.exit_code == 0, result.to_dict()
    adatum = world.account("C00010")
    assert adatum["name"] == "Adatum Corporation" and adatum["currency"] == "USD"
    contact = world.zuora.data.tables["contacts"][adatum["billToId"]]
    assert contact["workEmail"] == "robert.townes@contoso.com" and contact["city"] == "Atlanta"
    products = {p["sKU"]: p for p in world.zuora.records("products")}
    assert set(products) == {"1896-S", "1928-S", "1936-S"}
    [lamp_plan] = world.zuora.data.plans_of(products["1928-S"]["id"])
    [lamp_charge] = world.zuora.data.charges_of(lamp_plan["id"])
    assert lamp_charge["prices"] == [{"currency": "USD", "price": 54.9}] and lamp_charge["chargeType"] == "Recurring"
    [order] = world.erp("salesOrders")
    subscription = world.subscription(order["number"])
    assert subscription["accountId"] == adatum["id"] and subscription["status"] == "Active"
    assert sorted((p["productSku"], p["ratePlanCharges"][0]["quantity"]) for p in subscription["ratePlans"]) == [
        ("1896-S", 1.0), ("1928-S", 2.0)]
    # what NAV sent out is not echoed back into NAV
    assert result.flows["accounts_to_customers"].updated == result.flows["products_to_items"].updated == 0

    writes = zuora_writes(world)
    again = world.sync()
    assert again.exit_code == 0
    assert zuora_writes(world) == writes
    assert all(s.created == s.updated == 0 for s in again.flows.values()), again.to_dict()


def test_a_changed_nav_customer_updates_its_linked_account_in_place_without_reading_it_first(world):
    world.sync()
    account_id = world.account("C00010")["id"]
    before = Counter(world.zuora.calls)
    world.dynamics.modify(world.company, "customers", "C00010", displayName="Adatum Corporation Ltd")

    result = world.sync()

    assert result.exit_code == 0 and result.flows["customers"].updated == 1, result.to_dict()
    assert world.account("C00010")["id"] == account_id and world.account("C00010")["name"] == "Adatum Corporation Ltd"
    added = Counter(world.zuora.calls) - before
    # The update and one read of the account written (for its version), no read before it.
    assert added["accounts.update"] == 1 and added["query.get"] == 1, added


def test_a_linked_account_deleted_in_zuora_is_made_again_when_its_customer_changes(world):
    world.sync()
    gone = world.account("C00010")["id"]
    del world.zuora.data.tables["accounts"][gone]
    world.dynamics.modify(world.company, "customers", "C00010", displayName="Adatum Corporation Ltd")

    result = world.sync()

    assert result.exit_code == 0, result.to_dict()
    again = world.account("C00010")
    assert again["id"] != gone and again["name"] == "Adatum Corporation Ltd"
    assert [a for a in world.zuora.records("accounts") if a.get("NAVCustomerNumber__c") == "C00010"] == [again]
    assert world.state().link("nav-zuora", "customers", "C00010").target_id == again["id"]


def test_a_changed_nav_order_becomes_an_amendment_of_the_same_subscription(world):
    world.sync()
    [order] = world.erp("salesOrders")
    world.dynamics.add_line(world.company, "salesOrders", order["number"], lineObjectNumber="1936-S", quantity=4)

    result = world.sync()

    assert result.flows["sales_orders"].updated == 1, result.to_dict()
    [subscription] = world.zuora.subscriptions()
    assert subscription["version"] == 2 and subscription["name"] == "A-S00000001"
    assert sorted(p["productSku"] for p in subscription["ratePlans"]) == ["1896-S", "1928-S", "1936-S"]
    assert [o for o in world.zuora.records("orders")][-1]["accountId"] == subscription["accountId"]


def test_a_create_whose_answer_was_lost_after_zuora_committed_makes_one_subscription(world):
    world.sync(flows=["customers", "items"])
    world.lossy.path, world.lossy.count = "/v1/orders", 1

    result = world.sync(flows=["sales_orders"])

    assert world.lossy.lost == 1
    assert result.exit_code == 0, result.to_dict()
    assert len(world.zuora.subscriptions()) == 1 and len(world.zuora.records("orders")) == 1
    assert world.zuora.calls["idempotent_replay"] == 1  # the resend got Zuora's first answer back


def test_a_lost_answer_that_outlasts_the_retries_is_replayed_later_with_the_same_key(world):
    world.sync(flows=["customers", "items"])
    world.lossy.path, world.lossy.count = "/v1/orders", 10   # every try of this run times out

    first = world.sync(flows=["sales_orders"])
    assert first.exit_code != 0 and len(world.zuora.subscriptions()) == 1  # Zuora made it; we never heard

    world.lossy.count = 0
    runner = CliRunner()
    replay = runner.invoke(build_app(), ["replay", "--all"], obj=world.runtime())
    assert replay.exit_code == 0, replay.output
    assert len(world.zuora.subscriptions()) == 1
    with world.state() as state:
        [link] = [l for l in state.links("nav-zuora", "sales_orders", [world.erp("salesOrders")[0]["number"]]).values()]
    assert link.target_id == world.zuora.subscriptions()[0]["name"]


def test_a_transient_zuora_failure_is_retried_with_a_new_key_and_succeeds(world):
    world.sync(flows=["customers", "items"])
    world.zuora.inject_failure("/v1/orders", 53100350, "Operation failed due to lock contention; try again")

    result = world.sync(flows=["sales_orders"])

    assert result.exit_code == 0, result.to_dict()
    assert len(world.zuora.subscriptions()) == 1


def test_a_permanent_zuora_failure_goes_to_the_replay_queue_with_its_category(world):
    world.sync(flows=["customers", "items"])
    world.zuora.inject_failure("/v1/orders", 53100320, "'termType' value should be one of: TERMED, EVERGREEN")

    result = world.sync(flows=["sales_orders"])

    assert result.exit_code == 3
    with world.state() as state:
        [failed] = state.audit_rows(status="failed", limit=None)
    assert failed["error_class"] == "zuora_invalid_value" and "termType" in failed["error"]
    assert world.zuora.subscriptions() == []


def test_invoice_and_payment_callouts_reach_the_nav_customer_in_any_order_and_repeated(world):
    world.sync()  # records the static callout channels
    listener = api.Listener(world.runtime(), process=True)
    world.listener_slot.app = listener.app
    world.zuora.callout_reverse = True     # Payment Processed may arrive before Invoice Posted ...
    world.zuora.callout_repeat = 1.0       # ... and every callout comes twice
    try:
        [invoice] = world.zuora.bill_run()
        world.zuora.pay(invoice["invoiceNumber"])
        assert world.zuora.wait_for_callouts()
        # The card shows no status until the first callout has been processed: polled until it does.
        status = lambda field: world.customer("C00010").get(field) or ""  # noqa: E731
        assert wait_for(lambda: status("zuoraPaymentStatus").startswith("P-00000001 Processed"))
        assert wait_for(lambda: status("zuoraInvoiceStatus").startswith("INV00000001 Posted"))
    finally:
        listener.close()
    deliveries = world.zuora.deliveries
    assert deliveries and all(d.attempts[:2] == [401, 202] for d in deliveries)  # challenged, then Basic
    # the next poll settles the invoice on its current state: paid
    world.sync()
    assert world.customer("C00010")["zuoraInvoiceStatus"].endswith(f"{invoice['amount']:.2f} USD, open 0.00")


def test_an_external_payment_sends_no_callout_and_the_poll_finds_it(world):
    world.sync()
    [invoice] = world.zuora.bill_run()
    world.zuora.wait_for_callouts()
    before = len(world.zuora.deliveries)
    world.zuora.pay(invoice["id"], 100.0, kind="External")
    assert len(world.zuora.deliveries) == before

    world.sync()

    assert world.customer("C00010")["zuoraPaymentStatus"] == (
        f"P-00000001 Processed {world.zuora.records('payments')[0]['effectiveDate']}: 100.00 USD")


def test_an_existing_zuora_account_is_matched_by_company_name_not_duplicated(world):
    trey = world.zuora.seed_account("Trey Research", email="ap@treyresearch.example")

    world.sync(flows=["customers"])

    accounts = [a for a in world.zuora.records("accounts") if a["name"] == "Trey Research"]
    assert [a["id"] for a in accounts] == [trey["id"]]
    assert accounts[0]["NAVCustomerNumber__c"] == "C00020"


def test_an_account_born_in_zuora_becomes_a_nav_customer_and_gets_its_number_back(world):
    world.sync()
    born = world.zuora.seed_account("Born in Zuora Ltd", email="billing@born.example")

    assert world.sync().exit_code == 0
    [customer] = [c for c in world.erp("customers") if c["displayName"] == "Born in Zuora Ltd"]
    assert customer["email"] == "billing@born.example"

    world.sync()
    assert world.zuora.data.tables["accounts"][born["id"]]["NAVCustomerNumber__c"] == customer["number"]
    assert [c["displayName"] for c in world.erp("customers")].count("Born in Zuora Ltd") == 1


def test_cli_ping_shows_the_region_base_url_and_sync_runs_every_flow(world):
    runner = CliRunner()
    ping = runner.invoke(build_app(), ["ping", "zuora", "--json"], obj=world.runtime())
    assert ping.exit_code == 0, ping.output
    [answer] = json.loads(ping.stdout)
    assert answer["base_url"] == "https://rest.zuora.com" and "us2 production" in " ".join(answer["details"])

    sync = runner.invoke(build_app(), ["sync", "nav-zuora", "--json"], obj=world.runtime())
    assert sync.exit_code == 0, sync.output
    flows = json.loads(sync.stdout)["flows"]
    assert set(flows) == {"customers", "items", "sales_orders", "accounts_to_customers", "products_to_items",
                          "account_parents", "account_ids", "invoices", "payments", "invoice_status", "payment_status"}
    for secret in world.secrets.values():
        assert secret not in ping.output + sync.output


def _zuora_side_story(world: ZuoraWorld) -> dict:
    """First sync, an account and a product born in Zuora, a bill run paid externally, two more syncs: what
    NAV and Zuora hold afterwards and how each run ended. (How many updates a run counts depends on whether a
    bill run lands in the same second as a sync; what the systems hold afterwards does not.)"""
    runs = [world.sync()]
    world.zuora.seed_account("Born in Zuora Ltd", email="billing@born.example")
    world.zuora.seed_product("Zuora Widget", "ZW-1", 12.5)
    [invoice] = world.zuora.bill_run()
    world.zuora.pay(invoice["id"], 100.0, kind="External")
    runs += [world.sync(), world.sync()]
    fields = ("number", "displayName", "email", "zuoraInvoiceStatus", "zuoraPaymentStatus")
    return {
        "exit": [r.exit_code for r in runs],
        "failed": [sum(s.failed for s in r.flows.values()) for r in runs],
        "customers": sorted(tuple(c.get(f) for f in fields) for c in world.erp("customers")),
        "items": sorted((i["number"], i["displayName"]) for i in world.erp("items")),
        "accounts": sorted((a["name"], a.get("NAVCustomerNumber__c")) for a in world.zuora.records("accounts")),
    }


def test_reads_through_zoql_give_nav_the_same_records_as_object_query(tmp_path, monkeypatch):
    stories = {}
    for api_name, settings in (("object_query", ""), ("zoql", 'read_api = "zoql"\nzoql_batch_size = 2\n'
                                                              'zoql_fields = { accounts = ["NAVCustomerNumber__c"] }\n')):
        (tmp_path / api_name).mkdir()
        made = make_zuora_world(tmp_path / api_name, monkeypatch,
                                zuora_settings='account_match = "company_name"\n' + settings)
        try:
            stories[api_name] = _zuora_side_story(made)
            calls = dict(made.zuora.calls)
        finally:
            made.close()
        if api_name == "zoql":
            assert calls["action.query"] and calls["action.queryMore"], calls   # more than one batch was paged

    assert stories["zoql"] == stories["object_query"]
    story = stories["zoql"]
    assert story["exit"] == [0, 0, 0]
    assert dict(story["accounts"])["Born in Zuora Ltd"] == "C00040"     # numbered by NAV, number sent back
    assert ("ZW-1", "Zuora Widget") in story["items"]
    [adatum] = [c for c in story["customers"] if c[0] == "C00010"]
    assert adatum[4].startswith("P-00000001 Processed") and adatum[3].startswith("INV00000001 Posted")
