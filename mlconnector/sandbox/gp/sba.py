"""GP's Service Based Architecture (REST, GP 2015+) as far as it is documented, for the two resources the
gp-zoho pair reads: customers (``Sales/Customers``) and vendors (``Purchasing/Vendors``).

Served (GET only)::

    /GPService/Tenants({tenant})/help                                   a page listing the served resources
    /GPService/Tenants({tenant})/Companies({company name})/Sales/Customers          every customer
    /GPService/Tenants({tenant})/Companies({company name})/Sales/Customers({id})    one customer
    /GPService/Tenants({tenant})/Companies({company name})/Purchasing/Vendors       every vendor
    /GPService/Tenants({tenant})/Companies({company name})/Purchasing/Vendors({id}) one vendor

Documented (../shared/api/gp_zuora.md A.2), and so behaviour here:

* ``https://server/GPService/Tenants(DefaultTenant)/help`` is the verification URL; ``DefaultTenant`` is the
  tenant of a single-tenant install. The connection is stateless: every request authenticates.
* Windows mode takes NTLM or Basic credentials (Basic is accepted here even when the SOAP side refuses it);
  the account must be mapped to a GP user with access to the company.
* GET obtains a list of objects or one object; Customers and Vendors are in the published resource list.
* Capacity: one request per Dexterity process, 30 processes by default: the same request slots
  (``max_concurrent``, 503 beyond) as the SOAP side.

This sandbox's own choices, because nothing public documents them (gp_zuora.md A.2.5, "What could not be
confirmed"); the connector takes each of them as configuration, not as vendor fact:

* The body. A list is a bare JSON array (``list_key`` wraps it in an object under that key); each record uses
  the property names of the Web Services ``Customer`` / ``Vendor`` (Key.Id, Name, Addresses, ...), renamed by
  ``rename`` when a test wants another schema. Dates are ISO 8601 strings. A list carries whole records.
* Paths: ``Sales/Customers`` and ``Purchasing/Vendors`` follow the documented hierarchy; the key in
  parentheses (``Customers(AARONFIT0001)``) and the company *name*, URL-encoded, in ``Companies(...)`` follow
  public client code only. Paths are matched case-insensitively (IIS).
* No filtering and no paging (none is documented): query strings are ignored.
* Errors are statuses with a short text body: 401 with ``WWW-Authenticate: Negotiate``, ``NTLM`` and
  ``Basic realm="GPServer"`` (the exact challenge is unconfirmed), 403 for an account not mapped to a GP user
  or without the company, 404 for an unknown tenant, company, resource or key, 405 for other verbs (GP
  documents POST/PATCH/DELETE; this sandbox does not serve writes), 503 with Retry-After when busy.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from .sandbox import Busy, Call, GPSandbox

SBA_PREFIX = "/GPService/"
RESOURCES = {"sales/customers": ("customers", "Sales/Customers"),
             "purchasing/vendors": ("vendors", "Purchasing/Vendors")}
_PATH = re.compile(r"^Tenants\(([^)]*)\)/(?:(help)/?|Companies\(([^)]*)\)/([A-Za-z]+/[A-Za-z]+)(?:\(([^)]*)\))?/?)$",
                   re.I)


def _text(status: int, message: str, **headers: str) -> Response:
    return Response(message, status, media_type="text/plain; charset=utf-8", headers=headers)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _renamed(value: Any, rename: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {rename.get(k, k): _renamed(v, rename) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, rename) for v in value]
    return value


async def sba(request: Request) -> Response:
    sandbox: GPSandbox = request.app.state.gp
    options = request.app.state.gp_sba
    client = (request.client.host, request.client.port) if request.client else None
    verdict = sandbox.auth.check(request.headers.get("authorization", ""), client, allow_basic=True,
                               per_request=True)
    if verdict.principal is None:
        response = _text(401, "401 - Unauthorized: Access is denied due to invalid credentials.")
        for name, value in verdict.challenge or []:
            response.headers.append(name, value)
        return response
    response = await _authenticated(request, sandbox, options, verdict.principal)
    if verdict.final_token:
        response.headers.append("WWW-Authenticate", f"{verdict.scheme} {verdict.final_token}")
    return response


async def _authenticated(request: Request, sandbox: GPSandbox, options: dict[str, Any], principal: str) -> Response:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0][len(SBA_PREFIX):]
    match = _PATH.match(path)
    if match is None or unquote(match.group(1)).lower() != options["tenant"].lower():
        return _text(404, "The resource cannot be found.")
    if match.group(2):
        return Response("<html><body><h1>Dynamics GP Service</h1><ul>"
                        + "".join(f"<li>Companies(name)/{shown}</li>" for _, shown in RESOURCES.values())
                        + "</ul></body></html>", 200, media_type="text/html")
    company_name, resource, key = unquote(match.group(3)), match.group(4).lower(), match.group(5)
    if resource not in RESOURCES:
        return _text(404, "The resource cannot be found.")
    if request.method != "GET":
        return _text(405, "This sandbox serves GET only.", Allow="GET")
    table, shown = RESOURCES[resource]
    call = Call(f"GET {shown}" + ("(key)" if key is not None else ""), principal)
    sandbox.calls.append(call)
    sandbox.counts[call.operation] += 1
    try:
        async with sandbox.slot():
            if sandbox.faults.roll(sandbox.faults.rate_limit):
                raise Busy()
            user = sandbox.users.get(principal)
            company = next((c for c in sandbox.companies.values() if c.name.lower() == company_name.lower()), None)
            if sandbox.faults.roll(sandbox.faults.server_error):
                response = _text(500, "An unexpected error has occurred.")
            elif user is None or user.gp_user is None:
                response = _text(403, f"{principal} is not set up as a Microsoft Dynamics GP user.")
            elif company is None:
                response = _text(404, "The company cannot be found.")
            elif user.companies is not None and company.id not in user.companies:
                response = _text(403, f"{principal} has no access to this company.")
            else:
                records = getattr(company, table)
                if key is None:
                    rows: Any = [records[k] for k in sorted(records)]
                    if options["list_key"]:
                        rows = {options["list_key"]: rows}
                else:
                    rows = records.get(unquote(key))
                if rows is None:
                    response = _text(404, "The resource cannot be found.")
                else:
                    body = json.dumps(_renamed(rows, options["rename"]), default=_json_default)
                    response = Response(body, 200, media_type="application/json; charset=utf-8")
    except Busy:
        response = _text(503, "Server Too Busy", **{"Retry-After": f"{sandbox.faults.retry_after:g}"})
    call.status = response.status_code
    return response
