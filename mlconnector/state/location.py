"""Where the state lives: a SQLite file (the default) or a PostgreSQL database named by a URL; how it is shown (never
with a password); opening it, the run lock of a pair there, and its errors as one line each."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlconnector import tenants
from mlconnector.errors import ConfigError
from mlconnector.state.base import StateStore
from mlconnector.state.common import default_state_path
from mlconnector.urls import STATE_PASSWORD_ENV, STATE_URL_ENV, check_state_url, redact

def database_errors() -> tuple[type[BaseException], ...]:
    """The errors a store's driver raises (psycopg's only once PostgreSQL was used: it is not imported before)."""
    found: tuple[type[BaseException], ...] = (sqlite3.Error,)
    if "psycopg" in sys.modules:
        found += (sys.modules["psycopg"].Error,)
    return found


@dataclass(frozen=True)
class StateLocation:
    """A SQLite file (``path``) or a PostgreSQL database (``url``, with its ``password`` apart, never shown)."""

    path: Path | None = None
    url: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None  # a tenant's schema (in the URL's search_path), made at first use

    def _schema_made(self) -> None:
        if self.url and self.schema:
            from mlconnector.state.pg_connection import ensure_schema

            ensure_schema(self.url, self.password, self.schema)

    @property
    def is_postgres(self) -> bool:
        return self.url is not None

    @property
    def shown(self) -> str:
        """What status, errors and logs may print."""
        return redact(self.url) if self.url else str(self.path)

    @property
    def label(self) -> str:
        return f"state database {self.shown}" if self.url else f"state file {self.path}"

    @property
    def directory(self) -> Path:
        """Where this host keeps its side files (caches a connector keeps per host)."""
        return self.path.parent if self.path else default_state_path().parent

    def open(self) -> StateStore:
        if self.url:
            self._schema_made()
            from mlconnector.state.postgres import PostgresState

            return PostgresState(self.url, self.password)
        from mlconnector.state.store import State

        return State(self.path or default_state_path())

    def ledger(self) -> Any:
        """The rate and budget ledger hosts sharing this state share (``state.ledger``), or None: a SQLite state's
        connectors keep theirs in a file beside it. A tenant's counts what every tenant of the database shares
        (Zoho's mints per refresh token: two tenants may use one Zoho org) in the common schema."""
        if not self.url:
            return None
        self._schema_made()
        from mlconnector.state.ledger import SharedLedger

        if not self.schema:
            return SharedLedger(self.url, self.password)
        from mlconnector.state.pg_connection import ensure_schema

        common = tenants.with_search_path(self.url, tenants.COMMON_SCHEMA)
        ensure_schema(common, self.password, tenants.COMMON_SCHEMA)
        return SharedLedger(self.url, self.password, common=SharedLedger(common, self.password))

    def pair_lock(self, pair: str) -> Any:
        """One run of ``pair`` at a time wherever this state is used: a lock file beside the state file, or a
        PostgreSQL advisory lock (hosts sharing the database share it). A second run raises LockHeld (exit 75)."""
        if self.url:
            self._schema_made()
            from mlconnector.state.pg_locks import advisory_pair_lock

            return advisory_pair_lock(self.url, self.password, pair)
        from mlconnector.state.locks import file_pair_lock

        return file_pair_lock(self.path or default_state_path(), pair)

    def run_alive(self, pair: str) -> bool:
        """Whether a run of ``pair`` holds its lock now."""
        if self.url:
            self._schema_made()
            from mlconnector.state.pg_locks import pair_locked

            return pair_locked(self.url, self.password, pair)
        from mlconnector.state.locks import file_lock_held

        return file_lock_held(self.path or default_state_path(), pair)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """An error of the state itself during a run (a full disk, an I/O error, a file made read-only, a database
        gone) is the operator's to fix, not a bug: one line naming the state and the fix. What was written but not
        recorded is read again by the next run (the watermark stays before it)."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise ConfigError(f"state file {self.path}: {exc}; make room on that disk or fix the file's permissions, "
                              "then run again (or pass --state PATH to use another file)") from None
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:  # integrity and programming errors are bugs
                raise
            raise ConfigError(f"state file {self.path}: {exc}; move the damaged file aside and run again "
                              "(or pass --state PATH to use another file)") from None
        except Exception as exc:
            if not self.url or "psycopg" not in sys.modules:
                raise
            from mlconnector.state.pg_connection import as_state_error

            mapped = as_state_error(exc, self.url, self.password)
            if mapped is exc:
                raise
            raise mapped from None


def resolve(*, cli_path: Path | None, config_url: str | None, config_path: Path | None,
            password: Any = None) -> StateLocation:
    """--state PATH, else $MLCONNECTOR_STATE_URL, else [state] url, else [state] path, else $MLCONNECTOR_STATE, else
    the platform's user state dir (the file's order is the one it always had: the config's path before the
    variable). ``password``: a callable giving the database password from the secrets (MLCONNECTOR_STATE_PASSWORD,
    the keyring), asked only for PostgreSQL. A tenant's state is its own schema of the database (the path and the
    default file are per tenant already: the tenant's config, ``tenants.file_below``)."""
    if cli_path:
        return StateLocation(path=Path(cli_path))
    if os.environ.get(STATE_URL_ENV):
        url = check_state_url(os.environ[STATE_URL_ENV], STATE_URL_ENV, password_allowed=True)
    elif config_url:
        url = config_url
    else:
        return StateLocation(path=config_path or default_state_path())
    url = tenants.url_with_schema(url, STATE_URL_ENV if os.environ.get(STATE_URL_ENV) else "[state] url")
    if urlsplit(url).password is not None:
        # the environment's URL carries it: no keyring needs asking
        return StateLocation(url=url, schema=tenants.schema())
    given = os.environ.get(STATE_PASSWORD_ENV) or (password() if callable(password) else password)
    return StateLocation(url=url, password=given or None, schema=tenants.schema())
