"""The PostgreSQL state store, for state several hosts share: the shared SQL (``state.base``) with its ``?``
placeholders rewritten for psycopg, on a writing and a reading connection from the process's pool
(``pg_connection``); the pair's lock is ``pg_locks``'."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from mlconnector.errors import MLConnectorError
from mlconnector.state.base import StateStore
from mlconnector.state.links import Link
from mlconnector.state.pg_connection import as_state_error, pg_sql, pooled
from mlconnector.state.pg_locks import RunLock
from mlconnector.urls import redact

ANALYZE_AFTER = 1_000  # links inserted before the first ANALYZE of a store's own
TARGETS_KEPT = 200_000  # a flow's target ids target_of keeps at most (about 25 MB)


class PostgresState(StateStore):
    """One open PostgreSQL store: a connection for writes and one for committed reads, from the process's pool."""

    kind = "database"

    def __init__(self, url: str, password: str | None = None) -> None:
        super().__init__()
        self.url = url
        self.shown = redact(url)
        self._password = password  # only to keep it out of error lines
        self._reader_conn: psycopg.Connection[Any] | None = None
        self._deferred: list[str] = []  # a transaction's statements not yet sent (``_control``)
        # (pair, flow) -> its target ids by source id, for target_of: read once, then kept up to date by this store,
        # which is the only writer of the pair's links while its run holds the pair's lock.
        self._targets: dict[tuple[str, str], dict[str, str]] = {}
        self._links_added, self._links_analyzed = 0, 0  # links this store inserted: since, and at, its last ANALYZE
        try:
            self._pool, self._conn = pooled(url, password)
        except psycopg.Error as exc:
            raise as_state_error(exc, url, password) from None

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        try:
            # Planned anew each time (prepare=False): a prepared statement keeps the plan made when its table was
            # small (a seq scan, early in a first load), and kept it as the table grew. Inserts are prepared.
            with self._after_deferred():
                cursor = self._conn.execute(pg_sql(sql), args, prepare=False)
            return cursor
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # The database gone (a restart, the network) is the operator's: one line, told once by the run.
            raise as_state_error(exc, self.url, self._password) from None

    # A transaction's BEGIN, SAVEPOINT and RELEASE wait to go with its next statement (in one pipeline) or with its
    # COMMIT (in one query), and a transaction or savepoint in which nothing was sent sends nothing: a batch that
    # only moves a watermark took five round trips (BEGIN, SAVEPOINT, the statement, RELEASE, COMMIT), now two.
    # Nothing changes in what lands or when: the server sees the same statements in the same order, each before the
    # statement after it, and a statement's error is raised by the call that sent it.
    def _control(self, sql: str) -> None:
        deferred = self._deferred
        if sql == "BEGIN" or sql.startswith("SAVEPOINT "):
            deferred.append(sql)
        elif sql.startswith(("RELEASE ", "ROLLBACK TO ")):
            savepoint = f"SAVEPOINT {sql.rsplit(' ', 1)[1]}"
            if savepoint in deferred:  # nothing was sent since it: nothing to release or undo
                at = deferred.index(savepoint)
                del deferred[at + (1 if sql.startswith("ROLLBACK TO ") else 0):]  # RELEASE follows a ROLLBACK TO
            elif sql.startswith("RELEASE "):
                deferred.append(sql)
            else:
                self._deferred = []
                self._send_together([*deferred, sql])
        elif sql == "COMMIT":
            self._deferred = []
            if deferred[:1] != ["BEGIN"]:  # else nothing was sent in the transaction: nothing to commit
                self._send_together([*deferred, sql])
        else:
            self._execute(sql)

    def _send_together(self, statements: list[str]) -> None:
        """Statements without parameters as one query (the simple protocol takes several at once)."""
        try:
            self._conn.execute("; ".join(statements))
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise as_state_error(exc, self.url, self._password) from None

    @contextmanager
    def _after_deferred(self) -> Iterator[None]:
        """What the block sends goes after the transaction's statements waiting, all in one pipeline (one round
        trip); with none waiting, as it is."""
        if not self._deferred:
            yield
            return
        deferred, self._deferred = self._deferred, []
        with self._conn.pipeline():
            for sql in deferred:
                self._conn.execute(sql)
            yield

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
            sql = pg_sql(f"{head} VALUES ({', '.join('?' * width)}){tail}")
            if head.startswith("INSERT INTO links "):
                self._links_added += len(rows)
            try:
                with self._conn.cursor() as cursor, self._after_deferred():
                    cursor.executemany(sql, rows)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise as_state_error(exc, self.url, self._password) from None

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

    def save_links(self, links: list[Link], *, now: str | None = None) -> None:
        with self.lock:
            for link in links:
                self._targets.get((link.pair, link.flow), {}).pop(link.source_id, None)
            super().save_links(links, now=now)

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
                return self._reader_conn.execute(pg_sql(sql), args, prepare=False).fetchall()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise as_state_error(exc, self.url, self._password) from None

    def _rollback(self) -> None:
        deferred, self._deferred = self._deferred, []
        if deferred[:1] == ["BEGIN"]:
            return  # the transaction was never begun on the server
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
        """VACUUM the tables pruning empties: the server keeps the space for new rows (it gives it back to the disk
        only with VACUUM FULL, which locks the tables: the database's administrator's call)."""
        with self.lock:
            self._execute("VACUUM audit, inbox, runs")

    def size(self) -> dict[str, Any]:
        """The store's tables and indexes on the server (free space inside them is not counted apart)."""
        size = self._execute("SELECT CAST(coalesce(sum(pg_total_relation_size(c.oid)), 0) AS BIGINT) FROM pg_class c "
                             "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
                             "AND c.relkind = 'r'").fetchone()[0]
        return {"bytes": size, "free_bytes": 0}

    def close(self) -> None:
        with self._read_lock:
            if self._reader_conn is not None:
                self._pool.putconn(self._reader_conn)
                self._reader_conn = None
        if self._conn is not None:
            self._pool.putconn(self._conn)
            self._conn = None  # type: ignore[assignment]
