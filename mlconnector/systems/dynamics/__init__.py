"""Dynamics NAV and Business Central: API v2.0 or NAV page web services (ODataV4), read, upserted, pushed.

One connector serves ``kind = "bc"`` (Business Central online or on-premises, API v2.0) and ``kind = "nav"``
(NAV / BC on-premises; page web services by default, API v2.0 with ``api = "api"``). Both modes hand the
engine records in ONE shape, the BC API v2.0 field names (``number``, ``displayName``, ``email`` ...); in page
mode the record id is the page key (``No``) and references (customerId, itemId) carry numbers.

Settings (``[systems.NAME]``; connections.example.toml documents each one):
kind "bc": tenant, environment, client_id, company, base_url, auth (entra | basic | windows), user,
authority, token_url, scope. kind "nav": base_url, company, user, auth (basic | windows | entra), api
(odata | api), services, line_parts, modified_fields, posted_full_read_hours. Both: page_size, document_page_size (a first read of documents with lines), concurrency, notify_url,
renew_margin_hours, ping_entities.

Secrets (``mlconnector secrets set NAME FIELD``): client_secret (auth = "entra"), password (the web service
access key for "basic", the Windows password for "windows"), client_state (generated on the first subscribe).
The Entra access token is cached in the same store (``access_token_cache``).

API mode resolves ``company`` (a name) to the company's id once and keeps the id next to the state file
(``dynamics-NAME-company.json``), so later runs skip that lookup; an id BC no longer knows (the company was
recreated) is looked up again once and the request repeated.

The package: ``client`` (where the system answers, requests, errors, API mode's company), ``credentials`` (Entra,
Basic, Windows), ``company`` (the company id kept across runs), ``odata`` (times, keys, errors, the paged reads
both protocols share), the two protocols ``api`` (API v2.0) and ``pages`` (page web services), ``writes`` (upserts
through either), ``subscriptions`` (BC's webhooks); the connector here holds the settings and the contract.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from mlconnector.auth import TokenAuth, utcnow
from mlconnector.config import SystemConfig
from mlconnector.errors import (
    EXIT_AUTH,
    EXIT_CONFIG,
    EXIT_UNREACHABLE,
    AuthError,
    ConfigError,
    MLConnectorError,
    Unreachable,
)
from mlconnector.http import RetryPolicy
from mlconnector.systems import ConnectorContext, register_kind
from mlconnector.systems.base import Capabilities, Channel, ConnectorBase, Notification, PingResult, Record, WriteResult
from mlconnector.systems.dynamics.api import API_ENTITIES, MAX_NUMBERS_KEPT, ApiV2  # noqa: F401
from mlconnector.systems.dynamics.client import (CLOUD_ROOT, DEFAULT_CONCURRENCY, DynamicsApi,  # noqa: F401
                                                 Endpoint, endpoint_of)
from mlconnector.systems.dynamics.company import CompanyRecord, _company_not_found, company_record  # noqa: F401
from mlconnector.systems.dynamics.credentials import AUTHORITY, BC_SCOPE, Credentials, NegotiateAuth  # noqa: F401
from mlconnector.systems.dynamics.odata import (BLANK_DATETIME, DEFAULT_PAGE_SIZE, NOT_STORED,  # noqa: F401
                                                RAMP_FROM, Pager, _as_stored, _business_relation, _clean,
                                                _end_of_day, _error, _is_transient, _nav_value, _quote_key,
                                                odata_time, parse_time)
from mlconnector.systems.dynamics.metadata import FieldLists
from mlconnector.systems.dynamics.pages import (CARD_ENTITIES, DEFAULT_LINE_PARTS,  # noqa: F401
                                                DEFAULT_POSTED_FULL_READ_HOURS, DEFAULT_SERVICES, DOCUMENT_STATUS,
                                                DOCUMENT_TYPE, LAST_DATE_MODIFIED, LINE_FIELDS, PAGE_FIELDS,
                                                PAGE_ONLY_FIELDS, POSTING_DATE_FIELDS, Pages)
from mlconnector.systems.dynamics.subscriptions import PUSH_ENTITIES, SUBSCRIPTION_DAYS, Subscriptions  # noqa: F401
from mlconnector.systems.dynamics.writes import READ_ONLY, WRITABLE, Writes  # noqa: F401
from mlconnector.systems.dynamics_journals import JOURNAL_SERVICES

KINDS = ("bc", "nav")
# Pages of documents with their lines on a first read (memory): each page of 2,000 BC invoices of 3 lines raised a
# first load's RSS by about 26 MB while it was read, the load's peak with the state in PostgreSQL.
DEFAULT_DOCUMENT_PAGE_SIZE = 1000


def register() -> None:
    for kind in KINDS:
        register_kind(kind, DynamicsConnector)


class DynamicsConnector(ConnectorBase):
    """The NAV / Business Central connector: see the module docstring for its settings."""

    # A lookup by key follows OData's eq on text, which follows the database's collation: case-insensitive by
    # default (https://learn.microsoft.com/dynamics365/business-central/dev-itpro/cside/cside-collation); Code fields
    # are stored without surrounding spaces.
    capabilities = Capabilities(push=True, read_ahead=True, counts=True, keys_ignore_case=True)

    def __init__(self, system: SystemConfig, context: ConnectorContext, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = system.name
        self.kind = system.kind
        self.system = system
        self.context = context
        self.endpoint = endpoint_of(system)
        default_auth = "entra" if system.kind == "bc" and not self.endpoint.on_premises else "basic"
        self.auth_kind = system.setting("auth", default_auth, type_=str)
        if self.auth_kind not in ("entra", "basic", "windows"):
            raise ConfigError(f"systems.{self.name}.auth must be \"entra\", \"basic\" or \"windows\"")
        self.company_name: str = system.setting("company", required=True, type_=str)
        self.page_size = int(system.setting("page_size", DEFAULT_PAGE_SIZE, type_=int))
        self.document_page_size = int(system.setting("document_page_size", DEFAULT_DOCUMENT_PAGE_SIZE, type_=int))
        self.notify_url: str | None = system.setting("notify_url", type_=str)
        self.renew_margin = timedelta(hours=float(system.setting("renew_margin_hours", 24, type_=(int, float))))
        self.services = {**DEFAULT_SERVICES, **system.setting("services", {}, type_=Mapping)}
        self.line_parts = {**{e: f"{self.services[e]}{p}" for e, p in DEFAULT_LINE_PARTS.items()},
                           **system.setting("line_parts", {}, type_=Mapping)}
        self.modified_fields = {**{e: LAST_DATE_MODIFIED for e in CARD_ENTITIES},
                                **system.setting("modified_fields", {}, type_=Mapping)}
        hours = float(system.setting("posted_full_read_hours", DEFAULT_POSTED_FULL_READ_HOURS, type_=(int, float)))
        if hours < 0:
            raise ConfigError(f"systems.{self.name}.posted_full_read_hours cannot be negative (0: read posted "
                              "documents whole on every run)")
        self.posted_full_read = timedelta(hours=hours)
        self._whole_read: dict[str, datetime] = {}
        self.credentials = Credentials(system, context, self.auth_kind, sleep=sleep)
        self.auth = self.credentials.make_auth()
        self.client = DynamicsApi(system, context, self.endpoint, self.company_name, self.credentials, self.auth,
                                  sleep=sleep)
        self.http, self.company_record = self.client.http, self.client.company_record
        self._page_reader: ThreadPoolExecutor | None = None
        self._page_reader_lock = threading.Lock()
        # Pages are read ahead on this connector's own thread (``_reader``).
        self.pager = Pager(self.client.call, self.client.read_failure, lambda: self._reader(), self.page_size)
        sizes = {"page_size": self.page_size, "document_page_size": self.document_page_size}
        self.api_v2 = ApiV2(self.client, self.pager, **sizes)
        self.pages = Pages(self.client, self.pager, services=self.services, line_parts=self.line_parts,
                           modified_fields=self.modified_fields, posted_full_read=self.posted_full_read,
                           whole_read=self._whole_read, **sizes)
        # The protocol records are read and written through: API v2.0, or NAV's page web services.
        self.protocol: ApiV2 | Pages = self.api_v2 if self.endpoint.mode == "api" else self.pages
        self.writes = Writes(self.client, self.protocol, self.pager, self.services)
        self.subscriptions = Subscriptions(self.client, context, self.api_v2.spec, notify_url=self.notify_url)
        self.field_lists = FieldLists(self.client, self.endpoint.mode, self.services)

    # -- plumbing ----------------------------------------------------------------------------------------------
    def field_names(self, entity: str) -> frozenset[str] | None:
        """From the service's $metadata (``metadata.py``): API v2.0's entity, or the published page's controls."""
        return self.field_lists.field_names(entity)

    def close(self) -> None:
        if self._page_reader is not None:
            self._page_reader.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    @property
    def base_url(self) -> str:
        return self.client.base_url

    def company_id(self) -> str:
        """API mode: the company's id, resolved by its name once (see ``DynamicsApi.company_id``)."""
        return self.client.company_id()

    def company_url(self) -> str:
        return self.client.company_url()

    # -- reads -------------------------------------------------------------------------------------------------
    @property
    def pages_ahead(self) -> bool:
        """Whether a read asks for its next page while this one's rows are taken (the engine turns it off for a
        first load written in bulk jobs)."""
        return self.pager.pages_ahead

    @pages_ahead.setter
    def pages_ahead(self, on: bool) -> None:
        self.pager.pages_ahead = on

    @property
    def small_first_pages(self) -> bool:
        return self.pager.small_first_pages

    @small_first_pages.setter
    def small_first_pages(self, on: bool) -> None:
        self.pager.small_first_pages = on

    @property
    def count_rows(self) -> bool:
        """Whether a read asks for its row count with its first page (see ``counted``)."""
        return self.pager.count_rows

    @count_rows.setter
    def count_rows(self, on: bool) -> None:
        self.pager.count_rows = on

    def counted(self, entity: str) -> int | None:
        """How many rows the read of ``entity`` under way will give, as its first page said (``count_rows``)."""
        return self.pager.counted(entity)

    def _reader(self) -> ThreadPoolExecutor:
        """The thread that fetches the next page of a read ahead of time (one page ahead, at most)."""
        with self._page_reader_lock:
            if self._page_reader is None:
                self._page_reader = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-pages")
            return self._page_reader

    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        """Records modified in [since, until), ascending by (modified, id). With ``since`` None (a first or full
        run) rows never stamped (lastModifiedDateTime 0001-01-01) come too, first, with modified None. The
        protocol's own reading, handed on as it is."""
        if entity in JOURNAL_SERVICES:
            return self.writes.booked(entity, since)
        if entity == "customerDimensions":
            return self._dimensions(until)
        return self.protocol.changes(entity, since, until)

    def _dimensions(self, until: datetime | None) -> Iterator[Record]:
        # customers' default dimensions carry no modification time (page 540, API v2.0): read whole
        self._whole_read["customerDimensions"] = until or utcnow()
        yield from self.protocol.customer_dimensions()

    def record_ids(self, entity: str) -> Iterator[str]:
        """Every id of ``entity`` (a deletion is an id no longer here), a few bytes a row: in API mode ``$select=id``;
        on pages, whose records are known by their number, ``$select=No``. Both at the connector's page size."""
        return self.protocol.record_ids(entity)

    def get(self, entity: str, id: str) -> Record | None:
        """The full current record with its lines (contacts: with relations); None when it is gone."""
        if entity == "customerDimensions":
            customer, _, code = id.partition("/")
            return next((r for r in self.protocol.customer_dimensions(customer) if r.id == id), None)
        return self.protocol.get(entity, id)

    def fixed_fields(self, entity: str) -> str | None:
        """API v2.0's entities cannot carry a table extension's field; pages can (``ApiV2.fixed_fields``)."""
        return self.protocol.fixed_fields(entity)

    def find(self, entity: str, field: str, value: Any) -> list[Record]:
        """The records whose ``field`` (API v2.0 name) equals ``value`` (compared as the server's collation
        does: case-insensitively)."""
        return self.protocol.find(entity, field, value)

    def read_clock(self, entity: str) -> datetime | None:
        """Where the last read of ``entity`` lets the engine close its window: only for posted documents on
        pages (no modification date) after a whole read, at its start; None otherwise (the newest record
        read decides, as usual)."""
        return self._whole_read.get(entity)

    # -- writes ------------------------------------------------------------------------------------------------
    def home_currency(self, entity: str) -> str | None:
        """API v2.0: the company's currency, read once; pages publish none by default (None: a pair's option says
        it)."""
        return self.protocol.home_currency()

    def write(self, entity: str, payloads: list[dict[str, Any]], key: str,
              ids: list[str | None] | None = None) -> list[WriteResult]:
        """Upsert each payload (API v2.0 field names): a linked record (``ids``) by its id, the rest by ``key``;
        see ``Writes``."""
        return self.writes.write(entity, payloads, key, ids)

    def write_calls(self, entity: str, payloads: list[dict[str, Any]], key: str,
                    ids: list[str | None] | None = None) -> int:
        return self.writes.write_calls(entity, payloads, key, ids)

    # -- push: BC webhook subscriptions ---------------------------------------------------------------------------
    def push_entities(self) -> tuple[str, ...]:
        """API mode only (page web services have no webhooks); contacts and purchaseOrders are polled."""
        return self.subscriptions.push_entities()

    def subscribe(self, entity: str, notify_url: str | None = None) -> Channel:
        return self.subscriptions.subscribe(entity, notify_url)

    def renew(self, channel: Channel) -> Channel:
        return self.subscriptions.renew(channel)

    def unsubscribe(self, channel: Channel) -> None:
        self.subscriptions.unsubscribe(channel)

    def handshake(self, query: Mapping[str, str]) -> str | None:
        return self.subscriptions.handshake(query)

    def verify(self, body: bytes | str | Mapping[str, Any], headers: Mapping[str, str] | None = None,
               query: Mapping[str, str] | None = None) -> list[Notification]:
        return self.subscriptions.verify(body, headers, query)

    # -- ping ----------------------------------------------------------------------------------------------------
    def connect(self) -> None:
        """What every run asks first (an Entra token, then the company's id), asked now: the engine asks each
        system's at once, rather than one system after another."""
        if isinstance(self.auth, TokenAuth):
            self.auth.token()
        if self.endpoint.mode == "api":
            self.company_id()

    def ping(self) -> PingResult:
        """Credentials, base URL, company (and its name's case), entities readable; on-prem failures explained.
        A ping answers within seconds: a closed port is tried twice, not through the sync's full backoff."""
        patient, self.http.retry = self.http.retry, RetryPolicy(attempts=2, max_wait=2.0)
        try:
            return self._ping()
        finally:
            self.http.retry = patient

    def _ping(self) -> PingResult:
        base = self.base_url
        details: list[str] = [f"{'API v2.0' if self.endpoint.mode == 'api' else 'page web services (ODataV4)'}, "
                              f"auth {self.auth_kind}"]
        try:
            if isinstance(self.auth, TokenAuth):
                self.auth.token()
                details.append(f"Entra token for app {self.credentials.client_id}")
            details.append(self.protocol.confirm_company())
            wanted = self.system.setting("ping_entities", ["customers", "items"], type_=list)
            readable = []
            for entity in wanted:
                self.protocol.probe(entity)
                readable.append(entity)
            details.append(f"readable: {', '.join(readable)}")
        except AuthError as exc:
            return PingResult(self.name, False, base, tuple(details), error=str(exc), exit_code=EXIT_AUTH)
        except Unreachable as exc:
            return PingResult(self.name, False, base, tuple(details), error=self._unreachable(exc),
                              exit_code=EXIT_UNREACHABLE)
        except ConfigError as exc:
            return PingResult(self.name, False, base, tuple(details), error=str(exc), exit_code=EXIT_CONFIG)
        except MLConnectorError as exc:
            return PingResult(self.name, False, base, tuple(details), error=str(exc),
                              exit_code=getattr(exc, "exit_code", EXIT_UNREACHABLE))
        warnings = []
        if self.auth_kind == "basic" and base.startswith("http://") and "127.0.0.1" not in base \
                and "localhost" not in base:
            warnings.append("Basic authentication over plain http exposes the web service access key: use https")
        return PingResult(self.name, True, base, tuple(details), tuple(warnings))

    def _unreachable(self, exc: Unreachable) -> str:
        if self.endpoint.on_premises:
            port = urlsplit(self.endpoint.root).port or 7048
            return f"{exc}; is the OData/API port ({port}) open and the service tier running?"
        return str(exc)


__all__ = ["DynamicsConnector", "NegotiateAuth", "register", "odata_time", "parse_time", "PAGE_FIELDS",
           "API_ENTITIES", "PUSH_ENTITIES"]
