"""Records every host sharing a PostgreSQL state sees: events counted in a rolling window (Zoho's token mints per
refresh token), amounts spent in one (its API credits), and small JSON documents a connector keeps between runs (GP's
seen-lists). Each change runs in a transaction holding an advisory lock on its key, so two hosts cannot both take the
last mint or drop each other's entries. With the SQLite state, connectors keep these in files beside it instead
(per host, as its processes share them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from mlconnector.clock import utcnow
from mlconnector.state.common import iso, parse_iso


class SharedLedger:
    """The ledger in a PostgreSQL state database (tables ``ledger_events`` and ``ledger_amounts``)."""

    def __init__(self, url: str, password: str | None, common: "SharedLedger | None" = None) -> None:
        self.url, self._password = url, password
        # Where what every tenant of the database shares is counted (a tenant's ledger: the common schema's).
        self.common = common or self

    def _locked(self, conn: Any, what: str) -> None:
        from mlconnector.state.pg_connection import LOCK_KEY

        conn.execute(f"SELECT pg_advisory_xact_lock({LOCK_KEY})", [f"ledger {what}"])

    def _connection(self) -> Any:
        from mlconnector.state.pg_connection import pooled_connection

        return pooled_connection(self.url, self._password)

    def reserve(self, key: str, limit: int, window: timedelta, now: datetime | None = None) -> float:
        """Records one event under ``key`` and returns 0, or, when ``limit`` happened in the last ``window``, records
        nothing and returns the seconds until the oldest leaves it."""
        now = now or utcnow()
        with self._connection() as conn, conn.transaction():
            self._locked(conn, f"events {key}")
            conn.execute("DELETE FROM ledger_events WHERE key = %s AND happened <= %s", [key, iso(now - window)])
            recent = [row[0] for row in conn.execute(
                "SELECT happened FROM ledger_events WHERE key = %s ORDER BY happened", [key])]
            if len(recent) >= limit:
                oldest = parse_iso(recent[0])
                return max(0.1, (oldest + window - now).total_seconds()) if oldest else 0.1
            conn.execute("INSERT INTO ledger_events (key, happened) VALUES (%s, %s)", [key, iso(now)])
            return 0.0

    def count(self, key: str, window: timedelta, now: datetime | None = None) -> int:
        now = now or utcnow()
        with self._connection() as conn:
            return conn.execute("SELECT count(*) FROM ledger_events WHERE key = %s AND happened > %s",
                                [key, iso(now - window)]).fetchone()[0]

    def spend(self, key: str, amount: int, budget: int, window: timedelta,
              now: datetime | None = None) -> tuple[bool, int]:
        """Adds ``amount`` to what ``key`` spent in the last ``window`` unless that would cross ``budget`` (0: no
        budget). Returns (spent, what was spent in the window: this amount included when it was)."""
        now = now or utcnow()
        minute = iso(now.replace(second=0, microsecond=0))
        with self._connection() as conn, conn.transaction():
            self._locked(conn, f"amounts {key}")
            conn.execute("DELETE FROM ledger_amounts WHERE key = %s AND minute <= %s", [key, iso(now - window)])
            spent = conn.execute("SELECT CAST(coalesce(sum(amount), 0) AS BIGINT) FROM ledger_amounts "
                                 "WHERE key = %s", [key]).fetchone()[0]
            if budget and spent + amount > budget:
                return False, spent
            conn.execute("INSERT INTO ledger_amounts (key, minute, amount) VALUES (%s, %s, %s) ON CONFLICT (key, "
                         "minute) DO UPDATE SET amount = ledger_amounts.amount + excluded.amount",
                         [key, minute, amount])
            return True, spent + amount

    def read(self, name: str) -> dict[str, Any]:
        """The document's object as last written (empty when there is none): one plain read, no lock (a writer
        replaces a document in one statement, so a read sees it whole)."""
        with self._connection() as conn:
            row = conn.execute("SELECT body FROM ledger_documents WHERE name = %s", [name]).fetchone()
        return json.loads(row[0]) if row else {}

    @contextmanager
    def edited(self, name: str) -> Iterator[dict[str, Any]]:
        """The document's object (empty when there is none), written back when the block ends without an error and
        changed it; what ``jsonfile.edited`` does with a file, for every host at once."""
        with self._connection() as conn, conn.transaction():
            self._locked(conn, f"document {name}")
            row = conn.execute("SELECT body FROM ledger_documents WHERE name = %s", [name]).fetchone()
            data = json.loads(row[0]) if row else {}
            before = json.dumps(data, sort_keys=True) if row else None
            yield data
            body = json.dumps(data, sort_keys=True)
            if body != before:
                conn.execute("INSERT INTO ledger_documents (name, body) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE "
                             "SET body = excluded.body", [name, body])
