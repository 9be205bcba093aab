"""The CRM API routes: records, COQL, org, users, Bulk Write and notification channels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from mlconnector.sandbox.common import JSONResponse, loads

from . import bulk, coql, watch
from .errors import RecordError, ZohoError, invalid_module, required_param
from .modules import ModuleSpec
from .oauth import AccessToken
from .sandbox import ZohoSandbox
from .store import WriteOutcome

MAX_WRITE_RECORDS = 100
MAX_PER_PAGE = 200
MAX_LIST_FIELDS = 50
DISCRETE_PAGE_LIMIT = 2000
PAGE_TOKEN_REACH = 100_000
SORTABLE = ("id", "Created_Time", "Modified_Time")


@dataclass
class Call:
    """One authenticated API call; handlers set ``credits`` to what Zoho would charge for it."""

    sandbox: ZohoSandbox
    token: AccessToken
    credits: int = 1


Handler = Callable[[Request, Call], Awaitable[Response]]
# Whether a call is resource-intensive (under the sub-concurrency limit), decided as it arrives.
Heaviness = Callable[[Request], Awaitable[bool]]
HEAVY_WRITE_RECORDS = 10  # insert/update/upsert of more records than this is resource-intensive


# -- which calls count against the sub-concurrency limit (API limits page) ---------------------------------------
# Get records with cvid or sort_by, Convert Lead, Insert/Update/Upsert of more than 10 records, Send Mail, Search
# invoked from a function, and COQL. The sandbox serves records, upsert and COQL of these.

async def light(request: Request) -> bool:
    return False


async def heavy(request: Request) -> bool:
    return True


async def sorted_or_viewed(request: Request) -> bool:
    """Get records with ``sort_by`` or ``cvid``."""
    return "sort_by" in request.query_params or "cvid" in request.query_params


async def many_records(request: Request) -> bool:
    """Insert, update or upsert of more than 10 records (a body that does not parse is not)."""
    try:
        body = await _parsed(request)
    except ValueError:
        return False
    data = body.get("data") if isinstance(body, dict) else None
    return isinstance(data, list) and len(data) > HEAVY_WRITE_RECORDS


def no_content() -> Response:
    return Response(status_code=204)


def module_spec(call: Call, request: Request) -> ModuleSpec:
    name = request.path_params["module"]
    spec = call.sandbox.spec(name)
    if spec is None:
        raise invalid_module(name)
    return spec


async def _parsed(request: Request) -> Any:
    """The request's JSON body, parsed once (the concurrency check and the route both read it)."""
    if "mlconnector.json" not in request.scope:
        try:
            request.scope["mlconnector.json"] = (loads(await request.body() or b"null"), None)
        except ValueError as exc:
            request.scope["mlconnector.json"] = (None, exc)
    body, error = request.scope["mlconnector.json"]
    if error is not None:
        raise error
    return body


async def json_body(request: Request) -> Any:
    try:
        return await _parsed(request)
    except ValueError:
        raise ZohoError(400, "INVALID_DATA", "invalid data", {"expected_data_type": "jsonobject"}) from None


def write_items(body: Any) -> list[Any]:
    """The ``data`` array of a write, with Zoho's 100-record cap."""
    if not isinstance(body, dict) or "data" not in body:
        raise ZohoError(400, "MANDATORY_NOT_FOUND", "required field not found",
                        {"api_name": "data", "json_path": "$.data"})
    items = body["data"]
    if not isinstance(items, list) or not items:
        raise ZohoError(400, "INVALID_DATA", "invalid data",
                        {"expected_data_type": "jsonarray", "api_name": "data", "json_path": "$.data"})
    if len(items) > MAX_WRITE_RECORDS:
        raise ZohoError(400, "LIMIT_EXCEEDED", "limit exceeded",
                        {"limit": MAX_WRITE_RECORDS, "api_name": "data", "json_path": "$.data"})
    return items


def multi_status(items: list[dict[str, Any]], success: int, key: str = "data") -> JSONResponse:
    """Zoho's per-item answer: all succeeded -> ``success`` status, mixed -> 207, none -> 400."""
    ok = sum(1 for item in items if item.get("status") == "success")
    status = success if ok == len(items) else 400 if ok == 0 else 207
    return JSONResponse({key: items}, status_code=status)


def write_credits(count: int) -> int:
    """Insert/update/upsert cost one credit per 10 records."""
    return max(1, math.ceil(count / 10))


# -- records ------------------------------------------------------------------------------------------------

async def list_records(request: Request, call: Call) -> Response:
    spec = module_spec(call, request)
    query = request.query_params
    fields = [f.strip() for f in query.get("fields", "").split(",") if f.strip()]
    if not fields:
        raise required_param("fields")
    if len(fields) > MAX_LIST_FIELDS:
        raise ZohoError(400, "LIMIT_EXCEEDED", "limit exceeded", {"limit": MAX_LIST_FIELDS, "param_name": "fields"})
    sort_by = query.get("sort_by", "id")
    sort_order = query.get("sort_order", "desc")
    if sort_by not in SORTABLE:
        raise ZohoError(400, "INVALID_DATA", "invalid data", {"param_name": "sort_by", "supported_values": SORTABLE})
    if sort_order not in ("asc", "desc"):
        raise ZohoError(400, "INVALID_DATA", "invalid data",
                        {"param_name": "sort_order", "supported_values": ["asc", "desc"]})
    per_page = min(_int_param(query, "per_page", MAX_PER_PAGE), MAX_PER_PAGE)
    ids = tuple(i for i in query.get("ids", "").split(",") if i)
    binding = (spec.api_name, tuple(fields), sort_by, sort_order, per_page, ids)
    offset = _page_offset(call, query, binding, per_page)
    if offset >= PAGE_TOKEN_REACH:
        raise ZohoError(400, "PAGINATION_LIMIT_EXCEEDED", "pagination limit exceeded", {"limit": PAGE_TOKEN_REACH})
    records = [r for r in call.sandbox.store.all(spec.api_name) if not ids or r["id"] in ids]
    records = coql.order(records, ((sort_by, sort_order == "desc"),))
    chunk = records[offset:offset + per_page]
    if not chunk:
        return no_content()
    more = len(records) > offset + per_page
    info: dict[str, Any] = {"per_page": per_page, "next_page_token": None, "count": len(chunk), "sort_by": sort_by,
                            "page": offset // per_page + 1, "previous_page_token": None, "page_token_expiry": None,
                            "sort_order": sort_order, "email": False, "more_records": more}
    if more:
        info["next_page_token"], info["page_token_expiry"] = call.sandbox.new_page_token(binding, offset + per_page)
    if offset > 0:
        info["previous_page_token"], _ = call.sandbox.new_page_token(binding, max(0, offset - per_page))
    data = [{**{f: r.get(f) for f in fields if f != spec.line_items}, "id": r["id"]} for r in chunk]
    return JSONResponse({"data": data, "info": info})


def _int_param(query: Any, name: str, default: int) -> int:
    try:
        value = int(query.get(name, default))
    except ValueError:
        raise ZohoError(400, "INVALID_DATA", "invalid data", {"param_name": name, "expected_data_type": "integer"}) \
            from None
    if value < 1:
        raise ZohoError(400, "INVALID_DATA", "invalid data", {"param_name": name})
    return value


def _page_offset(call: Call, query: Any, binding: tuple[Any, ...], per_page: int) -> int:
    """Where a list call starts: ``page`` (first 2,000 records only) or a ``page_token`` (up to 100,000)."""
    token = query.get("page_token")
    if token and "page" in query:
        raise ZohoError(400, "AMBIGUITY_DURING_PROCESSING", "ambiguity while processing the request",
                        {"ambiguity_due_to": ["page", "page_token"]})
    if token:
        stored = call.sandbox.page_tokens.get(token)
        if stored is None:
            raise ZohoError(400, "INVALID_DATA", "invalid data",
                            {"api_name": "page_token", "json_path": "$.query.page_token"})
        if stored.expires_at <= call.sandbox.clock.now():
            raise ZohoError(400, "EXPIRED_VALUE", "the given page_token has expired",
                            {"api_name": "page_token", "json_path": "$.query.page_token"})
        if stored.binding != binding:
            raise ZohoError(400, "TOKEN_BOUND_DATA_MISMATCH", "the page_token does not match the other parameters",
                            {"api_name": "page_token", "json_path": "$.query.page_token"})
        return stored.offset
    offset = (_int_param(query, "page", 1) - 1) * per_page
    if offset + per_page > DISCRETE_PAGE_LIMIT:
        raise ZohoError(400, "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                        "the requested page is beyond the limit; use page_token", {"limit": DISCRETE_PAGE_LIMIT})
    return offset


async def get_record(request: Request, call: Call) -> Response:
    spec = module_spec(call, request)
    record = call.sandbox.store.get(spec.api_name, request.path_params["record_id"])
    if record is None:
        return no_content()
    return JSONResponse({"data": [call.sandbox.store.view(spec, record, subforms=True)]})


def success_item(call: Call, spec: ModuleSpec, outcome: WriteOutcome, upsert: bool = False) -> dict[str, Any]:
    details = call.sandbox.store.details(outcome.record_id, spec.api_name)
    message = "record added" if outcome.action == "insert" else "record updated"
    if upsert:
        return {"code": "SUCCESS", "duplicate_field": outcome.duplicate_field, "action": outcome.action,
                "details": details, "message": message, "status": "success"}
    return {"code": "SUCCESS", "details": details, "message": message, "status": "success"}


async def _write(request: Request, call: Call, one: Callable[[ModuleSpec, Any, str], WriteOutcome],
                 success: int, upsert: bool = False) -> Response:
    spec = module_spec(call, request)
    body = await json_body(request)
    items = write_items(body)
    call.credits = write_credits(len(items))
    answers, done = [], []
    for index, data in enumerate(items):
        try:
            outcome = one(spec, data, f"$.data[{index}]")
        except RecordError as error:
            answers.append(error.body())
            continue
        done.append(outcome)
        answers.append(success_item(call, spec, outcome, upsert))
    call.sandbox.notify(spec, done)
    return multi_status(answers, success)


async def insert_records(request: Request, call: Call) -> Response:
    return await _write(request, call, call.sandbox.store.insert, 201)


async def update_records(request: Request, call: Call) -> Response:
    path_id = request.path_params.get("record_id")

    def one(spec: ModuleSpec, data: Any, path: str) -> WriteOutcome:
        record_id = path_id or (data.get("id") if isinstance(data, dict) else None)
        if not record_id:
            raise RecordError.mandatory("id", f"{path}.id")
        return call.sandbox.store.update(spec, str(record_id), data, path)
    return await _write(request, call, one, 200)


async def upsert_records(request: Request, call: Call) -> Response:
    spec = module_spec(call, request)
    body = await json_body(request)
    check = _duplicate_check_fields(call, spec, body)
    return await _write(request, call, lambda s, data, path: call.sandbox.store.upsert(s, data, path, check),
                        200, upsert=True)


def _duplicate_check_fields(call: Call, spec: ModuleSpec, body: Any) -> list[str]:
    """The upsert key order: as given, else system duplicate-check fields then user-defined unique fields."""
    allowed = call.sandbox.store.duplicate_check_fields(spec)
    given = body.get("duplicate_check_fields") if isinstance(body, dict) else None
    if given is None:
        return allowed
    if not isinstance(given, list):
        raise ZohoError(400, "INVALID_DATA", "invalid data", {"expected_data_type": "jsonarray",
                                                              "api_name": "duplicate_check_fields",
                                                              "json_path": "$.duplicate_check_fields"})
    for index, name in enumerate(given):
        if name not in allowed:
            raise ZohoError(400, "INVALID_DATA", "invalid data", {"api_name": "duplicate_check_fields",
                                                                  "json_path": f"$.duplicate_check_fields[{index}]"})
    return list(given)


async def delete_records(request: Request, call: Call) -> Response:
    spec = module_spec(call, request)
    path_id = request.path_params.get("record_id")
    ids = [path_id] if path_id else [i for i in request.query_params.get("ids", "").split(",") if i]
    if not ids:
        raise required_param("ids")
    if len(ids) > MAX_WRITE_RECORDS:
        raise ZohoError(400, "LIMIT_EXCEEDED", "limit exceeded", {"limit": MAX_WRITE_RECORDS, "param_name": "ids"})
    answers, done, values = [], [], {}
    for record_id in ids:
        removed = call.sandbox.store.delete(spec, record_id)
        if removed is None:
            answers.append(RecordError("INVALID_DATA", "the id given seems to be invalid", {"id": record_id}).body())
            continue
        done.append(WriteOutcome(record_id, "delete"))
        values[record_id] = {"Modified_By": call.sandbox.user.minified(), "Record_Status__s": 0}
        answers.append({"code": "SUCCESS", "details": {"id": record_id}, "message": "record deleted",
                        "status": "success"})
    call.sandbox.notify(spec, done, operation="delete", values=values)
    return multi_status(answers, 200)


# -- COQL -------------------------------------------------------------------------------------------------------

async def run_coql(request: Request, call: Call) -> Response:
    body = await json_body(request)
    text = body.get("select_query") if isinstance(body, dict) else None
    if not text:
        raise ZohoError(400, "MANDATORY_NOT_FOUND", "mandatory key not found", {"api_name": "select_query"})
    query = coql.parse(str(text))
    coql.check_literals(query.where)
    spec = call.sandbox.spec(query.module)
    if spec is None:
        raise ZohoError(400, "INVALID_MODULE", "the given module is not supported in api")
    if not call.token.allows("ZohoCRM.modules", "READ"):
        raise ZohoError(401, "OAUTH_SCOPE_MISMATCH", "Unauthorized")
    call.credits = coql.credits_for(query.limit)
    matched = [r for r in call.sandbox.store.all(spec.api_name) if coql.matches(r, query.where)]
    ordered = coql.order(matched, query.order_by)
    chunk = ordered[query.offset:query.offset + query.limit]
    if not chunk:
        return no_content()
    data = [coql.project(r, query.fields, spec.line_items) for r in chunk]
    more = len(ordered) > query.offset + query.limit
    return JSONResponse({"data": data, "info": {"count": len(data), "more_records": more}})


# -- org and users ---------------------------------------------------------------------------------------------

async def get_org(request: Request, call: Call) -> Response:
    sandbox = call.sandbox
    paid = sandbox.edition != "free"
    org = {
        "id": sandbox.org_id, "zgid": sandbox.zgid, "domain_name": f"org{sandbox.zgid}", "type": "production",
        "company_name": "Sandbox Trading Ltd", "alias": None, "primary_email": sandbox.user.email,
        "primary_zuid": "75092197", "country_code": "US", "time_zone": sandbox.time_zone,
        **_home_currency(sandbox), "currency_locale": "en_US", "mc_status": sandbox.schema.currencies.enabled, "gapps_enabled": False, "max_per_page": MAX_PER_PAGE, "hipaa_compliance_enabled": False,
        "license_details": {
            "paid_expiry": sandbox.timestamp(sandbox.clock.now().replace(year=sandbox.clock.now().year + 1))
            if paid else None,
            "users_license_purchased": 10 if paid else 3, "trial_type": None, "trial_expiry": None,
            "paid": paid, "paid_type": sandbox.edition, "portal_users_license_purchased": 0,
        },
    }
    return JSONResponse({"org": [org]})


def _home_currency(sandbox: ZohoSandbox) -> dict[str, Any]:
    home = next(c for c in sandbox.schema.currencies.json() if c["is_base"])
    return {"currency": home["name"], "iso_code": home["iso_code"], "currency_symbol": home["symbol"]}


async def get_currencies(request: Request, call: Call) -> Response:
    """The org's currencies (https://www.zoho.com/crm/developer/docs/api/v8/get-currencies-data.html): the home
    currency alone until multi-currency is on."""
    return JSONResponse({"currencies": call.sandbox.schema.currencies.json()})


async def get_users(request: Request, call: Call) -> Response:
    kind = request.query_params.get("type", "AllUsers")
    kinds = ("AllUsers", "ActiveUsers", "DeactiveUsers", "ConfirmedUsers", "NotConfirmedUsers", "DeletedUsers",
             "ActiveConfirmedUsers", "AdminUsers", "ActiveConfirmedAdmins", "CurrentUser")
    if kind not in kinds:
        raise ZohoError(400, "INVALID_DATA", "invalid data", {"param_name": "type", "supported_values": kinds})
    if kind in ("DeactiveUsers", "NotConfirmedUsers", "DeletedUsers"):
        return no_content()
    sandbox = call.sandbox
    first, _, last = sandbox.user.name.partition(" ")
    user = {"id": sandbox.user.id, "full_name": sandbox.user.name, "first_name": first, "last_name": last,
            "email": sandbox.user.email, "status": "active", "confirm": True, "zuid": "75092197",
            "role": {"name": "CEO", "id": "5725767000000026005"},
            "profile": {"name": "Administrator", "id": "5725767000000026011"},
            "time_zone": sandbox.time_zone, "locale": "en_US", "country": "US",
            "created_time": "2024-01-02T09:00:00+00:00", "Modified_Time": "2024-01-02T09:00:00+00:00"}
    return JSONResponse({"users": [user], "info": {"per_page": 200, "count": 1, "page": 1, "more_records": False}})


# -- Bulk Write ------------------------------------------------------------------------------------------------

async def upload_file(request: Request, call: Call) -> Response:
    sandbox = call.sandbox
    feature = request.headers.get("feature")
    org = request.headers.get("x-crm-org")
    if not feature:
        raise ZohoError(400, "MANDATORY_NOT_FOUND", "Required key feature is not available")
    if feature != "bulk-write":
        raise ZohoError(400, "INVALID_DATA", "Invalid data - feature")
    if not org:
        raise ZohoError(400, "MANDATORY_NOT_FOUND", "Required key x-crm-org is not available")
    if org != sandbox.zgid:
        raise ZohoError(400, "INVALID_DATA", "Invalid data - x-crm-org")
    part = bulk.multipart_file(request.headers.get("content-type", ""), await request.body())
    if part is None:
        raise ZohoError(400, "MANDATORY_NOT_FOUND", "Required key file is not available")
    name, data = part
    file_id = sandbox.new_id()
    sandbox.files[file_id] = bulk.read_upload(file_id, name, data)
    return JSONResponse({"status": "success", "code": "FILE_UPLOAD_SUCCESS", "message": "file uploaded.",
                         "details": {"file_id": file_id, "created_time": sandbox.timestamp()}})


async def create_bulk_job(request: Request, call: Call) -> Response:
    sandbox = call.sandbox
    body = await json_body(request)
    operation, resource, spec = bulk.validate_job(body, sandbox.files, sandbox.spec)
    job = bulk.BulkJob(
        id=sandbox.new_id(), operation=operation, module=spec, file=sandbox.files[str(resource["file_id"])],
        find_by=resource.get("find_by"), field_mappings=resource["field_mappings"],
        ignore_empty=bool(resource.get("ignore_empty", body.get("ignore_empty", False))),
        callback=body.get("callback"), created_time=sandbox.timestamp(), created_by=sandbox.user.minified(),
        created_at=sandbox.clock.now())
    sandbox.jobs[job.id] = job
    call.credits = 500  # Bulk Write initialize
    return JSONResponse({"status": "success", "code": "SUCCESS", "message": "success",
                         "details": {"id": job.id, "created_by": job.created_by}}, status_code=201)


def _job(call: Call, request: Request) -> bulk.BulkJob:
    job = call.sandbox.jobs.get(request.path_params["job_id"])
    if job is None:
        raise ZohoError(404, "RESOURCE_NOT_FOUND", "The requested resource doesn't exist.")
    return job


async def get_bulk_job(request: Request, call: Call) -> Response:
    job = _job(call, request)
    call.sandbox.poll_job(job)
    return JSONResponse(bulk.job_details(job, call.sandbox.api_domain))


async def download_bulk_result(request: Request, call: Call) -> Response:
    job = _job(call, request)
    if job.result_zip is None:
        raise ZohoError(404, "RESOURCE_NOT_FOUND", "The requested resource doesn't exist.")
    return Response(job.result_zip, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{job.id}.zip"'})


# -- notification channels --------------------------------------------------------------------------------------

def _known_modules(call: Call) -> set[str]:
    return {name for name in call.sandbox.module_names() if call.sandbox.spec(name) is not None}


def _live_channels(call: Call) -> dict[str, watch.Channel]:
    now = call.sandbox.clock.now()
    channels = call.sandbox.channels
    for channel_id in [c for c, ch in channels.items() if ch.expiry <= now]:
        del channels[channel_id]
    return channels


async def list_channels(request: Request, call: Call) -> Response:
    channels = _live_channels(call)
    wanted_id = request.query_params.get("channel_id")
    wanted_module = request.query_params.get("module")
    entries = []
    for channel in channels.values():
        if wanted_id and channel.channel_id != wanted_id:
            continue
        for entry in watch.listing(channel, call.sandbox.api_domain, call.sandbox.timestamp(channel.expiry),
                                   call.sandbox.schema.ids()):
            if not wanted_module or entry["resource_name"] == wanted_module:
                entries.append(entry)
    if not entries:
        return no_content()
    return JSONResponse({"watch": entries, "info": {"per_page": 200, "page": 1, "count": len(entries),
                                                    "more_records": False}})


async def _change_channels(request: Request, call: Call, mode: str) -> Response:
    """POST (enable, adding events), PUT (replace) and PATCH (change given details or ``_delete_events``)."""
    items = watch.watch_items(await json_body(request))
    channels = _live_channels(call)
    known = _known_modules(call)
    now = call.sandbox.clock.now()
    answers = []
    for index, item in enumerate(items):
        path = f"$.watch[{index}]"
        try:
            answers.append(_change_channel(call, channels, known, item, path, now, mode))
        except RecordError as error:
            answers.append(error.body())
    return multi_status(answers, 201 if mode == "enable" else 200, key="watch")


def _change_channel(call: Call, channels: dict[str, watch.Channel], known: set[str], item: Any, path: str,
                    now: datetime, mode: str) -> dict[str, Any]:
    channel_id = str(item.get("channel_id", "")) if isinstance(item, dict) else ""
    current = channels.get(channel_id)
    if mode != "enable" and current is None and channel_id:
        raise RecordError("NOT_SUBSCRIBED", "not subscribed for actions-watch of the given channel",
                          {"channel_id": channel_id})
    if mode == "patch" and isinstance(item, dict) and item.get("_delete_events") is True:
        assert current is not None
        gone = set(watch.validate_events(item.get("events"), path, known))
        current.events = [e for e in current.events if e not in gone]
        if not current.events:
            del channels[channel_id]
        message = "Successfully removed the subscribe details"
        channel = current
    else:
        channel = watch.channel_from(item, path, now, known, current, replace=(mode == "replace"))
        if mode == "enable" and current is not None:  # enabling again adds events to the channel
            channel.events = list(dict.fromkeys([*current.events, *channel.events]))
        channels[channel.channel_id] = channel
        message = ("Successfully subscribed for actions-watch of the given module" if mode == "enable"
                   else "Successfully updated the subscribe details")
    expiry = call.sandbox.timestamp(channel.expiry)
    return {"code": "SUCCESS", "details": {"events": watch.event_details(channel, call.sandbox.api_domain, expiry,
                                                                     call.sandbox.schema.ids())},
            "message": message, "status": "success"}


async def enable_channels(request: Request, call: Call) -> Response:
    return await _change_channels(request, call, "enable")


async def replace_channels(request: Request, call: Call) -> Response:
    return await _change_channels(request, call, "replace")


async def patch_channels(request: Request, call: Call) -> Response:
    return await _change_channels(request, call, "patch")


async def disable_channels(request: Request, call: Call) -> Response:
    raw = request.query_params.get("channel_ids", "")
    ids = [i for i in raw.split(",") if i]
    if not ids:
        raise required_param("channel_ids")
    channels = _live_channels(call)
    answers = []
    for channel_id in ids:
        channel = channels.pop(channel_id, None)
        if channel is None:
            answers.append(RecordError("NOT_SUBSCRIBED", "not subscribed for actions-watch of the given channel",
                                       {"channel_id": channel_id}).body())
            continue
        # One item per module of the channel, as in Zoho's disable example (details name the resource, no events).
        for event in watch.event_details(channel, call.sandbox.api_domain, "", call.sandbox.schema.ids()):
            answers.append({"code": "SUCCESS", "details": {key: event[key] for key in
                                                           ("resource_uri", "resource_id", "channel_id")},
                            "message": "Successfully un-subscribed from actions-watch", "status": "success"})
    return multi_status(answers, 200, key="watch")
