"""The Dynamics sandbox served in-process, three connector configurations on it (cloud BC with Entra, on-prem BC
API with Basic, NAV page web services with Basic), and a webhook receiver the sandbox notifies in-process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mlconnector.config import SystemConfig
from mlconnector.sandbox.common import InProcessTransport
from mlconnector.sandbox.dynamics import DynamicsSandbox, create_app
from mlconnector.secrets import SecretStore
from mlconnector.state import State
from mlconnector.systems import ConnectorContext
from mlconnector.systems.dynamics import DynamicsConnector
from mlconnector.webhooks import Inbox, create_receiver
from tests.helpers import Recording

TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "0b7c8f0e-1111-2222-3333-444455556666"
CLIENT_SECRET = "cs~Q8f3kLz0pV7mN2xR5tY9wB4hJ6gD1sA"
USER = "SVC-MLCONNECTOR"
ACCESS_KEY = "Xq8s5Ga3JdV2hYbNwU6kLmPrT9eZcF1oA4iS7uB0yH="
COMPANY = "CRONUS USA, Inc."
NOTIFY_URL = "http://listener.test/hooks/{name}"

CONFIGS: dict[str, dict[str, Any]] = {
    "bc-cloud": {"kind": "bc", "tenant": TENANT, "environment": "production", "client_id": CLIENT_ID,
                 "company": COMPANY, "base_url": f"http://bc.test/v2.0/{TENANT}/production",
                 "token_url": f"http://bc.test/{TENANT}/oauth2/v2.0/token"},
    "bc-onprem": {"kind": "bc", "base_url": "http://bc.test:7048/BC210", "auth": "basic", "user": USER,
                  "company": COMPANY},
    "nav": {"kind": "nav", "base_url": "http://nav.test:7048/DynamicsNAV110", "user": USER, "company": COMPANY},
}
SECRETS = {"bc-cloud": ("client_secret", CLIENT_SECRET), "bc-onprem": ("password", ACCESS_KEY),
           "nav": ("password", ACCESS_KEY)}


@dataclass
class DynamicsEnv:
    config: str
    app: Any
    sandbox: DynamicsSandbox
    transport: Recording
    company: str
    state_path: Path
    connectors: list[DynamicsConnector] = field(default_factory=list)
    receiver_connectors: dict[str, Any] = field(default_factory=dict)

    @property
    def page_mode(self) -> bool:
        return self.config == "nav"

    def system(self, name: str | None = None, **overrides: Any) -> SystemConfig:
        settings = {**CONFIGS[self.config], **overrides}
        kind = settings.pop("kind")
        return SystemConfig(name or self.config, kind, settings)

    def connector(self, name: str | None = None, *, state: State | None = None, **overrides: Any) -> DynamicsConnector:
        system = self.system(name, **overrides)
        store = SecretStore()
        field_name, _ = SECRETS[self.config]
        if system.name != self.config and store.get(system.name, field_name) is None:
            store.set(system.name, field_name, store.get(self.config, field_name) or "")
        made = DynamicsConnector(system, ConnectorContext(secrets=SecretStore(), transport=self.transport,
                                                          state=state), sleep=lambda s: None)
        self.connectors.append(made)
        self.receiver_connectors[system.name] = made
        return made

    def close(self) -> None:
        for made in self.connectors:
            made.close()
        self.transport.inner.close()  # type: ignore[attr-defined]


def make_env(config: str, tmp_path: Path) -> DynamicsEnv:
    holder: dict[str, Any] = {}

    async def receiver(scope: Any, receive: Any, send: Any) -> None:
        await holder["app"](scope, receive, send)

    app = create_app(notify_transport=httpx.ASGITransport(app=receiver), debounce=0.05)
    sandbox: DynamicsSandbox = app.state.dynamics
    sandbox.register_app(TENANT, CLIENT_ID, CLIENT_SECRET)
    sandbox.set_web_service_user(USER, ACCESS_KEY)
    sandbox.webhook_settings.retry_delays = (0.05, 0.05)
    company = sandbox.seed_demo(COMPANY)
    field_name, value = SECRETS[config]
    SecretStore().set(config, field_name, value)
    env = DynamicsEnv(config, app, sandbox, Recording(InProcessTransport(app)), company,
                      tmp_path / "state" / "state.db")
    inbox = Inbox(env.state_path, {(config, e): ["bc-zoho"] for e in
                                   ("customers", "vendors", "items", "salesOrders", "postedSalesInvoices")})
    holder["app"] = create_receiver(env.receiver_connectors, inbox)
    holder["inbox"] = inbox
    return env
