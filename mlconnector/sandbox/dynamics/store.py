"""The sandbox's in-memory BC database: companies, rows with SystemId/etag/SystemModifiedAt, number series,
document lines and totals. Both the API v2.0 and the ODataV4 page views read and write these same rows."""

from __future__ import annotations

import base64
import functools
import hashlib
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, ClassVar

from . import errors
from .schema import (BLANK_DATETIME, EMPTY_GUID, ENTITIES, POSTED_INVOICE_SERIES, POSTED_INVOICE_STATUSES,
                     TYPE_DEFAULTS, EntitySpec)

ChangeListener = Callable[[str, str, str, str, datetime], None]  # company id, entity set, row id, change, when


def format_datetime(value: datetime | None) -> str:
    """UTC, ISO 8601 with milliseconds and 'Z', as BC writes lastModifiedDateTime; blank is 0001-01-01."""
    if value is None:
        return BLANK_DATETIME
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(timezone.utc)
    text = value.isoformat(timespec="milliseconds")  # a read of many rows formats one per row: no strftime
    return (text[:-6] if text.endswith("+00:00") else text) + "Z"


@functools.lru_cache(maxsize=65_536)
def make_etag(row_id: str, version: int) -> str:
    """A weak etag shaped like BC's (W/"JzQ0O..." = base64 of "'44;<hash>1;00;'"), new for every version."""
    digest = base64.b64encode(hashlib.sha256(f"{row_id}:{version}".encode()).digest()[:32]).decode()[:44]
    inner = base64.b64encode(f"'44;{digest}1;00;'".encode()).decode()
    return f'W/"{inner}"'


def next_number(current: str, step: int) -> str:
    """Increments the trailing digits of a number-series value, keeping their width ("C00010" -> "C00020")."""
    digits = len(current) - len(current.rstrip("0123456789"))
    if digits == 0:
        return current + str(step)
    prefix, number = current[:-digits], int(current[-digits:]) + step
    return f"{prefix}{number:0{digits}d}"


def field_default(spec: EntitySpec, name: str) -> Any:
    """What the API view of a row without a value for ``name`` shows."""
    return spec.view_shape[0][name]


@dataclass
class StoredRow:
    values: dict[str, Any]
    modified: datetime | None     # SystemModifiedAt; None reads as 0001-01-01T00:00:00Z (never stamped)
    version: int = 1
    # Counts every assignment to any row (created, stamped, its values replaced): what an OrderIndex is checked
    # against, so that a kept order never outlives a write.
    writes: ClassVar[int] = 0

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        StoredRow.writes += 1

    @property
    def id(self) -> str:
        return self.values["id"]

    @property
    def etag(self) -> str:
        return make_etag(self.id, self.version)

    @property
    def stamp(self) -> tuple[int, datetime | None]:
        """Changes with every write: what a view or a sort key kept for the row is checked against."""
        return self.version, self.modified


class RowViews:
    """Views of stored rows (page rows, API rows) kept per row version and modification stamp, for
    views that depend on the row alone: a large table read in pages is converted once, not again for each page."""

    def __init__(self) -> None:
        self._kept: dict[Any, tuple[tuple[int, datetime | None], Any]] = {}

    def get(self, key: Any, row: StoredRow, build: Callable[[], Any]) -> Any:
        kept = self._kept.get(key)
        if kept is not None and kept[0] == row.stamp:
            return kept[1]
        view = build()
        self._kept[key] = (row.stamp, view)
        return view


class OrderIndex:
    """Rows of a table in one order, with their sort keys, kept until any row is written or the table changes size:
    an index, as the server's SQL keeps one, so that a table read page by page is sorted once, not for each page.
    A few orders (key: the table, the order and the read's own bounds) are kept, the least recently used dropped."""

    def __init__(self, most: int = 8) -> None:
        self._most = most
        self._kept: OrderedDict[Any, tuple[tuple[int, int], list[tuple[tuple, Any]]]] = OrderedDict()

    def get(self, key: Any, size: int, build: Callable[[], list[tuple[tuple, Any]]]) -> list[tuple[tuple, Any]]:
        stamp = (StoredRow.writes, size)
        kept = self._kept.get(key)
        if kept is not None and kept[0] == stamp:
            self._kept.move_to_end(key)
            return kept[1]
        ordered = build()
        self._kept[key] = (stamp, ordered)
        self._kept.move_to_end(key)
        while len(self._kept) > self._most:
            self._kept.popitem(last=False)
        return ordered


@dataclass(frozen=True)
class ContactRelation:
    """One Contact Business Relation row: contact -> (Link to Table, No.) under a business relation code."""

    contact_id: str
    code: str              # Business Relation Code, e.g. CUST / VEND
    link_to_table: str     # "Customer", "Vendor", "Bank Account", "Employee"
    related_id: str        # SystemId of the linked customer/vendor


@dataclass
class Company:
    id: str
    name: str
    display_name: str
    currency_code: str = "USD"
    created: datetime | None = None
    tables: dict[str, dict[str, StoredRow]] = field(default_factory=dict)
    series: dict[str, str] = field(default_factory=dict)
    # Contact Business Relation (table 5054): which customer/vendor a company contact stands for.
    relations: list["ContactRelation"] = field(default_factory=list)
    # Document id -> its lines (line id -> row), so reading a document's lines does not scan every line.
    lines_by_document: dict[str, dict[str, StoredRow]] = field(default_factory=dict)

    def table(self, entity: str) -> dict[str, StoredRow]:
        return self.tables.setdefault(entity, {})

    def to_api(self) -> dict[str, Any]:
        stamp = format_datetime(self.created)
        return {"id": self.id, "systemVersion": "24.0.16410.18040", "timestamp": 0, "name": self.name,
                "displayName": self.display_name, "businessProfileId": "", "systemCreatedAt": stamp,
                "systemCreatedBy": EMPTY_GUID, "systemModifiedAt": stamp, "systemModifiedBy": EMPTY_GUID}


class Database:
    """Companies and their tables. Every write stamps the row and tells the change listener (webhooks)."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        self.companies: dict[str, Company] = {}
        self.lock = threading.RLock()
        self.listeners: list[ChangeListener] = []
        # Table extensions (AL tableextension objects): entity -> {field: type}. Their fields are stored and shown
        # on the pages that a page extension adds them to; the standard API v2.0 pages cannot be extended, so the
        # API neither shows nor takes them.
        self.extensions: dict[str, dict[str, str]] = {}
        self._extended: dict[str, EntitySpec] = {}

    def extend_table(self, entity: str, fields: dict[str, str]) -> None:
        spec = ENTITIES[entity]
        for name, kind in fields.items():
            if name in spec.fields:
                raise ValueError(f"{spec.entity_name} already has a field {name}")
            if kind not in TYPE_DEFAULTS:
                raise ValueError(f"field type {kind!r}: one of {', '.join(TYPE_DEFAULTS)}")
        with self.lock:
            self.extensions[entity] = {**self.extensions.get(entity, {}), **fields}
            self._extended[entity] = replace(spec, fields={**spec.fields, **self.extensions[entity]})

    def table_spec(self, entity: str, extended: bool = True) -> EntitySpec:
        """The entity's table as the API v2.0 page shows it, or (``extended``) with its table extensions' fields."""
        return self._extended.get(entity, ENTITIES[entity]) if extended else ENTITIES[entity]

    # -- companies --------------------------------------------------------------------------------------------

    def create_company(self, name: str, *, company_id: str | None = None, display_name: str | None = None,
                       currency_code: str = "USD") -> Company:
        company = Company(company_id or str(uuid.uuid4()), name, display_name or name, currency_code, self.now())
        self.companies[company.id] = company
        return company

    def company(self, ref: str) -> Company:
        """By id, or by exact (case-sensitive) name, as BC resolves company names."""
        if ref in self.companies:
            return self.companies[ref]
        for company in self.companies.values():
            if company.name == ref:
                return company
        raise KeyError(ref)

    # -- rows -------------------------------------------------------------------------------------------------

    def _stamp(self) -> datetime:
        now = self.now()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def _notify(self, company: Company, entity: str, row_id: str, change: str, when: datetime) -> None:
        for listener in self.listeners:
            listener(company.id, entity, row_id, change, when)

    def find(self, company: Company, entity: str, ref: str) -> StoredRow:
        """A row by id (SystemId) or by number."""
        table = company.table(entity)
        key = ref.lower()
        if key in table:
            return table[key]
        for row in table.values():
            if row.values.get("number") == ref:
                return row
        raise errors.not_found(ENTITIES[entity].entity_name, ref)

    def to_api(self, entity: str, row: StoredRow, *, extended: bool = False) -> dict[str, Any]:
        spec = self.table_spec(entity, extended)
        template, names, defaults = spec.view_shape
        values = row.values
        if values.keys() <= names:  # the stored values over the defaults, in the entity's field order
            out = template.copy()
            out.update(values)
            out["@odata.etag"] = row.etag
        else:
            get = values.get
            out = {"@odata.etag": row.etag}
            out.update([(name, get(name, default)) for name, default in defaults])
        if "lastModifiedDateTime" in spec.fields:
            out["lastModifiedDateTime"] = format_datetime(row.modified)
        return out

    def create(self, company: Company, entity: str, values: dict[str, Any], *, notify: bool = True,
               trusted: bool = False, modified: datetime | None | str = "now", extended: bool = False,
               page: bool = False) -> StoredRow:
        """Inserts a row, and for documents its lines too (deep insert), announcing one 'created' change.
        ``extended``: a page (or a user) that shows the table extensions' fields may set them; ``page``: a card
        page's write, which may set the table fields only pages show."""
        spec = ENTITIES[entity]
        lines = values.get(spec.lines or "", []) if spec.lines else []
        if not isinstance(lines, list):
            raise errors.bad_body()
        with self.lock:
            row = self.insert(company, entity, values, notify=False, trusted=trusted, modified=modified,
                              extended=extended, page=page)
            for line in lines:
                self.insert_line(company, entity, row, line, notify=False)
            if lines:
                row.version = 1
                row.modified = self._stamp() if modified == "now" else modified  # type: ignore[assignment]
            if notify:
                self._notify(company, entity, row.id, "created", row.modified or self._stamp())
            return row

    def insert(self, company: Company, entity: str, values: dict[str, Any], *, notify: bool = True,
               trusted: bool = False, modified: datetime | None | str = "now", extended: bool = False,
               page: bool = False) -> StoredRow:
        spec = self.table_spec(entity, extended)
        with self.lock:
            clean = self._validated(spec, values, trusted=trusted, page=page)
            clean["id"] = str(values.get("id") or uuid.uuid4()).lower()
            if spec.number_series is not None:
                self._assign_number(company, spec, clean)
            self._fill_defaults(company, spec, clean)
            table = company.table(entity)
            if clean["id"] in table:
                raise errors.ODataError(409, "Internal_EntityWithSameKeyExists",
                                        f"The {spec.entity_name} already exists. Identification fields and "
                                        f"values: Id='{clean['id']}'")
            when = self._stamp() if modified == "now" else modified
            row = StoredRow(clean, when)  # type: ignore[arg-type]
            table[row.id] = row
            if notify:
                self._notify(company, entity, row.id, "created", when or self._stamp())
            return row

    def update(self, company: Company, entity: str, row: StoredRow, changes: dict[str, Any], *,
               notify: bool = True, trusted: bool = False, extended: bool = False, page: bool = False) -> StoredRow:
        spec = self.table_spec(entity, extended)
        with self.lock:
            clean = self._validated(spec, changes, trusted=trusted, page=page)
            if "number" in clean and clean["number"] != row.values.get("number"):
                self._ensure_unique_number(company, spec, clean["number"])
            row.values.update(clean)
            self.touch(company, entity, row, notify=notify)
            return row

    def touch(self, company: Company, entity: str, row: StoredRow, *, notify: bool = True) -> None:
        row.version += 1
        row.modified = self._stamp()
        if notify:
            self._notify(company, entity, row.id, "updated", row.modified)

    def delete(self, company: Company, entity: str, row: StoredRow, *, notify: bool = True) -> None:
        spec = ENTITIES[entity]
        with self.lock:
            company.table(entity).pop(row.id, None)
            if spec.lines:
                lines = company.table(spec.lines)
                for line_id in company.lines_by_document.pop(row.id, {}):
                    lines.pop(line_id, None)
            if notify:
                self._notify(company, entity, row.id, "deleted", self._stamp())

    # -- validation and defaults ------------------------------------------------------------------------------

    def _validated(self, spec: EntitySpec, values: dict[str, Any], *, trusted: bool = False,
                   page: bool = False) -> dict[str, Any]:
        """Checks names, read-only controls and types; ``trusted`` (sandbox helpers) may set read-only fields,
        ``page`` (a card page's write) the table fields only pages show."""
        clean: dict[str, Any] = {}
        for name, value in values.items():
            if name.startswith("@odata.") or name == spec.lines or (name == "lastModifiedDateTime" and trusted):
                continue
            if name == "id":
                if value and not trusted:
                    raise errors.ODataError(400, "BadRequest_InvalidOperation", "Control 'id' is read-only")
                continue
            if name not in spec.fields and (page or trusted) and name in spec.page_only:
                clean[name] = "" if value is None else str(value)   # a page's control, not the API's
                continue
            if name not in spec.fields:
                raise errors.ODataError(400, "BadRequest",
                                        f"The property '{name}' does not exist on type "
                                        f"'Microsoft.NAV.{spec.entity_name}'. Make sure to only use property "
                                        "names that are defined by the type or mark the type as open type.")
            if name in spec.read_only and not trusted:
                raise errors.ODataError(400, "BadRequest_InvalidOperation",
                                        f"Control '{name}' is read-only")
            clean[name] = _convert(spec, name, value)
        return clean

    def _assign_number(self, company: Company, spec: EntitySpec, values: dict[str, Any]) -> None:
        if values.get("number"):
            self._ensure_unique_number(company, spec, values["number"])
            return
        candidate = company.series.get(spec.set_name, spec.number_series or "")
        taken = {row.values.get("number") for row in company.table(spec.set_name).values()}
        while candidate in taken:
            candidate = next_number(candidate, spec.number_step)
        values["number"] = candidate
        company.series[spec.set_name] = next_number(candidate, spec.number_step)

    def _ensure_unique_number(self, company: Company, spec: EntitySpec, number: str) -> None:
        if any(row.values.get("number") == number for row in company.table(spec.set_name).values()):
            raise errors.ODataError(409, "Internal_EntityWithSameKeyExists",
                                    f"The {spec.entity_name} already exists. Identification fields and values: "
                                    f"No.='{number}'")

    def _fill_defaults(self, company: Company, spec: EntitySpec, values: dict[str, Any]) -> None:
        if "currencyCode" in spec.fields:
            values.setdefault("currencyCode", company.currency_code)
        today = self.now().date().isoformat()
        for name in ("orderDate", "postingDate", "invoiceDate", "dueDate"):
            if name in spec.fields:
                values.setdefault(name, today)
        if spec.set_name in ("salesOrders", "salesInvoices"):
            self._resolve_party(company, values, "customers", "customer")
        elif spec.set_name == "purchaseOrders":
            self._resolve_party(company, values, "vendors", "vendor")

    def _resolve_party(self, company: Company, values: dict[str, Any], table: str, prefix: str) -> None:
        """Documents name their customer/vendor by id or number; BC fills the other one and the addresses."""
        ref = values.get(f"{prefix}Id") or values.get(f"{prefix}Number")
        if not ref or ref == EMPTY_GUID:
            raise errors.dialog(f"A {prefix}Number or a {prefix}ID must be provided.")
        try:
            party = self.find(company, table, ref)
        except errors.ODataError:
            label = "Id" if values.get(f"{prefix}Id") else "No."
            raise errors.ODataError(400, "Internal_RecordNotFound",
                                    f"The {prefix.capitalize()} does not exist. Identification fields and values: "
                                    f"{label}='{ref}'") from None
        p = party.values
        values.update({f"{prefix}Id": party.id, f"{prefix}Number": p["number"],
                       f"{prefix}Name": p.get("displayName", "")})
        roles = ("sellTo", "billTo", "shipTo") if prefix == "customer" else ("buyFrom", "payTo", "shipTo")
        for role in roles:
            for part, source in (("AddressLine1", "addressLine1"), ("AddressLine2", "addressLine2"),
                                 ("City", "city"), ("Country", "country"), ("State", "state"),
                                 ("PostCode", "postalCode")):
                values.setdefault(f"{role}{part}", p.get(source, ""))
        if prefix == "customer":
            values.setdefault("billToCustomerId", party.id)
            values.setdefault("billToCustomerNumber", p["number"])
            values.setdefault("billToName", p.get("displayName", ""))
            values.setdefault("shipToName", p.get("displayName", ""))
            values.setdefault("email", p.get("email", ""))
            values.setdefault("phoneNumber", p.get("phoneNumber", ""))
        else:
            values.setdefault("payToVendorId", party.id)
            values.setdefault("payToVendorNumber", p["number"])
            values.setdefault("payToName", p.get("displayName", ""))

    # -- document lines ---------------------------------------------------------------------------------------

    def insert_line(self, company: Company, header_entity: str, header: StoredRow, values: dict[str, Any], *,
                    notify: bool = True) -> StoredRow:
        spec = ENTITIES[header_entity]
        line_spec = ENTITIES[spec.lines or ""]
        with self.lock:
            clean = self._validated(line_spec, {k: v for k, v in values.items() if k != "documentId"})
            clean["id"] = str(uuid.uuid4())
            clean["documentId"] = header.id
            lines = list(company.lines_by_document.get(header.id, {}).values())
            clean.setdefault("sequence", max((line.values.get("sequence", 0) for line in lines), default=0) + 10000)
            self._resolve_item(company, clean, purchase=header_entity == "purchaseOrders")
            _line_amounts(clean)
            row = StoredRow(clean, self._stamp())
            company.table(line_spec.set_name)[row.id] = row
            company.lines_by_document.setdefault(header.id, {})[row.id] = row
            self.refresh_totals(company, header_entity, header, notify=notify)
            return row

    def update_line(self, company: Company, line_entity: str, line: StoredRow, changes: dict[str, Any], *,
                    notify: bool = True) -> StoredRow:
        line_spec = ENTITIES[line_entity]
        with self.lock:
            clean = self._validated(line_spec, changes)
            line.values.update(clean)
            if {"itemId", "lineObjectNumber"} & clean.keys():
                self._resolve_item(company, line.values, purchase=line_entity == "purchaseOrderLines")
            _line_amounts(line.values)
            line.version += 1
            line.modified = self._stamp()
            header = company.table(line_spec.header or "")[line.values["documentId"]]
            self.refresh_totals(company, line_spec.header or "", header, notify=notify)
            return line

    def delete_line(self, company: Company, line_entity: str, line: StoredRow, *, notify: bool = True) -> None:
        line_spec = ENTITIES[line_entity]
        with self.lock:
            company.table(line_entity).pop(line.id, None)
            company.lines_by_document.get(line.values["documentId"], {}).pop(line.id, None)
            header = company.table(line_spec.header or "").get(line.values["documentId"])
            if header is not None:
                self.refresh_totals(company, line_spec.header or "", header, notify=notify)

    def contact_information(self, company: Company, contact: StoredRow) -> list[dict[str, Any]]:
        """The API's contactInformation rows of a contact: its own business relations and, for a person, those
        of the company contact it belongs to (sandbox choice: BC's page is a temporary table; see package doc)."""
        holders = [contact]
        company_number = contact.values.get("companyNumber")
        if contact.values.get("type") == "Person" and company_number:
            holders += [row for row in company.table("contacts").values()
                        if row.values.get("number") == company_number and row.id != contact.id]
        out = []
        for holder in holders:
            for relation in company.relations:
                if relation.contact_id != holder.id:
                    continue
                out.append({"contactId": contact.id, "contactNumber": contact.values.get("number", ""),
                            "contactName": contact.values.get("displayName", ""),
                            "contactType": contact.values.get("type", "Company"),
                            "relatedId": relation.related_id, "relatedType": relation.link_to_table})
        return out

    def lines_of(self, company: Company, header_entity: str, header_id: str) -> list[StoredRow]:
        rows = list(company.lines_by_document.get(header_id, {}).values())
        return sorted(rows, key=lambda line: line.values.get("sequence", 0))

    def _resolve_item(self, company: Company, values: dict[str, Any], *, purchase: bool) -> None:
        if values.get("lineType", "Item") != "Item":
            return
        ref = values.get("itemId") if values.get("itemId") not in (None, EMPTY_GUID) else values.get("lineObjectNumber")
        if not ref:
            return
        try:
            item = self.find(company, "items", ref)
        except errors.ODataError:
            raise errors.ODataError(400, "Internal_RecordNotFound",
                                    f"The Item does not exist. Identification fields and values: No.='{ref}'") from None
        values.update({"itemId": item.id, "lineObjectNumber": item.values["number"]})
        values.setdefault("description", item.values.get("displayName", ""))
        values.setdefault("unitOfMeasureCode", item.values.get("baseUnitOfMeasureCode", "PCS"))
        price_field = "directUnitCost" if purchase else "unitPrice"
        values.setdefault(price_field, item.values.get("unitCost" if purchase else "unitPrice", 0))

    def refresh_totals(self, company: Company, header_entity: str, header: StoredRow, *, notify: bool) -> None:
        """Header totals follow the lines, and a line change counts as a change of the header (BC notifies it)."""
        lines = self.lines_of(company, header_entity, header.id)
        _allocate_invoice_discount(lines, float(header.values.get("discountAmount") or 0))
        excl = round(sum(line.values.get("netAmount", line.values.get("amountExcludingTax", 0)) for line in lines), 2)
        tax = round(sum(line.values.get("netTaxAmount", line.values.get("totalTaxAmount", 0)) for line in lines), 2)
        header.values.update({"totalAmountExcludingTax": excl, "totalTaxAmount": tax,
                              "totalAmountIncludingTax": round(excl + tax, 2)})
        if header_entity == "salesInvoices" and header.values.get("status") in ("Open",):
            header.values["remainingAmount"] = round(excl + tax, 2)
        self.touch(company, header_entity, header, notify=notify)

    # -- invoices ---------------------------------------------------------------------------------------------

    def post_invoice(self, company: Company, invoice: StoredRow, *, notify: bool = True) -> None:
        """Posting gives the invoice a posted number and status Open (anything but Draft/In Review is posted)."""
        with self.lock:
            if invoice.values.get("status", "Draft") in POSTED_INVOICE_STATUSES:
                raise errors.dialog("The invoice has already been posted.")
            number = company.series.get("postedSalesInvoices", POSTED_INVOICE_SERIES)
            company.series["postedSalesInvoices"] = next_number(number, 1)
            total = invoice.values.get("totalAmountIncludingTax", 0)
            invoice.values.update({"number": number, "status": "Open", "remainingAmount": total})
            self.touch(company, "salesInvoices", invoice, notify=notify)


def _convert(spec: EntitySpec, name: str, value: Any) -> Any:
    kind = spec.fields[name]
    if value is None:
        return TYPE_DEFAULTS[kind]
    try:
        if kind == "decimal":
            return float(value) if not isinstance(value, bool) else _bad()
        if kind == "integer":
            return int(value)
        if kind == "boolean":
            return value if isinstance(value, bool) else _bad()
        if kind == "guid":
            return str(uuid.UUID(str(value)))
        if kind == "date":
            return datetime.strptime(str(value), "%Y-%m-%d").date().isoformat()
    except (ValueError, TypeError):
        if kind == "guid":
            raise errors.ODataError(400, "Application_InvalidGUID",
                                    "Invalid format of GUID string. The correct format of the GUID string is: "
                                    "CDEF7890-ABCD-0123-1234-567890ABCDEF where 0-9, A-F symbolizes hexadecimal "
                                    "digits.") from None
        raise errors.bad_body(f"Cannot convert the literal '{value}' to the expected type "
                              f"'{kind}' of property '{name}'.") from None
    return value if isinstance(value, str) else str(value)


def _bad() -> Any:
    raise ValueError


def _line_amounts(values: dict[str, Any]) -> None:
    price = values.get("unitPrice", values.get("directUnitCost", 0)) or 0
    quantity = values.get("quantity", 0) or 0
    gross = quantity * price
    discount = values.get("discountAmount") or gross * (values.get("discountPercent", 0) or 0) / 100
    excl = round(gross - discount, 2)
    tax = round(excl * (values.get("taxPercent", 0) or 0) / 100, 2)
    values.update({"discountAmount": round(discount, 2), "amountExcludingTax": excl, "totalTaxAmount": tax,
                   "amountIncludingTax": round(excl + tax, 2), "netAmount": excl, "netTaxAmount": tax,
                   "netAmountIncludingTax": round(excl + tax, 2)})


def _allocate_invoice_discount(lines: list[StoredRow], discount: float) -> None:
    """The document's invoice discount spread over its lines by their amounts (the last line takes the rounding),
    as BC's Invoice Discount Allocation; each line's net amount and the tax on it follow."""
    base = sum(float(line.values.get("amountExcludingTax") or 0) for line in lines)
    left = round(discount, 2)
    for index, line in enumerate(lines):
        amount = float(line.values.get("amountExcludingTax") or 0)
        share = left if index == len(lines) - 1 else (round(discount * amount / base, 2) if base else 0.0)
        left = round(left - share, 2)
        net = round(amount - share, 2)
        tax = round(net * float(line.values.get("taxPercent") or 0) / 100, 2)
        # a new dict, not an item set in place: a row's values are replaced whole (cached views notice)
        line.values = {**line.values, "invoiceDiscountAllocation": share, "netAmount": net, "netTaxAmount": tax,
                       "netAmountIncludingTax": round(net + tax, 2)}


def expiry_after(now: datetime, days: float) -> datetime:
    return (now + timedelta(days=days)).replace(microsecond=0)
