"""NAV page web services (ODataV4 at ``/ODataV4/Company('...')/...``), with records handed out in the API v2.0
shape: page fields renamed, the record id the page key (``No``), cards stamped with the end of their "Last Date
Modified", posted documents read whole now and then and otherwise by posting date, contacts with their business
relations; rows looked up and sent for writes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import quote

import httpx

from mlconnector.auth import utcnow
from mlconnector.errors import ConfigError, RemoteError
from mlconnector.systems.base import Record, WriteResult
from mlconnector.systems.dynamics.api import API_ENTITIES
from mlconnector.systems.dynamics.client import DynamicsApi
from mlconnector.systems.dynamics.odata import (Pager, _as_stored, _business_relation, _day_end, _error, _isoformat,
                                                _nav_value, _quote_key, parse_time)

DEFAULT_SERVICES = {"customers": "Customer", "vendors": "Vendor", "contacts": "Contact", "items": "Item",
                    "salesOrders": "SalesOrder", "postedSalesInvoices": "PostedSalesInvoice",
                    "purchaseOrders": "PurchaseOrder", "contactRelations": "ContactBusinessRelations",
                    "customerDimensions": "DefaultDimensions"}
# Document pages are keyed by (Document Type, No.); card pages by No.
DOCUMENT_TYPE = {"salesOrders": "Order", "purchaseOrders": "Order"}
# The lines subpage navigation is the service name plus the part's control name (SalesOrder + SalesLines).
DEFAULT_LINE_PARTS = {"salesOrders": "SalesLines", "postedSalesInvoices": "SalesInvLines"}
LAST_DATE_MODIFIED = "Last_Date_Modified"
CARD_ENTITIES = ("customers", "vendors", "contacts", "items")
# Posted documents on pages carry no modification date, but a posted document changes only in what NAV computes
# (Closed, Cancelled): between whole reads, only those posted since the last read are asked for.
POSTING_DATE_FIELDS = {"postedSalesInvoices": "Posting_Date"}
DEFAULT_POSTED_FULL_READ_HOURS = 24

_ADDRESS = {"Address": "addressLine1", "Address_2": "addressLine2", "City": "city", "County": "state",
            "Post_Code": "postalCode", "Country_Region_Code": "country", "Phone_No": "phoneNumber",
            "E_Mail": "email", "Home_Page": "website"}
# Page control (EDM name) -> API v2.0 field, per entity; what is not listed keeps its page name.
PAGE_FIELDS: dict[str, dict[str, str]] = {
    "customers": {"No": "number", "Name": "displayName", **_ADDRESS, "Currency_Code": "currencyCode",
                  "Salesperson_Code": "salespersonCode", "Credit_Limit_LCY": "creditLimit",
                  "Balance_LCY": "balanceDue", "Blocked": "blocked", "VAT_Registration_No": "taxRegistrationNumber"},
    "vendors": {"No": "number", "Name": "displayName", **_ADDRESS, "Currency_Code": "currencyCode",
                "Balance_LCY": "balance", "Blocked": "blocked", "VAT_Registration_No": "taxRegistrationNumber"},
    "contacts": {"No": "number", "Type": "type", "Name": "displayName", "Company_No": "companyNumber",
                 "Company_Name": "companyName", "Job_Title": "jobTitle", **_ADDRESS,
                 "Mobile_Phone_No": "mobilePhoneNumber"},
    "items": {"No": "number", "Description": "displayName", "Type": "type",
              "Base_Unit_of_Measure": "baseUnitOfMeasureCode", "Unit_Price": "unitPrice", "Unit_Cost": "unitCost",
              "Inventory": "inventory", "Blocked": "blocked", "Item_Category_Code": "itemCategoryCode"},
    "salesOrders": {"No": "number", "Sell_to_Customer_No": "customerNumber",
                    "Sell_to_Customer_Name": "customerName", "External_Document_No": "externalDocumentNumber",
                    "Order_Date": "orderDate", "Posting_Date": "postingDate", "Currency_Code": "currencyCode",
                    "Status": "status", "Document_Type": "documentType"},
    "postedSalesInvoices": {"No": "number", "Sell_to_Customer_No": "customerNumber",
                            "Sell_to_Customer_Name": "customerName",
                            "External_Document_No": "externalDocumentNumber", "Posting_Date": "postingDate",
                            "Due_Date": "dueDate", "Currency_Code": "currencyCode", "Order_No": "orderNumber",
                            "Amount": "totalAmountExcludingTax", "Amount_Including_VAT": "totalAmountIncludingTax",
                            "Remaining_Amount": "remainingAmount"},
    "purchaseOrders": {"No": "number", "Buy_from_Vendor_No": "vendorNumber",
                       "Buy_from_Vendor_Name": "vendorName", "Order_Date": "orderDate",
                       "Posting_Date": "postingDate", "Currency_Code": "currencyCode", "Status": "status",
                       "Document_Type": "documentType"},
}
# Controls of the standard card pages that API v2.0 has no property for: they keep their page names in records
# (Customer card, page 21: "Bill-to Customer No.", the posting groups, the price group; API v2.0's customer resource
# has none of them).
PAGE_ONLY_FIELDS: dict[str, tuple[str, ...]] = {"customers": ("Bill_to_Customer_No", "Customer_Posting_Group",
                                                              "Gen_Bus_Posting_Group", "Customer_Price_Group")}
LINE_FIELDS = {"Type": "lineType", "No": "lineObjectNumber", "Description": "description", "Quantity": "quantity",
               "Unit_of_Measure_Code": "unitOfMeasureCode", "Unit_Price": "unitPrice",
               "Direct_Unit_Cost": "directUnitCost", "Line_Discount_Percent": "discountPercent",
               "Line_Discount_Amount": "discountAmount", "Line_Amount": "amountExcludingTax",
               "Line_No": "sequence", "Document_No": "documentId", "Quantity_Shipped": "shippedQuantity",
               "Quantity_Invoiced": "invoicedQuantity"}
# Sales Header Status as the page shows it -> the API's salesOrder status (Open is still a draft there).
DOCUMENT_STATUS = {"Open": "Draft", "Released": "Open", "Pending_Approval": "In Review",
                   "Pending_Prepayment": "Open"}


class Pages:
    """Reads and the rows writes need, through page web services."""

    def __init__(self, api: DynamicsApi, pager: Pager, *, services: Mapping[str, Any],
                 line_parts: Mapping[str, Any], modified_fields: Mapping[str, Any], posted_full_read: timedelta,
                 whole_read: dict[str, datetime], page_size: int, document_page_size: int) -> None:
        self.name = api.name
        self.services = services
        self.line_parts = line_parts
        self.modified_fields = modified_fields
        self.posted_full_read = posted_full_read
        self.page_size = page_size
        self.document_page_size = document_page_size
        self._whole_read = whole_read  # the connector's: see its read_clock
        self.company_name, self.endpoint = api.company_name, api.endpoint
        self._call, self._read_failure, self.company_url = api.call, api.read_failure, api.company_url
        self._api_unavailable, self._company_hint = api.api_unavailable, api.company_hint
        self._pages = pager.pages

    def _service(self, entity: str) -> str:
        if entity not in PAGE_FIELDS:
            raise ConfigError(f"{self.name}: entity {entity!r} has no page web service; known: "
                              f"{', '.join(PAGE_FIELDS)}")
        return str(self.services[entity])

    def _page_key(self, entity: str, number: str) -> str:
        kind = DOCUMENT_TYPE.get(entity)
        key = quote(_quote_key(number), safe="'")
        return f"('{kind}',{key})" if kind else f"({key})"

    def changes(self, entity: str, since: datetime | None, until: datetime | None) -> Iterator[Record]:
        """Pages carry at best "Last Date Modified" (a date): rows are read from the day before ``since``'s date
        (time zones) and stamped with the end of their day, capped just below ``until``: a row changed twice on
        one day is read again and the engine's payload hash tells whether it really changed. Pages without a
        modification field (documents) are read whole each time, with modified None."""
        service = self._service(entity)
        field = self.modified_fields.get(entity)
        until = until or utcnow()
        cap = until - timedelta(milliseconds=1)
        params: dict[str, str] = {}
        self._whole_read.pop(entity, None)
        if field:
            params["$orderby"] = f"{field},No"
            if since is not None:
                day = (since.astimezone(timezone.utc) - timedelta(days=1)).date().isoformat()
                params["$filter"] = f"{field} ge {day}"
        elif entity in POSTING_DATE_FIELDS:
            if since is None or not self.posted_full_read or until - since >= self.posted_full_read:
                # Whole, for what NAV computes on posted documents (paid, cancelled): the engine's watermark
                # then stays at the start of this read (read_clock), the next whole read posted_full_read later.
                self._whole_read[entity] = until
            else:
                # Posted since the last whole read (from the day before, for time zones); back-dated postings
                # older than that come with the next whole read.
                day = (since.astimezone(timezone.utc) - timedelta(days=1)).date().isoformat()
                params["$filter"] = f"{POSTING_DATE_FIELDS[entity]} ge {day}"
        part = self.line_parts.get(entity)
        if part:
            params["$expand"] = part
        relations: Mapping[str, list[dict[str, Any]]] | None = None
        # A whole read of documents with their lines asks for smaller pages, as in API mode: each row is several
        # times wider than a card's, and a page's text is held while its rows are taken.
        size = min(self.page_size, self.document_page_size) if part and "$filter" not in params else None
        for row in self._pages(f"{self.company_url()}/{service}", params, size,
                               ramp=since is None and size is None and bool(field), count_as=entity):
            record = self._page_record(entity, row, field, cap)
            if entity == "contacts":
                # Fetched once the first contact has come: a run in which no contact changed asks for nothing more.
                if relations is None:
                    relations = self._page_relations()
                record = self._with_relations(record, relations)
            yield record

    def _page_record(self, entity: str, row: Mapping[str, Any], field: str | None,
                     cap: datetime | None = None) -> Record:
        names = PAGE_FIELDS[entity]
        data: dict[str, Any] = {}
        lines: list[dict[str, Any]] = []
        stamp = row.get(field) if field else None
        part = self.line_parts.get(entity)
        for key, value in row.items():
            if key.startswith("@odata.") or key == field:
                continue
            if part and key == part:
                lines = [self._page_line(line) for line in value or []]
                continue
            data[names.get(key, key)] = _nav_value(value)
        number = str(data.get("number", ""))
        data["id"] = number
        if entity in ("salesOrders", "purchaseOrders") and "status" in data:
            data["status"] = DOCUMENT_STATUS.get(str(data["status"]), str(data["status"]))
            data.pop("documentType", None)
        if entity == "postedSalesInvoices":
            data["invoiceDate"] = data.get("postingDate")
            data["status"] = "Canceled" if row.get("Cancelled") else "Paid" if row.get("Closed") else "Open"
            data.pop("Closed", None)
            data.pop("Cancelled", None)
        if "customerNumber" in data:
            data["customerId"] = data["customerNumber"]
        if "vendorNumber" in data:
            data["vendorId"] = data["vendorNumber"]
        if part:
            data[API_ENTITIES[entity][1] or "lines"] = lines
            if entity == "salesOrders":
                data.setdefault("totalAmountExcludingTax", round(sum(float(x.get("amountExcludingTax") or 0)
                                                                     for x in lines), 2))
        modified: datetime | None = None
        if isinstance(stamp, str):
            modified = parse_time(stamp) if "T" in stamp else _day_end(stamp)
            if modified is not None and cap is not None and modified > cap:
                modified = cap
        data["lastModifiedDateTime"] = _isoformat(modified) if modified else None
        return Record(self.name, entity, number, modified, data)

    @staticmethod
    def _page_line(line: Mapping[str, Any]) -> dict[str, Any]:
        out = {LINE_FIELDS.get(k, k): _nav_value(v) for k, v in line.items() if not k.startswith("@odata.")}
        out.pop("Document_Type", None)
        if out.get("lineType", "Item") == "Item":
            out["itemId"] = out.get("lineObjectNumber")
        return out

    def get(self, entity: str, id: str) -> Record | None:
        service = self._service(entity)
        part = self.line_parts.get(entity)
        response = self._call("GET", f"{self.company_url()}/{service}{self._page_key(entity, id)}",
                              params={"$expand": part} if part else None)
        if response.status_code == 404 and _error(response)[0] in ("Internal_RecordNotFound", "BadRequest_NotFound"):
            return None
        if response.status_code != 200:
            raise self._read_failure(response, f"{self.company_url()}/{service}")
        record = self._page_record(entity, response.json(), self.modified_fields.get(entity), utcnow())
        if entity == "contacts":
            holders = [record.id, str(record.get("companyNumber") or "")]
            terms = " or ".join(f"Contact_No eq {_quote_key(h)}" for h in dict.fromkeys(filter(None, holders)))
            return self._with_relations(record, self._page_relations(terms))
        return record

    def _page_relations(self, filter_: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Contact No. -> its customer/vendor relations, from the Contact Business Relations page (5054)."""
        out: dict[str, list[dict[str, Any]]] = {}
        rows = self._pages(f"{self.company_url()}/{self.services['contactRelations']}",
                           {"$filter": filter_} if filter_ else None)
        for row in rows:
            kind = _nav_value(row.get("Link_to_Table"))
            if kind in ("Customer", "Vendor"):
                number = str(row.get("No"))
                out.setdefault(str(row.get("Contact_No")), []).append({"type": kind, "id": number, "number": number})
        return out

    @staticmethod
    def _with_relations(record: Record, relations: Mapping[str, list[dict[str, Any]]]) -> Record:
        """A contact's relations are its own and, for a person, those of its company contact (as BC's API shows)."""
        holders = [record.id]
        company_number = record.get("companyNumber")
        if company_number and company_number != record.id:
            holders.append(str(company_number))
        found = [r for holder in holders for r in relations.get(holder, [])]
        return Record(record.system, record.entity, record.id, record.modified,
                      {**record.data, "relations": found, **_business_relation(found)})

    def find(self, entity: str, field: str, value: Any) -> list[Record]:
        """The records whose ``field`` (API v2.0 name) equals ``value`` (compared as the server's collation
        does: case-insensitively)."""
        url = f"{self.company_url()}/{self._service(entity)}"
        column = {api: page for page, api in PAGE_FIELDS[entity].items()}.get(field, field)
        params = {"$filter": f"{column} eq {_quote_key(str(value))}"}
        stamp = self.modified_fields.get(entity)
        return [self._page_record(entity, row, stamp) for row in self._pages(url, params)]

    def record_ids(self, entity: str) -> Iterator[str]:
        """Every number (a record's id on pages), ``$select=No`` at the connector's page size."""
        for row in self._pages(f"{self.company_url()}/{self._service(entity)}", {"$select": "No"}):
            yield str(_nav_value(row.get("No")))

    def collection_url(self, entity: str) -> str:
        return f"{self.company_url()}/{self._service(entity)}"

    @staticmethod
    def home_currency() -> str | None:
        """Page web services publish no page of the company's currency by default (the LCY Code is on General
        Ledger Setup): a pair's option says it."""
        return None

    @staticmethod
    def fixed_fields(entity: str) -> str | None:
        """A table extension's field shows on its card page, published with a page extension."""
        return None

    # -- what ping asks ----------------------------------------------------------------------------------------
    def confirm_company(self) -> str:
        """The default Company service lists the companies; the configured name must match exactly."""
        response = self._call("GET", f"{self.endpoint.odata}/Company")
        if response.status_code == 404:
            raise RemoteError(self.name, 404, _error(response)[0], f"nothing at {self.endpoint.odata}: OData "
                              "services not enabled (ODataServicesEnabled) or wrong server instance in base_url")
        if response.status_code != 200:
            raise self._api_unavailable(response, "Company")
        names = [str(c.get("Name")) for c in response.json().get("value") or []]
        if self.company_name not in names:
            raise ConfigError(self._company_hint(names))
        return f"company {self.company_name!r}"

    def probe(self, entity: str) -> None:
        """One row of ``entity`` at most, to prove it is readable (maxpagesize=1; the nextLink is not followed)."""
        url = self.collection_url(entity)
        response = self._call("GET", url, headers={"Prefer": "odata.maxpagesize=1"})
        if response.status_code != 200:
            raise self._read_failure(response, url)

    # -- what writes need ------------------------------------------------------------------------------------------
    def row_by_id(self, entity: str, id: str) -> dict[str, Any] | None:
        """In page mode a record's id is its number."""
        return self.row_by_key(entity, "number", id)

    def _to_page(self, entity: str, body: Mapping[str, Any]) -> dict[str, Any]:
        names = {api: page for page, api in PAGE_FIELDS[entity].items()}
        out = {}
        for name, value in body.items():
            page_name = names.get(name, name)
            if page_name == "Blocked" and value == " ":
                value = "_x0020_"
            out[page_name] = value
        return out

    def row_by_key(self, entity: str, key: str, value: str) -> dict[str, Any] | None:
        service = self._service(entity)
        if key == "number":
            response = self._call("GET", f"{self.company_url()}/{service}{self._page_key(entity, value)}")
            if response.status_code == 404 and _error(response)[0] != "Internal_CompanyNotFound" \
                    and _error(response)[0] != "BadRequest_ResourceNotFound":
                return None
            if response.status_code != 200:
                raise self._read_failure(response, f"{self.company_url()}/{service}")
            return response.json()
        field = {api: page for page, api in PAGE_FIELDS[entity].items()}.get(key, key)
        response = self._call("GET", f"{self.company_url()}/{service}",
                              params={"$filter": f"{field} eq {_quote_key(value)}"})
        if response.status_code != 200:
            raise self._read_failure(response, f"{self.company_url()}/{service}")
        rows = response.json().get("value") or []
        return rows[0] if rows else None

    def send(self, entity: str, found: Mapping[str, Any] | None, body: dict[str, Any]) -> httpx.Response:
        service = self._service(entity)
        fields = self._to_page(entity, body)
        if found is None:
            return self._call("POST", f"{self.company_url()}/{service}", json=fields, idempotent=False)
        fields.pop("No", None)  # the key is in the URL; renaming a record is not an upsert
        return self._call("PATCH", f"{self.company_url()}/{service}{self._page_key(entity, str(found['No']))}",
                          json=fields, idempotent=True, headers={"If-Match": str(found.get("@odata.etag") or "*")})

    def written(self, entity: str, row: Mapping[str, Any], action: Literal["create", "update"]) -> WriteResult:
        """The record as the write's answer tells it, for WriteResult.stored."""
        record = self._page_record(entity, row, self.modified_fields.get(entity))
        # A page tells only the date; our write happened now.
        return WriteResult(action, record.id, utcnow(), stored=_as_stored(record))

    def company_contact(self, kind: str, related: str) -> str | None:
        """The number of the company contact whose business relation is this customer or vendor (by number): page
        5054 Contact Business Relations."""
        found = self._page_relations(f"Link_to_Table eq {_quote_key(kind)} and No eq {_quote_key(related)}")
        return next(iter(found), None)

    def customer_dimensions(self, number: str | None = None) -> Iterator[Record]:
        """Customers' default dimensions (page 540 Default Dimensions, table 18), one record per customer and
        dimension code: id "C00010/CUSTOMERGROUP"."""
        terms = "Table_ID eq 18" + (f" and No eq {_quote_key(number)}" if number else "")
        for row in self._pages(f"{self.company_url()}/{self.services['customerDimensions']}", {"$filter": terms}):
            customer, code = str(row.get("No") or ""), str(row.get("Dimension_Code") or "")
            yield Record(self.name, "customerDimensions", f"{customer}/{code}", None, {
                "id": f"{customer}/{code}", "customerNumber": customer, "customerId": customer,
                "dimensionCode": code, "dimensionValue": _nav_value(row.get("Dimension_Value_Code")),
                # a value that is a customer's number is that customer's id: pages key customers by number
                "valueCustomerId": _nav_value(row.get("Dimension_Value_Code"))})
