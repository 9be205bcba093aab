"""BC API v2.0 customer payment journals, served over the same journal tables the pages show (journals.py).

* ``customerPaymentJournals`` are the batches of the cash receipts template ``CASHRCPT`` (code = the batch name,
  balancingAccountNumber = its balancing account): GET only here.
  https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/resources/dynamics_customerpaymentjournal
* ``customerPaymentJournals({id})/customerPayments`` and ``customerPayments`` (the company's, any journal): the
  batch's customer lines (table 81 Gen. Journal Line, Document Type Payment), GET, POST, and by id GET, PATCH and
  DELETE (If-Match). ``appliesToInvoiceId`` / ``appliesToInvoiceNumber`` name a posted sales invoice of the customer:
  the line's Applies-to Doc. Type becomes Invoice and its Applies-to Doc. No. the invoice's number. An invoice that
  is no posted invoice of that customer is refused.
  https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/resources/dynamics_customerpayment

* ``generalLedgerEntries`` (GET): what posting journal lines made, two entries a line (its account's side and the
  balancing account's; a customer's side on receivables 2310, a bank's on 2910).
  https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/resources/dynamics_generalledgerentry

Lines written here are the lines the Cash Receipt Journal page shows, and post with the batch (``post_journal``).
Not served: the payment journal's own create/update/delete. Their properties are schema.py's (``$metadata`` too).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from . import errors
from .api import Segment, check_if_match, guid_key
from .errors import ODataError, json_response
from .journals import BLANK, LINE_TYPES, Books, Line, _body, _checked, _collection, _default, _wire
from .schema import EMPTY_GUID, GL_ENTRY_TYPES, JOURNAL_TYPES, PAYMENT_TYPES, POSTED_INVOICE_STATUSES

if TYPE_CHECKING:
    from .sandbox import DynamicsSandbox

API_PAYMENT_TEMPLATE = "CASHRCPT"
SETS = ("customerPaymentJournals", "customerPayments", "generalLedgerEntries")
WRITABLE = frozenset(PAYMENT_TYPES) - {"id", "journalDisplayName", "lastModifiedDateTime"}
# customerPayment property -> Gen. Journal Line field, where one holds the other as is
PLAIN = {"postingDate": "Posting_Date", "documentNumber": "Document_No", "externalDocumentNumber":
         "External_Document_No", "description": "Description", "amount": "Amount", "lineNumber": "Line_No"}


def journal_id(company_id: str, batch: str) -> str:
    """A batch's SystemId, stable for the sandbox's life."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bc-sandbox/{company_id}/{API_PAYMENT_TEMPLATE}/{batch}"))


class PaymentJournalsApi:
    """The two entity sets for one sandbox; ``handle`` takes the path segments after ``companies({id})``."""

    def __init__(self, sandbox: "DynamicsSandbox") -> None:
        self.sandbox = sandbox

    async def handle(self, request: Request, company_id: str, segments: list[Segment], root: str) -> Response:
        books = self.sandbox.journals.of(company_id)
        first = segments[0]
        context = f"{root}/$metadata#companies({company_id})/{first.name}"
        if first.name == "generalLedgerEntries":
            if request.method != "GET" or len(segments) > 1 or first.key is not None:
                raise errors.method_not_allowed(request.method, "generalLedgerEntries")
            return _collection(request, books.gl_entries, GL_ENTRY_TYPES, ["entryNumber"], context, _wire)
        if first.name == "customerPaymentJournals":
            if first.key is None and len(segments) == 1:
                if request.method != "GET":
                    raise errors.method_not_allowed(request.method, "customerPaymentJournals")
                return _collection(request, self._journals(company_id, books), JOURNAL_TYPES, ["code"], context,
                                   dict)
            batch = self._batch(company_id, books, guid_key(first.key or ""))
            if len(segments) == 1:
                if request.method != "GET":
                    raise errors.method_not_allowed(request.method, "customerPaymentJournals")
                return json_response({"@odata.context": f"{context}/$entity", **self._journal(company_id, books,
                                                                                              batch)})
            nested = segments[1]
            if nested.name != "customerPayments" or len(segments) > 2:
                raise errors.segment_not_found(segments[-1].name)
            return await self._payments(request, company_id, books, batch, nested.key, f"{context}({first.key})/"
                                        "customerPayments")
        if len(segments) > 1:
            raise errors.segment_not_found(segments[-1].name)
        return await self._payments(request, company_id, books, None, first.key, context)

    # -- journals ---------------------------------------------------------------------------------------------
    def _journals(self, company_id: str, books: Books) -> list[dict[str, Any]]:
        return [self._journal(company_id, books, batch) for template, batch in sorted(books.batches)
                if template == API_PAYMENT_TEMPLATE]

    @staticmethod
    def _journal(company_id: str, books: Books, batch: str) -> dict[str, Any]:
        _, number = books.batches[(API_PAYMENT_TEMPLATE, batch)]
        return {"id": journal_id(company_id, batch), "code": batch, "displayName": batch,
                "lastModifiedDateTime": "0001-01-01T00:00:00Z", "balancingAccountId": EMPTY_GUID,
                "balancingAccountNumber": number}

    def _batch(self, company_id: str, books: Books, wanted: str) -> str:
        for template, batch in books.batches:
            if template == API_PAYMENT_TEMPLATE and journal_id(company_id, batch) == wanted:
                return batch
        raise errors.not_found("customerPaymentJournal", wanted)

    # -- payments ---------------------------------------------------------------------------------------------
    def _lines(self, books: Books, batch: str | None) -> list[Line]:
        return [line for (template, name, _), line in sorted(books.lines.items())
                if template == API_PAYMENT_TEMPLATE and batch in (None, name)
                and line.values["Account_Type"] == "Customer"]

    async def _payments(self, request: Request, company_id: str, books: Books, batch: str | None, key: str | None,
                        context: str) -> Response:
        if key is None:
            if request.method == "GET":
                return _collection(request, self._lines(books, batch), PAYMENT_TYPES, ["journalId", "lineNumber"],
                                   context, lambda line: self.view(company_id, line))
            if request.method != "POST":
                raise errors.method_not_allowed(request.method, "customerPayments")
            body = _body(await request.body())
            if batch is None:
                batch = self._batch(company_id, books, guid_key(str(body.get("journalId") or "")))
            line = self._insert(company_id, books, batch, body)
            return json_response({"@odata.context": f"{context}/$entity", **self.view(company_id, line)},
                                 status=201, headers={"ETag": line.etag})
        wanted = guid_key(key)
        found = next((line for line in self._lines(books, batch) if line.system_id == wanted), None)
        if found is None:
            raise errors.not_found("customerPayment", key)
        if request.method == "GET":
            return json_response({"@odata.context": f"{context}/$entity", **self.view(company_id, found)},
                                 headers={"ETag": found.etag})
        check_if_match(request, found.etag)
        if request.method == "DELETE":
            del books.lines[(API_PAYMENT_TEMPLATE, found.values["Journal_Batch_Name"], found.values["Line_No"])]
            return Response(status_code=204, headers={"OData-Version": "4.0"})
        if request.method != "PATCH":
            raise errors.method_not_allowed(request.method, "customerPayments")
        changes = self._fields(company_id, _body(await request.body()), found.values)
        if "Line_No" in changes and changes["Line_No"] != found.values["Line_No"]:
            raise ODataError(400, "BadRequest_InvalidOperation", "The line number of a payment cannot change.")
        found.values = _checked({**found.values, **changes}, self.sandbox._customer_numbers(company_id), books)
        found.version += 1
        return json_response({"@odata.context": f"{context}/$entity", **self.view(company_id, found)},
                             headers={"ETag": found.etag})

    def _insert(self, company_id: str, books: Books, batch: str, body: dict[str, Any]) -> Line:
        values = {name: _default(name) for name in LINE_TYPES}
        bal_type, bal_no = books.batches[(API_PAYMENT_TEMPLATE, batch)]
        values.update({"Journal_Template_Name": API_PAYMENT_TEMPLATE, "Journal_Batch_Name": batch,
                       "Posting_Date": self.sandbox.clock.now().date().isoformat(), "Document_Type": "Payment",
                       "Account_Type": "Customer", "Bal_Account_Type": bal_type, "Bal_Account_No": bal_no})
        values.update(self._fields(company_id, body, values))
        if not values["Line_No"]:
            taken = [k[2] for k in books.lines if k[:2] == (API_PAYMENT_TEMPLATE, batch)]
            values["Line_No"] = (max(taken) if taken else 0) + 10000
        if (API_PAYMENT_TEMPLATE, batch, values["Line_No"]) in books.lines:
            raise ODataError(409, "Internal_EntityWithSameKeyExists", "The record in table Gen. Journal Line "
                             "already exists.")
        line = Line(_checked(values, self.sandbox._customer_numbers(company_id), books))
        books.lines[(API_PAYMENT_TEMPLATE, batch, values["Line_No"])] = line
        return line

    def _fields(self, company_id: str, body: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
        """A customerPayment body as Gen. Journal Line fields; the customer and the invoice resolved."""
        out: dict[str, Any] = {}
        for name, value in body.items():
            if name.startswith("@odata."):
                continue
            if name not in PAYMENT_TYPES:
                raise ODataError(400, "BadRequest", f"The property '{name}' does not exist on type "
                                 "'Microsoft.NAV.customerPayment'. Make sure to only use property names that are "
                                 "defined by the type.")
            if name not in WRITABLE:
                continue
            if name in PLAIN:
                out[PLAIN[name]] = Decimal(str(value)) if name == "amount" else value
        customer = current.get("Account_No", "")
        if body.get("customerId") not in (None, "", EMPTY_GUID):
            row = self.sandbox.db.company(company_id).table("customers").get(str(body["customerId"]).lower())
            if row is None:
                raise errors.not_found("customer", str(body["customerId"]))
            customer = str(row.values["number"])
        elif body.get("customerNumber") not in (None, ""):
            customer = str(body["customerNumber"])
        out["Account_No"] = customer
        invoice_ref = {k: body[k] for k in ("appliesToInvoiceId", "appliesToInvoiceNumber")
                       if body.get(k) not in (None, "", EMPTY_GUID)}
        if invoice_ref:
            out.update({"Applies_to_Doc_Type": "Invoice",
                        "Applies_to_Doc_No": self._posted_invoice(company_id, customer, invoice_ref)})
        elif "appliesToInvoiceId" in body or "appliesToInvoiceNumber" in body:
            out.update({"Applies_to_Doc_Type": BLANK, "Applies_to_Doc_No": ""})
        return out

    def _posted_invoice(self, company_id: str, customer: str, ref: dict[str, Any]) -> str:
        invoices = self.sandbox.db.company(company_id).table("salesInvoices")
        for row in invoices.values():
            posted = row.values.get("status") in POSTED_INVOICE_STATUSES
            if posted and str(row.values.get("customerNumber")) == customer and (
                    row.id == str(ref.get("appliesToInvoiceId", "")).lower()
                    or ("appliesToInvoiceId" not in ref and row.values.get("number") == ref["appliesToInvoiceNumber"])):
                return str(row.values["number"])
        shown = ref.get("appliesToInvoiceNumber") or ref.get("appliesToInvoiceId")
        raise ODataError(400, "Internal_RecordNotFound", "The Sales Invoice Header does not exist. Identification "
                         f"fields and values: No.='{shown}' (a payment applies to a posted invoice of customer "
                         f"{customer})")

    def view(self, company_id: str, line: Line) -> dict[str, Any]:
        values = line.values
        customers = self.sandbox.db.company(company_id).table("customers").values()
        customer = next((r.id for r in customers if str(r.values.get("number")) == values["Account_No"]), EMPTY_GUID)
        number = values["Applies_to_Doc_No"] if values["Applies_to_Doc_Type"] == "Invoice" else ""
        invoices = self.sandbox.db.company(company_id).table("salesInvoices").values()
        invoice = next((r.id for r in invoices if number and r.values.get("number") == number), EMPTY_GUID)
        return {"@odata.etag": line.etag, "id": line.system_id,
                "journalId": journal_id(company_id, values["Journal_Batch_Name"]),
                "journalDisplayName": values["Journal_Batch_Name"], "lineNumber": values["Line_No"],
                "customerId": customer, "customerNumber": values["Account_No"],
                "postingDate": values["Posting_Date"], "documentNumber": values["Document_No"],
                "externalDocumentNumber": values["External_Document_No"], "amount": float(values["Amount"]),
                "appliesToInvoiceId": invoice, "appliesToInvoiceNumber": number,
                "description": values["Description"], "comment": "", "lastModifiedDateTime": "0001-01-01T00:00:00Z"}
