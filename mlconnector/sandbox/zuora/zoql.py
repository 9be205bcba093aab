"""ZOQL for ``POST /v1/action/query`` and ``/v1/action/queryMore``: the language subset, the objects and fields
the tenant's rows offer under their SOAP (zObject) names, and the server-side cursors behind ``queryLocator``.

What Zuora documents and this follows (developer.zuora.com Action_POSTquery / Action_POSTqueryMore, docs.zuora.com
"ZOQL" and "Filter statements", the SOAP "Faults" page):

- ``select field_names from object where filter_statements``; keywords in lower case; no ``*``, no sorting
  (``order by``), no joins, no ``in``, no parentheses, no field-to-field comparison; ``and`` binds tighter than
  ``or``; at most 200 conditions; a query string of at most 10,000 characters.
- Operators ``= != < <= > >=`` and ``like`` (``%`` wildcard); strings in single quotes; numbers and booleans bare;
  date-times in ISO 8601 (``Z`` or an offset; none means the tenant's zone, UTC here); ``null``.
- Object and field names are case-insensitive; records carry the fields' own names, and fields that are null are
  left out. Results come in no guaranteed order.
- At most 2,000 records per call: ``conf.batchSize`` 1-2,000 (more is treated as 2,000); ``done`` false and a
  ``queryLocator`` while more remain; queryMore cursors expire after 15 minutes (here: 15 minutes after their
  last use, by the sandbox clock).
- Orders objects and Invoice Settlement objects are not queryable through this call.
- A failing call is a fault: ``faultcode`` ``fns:<CODE>``, ``faultstring``, and ``detail`` naming the fault
  (MalformedQueryFault, InvalidTypeFault, InvalidQueryLocatorFault, InvalidValueFault) with ``FaultCode`` and
  ``FaultMessage``. Codes: MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE, INVALID_QUERY_LOCATOR, INVALID_VALUE.

Sandbox choices where Zuora's documents stop: the fault's JSON envelope and its HTTP status are not documented
for the REST call (clients in the wild parse the shape above; the status is ``ZuoraSandbox.zoql_fault_status``,
400 by default). The field catalogue below is the part of each zObject this tenant stores; custom fields
(``*__c``) are accepted on the objects that carry them, as the sandbox keeps no field definitions. A locator
pages over the ids that matched when the query ran, showing each record as it is when its page is read.
Superseded subscription versions read as Status "Expired", as in Zuora.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

MAX_BATCH = 2000
MAX_CONDITIONS = 200
MAX_LENGTH = 10_000
LOCATOR_MINUTES = 15
KEYWORDS = ("select", "from", "where", "and", "or", "like", "is", "not", "null")
UNSUPPORTED_WORDS = ("order", "group", "limit", "having", "in", "join", "distinct")
FAULT_NAMES = {"MALFORMED_QUERY": "MalformedQueryFault", "INVALID_FIELD": "MalformedQueryFault",
               "INVALID_TYPE": "InvalidTypeFault", "INVALID_QUERY_LOCATOR": "InvalidQueryLocatorFault",
               "INVALID_VALUE": "InvalidValueFault"}
ORDERS_OBJECTS = {"order", "orderaction", "orderlineitem", "orderitem", "ordermetric", "orderquantity",
                  "ordercontact", "creditmemo", "debitmemo", "paymentpart", "refundpart", "invoiceitemsettlement"}


class ZoqlFault(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"faultcode": f"fns:{self.code}", "faultstring": self.message,
                "detail": {FAULT_NAMES[self.code]: {"FaultCode": self.code, "FaultMessage": self.message}}}


Row = dict[str, Any]


@dataclass(frozen=True)
class ZObject:
    """A queryable object: its name, the rows behind it, and field name -> the row's key (or a function)."""

    name: str
    rows: Callable[[Any], list[Row]]
    fields: dict[str, str | Callable[[Row], Any]]
    custom: bool = False


def _fields(*names: str, **renamed: str | Callable[[Row], Any]) -> dict[str, str | Callable[[Row], Any]]:
    out: dict[str, str | Callable[[Row], Any]] = {n: n[0].lower() + n[1:] for n in ("Id", "CreatedDate",
                                                                                   "UpdatedDate") + names}
    out.update(renamed)
    return out


def _table(name: str) -> Callable[[Any], list[Row]]:
    return lambda tenant: list(tenant.tables[name].values())


def _tiers(tenant: Any) -> list[Row]:
    return [{"id": f"{c['id'][:24]}{index:08x}", "productRatePlanChargeId": c["id"], "tier": index + 1,
             "currency": p.get("currency"), "price": p.get("price"), "createdDate": c["createdDate"],
             "updatedDate": c["updatedDate"]}
            for c in tenant.tables["product-rate-plan-charges"].values() for index, p in enumerate(c["prices"])]


def _invoice_payments(tenant: Any) -> list[Row]:
    return [{"id": f"{p['id'][:24]}{index:08x}", "paymentId": p["id"], "invoiceId": a["invoiceId"],
             "amount": a["appliedAmount"], "createdDate": p["createdDate"], "updatedDate": p["updatedDate"]}
            for p in tenant.tables["payments"].values() for index, a in enumerate(p["paymentApplications"])]


OBJECTS: dict[str, ZObject] = {o.name.lower(): o for o in (
    ZObject("Account", _table("accounts"), _fields(
        "AccountNumber", "Name", "Currency", "Status", "BillCycleDay", "AutoPay", "PaymentTerm", "CrmId", "Notes",
        "ParentId", "Balance", "TotalInvoiceBalance", "BillToId", "SoldToId", "LastInvoiceDate"), custom=True),
    ZObject("Contact", _table("contacts"), _fields(
        "AccountId", "FirstName", "LastName", "WorkEmail", "WorkPhone", "Address1", "Address2", "City", "State",
        "Country", PostalCode="zipCode")),
    ZObject("Product", _table("products"), _fields(
        "Name", "Description", "Category", "ProductNumber", "EffectiveStartDate", "EffectiveEndDate", SKU="sKU"),
        custom=True),
    ZObject("ProductRatePlan", _table("product-rate-plans"), _fields(
        "ProductId", "Name", "Description", "ProductRatePlanNumber", "EffectiveStartDate", "EffectiveEndDate"),
        custom=True),
    ZObject("ProductRatePlanCharge", _table("product-rate-plan-charges"), _fields(
        "ProductRatePlanId", "Name", "ChargeModel", "ChargeType", "BillingPeriod", "TriggerEvent",
        "DefaultQuantity", "ProductRatePlanChargeNumber", UOM="uOM"), custom=True),
    ZObject("ProductRatePlanChargeTier", _tiers, _fields("ProductRatePlanChargeId", "Tier", "Currency", "Price")),
    ZObject("Subscription", _table("subscriptions"), _fields(
        "AccountId", "Version", "TermType", "ContractEffectiveDate", "SubscriptionStartDate", "TermStartDate",
        "PreviousSubscriptionId", Name="name",
        Status=lambda r: r["status"] if r["isLatestVersion"] else "Expired"), custom=True),
    ZObject("Invoice", _table("invoices"), _fields(
        "InvoiceNumber", "AccountId", "Amount", "AmountWithoutTax", "TaxAmount", "Balance", "PaymentAmount",
        "InvoiceDate", "DueDate", "TargetDate", "Status", "PostedDate"), custom=True),
    ZObject("InvoiceItem", _table("invoice-items"), _fields(
        "InvoiceId", "SubscriptionId", "SubscriptionNumber", "ChargeName", "ChargeNumber", "ProductName",
        "Quantity", "UnitPrice", "ChargeAmount", "ServiceStartDate", SKU="sku")),
    ZObject("Payment", _table("payments"), _fields(
        "PaymentNumber", "AccountId", "Amount", "RefundAmount", "EffectiveDate", "Status", "Type", "GatewayState",
        AppliedInvoiceAmount="appliedAmount"), custom=True),
    ZObject("InvoicePayment", _invoice_payments, _fields("PaymentId", "InvoiceId", "Amount")),
)}


# -- the language ---------------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"""\s*(?:
    (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<op><=|>=|!=|=|<|>)
  | (?P<comma>,)
  | (?P<paren>[()])
  | (?P<star>\*)
  | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<other>\S)
)""", re.X)


@dataclass(frozen=True)
class Condition:
    field: str
    op: str          # = != < <= > >= like
    value: Any       # str, float, bool or None


@dataclass(frozen=True)
class Query:
    obj: ZObject
    fields: tuple[str, ...]
    where: tuple[tuple[Condition, ...], ...]   # or of ands


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        value = match.group(kind)
        if kind in ("star", "paren", "other"):
            what = {"star": "the wildcard * is not supported: name each field",
                    "paren": "parentheses are not supported"}.get(kind, f"unexpected character {value!r}")
            raise ZoqlFault("MALFORMED_QUERY", f"You have an error in your ZOQL syntax: {what}")
        out.append((kind, value))
    return out


def parse(text: str) -> Query:
    if not isinstance(text, str) or not text.strip():
        raise ZoqlFault("MALFORMED_QUERY", "queryString is required")
    if len(text) > MAX_LENGTH:
        raise ZoqlFault("MALFORMED_QUERY", f"The query string is longer than {MAX_LENGTH} characters")
    tokens = _tokens(text)
    for kind, value in tokens:
        if kind == "word" and value.lower() in KEYWORDS[:6] and value != value.lower():
            raise ZoqlFault("MALFORMED_QUERY", f"You have an error in your ZOQL syntax: keywords must be in lower "
                                               f"case ({value!r})")
    position = 0

    def peek() -> tuple[str, str]:
        return tokens[position] if position < len(tokens) else ("end", "")

    def take(kind: str, value: str | None = None) -> str:
        nonlocal position
        got = peek()
        if got[0] != kind or (value is not None and got[1] != value):
            wanted = value or kind
            raise ZoqlFault("MALFORMED_QUERY", f"You have an error in your ZOQL syntax: expected {wanted} "
                                               f"but found {got[1] or 'the end'!r}")
        position += 1
        return got[1]

    take("word", "select")
    names = [take("word")]
    while peek()[0] == "comma":
        take("comma")
        names.append(take("word"))
    take("word", "from")
    object_name = take("word")
    obj = OBJECTS.get(object_name.lower())
    if obj is None:
        if object_name.lower() in ORDERS_OBJECTS:
            raise ZoqlFault("INVALID_TYPE", f"invalid type specified: {object_name} (Orders and Invoice Settlement "
                                            "objects cannot be queried with this call)")
        raise ZoqlFault("INVALID_TYPE", f"invalid type specified: {object_name}")
    fields = tuple(_field_name(obj, n) for n in names)
    groups: list[list[Condition]] = []
    if peek() == ("word", "where"):
        take("word", "where")
        groups.append([])
        count = 0
        while True:
            groups[-1].append(_condition(obj, take, peek))
            count += 1
            if count > MAX_CONDITIONS:
                raise ZoqlFault("MALFORMED_QUERY", f"A query may have at most {MAX_CONDITIONS} conditions")
            if peek() == ("word", "and"):
                take("word", "and")
            elif peek() == ("word", "or"):
                take("word", "or")
                groups.append([])
            else:
                break
    kind, value = peek()
    if kind != "end":
        if value.lower() in UNSUPPORTED_WORDS:
            raise ZoqlFault("MALFORMED_QUERY", f"You have an error in your ZOQL syntax: {value!r} is not supported "
                                               "by ZOQL (results have no guaranteed order)")
        raise ZoqlFault("MALFORMED_QUERY", f"You have an error in your ZOQL syntax near {value!r}")
    return Query(obj, fields, tuple(tuple(g) for g in groups))


def _field_name(obj: ZObject, name: str) -> str:
    for known in obj.fields:
        if known.lower() == name.lower():
            return known
    if obj.custom and name.lower().endswith("__c"):
        return name
    raise ZoqlFault("INVALID_FIELD", f"invalid field for query: {obj.name}.{name}")


def _condition(obj: ZObject, take: Callable[..., str], peek: Callable[[], tuple[str, str]]) -> Condition:
    name = _field_name(obj, take("word"))
    kind, value = peek()
    if (kind, value) == ("word", "is"):
        take("word", "is")
        negated = peek() == ("word", "not")
        if negated:
            take("word", "not")
        take("word", "null")
        return Condition(name, "!=" if negated else "=", None)
    if (kind, value) == ("word", "like"):
        take("word", "like")
        return Condition(name, "like", _literal(take, peek, strings_only=True))
    if kind == "word" and value == "in":
        raise ZoqlFault("MALFORMED_QUERY", "You have an error in your ZOQL syntax: the in operator is not supported")
    return Condition(name, take("op"), _literal(take, peek))


def _literal(take: Callable[..., str], peek: Callable[[], tuple[str, str]], strings_only: bool = False) -> Any:
    kind, value = peek()
    if kind == "string":
        take("string")
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    if not strings_only and kind == "number":
        take("number")
        return float(value)
    if not strings_only and kind == "word" and value in ("true", "false", "null"):
        take("word")
        return None if value == "null" else value == "true"
    if kind == "word":
        raise ZoqlFault("MALFORMED_QUERY", f"You have an error in your ZOQL syntax: comparing two fields is not "
                                           f"supported ({value!r}); quote string values")
    raise ZoqlFault("MALFORMED_QUERY", f"You have an error in your ZOQL syntax: expected a value but found "
                                       f"{value or 'the end'!r}")


# -- evaluation -----------------------------------------------------------------------------------------------------
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")


def _moment(text: str) -> datetime:
    if _DATE.match(text):
        text += "T00:00:00"
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)   # the tenant's zone: UTC


def value_of(obj: ZObject, row: Row, name: str) -> Any:
    source = obj.fields.get(name, name)
    return source(row) if callable(source) else row.get(source)


def _compare(actual: Any, op: str, wanted: Any) -> bool:
    if wanted is None:
        return (actual is None) == (op == "=") if op in ("=", "!=") else False
    if actual is None:
        return op == "!="
    if op == "like":
        pattern = "".join(".*" if c == "%" else re.escape(c) for c in str(wanted))
        return re.fullmatch(pattern, str(actual), re.I | re.S) is not None
    left: Any
    right: Any
    if isinstance(actual, bool):
        if not isinstance(wanted, bool):
            wanted = str(wanted).lower() == "true"
        left, right = actual, wanted
    elif isinstance(actual, (int, float)):
        try:
            left, right = float(actual), float(wanted)
        except (TypeError, ValueError):
            raise ZoqlFault("INVALID_VALUE", f"invalid value for a number: {wanted!r}") from None
    elif isinstance(actual, str) and (_DATE.match(actual) or _DATETIME.match(actual)) and isinstance(wanted, str):
        if not (_DATE.match(wanted) or _DATETIME.match(wanted)):
            raise ZoqlFault("INVALID_VALUE", f"invalid value for a date-time: {wanted!r}; use YYYY-MM-DDThh:mm:ssZ")
        left, right = _moment(actual), _moment(wanted)
    else:
        left, right = str(actual), str(wanted if not isinstance(wanted, float) or not wanted.is_integer()
                                       else int(wanted))
    if op in ("<", "<=", ">", ">=") and isinstance(left, bool):
        raise ZoqlFault("INVALID_VALUE", f"the operator {op} does not apply to booleans")
    return {"=": left == right, "!=": left != right, "<": left < right, "<=": left <= right,
            ">": left > right, ">=": left >= right}[op]


def matches(query: Query, row: Row) -> bool:
    if not query.where:
        return True
    return any(all(_compare(value_of(query.obj, row, c.field), c.op, c.value) for c in group)
               for group in query.where)


def shape(query: Query, row: Row) -> Row:
    """The record as the query returns it: the selected fields under their own names, nulls left out,
    date-times as ``2016-10-20T05:46:14.000+00:00``."""
    out: Row = {}
    for name in query.fields:
        value = value_of(query.obj, row, name)
        if value is None:
            continue
        if isinstance(value, str) and name.endswith("Date") and _DATETIME.match(value) and "T" in value:
            value = _moment(value).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")
        out[name] = value
    return out


# -- cursors --------------------------------------------------------------------------------------------------------
@dataclass
class Cursor:
    query: Query
    ids: list[str]
    used: datetime


class Engine:
    """Runs queries against a tenant and keeps the cursors queryMore continues."""

    def __init__(self, tenant: Any, now: Callable[[], datetime]) -> None:
        self.tenant = tenant
        self.now = now
        self.cursors: dict[str, Cursor] = {}

    def query(self, text: Any, conf: Any) -> dict[str, Any]:
        size = batch_size(conf)
        parsed = parse(text)
        rows = parsed.obj.rows(self.tenant)
        ids = [r["id"] for r in rows if matches(parsed, r)]
        return self._page(uuid.uuid4().hex, Cursor(parsed, ids, self.now()), 0, size)

    def query_more(self, locator: Any, conf: Any) -> dict[str, Any]:
        size = batch_size(conf)
        if not isinstance(locator, str) or not locator:
            raise ZoqlFault("INVALID_QUERY_LOCATOR", "queryLocator is required")
        key, _, offset = locator.rpartition("-")
        cursor = self.cursors.get(key)
        if cursor is None or not offset.isdigit() or not 0 < int(offset) < len(cursor.ids):
            raise ZoqlFault("INVALID_QUERY_LOCATOR", f"invalid query locator: {locator}")
        if self.now() - cursor.used > timedelta(minutes=LOCATOR_MINUTES):
            del self.cursors[key]
            raise ZoqlFault("INVALID_QUERY_LOCATOR", f"invalid query locator: {locator} (expired: a queryMore "
                                                     f"cursor lives {LOCATOR_MINUTES} minutes)")
        return self._page(key, cursor, int(offset), size)

    def _page(self, key: str, cursor: Cursor, offset: int, size: int) -> dict[str, Any]:
        """One batch from ``offset``. A locator stays usable until it expires, so a queryMore whose answer
        was lost can be sent again."""
        by_id = {r["id"]: r for r in cursor.query.obj.rows(self.tenant)}
        chunk = cursor.ids[offset:offset + size]
        records = [shape(cursor.query, by_id[i]) for i in chunk if i in by_id]
        cursor.used = self.now()
        body: dict[str, Any] = {"records": records, "size": len(records)}
        if offset + len(chunk) < len(cursor.ids):
            self.cursors[key] = cursor
            body.update(done=False, queryLocator=f"{key}-{offset + len(chunk)}")
        else:
            body["done"] = True
        return body


def batch_size(conf: Any) -> int:
    if conf is None:
        return MAX_BATCH
    if not isinstance(conf, dict):
        raise ZoqlFault("INVALID_VALUE", "conf must be an object")
    size = conf.get("batchSize", MAX_BATCH)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ZoqlFault("INVALID_VALUE", f"conf.batchSize must be between 1 and {MAX_BATCH}")
    return min(size, MAX_BATCH)
