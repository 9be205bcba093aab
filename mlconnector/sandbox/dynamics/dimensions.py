"""Default Dimensions (table 352): one row per (table, record, dimension), e.g. a customer's CUSTOMERGROUP value, set
by a user on the customer card (Dimensions). Served two ways over the same rows:

* NAV's page 540 "Default Dimensions" published over ODataV4 (``DefaultDimensions``): keyed by ``Table_ID`` (an
  Integer: 18 is Customer), ``No`` and ``Dimension_Code``. The page has no Last Date Modified: readers take it whole.
* BC API v2.0 ``defaultDimensions``: the company's (``companies({id})/defaultDimensions``, by id too) and a
  customer's (``customers({id})/defaultDimensions``, also ``$expand=defaultDimensions`` on customers), with
  parentType, parentId (the customer's id), dimensionId, dimensionCode, dimensionValueId, dimensionValueCode and
  postingValidation. GET only here (BC also creates, updates and deletes them).
  https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/resources/dynamics_defaultdimension
  https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/api/dynamics_defaultdimension_get
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import Response

from . import errors
from .errors import json_response
from .odata import apply_select, next_link, parse_query, requested_page_size, select_page
from .schema import DEFAULT_DIMENSION_TYPES, EMPTY_GUID

SERVICE = "DefaultDimensions"
TYPES = {"Table_ID": "integer", "No": "string", "Dimension_Code": "string", "Dimension_Value_Code": "string",
         "Value_Posting": "string"}
KEY = ["Table_ID", "No", "Dimension_Code"]
CUSTOMER_TABLE = 18
PARENT_TYPES = {CUSTOMER_TABLE: "Customer", 23: "Vendor", 27: "Item", 5200: "Employee"}


def _guid(company_id: str, *parts: Any) -> str:
    """A SystemId stable for the sandbox's life."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "bc-sandbox/" + "/".join(map(str, (company_id, *parts)))))


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
        """Page 540 over ODataV4."""
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

    # -- API v2.0 -----------------------------------------------------------------------------------------------
    def api_rows(self, company_id: str, customer_ids: Callable[[str], str | None],
                 customer: str | None = None) -> list[dict[str, Any]]:
        """The company's default dimensions as API v2.0 shows them (``customer``: that customer's number only);
        ``customer_ids`` gives a customer's id by its number. Parents the API does not name are left out."""
        out = []
        for (table_id, number, code), row in sorted(self.rows.get(company_id, {}).items()):
            parent_type = PARENT_TYPES.get(table_id)
            if parent_type is None or (customer is not None and (table_id, number) != (CUSTOMER_TABLE, customer)):
                continue
            parent = customer_ids(number) if table_id == CUSTOMER_TABLE else None
            value = row["Dimension_Value_Code"]
            posting = row["Value_Posting"].replace("_x0020_", " ")
            out.append({"@odata.etag": f'W/"JzE5OzE7{_guid(company_id, table_id, number, code, value)[:8]}Jzs="',
                        "id": _guid(company_id, "defaultDimension", table_id, number, code),
                        "parentType": parent_type, "parentId": parent or EMPTY_GUID,
                        "dimensionId": _guid(company_id, "dimension", code), "dimensionCode": code,
                        "dimensionValueId": _guid(company_id, "dimension", code, value), "dimensionValueCode": value,
                        "postingValidation": posting.replace(" ", "_") if posting.strip() else " "})
        return out

    def api_collection(self, request: Request, rows: list[dict[str, Any]], key: str | None,
                       context: str) -> Response:
        """GET of ``defaultDimensions`` (or ``defaultDimensions({id})``) over the rows ``api_rows`` gave."""
        if request.method != "GET":
            raise errors.method_not_allowed(request.method, "defaultDimensions")
        query = parse_query(dict(request.query_params), DEFAULT_DIMENSION_TYPES, "defaultDimension")
        if key is not None:
            found = next((r for r in rows if r["id"] == key.lower()), None)
            if found is None:
                raise errors.not_found("defaultDimension", key)
            return json_response({"@odata.context": f"{context}/$entity", **apply_select(found, query.select)},
                                 headers={"ETag": found["@odata.etag"]})
        size, _ = requested_page_size(request.headers.get("prefer"), 20_000)
        result = select_page(rows, query, DEFAULT_DIMENSION_TYPES, ["parentId", "dimensionCode"], size)
        body: dict[str, Any] = {"@odata.context": context,
                                "value": [apply_select(r, query.select) for r in result.rows]}
        if result.next_token:
            body["@odata.nextLink"] = next_link(str(request.url).split("?")[0], query, result.next_token)
        return json_response(body)
