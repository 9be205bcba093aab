"""Retention: audit rows, processed notifications and runs older than a cutoff, deleted a batch at a time so a
run or the receiver writing meanwhile waits at most one short transaction. Freed pages are reused by later rows:
the file stops growing; `vacuum` gives the space back to the disk."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mlconnector.state.common import iso

PRUNE_BATCH = 2_000

# Oldest first in id order (rows are added in time order), so each batch finds its rows at the start of the table.
_OLD = {
    "audit": "SELECT id FROM audit WHERE time < ? ORDER BY id LIMIT ?",
    "inbox": "SELECT id FROM inbox WHERE processed IS NOT NULL AND processed < ? ORDER BY id LIMIT ?",
    # A pair's last sync stays whatever its age: `status --check` judges the pair by it.
    "runs": "SELECT id FROM runs WHERE started < ? AND status != 'running' AND id NOT IN (SELECT id FROM runs AS r "
            "WHERE r.pair = runs.pair AND coalesce(r.kind, 'sync') = 'sync' ORDER BY started DESC LIMIT 1) "
            "ORDER BY started LIMIT ?",
}


class RetentionQueries:
    """Part of State."""

    def prune(self, before: datetime, *, max_batches: int | None = None) -> dict[str, int]:
        """Delete what is older than ``before``; at most ``max_batches`` batches in all (a run prunes a little each
        time; `mlconnector prune` all of it). Returns the rows deleted per table."""
        deleted = {"audit": 0, "inbox": 0, "runs": 0}
        batches = 0
        for table, query in _OLD.items():
            while max_batches is None or batches < max_batches:
                with self.transaction():
                    ids = [row[0] for row in self.db.execute(query, [iso(before), PRUNE_BATCH]).fetchall()]
                    if ids:
                        self.db.conn.execute(f"DELETE FROM {table} WHERE id IN ({','.join('?' * len(ids))})", ids)
                batches += 1
                deleted[table] += len(ids)
                if len(ids) < PRUNE_BATCH:
                    break
        return deleted

    def vacuum(self) -> None:
        """Rewrite the file without its free pages (needs as much free disk as the file's size, and a moment alone)."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.execute("VACUUM")

    def size(self) -> dict[str, Any]:
        """The file's size and how much of it is free pages."""
        page = self.db.execute("PRAGMA page_size").fetchone()[0]
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return {"bytes": page * pages, "free_bytes": page * free}
