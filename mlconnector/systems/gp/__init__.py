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

The package: ``calls`` (Windows authentication, paced calls), ``webservices`` (the SOAP service through zeep) and
``reads`` (what is read through it), ``sba`` (the REST reads), ``records`` (GP's values and the records made of
them), ``seen`` (lists read whole compared with their last read), ``orders`` (sales orders written); the connector
here holds the settings and the contract.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx

from mlconnector.clock import parse_utc, utcnow
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
from mlconnector.systems.base import ConnectorBase, PingResult, Record, WriteResult, write_each
from mlconnector.systems.dynamics.credentials import NegotiateAuth
from mlconnector.systems.gp.calls import DEFAULT_PORT, PacedHttp, _cause_chain, unreachable  # noqa: F401
from mlconnector.systems.gp.orders import ORDER_FIELDS, Orders  # noqa: F401
from mlconnector.systems.gp.reads import (DATED_ENTITIES, DAY_ENDS_EVERYWHERE, ENTITIES, MAX_WINDOW,  # noqa: F401
                                          VENDOR_READS_KEPT, WebServicesReads, _end_of_day)
from mlconnector.systems.gp.records import (DOCUMENTS, RECORD_FIELDS, Shapes, _address, _id, _items,  # noqa: F401
                                            _money, _text)
from mlconnector.systems.gp.sba import (_SBA_COMPANY, SBA_EXAMPLE, SBA_RESOURCES, Sba, company_of,  # noqa: F401
                                        sba_url_of)
from mlconnector.systems.gp.seen import SeenList, side_file
from mlconnector.systems.gp.webservices import LEGACY_NS, WSDL_CACHE_SECONDS, WebServices, _plain  # noqa: F401

KIND = "gp"
DEFAULT_CONCURRENCY = 2
MAX_CONCURRENCY = 5
DEFAULT_DELAY = 0.5
WRITABLE = ("salesOrders", "salesQuotes")
TRANSPORTS = ("webservices", "sba")
WEB_SERVICES_ONLY = ("glAccounts", "glTransactions", "salesOrders", "salesQuotes")  # not in SBA's published resource list
log = logging.getLogger(__name__)


def register() -> None:
    register_kind(KIND, GPConnector)


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
        self.sba_url = sba_url_of(system) if self.transport == "sba" else ""
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
            self.history_start = (parse_utc(datetime.fromisoformat(start))
                                  or datetime(2000, 1, 1, tzinfo=timezone.utc))
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
        # The collaborators sleep and tell the time through this connector's own _sleep and _now.
        self.paced = PacedHttp(self.name, self.http, self.delay, self.auth_kind, self.user,
                               lambda seconds: self._sleep(seconds))
        self.soap = WebServices(self.name, self.paced, wsdl=self.wsdl, base_url=self.base_url,
                                wsdl_cache=side_file(context, self.name, "wsdl.db"), namespace=self.namespace,
                                company_id=self.company_id, tenant_name=self.tenant_name, user=self.user,
                                validation_details=self.validation_details, cache_seconds=WSDL_CACHE_SECONDS)
        shapes = Shapes(self.name)
        self.sba = Sba(self.name, self.paced, shapes, sba_url=self.sba_url, sba_list_key=self.sba_list_key,
                       sba_names=self._sba_names, user=self.user)
        self.reads = WebServicesReads(self.name, self.soap, shapes, self.seen, precision=self.precision,
                                      window=self.window, window_records=self.window_records,
                                      history_start=self.history_start, gl_account_types=self.gl_account_types,
                                      coarse_stamps=self.coarse_stamps)
        self.orders = Orders(self.soap, self.get, lambda: self._now(), order_type_id=self.order_type_id,
                             quote_type_id=self.quote_type_id,
                             order_batch_id=self.order_batch_id)

    @property
    def sba_company(self) -> str:
        return company_of(self.sba_url)

    def _make_auth(self) -> httpx.Auth:
        if self.auth_kind == "basic":
            if not self.user:
                raise ConfigError(f"systems.{self.name}.user is missing (DOMAIN\\name) for auth = \"basic\"")
            return httpx.BasicAuth(self.user, self.context.secrets.require(self.name, "password"))
        password = self.context.secrets.require(self.name, "password") if self.user else None
        return NegotiateAuth(self.user, password)

    def close(self) -> None:
        self.http.close()

    def call(self, operation: str, /, **params: Any) -> Any:
        """One Web Services operation with the company context."""
        return self.soap.call(operation, **params)

    def unavailable(self, entity: str) -> str | None:
        """Why ``entity`` cannot be read or written with this configuration (SBA without Web Services), or None."""
        if entity in WEB_SERVICES_ONLY and not self.web_services:
            what = {"glAccounts": "GL accounts", "glTransactions": "journal entries",
                    "salesOrders": "sales orders", "salesQuotes": "sales quotes"}[entity]
            return (f"{self.name}: {what} are not in the Service Based Architecture's published resources; set "
                    f"base_url in [systems.{self.name}] to the Web Services address (DynamicsGPService.asmx) and "
                    "company_id to read them there, or leave this flow out of pairs.*.flows")
        return None

    # -- reads ---------------------------------------------------------------------------------------------------
    def coarse_stamps(self, entity: str) -> bool:
        """Card and journal dates carry no time: two versions of one day share a stamp (the engine then tells
        them apart by content). Lists compared whole (SBA, the chart of accounts) stamp the moment a content was
        first seen."""
        return self.precision == "date" and entity in DATED_ENTITIES and not (
            self.transport == "sba" and entity in SBA_RESOURCES)

    def read_clock(self, entity: str) -> datetime | None:
        """Where the last read of a dated entity lets the engine close its window (see ``WebServicesReads``)."""
        return self.reads.read_clock(entity)

    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        """Records changed in [since, until), ascending by (modified, id), read in ModifiedDate windows of
        ``window_days`` (GP returns whole lists: the window bounds each answer)."""
        until = until or self._now()
        reason = self.unavailable(entity)
        if reason:
            log.warning("%s", reason)  # the engine asks targets only; a source flow reads nothing, and says why
            return
        if self.transport == "sba" and entity in SBA_RESOURCES:
            records = self.sba.records(entity)
            for stamp, record in self.seen.changes(entity, [(r.id, r.data) for r in records], since, until):
                yield Record(self.name, entity, record["id"], stamp, record)
            return
        yield from self.reads.changes(entity, since, until)

    def field_names(self, entity: str) -> frozenset[str] | None:
        """The fields records.py makes each entity's records of (from GP's fixed objects: no call needed), and
        those a sales order or quote is created from."""
        fields = RECORD_FIELDS.get(entity)
        return fields | ORDER_FIELDS if fields is not None and entity in DOCUMENTS else fields

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
            yield from (str(_id(raw.get("Key"))) for raw in self.sba.rows(entity))
        elif entity == "glAccounts":
            yield from (account["id"] for account in self.reads.gl_accounts())
        elif entity in ("customers", "vendors", "glTransactions"):
            yield from (self.reads.summary_id(entity, summary) for summary in self.reads.summaries(entity, {}))
        else:
            yield from super().record_ids(entity)

    def _gl_accounts(self) -> list[dict[str, Any]]:
        return self.reads.gl_accounts()

    def get(self, entity: str, id: str) -> Record | None:
        """The current record (replay and re-reads); None when GP no longer has it."""
        reason = self.unavailable(entity)
        if reason:
            raise ConfigError(reason)
        if self.transport == "sba" and entity in SBA_RESOURCES:
            return self.sba.get(entity, id)
        return self.reads.get(entity, id)

    # -- writes --------------------------------------------------------------------------------------------------
    def write_calls(self, entity: str, payloads: list[dict[str, Any]], key: str,
                    ids: list[str | None] | None = None) -> int:
        """The calls ``write`` makes, for a dry run's estimate: per order a look for it by number and the
        CreateSalesOrder, the operation's policy once a run, and with Windows authentication the two exchanges of
        a handshake (a write goes out on a connection of the write threads, which authenticates on first use)."""
        if not payloads:
            return 0
        handshake = 2 if self.auth_kind != "basic" else 0
        return 2 * len(payloads) + (not self.soap.has_policy(DOCUMENTS[entity][0])) + handshake

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
        return write_each(zip(payloads, known), lambda each: self.orders.create(each[0], key, each[1], entity))

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
                if self.sba.fetch(help_url) is None:
                    raise ConfigError(f"{self.name}: no SBA help page at {help_url}; check the server, port and "
                                      "tenant in sba_url (GPService must be installed and use https)")
                details.append("SBA help page read")
                customers = self.sba.rows("customers")
                details.append(f"company {self.sba_company!r} readable ({len(customers)} customers)")
                if not self.web_services:
                    warnings.append("GL accounts, journal entries and sales orders are not in SBA: their flows are "
                                    f"skipped; set base_url (Web Services) in [systems.{self.name}] to use them")
            if self.web_services:
                url = self.base_url
                details.append(f"Web Services (legacy SOAP endpoint), {who}")
                self.soap.service(fresh=True)
                details.append("WSDL read")
                self.soap.call("GetCustomerList", criteria={"Id": {"EqualValue": ""}})
                details.append(f"company {self.company_id} readable")
                self.soap.policy("CreateSalesOrder")
                details.append("CreateSalesOrder policy available")
        except AuthError as exc:
            return PingResult(self.name, False, target, tuple(details), error=str(exc), exit_code=EXIT_AUTH)
        except Unreachable as exc:
            return PingResult(self.name, False, target, tuple(details), error=unreachable(exc, url, self.sba_url),
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


__all__ = ["GPConnector", "register", "SeenList", "ENTITIES"]
