"""Tenants: one company's configuration, secrets and state, chosen by ``--tenant NAME`` or ``$MLCONNECTOR_TENANT``.

The tenant is process-wide (the CLI's option sets the variable, as ``--config`` does), so every place that finds a
default location asks here: the configuration search (``tenants/NAME/connections.toml``), the default SQLite state
file (``.../tenants/NAME/state.db``), the secrets (keyring service ``mlconnector:NAME``, the encrypted file's
directory, ``MLCONNECTOR_NAME_SYSTEM_FIELD`` variables) and the PostgreSQL state (a schema ``mlconnector_NAME``).
Without a tenant every location is the one it always was. See docs/operations.md, *Tenants*.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from mlconnector.errors import ConfigError

TENANT_ENV = "MLCONNECTOR_TENANT"
SCHEMA_PREFIX = "mlconnector_"
# What every tenant of a database shares: Zoho's mints, counted per refresh token, whichever tenants use it. No
# tenant's schema can have this name (theirs all have the prefix with a name after it).
COMMON_SCHEMA = "mlconnector"
# Lower case, digits and underscores: the name is used unquoted as a PostgreSQL schema, in environment variable
# names and in paths, and two spellings must never name one tenant ("acme-1" and "acme_1" would in a variable).
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def check(name: str, where: str = "--tenant") -> str:
    """The tenant name, or one line (exit 2) saying what a name may be."""
    if not _NAME.match(name):
        shown = name if len(name) <= 60 and name.isprintable() else repr(name[:60])
        raise ConfigError(f"{where} {shown!r} is not a tenant name: use 1 to 40 lower-case letters, digits and "
                          "underscores, starting with a letter (e.g. acme or acme_eu)")
    return name


def current() -> str | None:
    """The tenant this process works for, or None (the locations without one)."""
    name = os.environ.get(TENANT_ENV, "")
    return check(name, TENANT_ENV) if name else None


def below(base: Path) -> Path:
    """``base/tenants/NAME`` for the current tenant, else ``base``: the tenant's own folder in a shared place."""
    name = current()
    return base / "tenants" / name if name else base


def file_below(file: Path) -> Path:
    """A file in a shared folder moved into the tenant's folder there (``dir/state.db`` -> ``dir/tenants/NAME/
    state.db``); the file itself without a tenant."""
    return below(file.parent) / file.name


def keyring_service(service: str) -> str:
    """The keyring service a tenant's secrets are stored under: ``mlconnector:NAME``."""
    name = current()
    return f"{service}:{name}" if name else service


def env_prefix() -> str | None:
    """The part a tenant's own secret variables carry after MLCONNECTOR_ (``ACME_``), or None."""
    name = current()
    return f"{name.upper()}_" if name else None


def schema() -> str | None:
    """The PostgreSQL schema holding the tenant's state (``mlconnector_NAME``), or None."""
    name = current()
    return f"{SCHEMA_PREFIX}{name}" if name else None


def url_with_schema(url: str, label: str) -> str:
    """The state URL with its connections' search_path set to the tenant's schema (libpq's ``options``); a URL
    that sets a search_path itself is refused: with tenants, the tenant chooses the schema."""
    name = schema()
    if name is None:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = " ".join(v for k, v in query if k == "options")
    if "search_path" in options:
        raise ConfigError(f"{label}: the URL sets a search_path, but tenant {current()} keeps its state in schema "
                          f"{name}; remove search_path from the URL's options")
    return with_search_path(url, name)


def with_search_path(url: str, schema: str) -> str:
    """The URL with its connections' search_path set to ``schema``, replacing one a tenant's URL set."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = " ".join(o for k, v in query if k == "options" for o in v.split() if "search_path" not in o)
    options = f"{options} -csearch_path={schema}".strip()
    query = [(k, v) for k, v in query if k != "options"] + [("options", options)]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, quote_via=quote),
                       parts.fragment))
