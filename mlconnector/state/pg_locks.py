"""The run lock of a pair in the PostgreSQL state: a session advisory lock on a connection of its own, so the
server frees it when that connection ends (a killed worker frees it at once), and every host sharing the database
sees it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from mlconnector.errors import LockHeld
from mlconnector.state.common import StateFileReplaced
from mlconnector.state.pg_connection import LOCK_KEY, as_state_error, connect, ensure_migrated, pooled_connection
from mlconnector.urls import redact


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
        ensure_migrated(conn, url)  # first: a search_path naming no schema is told as such, not as a lock held
        name = f"pair {pair}"
        try:
            # The lock's connection sits idle through the run: a server's idle_session_timeout must not end it
            # (set in the same round trip; a server before 14 has no such setting).
            no_timeout = (", set_config('idle_session_timeout', '0', false)"
                          if conn.info.server_version >= 140000 else "")
            taken = conn.execute(f"SELECT pg_try_advisory_lock({LOCK_KEY}){no_timeout}", [name]).fetchone()[0]
        except psycopg.Error as exc:
            raise as_state_error(exc, url) from None
        if not taken:
            raise LockHeld(f"another run of {pair} is in progress (its lock in {redact(url)} is held); "
                           "this run exits without doing anything")
        try:
            yield RunLock(conn, pair, redact(url))
        finally:
            try:
                # Let go before closing: the server ends a closed session's backend (and its locks) a moment
                # later, and the next run, even in this process, must find the lock free.
                conn.execute(f"SELECT pg_advisory_unlock({LOCK_KEY})", [name])
            except psycopg.Error:
                pass  # the connection is gone, and the lock with it
    finally:
        conn.close()


def pair_locked(url: str, password: str | None, pair: str) -> bool:
    """Whether some session holds the pair's lock now (taken and let go at once when free)."""
    with pooled_connection(url, password) as conn:
        name = f"pair {pair}"
        if conn.execute(f"SELECT pg_try_advisory_lock({LOCK_KEY})", [name]).fetchone()[0]:
            conn.execute(f"SELECT pg_advisory_unlock({LOCK_KEY})", [name])
            return False
        return True
