"""Dynamics 365 Finance & Operations: OData data entities at ``/data/``, read across companies for one legal
entity, sales orders and free text invoices booked without duplicates.

Reads always send ``cross-company=true`` with ``dataAreaId eq '<legal_entity>'``: without it F&O silently
returns only the app user's default company. Record ids are the entity's own key within the legal entity
(CustomerAccount, ItemNumber, VendorAccountNumber, SalesOrderNumber, InvoiceIdentifier). F&O's standard
entities have no modified-time field: name one per entity in ``modified_fields`` (an extension of yours) and
reads become incremental; otherwise each read is the legal entity's whole table, paged (the engine skips what
is unchanged).

Writes book documents: ``SalesOrderHeadersV2`` (lines to SalesOrderLines) and ``FreeTextInvoiceHeaders``
(lines to FreeTextInvoiceLines), each document atomically: header and lines travel as one changeset of an OData
``POST /data/$batch`` (the lines addressed to the new header by Content-ID, ``$1/SalesOrderLines``), which F&O
applies all or nothing. A line F&O refuses (an unknown item, a missing field) rolls its header back; that
document fails alone, with F&O's status, error code and message and the part that failed (``line 2 (item
X)``), while the other documents of the same ``$batch`` land. One ``$batch`` carries up to ``batch_documents``
documents (default 100, one changeset each). A 429 on the ``$batch`` is retried after Retry-After like any call;
a lost answer is reported as such ("may or may not have been applied") and the next run finds what landed.
F&O has no idempotency key, so before writing, the documents are looked up (20 to a filtered read) by the
natural key the pair sets (the source record's id kept in a reference field) or, when linked, by their own key;
a document already there is never booked twice, also after a crash between F&O's commit and ours. Lines missing
from a document booked before writes were atomic are added in one changeset. Nothing is posted and nothing goes
to the general ledger.

Settings (``[systems.NAME]``, kind "finops"): environment (host, e.g. contoso.operations.dynamics.com),
base_url (where requests go; default https://{environment}), tenant, client_id, legal_entity, token_url,
authority, scope (default https://{environment}/.default), page_size (<= 10,000), concurrency,
batch_documents, modified_fields, read_filters, ping_entities. Secret: client_secret (``mlconnector secrets set NAME
client_secret``); the access token is cached in the same store.

The package: ``client`` (the token, calls, paged reads), ``odata`` (the entity sets, literals, times, errors),
``reads``, ``writes`` (documents booked once) and ``batch`` (``$batch`` requests and answers); the connector here
holds the settings and the contract.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from mlconnector.config import SystemConfig
from mlconnector.errors import (
    EXIT_AUTH,
    EXIT_CONFIG,
    EXIT_UNREACHABLE,
    AuthError,
    ConfigError,
    MLConnectorError,
    RemoteError,
    Unreachable,
)
from mlconnector.http import RetryPolicy
from mlconnector.systems import ConnectorContext, register_kind
from mlconnector.systems.base import ConnectorBase, PingResult, Record, WriteResult
from mlconnector.systems.finops.batch import BatchAnswer, _answer, _Changeset, _Part, parse_batch_response  # noqa: F401
from mlconnector.systems.csdl import entity_set_fields
from mlconnector.systems.finops.client import AUTHORITY, DEFAULT_CONCURRENCY, FinOpsApi
from mlconnector.systems.finops.odata import (BLANK_DATE, ENTITIES, ENUM_NAMESPACE, ITEMLESS_LINES,  # noqa: F401
                                              LINES_FIELD, WRITABLE, EntityInfo, _body, _clean, _error_message,
                                              enum_literal, error_text, odata_time, parse_time, quote_string)
from mlconnector.systems.finops.reads import Reads
from mlconnector.systems.finops.writes import DEFAULT_BATCH_DOCUMENTS, LOOKUP_CHUNK, Writes  # noqa: F401

KIND = "finops"
MAX_PAGE_SIZE = 10_000


def register() -> None:
    register_kind(KIND, FinOpsConnector)


class FinOpsConnector(ConnectorBase):
    """The Finance & Operations connector: see the module docstring for its settings and guarantees."""

    def __init__(self, system: SystemConfig, context: ConnectorContext, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = system.name
        self.system = system
        self.context = context
        environment = system.setting("environment", type_=str)
        base = system.setting("base_url", type_=str)
        if not environment and not base:
            raise ConfigError(f"systems.{self.name}.environment is missing: the F&O environment's host name, "
                              "e.g. contoso.operations.dynamics.com (as in the browser's address bar)")
        host = (environment or "").removeprefix("https://").removeprefix("http://").strip("/")
        self.environment_url = f"https://{host}" if host else str(base).rstrip("/")
        self.root = str(base or self.environment_url).rstrip("/")
        self.legal_entity: str = str(system.setting("legal_entity", required=True, type_=str)).lower()
        self.page_size = min(MAX_PAGE_SIZE, int(system.setting("page_size", MAX_PAGE_SIZE, type_=int)))
        self.modified_fields: dict[str, str] = dict(system.setting("modified_fields", {}, type_=Mapping))
        self.read_filters: dict[str, str] = dict(system.setting("read_filters", {}, type_=Mapping))
        self.client_id: str = system.setting("client_id", required=True, type_=str)
        tenant = system.setting("tenant", required=True, type_=str)
        authority = str(system.setting("authority", AUTHORITY, type_=str)).rstrip("/")
        self.token_url: str = system.setting("token_url", f"{authority}/{tenant}/oauth2/v2.0/token", type_=str)
        # The resource is the environment URL without a trailing slash (services-home-page.md).
        self.scope: str = system.setting("scope", f"{self.environment_url}/.default", type_=str)
        self.api = FinOpsApi(system, context, root=self.root, client_id=self.client_id, token_url=self.token_url,
                             scope=self.scope, legal_entity=self.legal_entity, page_size=self.page_size, sleep=sleep)
        self.token_http, self.auth, self.http = self.api.token_http, self.api.auth, self.api.http
        self._call, self._company_filter, self._read_failure = (self.api.call, self.api.company_filter,
                                                                self.api.read_failure)
        # Documents per $batch request: each its own changeset; F&O documents no limit, so stay moderate.
        self.batch_documents = max(1, int(system.setting("batch_documents", DEFAULT_BATCH_DOCUMENTS, type_=int)))

        self.reads = Reads(self.api, self.modified_fields, self.read_filters)
        self._field_lists: dict[str, frozenset[str]] | None = None
        self.writes = Writes(self.api, self.reads.lines, self.batch_documents)

    # -- plumbing ----------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self.api.base_url

    def field_names(self, entity: str) -> frozenset[str]:
        """The entity set's properties from the service's CSDL, ``GET /data/$metadata`` (read once; "the service
        metadata document", https://learn.microsoft.com/en-us/dynamics365/fin-ops-core/dev-itpro/data-entities/
        odata), and a document's lines as records carry them."""
        if self._field_lists is None:
            response = self.api.call("GET", "$metadata", headers={"Accept": "application/xml"})
            if response.status_code != 200:
                raise self.api.fail(response, "reading $metadata")
            self._field_lists = entity_set_fields(self.name, response.text)
        names = self._field_lists.get(entity)
        return names | {LINES_FIELD} if names is not None else frozenset()

    def close(self) -> None:
        self.api.close()

    # -- reads -------------------------------------------------------------------------------------------------
    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        """Rows of the legal entity; with a modified field, those modified in [since, until) in that order."""
        return self.reads.changes(entity, since, until)

    def record_ids(self, entity: str) -> Iterator[str]:
        """Every key of the legal entity's rows (a deletion is a key no longer here; see ``Reads``)."""
        return self.reads.record_ids(entity)

    def get(self, entity: str, id: str) -> Record | None:
        """The current row (documents with their lines); None when it is gone."""
        return self.reads.get(entity, id)

    # -- writes ------------------------------------------------------------------------------------------------
    def write(self, entity: str, payloads: list[dict[str, Any]], key: str,
              ids: list[str | None] | None = None) -> list[WriteResult]:
        """Book each document once, header and lines in one changeset (all or nothing); see ``Writes``."""
        return self.writes.write(entity, payloads, key, ids)

    def write_calls(self, entity: str, payloads: list[dict[str, Any]], key: str,
                    ids: list[str | None] | None = None) -> int:
        return self.writes.write_calls(entity, payloads, key, ids)

    # -- ping --------------------------------------------------------------------------------------------------
    def ping(self) -> PingResult:
        """Token, environment (the service document), legal entity exists, entities readable."""
        patient, self.http.retry = self.http.retry, RetryPolicy(attempts=2, max_wait=2.0)
        details: list[str] = []
        try:
            self.auth.token()
            details.append(f"Entra token for app {self.client_id} (scope {self.scope})")
            response = self._call("GET", self.base_url + "/")
            if response.status_code != 200:
                raise RemoteError(self.name, response.status_code, message=f"no OData service at {self.base_url}; "
                                  "check environment / base_url")
            details.append("environment answers")
            rows = list(self._call_legal_entities())
            if not rows:
                raise ConfigError(f"systems.{self.name}.legal_entity = {self.legal_entity!r} does not exist; legal "
                                  f"entities there: {', '.join(self._all_legal_entities()) or 'none visible'}")
            details.append(f"legal entity {self.legal_entity.upper()} ({rows[0].get('Name', '?')})")
            readable = []
            for entity in self.system.setting("ping_entities", ["CustomersV3", "ReleasedProductsV2", "VendorsV2"],
                                              type_=list):
                response = self._call("GET", entity, params={"cross-company": "true", "$top": "1",
                                                             "$filter": self._company_filter()})
                if response.status_code != 200:
                    raise self._read_failure(response, entity)
                readable.append(entity)
            details.append(f"readable: {', '.join(readable)}")
        except AuthError as exc:
            return PingResult(self.name, False, self.base_url, tuple(details), error=str(exc), exit_code=EXIT_AUTH)
        except Unreachable as exc:
            return PingResult(self.name, False, self.base_url, tuple(details), error=str(exc),
                              exit_code=EXIT_UNREACHABLE)
        except ConfigError as exc:
            return PingResult(self.name, False, self.base_url, tuple(details), error=str(exc), exit_code=EXIT_CONFIG)
        except MLConnectorError as exc:
            return PingResult(self.name, False, self.base_url, tuple(details), error=str(exc),
                              exit_code=getattr(exc, "exit_code", EXIT_UNREACHABLE))
        finally:
            self.http.retry = patient
        warnings = []
        if not self.modified_fields:
            warnings.append("no modified_fields: every sync reads whole tables (fine for thousands of rows; add a "
                            "ModifiedDateTime field to the entities for incremental reads)")
        if urlsplit(self.root).scheme == "http" and urlsplit(self.root).hostname not in ("127.0.0.1", "localhost"):
            warnings.append("base_url is plain http")
        return PingResult(self.name, True, self.base_url, tuple(details), tuple(warnings))

    def _call_legal_entities(self) -> Iterator[dict[str, Any]]:
        response = self._call("GET", "LegalEntities",
                              params={"$filter": f"LegalEntityId eq {quote_string(self.legal_entity)}"})
        if response.status_code != 200:
            raise self._read_failure(response, "LegalEntities")
        return iter(response.json().get("value") or [])

    def _all_legal_entities(self) -> list[str]:
        response = self._call("GET", "LegalEntities", params={"$select": "LegalEntityId"})
        if response.status_code != 200:
            return []
        return [str(r.get("LegalEntityId")) for r in response.json().get("value") or []]


__all__ = ["FinOpsConnector", "register", "enum_literal", "odata_time", "parse_time", "ENTITIES", "error_text",
           "parse_batch_response", "BatchAnswer"]
