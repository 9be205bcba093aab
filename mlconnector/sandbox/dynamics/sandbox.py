"""``DynamicsSandbox``: the state behind the app (``app.state.dynamics``) and the plain-Python helpers tests use
to arrange it: register apps and users, create companies, seed and change rows, move the clock, count calls."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, AsyncIterator

import httpx

from mlconnector.sandbox.common import Faults, SandboxClock

from . import errors
from .api import ApiV2
from .api_journals import PaymentJournalsApi
from .auth import CREDENTIAL_TYPES, AppRegistration, Identity
from .dimensions import CUSTOMER_TABLE, DefaultDimensions
from .dimensions import SERVICE as DIMENSIONS_SERVICE
from .journals import CASH_RECEIPTS, JOURNAL_PAGES, SALES, Journals
from .nav import ODataV4Pages
from .odata import parse_datetime
from .schema import DEFAULT_PAGES, ENTITIES, RELATIONS_SERVICE, PageSpec
from .store import Company, ContactRelation, Database, StoredRow
from .webhooks import Delivery, WebhookSettings, Webhooks

DEFAULT_MAX_PAGE_SIZE = 20_000        # BC online max page size; on-prem ODataServicesMaxPageSize default
DEFAULT_RATE_LIMIT = 6_000            # requests per user per 5-minute sliding window (operational-limits-online.md)
DEFAULT_RATE_WINDOW = 300.0
DEFAULT_MAX_CONCURRENT = 5            # processed at once per user; more wait in the queue
DEFAULT_MAX_CONNECTIONS = 100         # processed + queued per user; beyond that: 429


@dataclass
class ApiCall:
    method: str
    form: str          # "token", "api" (cloud), "api-onprem", "odatav4" (cloud), "odatav4-onprem"
    path: str
    query: str
    principal: str | None = None
    status: int | None = None


class DynamicsSandbox:
    """One emulated Business Central / NAV deployment, reachable through all URL forms of the app."""

    def __init__(self, clock: SandboxClock | None = None, faults: Faults | None = None,
                 notify_transport: httpx.AsyncBaseTransport | None = None, debounce: float = 0.2) -> None:
        self.clock = clock or SandboxClock()
        self.faults = faults or Faults()
        self.db = Database(self.clock.now)
        self.identity = Identity(self.clock, self.faults)
        self.webhooks = Webhooks(self.clock, self.faults, self.db, notify_transport, WebhookSettings(debounce))
        self.nav_services: dict[str, PageSpec] = dict(DEFAULT_PAGES)
        # Page 5054 Contact Business Relations; None: not published.
        self.relations_service: str | None = RELATIONS_SERVICE
        self.environments: set[str] | None = None   # None: any environment name is accepted
        self.max_page_size = DEFAULT_MAX_PAGE_SIZE
        self.rate_limit = DEFAULT_RATE_LIMIT
        self.rate_window = DEFAULT_RATE_WINDOW
        self.max_concurrent = DEFAULT_MAX_CONCURRENT
        self.max_connections = DEFAULT_MAX_CONNECTIONS
        self.calls: list[ApiCall] = []
        self.api = ApiV2(self)
        self.pages = ODataV4Pages(self)
        self.journals = Journals(self._customer_numbers, lambda: self.clock.now().date(), self._invoice_settled)
        self.payment_journals = PaymentJournalsApi(self)   # API v2.0 customerPaymentJournals over the journals
        # Journal and ledger pages published (journals.py); ``unpublish_page`` takes one away.
        self.journal_services: set[str] = set(JOURNAL_PAGES)
        self.dimensions = DefaultDimensions()
        self.dimensions_service: str | None = DIMENSIONS_SERVICE   # page 540, published; None: not published
        self._windows: dict[str, deque[datetime]] = {}
        self._inflight: dict[str, int] = {}
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- setup ------------------------------------------------------------------------------------------------

    def register_app(self, tenant: str, client_id: str, client_secret: str, *, bc_enabled: bool = True) -> None:
        """An Entra app registration with a secret, also entered on BC's "Microsoft Entra Applications" page
        (``bc_enabled=False`` reproduces an app that gets tokens but is not set up in BC)."""
        self.identity.apps[(tenant.lower(), client_id)] = AppRegistration(tenant.lower(), client_id, client_secret,
                                                                           bc_enabled)

    def set_web_service_user(self, user_name: str, access_key: str) -> None:
        """A BC user with a web service access key, for Basic auth on-premises (credential type NavUserPassword)."""
        self.identity.web_service_users[user_name] = access_key

    @property
    def credential_type(self) -> str:
        return self.identity.credential_type

    @credential_type.setter
    def credential_type(self, value: str) -> None:
        if value not in CREDENTIAL_TYPES:
            raise ValueError(f"credential_type must be one of {', '.join(CREDENTIAL_TYPES)}")
        self.identity.credential_type = value

    def use_windows_authentication(self, enabled: bool = True) -> None:
        """On-prem server instance configured for Windows auth: Basic is answered 401 + WWW-Authenticate: Negotiate."""
        self.credential_type = "Windows" if enabled else "NavUserPassword"

    def create_company(self, name: str, *, company_id: str | None = None, display_name: str | None = None,
                       currency_code: str = "USD") -> str:
        """Creates a company and returns its id (GUID)."""
        return self.db.create_company(name, company_id=company_id, display_name=display_name,
                                      currency_code=currency_code).id

    def publish_page(self, service_name: str, page: str | PageSpec) -> None:
        """Publishes a page under a service name, e.g. ``publish_page("CustomerCard", "Customer")``."""
        self.nav_services[service_name] = DEFAULT_PAGES[page] if isinstance(page, str) else page

    def extend_table(self, entity: str, fields: dict[str, str]) -> None:
        """A table extension (an AL ``tableextension``), as a partner or the customer adds fields of their own to a
        standard table: ``{"industryCode": "string"}``. Pages show them once a page extension adds them
        (``extend_page``); the standard API v2.0 pages cannot be extended, so the API neither shows nor takes
        them (a custom API page would)."""
        self.db.extend_table(_entity(entity), fields)

    def extend_page(self, service_name: str, controls: dict[str, str]) -> None:
        """A page extension on a published page: controls (their names as the page web service shows them, e.g.
        ``"Industry_Code"``) bound to table fields (``"industryCode"``), readable and writable like the page's own."""
        page = self.nav_services[service_name]
        table = self.db.table_spec(page.entity_set)
        for control, source in controls.items():
            if source not in table.fields:
                raise ValueError(f"{page.entity_set} has no field {source!r}: extend_table() first")
            if control in dict(page.fields):
                raise ValueError(f"the {service_name} page already has a control {control!r}")
        self.nav_services[service_name] = replace(page, fields=page.fields + tuple(controls.items()))

    def unpublish_page(self, service_name: str) -> None:
        self.nav_services.pop(service_name, None)
        self.journal_services.discard(service_name)

    # -- journals and ledger entries (journals.py) ---------------------------------------------------------------

    def _customer_numbers(self, company_id: str) -> set[str]:
        return {str(r.values.get("number")) for r in self.db.company(company_id).table("customers").values()}

    def _invoice_settled(self, company_id: str, number: str, remaining: Any) -> None:
        """A posted sales invoice's remaining amount (and Paid once nothing remains) after a payment applied to it."""
        company = self.db.company(company_id)
        for row in company.table("salesInvoices").values():
            if row.values.get("number") == number and row.values.get("status") in ("Open", "Paid"):
                left = float(remaining)
                if row.values.get("remainingAmount") != left:
                    self.db.update(company, "salesInvoices", row, {"remainingAmount": left,
                                                                   "status": "Paid" if left == 0 else "Open"},
                                   trusted=True)

    def add_journal_batch(self, company: str, template: str, batch: str, *, template_type: str = CASH_RECEIPTS,
                          bal_account_type: str = "G_x002F_L_x0020_Account", bal_account_no: str = "") -> None:
        """A journal template (of type Sales or Cash Receipts) and a batch in it, with the batch's balancing
        account (EDM-encoded type: ``Bank_x0020_Account``); G/L and bank account numbers become known."""
        books = self.journals.of(self._company(company).id)
        books.templates.setdefault(template, template_type)
        books.batches[(template, batch)] = (bal_account_type, bal_account_no)
        if bal_account_no:
            (books.bank_accounts if bal_account_type == "Bank_x0020_Account" else books.gl_accounts).add(bal_account_no)

    def set_default_dimension(self, company: str, customer: str, code: str, value: str | None) -> None:
        """A customer's default dimension value (the customer card's Dimensions); None takes it away."""
        self.dimensions.set(self._company(company).id, CUSTOMER_TABLE, customer, code, value)

    def post_journal(self, company: str, template: str, batch: str) -> list[dict[str, Any]]:
        """Posts a journal batch as a NAV user's Post action does (raises ValueError with NAV's reason)."""
        return self.journals.post(self._company(company).id, template, batch)

    def journal_lines(self, company: str, template: str | None = None) -> list[dict[str, Any]]:
        books = self.journals.of(self._company(company).id)
        return [dict(line.values) for key, line in sorted(books.lines.items()) if template in (None, key[0])]

    def ledger_entries(self, company: str) -> list[dict[str, Any]]:
        return [dict(e) for e in self.journals.of(self._company(company).id).entries]

    @property
    def webhook_settings(self) -> WebhookSettings:
        return self.webhooks.settings

    # -- data -------------------------------------------------------------------------------------------------

    def _company(self, company: str) -> Company:
        try:
            return self.db.company(company)
        except KeyError:
            raise KeyError(f"no company {company!r}; create_company() first") from None

    def _row(self, company: Company, entity: str, ref: str) -> StoredRow:
        return self.db.find(company, _entity(entity), ref)

    def seed(self, company: str, entity: str, records: list[dict[str, Any]], *,
             notify: bool = False) -> list[dict[str, Any]]:
        """Inserts rows as BC users would have (read-only fields such as status/balance allowed). A record may
        carry ``lastModifiedDateTime``: a datetime/ISO string, or None for a row never stamped (0001-01-01).
        Documents may carry their lines (``salesOrderLines`` ...). Returns the rows as the API shows them."""
        target = self._company(company)
        spec_name = _entity(entity)
        out = []
        for record in records:
            values = dict(record)
            modified: Any = "now"
            if "lastModifiedDateTime" in values:
                stamp = values.pop("lastModifiedDateTime")
                modified = parse_datetime(stamp) if isinstance(stamp, str) else stamp
            row = self.db.create(target, spec_name, values, notify=notify, trusted=True, modified=modified,
                                 extended=True)
            out.append(self.db.to_api(spec_name, row, extended=True))
        return out

    def get(self, company: str, entity: str, ref: str) -> dict[str, Any]:
        """A row (by id or number) as the API shows it."""
        target = self._company(company)
        return self.db.to_api(_entity(entity), self._row(target, entity, ref), extended=True)

    def records(self, company: str, entity: str) -> list[dict[str, Any]]:
        target = self._company(company)
        spec_name = _entity(entity)
        return [self.db.to_api(spec_name, row, extended=True) for row in target.table(spec_name).values()]

    def modify(self, company: str, entity: str, ref: str, **changes: Any) -> dict[str, Any]:
        """Changes a row as a BC user would: new etag, new lastModifiedDateTime, webhook notification."""
        target = self._company(company)
        spec_name = _entity(entity)
        row = self._row(target, spec_name, ref)
        if ENTITIES[spec_name].header:
            self.db.update_line(target, spec_name, row, changes)
        else:
            self.db.update(target, spec_name, row, changes, trusted=True, extended=True)
        return self.db.to_api(spec_name, row, extended=True)

    def delete(self, company: str, entity: str, ref: str) -> None:
        target = self._company(company)
        spec_name = _entity(entity)
        self.db.delete(target, spec_name, self._row(target, spec_name, ref))

    def add_line(self, company: str, entity: str, ref: str, **values: Any) -> dict[str, Any]:
        """Adds a line to a document (the header is touched and notified, as in BC)."""
        target = self._company(company)
        spec_name = _entity(entity)
        header = self._row(target, spec_name, ref)
        line = self.db.insert_line(target, spec_name, header, values)
        return self.db.to_api(ENTITIES[spec_name].lines or "", line)

    def ship(self, company: str, order: str, *, share: float = 1.0, invoice: bool = False) -> dict[str, Any]:
        """Posts a shipment of a sales order as a NAV user does (Post > Ship, or Ship and Invoice): each line's
        shipped quantity (``share`` of its quantity; invoiced too with ``invoice``), the header's Fully Shipped."""
        target = self._company(company)
        header = self._row(target, "salesOrders", order)
        full = True
        for line in self.db.lines_of(target, "salesOrders", header.id):
            quantity = float(line.values.get("quantity") or 0)
            shipped = round(quantity * share, 5)
            full = full and shipped >= quantity
            changes = {"shippedQuantity": shipped, **({"invoicedQuantity": shipped} if invoice else {})}
            self.db.update_line(target, "salesOrderLines", line, changes)
        self.db.update(target, "salesOrders", header, {"fullyShipped": full}, trusted=True)
        return self.db.to_api("salesOrders", header)

    def post_invoice(self, company: str, ref: str) -> dict[str, Any]:
        """Posts a draft sales invoice: posted number (PS-INV...), status Open."""
        target = self._company(company)
        row = self._row(target, "salesInvoices", ref)
        self.db.post_invoice(target, row)
        return self.db.to_api("salesInvoices", row)

    def relate_contact(self, company: str, contact: str, link_to_table: str, related: str) -> None:
        """A Contact Business Relation: the (company) contact ``contact`` is the customer or vendor ``related``
        (by id or number), as BC records when a customer is created from a contact or linked to one."""
        target = self._company(company)
        if link_to_table not in ("Customer", "Vendor"):
            raise ValueError("link_to_table must be Customer or Vendor")
        contact_row = self._row(target, "contacts", contact)
        related_row = self._row(target, "customers" if link_to_table == "Customer" else "vendors", related)
        code = "CUST" if link_to_table == "Customer" else "VEND"
        target.relations.append(ContactRelation(contact_row.id, code, link_to_table, related_row.id))
        kinds = {r.link_to_table for r in target.relations if r.contact_id == contact_row.id}
        # A new dict, not an item set in place: a row's values are replaced whole, which kept orders notice.
        contact_row.values = {**contact_row.values,
                              "contactBusinessRelation": link_to_table if len(kinds) == 1 else "Multiple"}

    def clear_last_modified(self, company: str, entity: str, refs: list[str] | None = None) -> None:
        """Blanks SystemModifiedAt (rows from before BC stamped it read 0001-01-01T00:00:00Z) without
        notifying: the situation a connector's backfill path must handle."""
        target = self._company(company)
        spec_name = _entity(entity)
        rows = ([self._row(target, spec_name, ref) for ref in refs] if refs is not None
                else list(target.table(spec_name).values()))
        for row in rows:
            row.modified = None

    def seed_demo(self, name: str = "CRONUS USA, Inc.") -> str:
        """A small CRONUS-like company for demos: customers, vendors, contacts, items, an order, invoices."""
        company = self.create_company(name)
        # The setup tables customers point to (CRONUS's codes); the local currency (USD here) has no row.
        self.seed(company, "currencies", [{"code": "EUR", "displayName": "Euro", "symbol": "€",
                                                   "amountDecimalPlaces": "2:2", "amountRoundingPrecision": 0.01}])
        [days30, _] = self.seed(company, "paymentTerms", [
            {"code": "30 DAYS", "displayName": "Net 30 days", "dueDateCalculation": "30D"},
            {"code": "14 DAYS", "displayName": "Net 14 days", "dueDateCalculation": "14D"}])
        [bank] = self.seed(company, "paymentMethods", [{"code": "BANK", "displayName": "Bank Transfer"}])
        [exw] = self.seed(company, "shipmentMethods", [{"code": "EXW", "displayName": "Ex Works"}])
        terms = {"paymentTermsId": days30["id"], "paymentMethodId": bank["id"], "shipmentMethodId": exw["id"]}
        self.seed(company, "customers", [
            {"displayName": "Adatum Corporation", "addressLine1": "192 Market Square", "city": "Atlanta",
             "state": "GA", "country": "US", "postalCode": "31772", "email": "robert.townes@contoso.com",
             "phoneNumber": "+1 404 555 0100", **terms},
            {"displayName": "Trey Research", "addressLine1": "153 Thomas Drive", "city": "Chicago", "state": "IL",
             "country": "US", "postalCode": "61236", "email": "helen.ray@contoso.com"},
            {"displayName": "School of Fine Art", "addressLine1": "10 High Tower Green", "city": "Miami",
             "state": "FL", "country": "US", "postalCode": "37125", "email": "meagan.bond@contoso.com"},
        ])
        for number in ("C00010", "C00020", "C00030"):  # CRONUS's posting groups for customers at home
            self.modify(company, "customers", number, customerPostingGroup="DOMESTIC", genBusPostingGroup="DOMESTIC")
        self.seed(company, "vendors", [{"displayName": "Fabrikam, Inc.", "city": "Atlanta", "country": "US"},
                                       {"displayName": "First Up Consultants", "city": "Chicago", "country": "US"}])
        self.seed(company, "contacts", [
            {"number": "CT000010", "displayName": "Adatum Corporation", "type": "Company",
             "companyNumber": "CT000010", "companyName": "Adatum Corporation"},
            {"number": "CT000020", "displayName": "Robert Townes", "type": "Person", "companyNumber": "CT000010",
             "companyName": "Adatum Corporation", "email": "robert.townes@contoso.com"}])
        self.relate_contact(company, "CT000010", "Customer", "C00010")
        self.seed(company, "items", [
            {"number": "1896-S", "displayName": "ATHENS Desk", "unitPrice": 1000.8, "unitCost": 780.7,
             "inventory": 4},
            {"number": "1928-S", "displayName": "AMSTERDAM Lamp", "unitPrice": 54.9, "unitCost": 42.8,
             "inventory": 12},
            {"number": "1936-S", "displayName": "BERLIN Guest Chair, yellow", "unitPrice": 192.8, "unitCost": 150.4,
             "inventory": 9},
        ])
        self.seed(company, "salesOrders", [{"customerNumber": "C00010", "salesOrderLines": [
            {"lineObjectNumber": "1896-S", "quantity": 1}, {"lineObjectNumber": "1928-S", "quantity": 2}]}])
        lines = [{"lineObjectNumber": "1936-S", "quantity": 3}]
        self.seed(company, "salesInvoices", [{"customerNumber": "C00020", "salesInvoiceLines": lines},
                                             {"customerNumber": "C00030", "salesInvoiceLines": lines}])
        self.post_invoice(company, "S-INV102002")
        self.seed(company, "purchaseOrders", [{"vendorNumber": "V00010", "purchaseOrderLines": [
            {"lineObjectNumber": "1928-S", "quantity": 10}]}])
        # CRONUS's standard journals: sales (revenue account 6110) and cash receipts (into bank account WWB-OPERATING)
        self.add_journal_batch(company, "SALES", "DEFAULT", template_type=SALES, bal_account_no="6110")
        self.add_journal_batch(company, "CASHRCPT", "GENERAL", bal_account_type="Bank_x0020_Account",
                               bal_account_no="WWB-OPERATING")
        # the batches nav-zuora books Zuora invoices and payments in (its options' defaults)
        self.add_journal_batch(company, "SALES", "ZUORA", template_type=SALES, bal_account_no="6110")
        self.add_journal_batch(company, "CASHRCPT", "ZUORA", bal_account_type="Bank_x0020_Account",
                               bal_account_no="WWB-OPERATING")
        return company

    # -- time, webhooks and observation ------------------------------------------------------------------------

    def advance(self, **kwargs: float) -> None:
        """Moves sandbox time (token and subscription expiry), e.g. ``advance(days=3)``."""
        self.clock.advance(**kwargs)

    def subscriptions(self) -> list[dict[str, Any]]:
        return [sub.to_api() for sub in self.webhooks.all_live()]

    @property
    def deliveries(self) -> list[Delivery]:
        """Every notification POST attempted, with the receiver's status."""
        return self.webhooks.deliveries

    def wait_for_notifications(self, timeout: float = 5.0) -> bool:
        """Blocks until pending notifications are sent (call from the test thread, not the app's loop)."""
        return self.webhooks.wait_idle(timeout)

    def call_count(self, *, method: str | None = None, form: str | None = None,
                   path_contains: str | None = None) -> int:
        return sum(1 for call in self.calls
                   if (method is None or call.method == method) and (form is None or call.form == form)
                   and (path_contains is None or path_contains in call.path))

    def reset_calls(self) -> None:
        self.calls.clear()

    # -- request guard: faults, throttling --------------------------------------------------------------------

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            self._loop = loop
            self._semaphores.clear()   # asyncio primitives belong to one loop
        self.webhooks.attach_loop(loop)

    def injected_fault(self) -> errors.ODataError | None:
        """Fault injection, rolled before authentication as a gateway would fail."""
        if self.faults.roll(self.faults.rate_limit):
            return _too_many(self.faults.retry_after, "Too many requests reached.")
        if self.faults.roll(self.faults.server_error):
            if self.faults.rng.random() < 0.5:
                # 502/503 carry Retry-After (include-http-status-error-codes.md).
                return errors.ODataError(503, "Unknown", "Service Temporarily Unavailable",
                                         {"Retry-After": str(max(1, math.ceil(self.faults.retry_after)))})
            return errors.ODataError(500, "Internal_ServerError",
                                     "Cannot establish a connection to the SQL Server/Database.")
        return None

    @asynccontextmanager
    async def throttle(self, principal: str) -> AsyncIterator[None]:
        """Per-user limits: requests per sliding window, then concurrent processing with a bounded queue."""
        now = self.clock.now()
        window = self._windows.setdefault(principal, deque())
        cutoff = now - timedelta(seconds=self.rate_window)
        while window and window[0] <= cutoff:
            window.popleft()
        if len(window) >= self.rate_limit:
            wait = (window[0] + timedelta(seconds=self.rate_window) - now).total_seconds()
            raise _too_many(wait, f"Too many requests reached. Actual ({len(window) + 1}). "
                                  f"Maximum ({self.rate_limit}).")
        window.append(now)
        if self._inflight.get(principal, 0) >= self.max_connections:
            raise _too_many(1, f"Too many requests reached. Actual ({self._inflight[principal] + 1}). "
                               f"Maximum ({self.max_connections}).")
        self._inflight[principal] = self._inflight.get(principal, 0) + 1
        semaphore = self._semaphores.setdefault(principal, asyncio.Semaphore(self.max_concurrent))
        try:
            async with semaphore:
                yield
        finally:
            self._inflight[principal] -= 1


def _entity(name: str) -> str:
    if name not in ENTITIES:
        raise KeyError(f"unknown entity set {name!r}; one of {', '.join(ENTITIES)}")
    return name


def _too_many(retry_after: float, message: str) -> errors.ODataError:
    return errors.ODataError(429, "Application_TooManyRequests", message,
                             {"Retry-After": str(max(1, math.ceil(retry_after)))})
