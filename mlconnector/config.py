"""connections.toml -> typed, validated objects. Every error names the file, the key and the fix."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlconnector import tenants
from mlconnector.errors import ConfigError
from mlconnector.fieldmap.rules import FlowRules, parse_mappings
from mlconnector.secrets.kinds import is_secret_key
from mlconnector.urls import check_setting_urls, check_state_url, refuse_credentials_in_urls

CONFIG_ENV = "MLCONNECTOR_CONFIG"
DEFAULT_CONFIG = "connections.toml"

# Counts and sizes a [systems.NAME] table may set (any kind that reads the key), each with its allowed range.
SYSTEM_NUMBERS: dict[str, tuple[float, float, str]] = {
    "page_size": (1, 10_000, "records per read call"),
    "document_page_size": (1, 10_000, "documents per read call"),
    "coql_page_size": (1, 2_000, "rows per COQL call"),
    "zoql_batch_size": (1, 2_000, "rows per ZOQL batch"),
    "zoql_window_records": (2, 1_000_000, "records held to sort one ZOQL window"),
    "concurrency": (1, 100, "calls in flight at once"),
    "sub_concurrency": (1, 100, "resource-intensive calls in flight at once"),
    "batch_documents": (1, 1_000, "documents per $batch request"),
    "bulk_threshold": (0, 10_000_000, "records above which a first load uses Bulk Write; 0 never"),
    "bulk_poll_seconds": (0.01, 3_600, "seconds between looks at a bulk job"),
    "bulk_timeout_seconds": (1, 86_400, "seconds a bulk job may take"),
    "mint_limit": (1, 9, "access tokens minted per 10 minutes (Zoho refuses the 11th)"),
    "mint_wait_seconds": (0, 3_600, "seconds to wait for a mint slot"),
    "channel_hours": (0.01, 168, "hours a Zoho watch channel lives"),
    "renew_margin_hours": (0, 168, "hours before expiry a channel is renewed"),
    "daily_credit_budget": (0, 1_000_000_000, "API credits a day; 0 no limit"),
    "retry_attempts": (1, 100, "tries per call"),
    "retry_max_wait_seconds": (0, 3_600, "longest wait between tries"),
    "retry_backoff_seconds": (0, 600, "first wait between tries"),
    "delay_seconds": (0, 60, "seconds between calls"),
    "window_days": (0.001, 36_600, "days per read window"),
    "window_records": (1, 1_000_000, "records per read window"),
    "timeout_seconds": (1, 3_600, "seconds a call may take"),
    "posted_full_read_hours": (0, 8_784, "hours between whole reads of posted invoices; 0 every run"),
}
# Settings with a fixed set of values, checked at load (the others are checked as each connector starts).
SYSTEM_CHOICES: dict[str, tuple[str, ...]] = {
    # Zoho CRM editions (mlconnector.systems.zoho.EDITION_CONCURRENCY has a limit for each).
    "edition": ("free", "standard", "professional", "enterprise", "ultimate", "crmplus", "zohoone"),
}
PAIR_NUMBERS: dict[str, tuple[int, int]] = {
    "overlap_seconds": (0, 30 * 86_400),
    "batch_size": (1, 10_000),
    "credit_budget": (0, 1_000_000_000),
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")

PAIR_KEYS = {
    "systems": "role -> system name, e.g. { erp = \"nav\", crm = \"zoho\" }",
    "flows": "the flows to run by default (list of names)",
    "overlap_seconds": "seconds re-read before each watermark (clock skew, equal timestamps)",
    "batch_size": "records per write call",
    "credit_budget": "API credits a day the pair may spend (0: no limit)",
    "audit_payloads": "keep full payloads in audit rows (personal data!)",
    "options": "pair-specific settings (see the pair's documentation)",
    "on_delete": "flow -> what a record deleted in its source does to its target: ignore, unlink, flag or delete",
    "deletes_every_hours": "hours between whole reads of ids that find deletions in sources without a feed",
    "max_delete_fraction": "a flow stops, deleting nothing, when more of its linked records than this look deleted",
    "mappings": "flow -> your field mappings and filter: add, override, drop, transform, filter (see docs/mappings.md)",
}


@dataclass(frozen=True)
class SystemConfig:
    """One `[systems.NAME]` table: the kind of system plus its non-secret settings."""

    name: str
    kind: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    def setting(self, key: str, default: Any = None, *, required: bool = False, type_: type | tuple = object) -> Any:
        """A setting, checked; a missing or mistyped one raises a ConfigError naming the key."""
        if key not in self.settings:
            if required:
                raise ConfigError(f"systems.{self.name}.{key} is missing: add it to [systems.{self.name}]")
            return default
        value = self.settings[key]
        if not isinstance(value, type_):
            names = " or ".join(t.__name__ for t in (type_ if isinstance(type_, tuple) else (type_,)))
            raise ConfigError(f"systems.{self.name}.{key} must be {names}, not {type(value).__name__}")
        return value


@dataclass(frozen=True)
class PairConfig:
    """One `[pairs.NAME]` table."""

    name: str
    systems: Mapping[str, str] = field(default_factory=dict)
    flows: tuple[str, ...] = ()
    overlap_seconds: int = 300
    batch_size: int | None = None
    credit_budget: int = 0
    audit_payloads: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    on_delete: Mapping[str, str] = field(default_factory=dict)  # flow -> policy (checked when the pair opens)
    deletes_every_hours: float = 24.0
    max_delete_fraction: float = 0.05
    # flow -> its configured field mappings and filter (checked against the pair when the pair opens)
    mappings: Mapping[str, FlowRules] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertsConfig:
    """`[alerts]`: where alerts go (a command, a webhook, both or neither) and how often an incident repeats."""

    command: tuple[str, ...] = ()
    webhook_url: str | None = None  # may carry the hook's secret in its path (Slack, Teams): never printed
    repeat_hours: float = 0.0  # 0: an incident alerts once, then on recovery
    timeout_seconds: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.command or self.webhook_url)


ALERTS_WEBHOOK_ENV = "MLCONNECTOR_ALERTS_WEBHOOK_URL"
ALERT_KEYS = {
    "command": "a program to run with the alert as JSON on its standard input, e.g. [\"/usr/local/bin/page-me\"]",
    "webhook_url": f"an http(s) address the alert is POSTed to as JSON (or ${ALERTS_WEBHOOK_ENV})",
    "repeat_hours": "hours after which an incident still open alerts again (0: never)",
    "timeout_seconds": "seconds the command or the webhook may take",
}
_STATE_KEYS = ("path", "url", "audit_retention_days")


@dataclass(frozen=True)
class Config:
    path: Path | None
    systems: Mapping[str, SystemConfig]
    pairs: Mapping[str, PairConfig]
    state_path: Path | None = None
    state_url: str | None = None  # [state] url: a PostgreSQL database (no password in it)
    # [secrets]: where secrets live when no environment variable says (sandbox demos, headless hosts).
    secrets_backend: str | None = None
    secrets_dir: Path | None = None
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    audit_retention_days: int = 90  # [state]: audit rows, processed notifications and runs kept this long; 0 for ever

    def system(self, name: str) -> SystemConfig:
        try:
            return self.systems[name]
        except KeyError:
            known = ", ".join(sorted(self.systems)) or "none"
            raise ConfigError(f"{self._where()}: no [systems.{name}] (configured: {known})") from None

    def pair(self, name: str) -> PairConfig:
        return self.pairs.get(name) or PairConfig(name=name)

    def _where(self) -> str:
        return str(self.path) if self.path else "configuration"


def config_search() -> list[Path]:
    """Where a configuration is looked for when neither --config nor $MLCONNECTOR_CONFIG names one, in order: the
    current directory, the user's ($XDG_CONFIG_HOME, else ~/.config), the host's. For a tenant, its own file in
    each: ``tenants/NAME/connections.toml`` (never the file without a tenant: one company's settings must not
    serve another)."""
    user = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [tenants.below(base) / DEFAULT_CONFIG for base in (Path("."), user / "mlconnector", Path("/etc/mlconnector"))]


def resolve_config_path(explicit: str | Path | None = None) -> Path:
    """--config, else $MLCONNECTOR_CONFIG, else the first of ``config_search()`` that exists (else
    ./connections.toml, where `init` writes one)."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return next((p for p in config_search() if p.exists()), config_search()[0])


def config_source(explicit: str | Path | None = None) -> str:
    """How the configuration in use was chosen (for `config show`)."""
    if explicit:
        return "--config"
    if os.environ.get(CONFIG_ENV):
        return f"${CONFIG_ENV}"
    return "found by the default search" if any(p.exists() for p in config_search()) else "default"


def load_config(path: str | Path | None = None, *, required: bool = True) -> Config:
    """Read and validate the configuration file."""
    file = resolve_config_path(path)
    if not file.exists():
        if not required:
            return Config(path=file, systems={}, pairs={})
        searched = "" if path or os.environ.get(CONFIG_ENV) else \
            f" (looked in {', '.join(str(p) for p in config_search())})"
        raise ConfigError(f"{file}: not found{searched}; run `mlconnector init` to write one, or pass --config "
                          f"or set {CONFIG_ENV}")
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML ({exc}); fix the line it names") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot be read ({exc})") from None
    return parse_config(raw, file)


def parse_config(raw: Mapping[str, Any], path: Path | None = None) -> Config:
    where = str(path) if path else "configuration"
    _refuse_secrets(raw, where, ())
    state = raw.get("state", {})
    state_url = state.get("url") if isinstance(state, Mapping) else None
    # The state URL may name its user (user@host); its own check below refuses a password in it.
    refuse_credentials_in_urls({**raw, "state": {k: v for k, v in state.items() if k != "url"}}
                               if isinstance(state, Mapping) else raw, where)
    unknown = set(raw) - {"systems", "pairs", "state", "secrets", "alerts"}
    if unknown:
        raise ConfigError(f"{where}: unknown top-level table [{sorted(unknown)[0]}]; "
                          "use [systems.NAME], [pairs.NAME], [state], [secrets] and [alerts]")
    systems = {name: _system(name, table, where) for name, table in _tables(raw, "systems", where).items()}
    pairs = {name: _pair(name, table, where, systems) for name, table in _tables(raw, "pairs", where).items()}
    if isinstance(state, Mapping):
        for key in state:
            if key not in _STATE_KEYS:
                raise ConfigError(f"{where}: state.{key} is not a known key (known: {', '.join(_STATE_KEYS)}; path is a "
                                  "SQLite file, url a PostgreSQL database)")
    state_path = state.get("path") if isinstance(state, Mapping) else None
    retention = state.get("audit_retention_days", 90) if isinstance(state, Mapping) else 90
    if isinstance(retention, bool) or not isinstance(retention, int) or not 0 <= retention <= 36_600:
        raise ConfigError(f"{where}: state.audit_retention_days = {retention!r}: use a whole number of days from 0 "
                          "to 36600 (0 keeps everything)")
    if state_path is not None and (not isinstance(state_path, str) or not state_path.strip()):
        raise ConfigError(f"{where}: state.path must be the path of the state file (e.g. \"state.db\"); remove "
                          "the key to use the default (the user's state directory)")
    if state_url is not None:
        state_url = check_state_url(state_url, f"{where}: state.url")
        if state_path is not None:
            raise ConfigError(f"{where}: [state] sets both path and url; keep one (url: PostgreSQL, path: a SQLite "
                              "file)")
    secrets = raw.get("secrets", {})
    backend = secrets.get("backend") if isinstance(secrets, Mapping) else None
    directory = secrets.get("dir") if isinstance(secrets, Mapping) else None
    if backend is not None and backend not in ("auto", "keyring", "file"):
        raise ConfigError(f"{where}: secrets.backend = {backend!r}: use auto, keyring or file")
    if directory is not None and not isinstance(directory, str):
        raise ConfigError(f"{where}: secrets.dir must be a string path")
    base = path.parent if path else Path(".")
    return Config(path=path, systems=systems, pairs=pairs,
                  state_path=(base / Path(state_path).expanduser()) if state_path else None,
                  state_url=state_url,
                  secrets_backend=backend,
                  secrets_dir=(base / Path(directory).expanduser()) if directory else None,
                  alerts=_alerts(raw.get("alerts", {}), where), audit_retention_days=retention)


def _alerts(table: Any, where: str) -> AlertsConfig:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: alerts must be a table: write it as [alerts]")
    for key in table:
        if key not in ALERT_KEYS:
            raise ConfigError(f"{where}: alerts.{key} is not a known key (known: {', '.join(ALERT_KEYS)})")
    command = table.get("command", ())
    if isinstance(command, str):
        import shlex

        try:
            command = shlex.split(command)
        except ValueError as exc:
            raise ConfigError(f"{where}: alerts.command cannot be split into words ({exc}); write it as a list, "
                              "e.g. [\"/usr/local/bin/page-me\", \"--team\", \"erp\"]") from None
    if not isinstance(command, list | tuple) or not all(isinstance(w, str) and w for w in command):
        raise ConfigError(f"{where}: alerts.command must be a program and its arguments, as a string or a list of "
                          "strings")
    url = os.environ.get(ALERTS_WEBHOOK_ENV) or table.get("webhook_url")
    if url is not None:
        # Not echoed: a Slack or Teams webhook address holds its secret in the path.
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(str(url).strip())
            ok = isinstance(url, str) and parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:
            ok = False
        if not ok:
            where_url = ALERTS_WEBHOOK_ENV if os.environ.get(ALERTS_WEBHOOK_ENV) else f"{where}: alerts.webhook_url"
            raise ConfigError(f"{where_url} is not an http(s) address; write it as https://host/path")
    numbers = {}
    for key, default, high in (("repeat_hours", 0.0, 8_784), ("timeout_seconds", 10.0, 300)):
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not (0 if key == "repeat_hours" else 1) <= value <= high:
            raise ConfigError(f"{where}: alerts.{key} = {value!r}: use a number from "
                              f"{0 if key == 'repeat_hours' else 1} to {high} ({ALERT_KEYS[key]})")
        numbers[key] = float(value)
    return AlertsConfig(command=tuple(command), webhook_url=str(url).strip() if url else None, **numbers)


def _refuse_secrets(table: Mapping[str, Any], where: str, path: tuple[str, ...]) -> None:
    for key, value in table.items():
        here = path + (key,)
        if len(here) == 3 and here[0] == "pairs" and here[2] == "mappings":
            continue  # field names and values of records (a Zoho field may be called Customer_Key), not settings
        if isinstance(value, Mapping):
            _refuse_secrets(value, where, here)
            continue
        if isinstance(value, list):  # an array of tables: each is searched as a table
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    _refuse_secrets(item, where, here[:-1] + (f"{key}[{index}]",))
        if is_secret_key(key) and not isinstance(value, list | bool):
            system = here[1] if len(here) > 2 and here[0] == "systems" else "SYSTEM"
            from mlconnector.secrets import env_var_name, field_for

            kind = table.get("kind") if len(here) == 3 else None
            name = field_for(kind if isinstance(kind, str) else None, key)
            env = env_var_name(system, name) if system != "SYSTEM" else f"MLCONNECTOR_SYSTEM_{name.upper()}"
            raise ConfigError(
                f"{where}: {'.'.join(here)} looks like a secret; secrets never go in this file: remove it "
                f"and run `mlconnector secrets set {system} {name}` (or set {env} in the environment)"
            )


def _tables(raw: Mapping[str, Any], name: str, where: str) -> dict[str, Mapping[str, Any]]:
    section = raw.get(name, {})
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where}: {name} must be a table of [{name}.NAME] tables")
    for key, value in section.items():
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {name}.{key} must be a table: write it as [{name}.{key}]")
        if not _NAME_RE.match(key):
            raise ConfigError(f"{where}: {name}.{key}: names use letters, digits, '-' and '_'")
    return dict(section)


def _system(name: str, table: Mapping[str, Any], where: str) -> SystemConfig:
    kind = table.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"{where}: systems.{name}.kind is missing; set it to one of "
                          "zoho, nav, bc, finops, gp, zuora")
    settings = {k: v for k, v in table.items() if k != "kind"}
    for key, value in settings.items():
        if key in SYSTEM_NUMBERS:
            low, high, meaning = SYSTEM_NUMBERS[key]
            _in_range(f"{where}: systems.{name}.{key}", value, low, high, meaning)
        elif key in SYSTEM_CHOICES and value not in SYSTEM_CHOICES[key]:
            raise ConfigError(f"{where}: systems.{name}.{key} = {value!r}: use one of {', '.join(SYSTEM_CHOICES[key])}")
    check_setting_urls(settings, f"{where}: systems.{name}")
    return SystemConfig(name=name, kind=kind, settings=settings)


def _in_range(label: str, value: Any, low: float, high: float, meaning: str) -> None:
    """A number within [low, high]: durations (``*_seconds``, ``*_hours``, ``*_days``) may be fractions, counts not."""
    whole = not label.endswith(("_seconds", "_hours", "_days"))
    kind = int if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        what = "a whole number" if whole else "a number"
        raise ConfigError(f"{label} = {value!r}: use {what} from {low:g} to {high:g} ({meaning})")


def _pair(name: str, table: Mapping[str, Any], where: str, systems: Mapping[str, SystemConfig]) -> PairConfig:
    for key in table:
        if key not in PAIR_KEYS:
            known = ", ".join(PAIR_KEYS)
            raise ConfigError(f"{where}: pairs.{name}.{key} is not a known key (known: {known})")

    def typed(key: str, type_: type | tuple, default: Any) -> Any:
        value = table.get(key, default)
        if isinstance(value, bool) and type_ is int:
            raise ConfigError(f"{where}: pairs.{name}.{key} must be a whole number")
        if not isinstance(value, type_):
            names = " or ".join(t.__name__ for t in (type_ if isinstance(type_, tuple) else (type_,)))
            raise ConfigError(f"{where}: pairs.{name}.{key} must be {names}"
                              f" ({PAIR_KEYS[key]})")
        return value

    roles = typed("systems", Mapping, {})
    for role, system in roles.items():
        if not isinstance(system, str) or system not in systems:
            known = ", ".join(sorted(systems)) or "none configured"
            raise ConfigError(f"{where}: pairs.{name}.systems.{role} = {system!r} names no [systems.*] "
                              f"table (configured: {known})")
    flows = typed("flows", list, [])
    if not all(isinstance(f, str) for f in flows):
        raise ConfigError(f"{where}: pairs.{name}.flows must be a list of flow names")
    overlap = typed("overlap_seconds", int, 300)
    batch = table.get("batch_size")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int)):
        raise ConfigError(f"{where}: pairs.{name}.batch_size must be a whole number ({PAIR_KEYS['batch_size']})")
    budget = typed("credit_budget", int, 0)
    for key, value in (("overlap_seconds", overlap), ("batch_size", batch), ("credit_budget", budget)):
        low, high = PAIR_NUMBERS[key]
        if value is not None and not low <= value <= high:
            raise ConfigError(f"{where}: pairs.{name}.{key} = {value}: use a whole number from {low} to {high} "
                              f"({PAIR_KEYS[key]})")
    on_delete = typed("on_delete", Mapping, {})
    if not all(isinstance(v, str) for v in on_delete.values()):
        raise ConfigError(f"{where}: pairs.{name}.on_delete: each flow's policy is a string: ignore, unlink, flag "
                          "or delete")
    hours = typed("deletes_every_hours", (int, float), 24)
    fraction = typed("max_delete_fraction", (int, float), 0.05)
    if isinstance(hours, bool) or not 0 <= hours <= 8_784:
        raise ConfigError(f"{where}: pairs.{name}.deletes_every_hours = {hours}: use a number of hours from 0 to 8784")
    if isinstance(fraction, bool) or not 0 <= fraction <= 1:
        raise ConfigError(f"{where}: pairs.{name}.max_delete_fraction = {fraction}: use a fraction from 0 to 1 "
                          "(0.05 is 5%)")
    return PairConfig(
        name=name, systems=dict(roles), flows=tuple(flows), overlap_seconds=overlap, batch_size=batch,
        credit_budget=budget, audit_payloads=typed("audit_payloads", bool, False),
        options=dict(typed("options", Mapping, {})), on_delete=dict(on_delete), deletes_every_hours=float(hours),
        max_delete_fraction=float(fraction), mappings=parse_mappings(name, table.get("mappings", {}), where),
    )
