"""Zuora's rows as records: the entities read, their Object Query expansions, the stamps' times and the shape a
record takes, whichever API read it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from mlconnector.clock import parse_utc
from mlconnector.systems.base import Record

# Object Query expansions the records carry, per entity the engine reads.
EXPANDS = {"accounts": ("billto",), "invoices": ("invoiceitems",), "payments": ("paymentapplications",),
           "products": ("productrateplans.productrateplancharges",)}
CONTACT_FIELDS = ("firstName", "lastName", "workEmail", "workPhone", "address1", "address2", "city", "state",
                  "zipCode", "country")
ENTITIES = ("accounts", "products", "subscriptions", "invoices", "payments")


def oq_time(moment: datetime, *, up: bool = False) -> str:
    """Object Query date-time literal in whole seconds (Zuora keeps seconds): rounded down for a lower bound,
    up for an upper one, so a record stamped in the same second as either bound is read."""
    moment = moment.astimezone(timezone.utc)
    if up and moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Rows:
    """Rows of either API made records in one shape (the products' rate plan chosen by ``rate_plan_name``)."""

    def __init__(self, name: str, rate_plan_name: str | None) -> None:
        self.name = name
        self.rate_plan_name = rate_plan_name

    def record(self, entity: str, row: Mapping[str, Any]) -> Record:
        data = dict(row)
        if entity == "accounts" and isinstance(data.get("billTo"), Mapping):
            # The bill-to contact also under the name accounts are written with, so a record read back can be
            # compared with what we wrote (echo detection when both carry the same second).
            data["billToContact"] = {k: v for k, v in data["billTo"].items() if k in CONTACT_FIELDS and v not in (None, "")}
        if entity == "products":
            if "sKU" in data:
                data["sku"] = data.pop("sKU")
            plan = self.pick_plan(data.pop("productRatePlans", None) or [])
            charges = (plan or {}).get("productRatePlanCharges") or []
            prices = (charges[0].get("prices") or charges[0].get("pricing") or []) if charges else []
            if prices:
                data["price"], data["currency"] = float(prices[0].get("price") or 0), prices[0].get("currency")
        if entity == "invoices":
            data["subscriptionNumbers"] = sorted({i["subscriptionNumber"] for i in data.get("invoiceItems") or []
                                                  if i.get("subscriptionNumber")})
        if entity == "payments":
            data["invoiceIds"] = [a.get("invoiceId") for a in data.get("paymentApplications") or []]
        return Record(self.name, entity, str(data["id"]), parse_utc(data.get("updatedDate")), data)

    def pick_plan(self, plans: list[dict[str, Any]]) -> dict[str, Any] | None:
        if self.rate_plan_name:
            return next((p for p in plans if p.get("name") == self.rate_plan_name), None)
        return plans[0] if plans else None
