"""The registry of system kinds: `kind` in connections.toml -> the factory of that system's connector."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mlconnector.config import SystemConfig
from mlconnector.errors import ConfigError
from mlconnector.http import CallCounter
from mlconnector.systems.base import Connector


@dataclass
class ConnectorContext:
    """What a connector needs from the running tool besides its own settings."""

    secrets: Any  # mlconnector.secrets.SecretStore (or anything with get/require/set/delete)
    counter: CallCounter = field(default_factory=CallCounter)
    # Tests and the in-process demo serve the systems from this process; real runs leave it None.
    transport: httpx.BaseTransport | None = None
    state: Any = None
    # Where the state file lives: host-wide records a system keeps (Zoho's token-mint and credit ledger)
    # go next to it. None: the default state directory.
    state_dir: Path | None = None
    # The state's shared ledger (``mlconnector.state.ledger``) where the state is in PostgreSQL: token mints and API
    # credits counted there, across hosts. None: in a file in state_dir, across this host's processes.
    ledger: Any = None
    # `ping`: no cached access token is used, so each system mints one and the stored credentials themselves are
    # proven (a rotated secret shows now, not when the cached token expires at night); the new one is cached.
    fresh_tokens: bool = False

    def token_cache(self, system: str) -> Any:
        """Where the system's access token is kept between runs (``mlconnector.auth.token_cache``)."""
        from mlconnector.auth import token_cache

        return token_cache(self.secrets, self.ledger, system, fresh=self.fresh_tokens)

    def __post_init__(self) -> None:
        if self.transport is not None and not isinstance(self.transport, _Borrowed):
            self.transport = _Borrowed(self.transport)

    def state_file(self, name: str) -> Path:
        """A file a system keeps beside the state file in use (``state_dir``, else the default state directory):
        Zoho's quota record, GP's cached WSDL and last-seen lists, the BC company id (the first two and the last
        in the ledger instead when there is one)."""
        if self.state_dir is not None:
            return self.state_dir / name
        from mlconnector.state import default_state_path

        return default_state_path().parent / name


class _Borrowed(httpx.BaseTransport):
    """A transport the caller owns: connectors closing their clients must not close it for the next run."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.handle_request = inner.handle_request  # type: ignore[method-assign]  # the inner one's, unwrapped

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


Factory = Callable[[SystemConfig, ConnectorContext], Connector]

# Built-in kinds, imported only when used so that start-up stays fast.
BUILTIN_KINDS: dict[str, str] = {
    "zoho": "mlconnector.systems.zoho",
    "bc": "mlconnector.systems.dynamics",
    "nav": "mlconnector.systems.dynamics",
    "gp": "mlconnector.systems.gp",
    "zuora": "mlconnector.systems.zuora",
    "finops": "mlconnector.systems.finops",
}

_FACTORIES: dict[str, Factory] = {}


def register_kind(kind: str, factory: Factory) -> None:
    _FACTORIES[kind] = factory


def unregister_kind(kind: str) -> None:
    _FACTORIES.pop(kind, None)


def known_kinds() -> list[str]:
    return sorted(set(_FACTORIES) | set(BUILTIN_KINDS))


def required_secrets(system: SystemConfig) -> tuple[str, ...]:
    """The secrets a configured system (a SystemConfig) cannot work without, as its connector reads them: what
    `ping` checks for all at once before it tries any."""
    settings, kind = system.settings, system.kind
    auth = settings.get("auth")
    if kind == "zoho":
        return ("client_secret",) if auth == "client_credentials" else ("client_secret", "refresh_token")
    if kind in ("nav", "bc"):
        from mlconnector.systems.dynamics.client import endpoint_of

        default = "entra" if kind == "bc" and not endpoint_of(system).on_premises else "basic"
        auth = auth or default
        if auth == "entra":
            return ("client_secret",)
        return ("password",) if settings.get("user") else ()
    if kind == "finops":
        return ("client_secret",)
    if kind == "gp":
        return ("password",) if settings.get("user") else ()
    if kind == "zuora":
        callouts = {"basic": ("callout_password",), "header": ("callout_secret",)}
        callout = callouts.get(str(settings.get("callout_auth") or "basic"), ())
        return ("client_secret",) + (callout if settings.get("notify_url") else ())
    return ()


def make_connector(system: SystemConfig, context: ConnectorContext) -> Connector:
    """Build the connector for one `[systems.NAME]` table."""
    if system.kind not in _FACTORIES and system.kind in BUILTIN_KINDS:
        module = importlib.import_module(BUILTIN_KINDS[system.kind])
        module.register()
    try:
        factory = _FACTORIES[system.kind]
    except KeyError:
        raise ConfigError(f"systems.{system.name}.kind = {system.kind!r} is not a known kind "
                          f"(known: {', '.join(known_kinds()) or 'none'})") from None
    return factory(system, context)
