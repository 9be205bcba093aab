"""The Starlette app: Zuora's token endpoint, the v1 paths, Object Query, and around every call the
bearer check, Zuora-Entity-Ids, rate and concurrency limits, faults and Idempotency-Key replay."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..common import Faults, JSONResponse, SandboxClock, ServerDate
from .sandbox import API_PER_MINUTE, AUTH_PER_MINUTE, CONCURRENCY, Remembered, ZuoraSandbox
from . import describe
from .zoql import ZoqlFault
from .store import (ACCOUNT, INVOICE, NOT_FOUND, ORDER, PAYMENT, PRODUCT, QUERY, SUBSCRIPTION, UNKNOWN,
                    BusinessError, v1_stamp)

Handler = Callable[[Request, ZuoraSandbox], Awaitable[Response]]
OBJECTS = {"accounts", "contacts", "products", "product-rate-plans", "product-rate-plan-charges", "subscriptions",
           "orders", "invoices", "invoice-items", "payments"}
EXPANDS = {"accounts": {"billto"}, "invoices": {"invoiceitems"}, "payments": {"paymentapplications"},
           "subscriptions": {"rateplans", "rateplans.rateplancharges"},
           "products": {"productrateplans", "productrateplans.productrateplancharges"}}
HIDDEN = {"subscriptions": ("ratePlans",), "payments": ("paymentApplications",), "product-rate-plan-charges": ("prices",)}


# -- answers ----------------------------------------------------------------------------------------------------
def failure(code: int, message: str, status: int = 200) -> JSONResponse:
    """Zuora's v1 error body: success false, a processId, reasons[{code, message}]."""
    return JSONResponse({"success": False, "processId": uuid.uuid4().hex[:16].upper(),
                         "reasons": [{"code": code, "message": message}]}, status_code=status)


def oq_failure(code: int, message: str, status: int) -> JSONResponse:
    return JSONResponse({"reasons": [{"code": code, "message": message}], "requestId": str(uuid.uuid4())},
                        status_code=status)


def ok(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"success": True, **body})


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise BusinessError(UNKNOWN, 90, "Malformed JSON in the request body") from None
    if not isinstance(body, dict):
        raise BusinessError(UNKNOWN, 90, "The request body must be a JSON object")
    return body


def version_at_least(request: Request, numeric: float) -> bool:
    """``zuora-version``: numeric minor versions (229.0) compare as numbers; dated ones (2025-08-12) are newer
    than every numeric one."""
    value = request.headers.get("zuora-version", "").strip()
    if not value:
        return False
    if re.match(r"^\d{4}-\d{2}-\d{2}$", value):
        return True
    try:
        return float(value) >= numeric
    except ValueError:
        return False


# -- OAuth --------------------------------------------------------------------------------------------------------
async def token_endpoint(request: Request, sandbox: ZuoraSandbox) -> Response:
    allowed, remaining, _ = sandbox.take("auth", sandbox.auth_per_minute)
    limit_headers = {"X-RateLimit-Limit-minute": str(sandbox.auth_per_minute),
                     "X-RateLimit-Remaining-minute": str(remaining), "Zuora-Request-Id": str(uuid.uuid4())}
    if not allowed:
        return JSONResponse({"message": "API rate limit exceeded"}, status_code=429,
                            headers={**limit_headers, "Retry-After": "60"})
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return JSONResponse({"message": "Content-Type must be application/x-www-form-urlencoded"}, status_code=400,
                            headers=limit_headers)
    form = dict(parse_qsl((await request.body()).decode()))
    if form.get("grant_type") != "client_credentials":
        return JSONResponse({"message": "Invalid grant_type: only client_credentials is supported"},
                            status_code=400, headers=limit_headers)
    client = sandbox.clients.get(form.get("client_id", ""))
    if client is None or client.client_secret != form.get("client_secret"):
        return JSONResponse({"message": "Invalid client credentials"}, status_code=401, headers=limit_headers)
    wanted = request.headers.get("zuora-entity-ids")
    if wanted and wanted not in sandbox.entity_ids:
        return JSONResponse({"message": f"Entity {wanted} is not accessible to this client"}, status_code=403,
                            headers=limit_headers)
    token = sandbox.mint(client)
    seconds = int((token.expires_at - sandbox.clock.now()).total_seconds())
    return JSONResponse({"access_token": token.token, "token_type": "bearer", "expires_in": seconds,
                         "scope": sandbox.scope(token), "jti": uuid.uuid4().hex}, headers=limit_headers)


# -- the wrapper around every API call ------------------------------------------------------------------------------
def api(sandbox: ZuoraSandbox, name: str, handler: Handler, kind: str = "default") -> Callable[[Request], Any]:
    query_api = kind == "object-query"

    async def endpoint(request: Request) -> Response:
        await sandbox.faults.delay()
        request_id = str(uuid.uuid4())
        answer = _check_token(sandbox, request, query_api) or _check_entity(sandbox, request, query_api)
        if answer is not None:
            return answer
        allowed, remaining, reset = sandbox.take("api", sandbox.api_per_minute)
        limits = {"RateLimit-Limit": f"{sandbox.api_per_minute}, {sandbox.api_per_minute};w=60",
                  "RateLimit-Remaining": str(remaining), "RateLimit-Reset": str(reset),
                  "Zuora-Request-Id": request_id}
        if not allowed:
            return JSONResponse({"message": "Too Many Requests"}, status_code=429,
                                headers={**limits, "Retry-After": str(reset)})
        faults = sandbox.faults
        if faults.roll(faults.rate_limit):
            sandbox.calls["throttled"] += 1
            return JSONResponse({"message": "Too Many Requests"}, status_code=429, headers={
                **limits, "RateLimit-Remaining": "0", "RateLimit-Reset": f"{faults.retry_after:g}",
                "Retry-After": f"{faults.retry_after:g}"})
        if faults.roll(faults.server_error):
            sandbox.calls["server_error"] += 1
            return JSONResponse({"code": "500", "message": "A temporary problem in the service occurred, you can "
                                                           "retry later."}, status_code=500, headers=limits)
        cap = CONCURRENCY[kind]
        if sandbox.in_flight[kind] >= cap:
            return JSONResponse({"message": "Concurrency limit exceeded"}, status_code=429, headers={
                **limits, "Retry-After": "1", "Concurrency-Limit-Type": kind,
                "Concurrency-Limit-Limit": str(cap), "Concurrency-Limit-Remaining": "0"})
        sandbox.in_flight[kind] += 1
        try:
            sandbox.calls[name] += 1
            response = await _idempotent(sandbox, request, handler)
        finally:
            sandbox.in_flight[kind] -= 1
        response.headers.update({**limits, "Concurrency-Limit-Type": kind, "Concurrency-Limit-Limit": str(cap),
                                 "Concurrency-Limit-Remaining": str(cap - sandbox.in_flight[kind])})
        return response
    return endpoint


def _check_token(sandbox: ZuoraSandbox, request: Request, query_api: bool) -> Response | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    token = sandbox.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
    if token is None or token.expires_at <= sandbox.clock.now():
        return JSONResponse({"message": "Authentication error"}, status_code=401,
                            headers={"WWW-Authenticate": 'Bearer realm="Zuora"'})
    request.state.token = token
    return None


def _check_entity(sandbox: ZuoraSandbox, request: Request, query_api: bool) -> Response | None:
    """A tenant with several entities needs Zuora-Entity-Ids on each call (the sandbox's wording)."""
    wanted = request.headers.get("zuora-entity-ids")
    if len(sandbox.entity_ids) > 1 and not wanted:
        message = "The Zuora-Entity-Ids header is required: this client can access several entities"
        return oq_failure(90000011, message, 400) if query_api else failure(90000011, message, 400)
    if wanted and wanted not in sandbox.entity_ids:
        message = f"Entity {wanted} is not accessible to this client"
        return oq_failure(90000010, message, 403) if query_api else failure(90000010, message, 403)
    return None


async def _idempotent(sandbox: ZuoraSandbox, request: Request, handler: Handler) -> Response:
    """Idempotency-Key on POST and PATCH: the first answer (success or failure) is kept 24 hours and replayed;
    a key still in progress answers 409; one reused for another URL or method answers 422. A reused key with
    a different body is not documented by Zuora: ``body_mismatch`` chooses 422 (default) or a plain replay."""
    key = request.headers.get("idempotency-key")
    if not key or request.method not in ("POST", "PATCH"):
        return await _run(sandbox, request, handler)
    body = await request.body()
    digest = hashlib.sha256(body).hexdigest()
    scope = f"{request.state.token.entities}:{key}"
    seen = sandbox.remembered(scope)
    if seen is not None:
        if seen.status is None:
            return failure(0, "A request with this Idempotency-Key is still being processed; retry later with the "
                              "same key", status=409)
        if seen.method != request.method or seen.path != request.url.path:
            return failure(0, "The Idempotency-Key was used with a different URL or HTTP method", status=422)
        if seen.body_hash != digest and sandbox.body_mismatch == "reject":
            return failure(0, "The Idempotency-Key was used with a different request body", status=422)
        sandbox.calls["idempotent_replay"] += 1
        return Response(seen.body, status_code=seen.status, headers={**seen.headers, "Idempotent-Replayed": "true"})
    if len(key) > 255:
        return failure(0, "Idempotency-Key must be at most 255 characters", status=400)
    remembered = Remembered(request.method, request.url.path, digest, sandbox.clock.now())
    sandbox.idempotency[scope] = remembered
    try:
        response = await _run(sandbox, request, handler)
    except BaseException:
        sandbox.idempotency.pop(scope, None)
        raise
    remembered.status = response.status_code
    remembered.headers = {"content-type": response.headers.get("content-type", "application/json")}
    remembered.body = bytes(response.body)
    return response


async def _run(sandbox: ZuoraSandbox, request: Request, handler: Handler) -> Response:
    queued = sandbox.injected.get(request.url.path)
    if queued:
        code, message = queued.pop(0)
        return failure(code, message)
    try:
        return await handler(request, sandbox)
    except BusinessError as error:
        if request.url.path.startswith("/object-query"):
            return oq_failure(error.code, error.message, error.status if error.status != 200 else 400)
        return failure(error.code, error.message, error.status)


# -- accounts -------------------------------------------------------------------------------------------------------
def _account(sandbox: ZuoraSandbox, key: str) -> dict[str, Any]:
    found = sandbox.data.find("accounts", key, "accountNumber")
    if found is None:
        raise BusinessError(ACCOUNT, NOT_FOUND, f"Cannot find a Account instance with id {key}.")
    return found


async def create_account(request: Request, sandbox: ZuoraSandbox) -> Response:
    account = sandbox.data.create_account(await json_body(request))
    return ok({"accountId": account["id"], "accountNumber": account["accountNumber"],
               "billToContactId": account["billToId"], "soldToContactId": account["soldToId"]})


async def get_account(request: Request, sandbox: ZuoraSandbox) -> Response:
    account = _account(sandbox, request.path_params["key"])
    contact = sandbox.data.tables["contacts"][account["billToId"]]
    custom = {k: v for k, v in account.items() if k.endswith("__c")}
    return ok({
        "basicInfo": {"id": account["id"], "name": account["name"], "accountNumber": account["accountNumber"],
                      "notes": account.get("notes"), "status": account["status"], "crmId": account.get("crmId"),
                      "parentId": account.get("parentId"), **custom},
        "billingAndPayment": {"billCycleDay": account["billCycleDay"], "currency": account["currency"],
                              "paymentTerm": account["paymentTerm"], "autoPay": account["autoPay"]},
        "metrics": {"balance": account["balance"], "totalInvoiceBalance": account["totalInvoiceBalance"],
                    "creditBalance": 0.0},
        "billToContact": {k: v for k, v in contact.items() if k not in ("createdDate", "updatedDate", "accountId")},
        "soldToContact": {k: v for k, v in contact.items() if k not in ("createdDate", "updatedDate", "accountId")}})


async def update_account(request: Request, sandbox: ZuoraSandbox) -> Response:
    account = _account(sandbox, request.path_params["key"])
    sandbox.data.update_account(account, await json_body(request))
    return ok({})


# -- catalog --------------------------------------------------------------------------------------------------------
def _v1_product(sandbox: ZuoraSandbox, product: dict[str, Any], request: Request) -> dict[str, Any]:
    body = {"id": product["id"], "sku": product["sKU"], "name": product["name"], "description": product["description"],
            "category": product["category"], "effectiveStartDate": product["effectiveStartDate"],
            "effectiveEndDate": product["effectiveEndDate"], "productNumber": product["productNumber"],
            **{k: v for k, v in product.items() if k.endswith("__c")}}
    if version_at_least(request, 230.0):
        # From minor version 230.0 on, productRatePlans is a link instead of the array.
        body["productRatePlans"] = f"{request.base_url}v1/rateplan/{product['id']}/productRatePlan"
    else:
        body["productRatePlans"] = _v1_plans(sandbox, product["id"])
    return body


def _v1_plans(sandbox: ZuoraSandbox, product_id: str) -> list[dict[str, Any]]:
    return [{"id": plan["id"], "name": plan["name"], "description": plan["description"], "status": "Active",
             "productRatePlanNumber": plan["productRatePlanNumber"],
             "effectiveStartDate": plan["effectiveStartDate"], "effectiveEndDate": plan["effectiveEndDate"],
             "productRatePlanCharges": [
                 {"id": c["id"], "name": c["name"], "type": c["chargeType"], "model": c["chargeModel"],
                  "uom": c["uOM"], "billingPeriod": c["billingPeriod"], "defaultQuantity": c["defaultQuantity"],
                  "productRatePlanChargeNumber": c["productRatePlanChargeNumber"], "pricing": c["prices"]}
                 for c in sandbox.data.charges_of(plan["id"])]}
            for plan in sandbox.data.plans_of(product_id)]


async def list_products(request: Request, sandbox: ZuoraSandbox) -> Response:
    page = max(1, int(request.query_params.get("page", 1)))
    size = min(40, max(1, int(request.query_params.get("pageSize", 10))))  # larger sizes are treated as 40
    rows = sorted(sandbox.data.tables["products"].values(), key=lambda p: (p["updatedDate"], p["id"]), reverse=True)
    chunk = rows[(page - 1) * size: page * size]
    body: dict[str, Any] = {"products": [_v1_product(sandbox, p, request) for p in chunk]}
    if page * size < len(rows):
        body["nextPage"] = f"{request.base_url}v1/catalog/products?page={page + 1}&pageSize={size}"
    return ok(body)


async def get_product(request: Request, sandbox: ZuoraSandbox) -> Response:
    key = request.path_params["key"]
    product = sandbox.data.find("products", key, "sKU", "productNumber")
    if product is None:
        raise BusinessError(PRODUCT, NOT_FOUND, f"Cannot find a Product instance with key {key}.")
    return ok(_v1_product(sandbox, product, request))


async def describe_object(request: Request, sandbox: ZuoraSandbox) -> Response:
    """Describe (describe.py): XML; an object the tenant does not have is the sandbox's 404."""
    name = request.path_params["object"]
    found = describe.document(name, sandbox.data)
    if found is None:
        raise BusinessError(UNKNOWN, NOT_FOUND, f"Object {name} is not available in this tenant.", status=404)
    return Response(found, media_type="text/xml")


async def product_rate_plans(request: Request, sandbox: ZuoraSandbox) -> Response:
    product_id = request.path_params["product_id"]
    if product_id not in sandbox.data.tables["products"]:
        raise BusinessError(PRODUCT, NOT_FOUND, f"Cannot find a Product instance with id {product_id}.")
    return ok({"productRatePlans": _v1_plans(sandbox, product_id)})


CRUD_TABLES = {"product": "products", "product-rate-plan": "product-rate-plans",
               "product-rate-plan-charge": "product-rate-plan-charges"}


def _crud_failure(error: BusinessError) -> JSONResponse:
    """The CRUD (object) API answers in its own capitalised shape."""
    code = {20: "INVALID_VALUE", 22: "MISSING_REQUIRED_VALUE", 30: "DUPLICATE_VALUE", 40: "INVALID_ID"}.get(
        error.code % 100, "UNKNOWN_ERROR")
    return JSONResponse({"Success": False, "Errors": [{"Code": code, "Message": error.message}]},
                        status_code=400 if error.code % 100 != 40 else 404)


async def crud(request: Request, sandbox: ZuoraSandbox) -> Response:
    kind = request.path_params["object"]
    if kind not in CRUD_TABLES:
        return _crud_failure(BusinessError(UNKNOWN, 40, f"no object {kind} in this sandbox"))
    data = sandbox.data
    try:
        if request.method == "POST":
            body = await json_body(request)
            create = {"product": data.create_product, "product-rate-plan": data.create_rate_plan,
                      "product-rate-plan-charge": data.create_charge}[kind]
            return JSONResponse({"Success": True, "Id": create(body)["id"]})
        row = data.tables[CRUD_TABLES[kind]].get(request.path_params.get("id", ""))
        if row is None:
            raise BusinessError(PRODUCT, NOT_FOUND, f"Cannot find a {kind} with id {request.path_params.get('id')}")
        if request.method == "PUT":
            body = await json_body(request)
            if kind == "product":
                data.update_product(row, body)
            elif kind == "product-rate-plan-charge":
                data.update_charge(row, body)
            else:
                data.touch(row, **{k[0].lower() + k[1:]: v for k, v in body.items() if k in ("Name", "Description")})
            return JSONResponse({"Success": True, "Id": row["id"]})
        return JSONResponse({k[0].upper() + k[1:]: v for k, v in row.items()})
    except BusinessError as error:
        return _crud_failure(error)


# -- orders and subscriptions ---------------------------------------------------------------------------------------
async def create_order(request: Request, sandbox: ZuoraSandbox) -> Response:
    body = await json_body(request)
    done = sandbox.data.create_order(body)
    order, account = done["order"], done["account"]
    answer: dict[str, Any] = {"orderNumber": order["orderNumber"], "orderId": order["id"],
                              "accountNumber": account["accountNumber"], "accountId": account["id"],
                              "status": order["status"]}
    if version_at_least(request, 223.0):
        answer["subscriptions"] = [{"subscriptionNumber": s["name"], "subscriptionId": s["id"], "status": s["status"]}
                                   for s in done["subscriptions"]]
    else:
        answer["subscriptionNumbers"] = [s["name"] for s in done["subscriptions"]]
    if (body.get("processingOptions") or {}).get("runBilling"):
        target = ((body["processingOptions"].get("billingOptions") or {}).get("targetDate")) or body["orderDate"]
        invoices = sandbox.bill_run(date.fromisoformat(target), accounts=[account["id"]])
        answer["invoiceNumbers"] = [i["invoiceNumber"] for i in invoices]
    return ok(answer)


async def get_order(request: Request, sandbox: ZuoraSandbox) -> Response:
    number = request.path_params["number"]
    order = sandbox.data.find("orders", number, "orderNumber")
    if order is None:
        raise BusinessError(ORDER, NOT_FOUND, f"Cannot find a Order instance with number {number}.")
    return ok({"order": {k: v for k, v in order.items()}})


async def get_subscription(request: Request, sandbox: ZuoraSandbox) -> Response:
    key = request.path_params["key"]
    sub = sandbox.data.tables["subscriptions"].get(key) or sandbox.data.latest(key)
    if sub is None:
        raise BusinessError(SUBSCRIPTION, NOT_FOUND, f"Cannot find a Subscription instance with key {key}.")
    account = sandbox.data.tables["accounts"][sub["accountId"]]
    plans = [{"id": p["id"], "productId": p["productId"], "productName": p["productName"],
              "productSku": p["productSku"], "productRatePlanId": p["productRatePlanId"],
              "ratePlanName": p["ratePlanName"], "ratePlanCharges": [
                  {"id": c["id"], "number": c["number"], "name": c["name"], "type": c["type"], "model": c["model"],
                   "uom": c["uom"], "price": c["price"], "quantity": c["quantity"], "billingPeriod": c["billingPeriod"],
                   "productRatePlanChargeId": c["productRatePlanChargeId"]} for c in p["ratePlanCharges"]]}
             for p in sub["ratePlans"]]
    return ok({"id": sub["id"], "subscriptionNumber": sub["name"], "accountId": account["id"],
               "accountNumber": account["accountNumber"], "accountName": account["name"], "version": sub["version"],
               "status": sub["status"], "termType": sub["termType"], "currency": sub["currency"],
               "contractEffectiveDate": sub["contractEffectiveDate"], "subscriptionStartDate": sub["subscriptionStartDate"],
               "ratePlans": plans, **{k: v for k, v in sub.items() if k.endswith("__c")}})


# -- invoices and payments (v1) -------------------------------------------------------------------------------------
async def get_invoice(request: Request, sandbox: ZuoraSandbox) -> Response:
    key = request.path_params["key"]
    invoice = sandbox.data.find("invoices", key, "invoiceNumber")
    if invoice is None:
        raise BusinessError(INVOICE, NOT_FOUND, f"Cannot find a Invoice instance with id {key}.")
    return ok({**invoice, "createdDate": v1_stamp(_at(invoice["createdDate"])),
               "updatedDate": v1_stamp(_at(invoice["updatedDate"]))})


async def get_payment(request: Request, sandbox: ZuoraSandbox) -> Response:
    key = request.path_params["key"]
    payment = sandbox.data.find("payments", key, "paymentNumber")
    if payment is None:
        raise BusinessError(PAYMENT, NOT_FOUND, f"Cannot find a Payment instance with id {key}.")
    body = {k: v for k, v in payment.items() if k not in ("paymentNumber", "paymentApplications")}
    return ok({**body, "number": payment["paymentNumber"], "createdDate": v1_stamp(_at(payment["createdDate"])),
               "updatedDate": v1_stamp(_at(payment["updatedDate"]))})


def _at(text: str) -> Any:
    from .store import _moment

    return _moment(text)


# -- Object Query -----------------------------------------------------------------------------------------------------
def _expander(sandbox: ZuoraSandbox, table: str, expand: set[str],
              include_null: bool) -> Callable[[dict[str, Any]], dict[str, Any]]:
    data = sandbox.data

    def shape(row: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in row.items() if k not in HIDDEN.get(table, ()) and (include_null or v is not None)}
        if table == "accounts" and "billto" in expand:
            out["billTo"] = {k: v for k, v in data.tables["contacts"][row["billToId"]].items() if v is not None}
        if table == "invoices" and "invoiceitems" in expand:
            out["invoiceItems"] = data.items_of(row["id"])
        if table == "payments" and "paymentapplications" in expand:
            out["paymentApplications"] = row["paymentApplications"]
        if table == "subscriptions" and expand & {"rateplans", "rateplans.rateplancharges"}:
            full = "rateplans.rateplancharges" in expand
            out["ratePlans"] = [p if full else {k: v for k, v in p.items() if k != "ratePlanCharges"}
                                for p in row["ratePlans"]]
        if table == "products" and expand & {"productrateplans", "productrateplans.productrateplancharges"}:
            full = "productrateplans.productrateplancharges" in expand
            out["productRatePlans"] = [dict(p, **({"productRatePlanCharges": data.charges_of(p["id"])} if full else {}))
                                       for p in data.plans_of(row["id"])]
        return out
    return shape


def _query_options(request: Request, table: str) -> tuple[set[str], bool]:
    if table not in OBJECTS:
        raise BusinessError(QUERY, 40, f"unknown object {table}", status=404)
    expand = {e.lower() for e in request.query_params.getlist("expand[]")}
    unknown = expand - EXPANDS.get(table, set())
    if unknown:
        raise BusinessError(QUERY, 27, f"invalid expand[] value {sorted(unknown)[0]!r} for {table}", status=400)
    return expand, request.query_params.get("includeNullFields", "false").lower() == "true"


async def object_query(request: Request, sandbox: ZuoraSandbox) -> Response:
    table = request.path_params["object"]
    expand, include_null = _query_options(request, table)
    try:
        size = int(request.query_params.get("pageSize", 10))
    except ValueError:
        size = 0
    if not 1 <= size <= 99:
        raise BusinessError(QUERY, 27, "pageSize must be between 1 and 99", status=400)
    sorts = request.query_params.getlist("sort[]")
    if len(sorts) > 1:
        raise BusinessError(QUERY, 27, "sort[] takes one field", status=400)
    body = sandbox.data.query(table, request.query_params.getlist("filter[]"), sorts[0] if sorts else None, size,
                              request.query_params.get("cursor"), _expander(sandbox, table, expand, include_null))
    return JSONResponse(body)


async def object_query_one(request: Request, sandbox: ZuoraSandbox) -> Response:
    table = request.path_params["object"]
    expand, include_null = _query_options(request, table)
    key = request.path_params["key"]
    numbers = {"accounts": ("accountNumber",), "invoices": ("invoiceNumber",), "payments": ("paymentNumber",),
               "products": ("sKU", "productNumber"), "orders": ("orderNumber",)}
    row = sandbox.data.find(table, key, *numbers.get(table, ()))
    if table == "subscriptions" and row is None:
        row = sandbox.data.latest(key)
    if row is None:
        raise BusinessError(QUERY, 40, f"no {table} record with key {key}", status=404)
    return JSONResponse(_expander(sandbox, table, expand, include_null)(row))


# -- ZOQL (Actions: query, queryMore) ----------------------------------------------------------------------------
async def _zoql_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise ZoqlFault("INVALID_VALUE", "Malformed JSON in the request body") from None
    if not isinstance(body, dict):
        raise ZoqlFault("INVALID_VALUE", "The request body must be a JSON object")
    return body


async def action_query(request: Request, sandbox: ZuoraSandbox) -> Response:
    """ZOQL: the first batch of records, with done and (while more remain) a queryLocator; no success field."""
    try:
        body = await _zoql_body(request)
        return JSONResponse(sandbox.zoql.query(body.get("queryString"), body.get("conf")))
    except ZoqlFault as fault:
        return JSONResponse(fault.body(), status_code=sandbox.zoql_fault_status)


async def action_query_more(request: Request, sandbox: ZuoraSandbox) -> Response:
    try:
        body = await _zoql_body(request)
        return JSONResponse(sandbox.zoql.query_more(body.get("queryLocator"), body.get("conf")))
    except ZoqlFault as fault:
        return JSONResponse(fault.body(), status_code=sandbox.zoql_fault_status)


# -- the app ------------------------------------------------------------------------------------------------------------
def build_routes(sandbox: ZuoraSandbox) -> list[Route]:
    async def token(request: Request) -> Response:
        await sandbox.faults.delay()
        return await token_endpoint(request, sandbox)

    def by_method(table: dict[str, tuple[str, Handler, str]]) -> Callable[[Request], Any]:
        endpoints = {m: api(sandbox, name, handler, kind) for m, (name, handler, kind) in table.items()}

        async def endpoint(request: Request) -> Response:
            return await endpoints[request.method](request)
        return endpoint

    hv = "high-volume"
    return [
        Route("/oauth/token", token, methods=["POST"]),
        Route("/v1/accounts", api(sandbox, "accounts.create", create_account, hv), methods=["POST"]),
        Route("/v1/accounts/{key}", by_method({"GET": ("accounts.get", get_account, "default"),
                                               "PUT": ("accounts.update", update_account, "default")}),
              methods=["GET", "PUT"]),
        Route("/v1/describe/{object}", api(sandbox, "describe", describe_object), methods=["GET"]),
        Route("/v1/catalog/products", api(sandbox, "catalog.list", list_products), methods=["GET"]),
        Route("/v1/catalog/products/{key}", api(sandbox, "catalog.get", get_product), methods=["GET"]),
        Route("/v1/rateplan/{product_id}/productRatePlan", api(sandbox, "catalog.rateplans", product_rate_plans),
              methods=["GET"]),
        Route("/v1/object/{object}", api(sandbox, "object.create", crud), methods=["POST"]),
        Route("/v1/object/{object}/{id}", by_method({"GET": ("object.get", crud, "default"),
                                                     "PUT": ("object.update", crud, "default")}),
              methods=["GET", "PUT"]),
        Route("/v1/orders", api(sandbox, "orders.create", create_order, hv), methods=["POST"]),
        Route("/v1/orders/{number}", api(sandbox, "orders.get", get_order), methods=["GET"]),
        Route("/v1/subscriptions/{key}", api(sandbox, "subscriptions.get", get_subscription), methods=["GET"]),
        Route("/v1/invoices/{key}", api(sandbox, "invoices.get", get_invoice), methods=["GET"]),
        Route("/v1/payments/{key}", api(sandbox, "payments.get", get_payment), methods=["GET"]),
        Route("/v1/action/query", api(sandbox, "action.query", action_query), methods=["POST"]),
        Route("/v1/action/queryMore", api(sandbox, "action.queryMore", action_query_more), methods=["POST"]),
        Route("/object-query/{object}", api(sandbox, "query.list", object_query, "object-query"), methods=["GET"]),
        Route("/object-query/{object}/{key}", api(sandbox, "query.get", object_query_one, "object-query"),
              methods=["GET"]),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    if status == 404:
        return failure(UNKNOWN * 100 + 40, f"No route for {request.method} {request.url.path}", status=404)
    if status == 405:
        return failure(UNKNOWN * 100 + 45, f"Method {request.method} is not supported here", status=405)
    return failure(UNKNOWN * 100 + 60, "Internal error", status=status)


def create_app(*, clock: SandboxClock | None = None, faults: Faults | str | None = None,
               entity_ids: tuple[str, ...] | list[str] = ("1a2b7a37-3e7d-4cb3-b0e2-883de9e766cc",),
               notify_transport: httpx.AsyncBaseTransport | None = None, body_mismatch: str = "reject",
               auth_per_minute: int = AUTH_PER_MINUTE, api_per_minute: int = API_PER_MINUTE) -> Starlette:
    """A Zuora tenant as one Starlette app; its helpers live on ``app.state.zuora`` (a ``ZuoraSandbox``).

    clock            sandbox time (advance it to expire tokens and idempotency keys)
    faults           a ``Faults`` or its spec (``"429=0.2,5xx=0.05,latency=50ms,drop=0.1,token_ttl=5"``)
    entity_ids       the entities the OAuth client may use; with more than one, calls need Zuora-Entity-Ids
    notify_transport the httpx async transport callouts go through (in-process tests); None: the network
    body_mismatch    what a reused Idempotency-Key with another body gets: "reject" (422) or "replay"
    """
    sandbox = ZuoraSandbox(clock=clock or SandboxClock(),
                           faults=faults if isinstance(faults, Faults) else Faults.parse(faults),
                           entity_ids=tuple(entity_ids), notify_transport=notify_transport,
                           body_mismatch=body_mismatch, auth_per_minute=auth_per_minute,
                           api_per_minute=api_per_minute)
    app = Starlette(routes=build_routes(sandbox), exception_handlers={HTTPException: _http_error},
                    middleware=[Middleware(ServerDate, now=sandbox.clock.now)])
    app.state.zuora = sandbox
    return app


__all__ = ["create_app", "ZuoraSandbox"]
