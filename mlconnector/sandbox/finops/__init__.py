"""Emulator of Dynamics 365 Finance & Operations: Entra tokens and the OData service at ``/data/``.

URL forms served by one app (``create_app()``; state and helpers on ``app.state.finops``)::

    POST /{tenant}/oauth2/v2.0/token          Entra ID client credentials, scope {environment URL}/.default
    GET  /{tenant}/v2.0/.well-known/openid-configuration   Entra's discovery document (sandbox/entra.py)
    GET  /data/                               the service document (entity sets)
    /data/{EntitySet}                         GET (query options, paging), POST (create)
    /data/{EntitySet}(dataAreaId='usmf',Key='...')   GET, PATCH (If-Match optional), DELETE
    /data/SalesOrderHeadersV2(...)/SalesOrderLines    a header's lines: GET, POST (also FreeTextInvoiceLines)
    POST /data/$batch                         OData v4.0 batch: multipart/mixed, changesets, Content-ID

Entity sets: CustomersV3, ReleasedProductsV2, VendorsV2, SalesOrderHeadersV2, SalesOrderLines,
FreeTextInvoiceHeaders, FreeTextInvoiceLines (keys include ``dataAreaId``) and LegalEntities. Reads without
``cross-company=true`` see only the app user's default company (odata.md), by collection and by key; with it,
every company, narrowed by ``$filter=dataAreaId eq '...'``. Enum properties compare only with F&O's enum
literals (``OnHoldStatus eq Microsoft.Dynamics.DataEntities.CustVendorBlocked'No'``); a plain string is a
400, as in F&O. String equality takes ``*`` wildcards; ``has``, ``in`` and query functions are refused.
Pages hold at most 10,000 rows (fewer with ``Prefer: odata.maxpagesize``) with an opaque nextLink; ``$top``
gives no nextLink. Creates assign number sequences (customer, vendor, sales order, InventoryLotId) and RecIds
(InvoiceIdentifier), check mandatory fields and references in the same company (the customer of an order,
the item of a line), compute line amounts and order totals; a posted invoice or invoiced order refuses
changes. ``$batch`` (``batch.py``) runs single requests and changesets in order through the same handlers;
a changeset is one transaction: when one of its requests fails every change it made is undone and its response
is that request's error, with its Content-ID; ``$<Content-ID>`` addresses an entity created earlier in the
same changeset (``POST $1/SalesOrderLines``). Auth, faults and throttling apply to a batch as one request
(the call log keeps one ``ApiCall`` per batch, its ``operations`` listing what ran). Throttling per user:
6,000 requests per 5-minute sliding window and 52 concurrent requests, 429 with Retry-After and Microsoft's
documented messages. Faults (``Faults``): 429, 5xx, latency, token_ttl.

Where the sandbox knowingly differs from, or goes beyond, what Microsoft documents:

* No standard entity documents a modified-time field; ``add_modified_field(entity)`` adds one (as a partner
  extension would) so that ``$filter`` on it can be exercised. Without it, a connector reads whole tables.
* Error bodies follow community observations (``{"error": {"code": "", "message": "An error has occurred.",
  "innererror": {"message": "Write failed ... Infolog: ...", "type": ...}}}``); the 429 body shape is not
  documented; 401 has an empty body and a Bearer challenge.
* Keys of VendorsV2 (VendorAccountNumber), FreeTextInvoiceHeaders (InvoiceIdentifier, an Int64 RecId) and
  FreeTextInvoiceLines (ParentRecId + LineNumber) come from community code, not Microsoft pages; LegalEntities
  (LegalEntityId, Name) likewise. By-key reads outside the default company without cross-company answer 404.
* Each entity carries a subset of its CDM attributes; unknown properties in a body are refused (400).
* The throttling window is per app user, not per user per web server; resource-based throttling is only the
  injected 429 fault. PATCH answers 204 and requires no If-Match; a stale If-Match answers 412.
* Tokens are opaque strings, not JWTs; ``Faults.token_ttl`` shortens their real life while ``expires_in`` still
  says 3599. No ``$expand``, OData actions or JSON batch (OData 4.01). ``/data/$metadata`` (CSDL) and the metadata
  service (``/Metadata/DataEntities``, ``/Metadata/PublicEntities``, ``/Metadata/PublicEnumerations``) describe the
  entities served (metadata.py).
* A failed changeset is answered as ASP.NET Web API OData does (a changeset response holding only the failing
  request's response); the navigation name ``SalesOrderLines`` on SalesOrderHeadersV2 is community-observed,
  ``FreeTextInvoiceLines`` on FreeTextInvoiceHeaders is assumed by analogy. F&O's limit on operations per
  batch is not documented; the sandbox sets none. Number sequence values drawn by a rolled-back changeset stay
  drawn (a non-continuous sequence).
"""

from .app import create_app
from .entities import ENTITIES, ENUMS, EntitySpec
from .sandbox import ApiCall, FinOpsSandbox

__all__ = ["create_app", "FinOpsSandbox", "ApiCall", "ENTITIES", "ENUMS", "EntitySpec"]
