"""What `status --check`, /health and the metrics read: the last runs by kind, how long records have waited in
the replay queue, channels that failed to renew, and each pair's last reconcile."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mlconnector.clock import utcnow
from mlconnector.state.common import iso, parse_iso


class CheckQueries:
    """Part of a state store (``state.base``)."""

    def run_pairs(self) -> list[str]:
        """Every pair that has a run recorded."""
        return [row[0] for row in self._execute("SELECT DISTINCT pair FROM runs ORDER BY pair").fetchall()]

    def last_syncs(self, pair: str, limit: int = 2) -> list[dict[str, Any]]:
        """The pair's latest sync runs, newest first (rows from before runs had a kind count as syncs)."""
        return self._rows("SELECT * FROM runs WHERE pair = ? AND coalesce(kind, 'sync') = 'sync' ORDER BY started DESC "
                          "LIMIT ?", [pair, limit])

    def last_success(self, pair: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM runs WHERE pair = ? AND coalesce(kind, 'sync') = 'sync' AND status = 'ok' "
                          "ORDER BY started DESC LIMIT 1", [pair])
        return rows[0] if rows else None

    def replay_waiting_since(self) -> list[dict[str, Any]]:
        """Per pair and flow: records waiting and when the longest-waiting of them first failed."""
        rows = self._execute("SELECT pair, flow, count(*), min(first_failed) FROM replay GROUP BY pair, flow "
                             "ORDER BY pair, flow").fetchall()
        return [{"pair": p, "flow": f, "count": n, "oldest": parse_iso(oldest)} for p, f, n, oldest in rows]

    def inbox_backlog(self) -> tuple[int, datetime | None]:
        """Notifications waiting, and when the oldest of them arrived."""
        count, oldest = self._execute("SELECT count(*), min(received) FROM inbox WHERE processed IS NULL").fetchone()
        return count, parse_iso(oldest)

    # channels that could not be subscribed or renewed ----------------------------------------------------------
    def note_channel_failure(self, system: str, entity: str, error: str) -> bool:
        """Records the failure; True when it is new (the entity's channel was fine until now)."""
        now = iso(utcnow())
        new = self._execute("SELECT 1 FROM channel_failures WHERE system = ? AND entity = ?",
                            [system, entity]).fetchone() is None
        self._execute(
            "INSERT INTO channel_failures (system, entity, error, since, last) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (system, entity) DO UPDATE SET error = excluded.error, last = excluded.last",
            [system, entity, error, now, now])
        return new

    def clear_channel_failure(self, system: str, entity: str) -> bool:
        """The entity's channel works again; True when it had failed before."""
        return self._execute("DELETE FROM channel_failures WHERE system = ? AND entity = ?",
                             [system, entity]).rowcount > 0

    def channel_failures(self) -> list[dict[str, Any]]:
        return [{**row, "since": parse_iso(row["since"]), "last": parse_iso(row["last"])}
                for row in self._rows("SELECT * FROM channel_failures ORDER BY system, entity")]

    # reconcile -------------------------------------------------------------------------------------------------
    def save_reconcile(self, pair: str, agrees: bool, differences: int) -> None:
        self._execute("INSERT INTO reconcile_results (pair, checked, agrees, differences) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT (pair) DO UPDATE SET checked = excluded.checked, agrees = excluded.agrees, "
                      "differences = excluded.differences", [pair, iso(utcnow()), int(agrees), differences])

    def reconcile_results(self) -> list[dict[str, Any]]:
        return [{**row, "checked": parse_iso(row["checked"]), "agrees": bool(row["agrees"])}
                for row in self._rows("SELECT * FROM reconcile_results ORDER BY pair")]
