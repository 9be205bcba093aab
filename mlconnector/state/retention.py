"""Retention: audit rows, processed notifications and runs older than a cutoff, deleted a batch at a time so a
run or the receiver writing meanwhile waits at most one short transaction. Freed pages are reused by later rows:
the file stops growing; `vacuum` gives the space back to the disk."""

from __future__ import annotations

from datetime import datetime

from mlconnector.state.common import iso

PRUNE_BATCH = 2_000

# Per table: the time a row is judged by, and which old rows may go. Rows are added in time order, so they are
# walked in id order from the oldest and the walk stops at the first row newer than the cutoff: a table with
# nothing to prune costs one short read, not a scan (the audit has no index on time alone, and each would slow
# every insert).
_TABLES = {
    "audit": ("time", "1 = 1"),
    "inbox": ("received", "processed IS NOT NULL"),  # a notification still waiting stays, however old
}


class RetentionQueries:
    """Part of a state store (``state.base``); each store says how it gives space back (``vacuum``, ``size``)."""

    def prune(self, before: datetime, *, max_batches: int | None = None) -> dict[str, int]:
        """Delete what is older than ``before``; at most ``max_batches`` batches per table (a run prunes a little
        each time; `mlconnector prune` all of it). Returns the rows deleted per table."""
        cutoff = iso(before)
        deleted = {table: self._prune_table(table, column, condition, cutoff, max_batches)
                   for table, (column, condition) in _TABLES.items()}
        deleted["runs"] = self._prune_runs(cutoff)
        return deleted

    def _prune_table(self, table: str, column: str, condition: str, cutoff: str, max_batches: int | None) -> int:
        deleted, after, batches = 0, -1, 0
        while max_batches is None or batches < max_batches:
            batches += 1
            # Not in a transaction: a row found old stays old, and its DELETE is one statement, so a run writing
            # meanwhile waits at most for that; and a table with nothing to prune costs one read, no BEGIN or COMMIT.
            with self.lock:
                # CASE: SQLite answers a comparison with 0 or 1, PostgreSQL with a boolean; both with 0 or 1 so.
                rows = self._execute(f"SELECT id, CASE WHEN {column} < ? THEN 1 ELSE 0 END, CASE WHEN {condition} "
                                     f"THEN 1 ELSE 0 END FROM {table} WHERE id > ? ORDER BY id LIMIT ?",
                                     [cutoff, after, PRUNE_BATCH]).fetchall()
                old = [row_id for row_id, is_old, may_go in rows if is_old and may_go]
                if old:
                    self._execute(f"DELETE FROM {table} WHERE id IN ({','.join('?' * len(old))})", old)
            deleted += len(old)
            if len(rows) < PRUNE_BATCH or not all(is_old for _, is_old, _ in rows):
                break  # the end of the table, or rows newer than the cutoff reached
            after = rows[-1][0]
        return deleted

    def _prune_runs(self, cutoff: str) -> int:
        """Runs are few (a few thousand a quarter per pair): one statement. A pair's last sync stays whatever its
        age: `status --check` judges the pair by it."""
        with self.lock:  # one statement: it lands whole without a transaction around it
            return self._execute(
                "DELETE FROM runs WHERE started < ? AND status != 'running' AND id NOT IN (SELECT max(id) FROM runs "
                "WHERE coalesce(kind, 'sync') = 'sync' GROUP BY pair)", [cutoff]).rowcount
