"""Business Central's JSON ``$batch`` (OData 4.01 JSON batch) on API v2.0: ``POST .../api/v2.0/$batch`` with
``{"requests": [{"id", "method", "url", "headers", "body"}]}``, answered 200 with ``{"responses": [{"id", "status",
"headers", "body"}]}`` in request order (https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/
webservices/use-odata-batch). ``url`` is relative to the API root (``companies(...)/customers``) or absolute. Each
inner request runs as it would alone, with the batch's credentials. With ``Isolation: snapshot`` the batch is one
transaction: when an inner request fails, what the earlier ones changed is undone (webhook notifications already
queued for them still go out: the emulator does not take those back). At most 100 inner requests (BC's default
``MaxBatchOperations``), no nesting.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .errors import ODataError

if TYPE_CHECKING:
    from .api import ApiV2

MAX_REQUESTS = 100


def _inner_request(outer: Request, root: str, item: dict[str, Any]) -> tuple[Request, str]:
    url = str(item.get("url") or "")
    path = urlsplit(url).path if url.startswith(("http://", "https://")) else url.split("?", 1)[0]
    query = urlsplit(url).query if "?" in url else ""
    root_path = urlsplit(root).path
    rest = path[len(root_path):] if path.startswith(root_path) else path
    rest = rest.lstrip("/")
    body = item.get("body")
    raw = json.dumps(body).encode() if body is not None else b""
    headers = [(k.lower().encode(), str(v).encode()) for k, v in (item.get("headers") or {}).items()]
    kept = {b"authorization", b"host"}
    headers += [(k, v) for k, v in outer.scope["headers"] if k in kept and k not in {h[0] for h in headers}]
    if raw and not any(k == b"content-type" for k, _ in headers):
        headers.append((b"content-type", b"application/json"))
    scope = {**outer.scope, "method": str(item.get("method", "GET")).upper(),
             "path": f"{root_path}/{rest}", "raw_path": f"{root_path}/{rest}".encode(),
             "query_string": query.encode(), "headers": headers}
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": raw, "more_body": False}
    return Request(scope, receive), rest


def _answer(item_id: Any, response: Response) -> dict[str, Any]:
    headers = {k: v for k, v in response.headers.items() if k.lower() in ("content-type", "etag", "location")}
    body: Any = None
    if response.body:
        try:
            body = json.loads(response.body)
        except ValueError:
            body = response.body.decode("utf-8", "replace")
    answer = {"id": item_id, "status": response.status_code, "headers": headers}
    if body is not None:
        answer["body"] = body
    return answer


async def run(api: "ApiV2", request: Request, root: str, principal: str) -> Response:
    if request.method != "POST":
        raise ODataError(405, "BadRequest_MethodNotAllowed", f"'{request.method}' requests for '$batch' are not "
                                                             "allowed.")
    if "json" not in request.headers.get("content-type", ""):
        raise ODataError(400, "BadRequest", "Only JSON batch requests are served here (Content-Type: "
                                            "application/json).")
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise ODataError(400, "BadRequest", "The batch request body is not valid JSON.") from None
    items = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise ODataError(400, "BadRequest", "The batch request must have a 'requests' array.")
    if len(items) > MAX_REQUESTS:
        raise ODataError(400, "BadRequest", f"The batch request exceeds the maximum {MAX_REQUESTS} operations.")
    transactional = request.headers.get("isolation", "").lower() == "snapshot"
    saved = _snapshot(api) if transactional else None
    answers = []
    for item in items:
        if not isinstance(item, dict) or not item.get("url"):
            raise ODataError(400, "BadRequest", "Each batch request needs an 'id', a 'method' and a 'url'.")
        inner, rest = _inner_request(request, root, item)
        if rest.strip("/") == "$batch":
            raise ODataError(400, "BadRequest", "A batch request cannot contain another batch request.")
        try:
            response = await api.handle(inner, rest, root, principal)
        except ODataError as error:
            response = error.response()
        answers.append(_answer(item.get("id"), response))
        if saved is not None and response.status_code >= 400:
            _restore(api, saved)
            break
    return JSONResponse({"responses": answers}, status_code=200)


def _snapshot(api: "ApiV2") -> dict[str, Any]:
    with api.db.lock:
        return {cid: copy.deepcopy((c.tables, c.series, c.relations, c.lines_by_document))
                for cid, c in api.db.companies.items()}


def _restore(api: "ApiV2", saved: dict[str, Any]) -> None:
    with api.db.lock:
        for cid, (tables, series, relations, lines) in saved.items():
            company = api.db.companies[cid]
            company.tables, company.series, company.relations, company.lines_by_document = (
                tables, series, relations, lines)
