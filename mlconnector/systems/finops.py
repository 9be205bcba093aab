"""Dynamics 365 Finance & Operations: OData data entities at ``/data/``, read across companies for one legal
entity, sales orders and free text invoices booked without duplicates.

Reads always send ``cross-company=true`` with ``dataAreaId eq '<legal_entity>'``: without it F&O silently
returns only the app user's default company. Record ids are the entity's own key within the legal entity
(CustomerAccount, ItemNumber, VendorAccountNumber, SalesOrderNumber, InvoiceIdentifier). F&O's standard
entities have no modified-time field: name one per entity in ``modified_fields`` (an extension of yours) and
reads become incremental; otherwise each read is the legal entity's whole table, paged (the engine skips what
is unchanged).

Writes book documents: ``SalesOrderHeadersV2`` (lines to SalesOrderLines) and ``FreeTextInvoiceHeaders``
(lines to FreeTextInvoiceLines). F&O has no idempotency key, so before each write the document is looked up by
the natural key the pair sets (the source record's id kept in a reference field); a document already there is
completed (missing lines added), never booked twice, also after a crash between the write and our state
commit. Every line's item and the customer are checked first: a line that does not resolve fails the whole
document before anything is written. Nothing is posted and nothing goes to the general ledger.

Settings (``[systems.NAME]``, kind "finops"): environment (host, e.g. contoso.operations.dynamics.com),
base_url (where requests go; default https://{environment}), tenant, client_id, legal_entity, token_url,
authority, scope (default https://{environment}/.default), page_size (<= 10,000), concurrency,
modified_fields, read_filters, ping_entities. Secret: client_secret (``mlconnector secrets set NAME
client_secret``); the access token is cached in the same store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from mlconnector.auth import SecretTokenCache, Token, TokenAuth, utcnow
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
from mlconnector.http import ApiClient, RetryPolicy
from mlconnector.systems import ConnectorContext, register_kind
from mlconnector.systems.base import PingResult, Record, WriteResult

KIND = "finops"
AUTHORITY = "https://login.microsoftonline.com"
MAX_PAGE_SIZE = 10_000
DEFAULT_CONCURRENCY = 8          # F&O allows 52 concurrent requests per user per web server; stay well below
ENUM_NAMESPACE = "Microsoft.Dynamics.DataEntities"
BLANK_DATE = "1900-01-01T12:00:00Z"


@dataclass(frozen=True)
class EntityInfo:
    """An entity set this connector reads or writes: its key within a legal entity, and for documents the
    lines entity set, the line field that names the header and the line's sequence field."""

    key: str
    lines: str | None = None
    line_parent: str | None = None
    line_sequence: str | None = None
    customer_field: str | None = None


ENTITIES: dict[str, EntityInfo] = {
    "CustomersV3": EntityInfo("CustomerAccount"),
    "ReleasedProductsV2": EntityInfo("ItemNumber"),
    "VendorsV2": EntityInfo("VendorAccountNumber"),
    "SalesOrderHeadersV2": EntityInfo("SalesOrderNumber", "SalesOrderLines", "SalesOrderNumber",
                                      "LineCreationSequenceNumber", "OrderingCustomerAccountNumber"),
    "FreeTextInvoiceHeaders": EntityInfo("InvoiceIdentifier", "FreeTextInvoiceLines", "ParentRecId", "LineNumber",
                                         "CustomerAccount"),
}
WRITABLE = ("SalesOrderHeadersV2", "FreeTextInvoiceHeaders")
LINES_FIELD = "lines"     # payloads of documents carry their lines here
# Free text invoice lines have no item field: the item is checked, then named in the line's Description.
ITEMLESS_LINES = frozenset({"FreeTextInvoiceLines"})


def register() -> None:
    register_kind(KIND, FinOpsConnector)


def enum_literal(enum_type: str, value: str) -> str:
    """An enum value as F&O's $filter takes it: ``Microsoft.Dynamics.DataEntities.NoYes'Yes'``."""
    return f"{ENUM_NAMESPACE}.{enum_type}'{value}'"


def quote_string(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def odata_time(moment: datetime) -> str:
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(value: Any) -> datetime | None:
    """A DateTimeOffset as aware UTC; F&O's empty date (1900-01-01T12:00:00Z) is None."""
    if not isinstance(value, str) or not value or value.startswith("1900-01-01"):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return None


def error_text(response: httpx.Response) -> str:
    """F&O's error message: the Infolog inside ``innererror`` where there is one, else ``error.message``."""
    body = _body(response)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ""
    inner = error.get("innererror") if isinstance(error.get("innererror"), dict) else {}
    message = str(inner.get("message") or error.get("message") or "")
    return message.split("Infolog: ", 1)[-1].removeprefix("Error: ") if "Infolog: " in message else message


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("@odata.")}


class FinOpsConnector:
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
        self._sleep = sleep
        self.token_http = ApiClient(self.name, transport=context.transport, counter=context.counter, sleep=sleep)
        self.auth = TokenAuth(self._mint, SecretTokenCache(context.secrets, self.name))
        self.http = ApiClient(self.name, auth=self.auth, transport=context.transport, counter=context.counter,
                              max_concurrency=int(system.setting("concurrency", DEFAULT_CONCURRENCY, type_=int)),
                              sleep=sleep, headers={"Accept": "application/json", "OData-Version": "4.0"})
        self._items: set[str] = set()         # item numbers seen to exist in the legal entity
        self._customers: set[str] = set()

    # -- plumbing ----------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"{self.root}/data"

    def close(self) -> None:
        self.http.close()
        self.token_http.close()

    def _mint(self, current: Token | None) -> Token:
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.context.secrets.require(self.name, "client_secret"), "scope": self.scope}
        response = self.token_http.request("POST", self.token_url, data=form)
        body = _body(response)
        if response.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
            return Token(str(body["access_token"]), utcnow() + timedelta(seconds=float(body.get("expires_in") or 3599)))
        if response.status_code >= 500 or not isinstance(body, dict):
            raise RemoteError(self.name, response.status_code, message=f"token endpoint {self.token_url} failed")
        codes = body.get("error_codes") or [0]
        hints = {
            7000215: f"client secret refused; store the secret's value (not its id) with "
                     f"`mlconnector secrets set {self.name} client_secret`",
            7000222: f"client secret expired; create a new one and store it with "
                     f"`mlconnector secrets set {self.name} client_secret`",
            700016: f"client_id {self.client_id} is not an app registration in this tenant; check client_id and "
                    "tenant",
            90002: "tenant not found; check tenant (the directory id or its domain)",
            70011: f"scope {self.scope} refused; set environment to the F&O host name (no path, no trailing "
                   "slash) or scope to https://<environment>/.default",
        }
        raise AuthError(self.name, hints.get(int(codes[0]), f"Entra ID refused the token request "
                                                             f"({body.get('error', 'error')}, AADSTS{codes[0]})"))

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = path if path.startswith("http") else f"{self.base_url}/{path}"
        response = self.http.request(method, url, **kwargs)
        if response.status_code == 401:
            raise AuthError(self.name, "F&O refused the access token: register the app in F&O (System "
                                       "administration > Setup > Microsoft Entra applications: client id "
                                       f"{self.client_id} and the user it acts as) and check environment")
        return response

    def _fail(self, response: httpx.Response, what: str) -> RemoteError:
        return RemoteError(self.name, response.status_code, message=f"{what}: {error_text(response) or 'error'}",
                           retryable=response.status_code >= 500)

    def _info(self, entity: str) -> EntityInfo:
        try:
            return ENTITIES[entity]
        except KeyError:
            raise ConfigError(f"{self.name}: unknown entity {entity!r}; known: {', '.join(ENTITIES)}") from None

    def _key_url(self, entity: str, value: Any, key: str | None = None) -> str:
        key = key or self._info(entity).key
        literal = str(int(value)) if isinstance(value, (int, float)) or (key == "InvoiceIdentifier"
                                                                       and str(value).isdigit()) \
            else quote(quote_string(value), safe="'")
        return f"{entity}(dataAreaId={quote_string(self.legal_entity)},{key}={literal})"

    def _company_filter(self, *terms: str) -> str:
        return " and ".join([f"dataAreaId eq {quote_string(self.legal_entity)}", *(f"({t})" for t in terms if t)])

    # -- reads -------------------------------------------------------------------------------------------------
    def _pages(self, entity: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Every row, page by page: ``Prefer: odata.maxpagesize`` and the nextLink followed verbatim (never
        $top/$skip paging, which F&O caps and which shifts while rows change). Every read is cross-company."""
        params = {"cross-company": "true", **params}
        headers = {"Prefer": f"odata.maxpagesize={self.page_size}"}
        next_url: str | None = f"{self.base_url}/{entity}"
        while next_url:
            response = self._call("GET", next_url, params=params, headers=headers)
            if response.status_code != 200:
                raise self._read_failure(response, entity)
            body = response.json()
            yield from body.get("value") or []
            next_url, params = body.get("@odata.nextLink"), None
            if next_url and "cross-company=true" not in next_url.lower():
                # Never read a page in the default company's context, whatever the link carries.
                next_url += ("&" if "?" in next_url else "?") + "cross-company=true"

    def _read_failure(self, response: httpx.Response, entity: str) -> MLConnectorError:
        if response.status_code == 404:
            return RemoteError(self.name, 404, message=f"no entity set {entity} at {self.base_url} (names are "
                               "case-sensitive; is the entity public?)")
        return self._fail(response, f"GET {entity}")

    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        """Rows of the legal entity; with a modified field, those modified in [since, until) in that order."""
        info = self._info(entity)
        modified = self.modified_fields.get(entity)
        terms = [self.read_filters.get(entity, "")]
        if modified and since is not None:
            terms.append(f"{modified} ge {odata_time(since)}")
        if modified and until is not None:
            terms.append(f"{modified} lt {odata_time(until)}")
        params = {"$filter": self._company_filter(*terms),
                  "$orderby": f"{modified},{info.key}" if modified else info.key}
        for row in self._pages(entity, params):
            yield self._record(entity, row)

    def _record(self, entity: str, row: Mapping[str, Any], lines: list[dict[str, Any]] | None = None) -> Record:
        data = _clean(row)
        if lines is not None:
            data[LINES_FIELD] = lines
        modified = self.modified_fields.get(entity)
        return Record(self.name, entity, str(data[self._info(entity).key]),
                      parse_time(data.get(modified)) if modified else None, data)

    def get(self, entity: str, id: str) -> Record | None:
        """The current row (documents with their lines); None when it is gone."""
        row = self._get_row(entity, id)
        if row is None:
            return None
        info = self._info(entity)
        lines = self._lines(entity, row) if info.lines else None
        return self._record(entity, row, lines)

    def _get_row(self, entity: str, id: Any) -> dict[str, Any] | None:
        response = self._call("GET", self._key_url(entity, id), params={"cross-company": "true"})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"GET {entity} {id}")
        return response.json()

    def _lines(self, entity: str, header: Mapping[str, Any]) -> list[dict[str, Any]]:
        info = self._info(entity)
        assert info.lines and info.line_parent and info.line_sequence
        parent = header[info.key]
        literal = str(parent) if isinstance(parent, (int, float)) else quote_string(parent)
        rows = self._pages(info.lines, {"$filter": self._company_filter(f"{info.line_parent} eq {literal}"),
                                        "$orderby": info.line_sequence})
        return [_clean(r) for r in rows]

    def _find_by(self, entity: str, field: str, value: Any) -> dict[str, Any] | None:
        rows = list(self._pages(entity, {"$filter": self._company_filter(f"{field} eq {quote_string(value)}")}))
        return rows[0] if rows else None

    # -- writes ------------------------------------------------------------------------------------------------
    def write(self, entity: str, payloads: list[dict[str, Any]], key: str,
              ids: list[str | None] | None = None) -> list[WriteResult]:
        """Book each document once. ``key`` is the header field holding the source document's id (the natural
        key); a linked document (``ids``) is found by its own key first. See the module docstring."""
        if entity not in WRITABLE:
            raise ConfigError(f"{self.name}: writing {entity} is not supported (writable: {', '.join(WRITABLE)})")
        known = ids or [None] * len(payloads)
        return [self._book(entity, payload, key, known_id) for payload, known_id in zip(payloads, known)]

    def _book(self, entity: str, payload: Mapping[str, Any], key: str, known_id: str | None) -> WriteResult:
        info = self._info(entity)
        header = {k: v for k, v in payload.items() if k != LINES_FIELD and k != "dataAreaId"}
        lines = [dict(line) for line in payload.get(LINES_FIELD) or []]
        reference = header.get(key)
        if reference in (None, ""):
            return WriteResult("fail", error=f"{entity}: the natural key {key} is empty; without it a re-run "
                                             "could book the document twice", error_class="mapping")
        try:
            problem = self._unresolved(header.get(info.customer_field or ""), lines)
            if problem:
                return WriteResult("fail", error=problem, error_class="unresolved_reference")
            found = self._get_row(entity, known_id) if known_id else None
            if found is None:
                found = self._find_by(entity, key, reference)
            if found is not None:
                return self._complete(entity, found, header, lines)
            response = self._call("POST", entity, json={"dataAreaId": self.legal_entity, **header},
                                  idempotent=False)
            if response.status_code != 201:
                return self._refused(response, f"create {entity} for {key} {reference}")
            created = response.json()
            failed = self._add_lines(entity, created, lines, set())
            if failed:
                return failed
            return WriteResult("create", str(created[info.key]), utcnow())
        except RemoteError as exc:
            if exc.retryable:
                raise
            return WriteResult("fail", error=str(exc), error_class=f"http_{exc.status}")

    def _unresolved(self, customer: Any, lines: list[dict[str, Any]]) -> str | None:
        """The reason the document cannot be booked (an unknown customer or item), checked before any write."""
        if customer and str(customer) not in self._customers:
            if self._get_row("CustomersV3", customer) is None:
                return f"customer account {customer} does not exist in legal entity {self.legal_entity}"
            self._customers.add(str(customer))
        wanted = [str(line["ItemNumber"]) for line in lines if line.get("ItemNumber")]
        unknown = sorted(set(wanted) - self._items)
        for start in range(0, len(unknown), 20):
            chunk = unknown[start:start + 20]
            terms = " or ".join(f"ItemNumber eq {quote_string(i)}" for i in chunk)
            for row in self._pages("ReleasedProductsV2", {"$filter": self._company_filter(terms),
                                                          "$select": "dataAreaId,ItemNumber"}):
                self._items.add(str(row["ItemNumber"]))
        for number, line in enumerate(lines, start=1):
            item = line.get("ItemNumber")
            if item and str(item) not in self._items:
                return (f"line {number}: item {item} is not a released product in legal entity "
                        f"{self.legal_entity}; nothing was booked")
        return None

    def _add_lines(self, entity: str, header: Mapping[str, Any], lines: list[dict[str, Any]],
                   present: set[float]) -> WriteResult | None:
        """POST the lines whose sequence number is not yet on the document (a crash may have left some out)."""
        info = self._info(entity)
        assert info.lines and info.line_parent and info.line_sequence
        for number, line in enumerate(lines, start=1):
            if float(number) in present:
                continue
            body = {"dataAreaId": self.legal_entity, info.line_parent: header[info.key],
                    info.line_sequence: number, **line}
            if info.lines in ITEMLESS_LINES:
                body.pop("ItemNumber", None)
            response = self._call("POST", info.lines, json=body, idempotent=False)
            if response.status_code != 201:
                return self._refused(response, f"add line {number} to {entity} {header[info.key]} (the document "
                                               "is incomplete; the next run adds the missing lines)")
        return None

    def _complete(self, entity: str, found: Mapping[str, Any], header: Mapping[str, Any],
                  lines: list[dict[str, Any]]) -> WriteResult:
        """A document already booked (by an earlier run, maybe one that crashed before recording it): add
        lines it lacks while it is still open; never a second document."""
        info = self._info(entity)
        target = str(found[info.key])
        customer = info.customer_field
        if customer and str(found.get(customer) or "").lower() != str(header.get(customer) or "").lower():
            return WriteResult("fail", error=f"{entity} {target} was booked for customer {found.get(customer)}; a "
                                             f"booked document is not moved to {header.get(customer)} (change it "
                                             "in F&O)", error_class="conflict")
        if found.get("IsPosted") == "Yes" or found.get("SalesOrderStatus") in ("Invoiced", "Canceled"):
            return WriteResult("update", target, utcnow())  # posted / closed in F&O: it is theirs now
        present = {float(line.get(info.line_sequence or "") or 0) for line in self._lines(entity, found)}
        failed = self._add_lines(entity, found, lines, present)
        return failed or WriteResult("update", target, utcnow())

    def _refused(self, response: httpx.Response, what: str) -> WriteResult:
        if response.status_code >= 500:
            raise self._fail(response, what)
        return WriteResult("fail", error=f"{what}: {error_text(response) or response.status_code}",
                           error_class=f"http_{response.status_code}")

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


__all__ = ["FinOpsConnector", "register", "enum_literal", "odata_time", "parse_time", "ENTITIES", "error_text"]
