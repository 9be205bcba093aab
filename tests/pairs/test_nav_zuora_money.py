"""nav-zuora's money flows end to end: Zuora invoices and payments booked in NAV journals, read back through NAV's
page web services as a NAV user sees them, then posted as a NAV user posts a batch."""

from __future__ import annotations

from decimal import Decimal

import pytest
from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from tests.pairs.zuora_world import ZuoraWorld, make_zuora_world


# The per-invoice journal flows only: the status fields on the customer card (the fallback) are left out.
NO_STATUS_FIELDS = '[pairs.nav-zuora.options]\ninvoice_status_field = ""\npayment_status_field = ""\n'


@pytest.fixture
def world(tmp_path, monkeypatch):
    made = make_zuora_world(tmp_path, monkeypatch, zuora_settings='account_match = "company_name"\n',
                            pair_settings=NO_STATUS_FIELDS)
    yield made
    made.close()


# (a NavUser shares the world's transport: closing it would close the sandboxes; the world closes both)
def journal(world: ZuoraWorld, service: str) -> list[dict]:
    return world.nav_user().rows(service, "Journal_Batch_Name eq 'ZUORA'")


def ledger(world: ZuoraWorld, customer: str) -> list[dict]:
    return world.nav_user().rows("CustomerLedgerEntries", f"Customer_No eq '{customer}'")


def sync_cli(world: ZuoraWorld, *flows: str) -> int:
    args = ["sync", "nav-zuora"] + [part for flow in flows for part in ("--flow", flow)]
    result = CliRunner().invoke(build_app(), args, obj=world.runtime())
    for secret in world.secrets.values():
        assert secret not in result.output
    return result.exit_code


def money(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def test_a_paid_zuora_invoice_is_a_sales_journal_line_and_its_payment_a_cash_receipt_applied_to_it(world):
    assert sync_cli(world) == 0
    [invoice] = world.zuora.bill_run()
    payment = world.zuora.pay(invoice["invoiceNumber"])

    assert sync_cli(world) == 0

    [sale] = journal(world, "SalesJournal")
    assert (sale["Document_Type"], sale["Document_No"], sale["Account_Type"], sale["Account_No"]) == (
        "Invoice", invoice["invoiceNumber"], "Customer", "C00010")
    assert money(sale["Amount"]) == money(invoice["amount"]) and sale["Due_Date"] == invoice["dueDate"]
    assert sale["Currency_Code"] == "" and sale["Bal_Account_No"] == "6110"   # USD is the company's own
    [receipt] = journal(world, "CashReceiptJournal")
    assert (receipt["Document_Type"], receipt["Document_No"], receipt["Account_No"]) == (
        "Payment", payment["paymentNumber"], "C00010")
    assert money(receipt["Amount"]) == -money(invoice["amount"])
    assert (receipt["Applies_to_Doc_Type"], receipt["Applies_to_Doc_No"]) == ("Invoice", invoice["invoiceNumber"])
    with world.state() as state:
        booked = {(row["flow"], row["action"], row["record_key"]) for row in state.audit_rows(limit=None)
                  if row["flow"] in ("invoices", "payments")}
    assert booked == {("invoices", "create", invoice["invoiceNumber"]),
                      ("payments", "create", payment["paymentNumber"])}, booked

    # A NAV user posts the sales journal, then the cash receipts: the invoice's entry is closed by the payment.
    world.dynamics.post_journal(world.company, "SALES", "ZUORA")
    world.dynamics.post_journal(world.company, "CASHRCPT", "ZUORA")
    entries = {e["Document_No"]: e for e in ledger(world, "C00010")}
    assert money(entries[invoice["invoiceNumber"]]["Remaining_Amount"]) == 0
    assert entries[invoice["invoiceNumber"]]["Open"] is False and entries[payment["paymentNumber"]]["Open"] is False

    # Nothing is booked twice: not by the next run, nor by a run that lost its state file.
    assert sync_cli(world, "invoices", "payments") == 0
    world.state_path.unlink()
    assert sync_cli(world) == 0
    assert journal(world, "SalesJournal") == journal(world, "CashReceiptJournal") == []
    assert len(ledger(world, "C00010")) == 2


def test_a_partial_payment_then_the_rest_make_two_lines_each_applied_to_the_invoice(world):
    world.sync()
    [invoice] = world.zuora.bill_run()
    first = world.zuora.pay(invoice["id"], 100.0, kind="External")
    world.sync()
    second = world.zuora.pay(invoice["id"])

    assert world.sync().exit_code == 0

    lines = {line["Document_No"]: line for line in journal(world, "CashReceiptJournal")}
    assert set(lines) == {first["paymentNumber"], second["paymentNumber"]}
    assert money(lines[first["paymentNumber"]]["Amount"]) == Decimal("-100.00")
    assert money(lines[second["paymentNumber"]]["Amount"]) == -(money(invoice["amount"]) - Decimal("100.00"))
    assert {line["Applies_to_Doc_No"] for line in lines.values()} == {invoice["invoiceNumber"]}


def test_a_refund_is_a_refund_line_and_a_payment_cancelled_before_posting_leaves_the_journal(world):
    world.sync()
    [invoice] = world.zuora.bill_run()
    payment = world.zuora.pay(invoice["id"])
    world.sync()
    world.dynamics.post_journal(world.company, "SALES", "ZUORA")
    world.dynamics.post_journal(world.company, "CASHRCPT", "ZUORA")

    world.zuora.refund(payment["paymentNumber"], 20.0)
    assert world.sync().exit_code == 0
    [refund] = journal(world, "CashReceiptJournal")
    assert (refund["Document_Type"], refund["Document_No"], money(refund["Amount"])) == (
        "Refund", payment["paymentNumber"], Decimal("20.00"))
    # the payment's entry is closed (applied to the invoice): the refund stays on account for the NAV user to apply
    assert (refund["Applies_to_Doc_Type"], refund["Applies_to_Doc_No"]) == ("_x0020_", "")

    # A second payment, cancelled in Zuora before anyone in NAV posted it: its line goes away again.
    later = world.zuora.pay(invoice["id"], 10.0, kind="External")
    world.sync()
    assert {line["Document_No"] for line in journal(world, "CashReceiptJournal")} == {
        payment["paymentNumber"], later["paymentNumber"]}
    world.zuora.cancel_payment(later["paymentNumber"])
    assert world.sync().exit_code == 0
    assert [line["Document_No"] for line in journal(world, "CashReceiptJournal")] == [payment["paymentNumber"]]


def test_a_posted_payment_cancelled_in_zuora_is_reversed_by_a_refund_line_applied_to_it(world):
    world.sync()
    [invoice] = world.zuora.bill_run()
    payment = world.zuora.pay(invoice["id"])
    world.sync()
    world.dynamics.post_journal(world.company, "SALES", "ZUORA")
    world.dynamics.post_journal(world.company, "CASHRCPT", "ZUORA")

    world.zuora.cancel_payment(payment["paymentNumber"])
    assert world.sync().exit_code == 0

    [reversal] = journal(world, "CashReceiptJournal")
    assert (reversal["Document_Type"], reversal["Document_No"], money(reversal["Amount"])) == (
        "Refund", payment["paymentNumber"], money(invoice["amount"]))
    world.dynamics.post_journal(world.company, "CASHRCPT", "ZUORA")
    # the customer owes the invoice's amount again, on the reversal's entry
    entries = {(e["Document_Type"], e["Document_No"]): e for e in ledger(world, "C00010")}
    assert money(entries[("Refund", payment["paymentNumber"])]["Remaining_Amount"]) == money(invoice["amount"])


def test_a_cancelled_open_invoice_is_reversed_by_a_credit_memo_applied_to_it(world):
    world.sync()
    [invoice] = world.zuora.bill_run()
    world.sync()
    world.dynamics.post_journal(world.company, "SALES", "ZUORA")
    world.zuora.edit("invoices", invoice["id"], status="Canceled")

    assert world.sync().exit_code == 0

    [credit] = journal(world, "SalesJournal")
    assert (credit["Document_Type"], money(credit["Amount"]), credit["Applies_to_Doc_Type"],
            credit["Applies_to_Doc_No"]) == ("Credit_x0020_Memo", -money(invoice["amount"]), "Invoice",
                                              invoice["invoiceNumber"])
    world.dynamics.post_journal(world.company, "SALES", "ZUORA")
    [entry] = [e for e in ledger(world, "C00010") if e["Document_Type"] == "Invoice"]
    assert entry["Open"] is False


def test_a_journal_batch_missing_in_nav_fails_the_documents_with_navs_reason_and_exit_3(tmp_path, monkeypatch):
    made = make_zuora_world(tmp_path, monkeypatch, pair_settings='[pairs.nav-zuora.options]\n'
                                                                 'invoice_journal = "SALES/BILLING"\n')
    try:
        made.sync()
        made.zuora.bill_run()
        result = made.sync(flows=["invoices"])
        assert result.exit_code == 3
        with made.state() as state:
            [failed] = state.audit_rows(status="failed", limit=None)
        assert "Gen. Journal Batch does not exist" in failed["error"] and "BILLING" in failed["error"]
    finally:
        made.close()


def test_two_payments_of_one_customer_in_one_run_book_both_and_the_card_shows_the_newest(tmp_path, monkeypatch):
    made = make_zuora_world(tmp_path, monkeypatch, zuora_settings='account_match = "company_name"\n',
                            clocks_behind=60)
    try:
        made.sync()
        [invoice] = made.zuora.bill_run()
        made.zuora.pay(invoice["id"], 10.0, kind="External")
        made.zuora.advance(seconds=2)   # the second payment a little later (Zuora stamps whole seconds)
        second = made.zuora.pay(invoice["id"], kind="External")

        result = made.sync()

        assert result.exit_code == 0, result.to_dict()
        assert len(journal(made, "CashReceiptJournal")) == 2
        assert made.customer("C00010")["zuoraPaymentStatus"].startswith(f"{second['paymentNumber']} Processed")
    finally:
        made.close()
