"""Deleted records and tags: what a client reads to learn of deletions, and how it marks records.

- ``GET /crm/v8/{module}/deleted`` lists the recycle bin, oldest first, ``type`` all/recycle/permanent, ``page`` and
  ``per_page`` (up to 200), and only those deleted at or after the ``If-Modified-Since`` header
  (https://www.zoho.com/crm/developer/docs/api/v8/get-deleted-records.html). No records: 204.
- ``POST /crm/v8/{module}/actions/add_tags`` adds tags by name to up to 100 records given as ``ids``; a tag that
  does not exist is created (https://www.zoho.com/crm/developer/docs/api/v8/add-tags.html).
- ``POST /crm/v8/{module}/actions/remove_tags`` takes tags by name off up to 100 records given as ``ids``, the
  same body and answer (https://www.zoho.com/crm/developer/docs/api/v8/remove-tags.html).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mlconnector.sandbox.common import JSONResponse

from .errors import RecordError, ZohoError, required_param
from .routes import (MAX_PER_PAGE, MAX_WRITE_RECORDS, Call, _int_param, json_body, module_spec, multi_status,
                     no_content)

DELETED_TYPES = ("all", "recycle", "permanent")
MAX_TAGS_PER_CALL = 10  # tags added in one call


def _since(request: Request) -> datetime | None:
    text = request.headers.get("If-Modified-Since")
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ZohoError(400, "INVALID_DATA", "invalid data", {"header_name": "If-Modified-Since",
                                                              "expected_data_type": "datetime"})
    return moment


async def deleted_records(request: Request, call: Call) -> Response:
    spec = module_spec(call, request)
    query = request.query_params
    kind = query.get("type", "all")
    if kind not in DELETED_TYPES:
        raise ZohoError(400, "INVALID_DATA", "invalid data", {"param_name": "type",
                                                              "supported_values": list(DELETED_TYPES)})
    per_page = min(_int_param(query, "per_page", MAX_PER_PAGE), MAX_PER_PAGE)
    page = _int_param(query, "page", 1)
    since = _since(request)
    rows = [row for row in call.sandbox.store.deleted.get(spec.api_name, [])
            if kind in ("all", row["type"])
            and (since is None or datetime.fromisoformat(row["deleted_time"]) >= since)]
    chunk = rows[(page - 1) * per_page:page * per_page]
    if not chunk:
        return no_content()
    info = {"per_page": per_page, "count": len(chunk), "page": page,
            "more_records": len(rows) > page * per_page}
    return JSONResponse({"data": [dict(row) for row in chunk], "info": info})


async def add_tags(request: Request, call: Call) -> Response:
    return await _tagging(request, call, add=True)


async def remove_tags(request: Request, call: Call) -> Response:
    return await _tagging(request, call, add=False)


async def _tagging(request: Request, call: Call, *, add: bool) -> Response:
    spec = module_spec(call, request)
    body = await json_body(request)
    tags = body.get("tags") if isinstance(body, dict) else None
    if not isinstance(tags, list) or not tags:
        raise ZohoError(400, "MANDATORY_NOT_FOUND", "required field not found",
                        {"api_name": "tags", "json_path": "$.tags"})
    if len(tags) > MAX_TAGS_PER_CALL:
        raise ZohoError(400, "LIMIT_EXCEEDED", "limit exceeded", {"limit": MAX_TAGS_PER_CALL, "api_name": "tags"})
    names = [str(t.get("name", "")).strip() for t in tags if isinstance(t, dict)]
    if len(names) != len(tags) or not all(names):
        raise ZohoError(400, "INVALID_DATA", "invalid data", {"api_name": "name", "json_path": "$.tags[].name"})
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids:
        raise required_param("ids")
    if len(ids) > MAX_WRITE_RECORDS:
        raise ZohoError(400, "LIMIT_EXCEEDED", "limit exceeded", {"limit": MAX_WRITE_RECORDS, "api_name": "ids"})
    over_write = bool(body.get("over_write", False))
    answers: list[dict[str, Any]] = []
    for record_id in ids:
        store = call.sandbox.store
        now = (store.add_tags(spec, str(record_id), names, over_write) if add
               else store.remove_tags(spec, str(record_id), names))
        if now is None:
            answers.append(RecordError("INVALID_DATA", "the id given seems to be invalid",
                                       {"id": str(record_id)}).body())
            continue
        answers.append({"code": "SUCCESS", "details": {"id": str(record_id), "tags": now},
                        "message": "tags updated successfully", "status": "success"})
    return multi_status(answers, 200)
