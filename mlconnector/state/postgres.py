"""The PostgreSQL state store, for state several hosts share: connections from a pool per process, the shared SQL
(``state.base``) with its ``?`` placeholders rewritten for psycopg, migrations under an advisory lock, and the run
lock of a pair as a session advisory lock (the server frees it when the holder's connection ends: a killed worker
frees it at once).

Everything lives in the connection's current schema (the first of its search_path), so one database can hold several
stores side by side (``options=-csearch_path%3Dname`` in the URL); locks are per database and schema too.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from mlconnector.errors import AuthError, ConfigError, LockHeld, MLConnectorError, Unreachable
from mlconnector.state.base import StateStore
from mlconnector.state.links import Link
from mlconnector.state.common import StateFileReplaced
from mlconnector.state.location import StateLocation
from mlconnector.state.retention import PRUNED_TABLES
from mlconnector.urls import STATE_PASSWORD_ENV, STATE_URL_ENV, redact
from mlconnector.state.schema_pg import MIGRATIONS

CONNECT_TIMEOUT = 10  # seconds: a server that does not answer is reported, not waited on for minutes
POOL_SIZE = 8  # a run's writing and reading connections, the receiver's, a few opens at once
MIGRATIONS_TABLE = "mlconnector_migrations"
ANALYZE_AFTER = 1_000  # links inserted before the first ANALYZE of a store's own
TARGETS_KEPT = 200_000  # a flow's target ids target_of keeps at most (about 25 MB)
_REFUSED = ("password authentication failed", "no password supplied", "pg_hba.conf", 'role "')
_OUR_TABLES = ("runs", "links", "audit", "watermarks", "replay", "inbox")


@lru_cache(maxsize=1024)
def _pg(sql: str) -> str:
    """The shared SQL's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled); the shared SQL holds no
    ``?`` in a string literal."""
    return sql.replace("%", "%%").replace("?", "%s")


def _lock_key(conn: psycopg.Connection[Any], what: str) -> int:
    """A 64-bit advisory lock key for ``what`` in this connection's database and schema."""
    return conn.execute("SELECT hashtextextended(%s || current_schema(), 0)", [f"mlconnector {what} in "]).fetchone()[0]


def _settings(url: str, password: str | None) -> dict[str, Any]:
    """What every connection is opened with, besides the URL (which may name its own application_name)."""
    settings: dict[str, Any] = {"autocommit": True, "password": password, "connect_timeout": CONNECT_TIMEOUT}
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
        raise as_state_error(exc, StateLocation(url=url)) from None


# pools: one per database a process uses, made (and the schema migrated) at its first use ------------------------
_pools: dict[tuple[str, str | None], ConnectionPool] = {}
_pools_lock = threading.Lock()


def _pool(url: str, password: str | None) -> ConnectionPool:
    with _pools_lock:
        pool = _pools.get((url, password))
        if pool is None:
            first = connect(url, password)  # a server that cannot be reached or refuses us says so here, in one line
            try:
                migrate(first, url)
            finally:
                first.close()
            pool = ConnectionPool(url, min_size=1, max_size=POOL_SIZE, open=True, timeout=CONNECT_TIMEOUT,
                                  name="mlconnector-state", check=ConnectionPool.check_connection,
                                  kwargs=_settings(url, password))
            _pools[(url, password)] = pool
        return pool


def close_pools() -> None:
    """Closes every pool this process opened (at exit; tests that drop their schema call it first)."""
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


atexit.register(close_pools)


def migrate(conn: psycopg.Connection[Any], url: str) -> None:
    """The numbered migrations not yet applied in this schema, in one transaction holding the schema's migration
    lock: hosts starting at once wait for each other, and the second finds nothing left to do."""
    try:
        with conn.transaction():
            schema = conn.execute("SELECT current_schema()").fetchone()[0]
            if schema is None:
                raise ConfigError(f"state database {redact(url)}: the schema its search_path names does not exist; "
                                  "create it (CREATE SCHEMA name) or fix the options in the URL")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(conn, "migrations")])
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
        raise as_state_error(exc, StateLocation(url=url)) from None


class PostgresState(StateStore):
    """One open PostgreSQL store: a connection for writes and one for committed reads, from the process's pool."""

    kind = "database"
    _variables = 65_535  # PostgreSQL's limit of bound values in one statement

    def __init__(self, url: str, password: str | None = None) -> None:
        super().__init__()
        self.url = url
        self.shown = redact(url)
        self._location = StateLocation(url=url, password=password)
        self._pool = _pool(url, password)
        self._reader_conn: psycopg.Connection[Any] | None = None
        # (pair, flow) -> its target ids by source id, for target_of: read once, then kept up to date by this store,
        # which is the only writer of the pair's links while its run holds the pair's lock.
        self._targets: dict[tuple[str, str], dict[str, str]] = {}
        self._links_added, self._links_analyzed = 0, 0  # links this store inserted: since, and at, its last ANALYZE
        try:
            self._conn = self._pool.getconn()
        except psycopg.Error as exc:
            raise as_state_error(exc, StateLocation(url=url)) from None

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        try:
            # Planned anew each time (prepare=False): a prepared statement keeps the plan made when its table was
            # small (a seq scan, early in a first load), and kept it as the table grew. Inserts are prepared.
            return self._conn.execute(_pg(sql), args, prepare=False)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # The database gone (a restart, the network) is the operator's: one line, told once by the run.
            raise as_state_error(exc, self._location) from None

    def _insert_rows(self, head: str, width: int, rows: list[Any], tail: str = "") -> None:
        """One row's statement sent for every row at once (psycopg's executemany: one round trip, the statement
        parsed and planned once), not SQLite's many-row statements: psycopg splits a long statement's placeholders
        in Python each time (it caches only short ones), which cost more than the rows' own work."""
        if not rows:
            return
        with self.lock:
            if not self._depth:  # the rows land together, as SQLite's one statement does
                with self.transaction():
                    self._insert_rows(head, width, rows, tail)
                return
            sql = _pg(f"{head} VALUES ({', '.join('?' * width)}){tail}")
            if head.startswith("INSERT INTO links "):
                self._links_added += len(rows)
            try:
                with self._conn.cursor() as cursor:
                    cursor.executemany(sql, rows)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise as_state_error(exc, self._location) from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with super().transaction():
            yield
        self._analyze_grown_links()

    def _analyze_grown_links(self) -> None:
        """ANALYZE links once this store has grown it by half since it last did (and by ANALYZE_AFTER at least).
        Until autovacuum first gets to a new table, the planner has no statistics for it and looked a link up by
        the wrong index, a scan of all the flow's links: a first load's documents ask once per line."""
        with self.lock:
            if self._depth or self._links_added < max(ANALYZE_AFTER, self._links_analyzed // 2):
                return
            self._execute("ANALYZE links")
            self._links_analyzed += self._links_added
            self._links_added = 0

    def target_of(self, pair: str, flow: str, source_id: str) -> str | None:
        """As the shared query, from the flow's target ids read in one go at its first look-up (a document's lines
        each ask: a round trip apiece cost a first load more than all its other state work)."""
        with self.lock:
            ids = self._targets.get((pair, flow))
            if ids is None and not self._depth:  # only what is committed: an open transaction may be rolled back
                ids = self._targets[(pair, flow)] = self._all_targets(pair, flow)
            found = ids.get(source_id) if ids is not None else None
            if found is None:  # linked since, or not at all (the record fails as unresolved, so this is rare)
                found = super().target_of(pair, flow, source_id)
                if found is not None and ids is not None and not self._depth:
                    ids[source_id] = found
            return found

    def _all_targets(self, pair: str, flow: str) -> dict[str, str]:
        rows = self._execute("SELECT source_id, target_id FROM links WHERE pair = ? AND flow = ? AND target_id IS NOT "
                             "NULL LIMIT ?", [pair, flow, TARGETS_KEPT + 1]).fetchall()
        return dict(rows) if len(rows) <= TARGETS_KEPT else {}  # too many to keep: asked one by one

    def save_links(self, links: list[Link]) -> None:
        with self.lock:
            for link in links:
                self._targets.get((link.pair, link.flow), {}).pop(link.source_id, None)
            super().save_links(links)

    def unlink(self, pair: str, flow: str, source_ids: list[str]) -> None:
        with self.lock:
            kept = self._targets.get((pair, flow), {})
            for source_id in source_ids:
                kept.pop(source_id, None)
            super().unlink(pair, flow, source_ids)

    def _committed(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            try:
                if self._reader_conn is None:
                    self._reader_conn = self._pool.getconn()
                return self._reader_conn.execute(_pg(sql), args, prepare=False).fetchall()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise as_state_error(exc, self._location) from None

    def _rollback(self) -> None:
        try:
            self._execute("ROLLBACK")
        except (psycopg.Error, MLConnectorError):
            pass  # the connection is gone: the server rolled back; the error that brought us here is the one to tell

    def _check_in_transaction(self) -> None:
        """What was sent is recorded even if the pair's lock was lost meanwhile: the record is true either way."""

    def check_same_file(self) -> None:
        """Before a batch is sent: the pair's lock is still this run's (its connection alive). Lost, another host
        may run the pair now, so this run sends nothing more."""
        if isinstance(self.run_lock, RunLock):
            self.run_lock.check()

    def vacuum(self) -> None:
        """The pruned tables rewritten without their free space (VACUUM FULL: their indexes too, which a plain VACUUM
        leaves at their size). It holds each table's exclusive lock while it rewrites it: a run meanwhile waits."""
        with self.lock:
            if self._depth:
                raise RuntimeError("vacuum cannot run inside a transaction")
            for table in PRUNED_TABLES:
                self._execute(f"VACUUM (FULL, ANALYZE) {table}")

    def size(self) -> dict[str, Any]:
        """The schema's tables with their indexes and TOAST. Their free space is not measured (that needs an
        extension, pgstattuple): None."""
        with self.lock:
            total = self._execute("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                                  "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
                                  "AND c.relkind = 'r'").fetchone()[0]
        return {"bytes": int(total), "free_bytes": None}

    def close(self) -> None:
        with self._read_lock:
            if self._reader_conn is not None:
                self._pool.putconn(self._reader_conn)
                self._reader_conn = None
        if self._conn is not None:
            self._pool.putconn(self._conn)
            self._conn = None  # type: ignore[assignment]


class RunLock:
    """The advisory lock of one pair, held by a connection of its own."""

    def __init__(self, conn: psycopg.Connection[Any], pair: str, shown: str) -> None:
        self.conn, self.pair, self.shown = conn, pair, shown

    def check(self) -> None:
        try:
            self.conn.execute("SELECT 1")
        except psycopg.Error:
            raise StateFileReplaced(
                f"state database {self.shown}: the connection holding the lock of {self.pair} was lost, so this run "
                "stopped sending (another run may hold the pair now); what was sent is found again by its keys "
                "next run") from None


@contextmanager
def advisory_pair_lock(url: str, password: str | None, pair: str) -> Iterator[RunLock]:
    """The pair's lock as a session advisory lock on a connection of its own; a second run anywhere gets LockHeld
    (exit 75) at once. Closing the connection (or the process dying) frees it."""
    conn = connect(url, password)
    try:
        try:
            key = _lock_key(conn, f"pair {pair}")
            taken = conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]
        except psycopg.Error as exc:
            raise as_state_error(exc, StateLocation(url=url)) from None
        if not taken:
            raise LockHeld(f"another run of {pair} is in progress (its lock in {redact(url)} is held); "
                           "this run exits without doing anything")
        try:
            yield RunLock(conn, pair, redact(url))
        finally:
            try:
                # Let go before closing: the server ends a closed session's backend (and its locks) a moment
                # later, and the next run, even in this process, must find the lock free.
                conn.execute("SELECT pg_advisory_unlock(%s)", [key])
            except psycopg.Error:
                pass  # the connection is gone, and the lock with it
    finally:
        conn.close()


def pair_locked(url: str, password: str | None, pair: str) -> bool:
    """Whether some session holds the pair's lock now (taken and let go at once when free)."""
    pool = _pool(url, password)
    with pool.connection() as conn:
        key = _lock_key(conn, f"pair {pair}")
        if conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]:
            conn.execute("SELECT pg_advisory_unlock(%s)", [key])
            return False
        return True


def as_state_error(exc: BaseException, location: StateLocation) -> BaseException:
    """A psycopg error as one line for the operator (exit 2, 4 or 5), never with a password; errors that are
    bugs (integrity, a bad statement) are returned as they are."""
    if isinstance(exc, MLConnectorError) or not isinstance(exc, psycopg.Error):
        return exc
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if location.password:
        text = text.replace(location.password, "***")
    where = f"state database {location.shown}"
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
        return Unreachable(where, f"cannot be reached ({text}); start the server or fix [state] url / "
                                  f"{STATE_URL_ENV}, then run again (what a run sent but did not record is found "
                                  "again by its keys)")
    return exc
