"""Default Dimensions (table 352) as NAV publishes page 540 "Default Dimensions" over ODataV4: one row per (table,
record, dimension), e.g. a customer's CUSTOMERGROUP value. Keyed by ``Table_ID`` (an Integer: 18 is Customer),
``No`` and ``Dimension_Code``; read here (a user sets them on the customer card, Dimensions). The page has no
Last Date Modified: readers take it whole."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from . import errors
from .errors import json_response
from .odata import apply_select, next_link, parse_query, requested_page_size, select_page

SERVICE = "DefaultDimensions"
TYPES = {"Table_ID": "integer", "No": "string", "Dimension_Code": "string", "Dimension_Value_Code": "string",
         "Value_Posting": "string"}
KEY = ["Table_ID", "No", "Dimension_Code"]
CUSTOMER_TABLE = 18


class DefaultDimensions:
    def __init__(self) -> None:
        self.rows: dict[str, dict[tuple[int, str, str], dict[str, Any]]] = {}   # company id -> key -> row

    def set(self, company_id: str, table_id: int, number: str, code: str, value: str | None) -> None:
        """A record's default dimension value (None takes it away), as the Default Dimensions page saves it."""
        rows = self.rows.setdefault(company_id, {})
        key = (table_id, number, code.upper())
        if value is None:
            rows.pop(key, None)
            return
        rows[key] = {"Table_ID": table_id, "No": number, "Dimension_Code": code.upper(),
                     "Dimension_Value_Code": value.upper(), "Value_Posting": "_x0020_"}

    async def handle(self, request: Request, company_id: str, context: str) -> Response:
        if request.method != "GET":
            raise errors.method_not_allowed(request.method, "Default Dimension")
        rows = [dict(row) for _, row in sorted(self.rows.get(company_id, {}).items())]
        query = parse_query(dict(request.query_params), TYPES, "Default Dimension")
        size, _ = requested_page_size(request.headers.get("prefer"), 20_000)
        result = select_page(rows, query, TYPES, KEY, size)
        body: dict[str, Any] = {"@odata.context": context,
                                "value": [apply_select(r, query.select, KEY) for r in result.rows]}
        if result.next_token:
            body["@odata.nextLink"] = next_link(str(request.url).split("?")[0], query, result.next_token)
        return json_response(body)
