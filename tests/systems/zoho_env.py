"""The Zoho sandbox served in-process, an OAuth client with secrets in the test keyring, and connectors on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mlconnector.config import SystemConfig
from mlconnector.sandbox.common import InProcessTransport, SandboxClock
from mlconnector.sandbox.zoho import ZohoSandbox, create_app
from mlconnector.secrets import SecretStore
from mlconnector.systems import ConnectorContext
from mlconnector.systems.zoho import ZohoConnector
from tests.helpers import Recording

CLIENT_ID = "1000.TESTCLIENT"
CLIENT_SECRET = "cs-4f1d2e9b7a6c5d3e1f0a9b8c7d6e5f4a3b2c1d0e"
REDIRECT_URI = "http://localhost/callback"


class FrozenClock(SandboxClock):
    """Sandbox time that moves only when a test advances it, so equal Modified_Times are certain."""

    def __init__(self) -> None:
        super().__init__()
        self.start = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self.start + self.offset


@dataclass
class Receiver:
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def notify(request: Request) -> JSONResponse:
            self.bodies.append(await request.json())
            return JSONResponse({"ok": True})
        return Starlette(routes=[Route("/zoho/notify", notify, methods=["POST"])])


@dataclass
class ZohoEnv:
    app: Starlette
    zoho: ZohoSandbox
    inner: InProcessTransport
    transport: Recording
    clock: SandboxClock
    receiver: Receiver
    refresh_token: str

    def connector(self, name: str = "zoho", secrets: Any = None, state: Any = None, **settings: Any) -> ZohoConnector:
        config = SystemConfig(name, "zoho", {"client_id": CLIENT_ID, **settings})
        context = ConnectorContext(secrets=secrets or SecretStore(), transport=self.transport, state=state)
        return ZohoConnector(config, context, sleep=lambda s: None)

    def drain(self) -> None:
        self.inner.run(self.zoho.drain)


def make_env(*, data_centre: str = "us", faults: str | None = None, edition: str = "enterprise",
             system: str = "zoho", real_time: bool = False) -> ZohoEnv:
    """A sandbox org; its clock is frozen (equal Modified_Times are certain) unless ``real_time``, which channel
    tests need since the connector asks for expiries in real time."""
    clock = SandboxClock() if real_time else FrozenClock()
    receiver = Receiver()
    app = create_app(clock=clock, faults=faults, data_centre=data_centre, edition=edition,
                     notify_transport=httpx.ASGITransport(app=receiver.app()))
    zoho: ZohoSandbox = app.state.zoho
    zoho.register_client(CLIENT_ID, CLIENT_SECRET, redirect_uri=REDIRECT_URI)
    refresh = zoho.issue_refresh_token(CLIENT_ID)
    store = SecretStore()
    store.set(system, "client_secret", CLIENT_SECRET)
    store.set(system, "refresh_token", refresh)
    inner = InProcessTransport(app)
    return ZohoEnv(app, zoho, inner, Recording(inner), clock, receiver, refresh)
