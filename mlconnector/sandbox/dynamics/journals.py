"""General journals and customer ledger entries as NAV publishes them over ODataV4 page web services.

Pages served (service names as an administrator would type them on the Web Services page):

* ``SalesJournal`` (page 253) and ``CashReceiptJournal`` (page 255): lines of table 81 Gen. Journal Line, keyed
  by ``Journal_Template_Name``, ``Journal_Batch_Name`` and ``Line_No`` (an Integer, unquoted in the URL). Each
  page shows the templates of its own type (Sales; Cash Receipts). A POST without ``Line_No`` gets the next
  number in steps of 10000, as the page's AutoSplitKey does; a new line without a balancing account takes the
  batch's (the page's SetUpNewLine). PATCH and DELETE need If-Match.
* ``CustomerLedgerEntries`` (page 25, not editable): Cust. Ledger Entry, keyed by ``Entry_No``.

Option values travel XML-encoded, as NAV's EDM names them: "G/L Account" is ``G_x002F_L_x0020_Account``.
Amounts are kept as Decimal and written as JSON numbers.

Posting is not reachable through these pages: NAV exposes a page's fields, and a procedure only where the page
itself declares it ``[ServiceEnabled]``; such bound actions "cannot be added by extending an existing page that
has been exposed as a web service" (https://learn.microsoft.com/dynamics365/business-central/dev-itpro/developer/
devenv-creating-and-interacting-with-odatav4-bound-action). Tests post a batch as a NAV user does, with
``DynamicsSandbox.post_journal``: lines in Line No. order, each balanced by its balancing account; a line with
Applies-to Doc. No. closes (part of) the customer's open entry of that document, as codeunit Gen. Jnl.-Post Line
does; a batch with an error posts nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import Response

from . import errors
from .api import check_if_match
from .errors import ODataError, json_response
from .odata import apply_select, next_link, parse_query, requested_page_size, select_page

CASH_RECEIPTS, SALES = "Cash Receipts", "Sales"
BLANK = "_x0020_"
LINE_TYPES = {"Journal_Template_Name": "string", "Journal_Batch_Name": "string", "Line_No": "integer",
              "Posting_Date": "date", "Document_Type": "string", "Document_No": "string",
              "External_Document_No": "string", "Account_Type": "string", "Account_No": "string",
              "Description": "string", "Currency_Code": "string", "Amount": "decimal", "Due_Date": "date",
              "Applies_to_Doc_Type": "string", "Applies_to_Doc_No": "string", "Bal_Account_Type": "string",
              "Bal_Account_No": "string"}
ENTRY_TYPES = {"Entry_No": "integer", "Posting_Date": "date", "Document_Type": "string", "Document_No": "string",
               "External_Document_No": "string", "Customer_No": "string", "Description": "string",
               "Currency_Code": "string", "Amount": "decimal", "Remaining_Amount": "decimal", "Due_Date": "date",
               "Open": "boolean"}
LINE_KEY = ("Journal_Template_Name", "Journal_Batch_Name", "Line_No")
# Gen. Journal Line's option fields and the values they take (EDM-encoded).
OPTIONS = {
    "Document_Type": (BLANK, "Payment", "Invoice", "Credit_x0020_Memo", "Finance_x0020_Charge_x0020_Memo",
                      "Reminder", "Refund"),
    "Applies_to_Doc_Type": (BLANK, "Payment", "Invoice", "Credit_x0020_Memo", "Refund"),
    "Account_Type": ("G_x002F_L_x0020_Account", "Customer", "Vendor", "Bank_x0020_Account"),
    "Bal_Account_Type": ("G_x002F_L_x0020_Account", "Customer", "Vendor", "Bank_x0020_Account"),
}
LENGTHS = {"Document_No": 20, "External_Document_No": 35, "Applies_to_Doc_No": 20, "Description": 50,
           "Account_No": 20, "Bal_Account_No": 20, "Currency_Code": 10}
_KEY_RE = re.compile(r"\s*(\w+)\s*=\s*(?:'((?:[^']|'')*)'|(\d+))\s*(?:,|$)")


@dataclass(frozen=True)
class JournalPage:
    page_id: int
    template_type: str | None        # None: the ledger entries page


JOURNAL_PAGES = {"SalesJournal": JournalPage(253, SALES), "CashReceiptJournal": JournalPage(255, CASH_RECEIPTS),
                 "CustomerLedgerEntries": JournalPage(25, None)}


@dataclass
class Line:
    values: dict[str, Any]
    version: int = 1
    system_id: str = field(default_factory=lambda: str(uuid.uuid4()))   # the id API v2.0 shows

    @property
    def etag(self) -> str:
        return f'W/"JzE5OzE{self.version}MDAwOyc="'


@dataclass
class Books:
    """One company's journal templates and batches, journal lines and customer ledger entries."""

    templates: dict[str, str] = field(default_factory=dict)                       # name -> type
    batches: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # -> balancing (type, no.)
    lines: dict[tuple[str, str, int], Line] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    gl_entries: list[dict[str, Any]] = field(default_factory=list)   # G/L Entry: what posting a line made
    gl_accounts: set[str] = field(default_factory=set)
    bank_accounts: set[str] = field(default_factory=set)


class Journals:
    """The journal and ledger pages of every company; ``customers(company_id)`` names a company's customers."""

    def __init__(self, customers: Callable[[str], set[str]], today: Callable[[], date],
                 settled: Callable[[str, str, Decimal], None] = lambda company, number, remaining: None) -> None:
        self.books: dict[str, Books] = {}
        self.customers = customers
        self.today = today
        self.settled = settled   # (company id, invoice no., its remaining amount) after a posting applied to it

    def invoice_posted(self, company_id: str, invoice: dict[str, Any]) -> None:
        """A sales invoice posted through API v2.0 opens its customer ledger entry, as posting does in BC."""
        books = self.of(company_id)
        total = Decimal(str(invoice.get("totalAmountIncludingTax") or 0)).quantize(Decimal("0.01"))
        books.entries.append({"Entry_No": len(books.entries) + 1, "Posting_Date": invoice.get("postingDate")
                              or self.today().isoformat(), "Document_Type": "Invoice",
                              "Document_No": invoice["number"],
                              "External_Document_No": invoice.get("externalDocumentNumber") or "",
                              "Customer_No": invoice.get("customerNumber") or "", "Description": "",
                              "Currency_Code": invoice.get("currencyCode") or "", "Amount": total,
                              "Remaining_Amount": total, "Due_Date": invoice.get("dueDate") or "0001-01-01",
                              "Open": total != 0})

    def of(self, company_id: str) -> Books:
        return self.books.setdefault(company_id, Books())

    # -- requests ---------------------------------------------------------------------------------------------
    async def handle(self, request: Request, company_id: str, service: str, key: str | None,
                     context: str) -> Response:
        page = JOURNAL_PAGES[service]
        books = self.of(company_id)
        if page.template_type is None:
            return self._entries(request, books, key, context)
        if key is None:
            if request.method == "POST":
                line = self._insert(company_id, books, page, _body(await request.body()))
                return json_response({"@odata.context": f"{context}/$entity", **_view(line)}, status=201)
            if request.method != "GET":
                raise errors.method_not_allowed(request.method, service)
            rows = [line for k, line in sorted(books.lines.items())
                    if books.templates.get(k[0]) == page.template_type]
            return _collection(request, rows, LINE_TYPES, list(LINE_KEY), context, _view)
        found = self._line(books, page, _parse_key(key))
        if request.method == "GET":
            return json_response({"@odata.context": f"{context}/$entity", **_view(found)})
        check_if_match(request, found.etag)
        if request.method == "DELETE":
            del books.lines[_line_key(found.values)]
            return Response(status_code=204, headers={"OData-Version": "4.0"})
        if request.method != "PATCH":
            raise errors.method_not_allowed(request.method, service)
        changes = _body(await request.body())
        if any(name in changes and changes[name] != found.values[name] for name in LINE_KEY):
            raise ODataError(400, "BadRequest_InvalidOperation", "The key fields of a journal line cannot change.")
        values = _checked({**found.values, **changes}, self.customers(company_id), books)
        found.values, found.version = values, found.version + 1
        return json_response({"@odata.context": f"{context}/$entity", **_view(found)})

    def _entries(self, request: Request, books: Books, key: str | None, context: str) -> Response:
        if request.method != "GET":
            raise errors.method_not_allowed(request.method, "Cust. Ledger Entry")
        if key is None:
            return _collection(request, books.entries, ENTRY_TYPES, ["Entry_No"], context, _wire)
        number = _parse_key(key).get("Entry_No")
        found = next((e for e in books.entries if str(e["Entry_No"]) == str(number)), None)
        if found is None:
            raise ODataError(404, "Internal_RecordNotFound", "The Cust. Ledger Entry does not exist. "
                             f"Identification fields and values: Entry No.='{number}'")
        return json_response({"@odata.context": f"{context}/$entity", **_wire(found)})

    def _line(self, books: Books, page: JournalPage, key: dict[str, str]) -> Line:
        try:
            wanted = (key["Journal_Template_Name"], key["Journal_Batch_Name"], int(key["Line_No"]))
        except (KeyError, ValueError):
            raise errors.query_syntax() from None
        found = books.lines.get(wanted)
        if found is None or books.templates.get(wanted[0]) != page.template_type:
            raise ODataError(404, "Internal_RecordNotFound", "The Gen. Journal Line does not exist. Identification "
                             f"fields and values: Journal Template Name='{wanted[0]}',Journal Batch Name="
                             f"'{wanted[1]}',Line No.='{wanted[2]}'")
        return found

    def _insert(self, company_id: str, books: Books, page: JournalPage, body: dict[str, Any]) -> Line:
        template, batch = str(body.get("Journal_Template_Name") or ""), str(body.get("Journal_Batch_Name") or "")
        if books.templates.get(template) != page.template_type:
            raise ODataError(400, "Internal_RecordNotFound", f"The Gen. Journal Template does not exist. "
                             f"Identification fields and values: Name='{template}'")
        if (template, batch) not in books.batches:
            raise ODataError(400, "Internal_RecordNotFound", "The Gen. Journal Batch does not exist. Identification "
                             f"fields and values: Journal Template Name='{template}',Name='{batch}'")
        number = int(body.get("Line_No") or 0)
        if not number:
            taken = [k[2] for k in books.lines if k[:2] == (template, batch)]
            number = (max(taken) if taken else 0) + 10000
        if (template, batch, number) in books.lines:
            raise ODataError(409, "Internal_EntityWithSameKeyExists", "The record in table Gen. Journal Line "
                             "already exists.")
        bal_type, bal_no = books.batches[(template, batch)]
        values = {name: _default(name) for name in LINE_TYPES}
        values.update({"Posting_Date": self.today().isoformat(), "Bal_Account_Type": bal_type,
                       "Bal_Account_No": bal_no})
        values.update({k: v for k, v in body.items() if not k.startswith("@odata.")})
        values.update({"Journal_Template_Name": template, "Journal_Batch_Name": batch, "Line_No": number})
        line = Line(_checked(values, self.customers(company_id), books))
        books.lines[(template, batch, number)] = line
        return line

    # -- posting (what a NAV user's Post action does) ------------------------------------------------------------
    def post(self, company_id: str, template: str, batch: str) -> list[dict[str, Any]]:
        """Posts a batch whole, or raises ValueError with NAV's reason and posts nothing."""
        books = self.of(company_id)
        keys = sorted(k for k in books.lines if k[:2] == (template, batch))
        entries = [dict(e) for e in books.entries]
        made: list[dict[str, Any]] = []
        for key in keys:
            line = books.lines[key].values
            if not line["Bal_Account_No"]:
                raise ValueError(f"Gen. Journal Line {key}: the transaction is out of balance by {line['Amount']} "
                                 "(no balancing account)")
            _gl_entries(books, line)
            if line["Account_Type"] != "Customer":
                continue  # only customer entries are kept by this sandbox
            entry = {"Entry_No": len(entries) + 1, "Posting_Date": line["Posting_Date"],
                     "Document_Type": line["Document_Type"], "Document_No": line["Document_No"],
                     "External_Document_No": line["External_Document_No"], "Customer_No": line["Account_No"],
                     "Description": line["Description"], "Currency_Code": line["Currency_Code"],
                     "Amount": line["Amount"], "Remaining_Amount": line["Amount"], "Due_Date": line["Due_Date"],
                     "Open": True}
            if line["Applies_to_Doc_No"]:
                _apply(entries, entry, line["Applies_to_Doc_Type"], line["Applies_to_Doc_No"])
            entries.append(entry)
            made.append(entry)
        books.entries = entries
        for key in keys:
            del books.lines[key]
        for entry in entries:
            if entry["Document_Type"] == "Invoice":
                self.settled(company_id, entry["Document_No"], entry["Remaining_Amount"])
        return made


# The G/L accounts behind a customer's and a bank account's entries (CRONUS's posting groups: receivables 2310,
# the operating bank's cash account 2910).
RECEIVABLES_ACCOUNT, BANK_CASH_ACCOUNT = "2310", "2910"


def _gl_entries(books: Books, line: dict[str, Any]) -> None:
    """The two G/L entries a posted line makes: its account's side and its balancing account's."""
    def account(kind: str, number: str) -> str:
        return {"Customer": RECEIVABLES_ACCOUNT, "Bank_x0020_Account": BANK_CASH_ACCOUNT}.get(kind, number)

    amount = Decimal(str(line["Amount"]))
    for number, signed in ((account(line["Account_Type"], line["Account_No"]), amount),
                           (account(line["Bal_Account_Type"], line["Bal_Account_No"]), -amount)):
        books.gl_entries.append({"id": str(uuid.uuid4()), "entryNumber": len(books.gl_entries) + 1,
                                 "postingDate": line["Posting_Date"], "documentNumber": line["Document_No"],
                                 "documentType": str(line["Document_Type"]).replace(BLANK, " "),
                                 "accountId": "00000000-0000-0000-0000-000000000000",
                                 "accountNumber": number, "description": line["Description"],
                                 "debitAmount": max(signed, Decimal(0)), "creditAmount": max(-signed, Decimal(0)),
                                 "lastModifiedDateTime": "0001-01-01T00:00:00Z"})


def _apply(entries: list[dict[str, Any]], entry: dict[str, Any], kind: str, number: str) -> None:
    """Closes as much of the customer's open entry of that document as the new entry offsets."""
    target = next((e for e in entries if e["Customer_No"] == entry["Customer_No"] and e["Document_No"] == number
                   and e["Document_Type"] == kind and e["Open"]), None)
    if target is None:
        raise ValueError(f"Applies-to Doc. No. {number}: there is no open {kind.replace(BLANK, ' ')} entry "
                         f"{number} for customer {entry['Customer_No']}")
    if (target["Remaining_Amount"] > 0) == (entry["Amount"] > 0):
        raise ValueError(f"Applies-to Doc. No. {number}: an entry cannot be applied to one of the same sign")
    applied = min(abs(target["Remaining_Amount"]), abs(entry["Amount"]))
    step = applied if target["Remaining_Amount"] > 0 else -applied
    target["Remaining_Amount"] -= step
    entry["Remaining_Amount"] += step
    for each in (target, entry):
        each["Open"] = each["Remaining_Amount"] != 0


def _checked(values: dict[str, Any], customers: set[str], books: Books) -> dict[str, Any]:
    """Values as table 81's field validation leaves them, or the error NAV answers."""
    out = dict(values)
    for name, value in out.items():
        if name not in LINE_TYPES:
            raise ODataError(400, "BadRequest", f"The property '{name}' does not exist on type 'NAV.Gen. Journal "
                             "Line'. Make sure to only use property names that are defined by the type.")
        if name in OPTIONS and value not in OPTIONS[name]:
            raise ODataError(400, "BadRequest", f"Cannot convert the literal '{value}' to the expected type "
                             f"'NAV.{name}'.")
        if name in LENGTHS and len(str(value)) > LENGTHS[name]:
            raise ODataError(400, "Application_StringExceededLength", f"The length of the string is {len(value)}, "
                             f"but it must be less than or equal to {LENGTHS[name]} characters. Value: {value}")
    out["Amount"] = Decimal(str(out["Amount"] or 0))
    for side in ("", "Bal_"):
        kind, number = out[f"{side}Account_Type"], out[f"{side}Account_No"]
        known = {"Customer": customers, "G_x002F_L_x0020_Account": books.gl_accounts,
                 "Bank_x0020_Account": books.bank_accounts}.get(kind)
        if number and known is not None and number not in known:
            table = {"Customer": "Customer", "Bank_x0020_Account": "Bank Account"}.get(kind, "G/L Account")
            raise ODataError(400, "Internal_RecordNotFound", f"The {table} does not exist. Identification fields "
                             f"and values: No.='{number}'")
    return out


def _default(name: str) -> Any:
    if name in OPTIONS:
        return OPTIONS[name][0]
    return {"decimal": Decimal(0), "integer": 0, "date": "0001-01-01"}.get(LINE_TYPES[name], "")


def _wire(values: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON carries it: amounts as numbers (JSON has no decimal type; two decimals survive a float)."""
    return {k: float(v) if isinstance(v, Decimal) else v for k, v in values.items()}


def _view(line: Line) -> dict[str, Any]:
    return {"@odata.etag": line.etag, **_wire(line.values)}


def _line_key(values: dict[str, Any]) -> tuple[str, str, int]:
    return values["Journal_Template_Name"], values["Journal_Batch_Name"], int(values["Line_No"])


def _parse_key(text: str) -> dict[str, str]:
    parts = _KEY_RE.findall(text)
    if not parts:
        raise errors.query_syntax()
    return {name: (quoted.replace("''", "'") if quoted or not number else number) for name, quoted, number in parts}


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}", parse_float=Decimal)   # amounts exactly as sent
    except ValueError:
        raise errors.bad_body() from None
    if not isinstance(body, dict):
        raise errors.bad_body()
    return body


def _collection(request: Request, rows: list[Any], types: dict[str, str], key: list[str], context: str,
                view: Callable[[Any], dict[str, Any]]) -> Response:
    query = parse_query(dict(request.query_params), types, context.rsplit("/", 1)[-1])
    size, applied = requested_page_size(request.headers.get("prefer"), 20_000)
    result = select_page(rows, query, types, key, size, view=view)
    body: dict[str, Any] = {"@odata.context": context, "value": [apply_select(r, query.select, key)
                                                                 for r in result.rows]}
    if result.next_token:
        body["@odata.nextLink"] = next_link(str(request.url).split("?")[0], query, result.next_token)
    return json_response(body, headers={"Preference-Applied": f"odata.maxpagesize={size}"} if applied else {})
