"""Sales orders written to GP with CreateSalesOrder and its policy: the order number comes from the pair, so a
re-run finds the order instead of creating it twice; GP owns an order once it exists."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from mlconnector.errors import RemoteError
from mlconnector.systems.base import Record, WriteResult
from mlconnector.systems.gp.records import _text
from mlconnector.systems.gp.webservices import WebServices

# The payload fields a sales order is made of (CreateSalesOrder: customer, batch, date, PO number, comment, lines).
ORDER_FIELDS = frozenset({"customerId", "batchId", "date", "customerPONumber", "comment", "lines"})


class Orders:
    """Sales orders created through Web Services."""

    def __init__(self, soap: WebServices, get: Callable[[str, str], Record | None], now: Callable[[], datetime], *,
                 order_type_id: str, order_batch_id: str) -> None:
        self.call, self._policy = soap.call, soap.policy
        self.get = get
        self._now = now
        self.order_type_id = order_type_id
        self.order_batch_id = order_batch_id

    def create(self, payload: Mapping[str, Any], key: str, linked: str | None) -> WriteResult:
        extra = sorted(set(payload) - ORDER_FIELDS - {key})
        if extra:
            # CreateSalesOrder is built from these fields only: a field a configured mapping adds would be lost.
            return WriteResult("fail", error=f"GP sales orders take {', '.join(sorted(ORDER_FIELDS))} only, not "
                               f"{', '.join(extra)} (see the pair's mappings)", error_class="INVALID_DATA")
        number = _text(linked) or _text(payload.get(key))
        if not number:
            return WriteResult("fail", error=f"the order has no {key}: GP order numbers are set by the pair",
                               error_class="INVALID_DATA")
        try:
            existing = self.get("salesOrders", number)
        except RemoteError as exc:
            if exc.retryable:
                raise
            return WriteResult("fail", error=str(exc), error_class=exc.code or "gp")
        if existing is not None:
            if linked:
                return WriteResult("skip", number, error=f"sales order {number} is already in GP; changes after "
                                   "it was created are not sent (GP owns the order)")
            return WriteResult("update", number, existing.modified)  # created by an earlier, interrupted run
        order = {"Key": {"Id": number}, "DocumentTypeKey": {"Type": "Order", "Id": self.order_type_id},
                 "CustomerKey": {"Id": payload.get("customerId")},
                 "BatchKey": {"Id": payload.get("batchId") or self.order_batch_id},
                 "Date": payload.get("date"), "CustomerPONumber": payload.get("customerPONumber"),
                 "Comment": payload.get("comment"),
                 "Lines": {"SalesOrderLine": [
                     {"ItemKey": {"Id": line.get("item")}, "ItemDescription": line.get("description"),
                      "Quantity": {"Value": line.get("quantity")},
                      **({"UnitPrice": {"Value": line["unitPrice"]}} if line.get("unitPrice") is not None else {})}
                     for line in payload.get("lines") or []]}}
        try:
            self.call("CreateSalesOrder", salesOrder=order, policy=self._policy("CreateSalesOrder"))
        except RemoteError as exc:
            if exc.retryable:
                raise
            return WriteResult("fail", error=str(exc), error_class=exc.code or "gp")
        return WriteResult("create", number, self._now())
