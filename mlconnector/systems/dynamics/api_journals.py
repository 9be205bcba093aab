"""Journal documents (dynamics_journals.py's payloads) booked through BC API v2.0: ``api = "api"`` and kind "bc".

Payments (entity ``cashReceiptLines``) become ``customerPayments`` lines of the customer payment journal whose code
is the batch of the payload's ``journal`` (``CASHRCPT/ZUORA`` -> ``ZUORA``; API v2.0's customer payment journals
are the batches of BC's cash receipts template), one line per invoice paid with ``appliesToInvoiceId`` the BC
invoice, and a line on account for the rest
(https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/resources/dynamics_customerpayment).
Before writing, BC's G/L entries are asked whether the payment is posted (then it is never sent again), and the
journal's lines of the document (documentNumber and customer) are read and made to match: the same payment is
never booked twice, state file or not. A customerPayment is always a payment: refunds and
reversals of a posted payment have no place there and fail the document with that reason.

Invoices (entity ``salesJournalLines``) become draft BC sales invoices: API v2.0's journalLines take customer lines
but neither carry a document type nor return them ("Get journalLines will only return lines where documentType is
not specified and where accountType is either of type "G/L Account" or "Bank Account"",
https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/api/dynamics_journalline_get),
and a customerPayment applies only to a sales invoice. The draft has the customer, externalDocumentNumber = the
document number (how it is found again), the posting and due dates, and one line of type Account: the payload's
balancing (revenue) G/L account for the amount. A posted invoice is never changed (one cancelled in Zuora fails with
the reason: cancel it in BC); a reversed draft is deleted.
Posting stays with BC's users, as in page mode.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import httpx

from mlconnector.errors import RemoteError
from mlconnector.systems.base import WriteResult
from mlconnector.systems.dynamics_journals import JournalRefused, _money, _text, option, send_journal

DRAFT_INVOICE = frozenset({"Draft", "In Review"})
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _party(customer: str) -> tuple[dict[str, str], str]:
    """The customer as a body field and as a filter: API mode links records by id, page mode by number."""
    if _GUID.match(customer):
        return {"customerId": customer.lower()}, f"customerId eq {customer.lower()}"
    return {"customerNumber": customer}, f"customerNumber eq {_text(customer)}"


class ApiJournalWriter:
    """Writes journal documents into one BC company through API v2.0 (``company_url``: its companies(id) URL)."""

    def __init__(self, system: str, call: Callable[..., httpx.Response],
                 pages: Callable[[str, dict[str, str]], Iterator[dict[str, Any]]], company_url: Callable[[], str],
                 fail: Callable[[httpx.Response, str], RemoteError]) -> None:
        self.system = system
        self._call = call
        self._pages = pages
        self._company_url = company_url
        self._fail = fail
        self._journals: dict[str, str] = {}

    def write_one(self, entity: str, payload: Mapping[str, Any]) -> WriteResult:
        number, customer = str(payload.get("documentNumber") or ""), str(payload.get("customerNumber") or "")
        template, _, batch = str(payload.get("journal") or "").partition("/")
        if not number or not customer or not batch:
            return WriteResult("fail", error="a journal document needs documentNumber, customerNumber and journal "
                                             "TEMPLATE/BATCH", error_class="INVALID_DATA")
        if entity == "salesJournalLines":
            return self._invoice(payload, number, customer)
        return self._payment(payload, number, customer, batch)

    # -- payments ---------------------------------------------------------------------------------------------
    def _payment(self, payload: Mapping[str, Any], number: str, customer: str, batch: str) -> WriteResult:
        lines = list(payload.get("lines") or [])
        if any(option(line["documentType"]) != "Payment" for line in lines):
            return WriteResult("fail", error=f"payment {number}: a {lines[-1]['documentType']} line cannot be "
                               "booked as a BC API v2.0 customerPayment (always a payment); book it in BC, or use "
                               "page web services (api = \"odata\")", error_class="unsupported_line")
        if self._posted(number):
            if payload.get("reversed"):
                return WriteResult("fail", error=f"payment {number} is posted in BC and was cancelled in Zuora: "
                                   "reverse it in BC (a customerPayment is always a payment)",
                                   error_class="unsupported_line")
            return WriteResult("update", number)   # posted: BC's from now on, never booked again
        url = f"{self._company_url()}/customerPaymentJournals({self._journal(batch)})/customerPayments"
        party, party_filter = _party(customer)
        waiting = sorted(self._pages(url, {"$filter": f"documentNumber eq {_text(number)} and {party_filter}"}),
                         key=lambda row: int(row.get("lineNumber") or 0))
        header = {**party, "documentNumber": number,
                  "externalDocumentNumber": str(payload.get("externalDocumentNumber") or "")[:35],
                  "description": str(payload.get("description") or "")[:100]}
        if payload.get("postingDate"):
            header["postingDate"] = payload["postingDate"]
        wanted = [] if payload.get("reversed") else [
            {**header, "amount": _money(line["amount"]),
             "appliesToInvoiceId": str(line.get("appliesToDocNumber") or "") or "00000000-0000-0000-0000-000000000000"}
            for line in lines]
        sent = False
        for index, fields in enumerate(wanted):
            if index < len(waiting):
                current = waiting[index]
                changes = {k: v for k, v in fields.items()
                           if (_money(current.get(k)) != v if k == "amount" else str(current.get(k) or "") != v)}
                if changes:
                    self._send("PATCH", f"{url}({current['id']})", changes, current.get("@odata.etag"))
                    sent = True
                continue
            self._send("POST", url, fields)
            sent = True
        for current in waiting[len(wanted):]:
            response = self._call("DELETE", f"{url}({current['id']})", idempotent=True,
                                  headers={"If-Match": str(current.get("@odata.etag") or "*")})
            if response.status_code not in (204, 404):
                raise self._fail(response, f"remove customer payment line {current.get('lineNumber')}")
            sent = True
        return WriteResult("create" if sent and not waiting else "update", number)

    def _posted(self, number: str) -> bool:
        """Whether BC has posted the payment: G/L entries of its document number and type Payment
        (https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/resources/dynamics_generalledgerentry;
        API v2.0 has no customer ledger entries)."""
        rows = self._pages(f"{self._company_url()}/generalLedgerEntries",
                           {"$filter": f"documentNumber eq {_text(number)} and documentType eq 'Payment'"})
        return next(iter(rows), None) is not None

    def _journal(self, batch: str) -> str:
        """The id of the customer payment journal of that code."""
        if batch not in self._journals:
            rows = list(self._pages(f"{self._company_url()}/customerPaymentJournals",
                                    {"$filter": f"code eq {_text(batch)}"}))
            if not rows:
                raise JournalRefused(RemoteError(
                    self.system, 404, "no_journal", f"BC has no customer payment journal {batch}: create it "
                    "(Customer Payment Journals, or POST customerPaymentJournals) with its balancing account"))
            self._journals[batch] = str(rows[0]["id"])
        return self._journals[batch]

    # -- invoices ---------------------------------------------------------------------------------------------
    def _invoice(self, payload: Mapping[str, Any], number: str, customer: str) -> WriteResult:
        invoices = f"{self._company_url()}/salesInvoices"
        party, party_filter = _party(customer)
        found = list(self._pages(invoices, {"$filter": f"externalDocumentNumber eq {_text(number)} and "
                                                       f"{party_filter}"}))
        amount = sum((_money(line["amount"]) for line in payload.get("lines") or []), Decimal("0.00"))
        account = str(payload.get("balAccountNumber") or "")
        line = {"lineType": "Account", "lineObjectNumber": account, "description": str(payload.get("description")
                or number)[:100], "quantity": 1, "unitPrice": amount}
        if found:
            invoice = found[0]
            if str(invoice.get("status") or "") not in DRAFT_INVOICE:
                if payload.get("reversed") and str(invoice.get("status")) != "Canceled":
                    return WriteResult("fail", str(invoice["id"]), error=(
                        f"invoice {number} is posted in BC ({invoice.get('number')}) and was cancelled in Zuora: "
                        "cancel it in BC (Cancel on the posted invoice makes a corrective credit memo)"),
                        error_class="unsupported_line")
                return WriteResult("update", str(invoice["id"]))   # posted: BC's from now on
            if payload.get("reversed"):
                response = self._call("DELETE", f"{invoices}({invoice['id']})", idempotent=True,
                                      headers={"If-Match": str(invoice.get("@odata.etag") or "*")})
                if response.status_code not in (204, 404):
                    raise self._fail(response, f"remove draft invoice {invoice.get('number')}")
                return WriteResult("update", str(invoice["id"]))
            lines = list(self._pages(f"{invoices}({invoice['id']})/salesInvoiceLines", {}))
            current = lines[0] if lines else None
            if current is None:
                self._send("POST", f"{invoices}({invoice['id']})/salesInvoiceLines", line)
            elif _money(current.get("unitPrice")) != amount or current.get("lineObjectNumber") != account:
                self._send("PATCH", f"{invoices}({invoice['id']})/salesInvoiceLines({current['id']})",
                           {"lineObjectNumber": account, "unitPrice": amount}, current.get("@odata.etag"))
            return WriteResult("update", str(invoice["id"]))
        if payload.get("reversed"):
            return WriteResult("skip", error="cancelled before it was booked")
        if not account:
            return WriteResult("fail", error=f"invoice {number}: set options.revenue_account: in API mode the "
                               "invoice is a BC sales invoice whose line names the revenue G/L account",
                               error_class="config")
        header = {**party, "externalDocumentNumber": number,
                  "invoiceDate": payload.get("postingDate"), "postingDate": payload.get("postingDate"),
                  "dueDate": payload.get("dueDate"), "currencyCode": payload.get("currencyCode") or None}
        created = self._send("POST", invoices, {k: v for k, v in header.items() if v})
        self._send("POST", f"{invoices}({created['id']})/salesInvoiceLines", line)
        return WriteResult("create", str(created["id"]))

    def _send(self, method: str, url: str, fields: Mapping[str, Any], etag: str | None = None) -> dict[str, Any]:
        return send_journal(self._call, self._fail, method, url, fields, etag, "BC refused the journal document").json()


__all__ = ["ApiJournalWriter"]
