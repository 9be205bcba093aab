"""``FinOpsSandbox``: the state behind the app (``app.state.finops``): Entra app registrations and their F&O users,
legal entities, the rows of each data entity, number sequences, throttling, and the helpers tests use."""

from __future__ import annotations

import asyncio
import copy
import itertools
import math
import secrets
import uuid
from collections import deque
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Iterator
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from mlconnector.sandbox.common import Faults, JSONResponse, SandboxClock

from .entities import ENTITIES, EntitySpec
from .errors import ODataError, unauthorized, write_failed
from .query import check_value

ACCESS_TOKEN_LIFETIME = 3599
DEFAULT_RATE_LIMIT = 6_000        # requests per user per web server per 5-minute sliding window
DEFAULT_RATE_WINDOW = 300.0
DEFAULT_MAX_CONCURRENT = 52       # concurrent requests per user per web server
FIRST_RECID = 5637144576          # RecIds as F&O shows them (InvoiceIdentifier)


@dataclass
class App:
    """An Entra app registration; ``user_id`` is the F&O user it runs as (System administration > Setup >
    Microsoft Entra applications), None when it is not registered in F&O (tokens work, F&O answers 401)."""

    tenant: str
    client_id: str
    client_secret: str = field(repr=False)
    user_id: str | None
    default_company: str


@dataclass
class AccessToken:
    tenant: str
    client_id: str
    expires_at: datetime


@dataclass
class StoredRow:
    values: dict[str, Any]
    modified: datetime
    version: int = 1


@dataclass
class ApiCall:
    method: str
    path: str
    query: str
    form: str = "data"          # "token" | "data"
    principal: str | None = None
    status: int | None = None
    # For $batch: each operation as "METHOD url -> status", in the order F&O ran them.
    operations: list[str] = field(default_factory=list)

    @property
    def params(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.query, keep_blank_values=True).items()}


class FinOpsSandbox:
    """One emulated F&O environment (``resource`` is its URL, the token audience)."""

    def __init__(self, clock: SandboxClock | None = None, faults: Faults | None = None, *,
                 resource: str = "https://usmf-test.operations.dynamics.com") -> None:
        self.clock = clock or SandboxClock()
        self.faults = faults or Faults()
        self.resource = resource.rstrip("/")
        self.apps: dict[tuple[str, str], App] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.tokens_issued = 0
        self.companies: dict[str, str] = {"dat": "DAT"}   # dataAreaId -> name; DAT always exists in F&O
        self.tables: dict[str, dict[tuple, StoredRow]] = {name: {} for name in ENTITIES if name != "LegalEntities"}
        # Entity -> name of the modified-time field a partner extension added; F&O's standard entities have none.
        self.modified_fields: dict[str, str] = {}
        self.rate_limit = DEFAULT_RATE_LIMIT
        self.rate_window = DEFAULT_RATE_WINDOW
        self.max_concurrent = DEFAULT_MAX_CONCURRENT
        self.calls: list[ApiCall] = []
        self._sequences: dict[tuple[str, str], itertools.count] = {}
        self._windows: dict[str, deque[datetime]] = {}
        self._inflight: dict[str, int] = {}
        # While a changeset runs: (table, key) -> the row as it was before (None: it did not exist).
        self._journal: dict[tuple[str, tuple], StoredRow | None] | None = None

    # -- setup ------------------------------------------------------------------------------------------------

    def register_app(self, tenant: str, client_id: str, client_secret: str, *, user_id: str | None = "Admin",
                     default_company: str = "dat") -> None:
        """An Entra app with a secret, registered in F&O with ``user_id`` (None: not registered in F&O)."""
        self.apps[(tenant.lower(), client_id)] = App(tenant.lower(), client_id, client_secret, user_id,
                                                     default_company.lower())

    def create_company(self, data_area_id: str, name: str | None = None) -> str:
        """A legal entity; returns its dataAreaId (lower case, as F&O shows it)."""
        company = data_area_id.lower()
        self.companies[company] = name or data_area_id.upper()
        return company

    def add_modified_field(self, entity: str, name: str = "ModifiedDateTime") -> None:
        """Expose each row's last change under ``name`` (an extension of the standard entity): $filter works on it."""
        self.modified_fields[_spec(entity).name] = name

    # -- rows -------------------------------------------------------------------------------------------------

    def key_of(self, spec: EntitySpec, values: dict[str, Any]) -> tuple:
        return tuple(_key_part(values.get(k)) for k in spec.keys)

    def view(self, spec: EntitySpec, row: StoredRow) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.etag": f'W/"{_etag(spec, row)}"'}
        out.update({k: row.values.get(k) for k in (("dataAreaId",) if spec.company_specific else ())})
        out.update({k: row.values.get(k) for k in spec.fields})
        modified = self.modified_fields.get(spec.name)
        if modified:
            out[modified] = row.modified.strftime("%Y-%m-%dT%H:%M:%S.") + f"{row.modified.microsecond // 1000:03d}Z"
        return out

    def rows(self, spec: EntitySpec) -> list[dict[str, Any]]:
        if spec.name == "LegalEntities":
            return [{"@odata.etag": f'W/"{i}"', "LegalEntityId": c.upper(), "Name": n}
                    for i, (c, n) in enumerate(sorted(self.companies.items()), start=1)]
        return [self.view(spec, row) for row in self.tables[spec.name].values()]

    def find(self, spec: EntitySpec, key: dict[str, Any]) -> StoredRow | None:
        return self.tables[spec.name].get(self.key_of(spec, key))

    def next_number(self, spec: EntitySpec, company: str) -> Any:
        counter = self._sequences.setdefault((spec.name, company), itertools.count(1))
        while True:
            n = next(counter)
            if spec.numbered == "InvoiceIdentifier":
                value: Any = FIRST_RECID + n
            elif spec.name == "CustomersV3":
                value = f"{company.upper()}-{n:03d}"
            elif spec.name == "VendorsV2":
                value = f"V-{n:04d}"
            else:
                value = f"{n:06d}"
            if self.key_of(spec, {"dataAreaId": company, spec.numbered or "": value}) not in \
                    self.tables[spec.name]:
                return value

    def create(self, spec: EntitySpec, body: dict[str, Any], company: str, *, trusted: bool = False,
               modified: datetime | None = None) -> StoredRow:
        """Insert as F&O's create would: company from the body (PrimaryCompanyContext) else the context's,
        number sequences, defaults, mandatory fields, references in the same company."""
        values: dict[str, Any] = dict(spec.defaults)
        for name, value in body.items():
            if name == "dataAreaId" or name.startswith("@odata."):
                continue
            if name in spec.read_only and not trusted:
                raise write_failed(spec.aot, f"Field '{name}' cannot be set: it is calculated by the system.")
            values[name] = check_value(spec, name, value)
        company = str(body.get("dataAreaId") or company).lower()
        if company not in self.companies:
            raise write_failed(spec.aot, f"Company '{company}' does not exist.")
        values["dataAreaId"] = company
        if spec.numbered and values.get(spec.numbered) in (None, ""):
            values[spec.numbered] = self.next_number(spec, company)
        missing = [f for f in (*spec.keys[1:], *spec.required) if values.get(f) in (None, "")]
        if missing:
            raise write_failed(spec.aot, f"Field '{missing[0]}' must be filled in.")
        self._check_references(spec, values)
        key = self.key_of(spec, values)
        if key in self.tables[spec.name]:
            raise write_failed(spec.aot, f"Cannot create a record in {spec.aot}. The record already exists.")
        if spec.name == "SalesOrderHeadersV2":
            if not values.get("InvoiceCustomerAccountNumber"):
                values["InvoiceCustomerAccountNumber"] = values["OrderingCustomerAccountNumber"]
            values["OrderCreationDateTime"] = self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        if spec.name == "FreeTextInvoiceHeaders":
            values["InvoiceAccount"] = values.get("InvoiceAccount") or values["CustomerAccount"]
        row = StoredRow(values, modified or self.clock.now())
        self._remember(spec.name, key)
        self.tables[spec.name][key] = row
        self._derive(spec, row)
        return row

    def update(self, spec: EntitySpec, row: StoredRow, body: dict[str, Any], *, trusted: bool = False) -> None:
        self._remember(spec.name, self.key_of(spec, row.values))
        for name, value in body.items():
            if name.startswith("@odata."):
                continue
            if name in spec.keys:
                if _key_part(value) != _key_part(row.values.get(name)):
                    raise write_failed(spec.aot, f"The key field '{name}' cannot be changed.")
                continue
            if name in spec.read_only and not trusted:
                raise write_failed(spec.aot, f"Field '{name}' cannot be set: it is calculated by the system.")
            row.values[name] = check_value(spec, name, value)
        self._check_references(spec, row.values)
        row.version += 1
        row.modified = self.clock.now()
        self._derive(spec, row)

    def delete(self, spec: EntitySpec, row: StoredRow) -> None:
        self._remember(spec.name, self.key_of(spec, row.values))
        self.tables[spec.name].pop(self.key_of(spec, row.values), None)
        self._derive(spec, row)

    def _check_references(self, spec: EntitySpec, values: dict[str, Any]) -> None:
        for name, (target, target_field) in spec.references.items():
            value = values.get(name)
            if value in (None, ""):
                continue
            target_spec = ENTITIES[target]
            if self.find(target_spec, {"dataAreaId": values["dataAreaId"], target_field: value}) is None:
                what = {"CustomersV3": "Customer", "ReleasedProductsV2": "Item",
                        "SalesOrderHeadersV2": "Sales order", "FreeTextInvoiceHeaders": "Free text invoice"}[target]
                raise write_failed(spec.aot, f"{what} {value} does not exist in company {values['dataAreaId']}.")
        if spec.parent:
            parent = self.find(ENTITIES[spec.parent[0]], {"dataAreaId": values["dataAreaId"],
                                                          spec.parent[1]: values.get(spec.parent[2])})
            if parent is not None and parent.values.get("IsPosted") == "Yes":
                raise write_failed(spec.aot, "The invoice is posted and cannot be changed.")
            if parent is not None and parent.values.get("SalesOrderStatus") in ("Invoiced", "Canceled"):
                raise write_failed(spec.aot, f"Sales order {values.get(spec.parent[2])} is "
                                             f"{parent.values['SalesOrderStatus'].lower()} and cannot be changed.")

    def _derive(self, spec: EntitySpec, row: StoredRow) -> None:
        """Line amounts and header totals, as F&O computes them; a line change touches its header."""
        values = row.values
        if spec.name == "SalesOrderLines":
            price, qty = float(values.get("SalesPrice") or 0), float(values.get("OrderedSalesQuantity") or 0)
            values["LineAmount"] = round(price * qty - float(values.get("LineDiscountAmount") or 0), 2)
        if spec.name == "FreeTextInvoiceLines":
            values["TransactionCurrencyAmount"] = round(float(values.get("UnitPrice") or 0)
                                                        * float(values.get("Quantity") or 0), 2)
        if spec.parent:
            header_spec = ENTITIES[spec.parent[0]]
            header = self.find(header_spec, {"dataAreaId": values["dataAreaId"],
                                             spec.parent[1]: values.get(spec.parent[2])})
            if header is not None:
                self._remember(header_spec.name, self.key_of(header_spec, header.values))
                header.modified = self.clock.now()
                header.version += 1
                if header_spec.name == "SalesOrderHeadersV2":
                    lines = self.lines_of(header_spec, header)
                    header.values["OrderTotalAmount"] = round(sum(float(x.values.get("LineAmount") or 0)
                                                                  for x in lines), 2)

    def lines_of(self, header_spec: EntitySpec, header: StoredRow) -> list[StoredRow]:
        line_spec = next(s for s in ENTITIES.values() if s.parent and s.parent[0] == header_spec.name)
        _, header_key, line_field = line_spec.parent  # type: ignore[misc]
        return [r for r in self.tables[line_spec.name].values()
                if r.values["dataAreaId"] == header.values["dataAreaId"]
                and _key_part(r.values.get(line_field)) == _key_part(header.values.get(header_key))]

    # -- transactions (a $batch changeset) -------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: every row change made inside is undone when the block raises (as F&O's ttsabort
        undoes a changeset). Number sequence values drawn inside stay drawn (non-continuous sequences)."""
        if self._journal is not None:       # already inside one: the outer transaction decides
            yield
            return
        self._journal = {}
        try:
            yield
        except BaseException:
            for (table, key), before in reversed(list(self._journal.items())):
                if before is None:
                    self.tables[table].pop(key, None)
                else:
                    self.tables[table][key] = before
            raise
        finally:
            self._journal = None

    def _remember(self, table: str, key: tuple) -> None:
        if self._journal is None or (table, key) in self._journal:
            return
        row = self.tables[table].get(key)
        self._journal[(table, key)] = None if row is None else StoredRow(copy.deepcopy(row.values), row.modified,
                                                                         row.version)

    # -- helpers for tests and demos -----------------------------------------------------------------------------

    def seed(self, company: str, entity: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert rows as F&O users would have (read-only fields allowed); documents may carry ``lines``."""
        spec = _spec(entity)
        out = []
        for record in records:
            values = dict(record)
            lines = values.pop("lines", None) or []
            row = self.create(spec, values, company, trusted=True)
            for number, line in enumerate(lines, start=1):
                self.add_line(company, spec.name, row.values[spec.keys[-1]], number=number, **line)
            out.append(self.view(spec, row))
        return out

    def add_line(self, company: str, entity: str, ref: Any, number: int | None = None, **values: Any) -> dict:
        header_spec = _spec(entity)
        header = self._row(company, header_spec, ref)
        line_spec = next(s for s in ENTITIES.values() if s.parent and s.parent[0] == header_spec.name)
        count = len(self.lines_of(header_spec, header)) + 1
        body = {line_spec.parent[2]: header.values[line_spec.parent[1]], **values}  # type: ignore[index]
        if line_spec.name == "FreeTextInvoiceLines":
            body.setdefault("LineNumber", float(number or count))
            body.setdefault("MainAccountDisplayValue", "401100")
        else:
            body.setdefault("LineCreationSequenceNumber", number or count)
        return self.view(line_spec, self.create(line_spec, body, company, trusted=True))

    def _row(self, company: str, spec: EntitySpec, ref: Any) -> StoredRow:
        row = self.find(spec, {"dataAreaId": company.lower(), spec.keys[-1]: ref})
        if row is None:
            raise KeyError(f"no {spec.name} {ref!r} in {company}")
        return row

    def records(self, company: str | None, entity: str) -> list[dict[str, Any]]:
        """Rows of an entity (of one company, or of all with None), as GET shows them."""
        spec = _spec(entity)
        return [self.view(spec, r) for r in self.tables[spec.name].values()
                if company is None or r.values.get("dataAreaId") == company.lower()]

    def lines(self, company: str, entity: str, ref: Any) -> list[dict[str, Any]]:
        header_spec = _spec(entity)
        line_spec = next(s for s in ENTITIES.values() if s.parent and s.parent[0] == header_spec.name)
        return [self.view(line_spec, r) for r in self.lines_of(header_spec, self._row(company, header_spec, ref))]

    def get(self, company: str, entity: str, ref: Any) -> dict[str, Any]:
        spec = _spec(entity)
        return self.view(spec, self._row(company, spec, ref))

    def modify(self, company: str, entity: str, ref: Any, **changes: Any) -> dict[str, Any]:
        """Change a row as an F&O user would (new etag, new modified time)."""
        spec = _spec(entity)
        row = self._row(company, spec, ref)
        self.update(spec, row, changes, trusted=True)
        return self.view(spec, row)

    def post_invoice(self, company: str, identifier: int) -> dict[str, Any]:
        """Post a free text invoice (F&O users do this; the connector never does): invoice number, IsPosted."""
        spec = ENTITIES["FreeTextInvoiceHeaders"]
        row = self._row(company, spec, identifier)
        number = len([r for r in self.tables[spec.name].values() if r.values.get("IsPosted") == "Yes"]) + 1
        self.update(spec, row, {"IsPosted": "Yes", "InvoiceId": f"FTI-{number:06d}"}, trusted=True)
        return self.view(spec, row)

    def post_journal(self, company: str, batch: str) -> dict[str, Any]:
        """Post a customer invoice journal (an F&O user's Post, or a batch job; never the connector): its
        invoices become customer transactions and the journal can no longer change."""
        spec = ENTITIES["CustomerInvoiceJournalHeaders"]
        row = self._row(company, spec, batch)
        self.update(spec, row, {"IsPosted": "Yes"}, trusted=True)
        return self.view(spec, row)

    def advance(self, **kwargs: float) -> None:
        self.clock.advance(**kwargs)

    def call_count(self, *, method: str | None = None, path_contains: str | None = None) -> int:
        return sum(1 for c in self.calls if (method is None or c.method == method)
                   and (path_contains is None or path_contains in c.path))

    def seed_demo(self, company: str = "usmf", name: str = "Contoso Entertainment System USA") -> str:
        """A small USMF-like legal entity: customers, released products, vendors, an order and an invoice."""
        company = self.create_company(company, name)
        org = {"PartyType": "Organization", "CustomerGroupId": "30", "SalesCurrencyCode": "USD"}
        self.seed(company, "CustomersV3", [
            {**org, "CustomerAccount": "US-001", "OrganizationName": "Contoso Retail San Diego",
             "AddressStreet": "123 Coffee Street", "AddressCity": "San Diego", "AddressState": "CA",
             "AddressZipCode": "92101", "AddressCountryRegionId": "USA", "PrimaryContactPhone": "+1 619 555 0100",
             "PrimaryContactEmail": "sandiego@contoso.example", "CreditLimit": 100000},
            {**org, "CustomerAccount": "US-002", "OrganizationName": "Contoso Retail Los Angeles",
             "AddressStreet": "456 Peach Road", "AddressCity": "Los Angeles", "AddressState": "CA",
             "AddressZipCode": "90001", "AddressCountryRegionId": "USA"},
            {**org, "CustomerAccount": "US-003", "OrganizationName": "Forest Wholesales",
             "AddressStreet": "789 Pine Avenue", "AddressCity": "Seattle", "AddressState": "WA",
             "AddressZipCode": "98101", "AddressCountryRegionId": "USA", "OnHoldStatus": "Invoice"},
        ])
        self.seed(company, "ReleasedProductsV2", [
            {"ItemNumber": "D0001", "ProductNumber": "D0001", "ProductSearchName": "MidRangeSpeaker2",
             "SearchName": "MidRangeSpeaker2", "SalesPrice": 230.0, "UnitCost": 120.0, "SalesUnitSymbol": "ea",
             "InventoryUnitSymbol": "ea", "ProductGroupId": "Audio"},
            {"ItemNumber": "D0003", "ProductNumber": "D0003", "ProductSearchName": "StandardSpeaker",
             "SearchName": "StandardSpeaker", "SalesPrice": 150.0, "UnitCost": 80.0, "SalesUnitSymbol": "ea",
             "InventoryUnitSymbol": "ea", "ProductGroupId": "Audio"},
            {"ItemNumber": "T0001", "ProductNumber": "T0001", "ProductSearchName": "SpeakerCable",
             "SearchName": "SpeakerCable", "SalesPrice": 12.5, "UnitCost": 4.0, "SalesUnitSymbol": "m",
             "InventoryUnitSymbol": "m", "ProductGroupId": "Cables"},
        ])
        self.seed(company, "VendorsV2", [
            {"VendorAccountNumber": "US-101", "VendorOrganizationName": "Fabrikam Electronics",
             "VendorGroupId": "10", "CurrencyCode": "USD", "AddressCity": "Chicago", "AddressStateId": "IL",
             "AddressCountryRegionId": "USA", "PrimaryEmailAddress": "sales@fabrikam.example"},
            {"VendorAccountNumber": "US-104", "VendorOrganizationName": "Litware Cables",
             "VendorGroupId": "10", "CurrencyCode": "USD", "AddressCity": "Austin", "AddressStateId": "TX",
             "AddressCountryRegionId": "USA"},
        ])
        return company

    # -- auth, throttling, faults ------------------------------------------------------------------------------

    async def token_endpoint(self, request: Request) -> Response:
        """``POST /{tenant}/oauth2/v2.0/token``, client credentials, as Entra ID answers (AADSTS codes)."""
        tenant = request.path_params["tenant"].lower()
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        if not any(app.tenant == tenant for app in self.apps.values()):
            return _entra_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return _entra_error(400, "unsupported_grant_type", 70003,
                                f"The app requested an unsupported grant type '{form.get('grant_type')}'.")
        app = self.apps.get((tenant, client_id))
        if app is None:
            return _entra_error(400, "unauthorized_client", 700016,
                                f"Application with identifier '{client_id}' was not found in the directory "
                                f"'{tenant}'.")
        if not client_secret or not secrets.compare_digest(client_secret, app.client_secret):
            return _entra_error(401, "invalid_client", 7000215,
                                "Invalid client secret provided. Ensure the secret being sent in the request is "
                                f"the client secret value, not the client secret ID, for a secret added to app "
                                f"'{client_id}'.")
        if form.get("scope") != f"{self.resource}/.default":
            return _entra_error(400, "invalid_scope", 70011,
                                f"The provided value for the input parameter 'scope' is not valid. The scope "
                                f"{form.get('scope')} is not valid.")
        lifetime = self.faults.token_ttl if self.faults.token_ttl is not None else ACCESS_TOKEN_LIFETIME
        value = secrets.token_urlsafe(48)
        self.tokens[value] = AccessToken(tenant, client_id, self.clock.now() + timedelta(seconds=lifetime))
        self.tokens_issued += 1
        return JSONResponse({"token_type": "Bearer", "expires_in": ACCESS_TOKEN_LIFETIME,
                             "ext_expires_in": ACCESS_TOKEN_LIFETIME, "access_token": value})

    def authenticate(self, request: Request) -> App:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise unauthorized(self.resource)
        token = self.tokens.get(value.strip())
        if token is None:
            raise unauthorized(self.resource, "The token is not valid")
        if token.expires_at <= self.clock.now():
            raise unauthorized(self.resource, "The token is expired")
        app = self.apps.get((token.tenant, token.client_id))
        if app is None or app.user_id is None:
            raise unauthorized(self.resource)   # not on F&O's Microsoft Entra applications page
        return app

    def injected_fault(self) -> ODataError | None:
        if self.faults.roll(self.faults.rate_limit):
            return _too_many(self.faults.retry_after, "This request could not be processed at this time due to "
                                                      "system experiencing high resource utilization.")
        if self.faults.roll(self.faults.server_error):
            if self.faults.rng.random() < 0.5:
                return ODataError(503, "Service Unavailable",
                                  headers={"Retry-After": str(max(1, math.ceil(self.faults.retry_after)))})
            return ODataError(500, "An error has occurred.", "Unexpected error in the AOS.",
                              inner_type="System.Exception")
        return None

    @asynccontextmanager
    async def throttle(self, principal: str) -> AsyncIterator[None]:
        """Per-user service protection: requests per 5-minute sliding window and concurrent requests."""
        now = self.clock.now()
        window = self._windows.setdefault(principal, deque())
        while window and window[0] <= now - timedelta(seconds=self.rate_window):
            window.popleft()
        if len(window) >= self.rate_limit:
            wait = (window[0] + timedelta(seconds=self.rate_window) - now).total_seconds() if window \
                else self.rate_window
            # (sic) "exeeded": Microsoft's message as documented.
            raise _too_many(wait, f"Number of requests exeeded the limit of {self.rate_limit} over the time "
                                  f"window of {int(self.rate_window)} seconds.")
        if self._inflight.get(principal, 0) >= self.max_concurrent:
            raise _too_many(1, f"Number of concurrent requests exceeded the limit of {self.max_concurrent}.")
        window.append(now)
        self._inflight[principal] = self._inflight.get(principal, 0) + 1
        try:
            await asyncio.sleep(0)
            yield
        finally:
            self._inflight[principal] -= 1


def _spec(entity: str) -> EntitySpec:
    if entity not in ENTITIES:
        raise KeyError(f"unknown entity set {entity!r}; one of {', '.join(ENTITIES)}")
    return ENTITIES[entity]


def _key_part(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return str(value or "").lower()


def _etag(spec: EntitySpec, row: StoredRow) -> str:
    return f"{spec.name[:2]}{row.version},{abs(hash(tuple(row.values.get(k) for k in spec.keys))) % 10**9}"


def _too_many(retry_after: float, message: str) -> ODataError:
    return ODataError(429, message, headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


def _entra_error(status: int, error: str, code: int, description: str) -> JSONResponse:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return JSONResponse({"error": error, "error_description": f"AADSTS{code}: {description} Trace ID: {trace} "
                                                              f"Correlation ID: {correlation} Timestamp: {stamp}",
                         "error_codes": [code], "timestamp": stamp, "trace_id": trace,
                         "correlation_id": correlation}, status_code=status)
