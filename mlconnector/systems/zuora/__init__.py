"""Zuora Billing: OAuth client credentials per region, Object Query reads, accounts, catalog and Orders writes
with Idempotency-Key, and Invoice Posted / Payment Processed callouts.

Settings (``[systems.NAME]`` with ``kind = "zuora"``; connections.example.toml documents each one):
region (us1 | us2 | eu | apac), environment (production | sandbox | test), base_url (overrides both), client_id,
entity_ids, zuora_version, concurrency, page_size, account_match (none | company_name | email_domain),
rate_plan_name, notify_url, callout_auth (basic | header | none), callout_user, callout_header,
retry_attempts, retry_backoff_seconds, retry_max_wait_seconds, read_api (object_query | zoql, or a table per
entity such as ``{invoices = "zoql"}``), zoql_batch_size (1-2000), zoql_window_records, zoql_fields (custom
fields ZOQL reads select, per entity: ``{accounts = ["NAVCustomerNumber__c"]}``).

Reads: Object Query by default, as Zuora recommends (cursor pages of at most 99, expansions in the same call).
``read_api = "zoql"`` reads changes through ZOQL (``/v1/action/query`` + ``queryMore``) instead: batches of up
to 2,000 records, for tenants without Object Query or first loads of many records. ZOQL has no ``*`` (custom
fields must be named: ``zoql_fields``), no joins (the bill-to contact, rate plans, charges and prices, invoice
items, payment applications and the account's currency are each read with a second query per page, 200 ids a
query) and no order, while a read must come in ascending updated order: ZOQL reads go window by window of
UpdatedDate, each window read through queryMore up to ``zoql_window_records`` records (default 10,000), sorted
and handed on; a fuller window is split at its median date and read again. Only a single second holding more
than that many records is handed on batch by batch unsorted. Memory stays at one window. Lookups by key or id
(``get``, upsert matching) stay on Object Query. Either way ``read_clock`` tells the engine Zuora's clock when a
read began (its ``Date`` less the call's duration), so an incremental run's window closes there and the next run
does not re-read the records that share the newest stamp.

Deletions: Zuora lists no deleted records, so the engine finds them missing from ``record_ids`` (ZOQL ``select Id``,
2,000 a call, whatever ``read_api``). It neither marks nor deletes records here: Zuora has no tags, and deleting an
account removes its transactions (flows into Zuora unlink).

Secrets (``mlconnector secrets set NAME FIELD``): client_secret; callout_password (callout_auth = "basic") or
callout_secret (callout_auth = "header"). The access token is cached in the same store (``access_token_cache``)
and minted again five minutes before its hour is up.

Callouts are defined in Zuora (Settings > Notifications: a callout on Invoice Posted and one on Payment
Processed, pointing at ``mlconnector listen``'s /hooks/NAME). There is nothing to subscribe through the API, so
``subscribe`` only records a long-lived channel and ``renew`` extends it; the poll stays the safety net (external

The package: ``client`` (hosts, token, calls, keyed creates, Zuora's clock), ``errors`` (business errors and
what is retried), ``records`` (rows as records), ``object_query`` and ``zoql`` (the two read APIs), ``accounts``,
``catalog`` and ``orders`` (the writes), ``callouts`` (push); the connector here holds the settings and the contract.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from mlconnector.config import SystemConfig
from mlconnector.errors import ConfigError, MLConnectorError
from mlconnector.systems import ConnectorContext, register_kind
from mlconnector.systems.base import (Capabilities, Channel, ConnectorBase, Notification, PingResult, Record,
                                     WriteResult, write_each)
from mlconnector.systems.zuora.accounts import Accounts
from mlconnector.systems.zuora.callouts import PUSH_ENTITIES, Callouts, _callout_params  # noqa: F401
from mlconnector.systems.zuora.catalog import Catalog
from mlconnector.systems.zuora.client import (BASE_URLS, CREATE_ATTEMPTS, DEFAULT_CONCURRENCY,  # noqa: F401
                                              DEFAULT_VERSION, ENVIRONMENT_NAMES, REGION_NAMES, ZuoraClient,
                                              _began, _digest, base_url_of, fingerprint)
from mlconnector.systems.zuora.describe import Describe
from mlconnector.systems.zuora.errors import (CATEGORIES, RETRYABLE, ZuoraFailure, _is_transient,  # noqa: F401
                                              _not_found, failure_of)
from mlconnector.systems.zuora.object_query import PAGE_SIZE, ObjectQuery
from mlconnector.systems.zuora.orders import Orders, _merge_lines  # noqa: F401
from mlconnector.systems.zuora.records import (CONTACT_FIELDS, ENTITIES, EXPANDS, Rows, oq_time,  # noqa: F401
                                               parse_utc)
from mlconnector.systems.zuora.zoql import (CONTACT_ZOQL, OQ_NAMES, ZOQL_BATCH, ZOQL_IDS, ZOQL_READS,  # noqa: F401
                                            ZOQL_WINDOW, Zoql, _oq_shape, _split, _zoql_text)

KIND = "zuora"

READ_APIS = ("object_query", "zoql")


def register() -> None:
    register_kind(KIND, ZuoraConnector)


class ZuoraConnector(ConnectorBase):
    """The Zuora connector: see the module docstring for its settings."""

    capabilities = Capabilities(push=True, fetches_many=True)

    def __init__(self, system: SystemConfig, context: ConnectorContext, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = system.name
        self.system = system
        self.context = context
        self._sleep = sleep
        self.base, self.chosen_by = base_url_of(system)
        self.client_id: str = system.setting("client_id", required=True, type_=str)
        entities = system.setting("entity_ids", [], type_=(list, str))
        self.entity_ids = [entities] if isinstance(entities, str) else [str(e) for e in entities]
        if len(self.entity_ids) > 1:
            raise ConfigError(f"systems.{self.name}.entity_ids: Zuora-Entity-Ids takes one entity per call; "
                              "configure one [systems.*] table per entity")
        headers = {"Zuora-Version": str(system.setting("zuora_version", DEFAULT_VERSION, type_=str))}
        if self.entity_ids:
            headers["Zuora-Entity-Ids"] = self.entity_ids[0]
        self.page_size = max(1, min(PAGE_SIZE, int(system.setting("page_size", PAGE_SIZE, type_=int))))
        self.account_match = str(system.setting("account_match", "none", type_=str))
        if self.account_match not in ("none", "company_name", "email_domain"):
            raise ConfigError(f"systems.{self.name}.account_match must be none, company_name or email_domain")
        self.rate_plan_name = system.setting("rate_plan_name", type_=str)
        self.notify_url: str | None = system.setting("notify_url", type_=str)
        self.callout_auth = str(system.setting("callout_auth", "basic", type_=str))
        if self.callout_auth not in ("basic", "header", "none"):
            raise ConfigError(f"systems.{self.name}.callout_auth must be basic, header or none")
        self.callout_user = str(system.setting("callout_user", "zuora", type_=str))
        self.callout_header = str(system.setting("callout_header", "X-Callout-Token", type_=str))
        self.renew_margin = timedelta(days=30)
        self.client = ZuoraClient(system, context, self.base, self.client_id, headers, sleep=sleep)
        self.auth, self.http = self.client.auth, self.client.http
        self._call, self._ok = self.client.call, self.client.ok
        # entity -> Zuora's clock when the last ``changes`` read of it began (see read_clock)
        self._read_clock = self.client.read_clock
        self.read_api = self._read_apis(system.setting("read_api", "object_query", type_=(str, dict)))
        self.zoql_batch = int(system.setting("zoql_batch_size", ZOQL_BATCH, type_=int))
        if not 1 <= self.zoql_batch <= ZOQL_BATCH:
            raise ConfigError(f"systems.{self.name}.zoql_batch_size must be between 1 and {ZOQL_BATCH}")
        self.zoql_window = max(self.zoql_batch, int(system.setting("zoql_window_records", ZOQL_WINDOW, type_=int)))
        extra = system.setting("zoql_fields", {}, type_=dict)
        if not all(e in ENTITIES and isinstance(v, list) for e, v in extra.items()):
            raise ConfigError(f"systems.{self.name}.zoql_fields: a table of entity = [field names], entities "
                              f"{', '.join(ENTITIES)}")
        self.zoql_fields = {e: tuple(str(f) for f in v) for e, v in extra.items()}
        rows = Rows(self.name, self.rate_plan_name)
        self.object_query = ObjectQuery(self.client, rows, self.page_size)
        self.zoql = Zoql(self.client, rows, self.zoql_batch, self.zoql_window, self.zoql_fields)
        self.accounts = Accounts(self.client, self.object_query, self.account_match)
        self.catalog = Catalog(self.client, self.object_query, rows)
        self.orders = Orders(self.client, self.object_query, self.catalog)
        self.describe = Describe(self.client)
        self.callouts = Callouts(self.name, context, self.notify_url, self.callout_auth, self.callout_user,
                                 self.callout_header)

    def _read_apis(self, value: Any) -> dict[str, str]:
        """read_api: one API for every entity, or a table entity -> API (unnamed entities: object_query)."""
        chosen = {e: value for e in ENTITIES} if isinstance(value, str) else {
            e: str(value.get(e, "object_query")) for e in ENTITIES}
        unknown = set(value) - set(ENTITIES) if isinstance(value, dict) else set()
        wrong = sorted({v for v in chosen.values() if v not in READ_APIS})
        if unknown or wrong:
            raise ConfigError(f"systems.{self.name}.read_api: use object_query or zoql, for all entities or as a "
                              f"table of {', '.join(ENTITIES)}")
        return chosen

    # -- plumbing -------------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self.base

    def close(self) -> None:
        self.client.close()

    # -- reads ----------------------------------------------------------------------------------------------------
    def link_id(self, entity: str, record: Record) -> str:
        """Subscriptions are written and linked by number (each amendment makes a new version with a new id)."""
        if entity == "subscriptions":
            return str(record.get("name") or record.get("subscriptionNumber") or record.id)
        return record.id

    def _check_entity(self, entity: str) -> None:
        if entity not in ENTITIES:
            raise ConfigError(f"{self.name}: entity {entity!r} is not read by the Zuora connector "
                              f"(known: {', '.join(ENTITIES)})")

    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        """Records updated in [since, until), ascending by updatedDate, through Object Query's cursor paging
        (or ZOQL windows, with ``read_api = "zoql"``)."""
        self._check_entity(entity)
        self._read_clock.pop(entity, None)
        if self.read_api[entity] == "zoql":
            yield from self.zoql.changes(entity, since, until)
            return
        yield from self.object_query.changes(entity, since, until)

    def coarse_stamps(self, entity: str) -> bool:
        """updatedDate carries whole seconds (Object Query and ZOQL alike,
        https://developer.zuora.com/v1-api-reference/api/tag/Object-Queries/): two edits within one second share
        a stamp, so the engine tells versions apart by content."""
        return True

    def read_clock(self, entity: str) -> datetime | None:
        """Zuora's own clock when the last ``changes`` read of ``entity`` began (from the ``Date`` of its first
        answer, less that call's duration); None when it did not say. A record stamped before then that the read
        did not return was not there to read: the engine may close the read window there."""
        return self._read_clock.get(entity)

    def record_ids(self, entity: str) -> Iterator[str]:
        """Every id (a deletion is an id no longer here; subscriptions: every number), through ZOQL whatever
        ``read_api`` (2,000 ids a call)."""
        self._check_entity(entity)
        yield from self.zoql.record_ids(entity)

    def get(self, entity: str, id: str) -> Record | None:
        self._check_entity(entity)
        return self.object_query.get(entity, id)

    def also_read(self, entity: str, fields: list[str]) -> None:
        """Custom fields a configured mapping reads: ZOQL has no ``*``, so its reads name them as ``zoql_fields``
        does (Object Query returns every field it holds anyway)."""
        custom = [f for f in fields if f.endswith("__c")]
        if custom:
            self.zoql_fields[entity] = tuple(dict.fromkeys([*self.zoql_fields.get(entity, ()), *custom]))

    def field_names(self, entity: str) -> frozenset[str]:
        """The object's fields from Describe (``describe.py``), custom fields included."""
        self._check_entity(entity)
        return self.describe.field_names(entity)

    def get_many(self, entity: str, ids: list[str]) -> dict[str, Record]:
        """Many records in one query (``id.IN:[...]``), for callouts that name several."""
        self._check_entity(entity)
        return self.object_query.get_many(entity, ids)

    # -- writes ---------------------------------------------------------------------------------------------------
    def write(self, entity: str, payloads: list[dict[str, Any]], key: str,
              ids: list[str | None] | None = None) -> list[WriteResult]:
        """Accounts and products are upserted by ``key`` (a custom field / the SKU); subscriptions go through the
        Orders API: CreateSubscription for a new one, AddProduct / RemoveProduct / UpdateProduct for a change."""
        writers = {"accounts": self.accounts.write, "products": self.catalog.write,
                   "subscriptions": self.orders.write}
        if entity not in writers:
            raise ConfigError(f"{self.name}: writing {entity} is not supported (writable: {', '.join(writers)})")
        known = ids or [None] * len(payloads)
        def write_one(each: tuple[dict[str, Any], str | None]) -> WriteResult:
            try:
                return writers[entity](each[0], key, each[1])
            except ZuoraFailure as exc:
                return WriteResult("fail", error=str(exc), error_class=exc.error_class)

        return write_each(zip(payloads, known), write_one)

    def write_calls(self, entity: str, payloads: list[dict[str, Any]], key: str,
                    ids: list[str | None] | None = None) -> int:
        """The calls ``write`` makes, for a dry run's estimate (Zuora takes one record a call, and more):
        an account is looked for by its key (and the matching rule), created, and read back for its version (a
        linked one: updated and read back); a product is looked for by SKU, created with its rate plan and
        charge, its catalog entry (with the rate plans) read and read back (a linked one: read, updated, its
        catalog entry read, read back); a subscription is looked for by its key (a linked one by number too),
        and ordered, after reading the rate plan of each product not read yet in this run."""
        ids = ids or [None] * len(payloads)
        catalog = 2  # a product's catalog entry, and its rate plans behind a link (zuora-version 230 and later)
        calls = 0
        products: set[str] = set()
        for payload, known in zip(payloads, ids):
            if entity == "accounts":
                calls += 2 if known else (2 + (payload.get(key) not in (None, ""))
                                          + (self.account_match == "company_name"))
            elif entity == "products":
                calls += (3 + catalog) if known else (4 + catalog + bool(payload.get("sku")))
            elif entity == "subscriptions":
                calls += 1 + bool(known) + (payload.get(key) not in (None, ""))
                products.update(str(line.get("productId")) for line in payload.get("lines") or []
                                if line.get("productId"))
        return calls + catalog * len(products - self.catalog.plans_read())

    # -- callouts ------------------------------------------------------------------------------------------------
    def push_entities(self) -> tuple[str, ...]:
        return self.callouts.push_entities()

    def subscribe(self, entity: str, notify_url: str | None = None) -> Channel:
        return self.callouts.subscribe(entity, notify_url)

    def renew(self, channel: Channel) -> Channel:
        return self.callouts.renew(channel)

    def unsubscribe(self, channel: Channel) -> None:
        self.callouts.unsubscribe(channel)

    def handshake(self, query: Mapping[str, str]) -> str | None:
        return self.callouts.handshake(query)

    def verify(self, body: bytes | str, headers: Mapping[str, str] | None = None,
               query: Mapping[str, str] | None = None) -> list[Notification]:
        return self.callouts.verify(body, headers, query)

    # -- ping -----------------------------------------------------------------------------------------------------
    def ping(self) -> PingResult:
        """Token, one Object Query call; shows the base URL, how it was chosen, tenant and entities."""
        try:
            token = self.auth.token()
            self._ok(self._call("GET", "/object-query/accounts", params={"pageSize": 1}), "query accounts")
        except MLConnectorError as exc:
            return PingResult(self.name, False, self.base, error=str(exc), exit_code=exc.exit_code)
        scope = str(token.extra.get("scope") or "").split()
        tenant = next((s.split(".", 1)[1] for s in scope if s.startswith("tenant.")), "?")
        entities = [s.split(".", 1)[1] for s in scope if s.startswith("entity.")]
        details = [f"{self.chosen_by} ({self.base})", f"tenant {tenant}",
                   f"zuora-version {self.http.client.headers.get('Zuora-Version')}"]
        if self.entity_ids:
            details.append(f"entity {self.entity_ids[0]}")
        warnings = []
        if len(entities) > 1 and not self.entity_ids:
            warnings.append(f"the client can use {len(entities)} entities: set entity_ids to the one to sync")
        if self.notify_url and self.callout_auth == "none":
            warnings.append("callouts are accepted without authentication (callout_auth = \"none\")")
        if self.notify_url and self.callout_auth != "none":
            field = "callout_password" if self.callout_auth == "basic" else "callout_secret"
            if not self.context.secrets.get(self.name, field):
                warnings.append(f"no {field} stored: callouts will be refused "
                                f"(`mlconnector secrets set {self.name} {field}`)")
        return PingResult(self.name, True, self.base, tuple(details), tuple(warnings))

__all__ = ["ZuoraConnector", "register", "base_url_of", "BASE_URLS", "failure_of", "ZuoraFailure"]
