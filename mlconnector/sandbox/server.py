"""The sandboxes served over real HTTP: uvicorn on loopback in background threads, one port per emulated system,
with fresh credentials registered in each and the seed data loaded.

``start(erps=("nav", "bc"), host="127.0.0.1", port=0, seed="small", faults=None)`` returns a ``Sandboxes``
with every URL and credential a client needs; ``stop()`` (or leaving its ``with`` block) shuts them down.

One Dynamics emulator serves both ERPs, as one server can: NAV through its on-premises page web services
(``http://HOST:PORT/DynamicsNAV110/ODataV4``, Basic auth with a web service access key) in company
"CRONUS International Ltd.", and Business Central through the online URL shape
(``http://HOST:PORT/v2.0/{tenant}/{environment}/api/v2.0``, Entra client-credentials tokens from
``http://HOST:PORT/{tenant}/oauth2/v2.0/token``) in company "CRONUS USA, Inc.". Each ERP gets its own Zoho CRM
org on a port of its own, since a two-way pair would otherwise carry the other ERP's accounts back into its ERP.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from mlconnector.sandbox.common import Faults
from mlconnector.sandbox.dynamics import DynamicsSandbox
from mlconnector.sandbox.dynamics import create_app as create_dynamics_app
from mlconnector.sandbox.seed import SeedSize, Seeded, seed_company
from mlconnector.sandbox.zoho import ZohoSandbox
from mlconnector.sandbox.zoho import create_app as create_zoho_app

ERPS = ("nav", "bc")
NAV_INSTANCE = "DynamicsNAV110"
NAV_COMPANY = "CRONUS International Ltd."
BC_COMPANY = "CRONUS USA, Inc."
BC_ENVIRONMENT = "production"
# The fields the pairs upsert on must be "Do not allow duplicate values" in Zoho (Contacts.Email already is).
ZOHO_UNIQUE_FIELDS = (("Accounts", "Account_Number"), ("Products", "Product_Code"), ("Sales_Orders", "ERP_Number"),
                      ("Invoices", "ERP_Number"))
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


@dataclass
class Sandboxes:
    """The running sandboxes: where they are, how to get in, and their state for helpers (edit, modify...)."""

    host: str
    dynamics_url: str
    dynamics: DynamicsSandbox
    nav: NavAccess | None = None
    bc: BcAccess | None = None
    zoho: dict[str, ZohoAccess] = field(default_factory=dict)          # per ERP: its CRM org
    zoho_sandboxes: dict[str, ZohoSandbox] = field(default_factory=dict)
    seeded: dict[str, Seeded] = field(default_factory=dict)            # per ERP
    _servers: list[tuple[uvicorn.Server, threading.Thread]] = field(default_factory=list, repr=False)

    def company(self, erp: str) -> str:
        return NAV_COMPANY if erp == "nav" else BC_COMPANY

    def stop(self, timeout: float = 5.0) -> None:
        """Shut every server down and wait for its thread."""
        for server, _ in self._servers:
            server.should_exit = True
        for _, thread in self._servers:
            thread.join(timeout=timeout)
        self._servers.clear()

    def __enter__(self) -> "Sandboxes":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def bind(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket; port 0 picks a free one. Connections are refused until served."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SandboxStartError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): "
                                "pick other ports with --port, or 0 for free ones") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(app: Any, sock: socket.socket, name: str) -> tuple[uvicorn.Server, threading.Thread]:
    """Serve an ASGI app on a bound socket in a daemon thread; returns once it accepts connections."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"sandbox-{name}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise SandboxStartError(f"the {name} sandbox did not start on {url_of(sock)}")
        time.sleep(0.01)
    return server, thread


def start(erps: tuple[str, ...] = ERPS, *, host: str = "127.0.0.1", port: int = 0, seed: str | int = "small",
          faults: str | None = None, seed_number: int = 7, debounce: float = 0.2) -> Sandboxes:
    """Start the Dynamics sandbox (serving the given ERPs) and one Zoho org per ERP, seeded and with fresh
    credentials. ``port``: the Dynamics port; the Zoho orgs take the next ones (0: free ports for all)."""
    unknown = set(erps) - set(ERPS)
    if unknown or not erps:
        raise ValueError(f"erps must be some of {', '.join(ERPS)}")
    size = SeedSize.parse(seed)
    Faults.parse(faults)  # a bad spec fails before anything starts
    sockets = [bind(host, port + index if port else 0) for index in range(1 + len(erps))]
    try:
        return _start(erps, host, sockets, size, faults, seed_number, debounce)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise


def _start(erps: tuple[str, ...], host: str, sockets: list[socket.socket], size: SeedSize, faults: str | None,
           seed_number: int, debounce: float) -> Sandboxes:
    dynamics_url = url_of(sockets[0])
    app = create_dynamics_app(faults=Faults.parse(faults), debounce=debounce)
    dynamics: DynamicsSandbox = app.state.dynamics
    running = Sandboxes(host=host, dynamics_url=dynamics_url, dynamics=dynamics)
    if "nav" in erps:
        user, key = "MLCONNECTOR", secrets.token_urlsafe(32)
        dynamics.set_web_service_user(user, key)
        company = dynamics.create_company(NAV_COMPANY, currency_code="GBP")
        running.seeded["nav"] = seed_company(dynamics, company, style="nav", size=size, seed=seed_number)
        running.nav = NavAccess(f"{dynamics_url}/{NAV_INSTANCE}", NAV_COMPANY, user, key)
    if "bc" in erps:
        tenant, client_id, secret = str(uuid.uuid4()), str(uuid.uuid4()), secrets.token_urlsafe(30)
        dynamics.register_app(tenant, client_id, secret)
        company = dynamics.create_company(BC_COMPANY, currency_code="USD")
        running.seeded["bc"] = seed_company(dynamics, company, style="bc", size=size, seed=seed_number)
        running.bc = BcAccess(f"{dynamics_url}/v2.0/{tenant}/{BC_ENVIRONMENT}",
                              f"{dynamics_url}/{tenant}/oauth2/v2.0/token", tenant, BC_ENVIRONMENT, BC_COMPANY,
                              client_id, secret)
    try:
        running._servers.append(serve(app, sockets[0], "dynamics"))
        for erp, sock in zip(erps, sockets[1:]):
            url = url_of(sock)
            zoho_app = create_zoho_app(faults=faults, api_domain=url)
            org: ZohoSandbox = zoho_app.state.zoho
            for module, unique in ZOHO_UNIQUE_FIELDS:
                org.mark_unique(module, unique)
            client = org.register_client()
            running.zoho[erp] = ZohoAccess(url, client.client_id, client.client_secret,
                                           org.issue_refresh_token(client.client_id))
            running.zoho_sandboxes[erp] = org
            running._servers.append(serve(zoho_app, sock, f"zoho-{erp}"))
    except BaseException:
        running.stop()
        raise
    return running
