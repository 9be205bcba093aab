"""Builds the Starlette app: accounts routes, API routes behind Zoho's auth, faults and credit counting."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ..common import Faults, JSONResponse, SandboxClock, ServerDate
from . import recycle, routes, search, settings
from .errors import ZohoError, error_body
from .oauth import AccessToken, revoke_endpoint, token_endpoint
from .sandbox import ZohoSandbox


def authenticate(sandbox: ZohoSandbox, request: Request) -> AccessToken:
    """``Authorization: Zoho-oauthtoken <token>``; a missing header and a bad token fail differently."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if not header or scheme != "Zoho-oauthtoken" or not value.strip():
        raise ZohoError(401, "AUTHENTICATION_FAILURE", "Authentication failed")
    token = sandbox.accounts.access_token(value.strip())
    if token is None:
        raise ZohoError(401, "INVALID_TOKEN", "invalid oauth token")
    return token


def client_of(sandbox: ZohoSandbox, request: Request) -> str | None:
    """The client app a call's access token belongs to, as the call arrives; None without a live token."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    token = sandbox.accounts.access_token(value.strip()) if scheme == "Zoho-oauthtoken" else None
    return token.client_id if token is not None else None


def too_many_requests(faults: Faults) -> Response:
    # Zoho's exact 429 body and headers are not documented; the sandbox sends Zoho's error shape with
    # TOO_MANY_REQUESTS (the code Zoho's API limits page and Kaizen #203 name) and a Retry-After so clients can
    # honour it.
    return ZohoError(429, "TOO_MANY_REQUESTS", "Too many requests. Please try again later.",
                     {"retry_after": faults.retry_after},
                     headers={"Retry-After": f"{faults.retry_after:g}"}).response()


def inject_faults(sandbox: ZohoSandbox) -> Response | None:
    """Injected throttling and outages, before the call does anything."""
    faults = sandbox.faults
    if faults.roll(faults.rate_limit):
        sandbox.calls["throttled"] += 1
        return too_many_requests(faults)
    if faults.roll(faults.server_error):
        sandbox.calls["server_error"] += 1
        if faults.rng.random() < 0.5:
            return ZohoError(500, "INTERNAL_ERROR", "Internal Server Error").response()
        # a gateway outage is not JSON: clients must not assume every error body parses
        return PlainTextResponse("Service Unavailable", status_code=503)
    return None


def api(sandbox: ZohoSandbox, name: str, family: str, operation: str, handler: routes.Handler,
        heavy: routes.Heaviness = routes.light) -> Any:
    """Wrap a handler: concurrency limits, latency, auth, scope, faults, the call counter and credits.

    A call is in flight for its client app from arrival until its response is produced, latency included. One
    that would cross the edition's concurrency limit, or (``heavy``: resource-intensive) the sub-concurrency
    limit, is not counted and is answered 429 ``TOO_MANY_REQUESTS`` after the latency and the auth checks.
    """
    async def endpoint(request: Request) -> Response:
        sandbox.bind_loop(asyncio.get_running_loop())
        client = client_of(sandbox, request)
        intensive = client is not None and await heavy(request)
        admitted = client is not None and sandbox.enter_call(client, intensive)
        try:
            await sandbox.faults.delay()
            token = authenticate(sandbox, request)
            op = operation or _operation(request.method)
            if not token.allows(family, op):
                raise ZohoError(401, "OAUTH_SCOPE_MISMATCH", "Unauthorized")
            if not admitted:
                sandbox.concurrency_refused += 1
                return too_many_requests(sandbox.faults)
            faulted = inject_faults(sandbox)
            if faulted is not None:
                return faulted
            sandbox.calls[name] += 1
            call = routes.Call(sandbox, token)
            response = await handler(request, call)
            sandbox.credits += call.credits
            return response
        except ZohoError as error:
            return error.response()
        finally:
            if admitted:
                sandbox.leave_call(client, intensive)  # type: ignore[arg-type]
    return endpoint


def _operation(method: str) -> str:
    return {"GET": "READ", "POST": "CREATE", "PUT": "UPDATE", "PATCH": "UPDATE", "DELETE": "DELETE"}[method]


def _by_method(sandbox: ZohoSandbox, family: str, table: dict[str, tuple[Any, ...]]) -> Any:
    """One path, several methods: each method has its own handler, counter name and (optionally) heaviness."""
    endpoints = {method: api(sandbox, entry[0], family, "", *entry[1:]) for method, entry in table.items()}

    async def endpoint(request: Request) -> Response:
        return await endpoints[request.method](request)
    return endpoint


def build_routes(sandbox: ZohoSandbox) -> list[Route]:
    token = token_endpoint(sandbox.accounts)
    revoke = revoke_endpoint(sandbox.accounts)
    records = "ZohoCRM.modules"
    return [
        # Accounts server (this DC, or any DC via /accounts/{dc}/... so one app can stand in for several)
        Route("/oauth/v2/token", token, methods=["POST"]),
        Route("/oauth/v2/token/revoke", revoke, methods=["POST"]),
        Route("/accounts/{dc}/oauth/v2/token", token, methods=["POST"]),
        Route("/accounts/{dc}/oauth/v2/token/revoke", revoke, methods=["POST"]),
        # CRM API v8
        Route("/crm/v8/org", api(sandbox, "org", "ZohoCRM.org", "READ", routes.get_org), methods=["GET"]),
        Route("/crm/v8/org/currencies", api(sandbox, "currencies", "ZohoCRM.settings", "READ",
                                             routes.get_currencies), methods=["GET"]),
        Route("/crm/v8/users", api(sandbox, "users", "ZohoCRM.users", "READ", routes.get_users), methods=["GET"]),
        Route("/crm/v8/coql", api(sandbox, "coql", "ZohoCRM.coql", "READ", routes.run_coql,
                                           routes.heavy), methods=["POST"]),
        Route("/crm/v8/upload", api(sandbox, "upload", "ZohoFiles.files", "CREATE", routes.upload_file),
              methods=["POST"]),
        Route("/crm/v8/actions/watch", _by_method(sandbox, "ZohoCRM.notifications", {
            "GET": ("watch.list", routes.list_channels), "POST": ("watch.enable", routes.enable_channels),
            "PUT": ("watch.replace", routes.replace_channels), "PATCH": ("watch.patch", routes.patch_channels),
            "DELETE": ("watch.disable", routes.disable_channels),
        }), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        # Metadata (modules and fields) and the calls that add custom fields and modules
        Route("/crm/v8/settings/modules", _by_method(sandbox, "ZohoCRM.settings", {
            "GET": ("settings.modules", settings.get_modules), "POST": ("settings.modules.create",
                                                                         settings.create_modules),
        }), methods=["GET", "POST"]),
        Route("/crm/v8/settings/modules/{module}", api(sandbox, "settings.module", "ZohoCRM.settings", "READ",
                                                       settings.get_module), methods=["GET"]),
        Route("/crm/v8/settings/fields", _by_method(sandbox, "ZohoCRM.settings", {
            "GET": ("settings.fields", settings.get_fields), "POST": ("settings.fields.create",
                                                                       settings.create_fields),
        }), methods=["GET", "POST"]),
        Route("/crm/v8/settings/fields/{field_id}", _by_method(sandbox, "ZohoCRM.settings", {
            "GET": ("settings.field", settings.get_field), "PATCH": ("settings.fields.update",
                                                                      settings.update_field),
        }), methods=["GET", "PATCH"]),
        Route("/crm/bulk/v8/write", api(sandbox, "bulk_write.create", "ZohoCRM.bulk", "CREATE",
                                        routes.create_bulk_job), methods=["POST"]),
        Route("/crm/bulk/v8/write/{job_id}", api(sandbox, "bulk_write.get", "ZohoCRM.bulk", "READ",
                                                 routes.get_bulk_job), methods=["GET"]),
        Route("/crm/bulk/v8/write/{job_id}/result", api(sandbox, "bulk_write.result", "ZohoCRM.bulk", "READ",
                                                        routes.download_bulk_result), methods=["GET"]),
        Route("/crm/v8/{module}/upsert", api(sandbox, "records.upsert", records, "CREATE", routes.upsert_records,
                                                  routes.many_records),
              methods=["POST"]),
        Route("/crm/v8/{module}/search", api(sandbox, "records.search", records, "READ", search.search_records),
              methods=["GET"]),
        Route("/crm/v8/{module}/deleted", api(sandbox, "records.deleted.list", records, "READ", recycle.deleted_records),
              methods=["GET"]),
        Route("/crm/v8/{module}/actions/add_tags", api(sandbox, "records.add_tags", records, "CREATE",
                                                       recycle.add_tags), methods=["POST"]),
        Route("/crm/v8/{module}/actions/remove_tags", api(sandbox, "records.remove_tags", records, "CREATE",
                                                          recycle.remove_tags), methods=["POST"]),
        Route("/crm/v8/{module}", _by_method(sandbox, records, {
            "GET": ("records.list", routes.list_records, routes.sorted_or_viewed),
            "POST": ("records.insert", routes.insert_records, routes.many_records),
            "PUT": ("records.update", routes.update_records, routes.many_records),
            "DELETE": ("records.delete", routes.delete_records),
        }), methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/crm/v8/{module}/{record_id}", _by_method(sandbox, records, {
            "GET": ("records.get", routes.get_record),
            "PUT": ("records.update", routes.update_records, routes.many_records),
            "DELETE": ("records.delete", routes.delete_records),
        }), methods=["GET", "PUT", "DELETE"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer in Zoho's JSON, not Starlette's plain text."""
    status = getattr(exc, "status_code", 500)
    if status == 405:
        return JSONResponse(error_body("INVALID_REQUEST_METHOD", "The http request method type is not a valid one",
                                       {}), status_code=400)
    if status == 404:
        return JSONResponse(error_body("INVALID_URL_PATTERN",
                                       "Please check if the URL trying to access is a correct one"), status_code=404)
    return JSONResponse(error_body("INTERNAL_ERROR", "Internal Server Error"), status_code=status)


def create_app(*, clock: SandboxClock | None = None, faults: Faults | str | None = None, data_centre: str = "us",
               edition: str = "enterprise", api_domain: str | None = None, time_zone: str = "America/Los_Angeles",
               notify_transport: httpx.AsyncBaseTransport | None = None,
               limit_concurrency: bool = True, bare: bool = False) -> Starlette:
    """A Zoho CRM org with its accounts server, as one Starlette app. Helpers live on ``app.state.zoho``.

    clock            sandbox time (advance it to expire tokens, grant codes, channels, page tokens)
    faults           a ``Faults`` or its spec string (``"429=0.2,5xx=0.05,latency=50ms,drop=0.1,token_ttl=5"``)
    data_centre      us, eu, in, au, jp, ca, cn, sa, uk: the DC of the org and of this accounts server
    edition          free, standard, professional, enterprise, ultimate, crmplus, zohoone
    api_domain       what token responses announce as ``api_domain`` (default: the DC's www.zohoapis host);
                     pass the served base URL (``http://127.0.0.1:PORT``) when running under uvicorn
    time_zone        the org user's zone; Zoho writes every datetime in it (with its offset)
    notify_transport the httpx transport for notification and bulk callback POSTs (in-process tests)
    limit_concurrency refuse calls beyond the edition's concurrency and the sub-concurrency limits (429); when
                     False they are only counted (``app.state.zoho.limit_concurrency`` switches it later)
    bare             an org as Zoho hands it over: standard modules and fields only, none of the custom fields and
                     custom modules the pairs use (the default org has them, as set up by an admin)
    """
    sandbox = ZohoSandbox(
        clock=clock or SandboxClock(),
        faults=faults if isinstance(faults, Faults) else Faults.parse(faults),
        data_centre=data_centre, edition=edition, api_domain=api_domain, time_zone=time_zone,
        notify_transport=notify_transport, bare=bare)
    sandbox.limit_concurrency = limit_concurrency
    # Zoho's Date header, on every answer, from the org's clock (HTTP date: whole seconds).
    app = Starlette(routes=build_routes(sandbox), exception_handlers={HTTPException: _http_error},
                    middleware=[Middleware(ServerDate, now=sandbox.clock.now)])
    app.state.zoho = sandbox
    return app
