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
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets as secrets_module
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
from filelock import FileLock

from mlconnector.auth import SecretTokenCache, Token, TokenAuth, utcnow
from mlconnector import jsonfile
from mlconnector.config import SystemConfig
from mlconnector.errors import (
    EXIT_AUTH,
    EXIT_CONFIG,
    EXIT_UNREACHABLE,
    AuthError,
    ConfigError,
    MLConnectorError,
    NotificationRejected,
    RemoteError,
    Unreachable,
)
from mlconnector.http import ApiClient, RetryPolicy, json_body, last_member, stream_array
from mlconnector.systems import ConnectorContext, register_kind
from mlconnector.systems.dynamics_journals import JOURNAL_SERVICES, JournalRefused, JournalWriter, check_mode
from mlconnector.systems.base import (Capabilities, Channel, ConnectorBase, Notification, PingResult, Record,
                                     WriteResult, write_each)

KINDS = ("bc", "nav")
BC_SCOPE = "https://api.businesscentral.dynamics.com/.default"
CLOUD_ROOT = "https://api.businesscentral.dynamics.com/v2.0"
AUTHORITY = "https://login.microsoftonline.com"
BLANK_DATETIME = "0001-01-01T00:00:00Z"
DEFAULT_PAGE_SIZE = 1000
# Customer and vendor numbers kept for friendlier messages about contacts (see _number_of): enough for those,
# without holding 100,000 of them through a first load.
MAX_NUMBERS_KEPT = 10_000
# A whole read with pages of at least this many rows starts with smaller pages (_pages).
RAMP_FROM = 5_000
DEFAULT_DOCUMENT_PAGE_SIZE = 2000  # pages of documents with their lines on a first read (memory)
DEFAULT_CONCURRENCY = 5            # BC processes 5 requests per user at once; more only wait in its queue
SUBSCRIPTION_DAYS = 3

# The entities the pairs use -> (API v2.0 entity set, its lines navigation, extra filter).
API_ENTITIES: dict[str, tuple[str, str | None, str | None]] = {
    "customers": ("customers", None, None),
    "vendors": ("vendors", None, None),
    "contacts": ("contacts", None, None),
    "items": ("items", None, None),
    "salesOrders": ("salesOrders", "salesOrderLines", None),
    "salesInvoices": ("salesInvoices", "salesInvoiceLines", None),
    # Posted invoices are salesInvoices past Draft / In Review (BC shows posted ones as Open, Paid ...).
    "postedSalesInvoices": ("salesInvoices", "salesInvoiceLines", "status ne 'Draft' and status ne 'In Review'"),
    "purchaseOrders": ("purchaseOrders", "purchaseOrderLines", None),
}
# Entities BC can push (contacts and purchaseOrders are not webhook-enabled: they are polled).
PUSH_ENTITIES = ("customers", "vendors", "items", "salesOrders", "postedSalesInvoices")
WRITABLE = ("customers", "vendors", "contacts", "items")
# Fields we never send: BC computes them.
READ_ONLY = frozenset({"id", "lastModifiedDateTime", "relations", "businessRelation", "balanceDue", "balance",
                       "inventory", "contactBusinessRelation"})

# -- NAV page web services ------------------------------------------------------------------------------------
DEFAULT_SERVICES = {"customers": "Customer", "vendors": "Vendor", "contacts": "Contact", "items": "Item",
                    "salesOrders": "SalesOrder", "postedSalesInvoices": "PostedSalesInvoice",
                    "purchaseOrders": "PurchaseOrder", "contactRelations": "ContactBusinessRelations",
                    "customerDimensions": "DefaultDimensions"}
# Document pages are keyed by (Document Type, No.); card pages by No.
DOCUMENT_TYPE = {"salesOrders": "Order", "purchaseOrders": "Order"}
# The lines subpage navigation is the service name plus the part's control name (SalesOrder + SalesLines).
DEFAULT_LINE_PARTS = {"salesOrders": "SalesLines", "postedSalesInvoices": "SalesInvLines"}
LAST_DATE_MODIFIED = "Last_Date_Modified"
CARD_ENTITIES = ("customers", "vendors", "contacts", "items")
# Posted documents on pages carry no modification date, but a posted document changes only in what NAV computes
# (Closed, Cancelled): between whole reads, only those posted since the last read are asked for.
POSTING_DATE_FIELDS = {"postedSalesInvoices": "Posting_Date"}
DEFAULT_POSTED_FULL_READ_HOURS = 24

_ADDRESS = {"Address": "addressLine1", "Address_2": "addressLine2", "City": "city", "County": "state",
            "Post_Code": "postalCode", "Country_Region_Code": "country", "Phone_No": "phoneNumber",
            "E_Mail": "email", "Home_Page": "website"}
# Page control (EDM name) -> API v2.0 field, per entity; what is not listed keeps its page name.
PAGE_FIELDS: dict[str, dict[str, str]] = {
    "customers": {"No": "number", "Name": "displayName", **_ADDRESS, "Currency_Code": "currencyCode",
                  "Salesperson_Code": "salespersonCode", "Credit_Limit_LCY": "creditLimit",
                  "Balance_LCY": "balanceDue", "Blocked": "blocked", "VAT_Registration_No": "taxRegistrationNumber"},
    "vendors": {"No": "number", "Name": "displayName", **_ADDRESS, "Currency_Code": "currencyCode",
                "Balance_LCY": "balance", "Blocked": "blocked", "VAT_Registration_No": "taxRegistrationNumber"},
    "contacts": {"No": "number", "Type": "type", "Name": "displayName", "Company_No": "companyNumber",
                 "Company_Name": "companyName", "Job_Title": "jobTitle", **_ADDRESS,
                 "Mobile_Phone_No": "mobilePhoneNumber"},
    "items": {"No": "number", "Description": "displayName", "Type": "type",
              "Base_Unit_of_Measure": "baseUnitOfMeasureCode", "Unit_Price": "unitPrice", "Unit_Cost": "unitCost",
              "Inventory": "inventory", "Blocked": "blocked", "Item_Category_Code": "itemCategoryCode"},
    "salesOrders": {"No": "number", "Sell_to_Customer_No": "customerNumber",
                    "Sell_to_Customer_Name": "customerName", "External_Document_No": "externalDocumentNumber",
                    "Order_Date": "orderDate", "Posting_Date": "postingDate", "Currency_Code": "currencyCode",
                    "Status": "status", "Document_Type": "documentType"},
    "postedSalesInvoices": {"No": "number", "Sell_to_Customer_No": "customerNumber",
                            "Sell_to_Customer_Name": "customerName",
                            "External_Document_No": "externalDocumentNumber", "Posting_Date": "postingDate",
                            "Due_Date": "dueDate", "Currency_Code": "currencyCode", "Order_No": "orderNumber",
                            "Amount": "totalAmountExcludingTax", "Amount_Including_VAT": "totalAmountIncludingTax",
                            "Remaining_Amount": "remainingAmount"},
    "purchaseOrders": {"No": "number", "Buy_from_Vendor_No": "vendorNumber",
                       "Buy_from_Vendor_Name": "vendorName", "Order_Date": "orderDate",
                       "Posting_Date": "postingDate", "Currency_Code": "currencyCode", "Status": "status",
                       "Document_Type": "documentType"},
}
# Controls of the standard card pages that API v2.0 has no property for: they keep their page names in records
# (Customer card, page 21: "Bill-to Customer No."; API v2.0's customer resource has no bill-to customer).
PAGE_ONLY_FIELDS: dict[str, tuple[str, ...]] = {"customers": ("Bill_to_Customer_No",)}
LINE_FIELDS = {"Type": "lineType", "No": "lineObjectNumber", "Description": "description", "Quantity": "quantity",
               "Unit_of_Measure_Code": "unitOfMeasureCode", "Unit_Price": "unitPrice",
               "Direct_Unit_Cost": "directUnitCost", "Line_Discount_Percent": "discountPercent",
               "Line_Discount_Amount": "discountAmount", "Line_Amount": "amountExcludingTax",
               "Line_No": "sequence", "Document_No": "documentId", "Quantity_Shipped": "shippedQuantity",
               "Quantity_Invoiced": "invoicedQuantity"}
# Sales Header Status as the page shows it -> the API's salesOrder status (Open is still a draft there).
DOCUMENT_STATUS = {"Open": "Draft", "Released": "Open", "Pending_Approval": "In Review",
                   "Pending_Prepayment": "Open"}
# BC's 409s that mean "try again" (a lock or deadlock), unlike Request_EntityChanged.
# What a validation token may hold: printable ASCII, no spaces or markup, as BC's (a GUID or base64) are.
_VALIDATION_TOKEN = re.compile(r"[A-Za-z0-9._~+/=:-]{1,1024}")
_TRANSIENT_409 = re.compile(r"deadlock|locked by another user|lock(ing)? timeout|Internal_LockTimeout", re.I)
_RESOURCE_RE = re.compile(r"companies\(([0-9a-fA-F-]{36})\)/(\w+)(?:\(([^)]*)\))?")
_COMPANY_IN_URL = re.compile(r"companies\(([0-9a-fA-F-]{36})\)")
_FILTER_TIME_RE = re.compile(r"lastModifiedDateTime\s+(?:gt|ge)\s+([0-9T:.\-+Z]+)", re.I)


def register() -> None:
    for kind in KINDS:
        register_kind(kind, DynamicsConnector)


# -- small helpers --------------------------------------------------------------------------------------------

def odata_time(moment: datetime, *, up: bool = False) -> str:
    """A DateTimeOffset literal in UTC with milliseconds, BC's precision. Rounded down for a lower bound (``ge``
    keeps a row stamped in the same millisecond) and up for an upper bound (``lt`` keeps it too)."""
    moment = moment.astimezone(timezone.utc)
    micro = moment.microsecond
    moment = moment.replace(microsecond=micro // 1000 * 1000)
    if up and micro % 1000:
        moment += timedelta(milliseconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(value: Any) -> datetime | None:
    """lastModifiedDateTime (or a Date) as aware UTC; BC's blank 0001-01-01 means "never stamped": None."""
    if not value or not isinstance(value, str) or value.startswith("0001-01-01"):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _quote_key(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"




def _error(response: httpx.Response) -> tuple[str, str]:
    """BC's {"error": {"code", "message"}} without the trailing CorrelationId noise."""
    body = json_body(response)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    message = re.sub(r"\s*CorrelationId:\s*[0-9a-fA-F-]+\.?\s*$", "", str(error.get("message") or ""))
    return str(error.get("code") or ""), message


def _is_transient(response: httpx.Response) -> bool:
    """A 409 from a table lock or deadlock is worth sending again; a stale ETag (Request_EntityChanged) is not."""
    if response.status_code != 409:
        return False
    code, message = _error(response)
    return code != "Request_EntityChanged" and bool(_TRANSIENT_409.search(f"{code} {message}"))


def _challenges(response: httpx.Response) -> set[str]:
    header = ",".join(response.headers.get_list("www-authenticate"))
    return {part.strip().split(" ")[0].lower() for part in header.split(",") if part.strip()}


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(row)
    for key in [k for k in data if k[:1] == "@"]:  # cheaper than testing every key's prefix
        if key.startswith("@odata."):
            del data[key]
    return data


def _nav_value(value: Any) -> Any:
    """Option values travel XML-encoded in page web services (" " -> "_x0020_")."""
    if isinstance(value, str) and "_x0020_" in value:
        return value.replace("_x0020_", " ")
    return value


@lru_cache(maxsize=4096)
def _day_end(day: str) -> datetime | None:
    """``_end_of_day``, once per date: a page of cards shares a few hundred dates among thousands of rows."""
    return _end_of_day(day)


@lru_cache(maxsize=4096)
def _isoformat(moment: datetime) -> str:
    return moment.isoformat()


# What a read fills in that the record itself does not hold: a page's stamp, capped at the read's end, and the
# relations a read of contacts joins in (a write's answer has neither).
NOT_STORED = frozenset({"lastModifiedDateTime", "relations", "businessRelation"})


def _business_relation(relations: list[dict[str, Any]]) -> dict[str, Any]:
    """A contact's first customer or vendor ({type, id}) as ``businessRelation``: what a write names to put a person
    contact under that customer's or vendor's company contact, so a contact read back holds what was written."""
    return {"businessRelation": {"type": relations[0]["type"], "id": str(relations[0]["id"])}} if relations else {}


def _as_stored(record: Record) -> Record:
    """The record a write's answer describes, as WriteResult.stored: its fields but those a read fills in."""
    return Record(record.system, record.entity, record.id, record.modified,
                  {k: v for k, v in record.data.items() if k not in NOT_STORED})


def _end_of_day(day: str) -> datetime | None:
    moment = parse_time(day)
    if moment is None:
        return None
    return moment.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1) - timedelta(milliseconds=1)


# -- the company id, remembered across runs -----------------------------------------------------------------------

# (record file, API root, company name) -> company id, for the life of this process.
_KNOWN_COMPANIES: dict[tuple[str, str, str], str] = {}
_KNOWN_LOCK = threading.Lock()


def company_record_path(context: ConnectorContext, system: str) -> Path:
    """Where a system's company id is kept between runs: a small JSON record next to the state file in use."""
    if context.state_dir is not None:
        return context.state_dir / f"dynamics-{system}-company.json"
    from mlconnector.state import default_state_path

    return default_state_path().parent / f"dynamics-{system}-company.json"


class CompanyRecord:
    """The id API v2.0 gave the configured company, by API root and company name: the id does not change while
    the company lives, so a run need not ask for it again. Only ids and names are kept, never a credential; a
    record that cannot be read or written only costs the lookup."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = FileLock(str(path) + ".lock", timeout=10)

    @staticmethod
    def _key(root: str, company: str) -> str:
        return f"{root} {company}"

    def get(self, root: str, company: str) -> str | None:
        with _KNOWN_LOCK:
            known = _KNOWN_COMPANIES.get((str(self.path), root, company))
        if known:
            return known
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        found = data.get(self._key(root, company)) if isinstance(data, dict) else None
        if not isinstance(found, str) or not re.fullmatch(r"[0-9a-fA-F-]{36}", found):
            return None
        with _KNOWN_LOCK:
            _KNOWN_COMPANIES[(str(self.path), root, company)] = found
        return found

    def put(self, root: str, company: str, company_id: str | None) -> None:
        """Remember ``company_id`` (None: forget it)."""
        with _KNOWN_LOCK:
            if company_id is None:
                _KNOWN_COMPANIES.pop((str(self.path), root, company), None)
            else:
                _KNOWN_COMPANIES[(str(self.path), root, company)] = company_id
        try:
            with jsonfile.edited(self.path, self._lock) as data:
                if company_id is None:
                    data.pop(self._key(root, company), None)
                else:
                    data[self._key(root, company)] = company_id
        except OSError:
            pass  # the next run looks the company up again


def _company_not_found(response: httpx.Response) -> bool:
    """BC's answer for a company id it does not have (the company was deleted or recreated)."""
    if response.status_code not in (400, 404):
        return False
    code, message = _error(response)
    return code == "Internal_CompanyNotFound" or (
        response.status_code == 404 and bool(re.search(r"\bcompany\b.*\b(not|no longer)\b", message, re.I)))


# -- authentication -------------------------------------------------------------------------------------------

class NegotiateAuth(httpx.Auth):
    """Windows authentication (Negotiate, falling back to NTLM) through pyspnego: answers the server's 401
    challenge and steps the context until the server accepts or stops sending tokens."""

    requires_response_body = True

    def __init__(self, user: str | None, password: str | None) -> None:
        self.user = user
        self.password = password

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        response = yield request
        offered = _challenges(response)
        if response.status_code != 401 or not offered & {"negotiate", "ntlm"}:
            return
        import spnego  # imported here: only Windows-authenticated servers need it

        scheme = "Negotiate" if "negotiate" in offered else "NTLM"
        context = spnego.client(self.user, self.password, hostname=request.url.host, service="HTTP",
                                protocol=scheme.lower())
        out = context.step()
        for _ in range(4):  # Negotiate/NTLM finish in two or three legs
            if not out:
                return
            request.headers["Authorization"] = f"{scheme} {base64.b64encode(out).decode()}"
            response = yield request
            header = next((h for h in response.headers.get_list("www-authenticate")
                           if h.lower().startswith(scheme.lower() + " ")), None)
            if response.status_code != 401 or header is None or context.complete:
                return
            out = context.step(base64.b64decode(header.split(" ", 1)[1].strip()))


@dataclass(frozen=True)
class Endpoint:
    """Where the system answers: its root (``.../v2.0/{tenant}/{env}`` or ``http://host:7048/Instance``) and
    whether records come from API v2.0 or from page web services."""

    root: str
    mode: str  # "api" | "odata"
    on_premises: bool

    @property
    def api(self) -> str:
        return f"{self.root}/api/v2.0"

    @property
    def odata(self) -> str:
        return f"{self.root}/ODataV4"


def endpoint_of(system: SystemConfig) -> Endpoint:
    base = system.setting("base_url", type_=str)
    if system.kind == "bc":
        if base:
            # The cloud form is .../v2.0/{tenant}/{environment}; an on-prem root is http(s)://host:port/instance.
            return Endpoint(base.rstrip("/"), "api", "/v2.0/" not in urlsplit(base).path)
        tenant = system.setting("tenant", required=True, type_=str)
        environment = system.setting("environment", "production", type_=str)
        return Endpoint(f"{CLOUD_ROOT}/{tenant}/{environment}", "api", False)
    if not base:
        raise ConfigError(f"systems.{system.name}.base_url is missing: the server instance's OData address, "
                          "e.g. http://nav-server:7048/DynamicsNAV110")
    mode = system.setting("api", "odata", type_=str)
    if mode not in ("odata", "api"):
        raise ConfigError(f"systems.{system.name}.api must be \"odata\" (page web services) or \"api\" (API v2.0)")
    return Endpoint(base.rstrip("/"), mode, True)


class DynamicsConnector(ConnectorBase):
    """The NAV / Business Central connector: see the module docstring for its settings."""

    capabilities = Capabilities(push=True, read_ahead=True, counts=True)

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
        self._sleep = sleep
        self.token_http: ApiClient | None = None
        self.auth = self._make_auth()
        self.http = ApiClient(self.name, auth=self.auth, transport=context.transport, counter=context.counter,
                              max_concurrency=int(system.setting("concurrency", DEFAULT_CONCURRENCY, type_=int)),
                              is_retryable=_is_transient, sleep=sleep,
                              headers={"Accept": "application/json", "Data-Access-Intent": "ReadWrite"})
        self._company_id: str | None = None
        # The id came from an earlier run's record, not yet confirmed by this run: a company-not-found answer
        # then means a stale record, looked up again once.
        self._company_remembered = False
        self._company_lock = threading.Lock()
        self.company_record = CompanyRecord(company_record_path(context, self.name))
        self._numbers: dict[tuple[str, str], str] = {}
        # Whether a read asks for its next page while this one's rows are taken (the engine turns it off for a
        # first load written in bulk jobs, which holds a whole job's records: one page less in memory).
        self.pages_ahead = True
        # Whether a read asks for its row count with its first page ($count=true, no call of its own): the engine
        # turns it on where a progress bar can show a total (see ``counted``).
        self.count_rows = False
        self._counts: dict[str, int] = {}
        self._page_reader: ThreadPoolExecutor | None = None
        self._page_reader_lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------------------------------------------
    def _make_auth(self) -> httpx.Auth:
        if self.auth_kind == "entra":
            self.client_id = self.system.setting("client_id", required=True, type_=str)
            tenant = self.system.setting("tenant", required=True, type_=str)
            authority = str(self.system.setting("authority", AUTHORITY, type_=str)).rstrip("/")
            self.token_url = self.system.setting("token_url", f"{authority}/{tenant}/oauth2/v2.0/token", type_=str)
            self.token_http = ApiClient(self.name, transport=self.context.transport, counter=self.context.counter,
                                        sleep=self._sleep)
            return TokenAuth(self._mint, SecretTokenCache(self.context.secrets, self.name))
        user = self.system.setting("user", type_=str)
        if self.auth_kind == "windows":
            password = self.context.secrets.get(self.name, "password") if user else None
            return NegotiateAuth(user, password)
        if not user:
            raise ConfigError(f"systems.{self.name}.user is missing: the BC user whose web service access key "
                              f"you stored with `mlconnector secrets set {self.name} password`")
        return httpx.BasicAuth(user, self.context.secrets.require(self.name, "password"))

    def _mint(self, current: Token | None) -> Token:
        assert self.token_http is not None
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.context.secrets.require(self.name, "client_secret"),
                "scope": self.system.setting("scope", BC_SCOPE, type_=str)}
        response = self.token_http.request("POST", self.token_url, data=form)
        body = json_body(response)
        if response.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
            seconds = float(body.get("expires_in") or 3599)
            return Token(str(body["access_token"]), utcnow() + timedelta(seconds=seconds))
        if response.status_code >= 500 or not isinstance(body, dict):
            raise RemoteError(self.name, response.status_code, message=f"token endpoint {self.token_url} failed")
        raise AuthError(self.name, self._token_refusal(body))

    def _token_refusal(self, body: Mapping[str, Any]) -> str:
        codes = body.get("error_codes") or []
        code = int(codes[0]) if codes else 0
        error = str(body.get("error") or "error")
        hints = {
            7000215: f"client secret refused; store the secret's value (not its id) with "
                     f"`mlconnector secrets set {self.name} client_secret`",
            7000222: f"client secret expired; create a new one and store it with "
                     f"`mlconnector secrets set {self.name} client_secret`",
            700016: f"client_id {self.client_id} is not an app registration in this tenant; check client_id "
                    "and tenant",
            90002: "tenant not found; check tenant (the directory id or its domain)",
            70011: "scope refused; leave scope unset (https://api.businesscentral.dynamics.com/.default)",
        }
        return hints.get(code, f"Entra ID refused the token request ({error}, AADSTS{code})")

    def close(self) -> None:
        if self._page_reader is not None:
            self._page_reader.shutdown(wait=False, cancel_futures=True)
        self.http.close()
        if self.token_http is not None:
            self.token_http.close()

    @property
    def base_url(self) -> str:
        return self.endpoint.api if self.endpoint.mode == "api" else self.endpoint.odata

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request; a refused credential becomes an AuthError that says what the server expects. A company id
        remembered from an earlier run that BC no longer knows is looked up again and the request sent once more."""
        response = self._send(method, url, **kwargs)
        if self.endpoint.mode == "api" and _company_not_found(response):
            used = self._company_in(url, kwargs)
            fresh = self._refresh_company(used) if used else None
            if used and fresh and fresh != used:
                kwargs = self._with_company(kwargs, used, fresh)
                response = self._send(method, url.replace(f"companies({used})", f"companies({fresh})"), **kwargs)
        return response

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, url, **kwargs)
        if response.status_code == 401:
            raise AuthError(self.name, self._refusal(response))
        return response

    @staticmethod
    def _company_in(url: str, kwargs: Mapping[str, Any]) -> str | None:
        """The company id a request names: in its URL, or in a subscription body's resource."""
        body = kwargs.get("json")
        resource = body.get("resource") if isinstance(body, Mapping) else None
        for text in (url, resource if isinstance(resource, str) else ""):
            match = _COMPANY_IN_URL.search(text)
            if match:
                return match.group(1)
        return None

    @staticmethod
    def _with_company(kwargs: dict[str, Any], stale: str, fresh: str) -> dict[str, Any]:
        """A subscription body names the company in its resource."""
        body = kwargs.get("json")
        if isinstance(body, Mapping):
            kwargs = {**kwargs, "json": {k: v.replace(f"companies({stale})", f"companies({fresh})")
                                         if isinstance(v, str) else v for k, v in body.items()}}
        return kwargs

    def _refusal(self, response: httpx.Response) -> str:
        offered = _challenges(response)
        if self.auth_kind != "windows" and offered & {"negotiate", "ntlm"} and "basic" not in offered \
                and "bearer" not in offered:
            return "server expects Windows authentication; set auth = \"windows\" (user DOMAIN\\name and its " \
                   f"password via `mlconnector secrets set {self.name} password`)"
        if self.auth_kind == "windows":
            if "basic" in offered:
                return "server expects Basic authentication (credential type NavUserPassword); set auth = " \
                       f"\"basic\" and store the web service access key with `mlconnector secrets set " \
                       f"{self.name} password`"
            return "Windows authentication refused; check user (DOMAIN\\name) and its password"
        if self.auth_kind == "entra":
            return "Business Central refused the access token: register the app on BC's \"Microsoft Entra " \
                   "Applications\" page (client id, State = Enabled, permission sets) and check tenant/environment"
        if "bearer" in offered and "basic" not in offered:
            return "server expects Entra ID tokens (BC online no longer takes web service access keys); set " \
                   "auth = \"entra\" with tenant and client_id"
        return f"user {self.system.setting('user', '', type_=str)!r} or its web service access key was refused; " \
               f"store the key with `mlconnector secrets set {self.name} password` (the server's credential " \
               "type must be NavUserPassword)"

    def _fail(self, response: httpx.Response, what: str) -> RemoteError:
        code, message = _error(response)
        return RemoteError(self.name, response.status_code, code, f"{what}: {message}" if message else what,
                           retryable=response.status_code >= 500)

    # -- company -----------------------------------------------------------------------------------------------
    def company_id(self) -> str:
        """API mode: the company's id, resolved by its (case-sensitive) name; an id in ``company`` is used as is.
        The id found is remembered next to the state file, so later runs (and connectors) skip the lookup."""
        if self._company_id is None:
            with self._company_lock:
                if self._company_id is not None:
                    return self._company_id
                if re.fullmatch(r"[0-9a-fA-F-]{36}", self.company_name):
                    self._company_id = self.company_name.lower()
                    return self._company_id
                remembered = self.company_record.get(self.endpoint.api, self.company_name)
                if remembered:
                    self._company_remembered = True
                    self._company_id = remembered
                else:
                    self._company_id = self._lookup_company()
        return self._company_id

    def _lookup_company(self) -> str:
        response = self._send("GET", f"{self.endpoint.api}/companies")
        if response.status_code != 200:
            raise self._api_unavailable(response, "companies")
        names = {str(c.get("name")): str(c.get("id")) for c in response.json().get("value", [])}
        if self.company_name not in names:
            raise ConfigError(self._company_hint(list(names)))
        found = names[self.company_name]
        self.company_record.put(self.endpoint.api, self.company_name, found)
        return found

    def _refresh_company(self, used: str) -> str | None:
        """BC does not know the company id ``used``. If it is the one remembered from an earlier run, forget it
        and look the company up again, once per connector; concurrent calls that met the same answer share that
        lookup. Returns the id to use now (``used`` itself when there is nothing better to try)."""
        with self._company_lock:
            if self._company_remembered and self._company_id == used:
                self._company_remembered = False
                self.company_record.put(self.endpoint.api, self.company_name, None)
                self._company_id = None
                self._company_id = self._lookup_company()
            return self._company_id

    def _company_hint(self, names: list[str]) -> str:
        close = [n for n in names if n.lower() == self.company_name.lower()]
        if close:
            return (f"systems.{self.name}.company = {self.company_name!r} does not exist; company names are "
                    f"case-sensitive: did you mean {close[0]!r}?")
        return (f"systems.{self.name}.company = {self.company_name!r} does not exist; companies there: "
                f"{', '.join(repr(n) for n in names) or 'none'}")

    def _api_unavailable(self, response: httpx.Response, what: str) -> MLConnectorError:
        if response.status_code == 405:
            return RemoteError(self.name, 405, "BadRequest_MethodNotAllowed",
                               "API/OData services are disabled on the server instance: enable ODataServicesEnabled"
                               " and ApiServicesEnabled")
        if response.status_code == 404 and not _error(response)[0]:
            return RemoteError(self.name, 404, "", f"nothing answers at {self.base_url} ({what}); check base_url "
                               "(server instance name) and that API services are enabled")
        return self._fail(response, f"GET {what}")

    def company_url(self) -> str:
        if self.endpoint.mode == "api":
            return f"{self.endpoint.api}/companies({self.company_id()})"
        name = quote(self.company_name.replace("'", "''"), safe="")
        return f"{self.endpoint.odata}/Company('{name}')"

    # -- reads -------------------------------------------------------------------------------------------------
    def _spec(self, entity: str) -> tuple[str, str | None, str | None]:
        try:
            return API_ENTITIES[entity]
        except KeyError:
            raise ConfigError(f"{self.name}: unknown entity {entity!r}; known: {', '.join(API_ENTITIES)}") from None

    def counted(self, entity: str) -> int | None:
        """How many rows the read of ``entity`` under way will give, as its first page said (``count_rows``)."""
        return self._counts.get(entity)

    def _pages(self, url: str, params: dict[str, str] | None, page_size: int | None = None, *,
               ramp: bool = False, count_as: str | None = None) -> Iterator[dict[str, Any]]:
        """Every row of a collection, page by page: ``Prefer: odata.maxpagesize`` and ``@odata.nextLink`` verbatim
        (never $top, which drops the link). With ``ramp`` (a whole table read) the first pages are smaller (a
        tenth, then twice as many each time, up to the page size): the first rows come in a fraction of the time a
        full page takes the server to build and send, and each next page, asked for as the one before it comes,
        arrives before that one is written (a page four times larger left the writes waiting for it)."""
        full = page_size or self.page_size
        size = full // 10 if ramp and self.small_first_pages and full >= RAMP_FROM else full
        next_url: str | None = url
        if count_as and self.count_rows:
            params = {**(params or {}), "$count": "true"}
            self._counts.pop(count_as, None)
        ahead: tuple[str, Future[httpx.Response]] | None = None
        while next_url:
            headers = {"Prefer": f"odata.maxpagesize={size}"}
            size = min(full, size * 2)
            if ahead is not None and ahead[0] == next_url:
                response = ahead[1].result()
            else:
                response = self._call("GET", next_url, params=params, headers=headers)
            ahead = None
            if response.status_code != 200:
                raise self._read_failure(response, url)
            # A page is parsed row by row as the rows are taken, from its text (the raw body goes at once): parsed
            # whole, a page of 10,000 wide rows took several times its size in memory.
            text = response.content.decode("utf-8-sig")
            del response
            # The next page is asked for now, while this one's rows are taken: its round trip and the server's
            # work overlap ours instead of stalling the run at every page boundary. Not where smaller pages were
            # asked for to save memory (a first read of documents with their lines): two of those in memory
            # took a first load over its budget.
            hint = last_member(text, "@odata.nextLink") if self.pages_ahead and page_size is None else None
            if hint:
                ahead = (hint, self._reader().submit(self._call, "GET", hint,
                                                     headers={"Prefer": f"odata.maxpagesize={size}"}))
            rest: dict[str, Any] = {}
            for row in stream_array(text, "value", rest):
                if count_as and isinstance(rest.get("@odata.count"), int):  # it comes before the rows
                    self._counts[count_as] = rest.pop("@odata.count")
                yield row
            del text
            next_url, params = rest.get("@odata.nextLink"), None

    def _reader(self) -> ThreadPoolExecutor:
        """The thread that fetches the next page of a read ahead of time (one page ahead, at most)."""
        with self._page_reader_lock:
            if self._page_reader is None:
                self._page_reader = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-pages")
            return self._page_reader

    def _read_failure(self, response: httpx.Response, url: str) -> MLConnectorError:
        code, message = _error(response)
        if response.status_code == 404 and self.endpoint.mode == "odata":
            service = urlsplit(url).path.rsplit("/", 1)[-1]
            if code == "Internal_CompanyNotFound":
                return ConfigError(f"{self.name}: {message or 'company not found'}; company names are case-"
                                   "sensitive (see `mlconnector ping`)")
            return RemoteError(self.name, 404, code, f"{service}: OData services not enabled or page not published "
                               f"(publish it on the Web Services page, or map it in [systems.{self.name}.services])")
        return self._fail(response, f"GET {urlsplit(url).path}")

    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        """Records modified in [since, until), ascending by (modified, id). With ``since`` None (a first or full
        run) rows never stamped (lastModifiedDateTime 0001-01-01) come too, first, with modified None."""
        if entity in JOURNAL_SERVICES:
            raise ConfigError(f"{self.name}: {entity} are written, not read: a journal line leaves the journal when "
                              "NAV posts it; compare the posted documents in NAV's Customer Ledger Entries")
        if entity == "customerDimensions":
            self._whole_read[entity] = until or utcnow()   # page 540 has no modification date: read whole
            yield from self._customer_dimensions()
            return
        if self.endpoint.mode == "odata":
            yield from self._page_changes(entity, since, until)
            return
        set_name, lines, extra = self._spec(entity)
        terms = [f"({extra})"] if extra else []
        if since is not None:
            terms.append(f"lastModifiedDateTime ge {odata_time(since)}")
        if until is not None:
            terms.append(f"lastModifiedDateTime lt {odata_time(until, up=True)}")
        params = {"$orderby": "lastModifiedDateTime,id"}
        if terms:
            params["$filter"] = " and ".join(terms)
        expand = self._expand(entity, lines)
        if expand:
            params["$expand"] = expand
        # A first read of documents with their lines (every one of them) asks for smaller pages: such a page is
        # several times wider than a customer's, and each page's text is held while its rows are taken.
        size = min(self.page_size, self.document_page_size) if lines and since is None else None
        for row in self._pages(f"{self.company_url()}/{set_name}", params, size, ramp=since is None and size is None,
                               count_as=entity):
            yield self._api_record(entity, row)

    def record_ids(self, entity: str) -> Iterator[str]:
        """Every id of ``entity`` (a deletion is an id no longer here), a few bytes a row: in API mode ``$select=id``;
        on pages, whose records are known by their number, ``$select=No`` (page web services take OData's $select,
        e.g. ``/Items?$select=No,Description,Unit_Price``: https://learn.microsoft.com/training/modules/work-with-web-
        services/7-query-options). Both at the connector's page size."""
        if self.endpoint.mode == "odata":
            for row in self._pages(f"{self.company_url()}/{self._service(entity)}", {"$select": "No"}):
                yield str(_nav_value(row.get("No")))
            return
        set_name, _, extra = self._spec(entity)
        params = {"$select": "id"} | ({"$filter": extra} if extra else {})
        for row in self._pages(f"{self.company_url()}/{set_name}", params):
            yield str(row["id"])

    @staticmethod
    def _expand(entity: str, lines: str | None) -> str | None:
        return "contactInformation" if entity == "contacts" else lines

    def _api_record(self, entity: str, row: Mapping[str, Any]) -> Record:
        data = _clean(row)
        if entity in ("customers", "vendors") and data.get("number") and len(self._numbers) < MAX_NUMBERS_KEPT:
            self._numbers[("Customer" if entity == "customers" else "Vendor", str(data["id"]))] = str(data["number"])
        if entity == "contacts":
            info = data.pop("contactInformation", None) or []
            data["relations"] = [{"type": i.get("relatedType"), "id": i.get("relatedId"),
                                  "number": self._number_of(str(i.get("relatedType")), str(i.get("relatedId")))}
                                 for i in info if i.get("relatedType") in ("Customer", "Vendor")]
            data.update(_business_relation(data["relations"]))
        lines = API_ENTITIES[entity][1] if entity in API_ENTITIES else None
        if lines and isinstance(data.get(lines), list):  # the only list a row carries: its lines, when expanded
            data[lines] = [_clean(v) if isinstance(v, Mapping) else v for v in data[lines]]
        return Record(self.name, entity, str(data["id"]), parse_time(data.get("lastModifiedDateTime")), data)

    def _number_of(self, related_type: str, related_id: str) -> str | None:
        """The number of a contact's customer or vendor, when this connector has read that record (the
        customers flow runs first). contactInformation carries only the id, which is what links use; the
        number only makes messages friendlier, so it is never worth an API call per contact."""
        return self._numbers.get((related_type, related_id))

    def get(self, entity: str, id: str) -> Record | None:
        """The full current record with its lines (contacts: with relations); None when it is gone."""
        if entity == "customerDimensions":
            customer, _, code = id.partition("/")
            return next((r for r in self._customer_dimensions(customer) if r.id == id), None)
        if self.endpoint.mode == "odata":
            return self._page_get(entity, id)
        set_name, lines, extra = self._spec(entity)
        expand = self._expand(entity, lines)
        response = self._call("GET", f"{self.company_url()}/{set_name}({id})",
                              params={"$expand": expand} if expand else None)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"GET {set_name}({id})")
        record = self._api_record(entity, response.json())
        if extra and record.get("status") in ("Draft", "In Review"):
            return None  # a draft is not (or no longer) a posted invoice
        return record

    # -- reads: NAV page web services ----------------------------------------------------------------------------
    def _service(self, entity: str) -> str:
        if entity not in PAGE_FIELDS:
            raise ConfigError(f"{self.name}: entity {entity!r} has no page web service; known: "
                              f"{', '.join(PAGE_FIELDS)}")
        return str(self.services[entity])

    def _page_key(self, entity: str, number: str) -> str:
        kind = DOCUMENT_TYPE.get(entity)
        key = quote(_quote_key(number), safe="'")
        return f"('{kind}',{key})" if kind else f"({key})"

    def _page_changes(self, entity: str, since: datetime | None, until: datetime | None) -> Iterator[Record]:
        """Pages carry at best "Last Date Modified" (a date): rows are read from the day before ``since``'s date
        (time zones) and stamped with the end of their day, capped just below ``until``: a row changed twice on
        one day is read again and the engine's payload hash tells whether it really changed. Pages without a
        modification field (documents) are read whole each time, with modified None."""
        service = self._service(entity)
        field = self.modified_fields.get(entity)
        until = until or utcnow()
        cap = until - timedelta(milliseconds=1)
        params: dict[str, str] = {}
        self._whole_read.pop(entity, None)
        if field:
            params["$orderby"] = f"{field},No"
            if since is not None:
                day = (since.astimezone(timezone.utc) - timedelta(days=1)).date().isoformat()
                params["$filter"] = f"{field} ge {day}"
        elif entity in POSTING_DATE_FIELDS:
            if since is None or not self.posted_full_read or until - since >= self.posted_full_read:
                # Whole, for what NAV computes on posted documents (paid, cancelled): the engine's watermark
                # then stays at the start of this read (read_clock), the next whole read posted_full_read later.
                self._whole_read[entity] = until
            else:
                # Posted since the last whole read (from the day before, for time zones); back-dated postings
                # older than that come with the next whole read.
                day = (since.astimezone(timezone.utc) - timedelta(days=1)).date().isoformat()
                params["$filter"] = f"{POSTING_DATE_FIELDS[entity]} ge {day}"
        part = self.line_parts.get(entity)
        if part:
            params["$expand"] = part
        relations: Mapping[str, list[dict[str, Any]]] | None = None
        # A whole read of documents with their lines asks for smaller pages, as in API mode: each row is several
        # times wider than a card's, and a page's text is held while its rows are taken.
        size = min(self.page_size, self.document_page_size) if part and "$filter" not in params else None
        for row in self._pages(f"{self.company_url()}/{service}", params, size,
                               ramp=since is None and size is None and bool(field), count_as=entity):
            record = self._page_record(entity, row, field, cap)
            if entity == "contacts":
                # Fetched once the first contact has come: a run in which no contact changed asks for nothing more.
                if relations is None:
                    relations = self._page_relations()
                record = self._with_relations(record, relations)
            yield record

    def key_form(self, entity: str, field: str, value: Any) -> str:
        """How a lookup by key matches in NAV and Business Central: OData's eq on text follows the database's
        collation, case-insensitive by default (https://learn.microsoft.com/dynamics365/business-central/dev-itpro/
        cside/cside-collation), and Code fields are stored without surrounding spaces."""
        return str(value).strip().casefold()

    def read_clock(self, entity: str) -> datetime | None:
        """Where the last read of ``entity`` lets the engine close its window: only for posted documents on
        pages (no modification date) after a whole read, at its start; None otherwise (the newest record
        read decides, as usual)."""
        return self._whole_read.get(entity)

    def _page_record(self, entity: str, row: Mapping[str, Any], field: str | None,
                     cap: datetime | None = None) -> Record:
        names = PAGE_FIELDS[entity]
        data: dict[str, Any] = {}
        lines: list[dict[str, Any]] = []
        stamp = row.get(field) if field else None
        part = self.line_parts.get(entity)
        for key, value in row.items():
            if key.startswith("@odata.") or key == field:
                continue
            if part and key == part:
                lines = [self._page_line(line) for line in value or []]
                continue
            data[names.get(key, key)] = _nav_value(value)
        number = str(data.get("number", ""))
        data["id"] = number
        if entity in ("salesOrders", "purchaseOrders") and "status" in data:
            data["status"] = DOCUMENT_STATUS.get(str(data["status"]), str(data["status"]))
            data.pop("documentType", None)
        if entity == "postedSalesInvoices":
            data["invoiceDate"] = data.get("postingDate")
            data["status"] = "Canceled" if row.get("Cancelled") else "Paid" if row.get("Closed") else "Open"
            data.pop("Closed", None)
            data.pop("Cancelled", None)
        if "customerNumber" in data:
            data["customerId"] = data["customerNumber"]
        if "vendorNumber" in data:
            data["vendorId"] = data["vendorNumber"]
        if part:
            data[API_ENTITIES[entity][1] or "lines"] = lines
            if entity == "salesOrders":
                data.setdefault("totalAmountExcludingTax", round(sum(float(x.get("amountExcludingTax") or 0)
                                                                     for x in lines), 2))
        modified: datetime | None = None
        if isinstance(stamp, str):
            modified = parse_time(stamp) if "T" in stamp else _day_end(stamp)
            if modified is not None and cap is not None and modified > cap:
                modified = cap
        data["lastModifiedDateTime"] = _isoformat(modified) if modified else None
        return Record(self.name, entity, number, modified, data)

    @staticmethod
    def _page_line(line: Mapping[str, Any]) -> dict[str, Any]:
        out = {LINE_FIELDS.get(k, k): _nav_value(v) for k, v in line.items() if not k.startswith("@odata.")}
        out.pop("Document_Type", None)
        if out.get("lineType", "Item") == "Item":
            out["itemId"] = out.get("lineObjectNumber")
        return out

    def _page_get(self, entity: str, id: str) -> Record | None:
        service = self._service(entity)
        part = self.line_parts.get(entity)
        response = self._call("GET", f"{self.company_url()}/{service}{self._page_key(entity, id)}",
                              params={"$expand": part} if part else None)
        if response.status_code == 404 and _error(response)[0] in ("Internal_RecordNotFound", "BadRequest_NotFound"):
            return None
        if response.status_code != 200:
            raise self._read_failure(response, f"{self.company_url()}/{service}")
        record = self._page_record(entity, response.json(), self.modified_fields.get(entity), utcnow())
        if entity == "contacts":
            holders = [record.id, str(record.get("companyNumber") or "")]
            terms = " or ".join(f"Contact_No eq {_quote_key(h)}" for h in dict.fromkeys(filter(None, holders)))
            return self._with_relations(record, self._page_relations(terms))
        return record

    def _page_relations(self, filter_: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Contact No. -> its customer/vendor relations, from the Contact Business Relations page (5054)."""
        out: dict[str, list[dict[str, Any]]] = {}
        rows = self._pages(f"{self.company_url()}/{self.services['contactRelations']}",
                           {"$filter": filter_} if filter_ else None)
        for row in rows:
            kind = _nav_value(row.get("Link_to_Table"))
            if kind in ("Customer", "Vendor"):
                number = str(row.get("No"))
                out.setdefault(str(row.get("Contact_No")), []).append({"type": kind, "id": number, "number": number})
        return out

    @staticmethod
    def _with_relations(record: Record, relations: Mapping[str, list[dict[str, Any]]]) -> Record:
        """A contact's relations are its own and, for a person, those of its company contact (as BC's API shows)."""
        holders = [record.id]
        company_number = record.get("companyNumber")
        if company_number and company_number != record.id:
            holders.append(str(company_number))
        found = [r for holder in holders for r in relations.get(holder, [])]
        return Record(record.system, record.entity, record.id, record.modified,
                      {**record.data, "relations": found, **_business_relation(found)})

    def find(self, entity: str, field: str, value: Any) -> list[Record]:
        """The records whose ``field`` (API v2.0 name) equals ``value`` (compared as the server's collation
        does: case-insensitively)."""
        if self.endpoint.mode == "odata":
            url = f"{self.company_url()}/{self._service(entity)}"
            column = {api: page for page, api in PAGE_FIELDS[entity].items()}.get(field, field)
            params = {"$filter": f"{column} eq {_quote_key(str(value))}"}
            stamp = self.modified_fields.get(entity)
            return [self._page_record(entity, row, stamp) for row in self._pages(url, params)]
        set_name = self._spec(entity)[0]
        params = {"$filter": f"{field} eq {_quote_key(str(value))}"}
        return [self._api_record(entity, row) for row in self._pages(f"{self.company_url()}/{set_name}", params)]

    # -- writes ------------------------------------------------------------------------------------------------
    def write(self, entity: str, payloads: list[dict[str, Any]], key: str,
              ids: list[str | None] | None = None) -> list[WriteResult]:
        """Upsert each payload (API v2.0 field names): a linked record (``ids``) by its id, the rest by
        ``key``; POST when absent (without a key, the ERP numbers the new record), else PATCH with If-Match.
        A record changed meanwhile (409/412 Request_EntityChanged) is re-read and retried once."""
        if entity in JOURNAL_SERVICES:
            return self._write_journal(entity, payloads)
        if entity not in WRITABLE:
            raise ConfigError(f"{self.name}: writing {entity} is not supported (writable: "
                              f"{', '.join(WRITABLE + tuple(JOURNAL_SERVICES))})")
        known = ids or [None] * len(payloads)
        return write_each(zip(payloads, known), lambda each: self._upsert_one(entity, each[0], key, each[1]))

    def _write_journal(self, entity: str, payloads: list[dict[str, Any]]) -> list[WriteResult]:
        """Documents as journal lines (dynamics_journals.py), one document at a time."""
        check_mode(self.name, self.endpoint.mode, entity)
        writer = JournalWriter(self.name, self._call, lambda url, params: self._pages(url, params),
                               self.company_url, self.services, self._fail)

        def write_one(payload: dict[str, Any]) -> WriteResult:
            try:
                return writer.write_one(entity, payload)
            except JournalRefused as refused:
                return WriteResult("fail", error=str(refused), error_class=refused.error.code or "journal_refused")
        return write_each(payloads, write_one)

    def write_calls(self, entity: str, payloads: list[dict[str, Any]], key: str,
                    ids: list[str | None] | None = None) -> int:
        """The calls ``write`` makes, for a dry run's estimate: per record, a read of the current row (by its
        linked id, else by its key; none for a new record the ERP numbers) and the POST or PATCH."""
        if entity in JOURNAL_SERVICES:
            return 3 * len(payloads)  # the document's journal lines and ledger entries read, a line written
        ids = ids or [None] * len(payloads)
        return sum(2 if known or payload.get(key) not in (None, "") else 1 for payload, known in zip(payloads, ids))

    def _find(self, entity: str, key: str, value: Any, known_id: str | None) -> dict[str, Any] | None:
        """The current row: by its linked id first (it may have been renumbered), else by the key."""
        page = self.endpoint.mode == "odata"
        if known_id:
            # In page mode a record's id is its number.
            found = self._page_find(entity, "number", known_id) if page else self._api_get(entity, known_id)
            if found is not None:
                return found
        if value in (None, ""):
            return None
        return self._page_find(entity, key, str(value)) if page else self._api_find(entity, key, str(value))

    def _api_get(self, entity: str, id: str) -> dict[str, Any] | None:
        set_name = self._spec(entity)[0]
        response = self._call("GET", f"{self.company_url()}/{set_name}({id})")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"read {entity} {id}")
        return response.json()

    def _upsert_one(self, entity: str, payload: Mapping[str, Any], key: str,
                    known_id: str | None = None) -> WriteResult:
        if entity == "contacts" and payload.get("businessRelation"):
            relation = payload["businessRelation"]
            company = self._company_contact(str(relation.get("type")), str(relation.get("id")))
            if company is None:
                what = f"{str(relation.get('type')).lower()} {relation.get('id')}"
                return WriteResult("fail", error=f"NAV has no company contact for {what} (Contact Business "
                                                 "Relations): create it from the customer or vendor card (Contact > "
                                                 "Create as Contact), then `mlconnector replay`",
                                   error_class="no_company_contact")
            payload = {**{k: v for k, v in payload.items() if k != "businessRelation"}, "companyNumber": company}
        value = payload.get(key)
        body = {k: v for k, v in payload.items()
                if k not in READ_ONLY and not k.startswith("@odata.") and not (k == key and v in (None, ""))}
        page = self.endpoint.mode == "odata"
        for attempt in (1, 2):
            try:
                found = self._find(entity, key, value, known_id)
                if page:
                    response = self._page_send(entity, found, body)
                else:
                    response = self._api_send(entity, found, body)
            except (RemoteError, ConfigError) as exc:
                if isinstance(exc, RemoteError) and exc.retryable:
                    raise
                return WriteResult("fail", error=str(exc), error_class=getattr(exc, "code", "") or "config")
            code = _error(response)[0]
            if attempt == 1 and ((response.status_code in (409, 412) and code in ("Request_EntityChanged", "")
                                  and found is not None)
                                 or (response.status_code == 409 and code == "Internal_EntityWithSameKeyExists")):
                continue  # changed (or created) by someone between our read and our write: read again, once
            if response.status_code in (200, 201):
                row = response.json()
                action = "create" if response.status_code == 201 else "update"
                if page:
                    record = self._page_record(entity, row, self.modified_fields.get(entity))
                    # A page tells only the date; our write happened now.
                    return WriteResult(action, record.id, utcnow(), stored=_as_stored(record))
                record = self._api_record(entity, row)
                return WriteResult(action, record.id, record.modified, stored=_as_stored(record))
            if response.status_code >= 500:
                raise self._fail(response, f"write {entity} {value}")
            code, message = _error(response)
            return WriteResult("fail", error=f"{code or response.status_code}: {message}".strip(": "),
                               error_class=code or f"http_{response.status_code}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _customer_dimensions(self, number: str | None = None) -> Iterator[Record]:
        """Customers' default dimensions (page 540 Default Dimensions, table 18), one record per customer and
        dimension code: id "C00010/CUSTOMERGROUP". Page web services only."""
        if self.endpoint.mode != "odata":
            raise ConfigError(f"{self.name}: customers' default dimensions are read from page 540 (page web "
                              "services); API v2.0 has them per customer only (customers(id)/defaultDimensions)")
        terms = "Table_ID eq 18" + (f" and No eq {_quote_key(number)}" if number else "")
        for row in self._pages(f"{self.company_url()}/{self.services['customerDimensions']}", {"$filter": terms}):
            customer, code = str(row.get("No") or ""), str(row.get("Dimension_Code") or "")
            yield Record(self.name, "customerDimensions", f"{customer}/{code}", None, {
                "id": f"{customer}/{code}", "customerNumber": customer, "customerId": customer,
                "dimensionCode": code, "dimensionValue": _nav_value(row.get("Dimension_Value_Code"))})

    def _company_contact(self, kind: str, related: str) -> str | None:
        """The number of the company contact whose business relation is this customer or vendor (by number on
        pages, by id in API v2.0): page 5054 Contact Business Relations, or company contacts' contactInformation."""
        if self.endpoint.mode == "odata":
            found = self._page_relations(f"Link_to_Table eq {_quote_key(kind)} and No eq {_quote_key(related)}")
            return next(iter(found), None)
        rows = self._pages(f"{self.company_url()}/contacts",
                           {"$filter": "type eq 'Company'", "$expand": "contactInformation"})
        for row in rows:
            for info in row.get("contactInformation") or []:
                if info.get("relatedType") == kind and str(info.get("relatedId")) == related:
                    return str(row.get("number"))
        return None

    def _api_find(self, entity: str, key: str, value: str) -> dict[str, Any] | None:
        set_name = self._spec(entity)[0]
        response = self._call("GET", f"{self.company_url()}/{set_name}",
                              params={"$filter": f"{key} eq {_quote_key(value)}"})
        if response.status_code != 200:
            raise self._fail(response, f"look up {entity} {key} = {value}")
        rows = response.json().get("value") or []
        return rows[0] if rows else None

    def _api_send(self, entity: str, found: Mapping[str, Any] | None, body: dict[str, Any]) -> httpx.Response:
        set_name = self._spec(entity)[0]
        if found is None:
            return self._call("POST", f"{self.company_url()}/{set_name}", json=body, idempotent=False)
        return self._call("PATCH", f"{self.company_url()}/{set_name}({found['id']})", json=body, idempotent=True,
                          headers={"If-Match": str(found.get("@odata.etag") or "*")})

    def _to_page(self, entity: str, body: Mapping[str, Any]) -> dict[str, Any]:
        names = {api: page for page, api in PAGE_FIELDS[entity].items()}
        out = {}
        for name, value in body.items():
            page_name = names.get(name, name)
            if page_name == "Blocked" and value == " ":
                value = "_x0020_"
            out[page_name] = value
        return out

    def _page_find(self, entity: str, key: str, value: str) -> dict[str, Any] | None:
        service = self._service(entity)
        if key == "number":
            response = self._call("GET", f"{self.company_url()}/{service}{self._page_key(entity, value)}")
            if response.status_code == 404 and _error(response)[0] != "Internal_CompanyNotFound" \
                    and _error(response)[0] != "BadRequest_ResourceNotFound":
                return None
            if response.status_code != 200:
                raise self._read_failure(response, f"{self.company_url()}/{service}")
            return response.json()
        field = {api: page for page, api in PAGE_FIELDS[entity].items()}.get(key, key)
        response = self._call("GET", f"{self.company_url()}/{service}",
                              params={"$filter": f"{field} eq {_quote_key(value)}"})
        if response.status_code != 200:
            raise self._read_failure(response, f"{self.company_url()}/{service}")
        rows = response.json().get("value") or []
        return rows[0] if rows else None

    def _page_send(self, entity: str, found: Mapping[str, Any] | None, body: dict[str, Any]) -> httpx.Response:
        service = self._service(entity)
        fields = self._to_page(entity, body)
        if found is None:
            return self._call("POST", f"{self.company_url()}/{service}", json=fields, idempotent=False)
        fields.pop("No", None)  # the key is in the URL; renaming a record is not an upsert
        return self._call("PATCH", f"{self.company_url()}/{service}{self._page_key(entity, str(found['No']))}",
                          json=fields, idempotent=True, headers={"If-Match": str(found.get("@odata.etag") or "*")})

    # -- push: BC webhook subscriptions ---------------------------------------------------------------------------
    def push_entities(self) -> tuple[str, ...]:
        """API mode only (page web services have no webhooks); contacts and purchaseOrders are polled."""
        if not self.notify_url or self.endpoint.mode != "api":
            return ()
        return PUSH_ENTITIES

    def _client_state(self) -> str:
        state = self.context.secrets.get(self.name, "client_state")
        if not state:
            state = secrets_module.token_urlsafe(32)  # BC keeps up to 2048 characters
            self.context.secrets.set(self.name, "client_state", state)
        return state

    def _resource(self, entity: str) -> str:
        return f"/api/v2.0/companies({self.company_id()})/{self._spec(entity)[0]}"

    def subscribe(self, entity: str, notify_url: str | None = None) -> Channel:
        """POST /subscriptions; BC first calls notify_url?validationToken=..., which `listen` answers (handshake)."""
        url = notify_url or self.notify_url
        if not url:
            raise ConfigError(f"systems.{self.name}.notify_url is not set: where should Business Central send "
                              "notifications?")
        if entity not in PUSH_ENTITIES:
            raise ConfigError(f"{self.name}: {entity} has no webhooks in Business Central; it is polled")
        response = self._call("POST", f"{self.endpoint.api}/subscriptions", idempotent=False, json={
            "notificationUrl": url, "resource": self._resource(entity), "clientState": self._client_state()})
        if response.status_code != 201:
            raise self._fail(response, f"subscribe to {entity} (BC calls {url} for the handshake: is "
                                       "`mlconnector listen` reachable there?)")
        return self._channel(entity, response)

    def _channel(self, entity: str, response: httpx.Response) -> Channel:
        sub = response.json()
        expires = parse_time(sub.get("expirationDateTime")) or utcnow() + timedelta(days=SUBSCRIPTION_DAYS)
        etag = str(sub.get("@odata.etag") or response.headers.get("ETag") or "*")
        return Channel(self.name, entity, str(sub["subscriptionId"]), expires, str(sub.get("notificationUrl")),
                       {"etag": etag, "resource": str(sub.get("resource") or "")})

    def _subscription_url(self, channel: Channel) -> str:
        return f"{self.endpoint.api}/subscriptions({_quote_key(channel.channel_id)})"

    def renew(self, channel: Channel) -> Channel:
        """PATCH with If-Match (BC handshakes again and moves the expiry three days out); a stale ETag is
        refreshed once. A subscription BC no longer has raises RemoteError 404: the engine re-subscribes."""
        etag = str(channel.extra.get("etag") or "*")
        body = {"notificationUrl": channel.notify_url, "resource": channel.extra.get("resource")
                or self._resource(channel.entity), "clientState": self._client_state()}
        for attempt in (1, 2):
            response = self._call("PATCH", self._subscription_url(channel), json=body, idempotent=True,
                                  headers={"If-Match": etag})
            if response.status_code == 200:
                return self._channel(channel.entity, response)
            if response.status_code in (409, 412) and attempt == 1:
                current = self._call("GET", self._subscription_url(channel))
                if current.status_code == 200:
                    etag = str(current.json().get("@odata.etag") or "*")
                    continue
                response = current
            raise self._fail(response, f"renew subscription {channel.channel_id} for {channel.entity}")
        raise AssertionError("unreachable")  # pragma: no cover

    def unsubscribe(self, channel: Channel) -> None:
        response = self._call("DELETE", self._subscription_url(channel),
                              headers={"If-Match": str(channel.extra.get("etag") or "*")})
        if response.status_code in (409, 412):
            response = self._call("DELETE", self._subscription_url(channel), headers={"If-Match": "*"})
        if response.status_code not in (200, 204, 404):
            raise self._fail(response, f"delete subscription {channel.channel_id}")
        state = self.context.state
        if state is not None:
            state.delete_channel(self.name, channel.channel_id)

    def handshake(self, query: Mapping[str, str]) -> str | None:
        """BC validates a notificationUrl by calling it with ?validationToken=... (a POST without a body, which the
        receiver checks): echo it as plain text. Only a token of a sane shape, and only once a sync of ours has set
        up subscriptions (their clientState exists): the receiver is no echo service for anyone who asks."""
        token = query.get("validationToken")
        if not token or not _VALIDATION_TOKEN.fullmatch(str(token)):
            return None
        return str(token) if self.context.secrets.get(self.name, "client_state") else None

    def verify(self, body: bytes | str | Mapping[str, Any], headers: Mapping[str, str] | None = None,
               query: Mapping[str, str] | None = None) -> list[Notification]:
        """A BC notification ``{"value": [...]}`` whose every item carries our clientState -> Notifications.

        Business Central deletes a subscription whose endpoint answers a non-retryable 4xx, so the statuses are
        chosen with care: 400 only for a body that cannot be a BC notification (not JSON, no ``value`` list);
        503 (retryable) when our own client_state is not available in this process, since that is our fault and
        a genuine notification must survive it; 403 for a clientState that differs from ours, which a genuine
        notification of a live subscription of ours never carries (and a stale subscription BC then drops is
        one the next sync replaces). Items for resources we do not handle are ignored, not refused.
        """
        if isinstance(body, Mapping):
            payload: Any = body
        else:
            try:
                payload = json.loads(body or b"")
            except ValueError:
                raise NotificationRejected(f"{self.name}: notification body is not JSON", 400) from None
        items = payload.get("value") if isinstance(payload, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise NotificationRejected(f"{self.name}: not a Business Central notification (no value list)", 400)
        expected = self.context.secrets.get(self.name, "client_state")
        if not expected:
            raise NotificationRejected(f"{self.name}: client_state is not available to this process; cannot "
                                       "verify now (BC will retry)", 503)
        for item in items:
            given = item.get("clientState")
            if not isinstance(given, str) or not hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                                                                     expected.encode()):
                raise NotificationRejected(f"{self.name}: notification clientState does not match ours", 403)
        out = []
        sets = {"customers": "customers", "vendors": "vendors", "items": "items", "salesOrders": "salesOrders",
                "salesInvoices": "postedSalesInvoices"}
        for item in items:
            resource = unquote(str(item.get("resource") or ""))
            match = _RESOURCE_RE.search(resource)
            if not match or match.group(2) not in sets:
                continue
            entity, key = sets[match.group(2)], match.group(3)
            change = str(item.get("changeType") or "updated")
            channel_id = str(item.get("subscriptionId")) if item.get("subscriptionId") else None
            if change == "collection" or key is None:
                since = _FILTER_TIME_RE.search(resource)
                out.append(Notification(self.name, entity, (), "update", channel_id,
                                        parse_time(since.group(1)) if since else None))
                continue
            operation = {"created": "create", "updated": "update", "deleted": "delete"}.get(change, "update")
            out.append(Notification(self.name, entity, (key.strip("'").lower(),), operation, channel_id))
        return out

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
                details.append(f"Entra token for app {self.client_id}")
            if self.endpoint.mode == "api":
                details.append(f"company {self.company_name!r} ({self.company_id()})")
            else:
                self._page_company()
                details.append(f"company {self.company_name!r}")
            wanted = self.system.setting("ping_entities", ["customers", "items"], type_=list)
            readable = []
            for entity in wanted:
                next(iter(self._probe(entity)), None)
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

    def _probe(self, entity: str) -> Iterator[Any]:
        """One row of ``entity`` at most, to prove it is readable (maxpagesize=1; the nextLink is not followed)."""
        if self.endpoint.mode == "api":
            set_name, _, extra = self._spec(entity)
            url = f"{self.company_url()}/{set_name}"
        else:
            url = f"{self.company_url()}/{self._service(entity)}"
        response = self._call("GET", url, headers={"Prefer": "odata.maxpagesize=1"})
        if response.status_code != 200:
            if self.endpoint.mode == "api":
                raise self._api_unavailable(response, entity)
            raise self._read_failure(response, url)
        return iter(response.json().get("value") or [])

    def _page_company(self) -> None:
        """Page mode: the default Company service lists the companies; the configured name must match exactly."""
        response = self._call("GET", f"{self.endpoint.odata}/Company")
        if response.status_code == 404:
            raise RemoteError(self.name, 404, _error(response)[0], f"nothing at {self.endpoint.odata}: OData "
                              "services not enabled (ODataServicesEnabled) or wrong server instance in base_url")
        if response.status_code != 200:
            raise self._api_unavailable(response, "Company")
        names = [str(c.get("Name")) for c in response.json().get("value") or []]
        if self.company_name not in names:
            raise ConfigError(self._company_hint(names))


__all__ = ["DynamicsConnector", "NegotiateAuth", "register", "odata_time", "parse_time", "PAGE_FIELDS",
           "API_ENTITIES", "PUSH_ENTITIES"]
