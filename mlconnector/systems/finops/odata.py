"""F&O's OData as this connector speaks it: the entity sets it reads and writes (their keys, the documents' lines),
literals for ``$filter`` (strings, enums, date-times), F&O's times and error messages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx

from mlconnector.clock import parse_utc

ENUM_NAMESPACE = "Microsoft.Dynamics.DataEntities"
BLANK_DATE = "1900-01-01T12:00:00Z"


@dataclass(frozen=True)
class EntityInfo:
    """An entity set this connector reads or writes: its key within a legal entity, and for documents the
    lines entity set, the line field that names the header and the line's sequence field."""

    key: str
    lines: str | None = None
    line_parent: str | None = None
    line_sequence: str | None = None
    customer_field: str | None = None
    # Line fields that identify a document besides its natural key (an invoice journal: the invoice number and the
    # customer account on its line), so one booked by hand or by another tool is not booked again.
    line_keys: tuple[str, ...] = ()
    # Line fields a payload carries as decimal text (exact money): sent as JSON numbers, digit for digit.
    money_fields: tuple[str, ...] = ()


ENTITIES: dict[str, EntityInfo] = {
    "CustomersV3": EntityInfo("CustomerAccount"),
    "ReleasedProductsV2": EntityInfo("ItemNumber"),
    "VendorsV2": EntityInfo("VendorAccountNumber"),
    "SalesOrderHeadersV2": EntityInfo("SalesOrderNumber", "SalesOrderLines", "SalesOrderNumber",
                                      "LineCreationSequenceNumber", "OrderingCustomerAccountNumber"),
    "FreeTextInvoiceHeaders": EntityInfo("InvoiceIdentifier", "FreeTextInvoiceLines", "ParentRecId", "LineNumber",
                                         "CustomerAccount"),
    "CustomerInvoiceJournalHeaders": EntityInfo("JournalBatchNumber", "CustomerInvoiceJournalLines",
                                                "JournalBatchNumber", "LineNumber",
                                                line_keys=("InvoiceId", "CustomerAccountDisplayValue"),
                                                money_fields=("DebitAmount", "CreditAmount")),
}
WRITABLE = ("SalesOrderHeadersV2", "FreeTextInvoiceHeaders", "CustomerInvoiceJournalHeaders")
LINES_FIELD = "lines"     # payloads of documents carry their lines here
# Free text invoice lines have no item field: the item is checked, then named in the line's Description.
ITEMLESS_LINES = frozenset({"FreeTextInvoiceLines", "CustomerInvoiceJournalLines"})


def enum_literal(enum_type: str, value: str) -> str:
    """An enum value as F&O's $filter takes it: ``Microsoft.Dynamics.DataEntities.NoYes'Yes'``."""
    return f"{ENUM_NAMESPACE}.{enum_type}'{value}'"


def quote_string(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def odata_time(moment: datetime) -> str:
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(value: Any) -> datetime | None:
    """A DateTimeOffset as aware UTC; F&O's empty date (1900-01-01T12:00:00Z) is None."""
    if not isinstance(value, str) or value.startswith("1900-01-01"):
        return None
    return parse_utc(value)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return None


def error_text(response: httpx.Response) -> str:
    """F&O's error message: the Infolog inside ``innererror`` where there is one, else ``error.message``."""
    return _error_message(_body(response))


def _error_message(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ""
    inner = error.get("innererror") if isinstance(error.get("innererror"), dict) else {}
    message = str(inner.get("message") or error.get("message") or "")
    return message.split("Infolog: ", 1)[-1].removeprefix("Error: ") if "Infolog: " in message else message


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("@odata.")}
