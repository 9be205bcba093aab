"""ZOQL reads (``/v1/action/query`` + ``queryMore``): batches of up to 2,000 records, for tenants without Object
Query or first loads of many records. ZOQL has no ``*``, no joins and no order: changes are read window by window of
UpdatedDate, each window sorted before it is handed on (a fuller one split at its median), and what Object Query
would expand is read with a second query per page. Every id (``record_ids``) is read here whatever ``read_api``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from mlconnector.http import json_body
from mlconnector.systems.base import Record
from mlconnector.systems.zuora.client import ZuoraClient
from mlconnector.systems.zuora.errors import ZuoraFailure, failure_of
from mlconnector.systems.zuora.records import Rows, oq_time, parse_utc

ZOQL_BATCH = 2000              # Action Query's maximum (and default) batch
ZOQL_WINDOW = 10_000           # records of one UpdatedDate window held to sort them
ZOQL_IDS = 200                 # ZOQL's limit of conditions in one where clause (ids or-ed, there is no "in")
_STAMP = ("CreatedDate", "UpdatedDate")
# entity -> (zObject, fields): what a ZOQL read selects (the Object Query record's fields under zObject names).
ZOQL_READS: dict[str, tuple[str, tuple[str, ...]]] = {
    "accounts": ("Account", ("Id", "AccountNumber", "Name", "Currency", "Status", "BillCycleDay", "AutoPay",
                             "PaymentTerm", "CrmId", "Notes", "ParentId", "Balance", "TotalInvoiceBalance",
                             "BillToId", "SoldToId") + _STAMP),
    "products": ("Product", ("Id", "Name", "SKU", "Description", "Category", "ProductNumber",
                             "EffectiveStartDate", "EffectiveEndDate") + _STAMP),
    "subscriptions": ("Subscription", ("Id", "Name", "AccountId", "Version", "Status", "TermType",
                                       "ContractEffectiveDate", "SubscriptionStartDate", "TermStartDate",
                                       "PreviousSubscriptionId") + _STAMP),
    "invoices": ("Invoice", ("Id", "InvoiceNumber", "AccountId", "Amount", "AmountWithoutTax", "TaxAmount",
                             "Balance", "PaymentAmount", "InvoiceDate", "DueDate", "TargetDate", "Status",
                             "PostedDate") + _STAMP),
    "payments": ("Payment", ("Id", "PaymentNumber", "AccountId", "Amount", "AppliedInvoiceAmount", "RefundAmount",
                             "EffectiveDate", "Status", "Type", "GatewayState") + _STAMP),
}
CONTACT_ZOQL = ("Id", "AccountId", "FirstName", "LastName", "WorkEmail", "WorkPhone", "Address1", "Address2",
                "City", "State", "PostalCode", "Country") + _STAMP
# zObject field -> Object Query field, where the two names differ by more than the first letter's case
OQ_NAMES = {"PostalCode": "zipCode", "AppliedInvoiceAmount": "appliedAmount"}


class Zoql:
    """Reads through ZOQL: changes window by window, every id, rows by key."""

    def __init__(self, client: ZuoraClient, rows: Rows, batch: int, window: int,
                 fields: dict[str, tuple[str, ...]]) -> None:
        self.name = client.name
        self.zoql_batch = batch
        self.zoql_window = window
        self.zoql_fields = fields  # the connector's own table: also_read adds to it
        self._call, self._note_clock = client.call, client.note_clock
        self._record = rows.record

    def _zoql(self, query: str, clock: str | None = None, batch: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """The batches of one ZOQL query: query, then queryMore with each queryLocator until done. ``clock``: the
        entity whose read this is (see _note_clock)."""
        conf = {"batchSize": batch or self.zoql_batch}
        body = self._zoql_call("/v1/action/query", {"queryString": query, "conf": conf}, query, clock)
        while True:
            yield body.get("records") or []
            locator = body.get("queryLocator")
            if body.get("done", True) or not locator:
                return
            body = self._zoql_call("/v1/action/queryMore", {"queryLocator": locator, "conf": conf}, query)

    def _zoql_call(self, path: str, body: dict[str, Any], query: str, clock: str | None = None) -> dict[str, Any]:
        response = self._call("POST", path, json=body, idempotent=True)
        self._note_clock(clock, response)
        found = failure_of(self.name, response)
        if found is None:
            answer = json_body(response)
            return answer if isinstance(answer, dict) else {}
        hint = {"INVALID_QUERY_LOCATOR": "Zuora dropped the query's cursor (a queryMore locator lives 15 minutes)",
                "INVALID_FIELD": "a field this tenant does not have; check zoql_fields",
                "INVALID_TYPE": "an object this tenant cannot query with ZOQL"}.get(str(found.code), "ZOQL refused")
        found.message = f"{hint}: {found.message} [{query[:160]}]"
        found.args = (f"{self.name} answered HTTP {found.status} ({found.code}: {found.message})",)
        raise found

    def record_ids(self, entity: str) -> Iterator[str]:
        """Every id (a deletion is an id no longer here; subscriptions: every number), read through ZOQL with the
        id field alone at its largest batch, 2,000 records a call where Object Query pages hold 99
        (https://developer.zuora.com/v1-api-reference/api/operation/Action_POSTquery/). Accounts, products,
        invoices, payments and subscriptions are all ZOQL objects (Orders objects are not, and none is read)."""
        obj = ZOQL_READS[entity][0]
        field = "Name" if entity == "subscriptions" else "Id"  # subscriptions are linked by number
        for batch in self._zoql(f"select {field} from {obj}", batch=ZOQL_BATCH):
            yield from (str(row[field]) for row in batch if row.get(field) is not None)

    def _zoql_rows(self, obj: str, fields: tuple[str, ...], where: str = "") -> Iterator[dict[str, Any]]:
        for batch in self._zoql(f"select {', '.join(dict.fromkeys(fields))} from {obj}"
                                + (f" where {where}" if where else "")):
            yield from batch

    def _zoql_by(self, obj: str, fields: tuple[str, ...], key: str, values: list[str]) -> list[dict[str, Any]]:
        """Rows whose ``key`` is one of ``values``: ZOQL has no ``in``, so 200 or-ed conditions a query."""
        wanted = sorted({str(v) for v in values if v})
        rows: list[dict[str, Any]] = []
        for start in range(0, len(wanted), ZOQL_IDS):
            where = " or ".join(f"{key} = {_zoql_text(v)}" for v in wanted[start:start + ZOQL_IDS])
            rows.extend(_oq_shape(r) for r in self._zoql_rows(obj, fields, where))
        return rows

    def changes(self, entity: str, since: datetime | None, until: datetime | None) -> Iterator[Record]:
        """Records updated in [since, until) in ascending (updated, id) order, one UpdatedDate window at a time
        (ZOQL itself returns no order): a window holding more than zoql_window_records is split at its median."""
        obj, fields = ZOQL_READS[entity]
        fields = fields + self.zoql_fields.get(entity, ())
        windows: list[tuple[datetime | None, datetime | None]] = [(
            parse_utc(oq_time(since)) if since is not None else None,
            parse_utc(oq_time(until, up=True)) if until is not None else None)]
        while windows:
            low, high = windows.pop()
            where = " and ".join(([f"UpdatedDate >= '{oq_time(low)}'"] if low else [])
                                 + ([f"UpdatedDate < '{oq_time(high)}'"] if high else [])
                                 + (["Status != 'Expired'"] if entity == "subscriptions" else []))
            rows, full = self._zoql_window(obj, fields, where, clock=entity)
            if full:
                split = _split(rows, low, high)
                if split:
                    windows.extend(reversed(split))   # the earlier part is read first
                    continue
                # one second holding more than a window: batch by batch, as ZOQL hands them out
                for batch in self._zoql(f"select {', '.join(fields)} from {obj} where {where}"):
                    yield from self._zoql_records(entity, sorted(map(_oq_shape, batch), key=lambda r: r["id"]))
                continue
            rows.sort(key=lambda r: (parse_utc(r.get("updatedDate")) or datetime.min.replace(tzinfo=timezone.utc),
                                     r["id"]))
            for start in range(0, len(rows), self.zoql_batch):
                yield from self._zoql_records(entity, rows[start:start + self.zoql_batch])

    def _zoql_window(self, obj: str, fields: tuple[str, ...], where: str,
                     clock: str | None = None) -> tuple[list[dict[str, Any]], bool]:
        """The window's rows if they fit in zoql_window_records (False), else the part read so far (True). An
        expired locator restarts the window once."""
        query = f"select {', '.join(fields)} from {obj}" + (f" where {where}" if where else "")
        for attempt in (1, 2):
            rows: list[dict[str, Any]] = []
            try:
                for batch in self._zoql(query, clock):
                    rows.extend(_oq_shape(r) for r in batch)
                    if len(rows) > self.zoql_window:
                        return rows, True
                return rows, False
            except ZuoraFailure as exc:
                if exc.code != "INVALID_QUERY_LOCATOR" or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _zoql_records(self, entity: str, rows: list[dict[str, Any]]) -> Iterator[Record]:
        """One page of rows, completed with what Object Query would have expanded, as records."""
        if not rows:
            return
        ids = [r["id"] for r in rows]
        if entity == "accounts":
            contacts = {c["id"]: c for c in self._zoql_by("Contact", CONTACT_ZOQL, "Id",
                                                          [r.get("billToId") for r in rows])}
            for row in rows:
                if row.get("billToId") in contacts:
                    row["billTo"] = contacts[row["billToId"]]
        if entity == "products":
            plans = self._zoql_by("ProductRatePlan", ("Id", "ProductId", "Name", "Description"), "ProductId", ids)
            charges = self._zoql_by("ProductRatePlanCharge", ("Id", "ProductRatePlanId", "Name", "ChargeModel",
                                                              "ChargeType", "BillingPeriod", "UOM"),
                                    "ProductRatePlanId", [p["id"] for p in plans])
            tiers = self._zoql_by("ProductRatePlanChargeTier", ("Id", "ProductRatePlanChargeId", "Tier", "Currency",
                                                                "Price"),
                                  "ProductRatePlanChargeId", [c["id"] for c in charges])
            for charge in charges:
                charge["prices"] = [{"currency": t.get("currency"), "price": t.get("price")}
                                    for t in sorted(tiers, key=lambda t: t.get("tier") or 0)
                                    if t["productRatePlanChargeId"] == charge["id"]]
            for plan in plans:
                plan["productRatePlanCharges"] = [c for c in charges if c["productRatePlanId"] == plan["id"]]
            for row in rows:
                row["productRatePlans"] = [p for p in plans if p["productId"] == row["id"]]
        if entity == "invoices":
            items = self._zoql_by("InvoiceItem", ("Id", "InvoiceId", "SubscriptionNumber", "ChargeName", "Quantity",
                                                  "UnitPrice", "ChargeAmount"), "InvoiceId", ids)
            for row in rows:
                row["invoiceItems"] = [i for i in items if i["invoiceId"] == row["id"]]
        if entity == "payments":
            applied = self._zoql_by("InvoicePayment", ("Id", "PaymentId", "InvoiceId", "Amount"), "PaymentId", ids)
            for row in rows:
                row["paymentApplications"] = [{"invoiceId": a["invoiceId"], "appliedAmount": a.get("amount")}
                                              for a in applied if a["paymentId"] == row["id"]]
        if entity in ("invoices", "payments", "subscriptions"):
            # Invoice and Payment carry no currency of their own in ZOQL: it is the account's.
            currencies = {a["id"]: a.get("currency") for a in self._zoql_by("Account", ("Id", "Currency"), "Id",
                                                                             [r.get("accountId") for r in rows])}
            for row in rows:
                row.setdefault("currency", currencies.get(row.get("accountId")))
        for row in rows:
            yield self._record(entity, row)


def _zoql_text(value: str) -> str:
    """A ZOQL string literal: single quotes, backslash escapes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _oq_shape(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ZOQL record under Object Query's field names (custom fields as they are) and date-times."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        key = name if name.endswith("__c") else OQ_NAMES.get(name, name[:1].lower() + name[1:])
        if isinstance(value, str) and name.endswith("Date") and "T" in value:
            moment = parse_utc(value)
            value = oq_time(moment) if moment else value
        out[key] = value
    return out


def _split(rows: list[dict[str, Any]], low: datetime | None,
           high: datetime | None) -> list[tuple[datetime | None, datetime | None]]:
    """Two or three windows covering [low, high), cut at the median second of the rows read so far; empty when
    the window is a single second."""
    seconds = sorted({t.replace(microsecond=0) for t in (parse_utc(r.get("updatedDate")) for r in rows) if t})
    if not seconds:
        return []
    middle = seconds[len(seconds) // 2]
    if low is None or middle > low:
        return [(low, middle), (middle, high)]
    after = middle + timedelta(seconds=1)
    if high is None or after < high:
        return [(low, after), (after, high)]
    return []
