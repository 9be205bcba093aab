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
payments send no callout, and Zuora retries a callout at most a few times).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import json
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import quote
from xml.etree import ElementTree

import httpx

from mlconnector.auth import SecretTokenCache, Token, TokenAuth, utcnow
from mlconnector.config import SystemConfig
from mlconnector.errors import AuthError, ConfigError, MLConnectorError, NotificationRejected, RemoteError
from mlconnector.http import ApiClient, json_body, retry_policy, server_time
from mlconnector.systems import ConnectorContext, register_kind
from mlconnector.systems.base import (Capabilities, Channel, ConnectorBase, Notification, PingResult, Record,
                                     WriteResult, write_each)

KIND = "zuora"

# REST base URL per (region, environment), from Zuora's API reference servers list and its UI -> REST table.
# "test" is the Developer & Central Sandbox (also Test Drive), "sandbox" the older API Sandbox.
BASE_URLS: dict[tuple[str, str], str] = {
    ("us1", "production"): "https://rest.na.zuora.com",
    ("us1", "sandbox"): "https://rest.sandbox.na.zuora.com",
    ("us1", "test"): "https://rest.test.zuora.com",
    ("us2", "production"): "https://rest.zuora.com",
    ("us2", "sandbox"): "https://rest.apisandbox.zuora.com",
    ("us2", "test"): "https://rest.test.zuora.com",
    ("eu", "production"): "https://rest.eu.zuora.com",
    ("eu", "sandbox"): "https://rest.sandbox.eu.zuora.com",
    ("eu", "test"): "https://rest.test.eu.zuora.com",
    ("apac", "production"): "https://rest.ap.zuora.com",
    ("apac", "test"): "https://rest.test.ap.zuora.com",
}
REGION_NAMES = {"us1": "us1", "us-cloud-1": "us1", "na": "us1", "us2": "us2", "us-cloud-2": "us2", "us": "us2",
                "eu": "eu", "apac": "apac", "ap": "apac"}
ENVIRONMENT_NAMES = {"production": "production", "prod": "production", "sandbox": "sandbox",
                     "api-sandbox": "sandbox", "test": "test", "central-sandbox": "test",
                     "developer-sandbox": "test", "developer": "test"}
DEFAULT_VERSION = "2025-08-12"   # the minor version Zuora's 2026 reference documents as latest
DEFAULT_CONCURRENCY = 8          # well under Zuora's 40 (default), 200 (high volume) and 80 (Object Query)
PAGE_SIZE = 99                   # Object Query's maximum
# reasons[].code % 100: the categories Zuora's error-codes page says to retry (locking contention, temporary
# error, concurrency limit, integration with a gateway or tax engine); everything else is fixed by changing data.
CATEGORIES = {10: "permission", 11: "authentication", 20: "invalid value", 21: "unknown field",
              22: "missing field", 23: "missing parameter", 27: "invalid query parameter", 30: "business rule",
              40: "not found", 45: "unsupported method", 50: "locking contention", 60: "internal error",
              61: "temporary error", 70: "concurrency limit", 90: "malformed request", 99: "integration error"}
RETRYABLE = frozenset({50, 61, 70, 99})
CREATE_ATTEMPTS = 4
# Object Query expansions the records carry, per entity the engine reads.
EXPANDS = {"accounts": ("billto",), "invoices": ("invoiceitems",), "payments": ("paymentapplications",),
           "products": ("productrateplans.productrateplancharges",)}
CONTACT_FIELDS = ("firstName", "lastName", "workEmail", "workPhone", "address1", "address2", "city", "state",
                  "zipCode", "country")
ENTITIES = ("accounts", "products", "subscriptions", "invoices", "payments")
READ_APIS = ("object_query", "zoql")
ZOQL_BATCH = 2000              # Action Query's maximum (and default) batch
ZOQL_WINDOW = 10_000           # records of one UpdatedDate window held to sort them
ZOQL_IDS = 200                 # ZOQL's limit of conditions in one where clause (ids or-ed, there is no "in")
_STAMP = ("CreatedDate", "UpdatedDate")
# entity -> (zObject, fields): what a ZOQL read selects (the Object Query record's fields under zObject names).
ZOQL_READS: dict[str, tuple[str, tuple[str, ...]]] = {
    "accounts": ("Account", ("Id", "AccountNumber", "Name", "Currency", "Status", "BillCycleDay", "AutoPay",
                             "PaymentTerm", "CrmId", "Notes", "ParentId", "Balance", "TotalInvoiceBalance",
                             "BillToId", "SoldToId") + _STAMP),
    "products": ("Product", ("Id", "Name", "SKU", "Description", "Category", "ProductNumber",
                             "EffectiveStartDate", "EffectiveEndDate") + _STAMP),
    "subscriptions": ("Subscription", ("Id", "Name", "AccountId", "Version", "Status", "TermType",
                                       "ContractEffectiveDate", "SubscriptionStartDate", "TermStartDate",
                                       "PreviousSubscriptionId") + _STAMP),
    "invoices": ("Invoice", ("Id", "InvoiceNumber", "AccountId", "Amount", "AmountWithoutTax", "TaxAmount",
                             "Balance", "PaymentAmount", "InvoiceDate", "DueDate", "TargetDate", "Status",
                             "PostedDate") + _STAMP),
    "payments": ("Payment", ("Id", "PaymentNumber", "AccountId", "Amount", "AppliedInvoiceAmount", "RefundAmount",
                             "EffectiveDate", "Status", "Type", "GatewayState") + _STAMP),
}
CONTACT_ZOQL = ("Id", "AccountId", "FirstName", "LastName", "WorkEmail", "WorkPhone", "Address1", "Address2",
                "City", "State", "PostalCode", "Country") + _STAMP
# zObject field -> Object Query field, where the two names differ by more than the first letter's case
OQ_NAMES = {"PostalCode": "zipCode", "AppliedInvoiceAmount": "appliedAmount"}
PUSH_ENTITIES = ("invoices", "payments")


def register() -> None:
    register_kind(KIND, ZuoraConnector)


def base_url_of(system: SystemConfig) -> tuple[str, str]:
    """(base URL, how it was chosen) from base_url, else region and environment."""
    configured = system.setting("base_url", type_=str)
    if configured:
        return configured.rstrip("/"), "base_url"
    region_text = str(system.setting("region", "us2", type_=str)).lower()
    environment_text = str(system.setting("environment", "production", type_=str)).lower()
    region = REGION_NAMES.get(region_text)
    environment = ENVIRONMENT_NAMES.get(environment_text)
    if region is None:
        raise ConfigError(f"systems.{system.name}.region = {region_text!r}: use us1 (US Cloud 1, rest.na), us2 "
                          "(US Cloud 2, rest.zuora.com), eu or apac")
    if environment is None:
        raise ConfigError(f"systems.{system.name}.environment = {environment_text!r}: use production, sandbox "
                          "(API Sandbox) or test (Developer & Central Sandbox)")
    url = BASE_URLS.get((region, environment))
    if url is None:
        offered = ", ".join(e for r, e in BASE_URLS if r == region)
        raise ConfigError(f"systems.{system.name}: Zuora documents no {environment} host for {region} (it has "
                          f"{offered}); set environment accordingly or base_url")
    return url, f"{region} {environment}"


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def oq_time(moment: datetime, *, up: bool = False) -> str:
    """Object Query date-time literal in whole seconds (Zuora keeps seconds): rounded down for a lower bound,
    up for an upper one, so a record stamped in the same second as either bound is read."""
    moment = moment.astimezone(timezone.utc)
    if up and moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")




def _digest(*parts: Any) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:40]


def fingerprint(value: Any) -> str:
    return _digest(json.dumps(value, sort_keys=True, default=str))


class ZuoraFailure(RemoteError):
    """A Zuora business error (success false): its code's category decides whether a retry may succeed."""

    def __init__(self, system: str, status: int, code: int | str, message: str, process_id: str = "") -> None:
        try:
            self.category = int(str(code)) % 100
        except ValueError:
            self.category = 0
        super().__init__(system, status, str(code), message, retryable=self.category in RETRYABLE)
        self.process_id = process_id

    @property
    def error_class(self) -> str:
        return "zuora_" + CATEGORIES.get(self.category, "error").replace(" ", "_")


def failure_of(system: str, response: httpx.Response) -> ZuoraFailure | None:
    """The business error a response carries (v1 success:false, CRUD Success:false, Object Query reasons)."""
    body = json_body(response)
    if isinstance(body, dict) and (body.get("faultcode") or body.get("FaultCode")):
        # ZOQL (Actions) faults: {"faultcode": "fns:INVALID_FIELD", "faultstring": ..., "detail": {...}}
        code = str(body.get("faultcode") or body.get("FaultCode")).removeprefix("fns:")
        return ZuoraFailure(system, response.status_code, code,
                            str(body.get("faultstring") or body.get("FaultMessage") or code))
    if not isinstance(body, dict):
        if response.status_code >= 400:
            return ZuoraFailure(system, response.status_code, "", f"HTTP {response.status_code}")
        return None
    if body.get("success") is False or body.get("Success") is False or (response.status_code >= 400 and (
            body.get("reasons") or body.get("message"))):
        reasons = body.get("reasons") or [{"code": e.get("Code", ""), "message": e.get("Message", "")}
                                          for e in body.get("Errors") or []]
        first = reasons[0] if reasons else {"code": "", "message": body.get("message") or "request failed"}
        message = "; ".join(str(r.get("message", "")) for r in reasons) or str(first.get("message"))
        return ZuoraFailure(system, response.status_code, first.get("code", ""), message,
                            str(body.get("processId") or ""))
    return None


def _not_found(failure: ZuoraFailure) -> bool:
    """A failure saying the object is not there (category 40, or an HTTP 404)."""
    return failure.category == 40 or failure.status == 404


def _is_transient(system: str) -> Callable[[httpx.Response], bool]:
    def check(response: httpx.Response) -> bool:
        try:
            keyed = bool(response.request.headers.get("idempotency-key"))
        except RuntimeError:
            keyed = False
        if response.status_code == 409 and keyed:
            return True  # the same key is still being processed: Zuora says wait and retry with the same key
        if keyed:
            return False  # a keyed answer is remembered for 24 hours; _create moves on to a new key instead
        found = failure_of(system, response) if response.status_code == 200 else None
        return bool(found and found.retryable)
    return check


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
        self._token_http = ApiClient(self.name, self.base, transport=context.transport, counter=context.counter,
                                     sleep=sleep, headers={k: v for k, v in headers.items() if k != "Zuora-Version"},
                                     retry=retry_policy(system))
        self.auth = TokenAuth(self._mint, SecretTokenCache(context.secrets, self.name),
                              early=timedelta(minutes=5))
        self.http = ApiClient(self.name, self.base, auth=self.auth, transport=context.transport,
                              counter=context.counter, headers=headers, is_retryable=_is_transient(self.name),
                              max_concurrency=int(system.setting("concurrency", DEFAULT_CONCURRENCY, type_=int)),
                              sleep=sleep, retry=retry_policy(system))
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
        self._plans: dict[str, dict[str, Any]] = {}
        self._domains: dict[str, list[dict[str, Any]]] | None = None
        # entity -> Zuora's clock when the last ``changes`` read of it began (see read_clock)
        self._read_clock: dict[str, datetime | None] = {}

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

    def _mint(self, current: Token | None) -> Token:
        secret = self.context.secrets.require(self.name, "client_secret")
        response = self._token_http.request("POST", "/oauth/token", data={
            "client_id": self.client_id, "client_secret": secret, "grant_type": "client_credentials"})
        body = json_body(response)
        if response.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
            seconds = float(body.get("expires_in") or 3599)
            return Token(str(body["access_token"]), utcnow() + timedelta(seconds=seconds),
                         {"scope": str(body.get("scope") or "")})
        if response.status_code in (400, 401, 403):
            detail = body.get("message") if isinstance(body, dict) else ""
            raise AuthError(self.name, f"Zuora refused the client credentials at {self.base} ({detail or 'HTTP '}"
                                       f"{'' if detail else response.status_code}); a client belongs to one tenant: "
                                       f"check region/environment and client_id, and store the secret with "
                                       f"`mlconnector secrets set {self.name} client_secret`")
        raise RemoteError(self.name, response.status_code, message=f"token request to {self.base}/oauth/token failed",
                          retryable=response.status_code >= 500)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code == 401:
            raise AuthError(self.name, f"Zuora refused the access token even after a fresh one ({method} {path})")
        return response

    def _ok(self, response: httpx.Response, what: str) -> dict[str, Any]:
        found = failure_of(self.name, response)
        if found is not None:
            found.message = f"{what}: {found.message}"
            found.args = (f"{self.name} answered HTTP {found.status} ({found.code}: {found.message})",)
            raise found
        body = json_body(response)
        return body if isinstance(body, dict) else {}

    def close(self) -> None:
        self.http.close()
        self._token_http.close()

    # -- reads: Object Query --------------------------------------------------------------------------------------
    def _query(self, table: str, filters: list[str], *, sort: str | None = None,
               expand: tuple[str, ...] = (), clock: str | None = None) -> Iterator[dict[str, Any]]:
        """Every row through Object Query's cursor pages. ``clock``: the entity whose read this is, to note
        Zuora's clock as it began (the first page's call)."""
        cursor: str | None = None
        while True:
            params: list[tuple[str, Any]] = [("pageSize", self.page_size)]
            params += [("filter[]", f) for f in filters] + [("expand[]", e) for e in expand]
            if sort:
                params.append(("sort[]", sort))
            if cursor:
                params.append(("cursor", cursor))
            response = self._call("GET", f"/object-query/{table}", params=params)
            self._note_clock(clock, response)
            body = self._ok(response, f"query {table}")
            yield from body.get("data") or []
            cursor = body.get("nextPage")
            if not cursor:
                return

    def _record(self, entity: str, row: Mapping[str, Any]) -> Record:
        data = dict(row)
        if entity == "accounts" and isinstance(data.get("billTo"), Mapping):
            # The bill-to contact also under the name accounts are written with, so a record read back can be
            # compared with what we wrote (echo detection when both carry the same second).
            data["billToContact"] = {k: v for k, v in data["billTo"].items() if k in CONTACT_FIELDS and v not in (None, "")}
        if entity == "products":
            if "sKU" in data:
                data["sku"] = data.pop("sKU")
            plan = self._pick_plan(data.pop("productRatePlans", None) or [])
            charges = (plan or {}).get("productRatePlanCharges") or []
            prices = (charges[0].get("prices") or charges[0].get("pricing") or []) if charges else []
            if prices:
                data["price"], data["currency"] = float(prices[0].get("price") or 0), prices[0].get("currency")
        if entity == "invoices":
            data["subscriptionNumbers"] = sorted({i["subscriptionNumber"] for i in data.get("invoiceItems") or []
                                                  if i.get("subscriptionNumber")})
        if entity == "payments":
            data["invoiceIds"] = [a.get("invoiceId") for a in data.get("paymentApplications") or []]
        return Record(self.name, entity, str(data["id"]), parse_time(data.get("updatedDate")), data)

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
            yield from self._zoql_changes(entity, since, until)
            return
        filters = []
        if since is not None:
            filters.append(f"updateddate.GE:{oq_time(since)}")
        if until is not None:
            filters.append(f"updateddate.LT:{oq_time(until, up=True)}")
        if entity == "subscriptions":
            filters.append("isLatestVersion.EQ:true")
        for row in self._query(entity, filters, sort="updateddate.ASC", expand=EXPANDS.get(entity, ()),
                               clock=entity):
            yield self._record(entity, row)

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

    def _note_clock(self, entity: str | None, response: httpx.Response) -> None:
        """Keep Zuora's clock as the read of ``entity`` began: only its first call counts."""
        if entity is not None and entity not in self._read_clock:
            self._read_clock[entity] = _began(response)

    # -- reads: ZOQL (Action Query + queryMore) ---------------------------------------------------------------------
    def _zoql(self, query: str, clock: str | None = None, batch: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """The batches of one ZOQL query: query, then queryMore with each queryLocator until done. ``clock``: the
        entity whose read this is (see _note_clock)."""
        conf = {"batchSize": batch or self.zoql_batch}
        body = self._zoql_call("/v1/action/query", {"queryString": query, "conf": conf}, query, clock)
        while True:
            yield body.get("records") or []
            locator = body.get("queryLocator")
            if body.get("done", True) or not locator:
                return
            body = self._zoql_call("/v1/action/queryMore", {"queryLocator": locator, "conf": conf}, query)

    def _zoql_call(self, path: str, body: dict[str, Any], query: str, clock: str | None = None) -> dict[str, Any]:
        response = self._call("POST", path, json=body, idempotent=True)
        self._note_clock(clock, response)
        found = failure_of(self.name, response)
        if found is None:
            answer = json_body(response)
            return answer if isinstance(answer, dict) else {}
        hint = {"INVALID_QUERY_LOCATOR": "Zuora dropped the query's cursor (a queryMore locator lives 15 minutes)",
                "INVALID_FIELD": "a field this tenant does not have; check zoql_fields",
                "INVALID_TYPE": "an object this tenant cannot query with ZOQL"}.get(str(found.code), "ZOQL refused")
        found.message = f"{hint}: {found.message} [{query[:160]}]"
        found.args = (f"{self.name} answered HTTP {found.status} ({found.code}: {found.message})",)
        raise found

    def record_ids(self, entity: str) -> Iterator[str]:
        """Every id (a deletion is an id no longer here; subscriptions: every number), read through ZOQL with the
        id field alone at its largest batch, 2,000 records a call where Object Query pages hold 99
        (https://developer.zuora.com/v1-api-reference/api/operation/Action_POSTquery/). Accounts, products,
        invoices, payments and subscriptions are all ZOQL objects (Orders objects are not, and none is read)."""
        self._check_entity(entity)
        obj = ZOQL_READS[entity][0]
        field = "Name" if entity == "subscriptions" else "Id"  # subscriptions are linked by number
        for batch in self._zoql(f"select {field} from {obj}", batch=ZOQL_BATCH):
            yield from (str(row[field]) for row in batch if row.get(field) is not None)

    def _zoql_rows(self, obj: str, fields: tuple[str, ...], where: str = "") -> Iterator[dict[str, Any]]:
        for batch in self._zoql(f"select {', '.join(dict.fromkeys(fields))} from {obj}"
                                + (f" where {where}" if where else "")):
            yield from batch

    def _zoql_by(self, obj: str, fields: tuple[str, ...], key: str, values: list[str]) -> list[dict[str, Any]]:
        """Rows whose ``key`` is one of ``values``: ZOQL has no ``in``, so 200 or-ed conditions a query."""
        wanted = sorted({str(v) for v in values if v})
        rows: list[dict[str, Any]] = []
        for start in range(0, len(wanted), ZOQL_IDS):
            where = " or ".join(f"{key} = {_zoql_text(v)}" for v in wanted[start:start + ZOQL_IDS])
            rows.extend(_oq_shape(r) for r in self._zoql_rows(obj, fields, where))
        return rows

    def _zoql_changes(self, entity: str, since: datetime | None, until: datetime | None) -> Iterator[Record]:
        """Records updated in [since, until) in ascending (updated, id) order, one UpdatedDate window at a time
        (ZOQL itself returns no order): a window holding more than zoql_window_records is split at its median."""
        obj, fields = ZOQL_READS[entity]
        fields = fields + self.zoql_fields.get(entity, ())
        windows: list[tuple[datetime | None, datetime | None]] = [(
            parse_time(oq_time(since)) if since is not None else None,
            parse_time(oq_time(until, up=True)) if until is not None else None)]
        while windows:
            low, high = windows.pop()
            where = " and ".join(([f"UpdatedDate >= '{oq_time(low)}'"] if low else [])
                                 + ([f"UpdatedDate < '{oq_time(high)}'"] if high else [])
                                 + (["Status != 'Expired'"] if entity == "subscriptions" else []))
            rows, full = self._zoql_window(obj, fields, where, clock=entity)
            if full:
                split = _split(rows, low, high)
                if split:
                    windows.extend(reversed(split))   # the earlier part is read first
                    continue
                # one second holding more than a window: batch by batch, as ZOQL hands them out
                for batch in self._zoql(f"select {', '.join(fields)} from {obj} where {where}"):
                    yield from self._zoql_records(entity, sorted(map(_oq_shape, batch), key=lambda r: r["id"]))
                continue
            rows.sort(key=lambda r: (parse_time(r.get("updatedDate")) or datetime.min.replace(tzinfo=timezone.utc),
                                     r["id"]))
            for start in range(0, len(rows), self.zoql_batch):
                yield from self._zoql_records(entity, rows[start:start + self.zoql_batch])

    def _zoql_window(self, obj: str, fields: tuple[str, ...], where: str,
                     clock: str | None = None) -> tuple[list[dict[str, Any]], bool]:
        """The window's rows if they fit in zoql_window_records (False), else the part read so far (True). An
        expired locator restarts the window once."""
        query = f"select {', '.join(fields)} from {obj}" + (f" where {where}" if where else "")
        for attempt in (1, 2):
            rows: list[dict[str, Any]] = []
            try:
                for batch in self._zoql(query, clock):
                    rows.extend(_oq_shape(r) for r in batch)
                    if len(rows) > self.zoql_window:
                        return rows, True
                return rows, False
            except ZuoraFailure as exc:
                if exc.code != "INVALID_QUERY_LOCATOR" or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _zoql_records(self, entity: str, rows: list[dict[str, Any]]) -> Iterator[Record]:
        """One page of rows, completed with what Object Query would have expanded, as records."""
        if not rows:
            return
        ids = [r["id"] for r in rows]
        if entity == "accounts":
            contacts = {c["id"]: c for c in self._zoql_by("Contact", CONTACT_ZOQL, "Id",
                                                          [r.get("billToId") for r in rows])}
            for row in rows:
                if row.get("billToId") in contacts:
                    row["billTo"] = contacts[row["billToId"]]
        if entity == "products":
            plans = self._zoql_by("ProductRatePlan", ("Id", "ProductId", "Name", "Description"), "ProductId", ids)
            charges = self._zoql_by("ProductRatePlanCharge", ("Id", "ProductRatePlanId", "Name", "ChargeModel",
                                                              "ChargeType", "BillingPeriod", "UOM"),
                                    "ProductRatePlanId", [p["id"] for p in plans])
            tiers = self._zoql_by("ProductRatePlanChargeTier", ("Id", "ProductRatePlanChargeId", "Tier", "Currency",
                                                                "Price"),
                                  "ProductRatePlanChargeId", [c["id"] for c in charges])
            for charge in charges:
                charge["prices"] = [{"currency": t.get("currency"), "price": t.get("price")}
                                    for t in sorted(tiers, key=lambda t: t.get("tier") or 0)
                                    if t["productRatePlanChargeId"] == charge["id"]]
            for plan in plans:
                plan["productRatePlanCharges"] = [c for c in charges if c["productRatePlanId"] == plan["id"]]
            for row in rows:
                row["productRatePlans"] = [p for p in plans if p["productId"] == row["id"]]
        if entity == "invoices":
            items = self._zoql_by("InvoiceItem", ("Id", "InvoiceId", "SubscriptionNumber", "ChargeName", "Quantity",
                                                  "UnitPrice", "ChargeAmount"), "InvoiceId", ids)
            for row in rows:
                row["invoiceItems"] = [i for i in items if i["invoiceId"] == row["id"]]
        if entity == "payments":
            applied = self._zoql_by("InvoicePayment", ("Id", "PaymentId", "InvoiceId", "Amount"), "PaymentId", ids)
            for row in rows:
                row["paymentApplications"] = [{"invoiceId": a["invoiceId"], "appliedAmount": a.get("amount")}
                                              for a in applied if a["paymentId"] == row["id"]]
        if entity in ("invoices", "payments", "subscriptions"):
            # Invoice and Payment carry no currency of their own in ZOQL: it is the account's.
            currencies = {a["id"]: a.get("currency") for a in self._zoql_by("Account", ("Id", "Currency"), "Id",
                                                                             [r.get("accountId") for r in rows])}
            for row in rows:
                row.setdefault("currency", currencies.get(row.get("accountId")))
        for row in rows:
            yield self._record(entity, row)

    def get(self, entity: str, id: str) -> Record | None:
        self._check_entity(entity)
        params = [("expand[]", e) for e in EXPANDS.get(entity, ())]
        response = self._call("GET", f"/object-query/{entity}/{quote(id, safe='')}", params=params)
        if response.status_code == 404:
            return None
        return self._record(entity, self._ok(response, f"get {entity} {id}"))

    def also_read(self, entity: str, fields: list[str]) -> None:
        """Custom fields a configured mapping reads: ZOQL has no ``*``, so its reads name them as ``zoql_fields``
        does (Object Query returns every field it holds anyway)."""
        custom = [f for f in fields if f.endswith("__c")]
        if custom:
            self.zoql_fields[entity] = tuple(dict.fromkeys([*self.zoql_fields.get(entity, ()), *custom]))

    def get_many(self, entity: str, ids: list[str]) -> dict[str, Record]:
        """Many records in one query (``id.IN:[...]``), for callouts that name several."""
        self._check_entity(entity)
        found: dict[str, Record] = {}
        for start in range(0, len(ids), self.page_size):
            chunk = ids[start:start + self.page_size]
            for row in self._query(entity, [f"id.IN:[{','.join(chunk)}]"], expand=EXPANDS.get(entity, ())):
                record = self._record(entity, row)
                found[record.id] = record
        return found

    # -- writes ---------------------------------------------------------------------------------------------------
    def write(self, entity: str, payloads: list[dict[str, Any]], key: str,
              ids: list[str | None] | None = None) -> list[WriteResult]:
        """Accounts and products are upserted by ``key`` (a custom field / the SKU); subscriptions go through the
        Orders API: CreateSubscription for a new one, AddProduct / RemoveProduct / UpdateProduct for a change."""
        writers = {"accounts": self._write_account, "products": self._write_product,
                   "subscriptions": self._write_subscription}
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
        return calls + catalog * len(products - set(self._plans))

    def _create(self, path: str, body: dict[str, Any], key: str, what: str) -> dict[str, Any]:
        """POST with an Idempotency-Key: a timeout or 5xx is resent with the same key (Zuora replays the
        first answer, so nothing is made twice). A transient business failure is remembered under its key for
        24 hours, so the next try uses a key derived from this one and the failure's processId: every later run
        walks the same chain and finds whatever succeeded."""
        error: ZuoraFailure | None = None
        for attempt in range(CREATE_ATTEMPTS):
            response = self._call("POST", path, json=body, idempotent=True, headers={"Idempotency-Key": key})
            if response.status_code == 422:
                raise ZuoraFailure(self.name, 422, "", f"{what}: Zuora refused the Idempotency-Key (used before with "
                                                       "another request)")
            error = failure_of(self.name, response)
            if error is None:
                body_out = json_body(response)
                return body_out if isinstance(body_out, dict) else {}
            error.message = f"{what}: {error.message}"
            error.args = (f"{self.name} answered HTTP {error.status} ({error.code}: {error.message})",)
            if not error.retryable:
                raise error
            if not response.headers.get("Idempotent-Replayed"):
                wait = response.headers.get("Retry-After")
                self._sleep(min(float(wait), 60.0) if wait and wait.isdigit() else self.http.retry.backoff * (attempt + 1))
            key = _digest(key, error.process_id or attempt)
        assert error is not None
        raise error

    def _key(self, kind: str, source: Any, payload: Any) -> str:
        """Idempotency-Key: the system, the kind of create, the source record's key and its content (version)."""
        return f"mlc-{_digest(self.name, kind, source, fingerprint(payload))}"

    # accounts
    def _find_account(self, key: str, value: Any, payload: Mapping[str, Any]) -> dict | None:
        """An account not linked yet (or no longer there): the one holding the key, else the matching rule's."""
        if value not in (None, ""):
            rows = list(self._query("accounts", [f"{key}.EQ:{value}"], expand=("billto",)))
            if rows:
                return rows[0]
        return self._match_account(key, payload)

    def _match_account(self, key: str, payload: Mapping[str, Any]) -> dict | None:
        """The configured rule for accounts not yet tied to an ERP customer: same company name, or the same
        e-mail domain on the bill-to contact. An account already tied to another customer never matches."""
        if self.account_match == "company_name" and payload.get("name"):
            rows = self._query("accounts", [f"name.EQ:{payload['name']}"], expand=("billto",))
            return next((r for r in rows if not r.get(key)), None)
        email = str((payload.get("billToContact") or {}).get("workEmail") or "")
        if self.account_match == "email_domain" and "@" in email:
            if self._domains is None:  # every account once per run; Object Query cannot filter on a suffix
                self._domains = {}
                for row in self._query("accounts", [], expand=("billto",)):
                    mail = str((row.get("billTo") or {}).get("workEmail") or "")
                    if "@" in mail:
                        self._domains.setdefault(mail.rsplit("@", 1)[1].lower(), []).append(row)
            candidates = self._domains.get(email.rsplit("@", 1)[1].lower(), [])
            return next((r for r in candidates if not r.get(key)), None)
        return None

    def _write_account(self, payload: dict[str, Any], key: str, known_id: str | None) -> WriteResult:
        changes = {k: v for k, v in payload.items() if k not in ("currency", "billCycleDay")}
        if known_id:
            # A linked account is updated in place, and looked for again (by key, then by the matching rule) only
            # when Zuora no longer has it: reading it before every update cost a call per changed account.
            response = self._call("PUT", f"/v1/accounts/{known_id}", json=changes)
            failure = failure_of(self.name, response)
            if failure is None:
                return self._written_account(known_id, "update")
            if not _not_found(failure):
                self._ok(response, f"update account {known_id}")  # raises, naming the account
        found = self._find_account(key, payload.get(key), payload)
        if found is None:
            answer = self._create("/v1/accounts", payload, self._key("account", payload.get(key), payload),
                                  f"create account {payload.get(key) or payload.get('name')}")
            return self._written_account(str(answer["accountId"]), "create")
        account_id = str(found["id"])
        self._ok(self._call("PUT", f"/v1/accounts/{account_id}", json=changes), f"update account {account_id}")
        return self._written_account(account_id, "update")

    def _written_account(self, account_id: str, action: Literal["create", "update"]) -> WriteResult:
        """The account as written, read back for its version (a v1 write answers without one)."""
        written = self.get("accounts", account_id)
        return WriteResult(action, account_id, written.modified if written else utcnow(), stored=written)

    # products (catalog): a product, one rate plan, one recurring per-unit charge
    def _product_of(self, product_id: str) -> dict[str, Any]:
        """The catalog product with its rate plans, whatever shape the pinned zuora-version gives them."""
        body = self._ok(self._call("GET", f"/v1/catalog/products/{product_id}"), f"get product {product_id}")
        plans = body.get("productRatePlans")
        if isinstance(plans, str):  # zuora-version >= 230.0: a link to the rate plans instead of the array
            body["productRatePlans"] = self._ok(self._call("GET", plans), f"rate plans of {product_id}").get(
                "productRatePlans") or []
        return body

    def _write_product(self, payload: dict[str, Any], key: str, known_id: str | None) -> WriteResult:
        sku = str(payload.get("sku") or "")
        product_id = known_id
        if product_id and self.get("products", product_id) is None:
            product_id = None
        if not product_id and sku:
            rows = list(self._query("products", [f"sku.EQ:{sku}"]))
            product_id = str(rows[0]["id"]) if rows else None
        fields = {"Name": payload.get("name"), "SKU": sku, "Description": payload.get("description") or ""}
        action = "update"
        if product_id is None:
            answer = self._create("/v1/object/product", fields, self._key("product", sku, fields), f"create product {sku}")
            product_id, action = str(answer["Id"]), "create"
        else:
            self._ok(self._call("PUT", f"/v1/object/product/{product_id}", json=fields), f"update product {sku}")
        product = self._product_of(product_id)
        plans = product.get("productRatePlans") or []
        plan = self._pick_plan(plans)
        price = [{"Currency": payload.get("currency") or "USD", "Price": float(payload.get("price") or 0)}]
        if plan is None:
            spec = {"Name": self.rate_plan_name or payload.get("ratePlanName") or "Standard", "ProductId": product_id}
            plan = {"id": self._create("/v1/object/product-rate-plan", spec, self._key("plan", sku, spec),
                                       f"create rate plan of {sku}")["Id"], "productRatePlanCharges": []}
        charges = plan.get("productRatePlanCharges") or []
        tiers = {"ProductRatePlanChargeTier": price}
        if not charges:
            spec = {"Name": payload.get("name"), "ProductRatePlanId": plan["id"], "ChargeModel": "Per Unit Pricing",
                    "ChargeType": "Recurring", "BillingPeriod": payload.get("billingPeriod") or "Month",
                    "TriggerEvent": "ContractEffective", "UOM": payload.get("uom") or "Each", "DefaultQuantity": 1,
                    "BillCycleType": "DefaultFromCustomer", "ProductRatePlanChargeTierData": tiers}
            self._create("/v1/object/product-rate-plan-charge", spec, self._key("charge", sku, spec),
                         f"create charge of {sku}")
        else:
            current = [(p.get("currency"), float(p.get("price") or 0)) for p in charges[0].get("pricing") or []]
            if current != [(price[0]["Currency"], price[0]["Price"])]:
                self._ok(self._call("PUT", f"/v1/object/product-rate-plan-charge/{charges[0]['id']}",
                                    json={"ProductRatePlanChargeTierData": tiers}), f"update price of {sku}")
        self._plans.pop(product_id, None)
        written = self.get("products", product_id)
        return WriteResult(action, product_id, written.modified if written else utcnow(), stored=written)

    def _pick_plan(self, plans: list[dict[str, Any]]) -> dict[str, Any] | None:
        if self.rate_plan_name:
            return next((p for p in plans if p.get("name") == self.rate_plan_name), None)
        return plans[0] if plans else None

    def rate_plan(self, product_id: str) -> dict[str, Any]:
        """The rate plan (and its first charge) that subscriptions to a product use; cached per run."""
        if product_id not in self._plans:
            plan = self._pick_plan(self._product_of(product_id).get("productRatePlans") or [])
            if plan is None or not plan.get("productRatePlanCharges"):
                raise ZuoraFailure(self.name, 200, "0040", f"product {product_id} has no rate plan with a charge"
                                   + (f" named {self.rate_plan_name!r}" if self.rate_plan_name else ""))
            self._plans[product_id] = plan
        return self._plans[product_id]

    # subscriptions (Orders API)
    def _find_subscription(self, key: str, value: Any, known: str | None) -> dict[str, Any] | None:
        """The live subscription: the linked number first, else the one whose custom field holds the key."""
        numbers = [known] if known else []
        if value not in (None, ""):
            numbers += [str(r["name"]) for r in self._query("subscriptions",
                                                             [f"{key}.EQ:{value}", "isLatestVersion.EQ:true"])]
        for number in dict.fromkeys(numbers):
            response = self._call("GET", f"/v1/subscriptions/{quote(str(number), safe='')}")
            if failure_of(self.name, response) is None:
                found = self._ok(response, f"get subscription {number}")
                if found.get("status") != "Cancelled":
                    return found
        return None

    def _charge_override(self, line: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        plan = self.rate_plan(str(line["productId"]))
        charge = plan["productRatePlanCharges"][0]
        pricing: dict[str, Any] = {"quantity": float(line.get("quantity") or 1)}
        if line.get("price") is not None:
            pricing["listPrice"] = float(line["price"])
        return plan, {"productRatePlanChargeId": charge["id"], "pricing": {"recurringPerUnit": pricing}}

    def _write_subscription(self, payload: dict[str, Any], key: str, known: str | None) -> WriteResult:
        value = payload.get(key)
        lines = _merge_lines(payload.get("lines") or [])
        current = self._find_subscription(key, value, known)
        today = utcnow().date().isoformat()
        if current is None:
            plans = []
            for line in lines:
                plan, override = self._charge_override(line)
                plans.append({"productRatePlanId": plan["id"], "chargeOverrides": [override]})
            order = {"orderDate": payload.get("orderDate") or today, "existingAccountId": payload["accountId"],
                     "subscriptions": [{"customFields": {key: value} if value else {}, "orderActions": [{
                         "type": "CreateSubscription", "createSubscription": {
                             "terms": {"initialTerm": {"termType": payload.get("termType") or "EVERGREEN"}},
                             "subscribeToRatePlans": plans}}]}],
                     "processingOptions": {"runBilling": False, "collectPayment": False}}
            answer = self._create("/v1/orders", order, self._key("subscription", value, order),
                                  f"create subscription for {value}")
            numbers = answer.get("subscriptionNumbers") or [s.get("subscriptionNumber")
                                                            for s in answer.get("subscriptions") or []]
            return WriteResult("create", str(numbers[0]) if numbers else None, utcnow())
        actions = self._amendments(current, lines, today)
        number = str(current["subscriptionNumber"])
        if actions:
            order = {"orderDate": today, "existingAccountId": current["accountId"],
                     "subscriptions": [{"subscriptionNumber": number, "orderActions": actions}],
                     "processingOptions": {"runBilling": False, "collectPayment": False}}
            self._create("/v1/orders", order, self._key("amendment", f"{value}:{current.get('version')}", order),
                         f"amend subscription {number} for {value}")
        return WriteResult("update", number, utcnow())

    def _amendments(self, current: Mapping[str, Any], lines: list[dict[str, Any]], today: str) -> list[dict[str, Any]]:
        """AddProduct for a new product, RemoveProduct for one no longer ordered, UpdateProduct for a new
        quantity or price."""
        triggers = [{"name": n, "triggerDate": today} for n in ("ContractEffective", "ServiceActivation",
                                                                "CustomerAcceptance")]
        existing = {str(p["productId"]): p for p in current.get("ratePlans") or []}
        wanted = {str(line["productId"]): line for line in lines}
        actions: list[dict[str, Any]] = []
        for product_id, line in wanted.items():
            plan, override = self._charge_override(line)
            if product_id not in existing:
                actions.append({"type": "AddProduct", "triggerDates": triggers,
                                "addProduct": {"productRatePlanId": plan["id"], "chargeOverrides": [override]}})
                continue
            charge = (existing[product_id].get("ratePlanCharges") or [{}])[0]
            pricing = override["pricing"]["recurringPerUnit"]
            if float(charge.get("quantity") or 0) != pricing["quantity"] or (
                    "listPrice" in pricing and float(charge.get("price") or 0) != pricing["listPrice"]):
                actions.append({"type": "UpdateProduct", "triggerDates": triggers, "updateProduct": {
                    "ratePlanId": existing[product_id]["id"],
                    "chargeUpdates": [{"chargeNumber": charge.get("number"), "pricing": {"recurringPerUnit": pricing}}]}})
        for product_id, plan in existing.items():
            if product_id not in wanted:
                actions.append({"type": "RemoveProduct", "triggerDates": triggers,
                                "removeProduct": {"ratePlanId": plan["id"]}})
        return actions

    # -- callouts ------------------------------------------------------------------------------------------------
    def push_entities(self) -> tuple[str, ...]:
        return PUSH_ENTITIES if self.notify_url else ()

    def subscribe(self, entity: str, notify_url: str | None = None) -> Channel:
        """Callouts are defined in Zuora's settings, not through this API: the channel only records that this
        entity is pushed, and never needs renewing before ten years are up."""
        url = notify_url or self.notify_url or ""
        return Channel(self.name, entity, f"callout-{entity}", utcnow() + timedelta(days=3650), url,
                       {"static": True})

    def renew(self, channel: Channel) -> Channel:
        return Channel(channel.system, channel.entity, channel.channel_id, utcnow() + timedelta(days=3650),
                       channel.notify_url, dict(channel.extra))

    def unsubscribe(self, channel: Channel) -> None:
        """Nothing to undo here: deactivate the notification in Zuora's settings."""

    def handshake(self, query: Mapping[str, str]) -> str | None:
        return None

    def verify(self, body: bytes | str, headers: Mapping[str, str] | None = None,
               query: Mapping[str, str] | None = None) -> list[Notification]:
        """Authenticate a callout as configured and reduce it to the invoice or payment it names."""
        self._authenticate({k.lower(): v for k, v in (headers or {}).items()})
        params = {k.lower(): v for k, v in (query or {}).items()}
        params.update(_callout_params(body))
        for entity, names in (("invoices", ("invoiceid", "invoice.id")), ("payments", ("paymentid", "payment.id"))):
            ids = [params[n] for n in names if params.get(n)]
            if ids:
                return [Notification(self.name, entity, (str(ids[0]),), "update")]
        raise NotificationRejected(f"{self.name}: the callout names no InvoiceId or PaymentId parameter", 400)

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        if self.callout_auth == "none":
            return
        if self.callout_auth == "header":
            expected = self.context.secrets.get(self.name, "callout_secret")
            given = headers.get(self.callout_header.lower(), "")
            if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
                raise NotificationRejected(f"{self.name}: callout header {self.callout_header} missing or wrong", 403)
            return
        challenge = {"WWW-Authenticate": f'Basic realm="mlconnector {self.name}"'}
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            # Zuora sends Basic credentials only after this challenge (unless preemptive is on).
            raise NotificationRejected(f"{self.name}: callout without credentials; challenge sent", 401, challenge)
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise NotificationRejected(f"{self.name}: malformed Basic credentials", 401, challenge) from None
        expected = self.context.secrets.get(self.name, "callout_password")
        if not expected or not (hmac.compare_digest(user.encode(), self.callout_user.encode())
                                and hmac.compare_digest(password.encode(), expected.encode())):
            raise NotificationRejected(f"{self.name}: callout credentials refused", 401, challenge)

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


def _began(response: httpx.Response) -> datetime | None:
    """Zuora's clock when it took the request, at the latest: the ``Date`` it answered with (whole seconds,
    rounded down) less the time the call took."""
    answered = server_time(response)
    if answered is None:
        return None
    try:
        took = response.elapsed
    except RuntimeError:  # not timed (a response made in process, never sent)
        return answered
    return answered - took


def _zoql_text(value: str) -> str:
    """A ZOQL string literal: single quotes, backslash escapes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _oq_shape(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ZOQL record under Object Query's field names (custom fields as they are) and date-times."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        key = name if name.endswith("__c") else OQ_NAMES.get(name, name[:1].lower() + name[1:])
        if isinstance(value, str) and name.endswith("Date") and "T" in value:
            moment = parse_time(value)
            value = oq_time(moment) if moment else value
        out[key] = value
    return out


def _split(rows: list[dict[str, Any]], low: datetime | None,
           high: datetime | None) -> list[tuple[datetime | None, datetime | None]]:
    """Two or three windows covering [low, high), cut at the median second of the rows read so far; empty when
    the window is a single second."""
    seconds = sorted({t.replace(microsecond=0) for t in (parse_time(r.get("updatedDate")) for r in rows) if t})
    if not seconds:
        return []
    middle = seconds[len(seconds) // 2]
    if low is None or middle > low:
        return [(low, middle), (middle, high)]
    after = middle + timedelta(seconds=1)
    if high is None or after < high:
        return [(low, after), (after, high)]
    return []


def _merge_lines(lines: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One subscription rate plan per product: order lines of the same product add up."""
    merged: dict[str, dict[str, Any]] = {}
    for line in lines:
        product = str(line["productId"])
        if product in merged:
            merged[product]["quantity"] = float(merged[product].get("quantity") or 0) + float(line.get("quantity") or 0)
        else:
            merged[product] = dict(line)
    return list(merged.values())


def _callout_params(body: bytes | str) -> dict[str, str]:
    """A classic callout's ``<callout><parameter name="...">`` pairs, or a callout template's JSON object."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    text = text.strip()
    if not text:
        return {}
    if text.startswith("<"):
        try:
            root = ElementTree.fromstring(text)
        except ElementTree.ParseError:
            raise NotificationRejected("callout body is not well-formed XML", 400) from None
        return {str(p.get("name", "")).lower(): (p.text or "").strip() for p in root.iter("parameter")}
    try:
        data = json.loads(text)
    except ValueError:
        raise NotificationRejected("callout body is neither XML nor JSON", 400) from None
    if not isinstance(data, dict):
        raise NotificationRejected("callout body must be a JSON object", 400)
    return {str(k).lower(): str(v) for k, v in data.items() if not isinstance(v, (dict, list))}


__all__ = ["ZuoraConnector", "register", "base_url_of", "BASE_URLS", "failure_of", "ZuoraFailure"]
