"""The emulated tenant's data: accounts, catalog, subscriptions (with versions), orders, invoices, payments,
and the Object Query engine over them. Pure Python; the routes turn its answers and errors into HTTP."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

# Resource codes in reasons[].code (6-digit resource + 2-digit category). Zuora's error-codes page documents
# the scheme and the categories; which 6-digit code belongs to which object is the sandbox's own choice,
# except Orders (531003, as in Zuora's documented example 53100320).
ACCOUNT, PRODUCT, ORDER, SUBSCRIPTION, INVOICE, PAYMENT, QUERY, UNKNOWN = (
    500001, 500002, 531003, 500004, 500005, 500006, 500007, 500000)
INVALID_VALUE, UNKNOWN_FIELD, MISSING_FIELD, BUSINESS_RULE, NOT_FOUND = 20, 21, 22, 30, 40


class BusinessError(Exception):
    """A v1 failure: HTTP 200 (unless ``status`` says otherwise) with success false and reasons[]."""

    def __init__(self, resource: int, category: int, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.code = resource * 100 + category
        self.message = message
        self.status = status


def new_id() -> str:
    return uuid.uuid4().hex


def stamp(moment: datetime) -> str:
    """Object Query's date-times: UTC, whole seconds, Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def v1_stamp(moment: datetime) -> str:
    """The v1 endpoints' "2022-12-08 19:49:16" (tenant time; the sandbox tenant runs on UTC)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


# Object Query -------------------------------------------------------------------------------------------------
OPERATORS = ("EQ", "NE", "LT", "GT", "LE", "GE", "SW", "IN")
_FILTER_RE = re.compile(r"^([A-Za-z0-9_]+)\.([A-Z]{2}):(.*)$", re.S)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Filter:
    field: str
    op: str
    value: Any

    @classmethod
    def parse(cls, text: str) -> "Filter":
        match = _FILTER_RE.match(text)
        if not match or match.group(2) not in OPERATORS:
            raise BusinessError(QUERY, 27, f"invalid filter {text!r}: use field.OP:value with OP one of "
                                           f"{', '.join(OPERATORS)}", status=400)
        field, op, raw = match.groups()
        if op == "IN":
            if not (raw.startswith("[") and raw.endswith("]")):
                raise BusinessError(QUERY, 27, f"invalid filter {text!r}: IN takes [a,b]", status=400)
            value: Any = [v.strip() for v in raw[1:-1].split(",") if v.strip()]
        else:
            value = None if raw == "null" else raw
        return cls(field.lower(), op, value)

    def matches(self, row: dict[str, Any]) -> bool:
        actual = _field(row, self.field)
        if self.value is None:
            return (actual is None) == (self.op == "EQ")
        if self.op == "IN":
            return actual is not None and str(actual) in self.value
        if actual is None:
            return self.op == "NE"
        left, right = _comparable(actual, self.value)
        return {"EQ": left == right, "NE": left != right, "LT": left < right, "GT": left > right,
                "LE": left <= right, "GE": left >= right,
                "SW": str(left).startswith(str(right))}[self.op]


def _field(row: dict[str, Any], name: str) -> Any:
    for key, value in row.items():
        if key.lower() == name:
            return value
    return None


def _comparable(actual: Any, wanted: str) -> tuple[Any, Any]:
    if isinstance(actual, bool):
        return actual, wanted.lower() == "true"
    if isinstance(actual, (int, float)):
        try:
            return float(actual), float(wanted)
        except ValueError:
            return str(actual), wanted
    text = str(actual)
    if _DATE_RE.match(text) and _DATE_RE.match(wanted):
        return _moment(text), _moment(wanted)
    return text, wanted


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def encode_cursor(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


def decode_cursor(text: str) -> dict[str, Any]:
    try:
        return json.loads(base64.urlsafe_b64decode(text.encode()))
    except ValueError:
        raise BusinessError(QUERY, 27, "invalid cursor", status=400) from None


class Tenant:
    """One Zuora tenant's objects. Rows are kept in Object Query's flat shape (camelCase, custom fields
    ``*__c`` alongside); the v1 endpoints reshape them."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        self.tables: dict[str, dict[str, dict[str, Any]]] = {
            name: {} for name in ("accounts", "contacts", "products", "product-rate-plans",
                                  "product-rate-plan-charges", "subscriptions", "orders", "invoices",
                                  "invoice-items", "payments")}
        self.counters: dict[str, int] = {}
        self.billed: set[tuple[str, str]] = set()   # (subscription number, period) already invoiced
        # Custom fields defined on an object (Settings > Manage Custom Fields): every record of it carries them,
        # null until set, in every read. Fields sent that are not defined are still stored (no definitions checked).
        self.custom_fields: dict[str, list[str]] = {}

    def define_custom_field(self, table: str, name: str) -> None:
        if not name.endswith("__c"):
            raise ValueError(f"custom field names end in __c: {name!r}")
        fields = self.custom_fields.setdefault(table, [])
        if name not in fields:
            fields.append(name)
        for row in self.tables[table].values():
            row.setdefault(name, None)

    # -- plumbing ---------------------------------------------------------------------------------------------
    def number(self, prefix: str, width: int = 8) -> str:
        self.counters[prefix] = self.counters.get(prefix, 0) + 1
        return f"{prefix}{self.counters[prefix]:0{width}d}"

    def insert(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        now = stamp(self.now())
        row.setdefault("id", new_id())
        row.setdefault("createdDate", now)
        row["updatedDate"] = now
        for name in self.custom_fields.get(table, ()):
            row.setdefault(name, None)
        self.tables[table][row["id"]] = row
        return row

    def touch(self, row: dict[str, Any], **changes: Any) -> dict[str, Any]:
        row.update(changes)
        row["updatedDate"] = stamp(self.now())
        return row

    def find(self, table: str, key: str, *fields: str) -> dict[str, Any] | None:
        """By id, else by any of ``fields`` (account number, SKU ...)."""
        rows = self.tables[table]
        if key in rows:
            return rows[key]
        return next((r for r in rows.values() if any(r.get(f) == key for f in fields)), None)

    # -- Object Query -----------------------------------------------------------------------------------------
    def query(self, table: str, filters: Iterable[str], sort: str | None, page_size: int, cursor: str | None,
              expand: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        parsed = [Filter.parse(f) for f in filters]
        field, descending = "createddate", False
        if sort:
            name, _, direction = sort.rpartition(".")
            if not name or direction.upper() not in ("ASC", "DESC"):
                raise BusinessError(QUERY, 27, f"invalid sort {sort!r}: use field.ASC or field.DESC", status=400)
            field, descending = name.lower(), direction.upper() == "DESC"
        rows = [r for r in self.tables[table].values() if all(f.matches(r) for f in parsed)]
        rows.sort(key=lambda r: (_sort_key(_field(r, field)), r["id"]), reverse=descending)
        if cursor:
            # Keyset paging: a row edited while a client pages moves, but never shifts the others.
            after = decode_cursor(cursor)
            mark = (_sort_key(after["value"]), after["id"])
            rows = [r for r in rows if ((_sort_key(_field(r, field)), r["id"]) < mark if descending
                                        else (_sort_key(_field(r, field)), r["id"]) > mark)]
        page = rows[:page_size]
        body: dict[str, Any] = {"data": [expand(r) for r in page]}
        if len(rows) > page_size:
            last = page[-1]
            body["nextPage"] = encode_cursor({"value": _field(last, field), "id": last["id"]})
        return body

    # -- accounts -----------------------------------------------------------------------------------------------
    def create_account(self, body: dict[str, Any]) -> dict[str, Any]:
        for required in ("name", "currency", "billToContact"):
            if not body.get(required):
                raise BusinessError(ACCOUNT, MISSING_FIELD, f"'{required}' may not be null")
        number = body.get("accountNumber")
        if number and any(a["accountNumber"] == number for a in self.tables["accounts"].values()):
            raise BusinessError(ACCOUNT, BUSINESS_RULE, f"The account number {number} is invalid: it already exists.")
        self._check_parent(None, body.get("parentId"))
        contact = self._contact(body["billToContact"])
        day = body.get("billCycleDay", 0)
        if not isinstance(day, int) or not 0 <= day <= 31:
            raise BusinessError(ACCOUNT, INVALID_VALUE, "'billCycleDay' must be between 0 and 31")
        account = self.insert("accounts", {
            "accountNumber": number or self.number("A"), "name": str(body["name"])[:255],
            "currency": body["currency"], "billCycleDay": day, "status": "Active",
            "autoPay": bool(body.get("autoPay", False)), "paymentTerm": body.get("paymentTerm", "Due Upon Receipt"),
            "crmId": body.get("crmId"), "notes": body.get("notes"), "parentId": body.get("parentId"),
            "balance": 0.0, "totalInvoiceBalance": 0.0, "billToId": contact["id"], "soldToId": contact["id"],
            **_custom(body)})
        contact["accountId"] = account["id"]
        return account

    def _contact(self, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise BusinessError(ACCOUNT, INVALID_VALUE, "'billToContact' must be an object")
        for required in ("firstName", "lastName"):
            if not body.get(required):
                raise BusinessError(ACCOUNT, MISSING_FIELD, f"'billToContact.{required}' may not be null")
        fields = ("firstName", "lastName", "workEmail", "workPhone", "address1", "address2", "city", "state",
                  "zipCode", "country")
        return self.insert("contacts", {k: body.get(k) for k in fields})

    def _check_parent(self, account: dict[str, Any] | None, parent_id: Any) -> None:
        """A customer hierarchy's rules (Customer Hierarchy enabled): the parent exists, is not the account itself
        nor below it, and the hierarchy keeps to five levels (https://docs.zuora.com/en/zuora-billing/manage-
        accounts-subscriptions-and-non-subscriptions/manage-customer-accounts/create-customer-accounts/
        basic-information-and-contacts-for-customer-accounts/field-descriptions: "Five levels are allowed")."""
        if not parent_id:
            return
        parent = self.tables["accounts"].get(str(parent_id))
        if parent is None:
            raise BusinessError(ACCOUNT, NOT_FOUND, f"Cannot find a Account instance with id {parent_id}.")
        above, level = parent, 1
        while above is not None:
            if account is not None and above["id"] == account["id"]:
                raise BusinessError(ACCOUNT, BUSINESS_RULE, "An account cannot be its own parent or the parent of "
                                                            "an account above it in the hierarchy.")
            above, level = self.tables["accounts"].get(str(above.get("parentId") or "")), level + 1
        below = self._depth_below(account) if account is not None else 0
        if level + below > 5:
            raise BusinessError(ACCOUNT, BUSINESS_RULE, "The customer hierarchy would have more than 5 levels.")

    def _depth_below(self, account: dict[str, Any]) -> int:
        children = [a for a in self.tables["accounts"].values() if a.get("parentId") == account["id"]]
        return 1 + max(self._depth_below(c) for c in children) if children else 0

    def update_account(self, account: dict[str, Any], body: dict[str, Any]) -> None:
        if "parentId" in body:
            self._check_parent(account, body["parentId"])
        if "currency" in body and body["currency"] != account["currency"] and self._has_subscriptions(account):
            raise BusinessError(ACCOUNT, BUSINESS_RULE, "The currency of an account with subscriptions cannot change.")
        changes = {k: body[k] for k in ("name", "crmId", "notes", "paymentTerm", "autoPay", "billCycleDay",
                                        "currency", "parentId") if k in body}
        changes.update(_custom(body))
        if isinstance(body.get("billToContact"), dict):
            contact = self.tables["contacts"][account["billToId"]]
            self.touch(contact, **{k: v for k, v in body["billToContact"].items() if k in contact})
        self.touch(account, **changes)

    def _has_subscriptions(self, account: dict[str, Any]) -> bool:
        return any(s["accountId"] == account["id"] for s in self.tables["subscriptions"].values())

    # -- catalog (CRUD "object" API: capitalised fields) ---------------------------------------------------------
    def create_product(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("Name"):
            raise BusinessError(PRODUCT, MISSING_FIELD, "Name is required")
        sku = body.get("SKU") or self.number("SKU-")
        if any(p["sKU"] == sku for p in self.tables["products"].values()):
            raise BusinessError(PRODUCT, BUSINESS_RULE, f"The SKU {sku} is already used by another product.")
        return self.insert("products", {
            "name": body["Name"], "sKU": sku, "description": body.get("Description") or "",
            "category": body.get("Category") or "Base Products", "productNumber": self.number("PC-"),
            "effectiveStartDate": body.get("EffectiveStartDate") or "2000-01-01",
            "effectiveEndDate": body.get("EffectiveEndDate") or "2099-12-31", **_custom(body)})

    def update_product(self, product: dict[str, Any], body: dict[str, Any]) -> None:
        names = {"Name": "name", "Description": "description", "Category": "category", "SKU": "sKU",
                 "EffectiveStartDate": "effectiveStartDate", "EffectiveEndDate": "effectiveEndDate"}
        self.touch(product, **{names[k]: v for k, v in body.items() if k in names}, **_custom(body))

    def create_rate_plan(self, body: dict[str, Any]) -> dict[str, Any]:
        product = self.tables["products"].get(str(body.get("ProductId")))
        if product is None:
            raise BusinessError(PRODUCT, NOT_FOUND, f"Cannot find a Product instance with id {body.get('ProductId')}.")
        if not body.get("Name"):
            raise BusinessError(PRODUCT, MISSING_FIELD, "Name is required")
        plan = self.insert("product-rate-plans", {
            "productId": product["id"], "name": body["Name"], "description": body.get("Description") or "",
            "productRatePlanNumber": self.number("PRP-"),
            "effectiveStartDate": body.get("EffectiveStartDate") or product["effectiveStartDate"],
            "effectiveEndDate": body.get("EffectiveEndDate") or product["effectiveEndDate"]})
        self.touch(product)
        return plan

    def create_charge(self, body: dict[str, Any]) -> dict[str, Any]:
        plan = self.tables["product-rate-plans"].get(str(body.get("ProductRatePlanId")))
        if plan is None:
            raise BusinessError(PRODUCT, NOT_FOUND,
                                f"Cannot find a ProductRatePlan instance with id {body.get('ProductRatePlanId')}.")
        for required in ("Name", "ChargeModel", "ChargeType", "TriggerEvent"):
            if not body.get(required):
                raise BusinessError(PRODUCT, MISSING_FIELD, f"{required} is required")
        charge = self.insert("product-rate-plan-charges", {
            "productRatePlanId": plan["id"], "name": body["Name"], "chargeModel": body["ChargeModel"],
            "chargeType": body["ChargeType"], "billingPeriod": body.get("BillingPeriod") or "Month",
            "triggerEvent": body["TriggerEvent"], "uOM": body.get("UOM"),
            "defaultQuantity": body.get("DefaultQuantity") or 1,
            "productRatePlanChargeNumber": self.number("PRPC-"), "prices": _tiers(body)})
        self.touch(self.tables["products"][plan["productId"]])
        return charge

    def update_charge(self, charge: dict[str, Any], body: dict[str, Any]) -> None:
        changes: dict[str, Any] = {}
        if "ProductRatePlanChargeTierData" in body:
            changes["prices"] = _tiers(body)
        for name, field in (("Name", "name"), ("UOM", "uOM"), ("DefaultQuantity", "defaultQuantity"),
                            ("BillingPeriod", "billingPeriod")):
            if name in body:
                changes[field] = body[name]
        self.touch(charge, **changes)
        plan = self.tables["product-rate-plans"][charge["productRatePlanId"]]
        self.touch(self.tables["products"][plan["productId"]])

    def plans_of(self, product_id: str) -> list[dict[str, Any]]:
        return [p for p in self.tables["product-rate-plans"].values() if p["productId"] == product_id]

    def charges_of(self, plan_id: str) -> list[dict[str, Any]]:
        return [c for c in self.tables["product-rate-plan-charges"].values() if c["productRatePlanId"] == plan_id]

    # -- orders -------------------------------------------------------------------------------------------------
    def create_order(self, body: dict[str, Any]) -> dict[str, Any]:
        """Validate the whole order first, then apply it: a failing order changes nothing."""
        if not body.get("orderDate"):
            raise BusinessError(ORDER, MISSING_FIELD, "'orderDate' may not be null")
        account = None
        if body.get("existingAccountId"):
            account = self.tables["accounts"].get(str(body["existingAccountId"]))
        elif body.get("existingAccountNumber"):
            account = next((a for a in self.tables["accounts"].values()
                            if a["accountNumber"] == body["existingAccountNumber"]), None)
        else:
            raise BusinessError(ORDER, MISSING_FIELD, "existingAccountNumber, existingAccountId or newAccount is "
                                                      "required")
        if account is None:
            key = body.get("existingAccountId") or body.get("existingAccountNumber")
            raise BusinessError(ORDER, NOT_FOUND, f"Cannot find a Account instance with id {key}.")
        number = body.get("orderNumber")
        if number and any(o["orderNumber"] == number for o in self.tables["orders"].values()):
            raise BusinessError(ORDER, BUSINESS_RULE, f"The order number {number} already exists.")
        subscriptions = body.get("subscriptions") or []
        if not subscriptions:
            raise BusinessError(ORDER, MISSING_FIELD, "'subscriptions' may not be empty")
        plan = [self._check_subscription(account, item, body["orderDate"]) for item in subscriptions]
        order = self.insert("orders", {"orderNumber": number or self.number("O-"), "accountId": account["id"],
                                       "orderDate": body["orderDate"], "status": "Completed",
                                       **_custom(body.get("customFields") or {})})
        done = [apply(order) for apply in plan]
        return {"order": order, "account": account, "subscriptions": done}

    def _check_subscription(self, account: dict[str, Any], item: dict[str, Any],
                            order_date: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        actions = item.get("orderActions") or []
        if not actions:
            raise BusinessError(ORDER, MISSING_FIELD, "'orderActions' may not be empty")
        kinds = [a.get("type") for a in actions]
        custom = _custom(item.get("customFields") or {})
        if "CreateSubscription" in kinds:
            if kinds != ["CreateSubscription"]:
                raise BusinessError(ORDER, BUSINESS_RULE, "CreateSubscription must be the only order action of its "
                                                          "subscription in this sandbox")
            create = actions[0].get("createSubscription") or {}
            number = create.get("subscriptionNumber") or item.get("subscriptionNumber")
            if number and self.latest(number) is not None:
                raise BusinessError(ORDER, BUSINESS_RULE, f"The subscription number {number} already exists.")
            term = ((create.get("terms") or {}).get("initialTerm") or {}).get("termType")
            if term not in ("TERMED", "EVERGREEN"):
                raise BusinessError(ORDER, INVALID_VALUE, "'termType' value should be one of: TERMED, EVERGREEN")
            plans = [self._rate_plan(r) for r in create.get("subscribeToRatePlans") or []]
            if not plans:
                raise BusinessError(ORDER, MISSING_FIELD, "'subscribeToRatePlans' may not be empty")
            return lambda order: self._new_subscription(account, order, number, term, plans, custom, order_date)
        number = item.get("subscriptionNumber")
        current = self.latest(number) if number else None
        if current is None:
            raise BusinessError(ORDER, NOT_FOUND, f"Cannot find a Subscription instance with number {number}.")
        if current["accountId"] != account["id"]:
            raise BusinessError(ORDER, BUSINESS_RULE, f"Subscription {number} does not belong to the order's account.")
        changes: list[tuple[str, Any]] = []
        for action in actions:
            kind = action.get("type")
            if kind == "AddProduct":
                changes.append(("add", self._rate_plan(action.get("addProduct") or {})))
            elif kind == "RemoveProduct":
                changes.append(("remove", self._existing_plan(current, action.get("removeProduct") or {})))
            elif kind == "UpdateProduct":
                update = action.get("updateProduct") or {}
                changes.append(("update", (self._existing_plan(current, update), update.get("chargeUpdates") or [])))
            else:
                raise BusinessError(ORDER, INVALID_VALUE, f"order action type {kind!r} is not supported by the sandbox")
        return lambda order: self._amend(current, order, changes, custom)

    def _rate_plan(self, spec: dict[str, Any]) -> dict[str, Any]:
        plan_id = spec.get("productRatePlanId")
        plan = (self.tables["product-rate-plans"].get(str(plan_id)) if plan_id else
                next((p for p in self.tables["product-rate-plans"].values()
                      if p["productRatePlanNumber"] == spec.get("productRatePlanNumber")), None))
        if plan is None:
            raise BusinessError(ORDER, NOT_FOUND, f"Cannot find a ProductRatePlan instance with id "
                                                  f"{plan_id or spec.get('productRatePlanNumber')}.")
        overrides = {o.get("productRatePlanChargeId"): o for o in spec.get("chargeOverrides") or []}
        charges = []
        for charge in self.charges_of(plan["id"]):
            override = overrides.pop(charge["id"], {})
            pricing = (override.get("pricing") or {}).get("recurringPerUnit") or {}
            price = pricing.get("listPrice", charge["prices"][0]["price"] if charge["prices"] else 0)
            charges.append({"productRatePlanChargeId": charge["id"], "name": charge["name"],
                            "type": charge["chargeType"], "model": charge["chargeModel"], "uom": charge["uOM"],
                            "billingPeriod": charge["billingPeriod"], "price": float(price),
                            "quantity": float(pricing.get("quantity", charge["defaultQuantity"]))})
        if overrides:
            raise BusinessError(ORDER, NOT_FOUND, f"Cannot find a ProductRatePlanCharge instance with id "
                                                  f"{next(iter(overrides))} in rate plan {plan['id']}.")
        product = self.tables["products"][plan["productId"]]
        return {"productRatePlanId": plan["id"], "productId": product["id"], "productName": product["name"],
                "productSku": product["sKU"], "ratePlanName": plan["name"], "charges": charges}

    @staticmethod
    def _existing_plan(subscription: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        plan_id = spec.get("ratePlanId")
        found = next((p for p in subscription["ratePlans"] if p["id"] == plan_id), None)
        if found is None:
            raise BusinessError(ORDER, NOT_FOUND, f"Cannot find a RatePlan instance with id {plan_id} in "
                                                  f"subscription {subscription['name']}.")
        return found

    def latest(self, number: str) -> dict[str, Any] | None:
        return next((s for s in self.tables["subscriptions"].values()
                     if s["name"] == number and s["isLatestVersion"]), None)

    def _materialise(self, plan: dict[str, Any]) -> dict[str, Any]:
        return {"id": new_id(), **{k: v for k, v in plan.items() if k != "charges"},
                "ratePlanCharges": [{"id": new_id(), "number": self.number("C-"), **c} for c in plan["charges"]]}

    def _new_subscription(self, account: dict[str, Any], order: dict[str, Any], number: str | None, term: str,
                          plans: list[dict[str, Any]], custom: dict[str, Any], order_date: str) -> dict[str, Any]:
        return self.insert("subscriptions", {
            "name": number or self.number("A-S"), "accountId": account["id"], "version": 1, "isLatestVersion": True,
            "status": "Active", "termType": term, "orderId": order["id"], "currency": account["currency"],
            "contractEffectiveDate": order_date, "subscriptionStartDate": order_date, "termStartDate": order_date,
            "ratePlans": [self._materialise(p) for p in plans], **custom})

    def _amend(self, current: dict[str, Any], order: dict[str, Any], changes: list[tuple[str, Any]],
               custom: dict[str, Any]) -> dict[str, Any]:
        plans = [dict(p, ratePlanCharges=[dict(c) for c in p["ratePlanCharges"]]) for p in current["ratePlans"]]
        for kind, change in changes:
            if kind == "add":
                plans.append(self._materialise(change))
            elif kind == "remove":
                plans = [p for p in plans if p["id"] != change["id"]]
            else:
                existing, updates = change
                plan = next(p for p in plans if p["id"] == existing["id"])
                by_number = {c["number"]: c for c in plan["ratePlanCharges"]}
                for update in updates:
                    charge = by_number.get(update.get("chargeNumber"))
                    if charge is None:
                        raise BusinessError(ORDER, NOT_FOUND, f"Cannot find charge {update.get('chargeNumber')}.")
                    pricing = (update.get("pricing") or {}).get("recurringPerUnit") or {}
                    charge.update({k: float(pricing[k]) for k in ("quantity", "listPrice") if k in pricing})
                    if "listPrice" in charge:
                        charge["price"] = charge.pop("listPrice")
        current["isLatestVersion"] = False
        successor = {k: v for k, v in current.items() if k not in ("id", "createdDate", "updatedDate")}
        successor.update(version=current["version"] + 1, isLatestVersion=True, ratePlans=plans,
                         previousSubscriptionId=current["id"], orderId=order["id"], **custom)
        self.touch(current)
        return self.insert("subscriptions", successor)

    # -- billing --------------------------------------------------------------------------------------------------
    def bill(self, target: date, account_ids: set[str] | None = None) -> list[dict[str, Any]]:
        """A bill run: one posted invoice per account for its active subscriptions' recurring charges of the
        target date's month, each subscription billed once per month."""
        period = target.strftime("%Y-%m")
        by_account: dict[str, list[dict[str, Any]]] = {}
        for sub in self.tables["subscriptions"].values():
            if not sub["isLatestVersion"] or sub["status"] != "Active" or (sub["name"], period) in self.billed:
                continue
            if account_ids is not None and sub["accountId"] not in account_ids:
                continue
            by_account.setdefault(sub["accountId"], []).append(sub)
        invoices = []
        for account_id, subs in by_account.items():
            account = self.tables["accounts"][account_id]
            items = []
            for sub in subs:
                self.billed.add((sub["name"], period))
                for plan in sub["ratePlans"]:
                    for charge in plan["ratePlanCharges"]:
                        items.append({"subscriptionId": sub["id"], "subscriptionNumber": sub["name"],
                                      "chargeName": charge["name"], "chargeNumber": charge["number"],
                                      "productName": plan["productName"], "sku": plan["productSku"],
                                      "quantity": charge["quantity"], "unitPrice": charge["price"],
                                      "chargeAmount": round(charge["price"] * charge["quantity"], 2),
                                      "serviceStartDate": target.replace(day=1).isoformat()})
            amount = round(sum(i["chargeAmount"] for i in items), 2)
            invoice = self.insert("invoices", {
                "invoiceNumber": self.number("INV"), "accountId": account_id, "amount": amount,
                "amountWithoutTax": amount, "taxAmount": 0.0, "balance": amount, "paymentAmount": 0.0,
                "currency": account["currency"], "invoiceDate": target.isoformat(),
                "dueDate": (target + timedelta(days=30)).isoformat(), "targetDate": target.isoformat(),
                "status": "Posted", "postedDate": stamp(self.now()), "source": "BillRun",
                "sourceType": "Subscription"})
            for item in items:
                self.insert("invoice-items", {"invoiceId": invoice["id"], **item})
            self.touch(account, balance=round(account["balance"] + amount, 2),
                       totalInvoiceBalance=round(account["totalInvoiceBalance"] + amount, 2),
                       lastInvoiceDate=target.isoformat())
            invoices.append(invoice)
        return invoices

    def items_of(self, invoice_id: str) -> list[dict[str, Any]]:
        return [i for i in self.tables["invoice-items"].values() if i["invoiceId"] == invoice_id]

    def pay(self, invoice: dict[str, Any], amount: float | None, kind: str) -> dict[str, Any]:
        amount = round(invoice["balance"] if amount is None else amount, 2)
        if amount <= 0 or amount > invoice["balance"] + 1e-9:
            raise BusinessError(PAYMENT, BUSINESS_RULE, f"The payment amount {amount} must be positive and at most "
                                                        f"the invoice balance {invoice['balance']}.")
        account = self.tables["accounts"][invoice["accountId"]]
        payment = self.insert("payments", {
            "paymentNumber": self.number("P-"), "accountId": account["id"], "amount": amount,
            "appliedAmount": amount, "unappliedAmount": 0.0, "refundAmount": 0.0, "currency": invoice["currency"],
            "effectiveDate": self.now().date().isoformat(), "status": "Processed", "type": kind,
            "gatewayState": "Submitted" if kind == "Electronic" else "NotSubmitted",
            "paymentApplications": [{"invoiceId": invoice["id"], "invoiceNumber": invoice["invoiceNumber"],
                                     "appliedAmount": amount}]})
        self.touch(invoice, balance=round(invoice["balance"] - amount, 2),
                   paymentAmount=round(invoice["paymentAmount"] + amount, 2))
        self.touch(account, balance=round(account["balance"] - amount, 2),
                   totalInvoiceBalance=round(account["totalInvoiceBalance"] - amount, 2))
        return payment


    def refund(self, payment: dict[str, Any], amount: float) -> dict[str, Any]:
        """A refund of (part of) a payment: the payment's refundAmount grows and the invoice it paid is open for
        that much again (a tenant without Invoice Settlement)."""
        amount = round(amount, 2)
        if amount <= 0 or amount > payment["amount"] - payment["refundAmount"] + 1e-9:
            raise BusinessError(PAYMENT, BUSINESS_RULE, f"The refund amount {amount} must be positive and at most "
                                                        "the payment's amount not yet refunded.")
        self._reopen(payment, amount)
        return self.touch(payment, refundAmount=round(payment["refundAmount"] + amount, 2))

    def cancel(self, payment: dict[str, Any]) -> dict[str, Any]:
        """A payment cancelled (status Canceled): what it paid is open again."""
        if payment["status"] != "Processed":
            raise BusinessError(PAYMENT, BUSINESS_RULE, f"Only a processed payment can be canceled; this one is "
                                                        f"{payment['status']}.")
        self._reopen(payment, payment["amount"] - payment["refundAmount"])
        return self.touch(payment, status="Canceled")

    def _reopen(self, payment: dict[str, Any], amount: float) -> None:
        account = self.tables["accounts"][payment["accountId"]]
        self.touch(account, balance=round(account["balance"] + amount, 2))
        for application in payment["paymentApplications"]:
            invoice = self.tables["invoices"][application["invoiceId"]]
            share = round(min(amount, application["appliedAmount"]), 2)
            self.touch(invoice, balance=round(invoice["balance"] + share, 2),
                       paymentAmount=round(invoice["paymentAmount"] - share, 2))
            amount -= share


def _custom(body: dict[str, Any]) -> dict[str, Any]:
    """Custom fields (``Name__c``) are stored as sent; the sandbox has no field definitions to check."""
    return {k: v for k, v in body.items() if k.endswith("__c")}


def _tiers(body: dict[str, Any]) -> list[dict[str, Any]]:
    tiers = ((body.get("ProductRatePlanChargeTierData") or {}).get("ProductRatePlanChargeTier")) or []
    return [{"currency": t.get("Currency", "USD"), "price": float(t.get("Price", 0))} for t in tiers]


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value))
    return (2, str(value))
