"""Zuora Billing emulator: one tenant's OAuth, v1 API, Orders, Object Query and callouts, as one Starlette app.

``create_app(clock=, faults=, entity_ids=, notify_transport=, body_mismatch="reject")``; the tenant and its
helpers are ``app.state.zuora`` (a ``ZuoraSandbox``). One app stands for every region and environment: the host
a client calls (rest.zuora.com, rest.test.eu.zuora.com ...) decides nothing; computing it is the client's job.

Paths:

    POST /oauth/token                             form-encoded client_credentials; tokens live 3599 s
    POST /v1/accounts   GET|PUT /v1/accounts/{id or number}
    GET  /v1/catalog/products[?page&pageSize]  GET /v1/catalog/products/{id, SKU or number}
    GET  /v1/rateplan/{product-id}/productRatePlan
    POST /v1/object/{product|product-rate-plan|product-rate-plan-charge}  GET|PUT /v1/object/{object}/{id}
    POST /v1/orders (CreateSubscription, AddProduct, RemoveProduct, UpdateProduct)  GET /v1/orders/{number}
    GET  /v1/subscriptions/{id or number}   GET /v1/invoices/{id or number}   GET /v1/payments/{id or number}
    GET  /object-query/{accounts|contacts|products|product-rate-plans|product-rate-plan-charges|subscriptions|
                        orders|invoices|invoice-items|payments}[/{key}]
         pageSize 1-99, cursor (= the previous nextPage), filter[] field.OP:value (EQ NE LT GT LE GE SW IN, AND-ed),
         sort[] field.ASC|DESC (one), expand[] (billto; invoiceitems; paymentapplications; rateplans[.rateplancharges];
         productrateplans[.productrateplancharges]), includeNullFields
    POST /v1/action/query {"queryString": ZOQL, "conf": {"batchSize": 1-2000}}  POST /v1/action/queryMore
         {"queryLocator"}: records, size, done, queryLocator (see zoql.py for the language subset and faults)

Test helpers: ``register_client()``, ``seed_account()``, ``seed_product()``, ``bill_run(target_date)`` (posts one
invoice per account and fires Invoice Posted), ``pay(invoice, amount, kind="Electronic"|"External")`` (Payment
Processed for electronic payments only), ``configure_callout(event, url, format="xml"|"json", auth="basic"|
"header"|"none", ...)``, ``callout_repeat`` / ``callout_reverse`` (repeated and out-of-order callouts),
``resend_callouts()``, ``wait_for_callouts()``, ``advance(hours=...)``, ``edit(table, id, **changes)``.

Behaviour taken from Zuora's documents (see shared/api/gp_zuora.md for sources): business errors are HTTP 200 with
``success: false``, a ``processId`` and ``reasons[{code, message}]`` whose last two digits are the category;
401 ``{"message": "Authentication error"}`` for a missing or expired token; 429 with ``Retry-After`` and the
``RateLimit-*`` headers; ``Concurrency-Limit-*`` headers (40 default, 200 high-volume, 80 Object Query);
Idempotency-Key answers kept 24 hours whether they succeeded or failed, 409 while the first is in progress, 422
for another URL or method; ``zuora-version`` >= 230.0 turns ``productRatePlans`` into a link and >= 223.0 makes
Orders answer ``subscriptions`` instead of ``subscriptionNumbers``; Object Query has no ``success`` field and
answers errors as ``{"reasons": [...], "requestId"}``; callouts carry a fresh ``Zuora-Request-Id`` per try and
Basic auth is sent only after a 401 with ``WWW-Authenticate: Basic`` unless preemptive.

Where the sandbox deviates or decides what Zuora leaves open:

- A reused Idempotency-Key with a different body: undocumented by Zuora; 422 here (``body_mismatch="reject"``),
  or a plain replay with ``body_mismatch="replay"``. Injected faults (429, 5xx) are answered before the key is
  looked at and are not remembered. A replayed answer carries ``Idempotent-Replayed: true``, a sandbox marker
  (Zuora documents no such header); clients must not depend on it.
- Which 6-digit resource code goes with which object is the sandbox's choice, except Orders (531003).
- The token endpoint's refusal bodies (``{"message": "Invalid client credentials"}``) are the sandbox's wording;
  the AUTH limit is one per-tenant window (2,000 a minute), not per IP.
- Timestamps are UTC with whole seconds; Object Query sorts by (sort field, id) and pages with a keyset cursor.
  Every answer carries ``Date`` from the tenant's clock (the SandboxClock) as the answer starts, as any HTTP
  server sends its own; served by uvicorn, the server adds a second ``Date`` of the host's clock.
- Subscription versions get new ids as in Zuora, but rate plan ids stay the same across versions.
- A bill run invoices each active subscription once per calendar month, all recurring charges as price x quantity;
  no proration, tax, credit balance or bill cycle day.
- Invoices stay "Posted" when paid (Zuora has no "Paid" status); their balance falls. Payments are "Processed" at
  once, with ``paymentApplications`` instead of Zuora's separate payment parts.
- Callouts are retried ``max_attempts`` times (default 3, as Zuora) but ``retry_interval`` apart in real seconds
  (default 0; Zuora's default is 30 minutes). Any 2xx counts as delivered (Zuora's own rule is undocumented;
  a community sample claims only 200 does). The category code of Payment Processed is not modelled.
- The CRUD (``/v1/object``) failures are HTTP 400/404 with ``{"Success": false, "Errors": [{"Code", "Message"}]}``.
- The Older API (``/v1/transactions/...``) is not served. ZOQL faults (``faultcode``/``faultstring``/``detail``)
  answer HTTP ``zoql_fault_status`` (400 unless a test changes it): Zuora documents the faults, not their
  REST status. ZOQL reads the same rows under their zObject names (zoql.py lists them).
"""

from .app import create_app
from .sandbox import ZuoraSandbox

__all__ = ["create_app", "ZuoraSandbox"]
