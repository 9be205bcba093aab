"""The audit trail: one row per record per attempt; the queries `mlconnector audit` and `status` need."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mlconnector.clock import utcnow
from mlconnector.state.common import iso

AUDIT_COLUMNS = frozenset({"run_id", "time", "pair", "flow", "source_system", "source_entity", "source_id",
                           "target_system", "target_entity", "target_id", "action", "status", "error_class",
                           "error", "note", "payload", "changes", "record_key"})
_AUDIT_ORDER = tuple(sorted(AUDIT_COLUMNS))
_AUDIT_TIME = _AUDIT_ORDER.index("time")
_INSERT_AUDIT = f"INSERT INTO audit ({', '.join(_AUDIT_ORDER)})"


class AuditQueries:
    """The audit table's queries, part of a state store."""

    # audit -----------------------------------------------------------------------------------
    def add_audit(self, row: dict[str, Any]) -> None:
        self.add_audits([row])

    def add_audits(self, rows: list[dict[str, Any]], *, now: str | None = None) -> None:
        """Many audit rows in one statement (a batch's); every row gets the same columns, absent ones NULL.
        ``now``: the time of rows without one (stored form)."""
        if not rows:
            return
        now = now or iso(utcnow())
        values = []
        for row in rows:
            if not row.keys() <= AUDIT_COLUMNS:
                raise ValueError(f"audit has no column {sorted(row.keys() - AUDIT_COLUMNS)[0]!r}")
            columns = list(map(row.get, _AUDIT_ORDER))
            if "time" not in row:
                columns[_AUDIT_TIME] = now
            values.append(columns)
        self._insert_rows(_INSERT_AUDIT, len(_AUDIT_ORDER), values)

    def audit_rows(self, *, pair: str | None = None, flow: str | None = None, status: str | None = None,
                   record: str | None = None, since: datetime | None = None, run: str | None = None,
                   limit: int | None = 200) -> list[dict[str, Any]]:
        clauses, args = [], []
        for column, value in (("pair", pair), ("flow", flow), ("run_id", run)):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if status:
            clauses.append("(status = ? or action = ?)")
            args += [status, status]
        if record:  # a record's id on either side, or its business key
            clauses.append("(source_id = ? or target_id = ? or record_key = ?)")
            args += [record, record, record]
        if since:
            clauses.append("time >= ?")
            args.append(iso(since))
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        if limit is not None:
            where += "ORDER BY id DESC LIMIT ?"
            args.append(limit)
        else:
            where += "ORDER BY id DESC"
        return list(reversed(self._rows(f"SELECT * FROM audit {where}", args)))

    def arrivals(self, since: datetime) -> list[dict[str, Any]]:
        """Per pair and flow, how many changes arrived by notification and how many only by the poll."""
        # CASE, not sum(note = 'push'): PostgreSQL sums no booleans; CAST: its sum of integers is a numeric.
        rows = self._execute(
            "SELECT pair, flow, CAST(sum(CASE WHEN note = 'push' THEN 1 ELSE 0 END) AS INTEGER), "
            "CAST(sum(CASE WHEN note IS NULL THEN 1 ELSE 0 END) AS INTEGER) FROM audit "
            "WHERE action IN ('create', 'update') AND time >= ? GROUP BY pair, flow ORDER BY pair, flow",
            [iso(since)]).fetchall()
        return [{"pair": p, "flow": f, "by_push": push or 0, "by_poll_only": poll or 0} for p, f, push, poll in rows]

    def deletions(self, since: datetime) -> list[dict[str, Any]]:
        """Per pair and flow, the records deleted in their source since then, by what was done to their targets
        (audit actions delete, flag, unlink; failed attempts counted apart)."""
        # As in arrivals: CASE, not sums of booleans (PostgreSQL has none), and the sums cast to integers.
        counts = ", ".join(f"CAST(sum(CASE WHEN {when} THEN 1 ELSE 0 END) AS INTEGER)" for when in (
            "action = 'delete' AND status = 'ok'", "action = 'flag' AND status = 'ok'",
            "action = 'unlink' AND status = 'ok'", "error_class = 'delete'"))
        rows = self._execute(
            f"SELECT pair, flow, {counts} FROM audit "
            "WHERE (action IN ('delete', 'flag', 'unlink') OR error_class = 'delete') AND time >= ? "
            "GROUP BY pair, flow ORDER BY pair, flow", [iso(since)]).fetchall()
        return [{"pair": p, "flow": f, "deleted": d or 0, "flagged": g or 0, "unlinked": u or 0, "failed": x or 0}
                for p, f, d, g, u, x in rows]
