"""Documents booked into NAV journals through its page web services: customer payments as Cash Receipt Journal
lines (page 255), invoices as Sales Journal lines (page 253), each applied to the document it settles.

Entities (what a pair's flow names as its target): ``cashReceiptLines`` and ``salesJournalLines``. A payload is
one document (its number is the key) with its lines::

    {"documentNumber": "P-00000001", "journal": "CASHRCPT/ZUORA", "customerNumber": "C00010",
     "postingDate": "2026-12-07", "externalDocumentNumber": "...", "currencyCode": "", "description": "...",
     "dueDate": None, "balAccountNumber": None, "reversed": False,
     "lines": [{"documentType": "Payment", "amount": "-49.99", "appliesToDocType": "Invoice",
                "appliesToDocNumber": "INV00000001"}],
     "reversal": {"documentType": "Refund", "appliesToDocType": "Payment"}}

Amounts are decimal strings (exact, in the document's currency; a blank currency code is the company's own) and go
to NAV as JSON numbers, digit for digit.

Nothing is booked twice, state file or not: before writing, the document's lines in the journal batch and its
entries in Customer Ledger Entries (page 25) are read by Document No. and customer. While none is posted the
journal lines are made to match the document (added, changed, removed: a document reversed before posting just
leaves the journal). Once a document type is posted it is never sent again; what changed since comes as a line of
the difference (a refund, or the reversal: a Refund or Credit Memo applied to the posted document).

Posting stays with NAV: page web services expose fields, and a procedure only where the page itself declares it
``[ServiceEnabled]``, which "cannot be added by extending an existing page that has been exposed as a web service"
(https://learn.microsoft.com/dynamics365/business-central/dev-itpro/developer/devenv-creating-and-interacting-with-
odatav4-bound-action). NAV users (or a job queue entry) post the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import httpx

from mlconnector.errors import ConfigError, RemoteError
from mlconnector.http import json_with_decimals
from mlconnector.systems.base import Record, WriteResult

# entity -> the journal page's default service name (the Web Services page's name for it)
JOURNAL_SERVICES = {"cashReceiptLines": "CashReceiptJournal", "salesJournalLines": "SalesJournal"}
LEDGER_SERVICE = "CustomerLedgerEntries"
ZERO = Decimal("0.00")


def option(value: str) -> str:
    """An option value as NAV's EDM writes it ("Credit Memo" -> "Credit_x0020_Memo")."""
    return str(value).replace(" ", "_x0020_").replace("/", "_x002F_") if value else "_x0020_"


def _money(value: Any) -> Decimal:
    """An amount as read (a JSON number: two decimals survive the float) or as a payload carries it (text)."""
    return Decimal(str(value if value not in (None, "") else 0)).quantize(ZERO)


class JournalWriter:
    """Writes documents into a NAV company's journals. ``call(method, url, **kw)`` sends one request, ``pages(url,
    params)`` reads every row of a collection, ``company_url`` is the company's ODataV4 root."""

    def __init__(self, system: str, call: Callable[..., httpx.Response],
                 pages: Callable[[str, dict[str, str]], Iterator[dict[str, Any]]], company_url: Callable[[], str],
                 services: Mapping[str, str], fail: Callable[[httpx.Response, str], RemoteError]) -> None:
        self.system = system
        self._call = call
        self._pages = pages
        self._company_url = company_url
        self.services = {**JOURNAL_SERVICES, "customerLedgerEntries": LEDGER_SERVICE, **services}
        self._fail = fail

    def write_one(self, entity: str, payload: Mapping[str, Any]) -> WriteResult:
        number, customer = str(payload.get("documentNumber") or ""), str(payload.get("customerNumber") or "")
        template, _, batch = str(payload.get("journal") or "").partition("/")
        if not number or not customer or not template or not batch:
            return WriteResult("fail", error="a journal document needs documentNumber, customerNumber and journal "
                                             "TEMPLATE/BATCH", error_class="INVALID_DATA")
        url = f"{self._company_url()}/{self.services[entity]}"
        posted, remaining = self._posted(number, customer)
        waiting = list(self._pages(url, {"$filter": (
            f"Journal_Template_Name eq {_text(template)} and Journal_Batch_Name eq {_text(batch)} and "
            f"Document_No eq {_text(number)} and Account_No eq {_text(customer)}")}))
        wanted = self._wanted(payload, posted, remaining)
        changed = self._align(url, waiting, wanted, {**_header(payload), "Journal_Template_Name": template,
                                                     "Journal_Batch_Name": batch})
        # "create" when this write put the document into NAV for the first time
        return WriteResult("create" if changed and not posted and not waiting else "update", number)

    def _posted(self, number: str, customer: str) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
        """The document's posted amounts per document type, and what of them is still open (Customer Ledger
        Entries)."""
        rows = self._pages(f"{self._company_url()}/{self.services['customerLedgerEntries']}", {"$filter": (
            f"Document_No eq {_text(number)} and Customer_No eq {_text(customer)}")})
        sums: dict[str, Decimal] = {}
        remaining: dict[str, Decimal] = {}
        for row in rows:
            kind = str(row.get("Document_Type") or "")
            sums[kind] = sums.get(kind, ZERO) + _money(row.get("Amount"))
            remaining[kind] = remaining.get(kind, ZERO) + _money(row.get("Remaining_Amount"))
        return sums, remaining

    @staticmethod
    def _wanted(payload: Mapping[str, Any], posted: Mapping[str, Decimal],
                remaining: Mapping[str, Decimal]) -> list[dict[str, Any]]:
        """The lines the journal should hold now: the document's own while nothing of it is posted (none once it
        is reversed), else a line per document type for what is not posted yet. A line undoing the posted
        document is applied to it while its entry is open by as much; else it stays on account (NAV cannot
        apply to a closed entry: the NAV user unapplies the entries first, or applies the line elsewhere)."""
        lines = [dict(line) for line in payload.get("lines") or []]
        reversal = payload.get("reversal") or {}
        main = option(lines[0]["documentType"]) if lines else ""
        if main not in posted:
            return [] if payload.get("reversed") else lines
        if payload.get("reversed") and reversal:
            lines.append({**reversal, "amount": str(-sum((_money(l["amount"]) for l in lines
                                                          if option(l["documentType"]) == main), ZERO))})
        due: dict[str, Decimal] = {}
        template: dict[str, dict[str, Any]] = {}
        for line in lines:
            kind = option(line["documentType"])
            due[kind] = due.get(kind, ZERO) + _money(line["amount"])
            template.setdefault(kind, line)
        wanted = []
        for kind in due:
            rest = due[kind] - posted.get(kind, ZERO)
            if kind == main or not rest:
                continue
            line = {**template[kind], "amount": str(rest)}
            if line.get("appliesToDocType") and remaining.get(main, ZERO) and abs(remaining[main]) >= abs(rest):
                line["appliesToDocNumber"] = payload.get("documentNumber")
            else:
                line.pop("appliesToDocType", None)
                line.pop("appliesToDocNumber", None)
            wanted.append(line)
        return wanted

    def _align(self, url: str, waiting: list[dict[str, Any]], wanted: list[dict[str, Any]],
               header: dict[str, Any]) -> bool:
        """Makes the batch's lines of the document equal ``wanted``, in order: changed lines patched, missing ones
        added, surplus ones deleted. True when anything was sent."""
        sent = False
        for index, line in enumerate(wanted):
            fields = {**header, "Document_Type": option(line["documentType"]), "Amount": _money(line["amount"]),
                      "Applies_to_Doc_Type": option(line.get("appliesToDocType") or ""),
                      "Applies_to_Doc_No": str(line.get("appliesToDocNumber") or "")}
            if index < len(waiting):
                current = waiting[index]
                changes = {k: v for k, v in fields.items() if k not in ("Journal_Template_Name", "Journal_Batch_Name")
                           and (_money(current.get(k)) != v if k == "Amount" else current.get(k) != v)}
                if changes:
                    self._send("PATCH", self._line_url(url, current), changes, current.get("@odata.etag"))
                    sent = True
                continue
            self._send("POST", url, fields)
            sent = True
        for current in waiting[len(wanted):]:
            response = self._call("DELETE", self._line_url(url, current), idempotent=True,
                                  headers={"If-Match": str(current.get("@odata.etag") or "*")})
            if response.status_code not in (204, 404):
                raise self._fail(response, f"remove journal line {current.get('Line_No')}")
            sent = True
        return sent

    def _send(self, method: str, url: str, fields: Mapping[str, Any], etag: str | None = None) -> None:
        send_journal(self._call, self._fail, method, url, fields, etag, "NAV refused the journal line")

    @staticmethod
    def _line_url(url: str, line: Mapping[str, Any]) -> str:
        return (f"{url}(Journal_Template_Name={_text(line['Journal_Template_Name'])},"
                f"Journal_Batch_Name={_text(line['Journal_Batch_Name'])},Line_No={int(line['Line_No'])})")


class JournalRefused(Exception):
    """NAV refused a journal line (a 4xx): the document fails with NAV's reason, the run goes on."""

    def __init__(self, error: RemoteError) -> None:
        super().__init__(str(error))
        self.error = error


def _header(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The fields every line of the document carries."""
    out = {"Document_No": str(payload["documentNumber"]), "Account_Type": "Customer",
           "Account_No": str(payload["customerNumber"]), "Posting_Date": payload.get("postingDate"),
           "External_Document_No": str(payload.get("externalDocumentNumber") or "")[:35],
           "Description": str(payload.get("description") or "")[:50],
           "Currency_Code": str(payload.get("currencyCode") or ""), "Due_Date": payload.get("dueDate")}
    if payload.get("balAccountNumber"):
        out["Bal_Account_Type"] = option(str(payload.get("balAccountType") or "G/L Account"))
        out["Bal_Account_No"] = str(payload["balAccountNumber"])
    return {k: v for k, v in out.items() if v is not None}


def _text(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


# entity -> the document type its documents are booked as (their own lines; reversals and refunds aside)
MAIN_TYPES = {"salesJournalLines": "Invoice", "cashReceiptLines": "Payment"}


def send_journal(call: Callable[..., httpx.Response], fail: Callable[[httpx.Response, str], Exception], method: str,
                 url: str, fields: Mapping[str, Any], etag: str | None, refused: str) -> httpx.Response:
    """One write of a journal document's part (a page's line, an API v2.0 payment or invoice): exact decimals, the
    row's etag where it is changed; a 5xx fails the run's write as any call would, a refusal only this document."""
    headers = {"Content-Type": "application/json"}
    if etag is not None:
        headers["If-Match"] = etag
    response = call(method, url, content=json_with_decimals(fields), headers=headers, idempotent=method == "PATCH")
    if response.status_code not in (200, 201):
        if response.status_code >= 500:
            raise fail(response, f"{method} {url.rsplit('/', 1)[-1]}")
        raise JournalRefused(fail(response, refused))
    return response


def booked_documents(entity: str, pages: Callable[[str, dict[str, str]], Iterator[dict[str, Any]]],
                     company_url: str, services: Mapping[str, str]) -> Iterator[Record]:
    """Each document of ``entity``'s kind as NAV holds it now, for `reconcile`: its lines waiting in the journal
    page and its posted Customer Ledger Entries (page 25) of that document type, read whole and summed by Document No.
    (a document half posted counts once). ``amount`` is the document's own amount as its source states it (a payment's
    lines and entries are credits: their sign is turned); ``currencyCode`` is blank for the company's own currency."""
    kind = option(MAIN_TYPES[entity])
    sign = Decimal(-1) if entity == "cashReceiptLines" else Decimal(1)
    found: dict[str, dict[str, Any]] = {}
    services = {**JOURNAL_SERVICES, "customerLedgerEntries": LEDGER_SERVICE, **services}
    for service, customer in ((services[entity], "Account_No"), (services["customerLedgerEntries"], "Customer_No")):
        for row in pages(f"{company_url}/{service}", {}):
            if row.get("Document_Type") != kind or not row.get("Document_No"):
                continue
            number = str(row["Document_No"])
            document = found.setdefault(number, {
                "documentNumber": number, "customerNumber": str(row.get(customer) or ""),
                "postingDate": row.get("Posting_Date"), "currencyCode": str(row.get("Currency_Code") or ""),
                "externalDocumentNumber": str(row.get("External_Document_No") or ""),
                "description": str(row.get("Description") or ""), "amount": ZERO})
            document["amount"] += sign * _money(row.get("Amount"))
    for number, document in found.items():
        yield Record("", entity, number, None, {**document, "amount": float(document["amount"])})


def check_mode(system: str, mode: str, entity: str) -> None:
    if mode != "odata":
        raise ConfigError(f"{system}: reconcile reads {entity} through NAV's journal pages (page web services), "
                          f"which API mode (api = \"api\") does not use: compare them in Business Central")


__all__ = ["JournalWriter", "JournalRefused", "JOURNAL_SERVICES", "booked_documents", "check_mode", "send_journal"]
