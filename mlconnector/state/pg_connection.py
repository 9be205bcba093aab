"""Talking to the PostgreSQL state's server: connections (one of their own, or from a pool per process and
database), the numbered migrations run under an advisory lock at a process's first use, the keys of advisory locks,
and the server's errors as one line for the operator.

Everything lives in the connection's current schema (the first of its search_path), so one database can hold several
stores side by side (``options=-csearch_path%3Dname`` in the URL); lock keys are per database and schema too.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed

from mlconnector.errors import AuthError, ConfigError, MLConnectorError, Unreachable
from mlconnector.state.schema_pg import MIGRATIONS
from mlconnector.urls import STATE_PASSWORD_ENV, STATE_URL_ENV, redact

CONNECT_TIMEOUT = 10  # seconds: a server that does not answer is reported, not waited on for minutes
POOL_SIZE = 8  # a run's writing and reading connections, the receiver's, a few opens at once
MIGRATIONS_TABLE = "mlconnector_migrations"
_REFUSED = ("password authentication failed", "no password supplied", "pg_hba.conf", 'role "')
_OUR_TABLES = ("runs", "links", "audit", "watermarks", "replay", "inbox")


@lru_cache(maxsize=1024)
def pg_sql(sql: str) -> str:
    """The shared SQL's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled); the shared SQL holds no
    ``?`` in a string literal."""
    return sql.replace("%", "%%").replace("?", "%s")


# A 64-bit advisory lock key for a name in the connection's database and schema, worked out by the server within
# the statement that takes (or lets go of) the lock: one round trip, not two. Its one parameter is the name.
LOCK_KEY = "hashtextextended('mlconnector ' || %s || ' in ' || current_schema(), 0)"


def _settings(url: str, password: str | None) -> dict[str, Any]:
    """What every connection is opened with, besides the URL (which may name its own application_name)."""
    # TCP keepalives every 30 s: a server or network gone is noticed in about a minute, not the system's two hours
    # (the pair lock's connection is idle while its run works, and is checked before each batch is sent).
    settings: dict[str, Any] = {"autocommit": True, "password": password, "connect_timeout": CONNECT_TIMEOUT,
                                "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                                "keepalives_count": 3}
    if "application_name" not in conninfo_to_dict(url):
        settings["application_name"] = "mlconnector"  # shown in pg_stat_activity
    return settings


def connect(url: str, password: str | None) -> psycopg.Connection[Any]:
    """One connection of its own (the pair lock's: it must not go back to a pool while the lock is held)."""
    try:
        return psycopg.connect(url, **_settings(url, password))
    except psycopg.ProgrammingError as exc:  # libpq cannot read the URL (an unknown parameter, a bad value)
        raise ConfigError(f"state database {redact(url)}: {str(exc).strip().splitlines()[0]}; fix [state] url / "
                          f"{STATE_URL_ENV}") from None
    except psycopg.Error as exc:
        raise as_state_error(exc, url) from None


# pools: one per database a process uses, made (and the schema migrated) at its first use ------------------------
# A tenant's URL is a database of its own here (its search_path), so a process working for many tenants in turn (a
# scheduler's worker, code embedding the api) would keep a pool, and its idle connections, per tenant it ever served:
# four workers over ten tenants exhausted a server's 100 connections. Past MAX_POOLS, the least recently used pool
# none of whose connections is out (no store open on it) is closed; a later use makes it again.
MAX_POOLS = 2  # a tenant's and the common schema's (mlconnector.tenants.COMMON_SCHEMA)
_pools: OrderedDict[tuple[str, str | None], ConnectionPool] = OrderedDict()
_pools_lock = threading.Lock()


def pool_for(url: str, password: str | None) -> ConnectionPool:
    with _pools_lock:
        pool = _pools.get((url, password))
        if pool is not None:
            _pools.move_to_end((url, password))
            return pool
        if url not in _migrated:  # not yet by the pair lock's connection (``ensure_migrated``)
            first = connect(url, password)  # a server that cannot be reached or refuses us says so here, in one line
            try:
                ensure_migrated(first, url)
            finally:
                first.close()
        pool = ConnectionPool(url, min_size=1, max_size=POOL_SIZE, open=True, timeout=CONNECT_TIMEOUT,
                              name="mlconnector-state", check=_check_if_idle, configure=_note_idle_from_now,
                              reset=_note_idle_from_now,
                              kwargs=_settings(url, password))
        _pools[(url, password)] = pool
        _close_idle_pools()
        return pool


# A connection handed out after sitting in the pool a while is checked first (a round trip): the server may
# have restarted or ended it meanwhile. One back within moments, as a run's next statement takes it, is not: a run
# takes connections a dozen times, and a check each time was a fifth of a no-change run's round trips.
CHECK_AFTER_IDLE = 5.0  # seconds
_idle_since: "weakref.WeakKeyDictionary[psycopg.Connection[Any], float]" = weakref.WeakKeyDictionary()


def _note_idle_from_now(conn: psycopg.Connection[Any]) -> None:
    """The pool's hook on a connection made, and on one given back."""
    _idle_since[conn] = time.monotonic()


def distrust_idle_connections() -> None:
    """A connection was found lost (the server restarted, or ended our sessions): the others waiting in the pools
    may be gone too, however briefly they sat there, so each is checked before it is next handed out."""
    _idle_since.clear()


def _check_if_idle(conn: psycopg.Connection[Any]) -> None:
    """The pool's check before a connection is handed out (raises when it is unusable, and the pool makes
    another). One made or given back moments ago is taken as it is."""
    since = _idle_since.get(conn)
    if since is None or time.monotonic() - since > CHECK_AFTER_IDLE:
        ConnectionPool.check_connection(conn)


def pooled(url: str, password: str | None) -> tuple[ConnectionPool, psycopg.Connection[Any]]:
    """The pool for the URL and a connection taken from it. A pool another thread closed as idle between finding it
    and taking from it (a tenant's new pool pushing it out) is made again."""
    pool = pool_for(url, password)
    try:
        return pool, pool.getconn()
    except PoolClosed:
        pool = pool_for(url, password)
        return pool, pool.getconn()


@contextmanager
def pooled_connection(url: str, password: str | None) -> Iterator[psycopg.Connection[Any]]:
    """``pool.connection()`` of the URL's pool, made again if closed meanwhile (``pooled``)."""
    with ExitStack() as stack:
        try:
            conn = stack.enter_context(pool_for(url, password).connection())
        except PoolClosed:
            conn = stack.enter_context(pool_for(url, password).connection())
        yield conn


_migrated: set[str] = set()  # the URLs whose schema this process has migrated (or found current)


def ensure_migrated(conn: psycopg.Connection[Any], url: str) -> None:
    """``migrate`` on this connection, once per process and URL: a run's pair lock opens its connection before the
    run's store, so the store's pool need not open one more just to migrate."""
    if url not in _migrated:
        migrate(conn, url)
        _migrated.add(url)


def _close_idle_pools() -> None:
    for key, pool in list(_pools.items())[:-1]:
        if len(_pools) <= MAX_POOLS:
            return
        stats = pool.get_stats()
        if stats.get("pool_available", 0) == stats.get("pool_size", 0) and not stats.get("requests_waiting", 0):
            del _pools[key]
            pool.close()


_schemas_made: set[tuple[str, str]] = set()


def ensure_schema(url: str, password: str | None, schema: str) -> None:
    """A tenant's schema, made at its first use (once per process): under a lock of the database, since two hosts
    making one schema at once would otherwise clash in the catalog. The name is checked (``tenants.check``), so it
    goes into the statement as it is."""
    if (url, schema) in _schemas_made:
        return
    conn = connect(url, password)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"mlconnector schema {schema}"])
            # Looked for first: a user granted only its schema (not CREATE on the database) may still use it.
            if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone() is None:
                conn.execute(f"CREATE SCHEMA {schema}")
    except pg_errors.InsufficientPrivilege as exc:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"state database {redact(url)}: {text}; create the tenant's schema (CREATE SCHEMA {schema}, "
                          "owned by the user in the URL) or grant that user CREATE on the database") from None
    except psycopg.Error as exc:
        raise as_state_error(exc, url) from None
    finally:
        conn.close()
    _schemas_made.add((url, schema))


def close_pools() -> None:
    """Closes every pool this process opened (at exit; tests that drop their schema call it first)."""
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()
        _schemas_made.clear()
        _migrated.clear()


atexit.register(close_pools)


def migrate(conn: psycopg.Connection[Any], url: str) -> None:
    """The numbered migrations not yet applied in this schema, in one transaction holding the schema's migration
    lock: hosts starting at once wait for each other, and the second finds nothing left to do."""
    try:
        if _current(conn):
            return
        with conn.transaction():
            schema = conn.execute("SELECT current_schema()").fetchone()[0]
            if schema is None:
                raise ConfigError(f"state database {redact(url)}: the schema its search_path names does not exist; "
                                  "create it (CREATE SCHEMA name) or fix the options in the URL")
            conn.execute(f"SELECT pg_advisory_xact_lock({LOCK_KEY})", ["migrations"])
            tables = {row[0] for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
            if MIGRATIONS_TABLE not in tables and tables & set(_OUR_TABLES):
                raise ConfigError(
                    f"state database {redact(url)}: schema {schema} already holds tables named "
                    f"{', '.join(sorted(tables & set(_OUR_TABLES)))}, not mlconnector's; they were left untouched: "
                    "give mlconnector a database or schema of its own (options=-csearch_path%3DNAME in the URL)")
            conn.execute(f'CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (name TEXT COLLATE "C" PRIMARY KEY, '
                         'applied TEXT COLLATE "C" NOT NULL DEFAULT now()::text)')
            done = {row[0] for row in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")}
            for name, sql in MIGRATIONS:
                if name not in done:
                    conn.execute(sql)
                    conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES (%s)", [name])
    except psycopg.Error as exc:
        raise as_state_error(exc, url) from None


def _current(conn: psycopg.Connection[Any]) -> bool:
    """Whether this schema has every migration already: two plain reads, no transaction and no lock, so a current
    schema (every start but the first after an upgrade) costs a process two round trips, not eight."""
    # Looked for in the current schema only: a table of the same name further down the search_path is not ours.
    found = conn.execute("SELECT to_regclass(quote_ident(current_schema()) || %s) IS NOT NULL",
                         [f".{MIGRATIONS_TABLE}"]).fetchone()[0]
    if not found:  # also a search_path naming no schema (current_schema() NULL): the full check says so
        return False
    done = {row[0] for row in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")}
    return all(name in done for name, _ in MIGRATIONS)


def as_state_error(exc: BaseException, url: str, password: str | None = None) -> BaseException:
    """A psycopg error as one line for the operator (exit 2, 4 or 5), never with a password; errors that are
    bugs (integrity, a bad statement) are returned as they are."""
    if isinstance(exc, MLConnectorError) or not isinstance(exc, psycopg.Error):
        return exc
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if password:
        text = text.replace(password, "***")
    where = f"state database {redact(url)}"
    sqlstate = getattr(exc, "sqlstate", None) or ""
    # At connection time libpq gives no SQLSTATE: the server's FATAL line says what it refused.
    if sqlstate.startswith("28") or any(sign in text for sign in _REFUSED):
        return AuthError(where, f"{text}; check the user in [state] url and its password ({STATE_PASSWORD_ENV}, "
                                "`mlconnector secrets set state password` or ~/.pgpass)")
    if sqlstate == "3D000" or ("database" in text and "does not exist" in text):
        return ConfigError(f"{where}: {text}; create the database (createdb) or fix [state] url / {STATE_URL_ENV}")
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return ConfigError(f"{where}: {text}; grant the user the right to create and write tables in its schema")
    if isinstance(exc, pg_errors.DiskFull | pg_errors.ReadOnlySqlTransaction):
        return ConfigError(f"{where}: {text}; make room on the server or point [state] url at a writable primary")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        distrust_idle_connections()
        return Unreachable(where, f"cannot be reached ({text}); start the server or fix [state] url / "
                                  f"{STATE_URL_ENV}, then run again (what a run sent but did not record is found "
                                  "again by its keys)")
    return exc
