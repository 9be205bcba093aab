"""The in-memory record store and Zoho's write rules: validation, lookups, line items, duplicates, upsert."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from .errors import RecordError
from .fields import NUMERIC, TEXTUAL
from .modules import LINE_ITEM_ALIASES, READ_ONLY_FIELDS, ModuleSpec
from .schema import OrgSchema

# Zoho record ids are 19-digit numbers sent as strings; the sandbox keeps Zoho's org-prefix shape.
_ID_BASE = 5725767 * 10**12


_PLAIN = frozenset({str, int, float, bool, type(None)})  # values stored as given (text within the length)


@dataclass(frozen=True)
class WriteOutcome:
    """What one record write did, for the ``data[]`` item and for notifications."""

    record_id: str
    action: str  # "insert" | "update"
    changed: tuple[str, ...] = ()
    duplicate_field: str | None = None


@dataclass
class User:
    id: str
    name: str
    email: str

    def minified(self) -> dict[str, str]:
        return {"name": self.name, "id": self.id}


def _same(a: Any, b: Any) -> bool:
    """Duplicate checks ignore case and surrounding spaces, as Zoho's do for text and email fields."""
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    return a == b


def _compared(value: Any) -> Any:
    """What ``_same`` compares: text without case or surrounding spaces, anything else as it is."""
    return value.strip().lower() if isinstance(value, str) else value


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def _numeric(value: Any) -> bool:
    """A number, or text that reads as one (Zoho takes "12.5" for a currency field)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _number(value: Any, default: float = 0.0) -> float:
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


@dataclass
class RecordStore:
    """Records per module, written as the org's modules and fields (its ``schema``) allow."""

    now: Callable[[], datetime]
    tz: tzinfo
    user: User
    schema: OrgSchema = field(default_factory=OrgSchema)
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(524001))
    # (module, field) -> compared value -> ids, built on first look-up; keeps duplicate checks and upserts
    # from scanning the module (a 100,000-record org would otherwise take minutes per batch).
    _index: dict[tuple[str, str], dict[Any, dict[str, None]]] = field(default_factory=dict)
    _stamp: tuple[Any, str] = (None, "")   # (second, zone) -> its text
    # module -> deleted records as the recycle bin lists them (GET /{module}/deleted), oldest first
    deleted: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # module -> tag name -> tag id (a tag added by name that does not exist yet is created)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.add_modules()

    def add_modules(self) -> None:
        """Room for the records of modules the schema gained (custom modules)."""
        for name in self.schema.modules:
            self.records.setdefault(name, {})

    # -- ids and time -----------------------------------------------------------------------------------
    def new_id(self) -> str:
        return str(_ID_BASE + next(self._ids))

    def timestamp(self) -> str:
        """Zoho's datetime text: the org's offset, second precision (formatted once a second: a batch of 100
        writes stamps each record)."""
        now = self.now()
        key = (int(now.timestamp()), self.tz)
        if self._stamp[0] != key:
            self._stamp = (key, now.astimezone(self.tz).replace(microsecond=0).isoformat())
        return self._stamp[1]

    # -- reads ------------------------------------------------------------------------------------------
    def get(self, module: str, record_id: str) -> dict[str, Any] | None:
        return self.records[module].get(str(record_id))

    def all(self, module: str) -> list[dict[str, Any]]:
        return list(self.records[module].values())

    def view(self, spec: ModuleSpec, record: dict[str, Any], *, subforms: bool) -> dict[str, Any]:
        """A record as the API returns it: a copy, without line items in list reads."""
        out = {k: v for k, v in record.items() if subforms or k != spec.line_items}
        return _deep_copy(out)

    def find_same(self, module: str, name: str, value: Any, exclude: str | None = None) -> dict[str, Any] | None:
        """The first record (other than ``exclude``) whose ``name`` equals ``value`` as duplicate checks compare."""
        try:
            key = _compared(value)
            hash(key)
        except TypeError:
            return next((r for r in self.records[module].values()
                         if r["id"] != exclude and _same(r.get(name), value)), None)
        index = self._index.get((module, name))
        if index is None:
            index = self._index[(module, name)] = {}
            for record in self.records[module].values():
                self._add_to(index, record.get(name), record["id"])
        for record_id in index.get(key, ()):
            if record_id != exclude:
                return self.records[module][record_id]
        return None

    @staticmethod
    def _add_to(index: dict[Any, dict[str, None]], value: Any, record_id: str) -> None:
        try:
            index.setdefault(_compared(value), {})[record_id] = None
        except TypeError:
            pass  # unhashable (a lookup): never a duplicate-check key

    def _reindex(self, module: str, record: dict[str, Any], old: dict[str, Any] | None) -> None:
        for (indexed_module, name), index in self._index.items():
            if indexed_module != module:
                continue
            if old is not None:
                try:
                    index.get(_compared(old.get(name)), {}).pop(record["id"], None)
                except TypeError:
                    pass
            if record.get("id") in self.records[module]:
                self._add_to(index, record.get(name), record["id"])

    def duplicate_check_fields(self, spec: ModuleSpec) -> list[str]:
        return list(spec.duplicate_check) + sorted(self.schema.unique(spec.api_name) - set(spec.duplicate_check))

    # -- writes -----------------------------------------------------------------------------------------
    def insert(self, spec: ModuleSpec, data: dict[str, Any], path: str) -> WriteOutcome:
        values = self._prepare(spec, data, path, existing=None)
        self._check_unique(spec, values, path, exclude=None)
        stamp = self.timestamp()
        record_id = self.new_id()
        record: dict[str, Any] = {
            "Owner": {**self.user.minified(), "email": self.user.email},
            **values,
            "id": record_id,
            "Created_Time": stamp, "Modified_Time": stamp,
            "Created_By": self.user.minified(), "Modified_By": self.user.minified(),
        }
        self._currency(spec, record, values)
        self._derive(spec, record)
        self.records[spec.api_name][record_id] = record
        self._reindex(spec.api_name, record, None)
        return WriteOutcome(record_id, "insert", tuple(sorted(values)))

    def update(self, spec: ModuleSpec, record_id: str, data: dict[str, Any], path: str,
               duplicate_field: str | None = None) -> WriteOutcome:
        existing = self.get(spec.api_name, record_id)
        if existing is None:
            raise RecordError.invalid("id", f"{path}.id", "the id given seems to be invalid")
        values = self._prepare(spec, data, path, existing=existing)
        self._check_unique(spec, values, path, exclude=record_id)
        changed = tuple(sorted(k for k, v in values.items() if existing.get(k) != v))
        before = dict(existing)
        existing.update(values)
        if "Currency" in changed:
            self._currency(spec, existing, values)
        existing["Modified_Time"] = self.timestamp()
        existing["Modified_By"] = self.user.minified()
        self._derive(spec, existing)
        self._reindex(spec.api_name, existing, before)
        return WriteOutcome(record_id, "update", changed, duplicate_field)

    def upsert(self, spec: ModuleSpec, data: dict[str, Any], path: str, check_fields: list[str]) -> WriteOutcome:
        if not isinstance(data, dict):
            return self.insert(spec, data, path)  # fails in validation with Zoho's INVALID_DATA
        for name in check_fields:
            value = data.get(name)
            if _blank(value):
                continue
            match = self.find_same(spec.api_name, name, value)
            if match is not None:
                return self.update(spec, match["id"], data, path, duplicate_field=name)
        return self.insert(spec, data, path)

    def delete(self, spec: ModuleSpec, record_id: str) -> dict[str, Any] | None:
        """Move the record to the recycle bin (https://www.zoho.com/crm/developer/docs/api/v8/delete-records.html):
        gone from reads, listed by GET /{module}/deleted."""
        removed = self.records[spec.api_name].pop(str(record_id), None)
        if removed is not None:
            self._reindex(spec.api_name, removed, removed)
            self.deleted.setdefault(spec.api_name, []).append({
                "deleted_by": self.user.minified(), "id": str(record_id),
                "display_name": removed.get(spec.name_field), "type": "recycle",
                "created_by": removed.get("Created_By"), "deleted_time": self.timestamp()})
        return removed

    def add_tags(self, spec: ModuleSpec, record_id: str, names: list[str], over_write: bool) -> list[str] | None:
        """Tag the record (https://www.zoho.com/crm/developer/docs/api/v8/add-tags.html); the names it then has,
        or None when there is no such record."""
        record = self.records[spec.api_name].get(str(record_id))
        if record is None:
            return None
        known = self.tags.setdefault(spec.api_name, {})
        current = [] if over_write else list(record.get("Tag") or [])
        have = {t["name"] for t in current}
        for name in names:
            if name not in known:
                known[name] = self.new_id()
            if name not in have:
                current.append({"name": name, "id": known[name], "color_code": None})
                have.add(name)
        record["Tag"] = current
        return [t["name"] for t in current]

    def remove_tags(self, spec: ModuleSpec, record_id: str, names: list[str]) -> list[str] | None:
        """Take these tags off the record (https://www.zoho.com/crm/developer/docs/api/v8/remove-tags.html); the
        names it then has, or None when there is no such record. A tag it does not carry is no error."""
        record = self.records[spec.api_name].get(str(record_id))
        if record is None:
            return None
        record["Tag"] = [t for t in record.get("Tag") or [] if t["name"] not in names]
        return [t["name"] for t in record["Tag"]]

    def details(self, record_id: str, module: str) -> dict[str, Any]:
        """The ``details`` of a successful write item."""
        record = self.records[module][record_id]
        return {"Modified_Time": record["Modified_Time"], "Modified_By": record["Modified_By"],
                "Created_Time": record["Created_Time"], "id": record_id, "Created_By": record["Created_By"]}

    # -- validation ---------------------------------------------------------------------------------------
    def _prepare(self, spec: ModuleSpec, data: Any, path: str, existing: dict[str, Any] | None) -> dict[str, Any]:
        """Check one incoming record and return the values to store (lookups and line items normalised)."""
        if not isinstance(data, dict):
            raise RecordError("INVALID_DATA", "invalid data", {"expected_data_type": "jsonobject",
                                                              "api_name": "data", "json_path": path})
        for name in spec.mandatory:
            if (existing is None and _blank(data.get(name))) or (name in data and _blank(data[name])):
                raise RecordError.mandatory(name, f"{path}.{name}")
        values: dict[str, Any] = {}
        special = spec.special_fields
        known = self.schema.fields[spec.api_name]
        for name, value in data.items():
            if name in READ_ONLY_FIELDS or name[:1] == "$":
                continue  # Zoho ignores system fields and $-properties it does not act on
            meta = known.get(name)
            if meta is None:
                # "You must use only Field API names in the input" (v8 insert-records page); a name the org's
                # module lacks is refused in the documented INVALID_DATA shape (api_name, json_path).
                raise RecordError.invalid(name, f"{path}.{name}")
            kind = type(value)
            if kind is str and len(value) > meta.max_length and meta.data_type in TEXTUAL:
                # Each field takes its length (Field Types: Data Types and Length Limits); Zoho refuses the record,
                # naming the field and the maximum (createRecords example "invaliddatalength").
                raise RecordError.invalid(name, f"{path}.{name}", maximum_length=meta.max_length)
            if meta.data_type in NUMERIC and value is not None and not _numeric(value):
                raise RecordError.invalid(name, f"{path}.{name}", expected_data_type=meta.json_type)
            if name == "Currency" and value is not None:
                found = self.schema.currencies.active(value)
                if found is None:  # "only active currencies can be entered" (currencies.py)
                    raise RecordError.invalid(name, f"{path}.{name}")
                value = found.iso_code
            if name not in special and kind in _PLAIN:
                values[name] = value  # most fields: plain text or a number, stored as given
            elif name in spec.lookups:
                values[name] = self._lookup(spec.lookups[name], value, name, f"{path}.{name}")
            elif name == spec.line_items:
                values[name] = self._line_items(value, f"{path}.{name}", existing.get(name) if existing else None)
            elif name == "Owner":
                values[name] = existing.get("Owner") if existing else {**self.user.minified(), "email": self.user.email}
            else:
                values[name] = _deep_copy(value)
        return values

    def _lookup(self, target: str, value: Any, name: str, path: str) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict) or "id" not in value:
            raise RecordError.invalid(name, path, expected_data_type="jsonobject")
        ref = self.get(target, str(value["id"]))
        if ref is None:
            raise RecordError.invalid(name, path)
        return {"name": ref.get(self.schema.modules[target].name_field), "id": ref["id"]}

    def _line_items(self, rows: Any, path: str, current: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """Validate line items. On update Zoho keeps rows not mentioned, updates rows given with an id,
        adds rows without one and removes rows sent with ``_delete``."""
        if not isinstance(rows, list):
            raise RecordError.invalid(path.rsplit(".", 1)[1], path, expected_data_type="jsonarray")
        by_id = {row["id"]: dict(row) for row in (current or [])}
        order = list(by_id)
        for index, raw in enumerate(rows):
            row_path = f"{path}[{index}]"
            if not isinstance(raw, dict):
                raise RecordError.invalid(path.rsplit(".", 1)[1], row_path, expected_data_type="jsonobject")
            row = {LINE_ITEM_ALIASES.get(k, k): v for k, v in raw.items()}
            row_id = str(row.pop("id")) if row.get("id") is not None else None
            if row_id is not None and row_id not in by_id:
                raise RecordError.invalid("id", f"{row_path}.id", "the id given seems to be invalid")
            if "_delete" in row:
                if row_id is not None:
                    by_id.pop(row_id)
                    order.remove(row_id)
                continue
            merged = {**(by_id.get(row_id) or {}), **row} if row_id else row
            merged["Product_Name"] = self._line_product(merged.get("Product_Name"), f"{row_path}.Product_Name")
            row_id = row_id or self.new_id()
            by_id[row_id] = {**_line_totals(merged, self.get("Products", merged["Product_Name"]["id"])), "id": row_id}
            if row_id not in order:
                order.append(row_id)
        if not order:
            raise RecordError.mandatory(path.rsplit(".", 1)[1], path)
        return [by_id[i] for i in order]

    def _line_product(self, value: Any, path: str) -> dict[str, Any]:
        if _blank(value):
            raise RecordError.mandatory("Product_Name", path)
        product = self._lookup("Products", value, "Product_Name", path)
        assert product is not None
        return product

    def _check_unique(self, spec: ModuleSpec, values: dict[str, Any], path: str, exclude: str | None) -> None:
        """User-defined unique fields ("Do not allow duplicate values") reject a second record with the value."""
        for name in sorted(self.schema.unique(spec.api_name)):
            value = values.get(name)
            if _blank(value):
                continue
            other = self.find_same(spec.api_name, name, value, exclude)
            if other is not None:
                raise RecordError("DUPLICATE_DATA", "duplicate data", {
                    "api_name": name, "json_path": f"{path}.{name}", "id": other["id"], "more_records": False,
                    "duplicate_record": {"id": other["id"], "Owner": other.get("Owner"),
                                         "module": {"api_name": spec.api_name, "id": spec.id}}})

    def _currency(self, spec: ModuleSpec, record: dict[str, Any], given: dict[str, Any]) -> None:
        """With multi-currency on, a record is in the home currency unless it names another, at that currency's
        rate unless it gives one (currencies.py); without it, records carry neither field."""
        if not self.schema.multi_currency(spec.api_name):
            return
        currencies = self.schema.currencies
        if not record.get("Currency"):
            record["Currency"] = currencies.home
        if given.get("Exchange_Rate") in (None, ""):
            found = currencies.active(record["Currency"])
            record["Exchange_Rate"] = float(found.exchange_rate) if found else 1.0

    def _derive(self, spec: ModuleSpec, record: dict[str, Any]) -> None:
        """Fields Zoho computes: Contacts' Full_Name, inventory totals."""
        if spec.api_name == "Contacts":
            record["Full_Name"] = " ".join(p for p in (record.get("First_Name"), record.get("Last_Name")) if p)
        if spec.line_items and spec.line_items in record:
            sub_total = round(sum(row["Net_Total"] for row in record[spec.line_items]), 2)
            record["Sub_Total"] = sub_total
            record["Grand_Total"] = round(sub_total - _number(record.get("Discount"))
                                          + _number(record.get("Tax")) + _number(record.get("Adjustment")), 2)


def _line_totals(row: dict[str, Any], product: dict[str, Any] | None) -> dict[str, Any]:
    quantity = _number(row.get("Quantity"), 1.0)
    price = _number(row.get("List_Price"), _number((product or {}).get("Unit_Price")))
    total = round(quantity * price, 2)
    after_discount = round(total - _number(row.get("Discount")), 2)
    return {**row, "Quantity": quantity, "List_Price": price, "Discount": _number(row.get("Discount")),
            "Total": total, "Total_After_Discount": after_discount,
            "Net_Total": round(after_discount + _number(row.get("Tax")), 2)}


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
