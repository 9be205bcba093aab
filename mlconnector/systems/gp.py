"""Dynamics GP through Web Services for Microsoft Dynamics GP (legacy SOAP endpoint), polled in date windows.

GP has no webhooks and its web server also serves interactive users, so this connector only polls, with few
requests at a time (``concurrency``, 2 by default, at most 5) and a pause between calls (``delay_seconds``).
SOAP goes through zeep, reading the WSDL the server publishes; HTTP goes through the shared ApiClient (retries
of 503 "Server Too Busy", the concurrency limit, the call counter) with Windows authentication
(Negotiate/NTLM via pyspnego, the same auth the NAV connector uses).

Entities: customers, vendors (GetCustomerList / GetVendorList on a ModifiedDate range, then the full card by
key; a run reads each vendor list and card once, and its other vendor flows take them from it),
vendorContacts (the contact person of each vendor address), glAccounts (GetGLAccountList has no date
criterion: the whole list is read and compared with what was last seen, kept next to the state file),
glTransactions (GetGLTransactionList on ModifiedDate, lines by key) and salesOrders (written with
CreateSalesOrder and the policy from GetPolicyByOperation; read back by key).

Or, with ``transport = "sba"``, customers, vendors and vendorContacts come from the Service Based Architecture
(REST, GP 2015+) at ``sba_url`` (``https://server/GPService/Tenants(DefaultTenant)/Companies(<company name,
URL-encoded>)/``): GET ``Sales/Customers`` and ``Purchasing/Vendors``, the same Windows authentication and limits.
SBA documents no JSON body, filter or paging, so each read takes the whole list and compares it with what was
last seen (as for GL accounts); the body's property names are a mapping (``sba_fields``, default the Web
Services names) and where the list sits is ``sba_list_key`` (default: the body is the list). GL accounts,
journal entries and sales orders are not in SBA's published list: they use Web Services when ``base_url`` is
set too, else they are unavailable (``unavailable(entity)`` says why).

Settings (``[systems.NAME]`` with ``kind = "gp"``; connections.example.toml documents each one): transport
(webservices | sba), sba_url, sba_list_key, sba_fields, base_url (the DynamicsGPService.asmx address; with
transport = "sba" only for the ledger and orders), wsdl (URL or file; default base_url + "?wsdl"), company_id,
tenant_name, user (DOMAIN\\name), auth (windows | basic), concurrency, delay_seconds, window_days, window_records,
history_start, modified_precision (date | datetime), timeout_seconds, namespace, gl_account_types, order_type_id,
quote_type_id, order_batch_id, validation_details.

Secrets (``mlconnector secrets set NAME password``): the Windows password of ``user``. Without ``user`` the
credentials of the account running mlconnector are used where the platform allows it.

The WSDL is kept for a day in ``gp-NAME-wsdl.db`` beside the state file (``mlconnector ping`` reads it anew).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
from filelock import FileLock

from mlconnector import jsonfile
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
from mlconnector.http import ApiClient, RetryPolicy, json_body
from mlconnector.systems import ConnectorContext, register_kind
from mlconnector.systems.base import ConnectorBase, PingResult, Record, WriteResult, write_each
from mlconnector.systems.dynamics import NegotiateAuth

KIND = "gp"
LEGACY_NS = "http://schemas.microsoft.com/dynamics/gp/2006/01"
DEFAULT_CONCURRENCY = 2
MAX_CONCURRENCY = 5
DEFAULT_DELAY = 0.5
DEFAULT_PORT = 48620
MAX_WINDOW = timedelta(days=3660)
# Vendor lists and cards a run has read, kept for the run's other vendor flows (vendors to Accounts, to Vendors and
# their contacts each read the same cards): at most this many answers, the least recently used dropped.
VENDOR_READS_KEPT = 1_000
ENTITIES = ("customers", "vendors", "vendorContacts", "glAccounts", "glTransactions", "salesOrders", "salesQuotes")
WRITABLE = ("salesOrders", "salesQuotes")
# entity -> (create operation, its parameter, read operation, line type, document type): sales orders and quotes
# (https://learn.microsoft.com/previous-versions/dynamicsgp/developer/cc508629(v=msdn.10): CreateSalesQuote)
DOCUMENTS = {"salesOrders": ("CreateSalesOrder", "salesOrder", "GetSalesOrderByKey", "SalesOrderLine", "Order"),
             "salesQuotes": ("CreateSalesQuote", "salesQuote", "GetSalesQuoteByKey", "SalesQuoteLine", "Quote")}
# The payload fields a sales order or quote is made of (CreateSalesOrder / CreateSalesQuote: customer, batch, date,
# PO number, comment, lines).
ORDER_FIELDS = frozenset({"customerId", "batchId", "date", "customerPONumber", "comment", "lines"})
TRANSPORTS = ("webservices", "sba")
SBA_RESOURCES = {"customers": "Sales/Customers", "vendors": "Purchasing/Vendors",
                 "vendorContacts": "Purchasing/Vendors"}
DATED_ENTITIES = ("customers", "vendors", "vendorContacts", "glTransactions")  # read by ModifiedDate windows
# After a day's end in UTC, how long until it has ended in every time zone GP servers keep (UTC-12), plus an
# hour for the server's clock and ours to disagree: no change is dated on that day after this.
DAY_ENDS_EVERYWHERE = timedelta(hours=13)
WSDL_CACHE_SECONDS = 24 * 3600
WEB_SERVICES_ONLY = ("glAccounts", "glTransactions", "salesOrders", "salesQuotes")  # not in SBA's published resource list
SBA_EXAMPLE = "https://gpserver/GPService/Tenants(DefaultTenant)/Companies(Fabrikam%2C%20Inc.)/"
_SBA_COMPANY = re.compile(r"^(?P<root>.*?/Tenants\([^)/]*\))/Companies\((?P<company>[^/]*)\)/?$", re.I)
log = logging.getLogger(__name__)
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ACCESS = re.compile(r"access (is )?denied|not authori[sz]ed|not set up as a dynamics gp user|security", re.I)
_NOT_FOUND = re.compile(r"could not be found|does not exist", re.I)


def register() -> None:
    register_kind(KIND, GPConnector)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: Any) -> datetime | None:
    """A GP date-time as aware UTC; a value without a zone is taken as UTC (the criteria are UTC)."""
    if value is None:
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, datetime.min.time())
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _money(value: Any) -> float | None:
    if isinstance(value, Mapping):
        value = value.get("Value")
    if value is None or value == "":
        return None
    return float(value)


def _id(value: Any, name: str = "Id") -> str | None:
    if isinstance(value, Mapping):
        found = value.get(name)
        return str(found) if found not in (None, "") else None
    if name == "Id" and isinstance(value, (str, int)) and value != "":
        return str(value)  # a key given as its bare value (an SBA body mapped to a plain "CustomerId")
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _address(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    raw = raw or {}
    phone = raw.get("Phone1")
    return {"id": _id(raw.get("Key")), "contact": _text(raw.get("ContactPerson")), "line1": _text(raw.get("Line1")),
            "line2": _text(raw.get("Line2")), "line3": _text(raw.get("Line3")), "city": _text(raw.get("City")),
            "state": _text(raw.get("State")), "postalCode": _text(raw.get("PostalCode")),
            "country": _text(raw.get("CountryRegion")),
            "phone": _text(phone.get("Value") if isinstance(phone, Mapping) else phone)}


def _items(holder: Any, name: str) -> list[Any]:
    """An array property as zeep gives it: a list, or a wrapper with the item name, or None."""
    if holder is None:
        return []
    if isinstance(holder, list):
        return holder
    if isinstance(holder, Mapping):
        inner = holder.get(name)
        return inner if isinstance(inner, list) else [inner] if inner is not None else []
    return []


def _plain(value: Any) -> Any:
    """zeep objects (and OrderedDicts) as plain dicts and lists."""
    from zeep.helpers import serialize_object

    def convert(item: Any) -> Any:
        if isinstance(item, Mapping):
            return {k: convert(v) for k, v in item.items()}
        if isinstance(item, list):
            return [convert(v) for v in item]
        return item

    return convert(serialize_object(value, dict))


def _cause_chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class SeenList:
    """What the last full reads of a list without a date criterion (GL accounts) looked like: per record a
    digest and the moment its current content was first seen. A small JSON file next to the state file, or, with
    the state in PostgreSQL, a document in its ledger (``ledger``, under ``name``), which every host sees."""

    def __init__(self, path: Path, ledger: Any = None, name: str = "") -> None:
        self.path = path
        self._lock = FileLock(str(path) + ".lock", timeout=30)
        self._ledger, self._name = ledger, name

    def _edited(self) -> AbstractContextManager[dict[str, Any]]:
        if self._ledger is not None:
            return self._ledger.edited(self._name)
        return jsonfile.edited(self.path, self._lock)

    def update(self, entity: str, digests: Mapping[str, str], now: datetime) -> dict[str, datetime]:
        """Store the current digests; return, per id, when its current content was first seen."""
        with self._edited() as data:
            known = data.get(entity, {})
            fresh: dict[str, list[str]] = {}
            for record_id, digest in digests.items():
                before = known.get(record_id)
                fresh[record_id] = before if before and before[0] == digest else [digest, now.isoformat()]
            data[entity] = fresh
        return {record_id: datetime.fromisoformat(entry[1]) for record_id, entry in fresh.items()}


def _end_of_day(day: date) -> datetime:
    """Where a change dated ``day`` is placed: the last millisecond of that day, read as UTC."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc) \
        - timedelta(milliseconds=1)


def side_file(context: ConnectorContext, system: str, suffix: str) -> Path:
    """A file of the system's beside the state file: what lists were last seen, or the cached WSDL."""
    if context.state_dir is not None:
        return context.state_dir / f"gp-{system}-{suffix}"
    from mlconnector.state import default_state_path

    return default_state_path().parent / f"gp-{system}-{suffix}"


class GPConnector(ConnectorBase):
    """The Dynamics GP connector: see the module docstring for its settings."""

    def __init__(self, system: SystemConfig, context: ConnectorContext, *,
                 sleep: Callable[[float], None] = time.sleep, now: Callable[[], datetime] = utcnow) -> None:
        self.name = system.name
        self.system = system
        self.context = context
        self._sleep = sleep
        self._now = now
        self.transport = str(system.setting("transport", "webservices", type_=str)).lower()
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"systems.{self.name}.transport must be \"webservices\" or \"sba\"")
        self.sba_url = self._sba_url() if self.transport == "sba" else ""
        self.sba_list_key = system.setting("sba_list_key", type_=str)
        fields = dict(system.setting("sba_fields", {}, type_=dict))
        if not all(isinstance(v, str) and v for v in fields.values()):
            raise ConfigError(f"systems.{self.name}.sba_fields maps a Web Services property name to the name in "
                              "SBA's JSON, both text, e.g. { Name = \"CustomerName\" }")
        self._sba_names = {body: ours for ours, body in fields.items()}
        # Web Services: always with transport = "webservices"; beside SBA only when base_url is set.
        self.web_services = self.transport == "webservices" or "base_url" in system.settings
        self.base_url = str(system.setting("base_url", required=self.web_services, type_=str) or "").rstrip("/")
        if self.web_services and not urlsplit(self.base_url).scheme:
            raise ConfigError(f"systems.{self.name}.base_url must be the service's address, e.g. "
                              f"https://gpserver:{DEFAULT_PORT}/DynamicsGPWebServices/DynamicsGPService.asmx")
        self.wsdl = str(system.setting("wsdl", f"{self.base_url}?wsdl", type_=str))
        self.company_id = int(system.setting("company_id", 0, required=self.web_services, type_=int))
        self.tenant_name = system.setting("tenant_name", type_=str)
        self.namespace = str(system.setting("namespace", LEGACY_NS, type_=str))
        self.concurrency = int(system.setting("concurrency", DEFAULT_CONCURRENCY, type_=int))
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ConfigError(f"systems.{self.name}.concurrency = {self.concurrency}: GP serves interactive users "
                              f"from the same servers; use 1 to {MAX_CONCURRENCY}")
        self.delay = float(system.setting("delay_seconds", DEFAULT_DELAY, type_=(int, float)))
        if self.delay < 0:
            raise ConfigError(f"systems.{self.name}.delay_seconds must be 0 or more")
        self.window = timedelta(days=float(system.setting("window_days", 30, type_=(int, float))))
        if self.window <= timedelta(0):
            raise ConfigError(f"systems.{self.name}.window_days must be more than 0")
        self.window_records = int(system.setting("window_records", 500, type_=int))
        start = str(system.setting("history_start", "2000-01-01", type_=str))
        try:
            self.history_start = _utc(datetime.fromisoformat(start)) or datetime(2000, 1, 1, tzinfo=timezone.utc)
        except ValueError:
            raise ConfigError(f"systems.{self.name}.history_start = {start!r} is not a date (YYYY-MM-DD)") from None
        self.precision = str(system.setting("modified_precision", "date", type_=str))
        if self.precision not in ("date", "datetime"):
            raise ConfigError(f"systems.{self.name}.modified_precision must be \"date\" or \"datetime\"")
        self.gl_account_types = list(system.setting("gl_account_types", ["Posting"], type_=list))
        self.order_type_id = str(system.setting("order_type_id", "STDORD", type_=str))
        self.quote_type_id = str(system.setting("quote_type_id", "STDQTE", type_=str))
        self.order_batch_id = str(system.setting("order_batch_id", "MLCONNECTOR", type_=str))
        self.validation_details = bool(system.setting("validation_details", True, type_=bool))
        self.auth_kind = str(system.setting("auth", "windows", type_=str))
        if self.auth_kind not in ("windows", "basic"):
            raise ConfigError(f"systems.{self.name}.auth must be \"windows\" or \"basic\"")
        self.user: str | None = system.setting("user", type_=str)
        self.http = ApiClient(self.name, auth=self._make_auth(), transport=context.transport,
                              counter=context.counter, max_concurrency=self.concurrency, sleep=sleep,
                              timeout=float(system.setting("timeout_seconds", 300, type_=(int, float))),
                              headers={"User-Agent": "mlconnector"})
        self.seen = SeenList(side_file(context, self.name, "seen.json"), context.ledger, f"gp {self.name} seen")
        self._wsdl_cache = side_file(context, self.name, "wsdl.db")
        self._pace_lock = threading.Lock()
        self._next_start = 0.0
        self._client: Any = None
        self._service: Any = None
        self._client_lock = threading.Lock()
        self._policies: dict[str, Any] = {}
        self._vendor_reads: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._vendor_reads_lock = threading.Lock()
        self._dated_reads: dict[str, datetime] = {}  # entity -> the ``until`` of its last read by date

    def _sba_url(self) -> str:
        """sba_url as the company's root, the company name inside ``Companies(...)`` URL-encoded once."""
        url = str(self.system.setting("sba_url", required=True, type_=str)).strip()
        match = _SBA_COMPANY.match(url)
        if not urlsplit(url).scheme or match is None:
            raise ConfigError(f"systems.{self.name}.sba_url must be the company's SBA address, e.g. {SBA_EXAMPLE} "
                              "(the company's name, not its database id)")
        company = quote(unquote(match.group("company")), safe="")
        return f"{match.group('root')}/Companies({company})/"

    @property
    def sba_company(self) -> str:
        match = _SBA_COMPANY.match(self.sba_url)
        return unquote(match.group("company")) if match else ""

    def _make_auth(self) -> httpx.Auth:
        if self.auth_kind == "basic":
            if not self.user:
                raise ConfigError(f"systems.{self.name}.user is missing (DOMAIN\\name) for auth = \"basic\"")
            return httpx.BasicAuth(self.user, self.context.secrets.require(self.name, "password"))
        password = self.context.secrets.require(self.name, "password") if self.user else None
        return NegotiateAuth(self.user, password)

    def close(self) -> None:
        self.http.close()

    # -- HTTP under zeep -----------------------------------------------------------------------------------------
    def _pace(self) -> None:
        """At least ``delay_seconds`` between the starts of two calls, whichever thread makes them."""
        if self.delay <= 0:
            return
        with self._pace_lock:
            wait = self._next_start - time.monotonic()
            if wait > 0:
                self._sleep(wait)
            self._next_start = time.monotonic() + self.delay

    def _http(self, method: str, url: str, *, idempotent: bool = False, **kwargs: Any) -> httpx.Response:
        self._pace()
        # Not idempotent for the retry policy: a SOAP fault is HTTP 500 and must not be sent again; 503
        # ("Server Too Busy") and refused connections still are. SBA reads (GET) are idempotent.
        response = self.http.request(method, url, idempotent=idempotent, **kwargs)
        if response.status_code == 401:
            raise AuthError(self.name, self._refusal())
        return response

    def _refusal(self) -> str:
        if self.auth_kind == "windows" and not self.user:
            return ("Windows authentication refused for the account running mlconnector; set user = "
                    f"\"DOMAIN\\\\name\" and `mlconnector secrets set {self.name} password`")
        return (f"Windows authentication refused for {self.user!r}: check the user (DOMAIN\\name) and its "
                f"password (`mlconnector secrets set {self.name} password`)")

    def _zeep(self, fresh: bool = False) -> Any:
        """The zeep service bound to base_url (a WSDL's own address is often an internal host name). The WSDL
        (large: every operation and type of the service, and the same until GP is upgraded) is kept beside the
        state file for WSDL_CACHE_SECONDS, so a cron run does not fetch it every time; ``fresh`` (ping) reads it
        anew."""
        with self._client_lock:
            if self._service is None:
                import zeep
                from zeep.cache import SqliteCache

                connector = self

                class Transport(zeep.Transport):
                    def post(self, address: str, message: Any, headers: dict[str, str]) -> httpx.Response:
                        return connector._http("POST", address, content=message, headers=headers)

                    def _load_remote_data(self, url: str) -> bytes:
                        response = connector._http("GET", url)
                        if response.status_code != 200:
                            raise RemoteError(connector.name, response.status_code, "",
                                              f"no WSDL at {url}; set wsdl (URL or file) in [systems.{connector.name}]")
                        return response.content

                try:
                    self._wsdl_cache.parent.mkdir(parents=True, exist_ok=True)
                    if fresh:
                        self._wsdl_cache.unlink(missing_ok=True)
                    cache = SqliteCache(path=str(self._wsdl_cache), timeout=WSDL_CACHE_SECONDS)
                    client = zeep.Client(self.wsdl, transport=Transport(cache=cache),
                                         settings=zeep.Settings(strict=False, xml_huge_tree=True))
                except (zeep.exceptions.XMLSyntaxError, zeep.exceptions.WsdlSyntaxError) as exc:
                    raise RemoteError(self.name, 200, "", f"{self.wsdl} is not a WSDL ({exc}); is base_url the "
                                      "DynamicsGPService.asmx address?") from None
                binding = next(iter(client.wsdl.bindings))
                self._client = client
                self._service = client.create_service(binding, self.base_url)
        return self._service

    def _context(self) -> dict[str, Any]:
        self._zeep()
        try:
            company = self._client.get_type(f"{{{self.namespace}}}CompanyKey")(Id=self.company_id)
        except (LookupError, ValueError):
            company = {"Id": self.company_id}
        context: dict[str, Any] = {"OrganizationKey": company}
        if self.tenant_name:
            context["TenantName"] = self.tenant_name
        return context

    def call(self, operation: str, /, **params: Any) -> Any:
        """One operation with the company context; faults become AuthError / RemoteError with GP's reasons."""
        import zeep

        service = self._zeep()
        try:
            result = getattr(service, operation)(**params, context=self._context())
        except zeep.exceptions.Fault as fault:
            raise self._fault(fault, operation) from None
        except zeep.exceptions.TransportError as exc:
            raise RemoteError(self.name, exc.status_code, "", f"{operation}: the server did not answer with SOAP "
                              f"(HTTP {exc.status_code}); is base_url the DynamicsGPService.asmx address?",
                              retryable=exc.status_code >= 500) from None
        return _plain(result)

    def _fault(self, fault: Any, operation: str) -> MLConnectorError:
        detail = {}
        if fault.detail is not None:
            for node in fault.detail.iter():
                name = str(node.tag).rsplit("}", 1)[-1]
                if node.text and node.text.strip():
                    detail[name] = node.text.strip()
        message = str(fault.message or "")
        kind = detail.get("ExceptionType", "")
        log_id = detail.get("LogId") or next(iter(_GUID.findall(message)), None)
        if kind == "SecurityException" or _ACCESS.search(message):
            return AuthError(self.name, f"{operation}: {message} The domain account "
                             f"{self.user or '(the current user)'} must be a GP web services user with a role "
                             "allowing this operation (Dynamics Security Console) and access to company "
                             f"{self.company_id}.")
        validation = kind == "ValidationException" or "client" in str(fault.code or "").lower()
        if validation and log_id and self.validation_details:
            reasons = self._logged_reasons(log_id)
            if reasons:
                message = f"{'; '.join(reasons)} (LogId {log_id})"
        code = "ValidationException" if validation else (kind or "SystemException")
        return RemoteError(self.name, 500, code, f"{operation}: {message}", retryable=not validation)

    def _logged_reasons(self, log_id: str) -> list[str]:
        """The validation messages GP logged for a fault (best effort: none when the lookup fails)."""
        import zeep

        try:
            result = _plain(self._zeep().GetLoggedValidationResultByKey(logId=log_id, context=self._context()))
        except (zeep.exceptions.Error, MLConnectorError):
            return []
        errors = _items((result or {}).get("Errors"), "ValidationError")
        return [str(e.get("Message")) for e in errors if isinstance(e, Mapping) and e.get("Message")]

    # -- Service Based Architecture (REST) ------------------------------------------------------------------------
    def unavailable(self, entity: str) -> str | None:
        """Why ``entity`` cannot be read or written with this configuration (SBA without Web Services), or None."""
        if entity in WEB_SERVICES_ONLY and not self.web_services:
            what = {"glAccounts": "GL accounts", "glTransactions": "journal entries",
                    "salesOrders": "sales orders", "salesQuotes": "sales quotes"}[entity]
            return (f"{self.name}: {what} are not in the Service Based Architecture's published resources; set "
                    f"base_url in [systems.{self.name}] to the Web Services address (DynamicsGPService.asmx) and "
                    "company_id to read them there, or leave this flow out of pairs.*.flows")
        return None

    def _sba_get(self, path: str) -> Any:
        """GET ``path`` under sba_url (or an absolute URL): the JSON answer, None for 404; errors by status."""
        url = path if "://" in path else self.sba_url + path
        response = self._http("GET", url, idempotent=True, headers={"Accept": "application/json"})
        if response.status_code == 404:
            return None
        if response.status_code == 403:
            raise AuthError(self.name, f"GET {path} refused (HTTP 403): the account "
                            f"{self.user or '(the current user)'} authenticated but GP refused it: map it to a GP "
                            f"user (User Setup, Windows Account) with access to company {self.sba_company!r} and "
                            "the windows it reads (Customer and Vendor Maintenance)")
        if response.status_code >= 400:
            text = " ".join(response.text.split())[:200]
            raise RemoteError(self.name, response.status_code, "", f"GET {path}: {text}",
                              retryable=response.status_code >= 500)
        if "://" in path:
            return response.text
        body = json_body(response)
        if body is None:
            raise RemoteError(self.name, response.status_code, "", f"GET {path} did not answer with JSON; is "
                              f"sba_url the company's SBA address ({SBA_EXAMPLE})?")
        return self._sba_renamed(body)

    def _sba_renamed(self, value: Any) -> Any:
        """The body with its property names (at every level) mapped back to the Web Services names."""
        if isinstance(value, Mapping):
            return {self._sba_names.get(k, k): self._sba_renamed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._sba_renamed(v) for v in value]
        return value

    def _sba_list(self, entity: str) -> list[Mapping[str, Any]]:
        """Every record of a resource, in one GET (SBA documents no filter or paging)."""
        path = SBA_RESOURCES[entity]
        body = self._sba_get(path)
        if body is None:
            raise ConfigError(f"{self.name}: GET {path} answered 404; check sba_url (tenant, and the company's name "
                              f"URL-encoded, e.g. {SBA_EXAMPLE}), or use transport = \"webservices\"")
        rows = body.get(self.sba_list_key) if self.sba_list_key and isinstance(body, Mapping) else body
        if not isinstance(rows, list):
            found = f"an object with {', '.join(sorted(map(str, body)))}" if isinstance(body, Mapping) else "no list"
            raise ConfigError(f"{self.name}: GET {path} answered {found} where a list of records was expected: SBA's "
                              f"body is not documented; set sba_list_key in [systems.{self.name}] to the property "
                              "holding the records")
        return [row for row in rows if isinstance(row, Mapping)]

    def _sba_records(self, entity: str, stamp: datetime | None = None) -> list[Record]:
        if entity == "customers":
            return [self._customer(raw, stamp) for raw in self._sba_list(entity)]
        vendors = [self._vendor(raw, stamp) for raw in self._sba_list(entity)]
        return vendors if entity == "vendors" else [c for v in vendors for c in self._vendor_contacts(v)]

    def _sba_one(self, entity: str, record_id: str) -> Mapping[str, Any] | None:
        found = self._sba_get(f"{SBA_RESOURCES[entity]}({quote(record_id, safe='')})")
        return found if isinstance(found, Mapping) else None

    def _seen_changes(self, entity: str, items: list[tuple[str, Any]], since: datetime | None,
                      until: datetime) -> Iterator[tuple[datetime, Any]]:
        """A whole list compared with the last read: an item is new or changed when its content differs; it then
        counts as modified at the moment this connector first saw that content. An item first seen before
        ``since`` is already synced and is not handed out again."""
        digests = {item_id: hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
                   for item_id, data in items}
        first_seen = self.seen.update(entity, digests, until - timedelta(milliseconds=1))
        rows = []
        for item_id, data in items:
            stamp = min(first_seen[item_id], until - timedelta(milliseconds=1))
            if since is None or stamp >= since:
                rows.append((stamp, item_id, data))
        for stamp, _, data in sorted(rows, key=lambda r: (r[0], r[1])):
            yield stamp, data

    # -- reads ---------------------------------------------------------------------------------------------------
    def _stamp(self, modified: datetime | None, until: datetime) -> datetime | None:
        """A record's modified time for the engine. GP keeps card changes as a date: such a record is placed at
        the end of its day, but never at or past ``until`` (the engine's watermark must not pass the read)."""
        if modified is None:
            return None
        if self.precision == "date":
            modified = _end_of_day(modified.date())
        return min(modified, until - timedelta(milliseconds=1))

    def coarse_stamps(self, entity: str) -> bool:
        """Card and journal dates carry no time: two versions of one day share a stamp (the engine then tells
        them apart by content). Lists compared whole (SBA, the chart of accounts) stamp the moment a content was
        first seen."""
        return self.precision == "date" and entity in DATED_ENTITIES and not (
            self.transport == "sba" and entity in SBA_RESOURCES)

    def read_clock(self, entity: str) -> datetime | None:
        """Where the last read of a dated entity lets the engine close its window: at the end of the earliest
        day that may still change. GP dates a change by the server's own day; a day has ended everywhere once it
        is over in UTC-12 (with an hour more for clock skew), and no change can be dated on it after that. A
        card dated on an ended day is then not read again (its stamp is the end of its day), while a day that
        may still change is read on every run. None where the newest record read decides, as usual."""
        until = self._dated_reads.get(entity)
        if until is None:
            return None
        return min(until, _end_of_day((until - DAY_ENDS_EVERYWHERE).date()))

    def _bounds(self, since: datetime | None, until: datetime) -> tuple[datetime, datetime]:
        start = since or self.history_start
        end = until
        if self.precision == "date":
            # GP stamps the server's local day only: read a day wider on both sides (time zones ahead of and
            # behind UTC); the stamps handed to the engine stay below ``until``.
            start = datetime.combine(start.date() - timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
            end = datetime.combine(until.date() + timedelta(days=2), datetime.min.time(), tzinfo=timezone.utc)
        return start, end

    def _range(self, start: datetime, end: datetime) -> dict[str, Any]:
        return {"From": start, "To": end - timedelta(milliseconds=1)}

    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        """Records changed in [since, until), ascending by (modified, id), read in ModifiedDate windows of
        ``window_days`` (GP returns whole lists: the window bounds each answer)."""
        until = until or self._now()
        reason = self.unavailable(entity)
        if reason:
            log.warning("%s", reason)  # the engine asks targets only; a source flow reads nothing, and says why
            return
        if self.transport == "sba" and entity in SBA_RESOURCES:
            records = self._sba_records(entity)
            for stamp, record in self._seen_changes(entity, [(r.id, r.data) for r in records], since, until):
                yield Record(self.name, entity, record["id"], stamp, record)
            return
        if entity == "glAccounts":
            yield from self._gl_account_changes(since, until)
            return
        if entity not in DATED_ENTITIES:
            raise ConfigError(f"{self.name}: reading {entity} is not supported (readable: customers, vendors, "
                              "vendorContacts, glAccounts, glTransactions)")
        if self.coarse_stamps(entity):
            self._dated_reads[entity] = until
        start, end_of_reads = self._bounds(since, until)
        window = self.window
        while start < end_of_reads:
            end = min(start + window, end_of_reads)
            summaries = self._list(entity, {"ModifiedDate": self._range(start, end)})
            rows = []
            for summary in summaries:
                stamp = self._stamp(_utc(summary.get("ModifiedDate")), until)
                if stamp is None or (since is not None and stamp < since) or stamp >= until:
                    continue
                rows.append((stamp, self._summary_id(entity, summary)))
            for stamp, record_id in sorted(rows):
                yield from self._full(entity, record_id, stamp)
            start = end
            # Quiet stretches (years of history on a first load) are read in wider windows, busy ones narrower.
            if len(summaries) * 4 < self.window_records:
                window = min(window * 4, MAX_WINDOW)
            elif len(summaries) > self.window_records:
                window = max(window / 2, timedelta(days=1))

    def record_ids(self, entity: str) -> Iterator[str]:
        """Every id (a deletion is an id no longer here), without reading cards: the summaries of a GetList call
        with criteria that restrict nothing, which GP answers with every record in one list (it has no paging;
        a summary is a few fields, https://learn.microsoft.com/previous-versions/dynamicsgp/developer/
        cc507900(v=msdn.10) and cc507912(v=msdn.10)); the chart of accounts and SBA's lists are whole reads
        already. Vendor contacts live on vendor cards: those are read, as a whole read would."""
        reason = self.unavailable(entity)
        if reason:
            raise ConfigError(reason)
        if self.transport == "sba" and entity in ("customers", "vendors"):
            yield from (str(_id(raw.get("Key"))) for raw in self._sba_list(entity))
        elif entity == "glAccounts":
            yield from (account["id"] for account in self._gl_accounts())
        elif entity in ("customers", "vendors", "glTransactions"):
            yield from (self._summary_id(entity, summary) for summary in self._list(entity, {}))
        else:
            yield from super().record_ids(entity)

    def _list(self, entity: str, criteria: dict[str, Any]) -> list[dict[str, Any]]:
        operation, item = {"customers": ("GetCustomerList", "CustomerSummary"),
                           "vendors": ("GetVendorList", "VendorSummary"),
                           "vendorContacts": ("GetVendorList", "VendorSummary"),
                           "glTransactions": ("GetGLTransactionList", "GLTransactionSummary")}[entity]
        if operation == "GetVendorList":
            answer = self._vendor_read((operation, repr(sorted(criteria.items()))),
                                       lambda: self.call(operation, criteria=criteria))
        else:
            answer = self.call(operation, criteria=criteria)
        return [row for row in _items(answer, item) if isinstance(row, Mapping)]

    def _vendor_card(self, record_id: str, stamp: datetime | None) -> Any:
        """A vendor's card, read once per run for the version its list summary shows."""
        return self._vendor_read(("GetVendorByKey", record_id, stamp),
                                 lambda: self.call("GetVendorByKey", key={"Id": record_id}))

    def _vendor_read(self, key: tuple[Any, ...], read: Callable[[], Any]) -> Any:
        """An answer about vendors this run already had, else ``read()``'s, kept for the run's other vendor flows.
        A card changed again later the same day is the next run's to read: GP dates carry no time, so the next
        run reads that day's cards again."""
        with self._vendor_reads_lock:
            if key in self._vendor_reads:
                self._vendor_reads.move_to_end(key)
                return self._vendor_reads[key]
        answer = read()
        with self._vendor_reads_lock:
            self._vendor_reads[key] = answer
            while len(self._vendor_reads) > VENDOR_READS_KEPT:
                self._vendor_reads.popitem(last=False)
        return answer

    @staticmethod
    def _summary_id(entity: str, summary: Mapping[str, Any]) -> str:
        if entity == "glTransactions":
            return str(_id(summary.get("Key"), "JournalId"))
        return str(_id(summary.get("Key")))

    def _full(self, entity: str, record_id: str, stamp: datetime | None) -> Iterator[Record]:
        if entity == "customers":
            yield self._customer(self.call("GetCustomerByKey", key={"Id": record_id}), stamp)
        elif entity == "vendors":
            yield self._vendor(self._vendor_card(record_id, stamp), stamp)
        elif entity == "vendorContacts":
            yield from self._vendor_contacts(self._vendor(self._vendor_card(record_id, stamp), stamp))
        elif entity == "glTransactions":
            yield self._gl_transaction(self.call("GetGLTransactionByKey", key={"JournalId": int(record_id)}), stamp)

    def _party(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        held = raw.get("Addresses")
        found = held if isinstance(held, list) else _items(held, "CustomerAddress") + _items(held, "VendorAddress")
        addresses = [_address(a) for a in found if isinstance(a, Mapping)]
        by_id = {a["id"]: a for a in addresses}

        def pick(key: str) -> dict[str, Any] | None:
            return by_id.get(_id(raw.get(key)) or "")

        default = pick("DefaultAddressKey") or (addresses[0] if addresses else {})
        number = str(_id(raw.get("Key")))
        return {"id": number, "number": number, "name": _text(raw.get("Name")), "shortName": _text(raw.get("ShortName")),
                "isActive": bool(raw.get("IsActive", True)), "isOnHold": bool(raw.get("IsOnHold", False)),
                "classId": _id(raw.get("ClassKey")), "currency": _text(raw.get("CurrencyKey")),
                "comment": _text(raw.get("Comment1")), "phone": default.get("phone") if default else None,
                "addresses": addresses, "defaultAddress": default or None,
                "createdDate": _utc(raw.get("CreatedDate")), "modifiedDate": _utc(raw.get("ModifiedDate"))}

    def _customer(self, raw: Mapping[str, Any], stamp: datetime | None) -> Record:
        data = self._party(raw)
        by_id = {a["id"]: a for a in data["addresses"]}
        credit = raw.get("CreditLimit") if isinstance(raw.get("CreditLimit"), Mapping) else {}
        data.update({"statementName": _text(raw.get("StatementName")),
                     "billingAddress": by_id.get(_id(raw.get("BillToAddressKey")) or "") or data["defaultAddress"],
                     "shippingAddress": by_id.get(_id(raw.get("ShipToAddressKey")) or "") or data["defaultAddress"],
                     "creditLimitType": _text((credit or {}).get("Item")),
                     "creditLimit": _money((credit or {}).get("Amount")), "balance": _money(raw.get("Balance"))})
        return Record(self.name, "customers", data["id"], stamp, data)

    def _vendor(self, raw: Mapping[str, Any], stamp: datetime | None) -> Record:
        data = self._party(raw)
        by_id = {a["id"]: a for a in data["addresses"]}
        data.update({"checkName": _text(raw.get("CheckName")),
                     "purchaseAddress": by_id.get(_id(raw.get("PurchaseAddressKey")) or "") or data["defaultAddress"],
                     "remitToAddress": by_id.get(_id(raw.get("RemitToAddressKey")) or "") or data["defaultAddress"]})
        return Record(self.name, "vendors", data["id"], stamp, data)

    def _vendor_contacts(self, vendor: Record) -> Iterator[Record]:
        for address in vendor.get("addresses") or []:
            if address.get("contact"):
                contact_id = f"{vendor.id}/{address['id']}"
                yield Record(self.name, "vendorContacts", contact_id, vendor.modified,
                             {**address, "id": contact_id, "addressId": address["id"], "vendorId": vendor.id,
                              "vendorName": vendor.get("name"), "name": address["contact"]})

    def _gl_transaction(self, raw: Mapping[str, Any], stamp: datetime | None) -> Record:
        lines = []
        for line in _items(raw.get("Lines"), "GLTransactionLine"):
            if isinstance(line, Mapping):
                lines.append({"sequence": line.get("SequenceNumber"), "account": _id(line.get("GLAccountKey")),
                              "debit": _money(line.get("DebitAmount")) or 0.0,
                              "credit": _money(line.get("CreditAmount")) or 0.0,
                              "description": _text(line.get("Description"))})
        journal = str(_id(raw.get("Key"), "JournalId"))
        transaction_date = _utc(raw.get("TransactionDate"))
        data = {"id": journal, "journalId": journal, "reference": _text(raw.get("Reference")),
                "batch": _id(raw.get("BatchKey")), "state": _text(raw.get("TransactionState")),
                "transactionDate": transaction_date.date().isoformat() if transaction_date else None,
                "lines": lines, "total": round(sum(l["debit"] for l in lines), 2),
                "modifiedDate": _utc(raw.get("ModifiedDate"))}
        return Record(self.name, "glTransactions", journal, stamp, data)

    def _gl_accounts(self) -> list[dict[str, Any]]:
        criteria = {"AccountType": {"Items": {"string": self.gl_account_types}}} if self.gl_account_types else {}
        out = []
        for row in _items(self.call("GetGLAccountList", criteria=criteria), "GLAccountSummary"):
            if isinstance(row, Mapping):
                number = str(_id(row.get("Key")))
                out.append({"id": number, "number": number, "alias": _text(row.get("Alias")),
                            "description": _text(row.get("Description")), "isActive": bool(row.get("IsActive", True)),
                            "accountType": _text(row.get("AccountType")),
                            "modifiedDate": _utc(row.get("ModifiedDate"))})
        return out

    def _gl_account_changes(self, since: datetime | None, until: datetime) -> Iterator[Record]:
        """The whole chart of accounts, compared with the last read: an account is new or changed when its
        content differs; it then counts as modified at the moment this connector first saw that content. An
        account whose content was first seen before ``since`` is already synced and is not handed out again."""
        accounts = [(a["id"], a) for a in self._gl_accounts()]
        for stamp, account in self._seen_changes("glAccounts", accounts, since, until):
            yield Record(self.name, "glAccounts", account["id"], stamp, account)

    def get(self, entity: str, id: str) -> Record | None:
        """The current record (replay and re-reads); None when GP no longer has it."""
        reason = self.unavailable(entity)
        if reason:
            raise ConfigError(reason)
        if self.transport == "sba" and entity in SBA_RESOURCES:
            owner_id, _, address_id = id.partition("/") if entity == "vendorContacts" else (id, "", "")
            raw = self._sba_one(entity, owner_id)
            if raw is None:
                return None
            if entity == "customers":
                return self._customer(raw, None)
            vendor = self._vendor(raw, None)
            if entity == "vendors":
                return vendor
            return next((c for c in self._vendor_contacts(vendor) if c.get("addressId") == address_id), None)
        try:
            if entity == "glAccounts":
                found = next((a for a in self._gl_accounts() if a["id"] == id), None)
                return Record(self.name, entity, id, None, found) if found else None
            if entity == "vendorContacts":
                vendor_id, _, address_id = id.partition("/")
                vendor = self._vendor(self.call("GetVendorByKey", key={"Id": vendor_id}), None)
                return next((c for c in self._vendor_contacts(vendor) if c.get("addressId") == address_id), None)
            if entity in DOCUMENTS:
                return self._sales_order(self.call(DOCUMENTS[entity][2], key={"Id": id}), entity)
            if entity not in ("customers", "vendors", "glTransactions"):
                raise ConfigError(f"{self.name}: unknown entity {entity!r}; known: {', '.join(ENTITIES)}")
            return next(iter(self._full(entity, id, None)), None)
        except RemoteError as exc:
            if exc.code == "ValidationException" and _NOT_FOUND.search(exc.message):
                return None
            raise

    def _sales_order(self, raw: Mapping[str, Any], entity: str = "salesOrders") -> Record:
        number = str(_id(raw.get("Key")))
        lines = [{"item": _id(l.get("ItemKey")), "description": _text(l.get("ItemDescription")),
                  "quantity": _money(l.get("Quantity")), "unitPrice": _money(l.get("UnitPrice"))}
                 for l in _items(raw.get("Lines"), DOCUMENTS[entity][3]) if isinstance(l, Mapping)]
        data = {"id": number, "Id": number, "customerId": _id(raw.get("CustomerKey")),
                "customerPONumber": _text(raw.get("CustomerPONumber")), "lines": lines,
                "total": _money(raw.get("TotalAmount"))}
        return Record(self.name, entity, number, _utc(raw.get("ModifiedDate")), data)

    # -- writes --------------------------------------------------------------------------------------------------
    def write_calls(self, entity: str, payloads: list[dict[str, Any]], key: str,
                    ids: list[str | None] | None = None) -> int:
        """The calls ``write`` makes, for a dry run's estimate: per order a look for it by number and the
        CreateSalesOrder, the operation's policy once a run, and with Windows authentication the two exchanges of
        a handshake (a write goes out on a connection of the write threads, which authenticates on first use)."""
        if not payloads:
            return 0
        handshake = 2 if self.auth_kind != "basic" else 0
        return 2 * len(payloads) + (DOCUMENTS[entity][0] not in self._policies) + handshake

    def _policy(self, operation: str) -> Any:
        if operation not in self._policies:
            self._policies[operation] = self.call("GetPolicyByOperation", operation=operation)
        return self._policies[operation]

    def write(self, entity: str, payloads: list[dict[str, Any]], key: str,
              ids: list[str | None] | None = None) -> list[WriteResult]:
        """Create sales orders with CreateSalesOrder and its policy. The order number comes from ``key`` in the
        payload (GP takes a given number as is), so a re-run finds the order instead of creating it twice. GP
        owns an order once it exists: later changes on the other side are reported as skipped, not sent."""
        if entity not in WRITABLE:
            raise ConfigError(f"{self.name}: writing {entity} is not supported (writable: {', '.join(WRITABLE)})")
        reason = self.unavailable(entity)
        if reason:
            raise ConfigError(reason)
        known = ids or [None] * len(payloads)
        return write_each(zip(payloads, known), lambda each: self._create_order(each[0], key, each[1], entity))

    def _create_order(self, payload: Mapping[str, Any], key: str, linked: str | None,
                      entity: str = "salesOrders") -> WriteResult:
        create, parameter, _, line_type, kind = DOCUMENTS[entity]
        what = "quote" if entity == "salesQuotes" else "order"
        extra = sorted(set(payload) - ORDER_FIELDS - {key})
        if extra:
            # The document is built from these fields only: a field a configured mapping adds would be lost.
            return WriteResult("fail", error=f"GP sales {what}s take {', '.join(sorted(ORDER_FIELDS))} only, not "
                               f"{', '.join(extra)} (see the pair's mappings)", error_class="INVALID_DATA")
        number = _text(linked) or _text(payload.get(key))
        if not number:
            return WriteResult("fail", error=f"the {what} has no {key}: GP {what} numbers are set by the pair",
                               error_class="INVALID_DATA")
        try:
            existing = self.get(entity, number)
        except RemoteError as exc:
            if exc.retryable:
                raise
            return WriteResult("fail", error=str(exc), error_class=exc.code or "gp")
        if existing is not None:
            if linked:
                return WriteResult("skip", number, error=f"sales {what} {number} is already in GP; changes after "
                                   f"it was created are not sent (GP owns the {what})")
            return WriteResult("update", number, existing.modified)  # created by an earlier, interrupted run
        type_id = self.quote_type_id if entity == "salesQuotes" else self.order_type_id
        order = {"Key": {"Id": number}, "DocumentTypeKey": {"Type": kind, "Id": type_id},
                 "CustomerKey": {"Id": payload.get("customerId")},
                 "BatchKey": {"Id": payload.get("batchId") or self.order_batch_id},
                 "Date": payload.get("date"), "CustomerPONumber": payload.get("customerPONumber"),
                 "Comment": payload.get("comment"),
                 "Lines": {line_type: [
                     {"ItemKey": {"Id": line.get("item")}, "ItemDescription": line.get("description"),
                      "Quantity": {"Value": line.get("quantity")},
                      # a quote line also says how much of it to invoice and to order: all of it, once accepted
                      **({"QuantityToInvoice": {"Value": line.get("quantity")},
                          "QuantityToOrder": {"Value": line.get("quantity")}} if entity == "salesQuotes" else {}),
                      **({"UnitPrice": {"Value": line["unitPrice"]}} if line.get("unitPrice") is not None else {})}
                     for line in payload.get("lines") or []]}}
        try:
            self.call(create, **{parameter: order}, policy=self._policy(create))
        except RemoteError as exc:
            if exc.retryable:
                raise
            return WriteResult("fail", error=str(exc), error_class=exc.code or "gp")
        return WriteResult("create", number, self._now())

    # -- ping ----------------------------------------------------------------------------------------------------
    def ping(self) -> PingResult:
        """With SBA: its help page and the company's customers read with Windows authentication. With Web
        Services (the route, or beside SBA when base_url is set): WSDL reachable, the account mapped to a GP user
        with access to the company, the CreateSalesOrder policy readable. A closed port is tried twice, not
        through the sync's backoff."""
        patient, self.http.retry = self.http.retry, RetryPolicy(attempts=2, max_wait=2.0)
        target = self.sba_url or self.base_url
        who = f"auth {self.auth_kind} as {self.user or 'the current user'}"
        details = [f"at most {self.concurrency} concurrent requests, {self.delay:g} s between calls"]
        warnings = []
        url = target
        try:
            if self.transport == "sba":
                details.insert(0, f"Service Based Architecture (REST), {who}")
                help_url = _SBA_COMPANY.match(self.sba_url).group("root") + "/help"  # type: ignore[union-attr]
                if self._sba_get(help_url) is None:
                    raise ConfigError(f"{self.name}: no SBA help page at {help_url}; check the server, port and "
                                      "tenant in sba_url (GPService must be installed and use https)")
                details.append("SBA help page read")
                customers = self._sba_list("customers")
                details.append(f"company {self.sba_company!r} readable ({len(customers)} customers)")
                if not self.web_services:
                    warnings.append("GL accounts, journal entries and sales orders are not in SBA: their flows are "
                                    f"skipped; set base_url (Web Services) in [systems.{self.name}] to use them")
            if self.web_services:
                url = self.base_url
                details.append(f"Web Services (legacy SOAP endpoint), {who}")
                self._zeep(fresh=True)
                details.append("WSDL read")
                self.call("GetCustomerList", criteria={"Id": {"EqualValue": ""}})
                details.append(f"company {self.company_id} readable")
                self._policy("CreateSalesOrder")
                details.append("CreateSalesOrder policy available")
        except AuthError as exc:
            return PingResult(self.name, False, target, tuple(details), error=str(exc), exit_code=EXIT_AUTH)
        except Unreachable as exc:
            return PingResult(self.name, False, target, tuple(details), error=self._unreachable(exc, url),
                              exit_code=EXIT_UNREACHABLE)
        except RemoteError as exc:
            error = str(exc)
            if exc.code == "ValidationException" and "company" in exc.message.lower():
                return PingResult(self.name, False, self.base_url, tuple(details), exit_code=EXIT_CONFIG,
                                  error=f"{error}; check company_id in [systems.{self.name}] (the sample company "
                                        "is -1)")
            return PingResult(self.name, False, target, tuple(details), error=error,
                              exit_code=EXIT_UNREACHABLE)
        except MLConnectorError as exc:
            return PingResult(self.name, False, target, tuple(details), error=str(exc),
                              exit_code=getattr(exc, "exit_code", EXIT_UNREACHABLE))
        finally:
            self.http.retry = patient
        if self.auth_kind == "basic" and any(u.startswith("http://") for u in (self.base_url, self.sba_url)):
            warnings.append("Basic authentication over plain http exposes the domain password: use https")
        return PingResult(self.name, True, target, tuple(details), tuple(warnings))

    def _unreachable(self, exc: Unreachable, url: str) -> str:
        setting = "sba_url" if url == self.sba_url else "base_url"
        for cause in _cause_chain(exc):
            if isinstance(cause, ssl.SSLError) or "CERTIFICATE" in str(cause).upper() or "SSL" in str(cause):
                return (f"{exc}; certificate problem: {cause}. The server's certificate must be trusted by this "
                        f"host (point SSL_CERT_FILE at a bundle with your CA) and name the host in {setting}")
        parts = urlsplit(url)
        if setting == "sba_url":
            port = parts.port or (443 if parts.scheme == "https" else 80)
            service = "the GP Service (Service Based Architecture) is not reachable"
            host_service = "the Microsoft Dynamics GP Service running"
        else:
            port = parts.port or DEFAULT_PORT
            service = "the GP web service is not reachable"
            host_service = "the Microsoft Dynamics GP Service Host running"
        return (f"{exc}; {service}: is port {port} on {parts.hostname} open through the "
                f"firewall from this host, and {host_service}?")


__all__ = ["GPConnector", "register", "SeenList", "ENTITIES"]
