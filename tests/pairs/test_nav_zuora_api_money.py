"""nav-zuora's money flows with NAV reached through BC API v2.0 (``api = "api"``): a Zuora invoice becomes a draft
BC sales invoice, and once a BC user has posted it, the Zuora payment becomes a customerPayments line in the
ZUORA customer payment journal applied to that invoice; all read back through the API as a BC user sees them."""

from __future__ import annotations

from decimal import Decimal

from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from tests.pairs.test_nav_zuora_money import NO_STATUS_FIELDS, money, sync_cli
from tests.pairs.zuora_world import make_zuora_world

API_OPTIONS = NO_STATUS_FIELDS + 'account_id_field = ""\nrevenue_account = "6110"\n'


def test_a_zuora_payment_is_a_customer_payment_applied_to_its_bc_invoice_and_is_booked_once(tmp_path, monkeypatch):
    world = make_zuora_world(tmp_path, monkeypatch, zuora_settings='account_match = "company_name"\n',
                             pair_settings=API_OPTIONS, nav_settings='api = "api"\n')
    bc = world.bc_user()
    try:
        assert sync_cli(world) == 0
        [invoice] = world.zuora.bill_run()
        assert sync_cli(world) == 0
        [draft] = bc.rows("salesInvoices", f"externalDocumentNumber eq '{invoice['invoiceNumber']}'")
        assert (draft["status"], draft["customerNumber"]) == ("Draft", "C00010")
        assert money(draft["totalAmountIncludingTax"]) == money(invoice["amount"])
        bc.act(f"salesInvoices({draft['id']})/Microsoft.NAV.post")   # a BC user posts the invoice
        posted = bc.row(f"salesInvoices({draft['id']})")

        payment = world.zuora.pay(invoice["invoiceNumber"])
        assert sync_cli(world) == 0

        [journal] = bc.rows("customerPaymentJournals", "code eq 'ZUORA'")
        lines = f"customerPaymentJournals({journal['id']})/customerPayments"
        [line] = bc.rows(lines)
        assert (line["documentNumber"], line["customerNumber"]) == (payment["paymentNumber"], "C00010")
        assert money(line["amount"]) == -money(invoice["amount"])
        assert (line["appliesToInvoiceId"], line["appliesToInvoiceNumber"]) == (draft["id"], posted["number"])

        # Nothing is booked twice: not by the next run, nor by a run that lost its state file.
        assert sync_cli(world, "invoices", "payments") == 0
        world.state_path.unlink()
        assert sync_cli(world) == 0
        assert [row["id"] for row in bc.rows(lines)] == [line["id"]]
        assert len(bc.rows("salesInvoices", f"externalDocumentNumber eq '{invoice['invoiceNumber']}'")) == 1

        # A BC user posts the payment journal: the invoice is paid, and the posted payment is never booked again.
        world.dynamics.post_journal(world.company, "CASHRCPT", "ZUORA")
        paid = bc.row(f"salesInvoices({draft['id']})")
        assert (paid["status"], money(paid["remainingAmount"])) == ("Paid", Decimal("0.00"))
        world.state_path.unlink()
        assert sync_cli(world) == 0
        assert bc.rows(lines) == []
        assert {e["documentType"] for e in bc.rows("generalLedgerEntries",
                                                   f"documentNumber eq '{payment['paymentNumber']}'")} == {"Payment"}
    finally:
        bc.close()
        world.close()


def test_in_api_mode_flows_writing_customer_card_fields_stop_the_run_before_anything_is_written(tmp_path, monkeypatch):
    """BC's standard API v2.0 customers cannot carry a table extension's field: a run whose chosen flows would write
    one (the default options name Zuora_Account_Id and the two status fields) is one line and exit 2."""
    world = make_zuora_world(tmp_path, monkeypatch, zuora_settings='account_match = "company_name"\n',
                             pair_settings='[pairs.nav-zuora.options]\nrevenue_account = "6110"\n',
                             nav_settings='api = "api"\n')
    bc = world.bc_user()
    try:
        before = bc.rows("customers")
        refused = CliRunner().invoke(build_app(), ["sync", "nav-zuora"], obj=world.runtime())

        assert refused.exit_code == 2 and "Traceback" not in refused.output
        [line] = refused.output.strip().splitlines()
        assert "writes Zuora_Invoice_Status on nav's customers" in line and "API pages cannot be extended" in line
        assert 'systems.nav.api = "odata"' in line and 'pairs.nav-zuora.options.invoice_status_field = ""' in line
        assert world.zuora.records("accounts") == [] and bc.rows("customers") == before
        # setup says the same: no extension is the fix here
        setup = CliRunner().invoke(build_app(), ["setup", "nav-zuora"], obj=world.runtime())
        [account_id] = [line for line in setup.output.splitlines() if "customers.Zuora_Account_Id" in line]
        assert "API pages cannot be extended" in account_id and 'set account_id_field = ""' in account_id

        # a run of flows that write no such field goes ahead
        assert sync_cli(world, "customers") == 0 and len(world.zuora.records("accounts")) == 3
    finally:
        bc.close()
        world.close()
