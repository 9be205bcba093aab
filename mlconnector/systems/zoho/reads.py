"""Reads from Zoho CRM: changes through COQL (keyset pages by Modified_Time, then id; the fields named, as COQL
has no ``*``), a record by id with its subforms, many by ids in one call."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from mlconnector.clock import parse_iso
from mlconnector.config import SystemConfig
from mlconnector.errors import ConfigError
from mlconnector.systems.base import Record
from mlconnector.systems.zoho.client import MAX_UPSERT, ZohoApi, _began

COQL_MAX_LIMIT = 2000      # rows per COQL call
COQL_MAX_SELECT = 50       # columns per COQL select

# Fields a COQL read selects when [systems.NAME.fields] names none for the module (COQL has no `*`, and
# the sandbox serves no /settings/fields); line items never come through COQL.
DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    "Accounts": ("Account_Name", "Account_Number", "Account_Type", "Industry", "Phone", "Fax", "Website",
                 "Parent_Account", "Owner", "Description", "Billing_Street", "Billing_City", "Billing_State",
                 "Billing_Code", "Billing_Country", "Shipping_Street", "Shipping_City", "Shipping_State",
                 "Shipping_Code", "Shipping_Country", "Created_Time", "Modified_Time"),
    "Contacts": ("First_Name", "Last_Name", "Full_Name", "Email", "Phone", "Mobile", "Title", "Department",
                 "Account_Name", "Vendor_Name", "Mailing_Street", "Mailing_City", "Mailing_State", "Mailing_Zip",
                 "Mailing_Country", "Owner", "Created_Time", "Modified_Time"),
    "Products": ("Product_Name", "Product_Code", "Product_Active", "Product_Category", "Unit_Price",
                 "Qty_in_Stock", "Taxable", "Usage_Unit", "Vendor_Name", "Description", "Owner", "Created_Time",
                 "Modified_Time"),
    "Vendors": ("Vendor_Name", "Email", "Phone", "Website", "Category", "GL_Account", "Street", "City", "State",
                "Zip_Code", "Country", "Owner", "Created_Time", "Modified_Time"),
    "Deals": ("Deal_Name", "Stage", "Amount", "Closing_Date", "Account_Name", "Contact_Name", "Pipeline", "Owner",
              "Created_Time", "Modified_Time"),
}
_ORDER_FIELDS = ("Subject", "Account_Name", "Contact_Name", "Deal_Name", "Status", "Due_Date", "Sub_Total",
                 "Discount", "Tax", "Adjustment", "Grand_Total", "Owner", "Created_Time", "Modified_Time")
DEFAULT_FIELDS["Quotes"] = _ORDER_FIELDS + ("Quote_Stage", "Valid_Till")
DEFAULT_FIELDS["Sales_Orders"] = _ORDER_FIELDS + ("SO_Number", "Quote_Name")
DEFAULT_FIELDS["Invoices"] = _ORDER_FIELDS + ("Invoice_Number", "Invoice_Date", "Sales_Order")
# Modules whose line items (subforms) come only from a fetch by id: changes() fetches each one in full.
LINE_ITEM_MODULES = ("Quotes", "Sales_Orders", "Invoices", "Purchase_Orders")
COQL_IN_MAX = 50  # values in one COQL "in (...)"
# Key lookups: two "in" lists joined by "or" (COQL takes up to 25 criteria), so one query covers a write batch.
COQL_KEYS_PER_QUERY = 2 * COQL_IN_MAX


def _zoho_time(moment: datetime) -> str:
    """A COQL datetime literal: whole seconds, with offset. Rounded up so ``>=``/``<`` bounds stay exact."""
    moment = moment.astimezone(timezone.utc)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_zoho_time(value: Any) -> datetime | None:
    """A Zoho stamp (``2026-01-31T10:00:00+05:30``, the org's zone) with its offset kept; one without is none."""
    moment = parse_iso(value)
    return moment if moment is not None and moment.tzinfo else None


def _coql_credits(limit: int) -> int:
    return 1 if limit <= 200 else 2 if limit <= 1000 else 3


class Reads:
    """COQL and GET reads of one org's modules; Zoho's clock as each entity's read began."""

    def __init__(self, api: ZohoApi, system: SystemConfig, page_size: int) -> None:
        self.name = system.name
        self.system = system
        self.page_size = page_size
        self._call, self._fail = api.call, api.fail
        self._read_clock: dict[str, datetime | None] = {}
        self._also_read: dict[str, list[str]] = {}

    def fields(self, entity: str) -> list[str]:
        """The fields a COQL read selects: [systems.NAME.fields] for the module, else the built-in list."""
        table = self.system.setting("fields", {}, type_=Mapping)
        chosen = table.get(entity)
        names = list(chosen) if chosen else list(DEFAULT_FIELDS.get(entity, ()))
        names = [n for n in dict.fromkeys(names) if n != "id"]
        if "Modified_Time" not in names:
            names.append("Modified_Time")
        if len(names) > COQL_MAX_SELECT:
            raise ConfigError(f"systems.{self.name}.fields.{entity} names {len(names)} fields; COQL selects at "
                              f"most {COQL_MAX_SELECT}")
        extra = [n for n in self._also_read.get(entity, ()) if n not in names]
        return names + extra[:COQL_MAX_SELECT - len(names)]

    def also_read(self, entity: str, fields: list[str]) -> None:
        self._also_read[entity] = list(dict.fromkeys([*self._also_read.get(entity, ()), *fields]))

    def _full_record_modules(self) -> set[str]:
        return set(self.system.setting("full_record_modules", list(LINE_ITEM_MODULES), type_=list))

    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        """Records modified in [since, until), ascending by (Modified_Time, id), via COQL.

        Pages with a keyset cursor rather than OFFSET: a record edited during the read leaves the window
        (its new Modified_Time is past ``until``) and would shift every later offset, skipping a record;
        the cursor also goes past COQL's 100,000-row offset reach.
        """
        columns = ", ".join(self.fields(entity))
        full = entity in self._full_record_modules()
        cursor: tuple[str, str] | None = None
        self._read_clock.pop(entity, None)
        while True:
            where = self._window(since, until, cursor)
            query = (f"select {columns} from {entity} where {where} "
                     f"order by Modified_Time asc, id asc limit {self.page_size}")
            response = self._call("POST", "/crm/v8/coql", credits=_coql_credits(self.page_size),
                                  idempotent=True, json={"select_query": query})
            if cursor is None:
                # Zoho's clock when the read began: its Date, less the call's duration (the Date is taken as
                # it answers, perhaps after rows written during the query).
                self._read_clock[entity] = _began(response)
            if response.status_code == 204:
                return
            if response.status_code != 200:
                raise self._fail(response, f"COQL on {entity}")
            body = response.json()
            rows = body.get("data") or []
            for row in rows:
                record = self.get(entity, str(row["id"])) if full else self._record(entity, row)
                if record is not None:
                    yield record
            if not rows or not (body.get("info") or {}).get("more_records"):
                return
            last = rows[-1]
            cursor = (str(last["Modified_Time"]), str(last["id"]))

    def read_clock(self, entity: str) -> datetime | None:
        """Zoho's own clock (the Date of its answer) when the last ``changes`` read of ``entity`` began; None if
        it did not say. Every record stamped before then that the read did not return was not there yet."""
        return self._read_clock.get(entity)

    @staticmethod
    def _window(since: datetime | None, until: datetime | None, cursor: tuple[str, str] | None) -> str:
        """The WHERE clause, parenthesised pairwise as COQL requires."""
        if cursor:
            stamp, last_id = cursor
            lower = (f"((Modified_Time > {_quote(stamp)}) or "
                     f"((Modified_Time = {_quote(stamp)}) and (id > {_quote(last_id)})))")
        elif since:
            lower = f"(Modified_Time >= {_quote(_zoho_time(since))})"
        else:
            lower = "(Modified_Time is not null)"
        if until is None:
            return lower
        return f"({lower} and (Modified_Time < {_quote(_zoho_time(until))}))"

    def _record(self, entity: str, data: Mapping[str, Any]) -> Record:
        return Record(system=self.name, entity=entity, id=str(data["id"]),
                      modified=parse_zoho_time(data.get("Modified_Time")), data=dict(data))

    def get(self, entity: str, id: str) -> Record | None:
        """The full record, with subforms (line items come only this way); None when it is gone."""
        response = self._call("GET", f"/crm/v8/{entity}/{id}")
        if response.status_code == 204:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"GET {entity}/{id}")
        data = (response.json().get("data") or [None])[0]
        return self._record(entity, data) if data else None

    def get_many(self, entity: str, ids: list[str]) -> dict[str, Record]:
        """Several records in one call (GET /{module}?ids=, up to 100), for notifications naming many ids.
        Modules with line items are fetched one by one: only a fetch by id returns their subforms."""
        if entity in LINE_ITEM_MODULES:
            return {r.id: r for r in (self.get(entity, i) for i in ids) if r is not None}
        found: dict[str, Record] = {}
        for start in range(0, len(ids), MAX_UPSERT):
            chunk = ids[start:start + MAX_UPSERT]
            response = self._call("GET", f"/crm/v8/{entity}", params={
                "ids": ",".join(chunk), "fields": ",".join(self.fields(entity))})
            if response.status_code == 204:
                continue
            if response.status_code != 200:
                raise self._fail(response, f"GET {entity}?ids=")
            for data in response.json().get("data") or []:
                record = self._record(entity, data)
                found[record.id] = record
        return found
