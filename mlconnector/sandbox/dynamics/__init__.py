"""Emulator of Dynamics NAV / Business Central: Entra tokens, API v2.0, ODataV4 page web services, webhooks.

URL forms served by one app (``create_app()``; state and helpers on ``app.state.dynamics``)::

    POST /{tenant}/oauth2/v2.0/token                                Entra ID client credentials
    GET  /{tenant}/v2.0/.well-known/openid-configuration            Entra's discovery document (sandbox/entra.py)
    /v2.0/{tenant}/{environment}/api/v2.0/...                       BC online API v2.0, Bearer
    /v2.0/{environment}/api/v2.0/...                                same, tenant taken from the token
    /v2.0/{tenant}/{environment}/ODataV4/Company('{name}')/{Svc}    BC online page web services, Bearer
    /{instance}/api/v2.0/...                                        BC on-premises API v2.0
    /{instance}/ODataV4/Company('{name}')/{Svc}                     NAV / BC on-premises page web services

On-premises forms authenticate by the server instance's credential type (``credential_type``):
NavUserPassword (Basic: user name + web service access key, the default), Windows (answers 401 with
``WWW-Authenticate: Negotiate, NTLM`` — the "wrong credential type" a Basic client meets) or Entra (Bearer).
Below ``api/v2.0``: ``companies``, ``companies({id})/{customers|vendors|contacts|items|salesOrders|
salesInvoices|purchaseOrders}[({id})]``, ``contacts({id})/contactInformation`` (also ``$expand``; a person
contact shows its company contact's business relations too), document lines (``salesOrders({id})/salesOrderLines``, top-level
``salesOrderLines({id})``...), ``salesInvoices({id})/Microsoft.NAV.post``, and ``subscriptions['(''{id}'')']``.
ODataV4 services (renamable with ``publish_page``): Customer (page 21), Vendor (26), Item (30), Contact (5050),
SalesOrder (42, lines ``SalesOrderSalesLines``), PostedSalesInvoice (132, lines
``PostedSalesInvoiceSalesInvLines``), PurchaseOrder (50), ContactBusinessRelations (5054, read-only;
``relations_service``), SalesJournal (253) and CashReceiptJournal (255) over Gen. Journal Line, and
CustomerLedgerEntries (25, read-only; journals.py); the default service ``Company`` lists companies.
``relate_contact()`` records a Contact Business Relation, ``post_journal()`` posts a journal batch and ``ship()`` a
sales order's shipment, as NAV users do.

Where the sandbox knowingly differs from Microsoft's documented behaviour, and why:

* Stale If-Match answers 409 ``Request_EntityChanged`` (ODataConflictException, HTTP 409 in
  include-http-status-error-codes.md), not 412; a missing If-Match on PATCH/DELETE answers 400
  ``BadRequest_InvalidToken``. The exact status for a missing If-Match on DELETE is not documented (the
  delete pages say If-Match is required, so the sandbox requires it).
* The error body of a failed subscription handshake, of subscribing to a non-webhook entity (contacts,
  purchaseOrders), of a wrong company name in an ODataV4 URL (404 ``Internal_CompanyNotFound`` here) and of a
  duplicate number (409 ``Internal_EntityWithSameKeyExists`` here) are not documented; the codes chosen come
  from BC's documented error-code table, the statuses and messages are the sandbox's own.
* 429 bodies use ``Application_TooManyRequests`` (seen in the field; not in Microsoft's docs) and always carry
  ``Retry-After`` (documented for 502/503 only), so clients can be tested for honouring it.
* Notifications are sent after ``debounce`` seconds of real time (BC: 30 s) and retried after
  ``webhook_settings.retry_delays`` (BC: over 36 hours); subscription and token expiry follow the SandboxClock.
  The handshake is a POST with an empty body (the method is not documented). Expired subscriptions vanish at
  once (BC removes them in a cleanup job).
* Notification ``resource`` values follow the documented sample: ``api/v2.0/companies(...)/customers(...)``
  without a leading slash for single rows, ``/api/v2.0/...?$filter=lastModifiedDateTime%20gt%20...`` for
  ``collection`` notifications.
* ``$skiptoken`` values are opaque sandbox tokens (BC uses the last row's key); string comparisons in
  ``$filter`` are case-insensitive like SQL Server's default collation; only the filter subset a connector
  uses is implemented (eq ne gt ge lt le and or not, startswith/endswith/contains, tolower/toupper).
* ODataV4 document pages (SalesOrder, PostedSalesInvoice, PurchaseOrder) are read-only here; card pages are
  writable. Page field lists are a representative subset of the standard pages, not their full layout.
* Tokens are opaque strings, not JWTs; ``Faults.token_ttl`` shortens their real life while ``expires_in``
  still says 3599, so a client meets a 401 on a token it believes valid.
* ``GET .../api/v2.0/$metadata`` answers the CSDL of the entities served (metadata.py), ``GET .../ODataV4/$metadata``
  that of the published pages (nav_metadata.py). ``POST .../api/v2.0/$batch`` takes JSON batches (batch.py;
  ``Isolation: snapshot`` undoes a failed batch). No multipart ``$batch``, ``$apply``, deep PATCH or bound actions
  other than ``salesInvoices/post``; ``$expand`` as the entities' specs list: lines, a contact's information, a
  document's customer or vendor, and a customer's or vendor's currency, paymentTerm, paymentMethod (and a
  customer's shipmentMethod).
"""

from .app import create_app
from .sandbox import ApiCall, DynamicsSandbox
from .schema import DEFAULT_PAGES, ENTITIES, PageSpec
from .webhooks import Delivery, WebhookSettings

__all__ = ["create_app", "DynamicsSandbox", "ApiCall", "Delivery", "WebhookSettings", "PageSpec",
           "DEFAULT_PAGES", "ENTITIES"]
