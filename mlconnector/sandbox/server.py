"""The sandboxes served over real HTTP: uvicorn on loopback in background threads, one port per emulated system,
with fresh credentials registered in each and the seed data loaded.

``start(erps=("nav", "bc"), zuora=False, host="127.0.0.1", port=0, seed="small", faults=None)`` returns a
``Sandboxes`` with every URL and credential a client needs; ``stop()`` (or leaving its ``with`` block) shuts
them down. ``start_pairs(("fo-zoho", ...))`` starts what the named pairs need.

One Dynamics emulator serves both NAV and Business Central, as one server can: NAV through its on-premises page
web services (``http://HOST:PORT/DynamicsNAV110/ODataV4``, Basic auth with a web service access key) in company
"CRONUS International Ltd.", and Business Central through the online URL shape
(``http://HOST:PORT/v2.0/{tenant}/{environment}/api/v2.0``, Entra client-credentials tokens from
``http://HOST:PORT/{tenant}/oauth2/v2.0/token``) in company "CRONUS USA, Inc.". Finance & Operations (OData at
``/data``, Entra tokens, legal entity USMF), Dynamics GP (Web Services SOAP with Windows authentication:
NTLM/Negotiate) and Zuora (OAuth client credentials, callouts) each get an emulator of their own. Each
ERP paired with Zoho gets its own Zoho CRM org on a port of its own, since a two-way pair would otherwise carry
another ERP's accounts back into its ERP. nav-zuora uses the same NAV company as nav-zoho, with the two
Zuora status fields added to its Customer card (as a NAV partner would).

Ports, from ``port`` on: Dynamics, Zoho (nav), Zoho (bc), F&O, Zoho (fo), GP, Zoho (gp), Zuora; the ones a
start does not serve are skipped.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import uvicorn

from mlconnector.sandbox.common import Faults, ServerDate
from mlconnector.sandbox.dynamics import DynamicsSandbox
from mlconnector.sandbox.dynamics import create_app as create_dynamics_app
from mlconnector.sandbox.seed import SeedSize, Seeded, seed_company
from mlconnector.sandbox.tls import TlsFiles
from mlconnector.sandbox.zoho import ZohoSandbox
from mlconnector.sandbox.zoho import create_app as create_zoho_app

ERPS = ("nav", "bc")                    # the ERPs of the Dynamics emulator
ZOHO_ERPS = ("nav", "bc", "fo", "gp")   # the ERPs paired with a Zoho org of their own, in port order
PAIRS = {"nav-zoho": "nav", "bc-zoho": "bc", "fo-zoho": "fo", "gp-zoho": "gp", "nav-zuora": "zuora"}
NAV_INSTANCE = "DynamicsNAV110"
NAV_COMPANY = "CRONUS International Ltd."
BC_COMPANY = "CRONUS USA, Inc."
BC_ENVIRONMENT = "production"
FO_ENVIRONMENT = "mlconnector-sandbox.operations.dynamics.com"
FO_LEGAL_ENTITY = "USMF"
FO_MODIFIED_FIELDS = {"CustomersV3": "ModifiedDateTime", "ReleasedProductsV2": "ModifiedDateTime",
                      "VendorsV2": "ModifiedDateTime"}
GP_DOMAIN_USER = "SANDBOX\\svc-mlconnector"
ZUORA_CALLOUT_USER = "zuora"
# The fields the pairs upsert on must be "Do not allow duplicate values" in Zoho (Contacts.Email already is).
ZOHO_UNIQUE_FIELDS = (("Accounts", "Account_Number"), ("Products", "Product_Code"), ("Sales_Orders", "ERP_Number"),
                      ("Invoices", "ERP_Number"))
ZOHO_UNIQUE_EXTRA = {"fo": (("Vendors", "ERP_Number"),),
                     "bc": (("Vendors", "ERP_Number"), ("Purchase_Orders", "ERP_Number")),   # the optional flows
                     "gp": (("Contacts", "GP_Contact_Id"), ("Vendors", "GP_Vendor_Id"),
                            ("GL_Accounts", "GL_Account_Number"), ("GL_Journal_Entries", "GL_Journal_Id"))}
# The NAV Customer card fields nav-zuora writes Zuora's invoice and payment status to (a table extension).
NAV_STATUS_FIELDS = {"Zuora_Invoice_Status": "zuoraInvoiceStatus", "Zuora_Payment_Status": "zuoraPaymentStatus",
                     "Zuora_Account_Id": "zuoraAccountId"}
DEFAULT_PORT = 8400


class SandboxStartError(Exception):
    """A sandbox could not start (most often: its port is taken)."""


@dataclass(frozen=True)
class NavAccess:
    """NAV on-premises: page web services with Basic auth (user + web service access key)."""

    base_url: str          # the server instance: {base_url}/ODataV4/Company('...')/Customer
    company: str
    user: str
    access_key: str


@dataclass(frozen=True)
class BcAccess:
    """Business Central online: API v2.0 with Entra client-credentials tokens."""

    base_url: str          # .../v2.0/{tenant}/{environment}; the API is {base_url}/api/v2.0
    token_url: str
    tenant: str
    environment: str
    company: str
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class ZohoAccess:
    """One Zoho CRM org: its accounts server, API and upload host are all ``url``."""

    url: str
    client_id: str
    client_secret: str
    refresh_token: str


@dataclass(frozen=True)
class FinOpsAccess:
    """Finance & Operations: OData at ``{base_url}/data``, Entra client-credentials tokens for ``environment``."""

    base_url: str
    token_url: str
    tenant: str
    environment: str
    legal_entity: str
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class GpAccess:
    """Dynamics GP Web Services (legacy SOAP endpoint) with a Windows domain account (NTLM/Negotiate)."""

    base_url: str          # the DynamicsGPService.asmx address
    company_id: int
    user: str              # DOMAIN\\name
    password: str


@dataclass(frozen=True)
class ZuoraAccess:
    """A Zuora tenant: REST API and OAuth at ``base_url``; callouts authenticate with Basic ``callout_user``."""

    base_url: str
    client_id: str
    client_secret: str
    callout_user: str
    callout_password: str


@dataclass
class Sandboxes:
    """The running sandboxes: where they are, how to get in, and their state for helpers (edit, modify...)."""

    host: str
    dynamics_url: str = ""
    dynamics: DynamicsSandbox | None = None        # None when neither NAV nor BC is served
    nav: NavAccess | None = None
    bc: BcAccess | None = None
    zoho: dict[str, ZohoAccess] = field(default_factory=dict)          # per ERP: its CRM org
    zoho_sandboxes: dict[str, ZohoSandbox] = field(default_factory=dict)
    seeded: dict[str, Seeded] = field(default_factory=dict)            # per Dynamics ERP
    finops: FinOpsAccess | None = None
    finops_sandbox: Any = None                                          # FinOpsSandbox
    gp: GpAccess | None = None
    gp_sandbox: Any = None                                              # GPSandbox
    zuora: ZuoraAccess | None = None
    zuora_sandbox: Any = None                                           # ZuoraSandbox
    summaries: dict[str, str] = field(default_factory=dict)            # per system: what it was seeded with
    tls: TlsFiles | None = None                                         # served over https with this certificate
    bare: bool = False                                                  # Zoho orgs without the pairs' set-up
    _servers: list[tuple[uvicorn.Server, threading.Thread]] = field(default_factory=list, repr=False)

    def url(self, sock: socket.socket) -> str:
        return url_of(sock, https=self.tls is not None)

    def serve(self, app: Any, sock: socket.socket, name: str) -> None:
        self._servers.append(serve(app, sock, name, self.tls))

    def company(self, erp: str) -> str:
        return NAV_COMPANY if erp in ("nav", "zuora") else BC_COMPANY

    def stop(self, timeout: float = 5.0) -> None:
        """Shut every server down and wait for its thread; undo the process-wide schema extensions."""
        for server, _ in self._servers:
            server.should_exit = True
        for _, thread in self._servers:
            thread.join(timeout=timeout)
        self._servers.clear()
        if self.gp_sandbox is not None:
            self.gp_sandbox.auth.close()

    def __enter__(self) -> "Sandboxes":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def bind(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket; port 0 picks a free one. Connections are refused until served."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio switches Nagle off (TCP_NODELAY) only on sockets that say so, and
    # with Nagle on, each response's header and body writes wait out the client's delayed ACK (~40 ms a call).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SandboxStartError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): "
                                "pick other ports with --port, or 0 for free ones") from None
    return sock


def url_of(sock: socket.socket, https: bool = False) -> str:
    host, port = sock.getsockname()[:2]
    scheme = "https" if https else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def serve(app: Any, sock: socket.socket, name: str,
          tls: TlsFiles | None = None) -> tuple[uvicorn.Server, threading.Thread]:
    """Serve an ASGI app on a bound socket in a daemon thread (over https with ``tls``); returns once it accepts
    connections."""
    # One Date header on every answer: the emulator's own where it keeps a clock (Zoho, Zuora), else now.
    # uvicorn's own would come first and make two.
    dated = ServerDate(app, now=lambda: datetime.now(timezone.utc), keep=True)
    server = uvicorn.Server(uvicorn.Config(dated, log_level="warning", lifespan="off", access_log=False,
                                           date_header=False,
                                           ssl_certfile=str(tls.certificate) if tls else None,
                                           ssl_keyfile=str(tls.key) if tls else None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"sandbox-{name}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise SandboxStartError(f"the {name} sandbox did not start on {url_of(sock, tls is not None)}")
        time.sleep(0.01)
    return server, thread


def start_pairs(pairs: tuple[str, ...] | list[str] = tuple(PAIRS), **kwargs: Any) -> Sandboxes:
    """Start what the named pairs need (``start``'s keyword arguments apply)."""
    unknown = [p for p in pairs if p not in PAIRS]
    if unknown or not pairs:
        raise ValueError(f"pairs must be some of {', '.join(PAIRS)}")
    erps = tuple(erp for erp in ZOHO_ERPS if any(PAIRS[p] == erp for p in pairs))
    return start(erps, zuora="nav-zuora" in pairs, **kwargs)


def start(erps: tuple[str, ...] = ERPS, *, zuora: bool = False, host: str = "127.0.0.1", port: int = 0,
          seed: str | int = "small", faults: str | None = None, seed_number: int = 7,
          debounce: float = 0.2, tls: TlsFiles | None = None, bare: bool = False) -> Sandboxes:
    """Start the emulators of the given ERPs (some of nav, bc, fo, gp), each with a Zoho org of its own, and
    with ``zuora`` a Zuora tenant and NAV for nav-zuora; seeded and with fresh credentials. ``port``: the first
    port; the others take the next ones in the order of the module docstring (0: free ports for all). ``tls``: serve
    https with that certificate. ``bare``: Zoho orgs and NAV as a customer starts them, without the custom fields,
    custom modules and unique fields the pairs need (``mlconnector setup --apply`` adds what the APIs allow)."""
    unknown = set(erps) - set(ZOHO_ERPS)
    if unknown or not (erps or zuora):
        raise ValueError(f"erps must be some of {', '.join(ZOHO_ERPS)}")
    size = SeedSize.parse(seed)
    Faults.parse(faults)  # a bad spec fails before anything starts
    dynamics_erps = tuple(e for e in ERPS if e in erps)
    names = (["dynamics"] if dynamics_erps or zuora else []) + [f"zoho-{e}" for e in dynamics_erps]
    for erp in ("fo", "gp"):
        if erp in erps:
            names += [erp, f"zoho-{erp}"]
    if zuora:
        names.append("zuora")
    sockets = {name: bind(host, port + index if port else 0) for index, name in enumerate(names)}
    running = Sandboxes(host=host, tls=tls, bare=bare)
    try:
        _start_dynamics(running, sockets, dynamics_erps, zuora, size, faults, seed_number, debounce)
        for erp in ("fo", "gp"):
            if erp in erps:
                (_start_finops if erp == "fo" else _start_gp)(running, sockets[erp], faults)
                _start_zoho(running, erp, sockets[f"zoho-{erp}"], faults)
        if zuora:
            _start_zuora(running, sockets["zuora"], faults)
    except BaseException:
        running.stop()
        for sock in sockets.values():
            sock.close()
        raise
    return running


def _start_dynamics(running: Sandboxes, sockets: dict[str, socket.socket], erps: tuple[str, ...], zuora: bool,
                    size: SeedSize, faults: str | None, seed_number: int, debounce: float) -> None:
    if "dynamics" not in sockets:
        return
    dynamics_url = running.url(sockets["dynamics"])
    app = create_dynamics_app(faults=Faults.parse(faults), debounce=debounce)
    dynamics: DynamicsSandbox = app.state.dynamics
    running.dynamics_url, running.dynamics = dynamics_url, dynamics
    if "nav" in erps or zuora:
        user, key = "MLCONNECTOR", secrets.token_urlsafe(32)
        dynamics.set_web_service_user(user, key)
        company = dynamics.create_company(NAV_COMPANY, currency_code="GBP")
        running.seeded["nav"] = seed_company(dynamics, company, style="nav", size=size, seed=seed_number)
        running.summaries["nav"] = running.seeded["nav"].summary()
        running.nav = NavAccess(f"{dynamics_url}/{NAV_INSTANCE}", NAV_COMPANY, user, key)
        if zuora and not running.bare:
            _extend_nav_customer_card(dynamics)
            # the journal batches nav-zuora books Zuora invoices and payments in (a NAV administrator's setup)
            dynamics.add_journal_batch(company, "SALES", "ZUORA", template_type="Sales", bal_account_no="6110")
            dynamics.add_journal_batch(company, "CASHRCPT", "ZUORA", bal_account_type="Bank_x0020_Account",
                                       bal_account_no="WWB-OPERATING")
    if "bc" in erps:
        tenant, client_id, secret = str(uuid.uuid4()), str(uuid.uuid4()), secrets.token_urlsafe(30)
        dynamics.register_app(tenant, client_id, secret)
        company = dynamics.create_company(BC_COMPANY, currency_code="USD")
        running.seeded["bc"] = seed_company(dynamics, company, style="bc", size=size, seed=seed_number)
        running.summaries["bc"] = running.seeded["bc"].summary()
        running.bc = BcAccess(f"{dynamics_url}/v2.0/{tenant}/{BC_ENVIRONMENT}",
                              f"{dynamics_url}/{tenant}/oauth2/v2.0/token", tenant, BC_ENVIRONMENT, BC_COMPANY,
                              client_id, secret)
    running.serve(app, sockets["dynamics"], "dynamics")
    for erp in erps:
        _start_zoho(running, erp, sockets[f"zoho-{erp}"], faults)


def _extend_nav_customer_card(dynamics: DynamicsSandbox) -> None:
    """What a NAV partner does for nav-zuora's card fields: text fields on Customer (a table extension), shown on
    the Customer card page published as the Customer web service (a page extension)."""
    dynamics.extend_table("customers", {name: "string" for name in NAV_STATUS_FIELDS.values()})
    dynamics.extend_page("Customer", NAV_STATUS_FIELDS)


def _start_zoho(running: Sandboxes, erp: str, sock: socket.socket, faults: str | None) -> None:
    url = running.url(sock)
    zoho_app = create_zoho_app(faults=faults, api_domain=url, bare=running.bare)
    org: ZohoSandbox = zoho_app.state.zoho
    # The org was signed up in the ERP company's currency (NAV's demo company keeps GBP).
    org.set_home_currency("GBP" if erp == "nav" else "USD")
    if not running.bare:
        for module, unique in (*ZOHO_UNIQUE_FIELDS, *ZOHO_UNIQUE_EXTRA.get(erp, ())):
            org.mark_unique(module, unique)
    client = org.register_client()
    running.zoho[erp] = ZohoAccess(url, client.client_id, client.client_secret,
                                   org.issue_refresh_token(client.client_id))
    running.zoho_sandboxes[erp] = org
    if erp == "gp":
        # Sales enter orders with the products GP sells: the org's product list carries GP's item numbers.
        items = running.gp_sandbox.company(running.gp.company_id).items.values()
        org.seed("Products", [{"Product_Name": item["Id"], "Product_Code": item["Id"], "Unit_Price": item["Price"],
                               "Description": item["Description"]} for item in items])
        running.summaries["zoho-gp"] = f"{len(items)} products (GP's item numbers), nothing else"
    running.serve(zoho_app, sock, f"zoho-{erp}")


def _start_finops(running: Sandboxes, sock: socket.socket, faults: str | None) -> None:
    from mlconnector.sandbox.finops import create_app as create_finops_app

    url = running.url(sock)
    app = create_finops_app(faults=Faults.parse(faults), resource=f"https://{FO_ENVIRONMENT}")
    finops = app.state.finops
    tenant, client_id, secret = str(uuid.uuid4()), str(uuid.uuid4()), secrets.token_urlsafe(30)
    # The app's F&O user has DAT as its default company, as in a fresh environment: reads must go cross-company.
    finops.register_app(tenant, client_id, secret, default_company="dat")
    company = finops.seed_demo(FO_LEGAL_ENTITY.lower())
    for entity, name in FO_MODIFIED_FIELDS.items():
        finops.add_modified_field(entity, name)
    counts = {what: len(finops.records(company, entity)) for what, entity in (
        ("customers", "CustomersV3"), ("released products", "ReleasedProductsV2"), ("vendors", "VendorsV2"))}
    running.summaries["fo"] = ", ".join(f"{n} {what}" for what, n in counts.items())
    running.finops, running.finops_sandbox = FinOpsAccess(
        url, f"{url}/{tenant}/oauth2/v2.0/token", tenant, FO_ENVIRONMENT, FO_LEGAL_ENTITY, client_id, secret), finops
    running.serve(app, sock, "finops")


def _start_gp(running: Sandboxes, sock: socket.socket, faults: str | None) -> None:
    from mlconnector.sandbox.gp import SAMPLE_COMPANY, SERVICE_PATH
    from mlconnector.sandbox.gp import create_app as create_gp_app

    url = running.url(sock)
    app = create_gp_app(faults=Faults.parse(faults))
    gp = app.state.gp
    gp.auth.per_connection = True  # served over sockets: a connection stays authenticated, as with IIS
    password = secrets.token_urlsafe(24)   # never a ':' (the NTLM account file's separator)
    gp.add_user(GP_DOMAIN_USER, password)
    company = gp.seed_demo(SAMPLE_COMPANY)
    running.gp_sandbox = gp
    running.gp = GpAccess(f"{url}{SERVICE_PATH}", SAMPLE_COMPANY, GP_DOMAIN_USER, password)
    running.summaries["gp"] = (f"company {company.name!r}: {len(company.customers)} customers, "
                               f"{len(company.vendors)} vendors, {len(company.gl_accounts)} GL accounts, "
                               f"{len(company.gl_transactions)} journal entries, {len(company.items)} items")
    running.serve(app, sock, "gp")


def _start_zuora(running: Sandboxes, sock: socket.socket, faults: str | None) -> None:
    from mlconnector.sandbox.zuora import create_app as create_zuora_app

    url = running.url(sock)
    app = create_zuora_app(faults=faults)
    zuora = app.state.zuora
    client = zuora.register_client()
    running.zuora_sandbox = zuora
    running.zuora = ZuoraAccess(url, client.client_id, client.client_secret, ZUORA_CALLOUT_USER,
                                secrets.token_urlsafe(24))
    running.summaries["zuora"] = "an empty tenant (accounts, products and subscriptions come from NAV)"
    running.serve(app, sock, "zuora")


def configure_zuora_callouts(running: Sandboxes, url: str) -> None:
    """Point Zuora's Invoice Posted and Payment Processed callouts at ``url`` (Basic auth, as set up in Zuora's
    Settings > Notifications, with "preemptive" ticked: credentials on the first try, no 401 round trip)."""
    assert running.zuora is not None and running.zuora_sandbox is not None
    for event in ("InvoicePosted", "PaymentProcessed"):
        running.zuora_sandbox.configure_callout(event, url, auth="basic", username=running.zuora.callout_user,
                                                password=running.zuora.callout_password, preemptive=True)
