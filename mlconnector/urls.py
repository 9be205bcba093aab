"""URLs in connections.toml: an address must be http(s) with a host and a valid port, and no URL anywhere may
carry a credential (user:password@, or a secret-looking query parameter): it would end up in logs, error lines
and the state file. Secrets go to `mlconnector secrets set`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mlconnector.errors import ConfigError

# Settings that hold an address the connector calls (or tells a system to call).
_URL_KEY = re.compile(r"(_url|_uri|^url|^uri|^authority|^api_domain)$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


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
    from mlconnector.config import is_secret_key

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
