"""The Starlette app: the Entra token endpoint and ``/data/`` (service document, entity sets, entities by key,
a header's lines by navigation, ``$batch``), each data request behind the guard (call log, latency, injected
faults, Bearer token, per-user throttling); a ``$batch`` passes the guard once, as a whole."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlconnector.sandbox.common import Faults, SandboxClock
from mlconnector.sandbox.entra import openid_configuration

from . import batch as batching
from . import metadata
from .entities import ENTITIES, ENUMS, EntitySpec
from .errors import ODataError, bad_request, json_response, not_found
from .query import apply_select, parse_key, parse_query, requested_page_size, select_page, next_link
from .sandbox import ApiCall, App, FinOpsSandbox

# EntitySet, EntitySet(key) or EntitySet(key)/Navigation
_SEGMENT_RE = re.compile(r"^(?P<name>[A-Za-z_$][A-Za-z0-9_]*)"
                         r"(?:\((?P<key>.*)\)(?:/(?P<nav>[A-Za-z_][A-Za-z0-9_]*))?)?$")


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


async def token(request: Request) -> Response:
    sandbox: FinOpsSandbox = request.app.state.finops
    call = ApiCall("POST", request.url.path, "", form="token")
    sandbox.calls.append(call)
    await sandbox.faults.delay()
    response = await sandbox.token_endpoint(request)
    call.status = response.status_code
    return response


async def data(request: Request) -> Response:
    sandbox: FinOpsSandbox = request.app.state.finops
    call = ApiCall(request.method, request.url.path, request.url.query)
    sandbox.calls.append(call)
    try:
        await sandbox.faults.delay()
        fault = sandbox.injected_fault()
        if fault is not None:
            raise fault
        app = sandbox.authenticate(request)
        call.principal = app.client_id
        async with sandbox.throttle(app.client_id):
            if request.path_params.get("rest", "").strip("/") == "$batch":
                response = await _batch(request, sandbox, app, call)
            else:
                response = await _handle(request, sandbox, app)
    except ODataError as error:
        response = error.response()
    call.status = response.status_code
    return response


async def _handle(request: Request, sandbox: FinOpsSandbox, app: App) -> Response:
    rest = request.path_params.get("rest", "").strip("/")
    root = f"{_origin(request)}/data"
    if rest == "$metadata":
        if request.method != "GET":
            raise ODataError(405, f"The requested resource does not support http method '{request.method}'.")
        return Response(metadata.csdl(), media_type="application/xml")
    if rest == "":
        if request.method != "GET":
            raise ODataError(405, "The requested resource does not support http method "
                                  f"'{request.method}'.")
        return json_response({"@odata.context": f"{root}/$metadata",
                              "value": [{"name": n, "kind": "EntitySet", "url": n} for n in ENTITIES]})
    match = _SEGMENT_RE.match(rest)
    spec = ENTITIES.get(match.group("name")) if match else None
    if match is None or spec is None:
        # Entity set names are case-sensitive (CustomersV3, not customersv3 or CustomerV3).
        raise not_found(rest.split("(")[0])
    params = dict(request.query_params)
    key = match.group("key")
    if key is None:
        if request.method == "GET":
            return _collection(request, sandbox, app, spec, params, f"{root}/{spec.name}")
        if request.method == "POST":
            row = sandbox.create(spec, await _body(request), app.default_company)
            view = sandbox.view(spec, row)
            return json_response({"@odata.context": f"{root}/$metadata#{spec.name}/$entity", **view}, 201,
                                 {"Location": f"{root}/{spec.name}({_key_text(spec, row.values)})",
                                  "ETag": view["@odata.etag"]})
        raise ODataError(405, f"The requested resource does not support http method '{request.method}'.")
    values = parse_key(key, spec)
    if match.group("nav"):
        return await _navigation(request, sandbox, app, spec, values, match.group("nav"), root)
    row = sandbox.find(spec, values)
    cross_company = params.get("cross-company", "").lower() == "true"
    if spec.company_specific and request.method == "GET" and not cross_company \
            and str(values.get("dataAreaId", "")).lower() != app.default_company:
        row = None  # outside the user's default company and not asked across companies: not visible
    if row is None:
        raise not_found(spec.name)
    view = sandbox.view(spec, row)
    if request.method == "GET":
        query = parse_query(params, _queryable(sandbox, spec))
        return json_response({"@odata.context": f"{root}/$metadata#{spec.name}/$entity",
                              **apply_select(view, query.select)}, headers={"ETag": view["@odata.etag"]})
    if request.method == "PATCH":
        match_etag = request.headers.get("if-match")
        if match_etag and match_etag != "*" and match_etag != view["@odata.etag"]:
            raise ODataError(412, "The record has been changed by another user since it was read.")
        sandbox.update(spec, row, await _body(request))
        return Response(status_code=204, headers={"OData-Version": "4.0"})
    if request.method == "DELETE":
        sandbox.delete(spec, row)
        return Response(status_code=204, headers={"OData-Version": "4.0"})
    raise ODataError(405, f"The requested resource does not support http method '{request.method}'.")


async def _navigation(request: Request, sandbox: FinOpsSandbox, app: App, spec: EntitySpec, values: dict[str, Any],
                      nav: str, root: str) -> Response:
    """``Header(key)/Lines``: GET lists the header's lines; POST creates a line of that header (its header key
    and company come from the header), the form a changeset uses with ``$1/SalesOrderLines``."""
    if spec.lines_nav is None or nav != spec.lines_nav:
        raise not_found(nav)
    header = sandbox.find(spec, values)
    cross_company = request.query_params.get("cross-company", "").lower() == "true"
    if header is None or (request.method == "GET" and not cross_company
                          and str(values.get("dataAreaId", "")).lower() != app.default_company):
        raise not_found(spec.name)
    line_spec = ENTITIES[nav]
    assert line_spec.parent is not None
    _, header_key, line_field = line_spec.parent
    if request.method == "GET":
        rows = [sandbox.view(line_spec, r) for r in sandbox.lines_of(spec, header)]
        return json_response({"@odata.context": f"{root}/$metadata#{line_spec.name}", "value": rows})
    if request.method != "POST":
        raise ODataError(405, f"The requested resource does not support http method '{request.method}'.")
    body = await _body(request)
    company = header.values["dataAreaId"]
    for name, value in ((line_field, header.values[header_key]), ("dataAreaId", company)):
        if body.get(name) not in (None, "") and str(body[name]).lower() != str(value).lower():
            raise bad_request(f"The property '{name}' does not match the entity the request is addressed to.")
        body[name] = value
    row = sandbox.create(line_spec, body, company)
    view = sandbox.view(line_spec, row)
    return json_response({"@odata.context": f"{root}/$metadata#{line_spec.name}/$entity", **view}, 201,
                         {"Location": f"{root}/{line_spec.name}({_key_text(line_spec, row.values)})",
                          "ETag": view["@odata.etag"]})


async def _batch(request: Request, sandbox: FinOpsSandbox, app: App, call: ApiCall) -> Response:
    """``POST /data/$batch``: see ``batch.py``. Each operation runs through the same handlers as a single
    request would, without passing the guard again (auth and throttling apply to the batch as a whole)."""
    if request.method != "POST":
        raise ODataError(405, f"The requested resource does not support http method '{request.method}'.")
    items = batching.parse_batch(request.headers.get("content-type", ""), await request.body())

    async def dispatch(op: batching.Operation, target: str) -> batching.OperationResult:
        path, _, query = target.partition("?")
        headers = [(b"host", request.headers.get("host", "localhost").encode("latin-1"))]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in op.headers.items() if k != "host"]
        scope = {"type": "http", "method": op.method, "scheme": request.url.scheme, "root_path": "",
                 "path": f"/data/{unquote(path)}", "raw_path": f"/data/{path}".encode(),
                 "query_string": query.encode(), "headers": headers, "server": request.scope.get("server"),
                 "app": request.scope.get("app"), "path_params": {"rest": unquote(path)},
                 "http_version": "1.1"}
        body = op.body

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            response = await _handle(Request(scope, receive), sandbox, app)
        except ODataError as error:
            response = error.response()
        result = batching.result_of(response)
        call.operations.append(f"{op.method} {urlsplit(target).path or target} -> {result.status}")
        return result

    results = await batching.run_batch(items, dispatch, sandbox.transaction)
    return batching.batch_response(results)


def _queryable(sandbox: FinOpsSandbox, spec: EntitySpec) -> EntitySpec:
    """The entity as queries see it: with the modified-time field where one was added."""
    modified = sandbox.modified_fields.get(spec.name)
    return replace(spec, fields={**spec.fields, modified: "datetime"}) if modified else spec


def _collection(request: Request, sandbox: FinOpsSandbox, app: App, spec: EntitySpec, params: dict[str, str],
                url: str) -> Response:
    spec = _queryable(sandbox, spec)
    query = parse_query(params, spec)
    rows = sandbox.rows(spec)
    if spec.company_specific and not query.cross_company:
        # odata.md: "By default, OData returns only data that belongs to the user's default company."
        rows = [r for r in rows if r.get("dataAreaId") == app.default_company]
    page = select_page(rows, query, spec, requested_page_size(request.headers.get("prefer")))
    body: dict[str, Any] = {"@odata.context": f"{url.rsplit('/', 1)[0]}/$metadata#{spec.name}"}
    if query.count:
        body["@odata.count"] = page.count
    body["value"] = [apply_select(r, query.select) for r in page.rows]
    if page.next_token:
        body["@odata.nextLink"] = next_link(url, query, page.next_token)
    return json_response(body)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("An entity was expected in the request body.")
    return body


def _key_text(spec: EntitySpec, values: dict[str, Any]) -> str:
    parts = []
    for name in spec.keys:
        value = values.get(name)
        parts.append(f"{name}={value}" if isinstance(value, (int, float)) else
                     f"{name}='{str(value).replace(chr(39), chr(39) * 2)}'")
    return ",".join(parts)


async def metadata_service(request: Request) -> Response:
    """``/Metadata/DataEntities``, ``/Metadata/PublicEntities[('Name')]``, ``/Metadata/PublicEnumerations`` (the
    metadata service, read-only, behind the same Entra token as ``/data``)."""
    sandbox: FinOpsSandbox = request.app.state.finops
    call = ApiCall(request.method, request.url.path, request.url.query)
    sandbox.calls.append(call)
    try:
        sandbox.authenticate(request)
        if request.method != "GET":
            raise ODataError(405, f"The requested resource does not support http method '{request.method}'.")
        response = _metadata_answer(request)
    except ODataError as error:
        response = error.response()
    call.status = response.status_code
    return response


def _metadata_answer(request: Request) -> Response:
    rest = request.path_params.get("rest", "").strip("/")
    root = f"{_origin(request)}/Metadata"
    match = re.fullmatch(r"(?P<set>DataEntities|PublicEntities|PublicEnumerations)(?:\('(?P<key>[^']*)'\))?", rest)
    if match is None:
        raise not_found(rest)
    kind, key = match.group("set"), match.group("key")
    if kind == "PublicEnumerations":
        items = {name: metadata.public_enumeration(name) for name in ENUMS}
    elif kind == "PublicEntities":
        items = {spec.type_name: metadata.public_entity(spec) for spec in ENTITIES.values()}
    else:
        items = {spec.aot: metadata.data_entity(spec) for spec in ENTITIES.values()}
    if key is not None:
        if key not in items:
            raise not_found(f"{kind}('{key}')")
        return json_response({"@odata.context": f"{root}/$metadata#{kind}/$entity", **items[key]})
    return json_response({"@odata.context": f"{root}/$metadata#{kind}", "value": list(items.values())})


def create_app(*, clock: SandboxClock | None = None, faults: Faults | None = None,
               resource: str = "https://usmf-test.operations.dynamics.com") -> Starlette:
    """The F&O emulator; its state and helpers are ``app.state.finops``. ``resource`` is the environment URL
    tokens must be requested for (scope ``{resource}/.default``)."""
    methods = ["GET", "POST", "PATCH", "DELETE"]
    sandbox = FinOpsSandbox(clock, faults, resource=resource)

    def known(tenant: str) -> bool:
        return any(app.tenant == tenant.lower() for app in sandbox.apps.values())
    app = Starlette(routes=[
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration(known), methods=["GET"]),
        Route("/{tenant}/.well-known/openid-configuration", openid_configuration(known, "v1.0"), methods=["GET"]),
        Route("/data", data, methods=methods),
        Route("/data/{rest:path}", data, methods=methods),
        Route("/Metadata/{rest:path}", metadata_service, methods=methods),
    ])
    app.state.finops = sandbox
    return app
