"""Products written to Zuora's catalog (a product, one rate plan, one recurring per-unit charge), looked for by SKU,
and the rate plan subscriptions to a product use."""

from __future__ import annotations

from typing import Any

from mlconnector.auth import utcnow
from mlconnector.systems.base import WriteResult
from mlconnector.systems.zuora.client import ZuoraClient
from mlconnector.systems.zuora.errors import ZuoraFailure
from mlconnector.systems.zuora.object_query import ObjectQuery
from mlconnector.systems.zuora.records import Rows


class Catalog:
    """Product writes through the v1 object API; rate plans read once per run."""

    def __init__(self, client: ZuoraClient, reads: ObjectQuery, rows: Rows) -> None:
        self.name = client.name
        self.rate_plan_name = rows.rate_plan_name
        self._plans: dict[str, dict[str, Any]] = {}
        self._call, self._ok, self._create, self._key = client.call, client.ok, client.create, client.key
        self._query, self.get = reads.query, reads.get
        self._pick_plan = rows.pick_plan

    def plans_read(self) -> set[str]:
        """The products whose rate plan this run has read."""
        return set(self._plans)

    # products (catalog): a product, one rate plan, one recurring per-unit charge
    def _product_of(self, product_id: str) -> dict[str, Any]:
        """The catalog product with its rate plans, whatever shape the pinned zuora-version gives them."""
        body = self._ok(self._call("GET", f"/v1/catalog/products/{product_id}"), f"get product {product_id}")
        plans = body.get("productRatePlans")
        if isinstance(plans, str):  # zuora-version >= 230.0: a link to the rate plans instead of the array
            body["productRatePlans"] = self._ok(self._call("GET", plans), f"rate plans of {product_id}").get(
                "productRatePlans") or []
        return body

    def write(self, payload: dict[str, Any], key: str, known_id: str | None) -> WriteResult:
        sku = str(payload.get("sku") or "")
        product_id = known_id
        if product_id and self.get("products", product_id) is None:
            product_id = None
        if not product_id and sku:
            rows = list(self._query("products", [f"sku.EQ:{sku}"]))
            product_id = str(rows[0]["id"]) if rows else None
        fields = {"Name": payload.get("name"), "SKU": sku, "Description": payload.get("description") or ""}
        action = "update"
        if product_id is None:
            answer = self._create("/v1/object/product", fields, self._key("product", sku, fields), f"create product {sku}")
            product_id, action = str(answer["Id"]), "create"
        else:
            self._ok(self._call("PUT", f"/v1/object/product/{product_id}", json=fields), f"update product {sku}")
        product = self._product_of(product_id)
        plans = product.get("productRatePlans") or []
        plan = self._pick_plan(plans)
        price = [{"Currency": payload.get("currency") or "USD", "Price": float(payload.get("price") or 0)}]
        if plan is None:
            spec = {"Name": self.rate_plan_name or payload.get("ratePlanName") or "Standard", "ProductId": product_id}
            plan = {"id": self._create("/v1/object/product-rate-plan", spec, self._key("plan", sku, spec),
                                       f"create rate plan of {sku}")["Id"], "productRatePlanCharges": []}
        charges = plan.get("productRatePlanCharges") or []
        tiers = {"ProductRatePlanChargeTier": price}
        if not charges:
            spec = {"Name": payload.get("name"), "ProductRatePlanId": plan["id"], "ChargeModel": "Per Unit Pricing",
                    "ChargeType": "Recurring", "BillingPeriod": payload.get("billingPeriod") or "Month",
                    "TriggerEvent": "ContractEffective", "UOM": payload.get("uom") or "Each", "DefaultQuantity": 1,
                    "BillCycleType": "DefaultFromCustomer", "ProductRatePlanChargeTierData": tiers}
            self._create("/v1/object/product-rate-plan-charge", spec, self._key("charge", sku, spec),
                         f"create charge of {sku}")
        else:
            current = [(p.get("currency"), float(p.get("price") or 0)) for p in charges[0].get("pricing") or []]
            if current != [(price[0]["Currency"], price[0]["Price"])]:
                self._ok(self._call("PUT", f"/v1/object/product-rate-plan-charge/{charges[0]['id']}",
                                    json={"ProductRatePlanChargeTierData": tiers}), f"update price of {sku}")
        self._plans.pop(product_id, None)
        written = self.get("products", product_id)
        return WriteResult(action, product_id, written.modified if written else utcnow(), stored=written)

    def rate_plan(self, product_id: str) -> dict[str, Any]:
        """The rate plan (and its first charge) that subscriptions to a product use; cached per run."""
        if product_id not in self._plans:
            plan = self._pick_plan(self._product_of(product_id).get("productRatePlans") or [])
            if plan is None or not plan.get("productRatePlanCharges"):
                raise ZuoraFailure(self.name, 200, "0040", f"product {product_id} has no rate plan with a charge"
                                   + (f" named {self.rate_plan_name!r}" if self.rate_plan_name else ""))
            self._plans[product_id] = plan
        return self._plans[product_id]
