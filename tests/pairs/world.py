"""Both sandboxes served in-process behind one transport, a connections.toml naming them, and the
secrets in environment variables: the pairs run exactly as they would against the real systems."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlconnector import api
from mlconnector.sandbox.common import HostRouter, InProcessTransport, SandboxClock
from mlconnector.sandbox.dynamics import DynamicsSandbox
from mlconnector.sandbox.dynamics import create_app as create_dynamics
from mlconnector.sandbox.zoho import ZohoSandbox
from mlconnector.sandbox.zoho import create_app as create_zoho
from mlconnector.state import StateStore
from tests.pairs.users import NavUser, ZohoUser

TENANT = "contoso.onmicrosoft.com"
BC_CLIENT_ID = "6f1c2a3b-0000-4000-8000-0000000000bc"
BC_SECRET = "bc~secret-2f9d8c7b6a5e4d3c2b1a"
NAV_USER = "SVC-MLCONNECTOR"
NAV_KEY = "nav-key-Q2w3E4r5T6y7U8i9O0p"
COMPANY = "CRONUS USA, Inc."
ZOHO_UNIQUE = {"Accounts": "Account_Number", "Products": "Product_Code", "Sales_Orders": "ERP_Number",
               "Invoices": "ERP_Number"}


async def _nobody_listening(scope: Any, receive: Any, send: Any) -> None:
    """Until a test starts `listen`, notifications are acknowledged and dropped (the poll is the safety net);
    Business Central's validation handshake is still answered, so subscriptions can be created."""
    from urllib.parse import parse_qs

    token = parse_qs(scope.get("query_string", b"").decode()).get("validationToken", [None])[0]
    body = (token or "").encode()
    await send({"type": "http.response.start", "status": 200 if token else 202,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


class _Late:
    """An ASGI app whose real app is set later (the listener exists only after the config is written)."""

    def __init__(self) -> None:
        self.app: Any = _nobody_listening

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@dataclass
class World:
    erp_kind: str
    zoho: ZohoSandbox
    dynamics: DynamicsSandbox
    company: str
    config_path: Path
    state_path: Path
    router: HostRouter
    listener_slot: _Late
    secrets: dict[str, str] = field(default_factory=dict)
    zoho_login: tuple[str, str, str] = ("", "", "")  # a CRM user's own client id, secret and refresh token

    def runtime(self) -> api.Runtime:
        return api.Runtime(config_path=self.config_path, transport=self.router)

    def zoho_user(self) -> ZohoUser:
        """Someone working in the Zoho org through its REST API."""
        return ZohoUser(self.router, "http://zoho.sandbox", *self.zoho_login)

    def nav_user(self) -> NavUser:
        """Someone working on NAV's cards through its page web services."""
        return NavUser(self.router, "http://erp.sandbox:7048/DynamicsNAV110", self.company, NAV_USER, NAV_KEY)

    def sync(self, pair: str, **kwargs: Any) -> api.RunResult:
        return api.sync(self.runtime(), pair, **kwargs)

    def state(self) -> StateStore:
        """The state as the commands open it: the file, or PostgreSQL where MLCONNECTOR_STATE_URL names it."""
        return self.runtime().open_state()

    def erp(self, entity: str) -> list[dict[str, Any]]:
        return self.dynamics.records(self.company, entity)

    def crm(self, module: str) -> list[dict[str, Any]]:
        return self.zoho.records(module)

    def account(self, number: str) -> dict[str, Any]:
        [found] = [a for a in self.crm("Accounts") if a.get("Account_Number") == number]
        return found

    def close(self) -> None:
        self.router.close()


def make_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, erp_kind: str, *, zoho_settings: str = "",
               edition: str = "enterprise", erp_settings: str = "", clocks_behind: float = 0) -> World:
    """``clocks_behind``: seconds both sandboxes' clocks start behind this host's, from before the seed, so a test
    can advance them (minutes between edits) without their stamps passing the connector's own clock."""
    listener_slot = _Late()
    notify = httpx.ASGITransport(app=listener_slot)
    zoho_clock, dynamics_clock = SandboxClock(), SandboxClock()
    for clock in (zoho_clock, dynamics_clock):
        clock.advance(seconds=-clocks_behind)
    zoho_app = create_zoho(api_domain="http://zoho.sandbox", notify_transport=notify, edition=edition,
                           clock=zoho_clock)
    zoho: ZohoSandbox = zoho_app.state.zoho
    client = zoho.register_client()
    refresh = zoho.issue_refresh_token(client.client_id)
    for module, unique in ZOHO_UNIQUE.items():
        try:
            zoho.mark_unique(module, unique)
        except KeyError:
            pass  # a module this edition lacks
    dynamics_app = create_dynamics(notify_transport=notify, debounce=0.05, clock=dynamics_clock)
    dynamics: DynamicsSandbox = dynamics_app.state.dynamics
    dynamics.register_app(TENANT, BC_CLIENT_ID, BC_SECRET)
    dynamics.set_web_service_user(NAV_USER, NAV_KEY)
    company = dynamics.seed_demo(COMPANY)
    router = HostRouter({"zoho.sandbox": InProcessTransport(zoho_app), "erp.sandbox": InProcessTransport(dynamics_app)})

    if erp_kind == "nav":
        erp = f'''[systems.nav]
kind = "nav"
base_url = "http://erp.sandbox:7048/DynamicsNAV110"
company = "{COMPANY}"
user = "{NAV_USER}"
'''
        secrets = {"MLCONNECTOR_NAV_PASSWORD": NAV_KEY}
    else:
        erp = f'''[systems.bc]
kind = "bc"
tenant = "{TENANT}"
environment = "production"
client_id = "{BC_CLIENT_ID}"
company = "{COMPANY}"
base_url = "http://erp.sandbox/v2.0/{TENANT}/production"
token_url = "http://erp.sandbox/{TENANT}/oauth2/v2.0/token"
notify_url = "http://listener.test/hooks/bc"
'''
        secrets = {"MLCONNECTOR_BC_CLIENT_SECRET": BC_SECRET}
    secrets |= {"MLCONNECTOR_ZOHO_CLIENT_SECRET": client.client_secret, "MLCONNECTOR_ZOHO_REFRESH_TOKEN": refresh}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    state_path = tmp_path / "state.db"
    monkeypatch.setenv("MLCONNECTOR_STATE", str(state_path))
    config_path = tmp_path / "connections.toml"
    config_path.write_text(erp + erp_settings + f'''
[systems.zoho]
kind = "zoho"
client_id = "{client.client_id}"
accounts_url = "http://zoho.sandbox"
api_domain = "http://zoho.sandbox"
upload_url = "http://zoho.sandbox"
notify_url = "http://listener.test/hooks/zoho"
bulk_poll_seconds = 0.05  # the emulator's jobs advance per poll, not with time: no need to wait between polls
{zoho_settings}
[pairs.nav-zoho]
overlap_seconds = 5

[pairs.bc-zoho]
overlap_seconds = 5
''')
    person = zoho.register_client()
    login = (person.client_id, person.client_secret, zoho.issue_refresh_token(person.client_id))
    return World(erp_kind, zoho, dynamics, company, config_path, state_path, router, listener_slot, secrets, login)


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
