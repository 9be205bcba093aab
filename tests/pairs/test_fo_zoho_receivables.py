"""fo-zoho with ``invoice_target = "invoice_journal"``: Zoho invoices become F&O customer invoice journals (customer
transactions once posted), known by invoice number and customer account, read back through F&O's OData."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from tests.pairs.fo_world import ENVIRONMENT, FO_CLIENT_ID, FO_SECRET, LEGAL_ENTITY, TENANT, FoWorld, make_fo_world


@pytest.fixture
def world(tmp_path, monkeypatch):
    made = make_fo_world(tmp_path, monkeypatch)
    with made.config_path.open("a") as config:
        config.write('flows = ["customers", "products", "vendors", "sales_orders", "invoices_to_journal"]\n'
                     '\n[pairs.fo-zoho.options]\ninvoice_target = "invoice_journal"\n')
    yield made
    made.close()


def fo_rows(world: FoWorld, entity: str, filter_: str = "") -> list[dict]:
    """Rows of an F&O data entity as an OData client of the legal entity reads them."""
    client = httpx.Client(transport=world.router, base_url="http://fo.sandbox")   # closed with the world
    token = client.post(f"/{TENANT}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": FO_CLIENT_ID, "client_secret": FO_SECRET,
        "scope": f"https://{ENVIRONMENT}/.default"}).json()["access_token"]
    terms = f"dataAreaId eq '{LEGAL_ENTITY}'" + (f" and {filter_}" if filter_ else "")
    answer = client.get(f"/data/{entity}", params={"cross-company": "true", "$filter": terms},
                        headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    return answer.json()["value"]


def sync(world: FoWorld, *extra: str) -> int:
    result = CliRunner().invoke(build_app(), ["sync", "fo-zoho", *extra], obj=world.runtime())
    for secret in world.secrets.values():
        assert secret not in result.output
    return result.exit_code


def test_a_zoho_invoice_is_a_customer_invoice_journal_line_booked_once_by_invoice_number_and_customer(world):
    assert sync(world) == 0
    zoho_id = world.zoho_order("US-001", [("D0001", 4)], module="Invoices", subject="Invoice from Zoho",
                               Invoice_Number="INV-77", Invoice_Date="2026-11-02", Due_Date="2026-12-02")
    [invoice] = [r for r in world.crm("Invoices") if str(r["id"]) == zoho_id]
    total = Decimal(str(invoice["Grand_Total"])).quantize(Decimal("0.01"))

    assert sync(world) == 0

    [journal] = fo_rows(world, "CustomerInvoiceJournalHeaders")
    assert (journal["Description"], journal["JournalName"], journal["IsPosted"]) == (zoho_id, "CInv", "No")
    [line] = fo_rows(world, "CustomerInvoiceJournalLines", f"JournalBatchNumber eq '{journal['JournalBatchNumber']}'")
    assert (line["InvoiceId"], line["AccountType"], line["CustomerAccountDisplayValue"]) == ("INV-77", "Cust", "US-001")
    assert Decimal(str(line["DebitAmount"])) == total and total > 0 and line["Currency"] == "USD"
    assert (line["OffsetAccountType"], line["OffsetAccountDisplayValue"]) == ("Ledger", "401100")
    assert line["DueDate"] == "2026-12-02T12:00:00Z" and line["DocumentNumber"] == zoho_id
    assert fo_rows(world, "FreeTextInvoiceHeaders") == []       # the option chose the journal

    # Lost state, then an edit in Zoho: still one journal; once an F&O user posted it, it is F&O's.
    world.state_path.unlink()
    world.zoho.edit("Invoices", zoho_id, Subject="Invoice from Zoho (corrected)")
    assert sync(world) == 0
    world.finops.post_journal(LEGAL_ENTITY, journal["JournalBatchNumber"])
    world.zoho.edit("Invoices", zoho_id, Subject="Invoice from Zoho (again)")
    assert sync(world, "--full") == 0
    assert len(fo_rows(world, "CustomerInvoiceJournalHeaders")) == 1
    assert len(fo_rows(world, "CustomerInvoiceJournalLines")) == 1


def test_an_invoice_f_and_o_already_holds_for_that_customer_is_linked_not_booked_again(world):
    world.sync()
    # Booked by hand in F&O before ml-connector ran: same invoice number and customer account, another description.
    [header] = world.finops.seed(LEGAL_ENTITY, "CustomerInvoiceJournalHeaders",
                                 [{"JournalName": "CInv", "Description": "entered by hand"}])
    world.finops.seed(LEGAL_ENTITY, "CustomerInvoiceJournalLines", [{
        "JournalBatchNumber": header["JournalBatchNumber"], "LineNumber": 1, "InvoiceId": "inv-78",
        "CustomerAccountDisplayValue": "US-002", "DebitAmount": 12.5, "Currency": "USD"}])
    world.zoho_order("US-002", [("T0001", 1)], module="Invoices", Invoice_Number="INV-78")
    world.zoho_order("US-001", [("T0001", 1)], module="Invoices", Invoice_Number="INV-78")  # another customer's

    result = world.sync()

    assert result.exit_code == 0, result.to_dict()
    journals = fo_rows(world, "CustomerInvoiceJournalLines", "InvoiceId eq 'INV-78'")
    assert sorted(line["CustomerAccountDisplayValue"] for line in journals) == ["US-001", "US-002"]
    assert len(fo_rows(world, "CustomerInvoiceJournalHeaders")) == 2
