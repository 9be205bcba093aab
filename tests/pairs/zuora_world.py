"""NAV (the Dynamics sandbox) and Zuora (the Zuora sandbox) in-process behind one transport, a connections.toml
naming them by region and environment, secrets in environment variables, and a listener slot for callouts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlconnector import api
from mlconnector.sandbox.common import HostRouter, InProcessTransport, SandboxClock
from mlconnector.sandbox.dynamics import DynamicsSandbox
from mlconnector.sandbox.dynamics import create_app as create_dynamics
from mlconnector.sandbox.zuora import ZuoraSandbox
from mlconnector.sandbox.zuora import create_app as create_zuora
from mlconnector.state import StateStore
from tests.pairs.users import BcUser, NavUser, ZuoraUser
from tests.pairs.world import COMPANY, NAV_KEY, NAV_USER, _Late

ZUORA_HOST = "rest.zuora.com"         # what region us2 + production resolves to
CALLOUT_PASSWORD = "callout-pw-7Hq2Zr9LmX"
STATUS_FIELDS = {"Zuora_Invoice_Status": "zuoraInvoiceStatus", "Zuora_Payment_Status": "zuoraPaymentStatus",
                 "Zuora_Account_Id": "zuoraAccountId"}


def extend_nav_customer_card(dynamics: DynamicsSandbox) -> None:
    """What a NAV partner does for the status flows: a table extension with two text fields on Customer, shown
    on the Customer card page published as the Customer web service (a page extension)."""
    dynamics.extend_table("customers", {api_name: "string" for api_name in STATUS_FIELDS.values()})
    dynamics.extend_page("Customer", STATUS_FIELDS)


class LoseResponses(httpx.BaseTransport):
    """Hands requests on, but for the next ``count`` POSTs to ``path`` lets Zuora do the work and then loses
    the answer, as a read timeout does: the client cannot know the order went through."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.path = ""
        self.count = 0
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.count and request.method == "POST" and request.url.path == self.path:
            self.count -= 1
            self.lost += 1
            raise httpx.ReadTimeout("injected: the server committed, the answer never came", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


@dataclass
class ZuoraWorld:
    zuora: ZuoraSandbox
    dynamics: DynamicsSandbox
    company: str
    config_path: Path
    state_path: Path
    router: HostRouter
    lossy: LoseResponses
    listener_slot: _Late
    secrets: dict[str, str] = field(default_factory=dict)
    zuora_login: tuple[str, str] = ("", "")  # a Zuora user's own OAuth client

    def runtime(self) -> api.Runtime:
        return api.Runtime(config_path=self.config_path, transport=self.router)

    def sync(self, **kwargs: Any) -> api.RunResult:
        return api.sync(self.runtime(), "nav-zuora", **kwargs)

    def zuora_user(self) -> ZuoraUser:
        """Someone working in the Zuora tenant through its REST API."""
        return ZuoraUser(self.router, f"https://{ZUORA_HOST}", *self.zuora_login)

    def nav_user(self) -> NavUser:
        """Someone working on NAV's cards through its page web services."""
        return NavUser(self.router, "http://erp.sandbox:7048/DynamicsNAV110", self.company, NAV_USER, NAV_KEY)

    def bc_user(self) -> BcUser:
        """Someone working in the company through BC API v2.0."""
        return BcUser(self.router, "http://erp.sandbox:7048/DynamicsNAV110", self.company, NAV_USER, NAV_KEY)

    def state(self) -> StateStore:
        """The state as the commands open it: the file, or PostgreSQL where MLCONNECTOR_STATE_URL names it."""
        return self.runtime().open_state()

    def erp(self, entity: str) -> list[dict[str, Any]]:
        return self.dynamics.records(self.company, entity)

    def customer(self, number: str) -> dict[str, Any]:
        [found] = [c for c in self.erp("customers") if c["number"] == number]
        return found

    def account(self, nav_number: str) -> dict[str, Any]:
        [found] = [a for a in self.zuora.records("accounts") if a.get("NAVCustomerNumber__c") == nav_number]
        return found

    def subscription(self, order_number: str) -> dict[str, Any]:
        [found] = [s for s in self.zuora.subscriptions() if s.get("NAVOrderNumber__c") == order_number]
        return found

    def close(self) -> None:
        self.router.close()


def make_zuora_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, zuora_settings: str = "",
                     pair_settings: str = "", faults: str | None = None, clocks_behind: float = 0,
                     nav_settings: str = "") -> ZuoraWorld:
    """``clocks_behind``: as make_world's (seconds both sandboxes' clocks start behind this host's);
    ``nav_settings``: more lines for [systems.nav] (``api = "api"``: NAV through API v2.0)."""
    listener_slot = _Late()
    notify = httpx.ASGITransport(app=listener_slot)
    zuora_clock, dynamics_clock = SandboxClock(), SandboxClock()
    for clock in (zuora_clock, dynamics_clock):
        clock.advance(seconds=-clocks_behind)
    zuora_app = create_zuora(notify_transport=notify, faults=faults, clock=zuora_clock)
    zuora: ZuoraSandbox = zuora_app.state.zuora
    client = zuora.register_client()
    for event in ("InvoicePosted", "PaymentProcessed"):
        zuora.configure_callout(event, "http://listener.test/hooks/zuora", auth="basic", username="zuora",
                                password=CALLOUT_PASSWORD)
    dynamics_app = create_dynamics(notify_transport=notify, debounce=0.05, clock=dynamics_clock)
    dynamics: DynamicsSandbox = dynamics_app.state.dynamics
    dynamics.set_web_service_user(NAV_USER, NAV_KEY)
    company = dynamics.seed_demo(COMPANY)
    extend_nav_customer_card(dynamics)
    lossy = LoseResponses(InProcessTransport(zuora_app))
    router = HostRouter({ZUORA_HOST: lossy, "erp.sandbox": InProcessTransport(dynamics_app)})
    secrets = {"MLCONNECTOR_NAV_PASSWORD": NAV_KEY, "MLCONNECTOR_ZUORA_CLIENT_SECRET": client.client_secret,
               "MLCONNECTOR_ZUORA_CALLOUT_PASSWORD": CALLOUT_PASSWORD}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    state_path = tmp_path / "state.db"
    monkeypatch.setenv("MLCONNECTOR_STATE", str(state_path))
    config_path = tmp_path / "connections.toml"
    config_path.write_text(f'''[systems.nav]
kind = "nav"
base_url = "http://erp.sandbox:7048/DynamicsNAV110"
company = "{COMPANY}"
user = "{NAV_USER}"
{nav_settings}
[systems.zuora]
kind = "zuora"
region = "us2"
environment = "production"
client_id = "{client.client_id}"
notify_url = "http://listener.test/hooks/zuora"
callout_auth = "basic"
callout_user = "zuora"
retry_backoff_seconds = 0.01
{zuora_settings}
[pairs.nav-zuora]
overlap_seconds = 5
{pair_settings}
''')
    person = zuora.register_client()
    return ZuoraWorld(zuora, dynamics, company, config_path, state_path, router, lossy, listener_slot, secrets,
                      (person.client_id, person.client_secret))
