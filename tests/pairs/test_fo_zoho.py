"""fo-zoho end to end: F&O master data lands in Zoho first; Zoho sales orders and invoices are booked in F&O
once (never twice, also after a lost state commit), every line resolved to a released product; nothing is posted;
F&O is only ever read across companies, for the configured legal entity."""

from __future__ import annotations

import httpx
import pytest

from mlconnector import api
from mlconnector.sandbox.finops import ENTITIES
from tests.pairs.fo_world import LEGAL_ENTITY, FoWorld, make_fo_world
from tests.pairs.world import wait_for


@pytest.fixture
def world(tmp_path, monkeypatch):
    made = make_fo_world(tmp_path, monkeypatch)
    yield made
    made.close()


def fo_reads(world: FoWorld) -> list:
    return [c for c in world.finops.calls if c.form == "data" and c.method == "GET"
            and c.path.rstrip("/") != "/data" and "LegalEntities" not in c.path]


def test_master_data_lands_in_zoho_and_reads_are_cross_company_for_the_legal_entity(world: FoWorld):
    result = world.sync()

    assert result.exit_code == 0, result.to_dict()
    assert sorted(a["Account_Number"] for a in world.crm("Accounts")) == ["US-001", "US-002", "US-003"]
    assert world.crm("Accounts")[0]["Account_Name"] == "Contoso Retail San Diego"
    assert sorted(p["Product_Code"] for p in world.crm("Products")) == ["D0001", "D0003", "T0001"]
    assert sorted(v["ERP_Number"] for v in world.crm("Vendors")) == ["US-101", "US-104"]
    reads = fo_reads(world)
    assert reads and all(c.params.get("cross-company") == "true" for c in reads)
    assert all("dataAreaId eq 'usmf'" in c.params.get("$filter", "") for c in reads)

    again = world.sync()
    assert all(s.created == s.updated == 0 for s in again.flows.values()), again.to_dict()


def test_a_zoho_order_is_booked_once_with_its_lines_and_an_edit_adds_no_second_order(world: FoWorld):
    world.sync()
    order_id = world.zoho_order("US-002", [("D0001", 2), ("T0001", 10)], SO_Number="SO-1001")

    result = world.sync()

    assert result.flows["sales_orders"].created == 1, result.to_dict()
    [order] = world.fo("SalesOrderHeadersV2")
    assert order["OrderingCustomerAccountNumber"] == "US-002" and order["CustomersOrderReference"] == order_id
    lines = world.finops.lines(LEGAL_ENTITY, "SalesOrderHeadersV2", order["SalesOrderNumber"])
    assert [(x["ItemNumber"], x["OrderedSalesQuantity"]) for x in lines] == [("D0001", 2), ("T0001", 10)]
    assert order["OrderTotalAmount"] == pytest.approx(2 * 230.0 + 10 * 12.5)

    world.zoho.edit("Sales_Orders", order_id, Subject="Order from Zoho (rush)")
    world.sync()
    assert len(world.fo("SalesOrderHeadersV2")) == 1
    assert len(world.fo("SalesOrderLines")) == 2


def test_a_lost_state_commit_never_books_a_document_twice(world: FoWorld):
    world.sync()
    world.zoho_order("US-001", [("D0003", 1)])
    world.zoho_order("US-001", [("D0001", 4)], module="Invoices", subject="Invoice from Zoho",
                     Invoice_Number="INV-77", Invoice_Date="2026-11-02")
    world.sync()
    # As if the run had crashed after F&O answered but before the state file recorded the links.
    with world.state() as state:
        state.db.execute("DELETE FROM links WHERE flow IN ('sales_orders', 'invoices')")
        state.db.execute("DELETE FROM watermarks WHERE flow IN ('sales_orders', 'invoices')")

    result = world.sync(full=True)

    assert result.exit_code == 0, result.to_dict()
    assert len(world.fo("SalesOrderHeadersV2")) == 1 and len(world.fo("SalesOrderLines")) == 1
    [invoice] = world.fo("FreeTextInvoiceHeaders")
    assert invoice["CustomerAccount"] == "US-001" and invoice["CustomerRequisition"] == "INV-77"
    assert invoice["IsPosted"] == "No" and invoice["InvoiceDate"] == "2026-11-02T12:00:00Z"
    [line] = world.fo("FreeTextInvoiceLines")
    assert line["Description"].startswith("D0001") and line["TransactionCurrencyAmount"] == pytest.approx(4 * 230.0)


def test_a_line_without_an_fo_item_fails_the_document_with_that_reason_and_books_nothing(world: FoWorld):
    world.sync()
    [stray] = world.zoho.seed("Products", [{"Product_Name": "Zoho-only gadget", "Product_Code": "Z-1"}])
    lines = [{"Product_Name": {"id": world.zoho_id("Products", "Product_Code", "D0001")}, "Quantity": 1},
             {"Product_Name": {"id": stray}, "Quantity": 1}]
    world.zoho.seed("Sales_Orders", [{"Subject": "Mixed", "Ordered_Items": lines,
                                      "Account_Name": {"id": world.zoho_id("Accounts", "Account_Number", "US-001")}}])

    result = world.sync()

    assert result.exit_code == 3 and result.flows["sales_orders"].failed == 1
    assert world.fo("SalesOrderHeadersV2") == [] and world.fo("SalesOrderLines") == []
    [row] = api.audit(world.runtime(), pair="fo-zoho", status="failed")
    assert "line 2: product Zoho-only gadget is not an F&O released product" in row["error"]
    assert row["error_class"] == "unresolved_reference"


def test_a_zoho_order_arrives_through_the_watch_channel(world: FoWorld):
    listener = api.Listener(world.runtime(), process=True)
    world.listener_slot.app = listener.app
    try:
        first = world.sync()
        assert first.exit_code == 0 and any("Sales_Orders" in line for line in first.channels), first.channels
        world.zoho_order("US-003", [("D0003", 3)])
        # seed() does not notify; an edit does, as a user's save would.
        [order] = world.crm("Sales_Orders")
        world.zoho.edit("Sales_Orders", order["id"], Subject="Edited in Zoho")
        assert wait_for(lambda: len(world.fo("SalesOrderHeadersV2")) == 1, timeout=10)
    finally:
        listener.close()


def test_nothing_is_posted_and_no_secret_reaches_state_or_output(world: FoWorld, capsys):
    world.sync()
    world.zoho_order("US-002", [("T0001", 5)], module="Invoices", subject="Cables")
    result = world.sync()

    assert result.flows["invoices"].created == 1
    assert all(i["IsPosted"] == "No" and not i["InvoiceId"] for i in world.fo("FreeTextInvoiceHeaders"))
    single = [c for c in world.finops.calls if c.method in ("POST", "PATCH", "DELETE") and c.form == "data"
              and not c.path.endswith("/$batch")]
    assert single == []      # every write went inside a $batch changeset
    operations = [op.split() for c in world.finops.calls if c.path.endswith("/$batch") for op in c.operations]
    assert {method for method, *_ in operations} == {"POST"}
    assert {target.split("(")[0] for _, target, *_ in operations} | \
        {target.rsplit("/", 1)[-1] for _, target, *_ in operations} <= {
            "SalesOrderHeadersV2", "SalesOrderLines", "FreeTextInvoiceHeaders", "FreeTextInvoiceLines"}
    dumped = world.state_path.read_bytes() + str(result.to_dict()).encode() + capsys.readouterr().out.encode()
    for secret in world.secrets.values():
        assert secret.encode() not in dumped


def fo_batches(world: FoWorld) -> list:
    return [c for c in world.finops.calls if c.form == "data" and c.path.endswith("/$batch")]


def test_a_line_fo_refuses_rolls_its_order_back_and_the_other_orders_land(world: FoWorld):
    world.sync()
    # D0003 stops being a released product in F&O after it reached Zoho: Zoho still offers it.
    products = ENTITIES["ReleasedProductsV2"]
    world.finops.delete(products, world.finops.find(products, {"dataAreaId": LEGAL_ENTITY, "ItemNumber": "D0003"}))
    good = world.zoho_order("US-001", [("D0001", 1)], subject="Good one")
    stale = world.zoho_order("US-002", [("T0001", 2), ("D0003", 1)], subject="Stale item")
    other = world.zoho_order("US-002", [("T0001", 4)], subject="Another good one")
    before = len(fo_batches(world))

    result = world.sync()

    assert result.exit_code == 3, result.to_dict()
    flow = result.flows["sales_orders"]
    assert flow.created == 2 and flow.failed == 1, result.to_dict()
    orders = {o["CustomersOrderReference"]: o for o in world.fo("SalesOrderHeadersV2")}
    assert set(orders) == {good, other}          # no header of the refused order, not even an empty one
    assert len(world.fo("SalesOrderLines")) == 2
    [row] = api.audit(world.runtime(), pair="fo-zoho", status="failed")
    assert row["source_id"] == stale and row["flow"] == "sales_orders"
    assert "line 2 (item D0003)" in row["error"] and "Item D0003 does not exist in company usmf" in row["error"]
    assert row["error_class"] == "http_400"
    assert len(fo_batches(world)) - before == 1   # the three orders went in one $batch


class _LoseBatchAnswers(httpx.BaseTransport):
    """F&O receives and commits each $batch, but the answer never reaches the run (killed, link dropped)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.on = True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.on and request.url.path.endswith("/$batch"):
            raise httpx.ReadTimeout("connection lost", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_run_killed_between_the_batch_and_its_commit_books_nothing_twice(world: FoWorld):
    world.sync()
    world.zoho_order("US-001", [("D0003", 1), ("T0001", 3)])
    world.zoho_order("US-002", [("D0001", 4)], module="Invoices", subject="Invoice from Zoho",
                     Invoice_Number="INV-78", Invoice_Date="2026-11-03")
    cut = _LoseBatchAnswers(world.router.routes["fo.sandbox"])
    world.router.routes["fo.sandbox"] = cut

    killed = world.sync()          # the order's $batch commits in F&O; the run dies before hearing back

    assert killed.exit_code != 0
    assert len(world.fo("SalesOrderHeadersV2")) == 1 and len(world.fo("SalesOrderLines")) == 2
    killed_again = world.sync()    # the order is found, not sent again; the invoice's answer is lost this time

    assert killed_again.exit_code != 0
    assert len(world.fo("SalesOrderHeadersV2")) == 1 and len(world.fo("FreeTextInvoiceHeaders")) == 1
    cut.on = False
    rerun = world.sync()

    assert rerun.exit_code == 0, rerun.to_dict()
    assert len(world.fo("SalesOrderHeadersV2")) == 1 and len(world.fo("SalesOrderLines")) == 2
    assert len(world.fo("FreeTextInvoiceHeaders")) == 1 and len(world.fo("FreeTextInvoiceLines")) == 1
    assert rerun.flows["sales_orders"].created == 0 and rerun.flows["invoices"].created == 0
