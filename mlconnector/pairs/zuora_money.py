"""nav-zuora's money flows: Zuora invoices and payments booked into NAV journals, one journal document each.

An invoice becomes a Sales Journal line (Document Type Invoice, Document No. = the Zuora invoice number) against
the customer, balanced by the revenue account; a payment becomes Cash Receipt Journal lines (Document Type
Payment, Document No. = the Zuora payment number), one per invoice it pays, each applied to that invoice
(Applies-to Doc. Type Invoice, Applies-to Doc. No.), and a line on account for what it left unapplied. Posting
the sales journal, then the cash receipt journal, gives one customer ledger entry per invoice, closed by the
payments applied to it: the revenue journal posting the billing side drives. A refund is a Refund line applied to
the payment; a payment or invoice Zuora cancels leaves the journal while it is not posted, and is reversed by a
Refund / Credit Memo line applied to it once it is.

Amounts are Decimal, in the document's own currency; the currency of NAV's company (``options.local_currency``)
goes with a blank Currency Code, as NAV keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from mlconnector.errors import UnresolvedReference
from mlconnector.flows import MapContext, SkipRecord, Totals
from mlconnector.flows import text as _text
from mlconnector.systems.base import Record

CENT = Decimal("0.01")
# Zuora payment statuses (Payment object: Draft, Processing, Processed, Error, Canceled, Posted) and invoice
# statuses (Draft, Posted, Canceled, Error): what is money that moved, what undoes it.
BOOKED_PAYMENTS = frozenset({"Processed", "Posted"})
UNDONE_PAYMENTS = frozenset({"Canceled", "Voided"})
BOOKED_INVOICES = frozenset({"Posted"})
UNDONE_INVOICES = frozenset({"Canceled"})

# NAV Sales Journal line <- Zuora invoice
INVOICE_LINE_FIELDS = {
    "Document_Type": '"Invoice"',
    "Document_No": "invoiceNumber",
    "Account_Type / Account_No": '"Customer" / the account\'s NAV customer',
    "Posting_Date / Due_Date": "invoiceDate / dueDate",
    "Amount": "amount (with tax), in the invoice's currency",
    "Currency_Code": 'currency ("" for options.local_currency)',
    "External_Document_No": "the invoice's Zuora id",
    "Bal_Account_No": "options.revenue_account (else the batch's balancing account)",
}
# NAV Cash Receipt Journal lines <- Zuora payment
PAYMENT_LINE_FIELDS = {
    "Document_Type": '"Payment" (refunds: "Refund")',
    "Document_No": "paymentNumber",
    "Amount": "-appliedAmount per invoice paid; -the unapplied rest on account; +refundAmount",
    "Applies_to_Doc_Type / Applies_to_Doc_No": '"Invoice" / the NAV document of the invoice paid',
    "Posting_Date": "effectiveDate",
    "Currency_Code": 'currency ("" for options.local_currency)',
    "External_Document_No": "the payment's Zuora id",
}


# What `reconcile` sums per month and currency: each document's own amount on both sides (NAV's side: its journal
# lines and posted Customer Ledger Entries of the document type, dynamics_journals.booked_documents), a blank NAV
# Currency Code being options.local_currency. NAV's ledger also holds its own documents: only those this pair wrote
# (their description) are compared.
INVOICE_TOTALS = Totals("invoiceDate", "amount", "postingDate", "amount", "currency", "currencyCode",
                        local_currency_option="local_currency")
PAYMENT_TOTALS = Totals("effectiveDate", "amount", "postingDate", "amount", "currency", "currencyCode",
                        local_currency_option="local_currency")


def undone(payload: Mapping[str, Any]) -> bool:
    """A document cancelled in Zuora: NAV holds nothing of it unless it was posted before (reconcile)."""
    return bool(payload.get("reversed"))


def booked_invoice(record: Record) -> bool:
    return str(record.get("description") or "").startswith("Zuora invoice ")


def booked_payment(record: Record) -> bool:
    return str(record.get("description") or "").startswith("Zuora payment ")


def amount(value: Any) -> Decimal:
    """Money as Decimal to the cent (Zuora's JSON numbers carry two decimals)."""
    return Decimal(str(value if value not in (None, "") else 0)).quantize(CENT)


def customer_number(record: Record, ctx: MapContext, what: str) -> str:
    account = str(record.get("accountId") or "")
    number = ctx.source_id("customers", account)
    if not number:
        raise UnresolvedReference(f"{what}'s account {account} is not linked to a NAV customer yet (flow customers "
                                  "or accounts_to_customers has not synced it)")
    return number


def _currency(record: Record, options: Mapping[str, Any]) -> str:
    currency = _text(record.get("currency"))
    if not currency:
        raise SkipRecord("no currency on the record: an amount is never booked without one")
    return "" if currency.upper() == str(options["local_currency"]).upper() else currency


def _journal(options: Mapping[str, Any], name: str, what: str) -> str:
    journal = str(options[name])
    if not journal:
        raise SkipRecord(f"options.{name} is empty: {what} are not booked in NAV")
    return journal


def invoice_document(invoice: Record, ctx: MapContext) -> dict[str, Any]:
    journal = _journal(ctx.options, "invoice_journal", "invoices")
    status = str(invoice.get("status") or "")
    if status not in BOOKED_INVOICES | UNDONE_INVOICES:
        raise SkipRecord(f"invoice status {status or 'unknown'}: only posted invoices are booked")
    number = str(invoice.get("invoiceNumber"))
    return {"documentNumber": number, "journal": journal,
            "customerNumber": customer_number(invoice, ctx, f"invoice {number}"),
            "postingDate": _text(invoice.get("invoiceDate")), "dueDate": _text(invoice.get("dueDate")),
            "externalDocumentNumber": str(invoice.id), "currencyCode": _currency(invoice, ctx.options),
            "description": f"Zuora invoice {number}",
            "balAccountNumber": _text(ctx.options["revenue_account"]),
            "lines": [{"documentType": "Invoice", "amount": str(amount(invoice.get("amount")))}],
            "reversed": status in UNDONE_INVOICES,
            "reversal": {"documentType": "Credit Memo", "appliesToDocType": "Invoice"}}


def payment_document(payment: Record, ctx: MapContext) -> dict[str, Any]:
    journal = _journal(ctx.options, "payment_journal", "payments")
    status = str(payment.get("status") or "")
    if status not in BOOKED_PAYMENTS | UNDONE_PAYMENTS:
        raise SkipRecord(f"payment status {status or 'unknown'}: only processed payments are booked")
    number = str(payment.get("paymentNumber"))
    lines: list[dict[str, Any]] = []
    applied = Decimal("0.00")
    for application in payment.get("paymentApplications") or []:
        invoice_id = str(application.get("invoiceId") or "")
        if not invoice_id:
            continue
        share = amount(application.get("appliedAmount"))
        paid = application.get("invoiceNumber") or invoice_id
        document = ctx.target_id("invoices", invoice_id, what=f"invoice {paid} paid by {number}")
        lines.append({"documentType": "Payment", "amount": str(-share), "appliesToDocType": "Invoice",
                      "appliesToDocNumber": document})
        applied += share
    rest = amount(payment.get("amount")) - applied
    if rest > 0 or not lines:
        lines.append({"documentType": "Payment", "amount": str(-rest)})  # on account: applied later in NAV
    refunded = amount(payment.get("refundAmount"))
    if refunded:
        # applied to the payment where its entry is still open (dynamics_journals), else on account
        lines.append({"documentType": "Refund", "amount": str(refunded), "appliesToDocType": "Payment"})
    return {"documentNumber": number, "journal": journal,
            "customerNumber": customer_number(payment, ctx, f"payment {number}"),
            "postingDate": _text(payment.get("effectiveDate")), "externalDocumentNumber": str(payment.id),
            "currencyCode": _currency(payment, ctx.options), "description": f"Zuora payment {number}",
            "lines": lines, "reversed": status in UNDONE_PAYMENTS,
            "reversal": {"documentType": "Refund", "appliesToDocType": "Payment"}}
