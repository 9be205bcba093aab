"""Subscriptions written through Zuora's Orders API: CreateSubscription for a new one, AddProduct / RemoveProduct /
UpdateProduct for a change; the live subscription found by its linked number or its key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from mlconnector.auth import utcnow
from mlconnector.systems.base import WriteResult
from mlconnector.systems.zuora.catalog import Catalog
from mlconnector.systems.zuora.client import ZuoraClient
from mlconnector.systems.zuora.errors import failure_of
from mlconnector.systems.zuora.object_query import ObjectQuery


class Orders:
    """Subscription writes (orders keyed by the source record and its content)."""

    def __init__(self, client: ZuoraClient, reads: ObjectQuery, catalog: Catalog) -> None:
        self.name = client.name
        self._call, self._ok, self._create, self._key = client.call, client.ok, client.create, client.key
        self._query = reads.query
        self.rate_plan = catalog.rate_plan

    def _find_subscription(self, key: str, value: Any, known: str | None) -> dict[str, Any] | None:
        """The live subscription: the linked number first, else the one whose custom field holds the key."""
        numbers = [known] if known else []
        if value not in (None, ""):
            numbers += [str(r["name"]) for r in self._query("subscriptions",
                                                             [f"{key}.EQ:{value}", "isLatestVersion.EQ:true"])]
        for number in dict.fromkeys(numbers):
            response = self._call("GET", f"/v1/subscriptions/{quote(str(number), safe='')}")
            if failure_of(self.name, response) is None:
                found = self._ok(response, f"get subscription {number}")
                if found.get("status") != "Cancelled":
                    return found
        return None

    def _charge_override(self, line: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        plan = self.rate_plan(str(line["productId"]))
        charge = plan["productRatePlanCharges"][0]
        pricing: dict[str, Any] = {"quantity": float(line.get("quantity") or 1)}
        if line.get("price") is not None:
            pricing["listPrice"] = float(line["price"])
        return plan, {"productRatePlanChargeId": charge["id"], "pricing": {"recurringPerUnit": pricing}}

    def write(self, payload: dict[str, Any], key: str, known: str | None) -> WriteResult:
        value = payload.get(key)
        lines = _merge_lines(payload.get("lines") or [])
        current = self._find_subscription(key, value, known)
        today = utcnow().date().isoformat()
        if current is None:
            plans = []
            for line in lines:
                plan, override = self._charge_override(line)
                plans.append({"productRatePlanId": plan["id"], "chargeOverrides": [override]})
            order = {"orderDate": payload.get("orderDate") or today, "existingAccountId": payload["accountId"],
                     "subscriptions": [{"customFields": {key: value} if value else {}, "orderActions": [{
                         "type": "CreateSubscription", "createSubscription": {
                             "terms": {"initialTerm": {"termType": payload.get("termType") or "EVERGREEN"}},
                             "subscribeToRatePlans": plans}}]}],
                     "processingOptions": {"runBilling": False, "collectPayment": False}}
            answer = self._create("/v1/orders", order, self._key("subscription", value, order),
                                  f"create subscription for {value}")
            numbers = answer.get("subscriptionNumbers") or [s.get("subscriptionNumber")
                                                            for s in answer.get("subscriptions") or []]
            return WriteResult("create", str(numbers[0]) if numbers else None, utcnow())
        actions = self._amendments(current, lines, today)
        number = str(current["subscriptionNumber"])
        if actions:
            order = {"orderDate": today, "existingAccountId": current["accountId"],
                     "subscriptions": [{"subscriptionNumber": number, "orderActions": actions}],
                     "processingOptions": {"runBilling": False, "collectPayment": False}}
            self._create("/v1/orders", order, self._key("amendment", f"{value}:{current.get('version')}", order),
                         f"amend subscription {number} for {value}")
        return WriteResult("update", number, utcnow())

    def _amendments(self, current: Mapping[str, Any], lines: list[dict[str, Any]], today: str) -> list[dict[str, Any]]:
        """AddProduct for a new product, RemoveProduct for one no longer ordered, UpdateProduct for a new
        quantity or price."""
        triggers = [{"name": n, "triggerDate": today} for n in ("ContractEffective", "ServiceActivation",
                                                                "CustomerAcceptance")]
        existing = {str(p["productId"]): p for p in current.get("ratePlans") or []}
        wanted = {str(line["productId"]): line for line in lines}
        actions: list[dict[str, Any]] = []
        for product_id, line in wanted.items():
            plan, override = self._charge_override(line)
            if product_id not in existing:
                actions.append({"type": "AddProduct", "triggerDates": triggers,
                                "addProduct": {"productRatePlanId": plan["id"], "chargeOverrides": [override]}})
                continue
            charge = (existing[product_id].get("ratePlanCharges") or [{}])[0]
            pricing = override["pricing"]["recurringPerUnit"]
            if float(charge.get("quantity") or 0) != pricing["quantity"] or (
                    "listPrice" in pricing and float(charge.get("price") or 0) != pricing["listPrice"]):
                actions.append({"type": "UpdateProduct", "triggerDates": triggers, "updateProduct": {
                    "ratePlanId": existing[product_id]["id"],
                    "chargeUpdates": [{"chargeNumber": charge.get("number"), "pricing": {"recurringPerUnit": pricing}}]}})
        for product_id, plan in existing.items():
            if product_id not in wanted:
                actions.append({"type": "RemoveProduct", "triggerDates": triggers,
                                "removeProduct": {"ratePlanId": plan["id"]}})
        return actions


def _merge_lines(lines: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One subscription rate plan per product: order lines of the same product add up."""
    merged: dict[str, dict[str, Any]] = {}
    for line in lines:
        product = str(line["productId"])
        if product in merged:
            merged[product]["quantity"] = float(merged[product].get("quantity") or 0) + float(line.get("quantity") or 0)
        else:
            merged[product] = dict(line)
    return list(merged.values())
