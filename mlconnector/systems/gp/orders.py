"""Sales orders and quotes written to GP with CreateSalesOrder / CreateSalesQuote and the operation's policy: the
number comes from the pair, so a re-run finds the document instead of creating it twice; GP owns it once it
exists."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from mlconnector.errors import RemoteError
from mlconnector.systems.base import Record, WriteResult
from mlconnector.systems.gp.records import DOCUMENTS, _text
from mlconnector.systems.gp.webservices import WebServices

# The payload fields a sales order or quote is made of (CreateSalesOrder / CreateSalesQuote: customer, batch, date,
# PO number, comment, the currency's ISO code (CurrencyKey; GP's functional currency without one), lines).
ORDER_FIELDS = frozenset({"customerId", "batchId", "date", "customerPONumber", "comment", "currency", "lines"})


class Orders:
    """Sales orders and quotes created through Web Services."""

    def __init__(self, soap: WebServices, get: Callable[[str, str], Record | None], now: Callable[[], datetime], *,
                 order_type_id: str, quote_type_id: str, order_batch_id: str) -> None:
        self.call, self._policy = soap.call, soap.policy
        self.get = get
        self._now = now
        self.order_type_id = order_type_id
        self.quote_type_id = quote_type_id
        self.order_batch_id = order_batch_id

    def create(self, payload: Mapping[str, Any], key: str, linked: str | None,
               entity: str = "salesOrders") -> WriteResult:
        create, parameter, _, line_type, kind = DOCUMENTS[entity]
        what = "quote" if entity == "salesQuotes" else "order"
        extra = sorted(set(payload) - ORDER_FIELDS - {key})
        if extra:
            # The document is built from these fields only: a field a configured mapping adds would be lost.
            return WriteResult("fail", error=f"GP sales {what}s take {', '.join(sorted(ORDER_FIELDS))} only, not "
                               f"{', '.join(extra)} (see the pair's mappings)", error_class="INVALID_DATA")
        number = _text(linked) or _text(payload.get(key))
        if not number:
            return WriteResult("fail", error=f"the {what} has no {key}: GP {what} numbers are set by the pair",
                               error_class="INVALID_DATA")
        try:
            existing = self.get(entity, number)
        except RemoteError as exc:
            if exc.retryable:
                raise
            return WriteResult("fail", error=str(exc), error_class=exc.code or "gp")
        if existing is not None:
            if linked:
                return WriteResult("skip", number, error=f"sales {what} {number} is already in GP; changes after "
                                   f"it was created are not sent (GP owns the {what})")
            return WriteResult("update", number, existing.modified)  # created by an earlier, interrupted run
        type_id = self.quote_type_id if entity == "salesQuotes" else self.order_type_id
        order = {"Key": {"Id": number}, "DocumentTypeKey": {"Type": kind, "Id": type_id},
                 "CustomerKey": {"Id": payload.get("customerId")},
                 "BatchKey": {"Id": payload.get("batchId") or self.order_batch_id},
                 "Date": payload.get("date"), "CustomerPONumber": payload.get("customerPONumber"),
                 "Comment": payload.get("comment"),
                 **({"CurrencyKey": {"ISOCode": payload["currency"]}} if payload.get("currency") else {}),
                 "Lines": {line_type: [
                     {"ItemKey": {"Id": line.get("item")}, "ItemDescription": line.get("description"),
                      "Quantity": {"Value": line.get("quantity")},
                      # a quote line also says how much of it to invoice and to order: all of it, once accepted
                      **({"QuantityToInvoice": {"Value": line.get("quantity")},
                          "QuantityToOrder": {"Value": line.get("quantity")}} if entity == "salesQuotes" else {}),
                      **({"UnitPrice": {"Value": line["unitPrice"]}} if line.get("unitPrice") is not None else {})}
                     for line in payload.get("lines") or []]}}
        try:
            self.call(create, **{parameter: order}, policy=self._policy(create))
        except RemoteError as exc:
            if exc.retryable:
                raise
            return WriteResult("fail", error=str(exc), error_class=exc.code or "gp")
        return WriteResult("create", number, self._now())
