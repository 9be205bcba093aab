"""`mlconnector config show`: the configuration in effect, each value with where it came from (the file, a default,
the environment, an option). Secrets appear as set or unset, with the store that holds them, never their values;
the alert webhook by its host only (its path is a secret for Slack and Teams)."""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any
from urllib.parse import urlsplit

from mlconnector import tenants
from mlconnector.config import ALERTS_WEBHOOK_ENV, Config, PairConfig
from mlconnector.systems import required_secrets

_PAIR_FIELDS = [f.name for f in fields(PairConfig) if f.name != "name"]


def report(config: Config, source: str, state_path: str, state_source: str, secrets: Any,
           raw: dict[str, Any]) -> dict[str, Any]:
    """``raw``: the file as parsed TOML (what it sets, to tell it from the defaults); ``secrets``: the secret store."""
    stored = {(e.system, e.field): e.source for e in secrets.list()} if config.systems else {}
    raw_pairs = raw.get("pairs", {})
    raw_state = raw.get("state", {}) if isinstance(raw.get("state"), dict) else {}
    return {
        "tenant": tenants.current(),  # whose config, secrets and state these are (--tenant), or None
        "config": {"path": str(config.path), "source": source},
        "state": {"path": state_path, "source": state_source},
        "audit_retention_days": _valued(config.audit_retention_days, "audit_retention_days" in raw_state),
        "secrets_backend": {"value": os.environ.get("MLCONNECTOR_SECRETS_BACKEND") or config.secrets_backend or "auto",
                            "source": "$MLCONNECTOR_SECRETS_BACKEND" if os.environ.get("MLCONNECTOR_SECRETS_BACKEND")
                            else ("file" if config.secrets_backend else "default")},
        "systems": {name: {"kind": system.kind,
                           "settings": {k: {"value": v, "source": "file"} for k, v in sorted(system.settings.items())},
                           "secrets": {field: _secret(stored, name, field) for field in _fields(system, stored)}}
                    for name, system in sorted(config.systems.items())},
        "pairs": {name: {key: _valued(_pair_value(pair, key, raw_pairs.get(name, {})), key in raw_pairs.get(name, {}))
                         for key in _PAIR_FIELDS}
                  for name, pair in sorted(config.pairs.items())},
        "alerts": _alerts(config, raw.get("alerts", {})),
    }


def _pair_value(pair: PairConfig, key: str, raw: Any) -> Any:
    """A pair's value as shown: its mappings as the file writes them (`mlconnector mappings PAIR` shows their
    effect), the rest as read."""
    if key == "mappings":
        return dict(raw.get("mappings", {})) if isinstance(raw, dict) else {}
    return getattr(pair, key)


def _valued(value: Any, in_file: bool) -> dict[str, Any]:
    return {"value": list(value) if isinstance(value, tuple) else value, "source": "file" if in_file else "default"}


def _fields(system: Any, stored: dict[tuple[str, str], str]) -> list[str]:
    needed = list(required_secrets(system))
    return needed + sorted(f for (name, f) in stored if name == system.name and f not in needed
                           and not f.endswith("_cache"))


def _secret(stored: dict[tuple[str, str], str], system: str, field: str) -> dict[str, Any]:
    where = stored.get((system, field))
    return {"set": where is not None, "source": where}


def _alerts(config: Config, raw: Any) -> dict[str, Any]:
    alerts = config.alerts
    webhook = None
    if alerts.webhook_url:
        parts = urlsplit(alerts.webhook_url)
        webhook = {"host": f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}",
                   "source": f"${ALERTS_WEBHOOK_ENV}" if os.environ.get(ALERTS_WEBHOOK_ENV) else "file"}
    raw = raw if isinstance(raw, dict) else {}
    return {"webhook": webhook, "command": _valued(alerts.command, "command" in raw),
            "repeat_hours": _valued(alerts.repeat_hours, "repeat_hours" in raw),
            "timeout_seconds": _valued(alerts.timeout_seconds, "timeout_seconds" in raw)}
