"""The Starlette app: the legacy endpoint ``/DynamicsGPWebServices/DynamicsGPService.asmx`` (POST SOAP 1.1,
GET ``?wsdl``), every request behind IIS-style Windows authentication, then the server's request slots."""

from __future__ import annotations

from datetime import timezone, tzinfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlconnector.sandbox.common import Faults, SandboxClock

from . import schema
from .sba import SBA_PREFIX, sba
from .sandbox import SYSTEM_MESSAGE, Busy, Call, GPSandbox, SoapFault

SERVICE_PATH = "/DynamicsGPWebServices/DynamicsGPService.asmx"
_UNAUTHORIZED = ("<html><head><title>401 - Unauthorized: Access is denied due to invalid credentials.</title>"
                 "</head><body><h2>401 - Unauthorized: Access is denied due to invalid credentials.</h2>"
                 "</body></html>")


def _xml(body: bytes, status: int = 200) -> Response:
    return Response(body, status, media_type="text/xml; charset=utf-8")


def _fault_response(sandbox: GPSandbox, fault: SoapFault, operation: str, principal: str) -> Response:
    if fault.kind == "validation":
        log_id = fault.log_id or sandbox.log("validation", fault.errors or [fault.message], operation, principal)
        body = schema.fault("Client", f"{fault.message} Validation details are in the exception log under "
                                      f"LogId {log_id}.", {"ExceptionType": "ValidationException", "LogId": log_id})
    elif fault.kind == "access":
        body = schema.fault("Server", fault.message, {"ExceptionType": "SecurityException"})
    else:
        log_id = sandbox.log("system", [fault.message], operation, principal)
        body = schema.fault("Server", SYSTEM_MESSAGE, {"ExceptionType": "SystemException", "LogId": log_id})
    return _xml(body, 500)


async def service(request: Request) -> Response:
    sandbox: GPSandbox = request.app.state.gp
    client = (request.client.host, request.client.port) if request.client else None
    verdict = sandbox.auth.check(request.headers.get("authorization", ""), client)
    if verdict.principal is None:
        response = Response(_UNAUTHORIZED, 401, media_type="text/html")
        for name, value in verdict.challenge or []:
            response.headers.append(name, value)
        return response
    extra = [("WWW-Authenticate", f"{verdict.scheme} {verdict.final_token}")] if verdict.final_token else []
    response = await _authenticated(request, sandbox, verdict.principal)
    for name, value in extra:
        response.headers.append(name, value)
    return response


async def _authenticated(request: Request, sandbox: GPSandbox, principal: str) -> Response:
    if request.method == "GET":
        if "wsdl" in {k.lower() for k in request.query_params}:
            address = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
            return Response(schema.wsdl(address), 200, media_type="text/xml; charset=utf-8")
        return Response("<html><body><h1>DynamicsGP</h1><p>The following operations are supported: "
                        + ", ".join(schema.OPERATIONS) + ".</p></body></html>", 200, media_type="text/html")
    body = await request.body()
    try:
        operation, params = schema.parse_request(body)
    except ValueError as exc:
        return _xml(schema.fault("Client", f"Server was unable to read request. {exc}"), 500)
    call = Call(operation, principal)
    sandbox.calls.append(call)
    sandbox.counts[operation] += 1
    try:
        async with sandbox.slot():
            if sandbox.faults.roll(sandbox.faults.rate_limit):
                raise Busy()
            if sandbox.faults.roll(sandbox.faults.server_error):
                raise SoapFault("system", "injected fault")
            call.company = sandbox.authorise(principal, operation, params)
            result = sandbox.run(operation, params, call.company)
            response = _xml(schema.response(operation, result))
    except Busy:
        response = Response("<h1>Server Too Busy</h1>", 503, media_type="text/html",
                            headers={"Retry-After": f"{sandbox.faults.retry_after:g}"})
    except SoapFault as fault:
        response = _fault_response(sandbox, fault, operation, principal)
    call.status = response.status_code
    return response


def create_app(*, clock: SandboxClock | None = None, faults: Faults | None = None, delay: float = 0.0,
               max_concurrent: int | None = 4, overflow: str = "reject", modified_precision: str = "date",
               schemes: tuple[str, ...] = ("Negotiate", "NTLM"), allow_basic: bool = False,
               sba_tenant: str = "DefaultTenant", sba_list_key: str | None = None,
               sba_rename: dict[str, str] | None = None, server_zone: tzinfo = timezone.utc) -> Starlette:
    """The GP Web Services emulator, and the SBA routes for customers and vendors (``sba.py``); its state and
    helpers are ``app.state.gp`` (a GPSandbox).

    ``delay`` is added to every operation (GP servers also serve interactive users); ``max_concurrent`` calls
    are served at once, the rest refused with 503 (``overflow="reject"``) or queued (``"queue"``);
    ``server_zone`` is the server's time zone, whose day card dates are. The SBA
    body is an assumption: ``sba_list_key`` wraps lists in an object, ``sba_rename`` renames properties.
    """
    methods = ["GET", "POST", "PATCH", "DELETE"]
    routes = [Route(SERVICE_PATH, service, methods=["GET", "POST"]),
              Route(SERVICE_PATH.lower(), service, methods=["GET", "POST"]),
              Route(SBA_PREFIX + "{rest:path}", sba, methods=methods),
              Route(SBA_PREFIX.lower() + "{rest:path}", sba, methods=methods)]
    app = Starlette(routes=routes)
    app.state.gp_sba = {"tenant": sba_tenant, "list_key": sba_list_key, "rename": dict(sba_rename or {})}
    app.state.gp = GPSandbox(clock, faults, delay=delay, max_concurrent=max_concurrent, overflow=overflow,
                             modified_precision=modified_precision, schemes=schemes, allow_basic=allow_basic,
                             server_zone=server_zone)
    return app
