"""The Starlette app: routes for the token endpoint and the four API/ODataV4 URL forms, each behind the guard
(call log, latency, injected faults, authentication, per-user throttling)."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlconnector.sandbox.common import Faults, SandboxClock, ServerDate
from mlconnector.sandbox.entra import openid_configuration

from .errors import ODataError
from .sandbox import ApiCall, DynamicsSandbox

_METHODS = ["GET", "POST", "PATCH", "DELETE"]
Handler = Callable[[str], Awaitable[Response]]


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


async def _guarded(request: Request, form: str, authenticate: Callable[[], str], handler: Handler) -> Response:
    sandbox: DynamicsSandbox = request.app.state.dynamics
    sandbox.attach_loop(asyncio.get_running_loop())
    call = ApiCall(request.method, form, request.url.path, request.url.query)
    sandbox.calls.append(call)
    try:
        await sandbox.faults.delay()
        fault = sandbox.injected_fault()
        if fault is not None:
            raise fault
        call.principal = authenticate()
        async with sandbox.throttle(call.principal):
            response = await handler(call.principal)
    except ODataError as error:
        response = error.response()
    call.status = response.status_code
    return response


def _check_environment(sandbox: DynamicsSandbox, environment: str) -> None:
    if sandbox.environments is not None and environment not in sandbox.environments:
        raise ODataError(404, "NoEnvironmentFound", f"Environment '{environment}' was not found.")


async def cloud_api(request: Request) -> Response:
    """``/v2.0/{tenant}/{environment}/api/v2.0/...`` and the tenant-less ``/v2.0/{environment}/api/v2.0/...``."""
    sandbox: DynamicsSandbox = request.app.state.dynamics
    tenant = request.path_params.get("tenant")
    environment = request.path_params["environment"]
    prefix = f"/v2.0/{tenant}/{environment}" if tenant else f"/v2.0/{environment}"
    root = f"{_origin(request)}{prefix}/api/v2.0"

    def authenticate() -> str:
        principal = sandbox.identity.check_bearer(request, tenant)
        _check_environment(sandbox, environment)
        return principal

    return await _guarded(request, "api", authenticate,
                          lambda principal: sandbox.api.handle(request, request.path_params["rest"], root, principal))


async def cloud_odata(request: Request) -> Response:
    """``/v2.0/{tenant}/{environment}/ODataV4/...`` (BC online page web services, Bearer auth)."""
    sandbox: DynamicsSandbox = request.app.state.dynamics
    tenant, environment = request.path_params["tenant"], request.path_params["environment"]
    root = f"{_origin(request)}/v2.0/{tenant}/{environment}/ODataV4"

    def authenticate() -> str:
        principal = sandbox.identity.check_bearer(request, tenant)
        _check_environment(sandbox, environment)
        return principal

    return await _guarded(request, "odatav4", authenticate,
                          lambda _: sandbox.pages.handle(request, request.path_params["rest"], root))


async def onprem_api(request: Request) -> Response:
    """``/{instance}/api/v2.0/...`` (BC on-premises API, the server instance's credential type)."""
    sandbox: DynamicsSandbox = request.app.state.dynamics
    root = f"{_origin(request)}/{request.path_params['instance']}/api/v2.0"
    return await _guarded(request, "api-onprem", lambda: sandbox.identity.check_on_premises(request),
                          lambda principal: sandbox.api.handle(request, request.path_params["rest"], root, principal))


async def onprem_odata(request: Request) -> Response:
    """``/{instance}/ODataV4/...`` (NAV / BC on-premises page web services)."""
    sandbox: DynamicsSandbox = request.app.state.dynamics
    root = f"{_origin(request)}/{request.path_params['instance']}/ODataV4"
    return await _guarded(request, "odatav4-onprem", lambda: sandbox.identity.check_on_premises(request),
                          lambda _: sandbox.pages.handle(request, request.path_params["rest"], root))


async def token(request: Request) -> Response:
    sandbox: DynamicsSandbox = request.app.state.dynamics
    sandbox.attach_loop(asyncio.get_running_loop())
    call = ApiCall("POST", "token", request.url.path, "")
    sandbox.calls.append(call)
    await sandbox.faults.delay()
    response = await sandbox.identity.token_endpoint(request)
    call.status = response.status_code
    return response


def create_app(*, clock: SandboxClock | None = None, faults: Faults | None = None,
               notify_transport: httpx.AsyncBaseTransport | None = None, debounce: float = 0.2) -> Starlette:
    """The Dynamics NAV / Business Central emulator; its state and helpers are ``app.state.dynamics``.

    ``notify_transport`` carries the sandbox's outgoing webhook calls (handshake and notifications), so tests
    can deliver them in-process (e.g. ``httpx.ASGITransport(receiver_app)``); None uses the network.
    ``debounce`` is how long changes are collected before notifications go out (BC online: 30 s).
    """
    sandbox = DynamicsSandbox(clock, faults, notify_transport, debounce)
    known = sandbox.identity._known_tenant
    routes = [
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration(known), methods=["GET"]),
        Route("/{tenant}/.well-known/openid-configuration", openid_configuration(known, "v1.0"), methods=["GET"]),
        Route("/v2.0/{tenant}/{environment}/api/v2.0/{rest:path}", cloud_api, methods=_METHODS),
        Route("/v2.0/{environment}/api/v2.0/{rest:path}", cloud_api, methods=_METHODS),
        Route("/v2.0/{tenant}/{environment}/ODataV4/{rest:path}", cloud_odata, methods=_METHODS),
        Route("/{instance}/api/v2.0/{rest:path}", onprem_api, methods=_METHODS),
        Route("/{instance}/ODataV4/{rest:path}", onprem_odata, methods=_METHODS),
    ]
    # Every answer carries the server's Date (RFC 9110 section 6.6.1), by the sandbox's clock.
    app = Starlette(routes=routes, middleware=[Middleware(ServerDate, now=sandbox.clock.now)])
    app.state.dynamics = sandbox
    return app
