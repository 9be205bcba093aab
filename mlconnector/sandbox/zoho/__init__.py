"""Zoho CRM emulator: an accounts server and the CRM API v8 of one org, as one Starlette app.

``create_app(clock=, faults=, data_centre="us", edition="enterprise", api_domain=None, time_zone=...,
notify_transport=None, limit_concurrency=True)``; the org and its helpers are ``app.state.zoho`` (a
``ZohoSandbox``).

Paths (one app serves both hosts; in-process the host is ignored):

    POST /oauth/v2/token                     accounts server of the app's DC (form body or query string)
    POST /oauth/v2/token/revoke?token=...
    POST /accounts/{dc}/oauth/v2/token       the accounts server of DC ``dc`` (us, eu, in, au, jp, ca, cn, sa, uk);
                                             a Host of ``accounts.zoho.eu`` etc. selects the DC the same way.
                                             A client is known only to the DC it was registered for; any other DC
                                             answers ``{"error": "invalid_client"}`` as Zoho does.
    GET  /crm/v8/org, GET /crm/v8/org/currencies, GET /crm/v8/users?type=CurrentUser
    GET/POST/PUT/DELETE /crm/v8/{module}, POST /crm/v8/{module}/upsert, GET/PUT/DELETE /crm/v8/{module}/{id}
    POST /crm/v8/coql, GET /crm/v8/{module}/search (criteria, email, phone, word: search.py)
    GET/POST /crm/v8/settings/modules, GET /crm/v8/settings/modules/{api_name}
    GET/POST /crm/v8/settings/fields?module=, GET/PATCH /crm/v8/settings/fields/{id}?module=   (settings.py)
    POST /crm/v8/upload  (content.zohoapis.* in Zoho)  headers feature: bulk-write, X-CRM-ORG: {zgid}
    POST /crm/bulk/v8/write, GET /crm/bulk/v8/write/{job_id}, GET /crm/bulk/v8/write/{job_id}/result
    GET/POST/PUT/PATCH/DELETE /crm/v8/actions/watch

Getting a token in a test::

    zoho = app.state.zoho
    client = zoho.register_client()                      # or register_client("id", "secret")
    code = zoho.issue_grant_code(client.client_id)       # what the consent redirect would carry
    POST /oauth/v2/token grant_type=authorization_code&client_id=..&client_secret=..&code=..&redirect_uri=..
    # or skip the dance: refresh = zoho.issue_refresh_token(client.client_id)

Notifications: after each write batch the sandbox POSTs Zoho's notification JSON to every live channel that
watches the module and operation, as an asyncio task on the app's loop, through ``notify_transport`` (a real
network client when None). ``zoho.deliveries`` records each POST; ``await zoho.drain()`` waits for them.

Where the sandbox deviates from Zoho, or Zoho's own material disagrees with itself:

- Token throttling (>10 access tokens per refresh token in 10 minutes) answers HTTP 200 with
  ``{"error": "Access Denied", "error_description": "You have made too many requests continuously...",
  "status": "failure"}`` - the v4 token-validity page and Kaizen #43 say the status stays 200, so not 400.
- A wrong client secret answers ``invalid_client_secret`` (observed, schmorrison/Zoho#34); a wrong ``soid`` on
  client_credentials answers ``invalid_client`` (Zoho's answer is undocumented).
- The exact 429 body and headers are undocumented: the sandbox sends ``TOO_MANY_REQUESTS`` in Zoho's error shape
  with ``Retry-After``. Half of injected 5xx are 503 with a plain-text body, as a gateway would send.
- More than 100 records in a write: top-level 400 ``LIMIT_EXCEEDED`` with ``{"limit": 100}``; the wording is ours.
- Upsert inserts report ``"duplicate_field": null`` (v7 doc sample); a v8 OAS example shows a field name there.
- The org's modules and fields (``app.state.zoho.schema``: Zoho's standard ones, plus the custom fields and custom
  modules the pairs use unless ``create_app(bare=True)``) decide what a write may carry: a field API name the module
  lacks refuses the record with ``INVALID_DATA`` naming the field (Zoho documents "use only field API names" but not
  the refusal; the shape is its documented INVALID_DATA), text longer than the field's length is refused with its
  ``maximum_length``, and a number field refuses text that is no number (``expected_data_type``). Picklist values are
  not checked. COQL on a field no record has returns null rather than ``INVALID_QUERY`` (columns are not checked
  against the fields).
- Multi-currency (currencies.py) is switched on and currencies added by the sandbox's ``enable_multi_currency`` and
  ``add_currency`` (an admin's Setup steps); the API's enable, add and update currency calls are not served.
- Lookups must be ``{"id": ...}``; Zoho also resolves some lookups by name.
- Line items accept both ``quantity``/``list_price`` and ``Quantity``/``List_Price`` (Zoho's own examples use
  both) and are returned capitalised; tax is not computed.
- Mandatory fields are the system ones (Account_Name, Last_Name, Product_Name, Vendor_Name, Deal_Name + Stage,
  Subject + line items); real orgs add layout-specific ones.
- Sales_Orders and Invoices are missing (``INVALID_MODULE``) in the free and standard editions; that split comes
  from third-party docs, not Zoho.
- COQL: LIMIT max 2,000 and offset + limit max 100,000 (v8 limitations page; the same page's error list still says
  200/10,000). Unparenthesised chains of three or more criteria are a ``SYNTAX_ERROR`` as Zoho requires.
  String comparisons ignore case. Joins, aggregates, GROUP BY and ``include_meta`` are not supported.
- Bulk Write: one CSV per job, no subform CSVs; inventory modules are refused (``MODULE_NOT_AVAILABLE``, Zoho
  lists none). A job moves ADDED -> IN PROGRESS on the first poll and runs on the second (or after 2 sandbox
  seconds). The result is served at ``/crm/bulk/v8/write/{id}/result`` instead of download.zohocrm.com. STATUS
  values are ADDED/UPDATED/SKIPPED. The callback body (undocumented) is the job-details JSON. Bulk writes do not
  trigger notifications.
- Notification channels: the default and fallback expiry is one hour and the maximum one week (v4+ docs; the issue
  said one day). Deliveries are not retried (Zoho's retry policy is undocumented). ``resource_uri`` in
  notifications says ``/crm/v2/`` as Zoho's do.
- The 404 for an unknown record on GET is 204 No Content (OAS); unknown ids on update/delete are per-record
  ``INVALID_DATA``.
- Daily credit limits are counted (``credits``) but not enforced: Zoho's error for an exhausted pool is
  undocumented.
- Concurrency limits (API limits page) are enforced per client app (the OAuth client of the access token; the
  sandbox is one org): at most the edition's number of calls in flight (free 5, standard 10, professional 15,
  enterprise 20, ultimate 25; Zoho One counts as enterprise and CRM Plus as ultimate, as in Zoho's edition
  tables) and at most 10 resource-intensive calls among them. Of Zoho's resource-intensive list the sandbox
  serves GET records with ``sort_by`` or ``cvid``, insert/update/upsert of more than 10 records and COQL
  (Convert Lead, Send Mail and function-invoked Search are not served). A call is in flight from arrival until
  its response is produced, injected latency included; token endpoints and calls without a live token are not
  counted. A call beyond a limit is answered, after the latency, 429 ``TOO_MANY_REQUESTS`` in the injected-429
  shape with ``Retry-After`` (``retry_after=``, default 1 s; Zoho documents no value) and costs no credits.
  ``zoho.limit_concurrency = False`` (or ``create_app(limit_concurrency=False)``) only counts.
  ``concurrency_refused``, ``peak_in_flight`` and ``peak_heavy_in_flight`` report it.
"""

from .app import create_app
from .sandbox import ZohoSandbox

__all__ = ["create_app", "ZohoSandbox"]
