"""URLs in connections.toml: an address must be http(s) with a host and a valid port, and no URL anywhere may
carry a credential (user:password@, or a secret-looking query parameter): it would end up in logs, error lines
and the state file. Secrets go to `mlconnector secrets set`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from mlconnector.errors import ConfigError
from mlconnector.secrets.kinds import is_secret_key

# Settings that hold an address the connector calls (or tells a system to call).
_URL_KEY = re.compile(r"(_url|_uri|^url|^uri|^authority|^api_domain)$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

# The state in PostgreSQL: its URL ([state] url or this variable) and where its password comes from.
STATE_URL_ENV = "MLCONNECTOR_STATE_URL"
STATE_PASSWORD_ENV = "MLCONNECTOR_STATE_PASSWORD"
_STATE_SCHEMES = ("postgresql", "postgres")
_STATE_URL_FIX = f"write it as postgresql://[user@]host[:port]/database ([state] url or {STATE_URL_ENV})"


def refuse_credentials_in_urls(value: Any, where: str, path: tuple[str, ...] = ()) -> None:
    """Every string in the configuration that is a URL, at any depth: no user:password@, no secret in the query."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            refuse_credentials_in_urls(item, where, path + (str(key),))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            refuse_credentials_in_urls(item, where, path[:-1] + (f"{path[-1] if path else ''}[{index}]",))
    elif isinstance(value, str) and _SCHEME.match(value.strip()):
        _refuse_credentials(value.strip(), f"{where}: {'.'.join(path)}", _system_of(path))


def check_setting_urls(settings: Mapping[str, Any], label: str) -> None:
    """The addresses a system table sets: http or https, a host, a port from 1 to 65535."""
    for key, value in settings.items():
        if _URL_KEY.search(key) and isinstance(value, str):
            check_http_url(value, f"{label}.{key}")


def check_http_url(value: str, label: str) -> None:
    try:
        parts = urlsplit(value.strip())
        port = parts.port  # raises ValueError when out of range or not a number
    except ValueError:
        port, parts = -1, None
    if parts is None or port == -1:
        raise ConfigError(f"{label} = {value!r}: the port must be a number from 1 to 65535 "
                          "(e.g. https://server:7048/Instance)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{label} = {value!r} is not an http(s) address; write it as https://host[:port]/path")
    if port == 0:
        raise ConfigError(f"{label} = {value!r}: the port must be a number from 1 to 65535")


def _refuse_credentials(url: str, label: str, system: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return  # not a URL after all; an address setting is checked on its own (check_http_url)
    fix = f"put the secret in the OS keyring with `mlconnector secrets set {system} FIELD` instead"
    if "@" in parts.netloc:
        raise ConfigError(f"{label}: the URL carries credentials (user@ or user:password@ before the host); "
                          f"remove them from the file and {fix}")
    secret = next((name for name, _ in parse_qsl(parts.query, keep_blank_values=True) if is_secret_key(name)), None)
    if secret:
        raise ConfigError(f"{label}: the URL carries a secret in its query ({secret}=...); remove it from the "
                          f"file and {fix}")


def _system_of(path: tuple[str, ...]) -> str:
    return path[1] if len(path) > 2 and path[0] == "systems" else "SYSTEM"


def check_state_url(url: Any, label: str, *, password_allowed: bool = False) -> str:
    """A PostgreSQL URL as libpq takes it, or one line saying what is wrong with it (never the URL's password).
    ``password_allowed``: from the environment a password may come in the URL; in connections.toml it may not."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{label} must be a PostgreSQL URL; {_STATE_URL_FIX}")
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError when not a number from 0 to 65535
    except ValueError:
        raise ConfigError(f"{label} = {redact(url)!r} has no valid port; {_STATE_URL_FIX}") from None
    if parts.scheme not in _STATE_SCHEMES:
        raise ConfigError(f"{label} = {redact(url)!r} is not a PostgreSQL URL (the state lives in a SQLite file, "
                          f"[state] path, or in PostgreSQL); {_STATE_URL_FIX}")
    query = dict(parse_qsl(parts.query))
    if not (parts.hostname or query.get("host")) or not (parts.path.strip("/") or query.get("dbname")):
        raise ConfigError(f"{label} = {redact(url)!r} names no host or no database; {_STATE_URL_FIX}")
    if not password_allowed and (parts.password is not None or "password" in query):
        raise ConfigError(f"{label}: the URL carries a password; remove it from the file and set {STATE_PASSWORD_ENV}, "
                          "run `mlconnector secrets set state password`, or use ~/.pgpass")
    return url


def redact(url: str) -> str:
    """The URL with no password in it (user, host, port, database and options stay: they say where)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(a URL that cannot be read)"
    if ":" in host:
        host = f"[{host}]"
    user = f"{parts.username}@" if parts.username else ""
    query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)])
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, query, ""))
