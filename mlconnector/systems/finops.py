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
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import math
import time
import uuid
from decimal import Decimal
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
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
from mlconnector.http import ApiClient, RetryPolicy, json_with_decimals
from mlconnector.systems import ConnectorContext, register_kind
from mlconnector.systems.base import ConnectorBase, PingResult, Record, WriteResult

KIND = "finops"
AUTHORITY = "https://login.microsoftonline.com"
MAX_PAGE_SIZE = 10_000
DEFAULT_CONCURRENCY = 8          # F&O allows 52 concurrent requests per user per web server; stay well below
ENUM_NAMESPACE = "Microsoft.Dynamics.DataEntities"
BLANK_DATE = "1900-01-01T12:00:00Z"
DEFAULT_BATCH_DOCUMENTS = 100    # documents (changesets) per $batch request
LOOKUP_CHUNK = 20                # values per "field eq a or field eq b ..." lookup


@dataclass(frozen=True)
class EntityInfo:
    """An entity set this connector reads or writes: its key within a legal entity, and for documents the
    lines entity set, the line field that names the header and the line's sequence field."""

    key: str
    lines: str | None = None
    line_parent: str | None = None
    line_sequence: str | None = None
    customer_field: str | None = None
    # Line fields that identify a document besides its natural key (an invoice journal: the invoice number and the
    # customer account on its line), so one booked by hand or by another tool is not booked again.
    line_keys: tuple[str, ...] = ()
    # Line fields a payload carries as decimal text (exact money): sent as JSON numbers, digit for digit.
    money_fields: tuple[str, ...] = ()


ENTITIES: dict[str, EntityInfo] = {
    "CustomersV3": EntityInfo("CustomerAccount"),
    "ReleasedProductsV2": EntityInfo("ItemNumber"),
    "VendorsV2": EntityInfo("VendorAccountNumber"),
    "SalesOrderHeadersV2": EntityInfo("SalesOrderNumber", "SalesOrderLines", "SalesOrderNumber",
                                      "LineCreationSequenceNumber", "OrderingCustomerAccountNumber"),
    "FreeTextInvoiceHeaders": EntityInfo("InvoiceIdentifier", "FreeTextInvoiceLines", "ParentRecId", "LineNumber",
                                         "CustomerAccount"),
    "CustomerInvoiceJournalHeaders": EntityInfo("JournalBatchNumber", "CustomerInvoiceJournalLines",
                                                "JournalBatchNumber", "LineNumber",
                                                line_keys=("InvoiceId", "CustomerAccountDisplayValue"),
                                                money_fields=("DebitAmount", "CreditAmount")),
}
WRITABLE = ("SalesOrderHeadersV2", "FreeTextInvoiceHeaders", "CustomerInvoiceJournalHeaders")
LINES_FIELD = "lines"     # payloads of documents carry their lines here
# Free text invoice lines have no item field: the item is checked, then named in the line's Description.
ITEMLESS_LINES = frozenset({"FreeTextInvoiceLines", "CustomerInvoiceJournalLines"})


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
    return _error_message(_body(response))


def _error_message(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ""
    inner = error.get("innererror") if isinstance(error.get("innererror"), dict) else {}
    message = str(inner.get("message") or error.get("message") or "")
    return message.split("Infolog: ", 1)[-1].removeprefix("Error: ") if "Infolog: " in message else message


@dataclass
class _Part:
    """One request of a changeset; ``url`` may start with ``$HEADER``, the header created in the same
    changeset (sent as ``$<its Content-ID>``)."""

    method: str
    url: str
    body: dict[str, Any]
    what: str                     # "header", "line 2 (item D0001)": named in a failure


@dataclass
class _Changeset:
    """One document's changeset: the payload index it answers, its parts, and for a document already in F&O
    (lines being completed) its key."""

    index: int
    what: str
    parts: list[_Part]
    existing: str | None
    content_ids: dict[str, _Part] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchAnswer:
    """One request's response inside a ``$batch`` response."""

    status: int
    content_id: str | None
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body.strip() else None
        except ValueError:
            return None

    @property
    def code(self) -> str:
        error = (self.json() or {}).get("error") if isinstance(self.json(), dict) else None
        return str(error.get("code") or "") if isinstance(error, dict) else ""

    @property
    def message(self) -> str:
        return _error_message(self.json())


def parse_batch_response(content_type: str, content: bytes) -> list[list[BatchAnswer]]:
    """The responses of a multipart/mixed ``$batch`` response (OData v4.0), one list per top-level part: a
    changeset's responses (only the failing one when the changeset failed), or a single request's response.
    MIME parsing is Python's ``email`` package."""
    if not content_type.lower().startswith("multipart/mixed"):
        raise ValueError(f"a $batch response must be multipart/mixed, not {content_type or 'untyped'}")
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + content)
    out: list[list[BatchAnswer]] = []
    for part in message.get_payload() if message.is_multipart() else []:
        inner = part.get_payload() if part.is_multipart() else [part]
        out.append([_answer(p) for p in inner])
    return out


def _answer(part: Any) -> BatchAnswer:
    raw = (part.get_payload(decode=True) or b"").lstrip(b"\r\n")
    status_line, _, rest = raw.partition(b"\n")
    words = status_line.split()
    status = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
    body = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(rest).get_payload(decode=True) or b""
    return BatchAnswer(status, part.get("Content-ID"), body.strip())


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("@odata.")}


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
        self._sleep = sleep
        self.token_http = ApiClient(self.name, transport=context.transport, counter=context.counter, sleep=sleep)
        self.auth = TokenAuth(self._mint, SecretTokenCache(context.secrets, self.name))
        self.http = ApiClient(self.name, auth=self.auth, transport=context.transport, counter=context.counter,
                              max_concurrency=int(system.setting("concurrency", DEFAULT_CONCURRENCY, type_=int)),
                              sleep=sleep, headers={"Accept": "application/json", "OData-Version": "4.0"})
        # Documents per $batch request: each its own changeset; F&O documents no limit, so stay moderate.
        self.batch_documents = max(1, int(system.setting("batch_documents", DEFAULT_BATCH_DOCUMENTS, type_=int)))

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

    def record_ids(self, entity: str) -> Iterator[str]:
        """Every key of the legal entity's rows (a deletion is a key no longer here): ``$select`` of the key fields
        alone, at the connector's page size (10,000 at most, F&O's own limit), cross-company like every read.
        F&O's OData endpoint takes $select and $filter on data entities and pages by Prefer odata.maxpagesize
        (https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/odata)."""
        key = self._info(entity).key
        params = {"$filter": self._company_filter(self.read_filters.get(entity, "")),
                  "$select": f"dataAreaId,{key}"}
        for row in self._pages(entity, params):
            yield str(row[key])

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

    # -- writes ------------------------------------------------------------------------------------------------
    def write(self, entity: str, payloads: list[dict[str, Any]], key: str,
              ids: list[str | None] | None = None) -> list[WriteResult]:
        """Book each document once, header and lines in one changeset (all or nothing). ``key`` is the header
        field holding the source document's id (the natural key); a linked document (``ids``) is found by its
        own key first. Documents already in F&O are looked up in a few filtered reads; the rest go out as one
        ``$batch`` per ``batch_documents`` documents. See the module docstring."""
        if entity not in WRITABLE:
            raise ConfigError(f"{self.name}: writing {entity} is not supported (writable: {', '.join(WRITABLE)})")
        info = self._info(entity)
        known = list(ids or [None] * len(payloads))
        results: list[WriteResult | None] = [None] * len(payloads)
        documents: list[tuple[int, dict[str, Any], list[dict[str, Any]]]] = []
        for index, payload in enumerate(payloads):
            header = {k: v for k, v in payload.items() if k != LINES_FIELD and k != "dataAreaId"}
            lines = [dict(line) for line in payload.get(LINES_FIELD) or []]
            if header.get(key) in (None, ""):
                results[index] = WriteResult("fail", error=f"{entity}: the natural key {key} is empty; without it "
                                                           "a re-run could book the document twice",
                                             error_class="mapping")
            else:
                documents.append((index, header, lines))
        found = self._existing(entity, key, [(i, known[i], h[key]) for i, h, _ in documents])
        found.update(self._existing_by_lines(entity, [(i, lines) for i, _, lines in documents if i not in found]))
        changesets: list[_Changeset] = []
        first: dict[str, int] = {}     # natural key -> the payload that books it (a repeat in one call waits)
        repeats: dict[int, int] = {}
        for index, header, lines in documents:
            reference = header[key]
            what = f"{entity} for {key} {reference}"
            if index not in found and str(reference) in first:
                repeats[index] = first[str(reference)]
                continue
            first.setdefault(str(reference), index)
            try:
                if index in found:
                    outcome = self._complete(entity, found[index], header, lines)
                    if isinstance(outcome, WriteResult):
                        results[index] = outcome
                    else:
                        outcome.index = index
                        changesets.append(outcome)
                    continue
            except RemoteError as exc:
                if exc.retryable:
                    raise
                results[index] = WriteResult("fail", error=str(exc), error_class=f"http_{exc.status}")
                continue
            parts = [_Part("POST", f"{self.base_url}/{entity}", {"dataAreaId": self.legal_entity, **header},
                           "header")]
            parts += [_Part("POST", f"$HEADER/{info.lines}", self._line_body(entity, number, line),
                            f"line {number}" + (f" (item {line['ItemNumber']})" if line.get("ItemNumber") else ""))
                      for number, line in enumerate(lines, start=1)]
            changesets.append(_Changeset(index, what, parts, None))
        for start in range(0, len(changesets), self.batch_documents):
            chunk = changesets[start:start + self.batch_documents]
            for changeset, result in zip(chunk, self._send(entity, chunk)):
                results[changeset.index] = result
        for index, original in repeats.items():
            done = results[original]
            results[index] = WriteResult("update", done.target_id, done.version) if done and done.ok else done
        return [r or WriteResult("fail", error="no result", error_class="bug") for r in results]

    def write_calls(self, entity: str, payloads: list[dict[str, Any]], key: str,
                    ids: list[str | None] | None = None) -> int:
        """The calls ``write`` makes, for a dry run's estimate: the look-ups of documents already booked (linked
        ones by their own key, the rest by the natural key, LOOKUP_CHUNK a read) and one $batch per
        batch_documents documents."""
        ids = ids or [None] * len(payloads)
        linked = sum(1 for known in ids if known)
        return (math.ceil(linked / LOOKUP_CHUNK) + math.ceil(len(payloads) / LOOKUP_CHUNK)
                + math.ceil(len(payloads) / self.batch_documents))

    def _line_body(self, entity: str, number: int, line: Mapping[str, Any]) -> dict[str, Any]:
        info = self._info(entity)
        assert info.lines and info.line_sequence
        body = {info.line_sequence: number, **line}
        if info.lines in ITEMLESS_LINES:
            body.pop("ItemNumber", None)
        for name in info.money_fields:
            if body.get(name) not in (None, ""):
                body[name] = Decimal(str(body[name]))
        return body

    def _existing(self, entity: str, key: str, wanted: list[tuple[int, str | None, Any]]) -> dict[int, dict]:
        """The documents already in F&O, by payload index: by their own key where linked, else by the natural
        key, 20 values to a filtered read (a crash after F&O booked a document must not book it again)."""
        info = self._info(entity)
        found: dict[int, dict[str, Any]] = {}
        by_id = self._rows_where(entity, info.key, [target for _, target, _ in wanted if target])
        for index, target, _ in wanted:
            row = by_id.get(str(target)) if target else None
            if row is not None:
                found[index] = row
        rest = [(index, reference) for index, _, reference in wanted if index not in found]
        by_reference = self._rows_where(entity, key, [reference for _, reference in rest])
        for index, reference in rest:
            row = by_reference.get(str(reference))
            if row is not None:
                found[index] = row
        return found

    def _existing_by_lines(self, entity: str, wanted: list[tuple[int, list[dict[str, Any]]]]) -> dict[int, dict]:
        """Documents found by their first line's identifying fields (``line_keys``: an invoice number and customer
        account), wherever they were booked from; 20 values to a filtered read of the lines, then their headers."""
        info = self._info(entity)
        if not info.line_keys or not wanted or not info.lines or not info.line_parent:
            return {}
        first = info.line_keys[0]   # filtered on in F&O; the others compared here

        def identity(values: Mapping[str, Any]) -> tuple[str, ...]:
            return tuple(str(values.get(f) or "").strip().lower() for f in info.line_keys)
        keys = {index: identity(lines[0]) for index, lines in wanted if lines}
        holders: dict[tuple[str, ...], str] = {}
        distinct = list(dict.fromkeys(k[0] for k in keys.values() if k[0]))
        for start in range(0, len(distinct), LOOKUP_CHUNK):
            terms = " or ".join(f"{first} eq {quote_string(v)}" for v in distinct[start:start + LOOKUP_CHUNK])
            for row in self._pages(info.lines, {"$filter": self._company_filter(terms)}):
                holders.setdefault(identity(row), str(row.get(info.line_parent)))
        headers = self._rows_where(entity, info.key, list(dict.fromkeys(holders.values())))
        return {index: headers[holders[k]] for index, k in keys.items() if k in holders and holders[k] in headers}

    def _rows_where(self, entity: str, field: str, values: list[Any]) -> dict[str, dict[str, Any]]:
        """Rows whose ``field`` is one of ``values``, keyed by that value as text (the first row per value in
        key order when F&O holds more than one)."""
        rows: dict[str, dict[str, Any]] = {}
        distinct = list(dict.fromkeys(str(v) for v in values))
        numeric = field == "InvoiceIdentifier"
        for start in range(0, len(distinct), LOOKUP_CHUNK):
            chunk = distinct[start:start + LOOKUP_CHUNK]
            if numeric:
                chunk = [v for v in chunk if v.isdigit()]
                if not chunk:
                    continue
            terms = " or ".join(f"{field} eq {v if numeric else quote_string(v)}" for v in chunk)
            for row in self._pages(entity, {"$filter": self._company_filter(terms),
                                            "$orderby": self._info(entity).key}):
                rows.setdefault(str(row.get(field)), row)
        return rows

    def _complete(self, entity: str, found: Mapping[str, Any], header: Mapping[str, Any],
                  lines: list[dict[str, Any]]) -> WriteResult | _Changeset:
        """A document already booked (by an earlier run, maybe one that crashed before recording it): never a
        second document. Lines it lacks (a document booked line by line before F&O writes became atomic) are
        added in one changeset while it is still open."""
        info = self._info(entity)
        assert info.lines and info.line_parent and info.line_sequence
        target = str(found[info.key])
        customer = info.customer_field
        if customer and str(found.get(customer) or "").lower() != str(header.get(customer) or "").lower():
            return WriteResult("fail", error=f"{entity} {target} was booked for customer {found.get(customer)}; a "
                                             f"booked document is not moved to {header.get(customer)} (change it "
                                             "in F&O)", error_class="conflict")
        if found.get("IsPosted") == "Yes" or found.get("SalesOrderStatus") in ("Invoiced", "Canceled"):
            return WriteResult("update", target, utcnow())  # posted / closed in F&O: it is theirs now
        present = {float(line.get(info.line_sequence) or 0) for line in self._lines(entity, found)}
        parts = [_Part("POST", f"{self.base_url}/{info.lines}",
                       {"dataAreaId": self.legal_entity, info.line_parent: found[info.key],
                        **self._line_body(entity, number, line)}, f"line {number}")
                 for number, line in enumerate(lines, start=1) if float(number) not in present]
        if not parts:
            return WriteResult("update", target, utcnow())
        return _Changeset(-1, f"{entity} {target}", parts, target)

    def _send(self, entity: str, changesets: list[_Changeset]) -> list[WriteResult]:
        """One ``POST /data/$batch``: one changeset per document, so a document that fails rolls back alone and
        the others land. Returns a result per changeset, in order."""
        info = self._info(entity)
        boundary = f"batch_{uuid.uuid4()}"
        chunks: list[bytes] = []
        next_id = 1
        for changeset in changesets:
            inner = f"changeset_{uuid.uuid4()}"
            chunks.append(f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={inner}\r\n\r\n".encode())
            header_id = str(next_id)
            changeset.content_ids = {}
            for part in changeset.parts:
                content_id = str(next_id)
                next_id += 1
                changeset.content_ids[content_id] = part
                url = part.url.replace("$HEADER", f"${header_id}", 1)
                body = json_with_decimals(part.body)   # amounts exact (Decimal) as JSON numbers
                chunks.append(f"--{inner}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
                              f"Content-ID: {content_id}\r\n\r\n{part.method} {url} HTTP/1.1\r\n"
                              "Content-Type: application/json; odata.metadata=minimal\r\n"
                              "Accept: application/json\r\n\r\n".encode() + body + b"\r\n")
            chunks.append(f"--{inner}--\r\n".encode())
        chunks.append(f"--{boundary}--\r\n".encode())
        response = self._call("POST", "$batch", content=b"".join(chunks), idempotent=False,
                              headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})
        if response.status_code >= 500:
            raise self._fail(response, f"POST $batch ({len(changesets)} {entity} documents)")
        if response.status_code != 200:
            error = f"F&O refused the batch: {error_text(response) or response.status_code}"
            return [WriteResult("fail", error=error, error_class=f"http_{response.status_code}")
                    for _ in changesets]
        try:
            answers = parse_batch_response(response.headers.get("content-type", ""), response.content)
        except ValueError as exc:
            raise RemoteError(self.name, 200, message=f"the $batch answer is unreadable ({exc}); what F&O booked "
                              "is found by the next run") from None
        if len(answers) != len(changesets):
            raise RemoteError(self.name, 200, message=f"$batch answered {len(answers)} parts for "
                              f"{len(changesets)} changesets; nothing can be told about these documents")
        results = []
        for changeset, answer in zip(changesets, answers):
            failed = next((a for a in answer if a.status >= 300), None)
            if failed is not None:
                part = changeset.content_ids.get(failed.content_id or "")
                where = part.what if part else "the document"
                code = failed.code
                results.append(WriteResult(
                    "fail", error=f"{changeset.what}: {where} refused by F&O ({failed.status}"
                                  f"{', ' + code if code else ''}), nothing of the document was booked: "
                                  f"{failed.message or 'error'}",
                    error_class=f"http_{failed.status}"))
            elif changeset.existing is not None:
                results.append(WriteResult("update", changeset.existing, utcnow()))
            else:
                created = next((a for a in answer if a.content_id == next(iter(changeset.content_ids))), answer[0])
                body = created.json()
                if not isinstance(body, dict) or body.get(info.key) in (None, ""):
                    raise RemoteError(self.name, created.status, message=f"{changeset.what}: F&O booked the "
                                      "document but its answer names no key; the next run finds it")
                results.append(WriteResult("create", str(body[info.key]), utcnow()))
        return results

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
