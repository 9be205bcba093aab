"""What every state store shares: one set of SQL for runs, watermarks, links, audit and the queues, written in the
part of SQL that SQLite and PostgreSQL agree on (``?`` placeholders; a store whose driver wants others rewrites
them). A store supplies its connection (``_execute``, ``_committed``), how a transaction begins, and its checks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlconnector.clock import utcnow
from mlconnector.state.audit import AuditQueries
from mlconnector.state.checks import CheckQueries
from mlconnector.state.incidents import IncidentQueries
from mlconnector.state.retention import RetentionQueries
from mlconnector.state.common import MAX_ROWS_PER_STATEMENT, _serialized, iso, parse_iso
from mlconnector.state.links import Link, LinkQueries
from mlconnector.state.queues import QueueQueries, Replay


@dataclass
class BatchRecord:
    """One batch's bookkeeping, written by ``State.record_batch``."""

    links: list[Link] = field(default_factory=list)
    links_if_absent: list[Link] = field(default_factory=list)  # the opposite flow's, for records just written
    audits: list[dict[str, Any]] = field(default_factory=list)
    queued: list[Replay] = field(default_factory=list)
    replayed: list[str] = field(default_factory=list)  # source ids that no longer wait (written, skipped ...)
    intents_closed: list[str] = field(default_factory=list)
    watermark: datetime | None = None


@dataclass(frozen=True)
class FlowMarks:
    """What a poll of one flow needs of the state before it reads, read at once by ``State.flow_marks``."""

    watermark: datetime | None
    mapping_digest: str | None  # of the configured mappings its records were last mapped with; None: never recorded
    queued: bool  # a record of the flow waits in the replay queue


@dataclass(frozen=True)
class DeletionMarks:
    """What a flow's deletion look needs of the state, read at once by ``State.deletion_marks``."""

    kept: dict[str, str]  # target records kept (flag, unlink) after their sources' deletion: id -> that policy
    feed_since: datetime | None  # how far the flow's deletion feed was read
    scanned: datetime | None  # when its source's ids were last read whole


class StateStore(LinkQueries, AuditQueries, QueueQueries, CheckQueries, IncidentQueries, RetentionQueries):
    """One open state store. Use as a context manager, or call close(). Threads of one run may share it: a
    transaction and the reads a run makes while another thread records are serialized (``lock``)."""

    BEGIN = "BEGIN"
    kind = "state"
    shown = ""  # where it is, as it may be printed (never a password)
    run_lock: Any = None  # the pair's lock while a run holds it (``StateLocation.pair_lock``)

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._depth = 0  # transactions open on the thread holding ``lock`` (nested ones are savepoints)
        self._read_lock = threading.Lock()

    # what a store supplies -----------------------------------------------------------------------------------
    def _execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """Runs one statement on the writing connection; returns its cursor."""
        raise NotImplementedError

    def _committed(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows as committed, read on a connection of this store's own for reads (a run preparing its next batch
        does not wait for the transaction its recording thread has open)."""
        raise NotImplementedError

    def _insert_rows(self, head: str, width: int, rows: list[Any], tail: str = "") -> None:
        """``head VALUES (...) tail`` for every row of ``rows`` (``width`` values each), in as few round trips as
        the database takes them."""
        raise NotImplementedError

    def check_same_file(self) -> None:
        """Raises when what this store opened can no longer take this run's writes (see each store)."""

    def _check_in_transaction(self) -> None:
        """Checked when a transaction begins and before it commits."""
        self.check_same_file()

    @contextmanager
    def _durable(self) -> Iterator[None]:
        """Commits inside are on disk before the call returns, whatever the store's usual setting."""
        yield

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "StateStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # shared plumbing -----------------------------------------------------------------------------------------
    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cursor = self._execute(sql, args)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside lands together or not at all (SQLite: BEGIN IMMEDIATE, writers queue, not fail).
        Inside another one (on the thread holding it), a savepoint: undone alone when it fails, landing with the
        outer."""
        with self.lock:
            if self._depth:
                name = f"nested{self._depth}"
                self._depth += 1
                self._control(f"SAVEPOINT {name}")
                try:
                    yield
                except BaseException:
                    self._control(f"ROLLBACK TO {name}")
                    self._control(f"RELEASE {name}")
                    raise
                finally:
                    self._depth -= 1
                self._control(f"RELEASE {name}")
                return
            self._check_in_transaction()
            self._control(self.BEGIN)
            self._depth = 1
            try:
                yield
                self._check_in_transaction()  # what would be committed must land where the next run looks
            except BaseException:
                self._rollback()
                raise
            finally:
                self._depth = 0
            self._control("COMMIT")

    def _control(self, sql: str) -> None:
        """A transaction's own statement (BEGIN, SAVEPOINT, RELEASE, ROLLBACK TO, COMMIT); a store whose statements
        are round trips may send it with the next one."""
        self._execute(sql)

    def _rollback(self) -> None:
        self._execute("ROLLBACK")

    def record_batch(self, pair: str, flow: str, batch: BatchRecord) -> None:
        """What one batch of a flow did, in one transaction (a savepoint inside one already open): its links (and
        the opposite flow's it made), its audit rows, the replay queue, its intents closed and the watermark."""
        now = iso(utcnow())  # the batch's one time, for its links, audit rows, queue entries and watermark
        with self.transaction():
            if batch.links:
                self.save_links(batch.links, now=now)
            if batch.links_if_absent:
                self.add_links_if_absent(batch.links_if_absent, now=now)
            if batch.replayed:
                self.clear_replays(pair, flow, batch.replayed)
            if batch.queued:
                self.queue_replays(pair, flow, batch.queued, now=now)
            if batch.audits:
                self.add_audits(batch.audits, now=now)
            if batch.intents_closed:
                self.clear_intents(pair, flow, batch.intents_closed)
            if batch.watermark is not None:
                self.set_watermark(pair, flow, batch.watermark, now=now)

    # runs ------------------------------------------------------------------------------------
    def prove_writable(self, name: str) -> None:
        """Commit a one-row write (raises what a run's commit would meet: a full disk, a read-only or replaced file,
        a database gone)."""
        with self.transaction():
            self._execute("INSERT INTO health (name, checked) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                          "checked = excluded.checked", [name, iso(utcnow())])

    @_serialized
    def close_abandoned_runs(self, pair: str) -> int:
        """Runs of ``pair`` still marked running while this process holds the pair's lock ended without a word
        (kill -9, a power cut, a second Ctrl-C): interrupted, ended at their last audit row."""
        return self._execute(
            "UPDATE runs SET status = 'interrupted', finished = coalesce((SELECT max(time) FROM audit "
            "WHERE audit.run_id = runs.id), started) WHERE pair = ? AND status = 'running'", [pair]).rowcount

    @_serialized
    def start_run(self, run_id: str, pair: str, *, dry_run: bool = False, kind: str = "sync") -> None:
        """``kind``: sync, replay or drain (the receiver's processing of notifications)."""
        self._execute("INSERT INTO runs (id, pair, started, status, dry_run, kind) VALUES (?, ?, ?, 'running', ?, ?)",
                      [run_id, pair, iso(utcnow()), int(dry_run), kind])

    @_serialized
    def finish_run(self, run_id: str, status: str, exit_code: int, summary: dict[str, Any]) -> None:
        self._execute("UPDATE runs SET finished = ?, status = ?, exit_code = ?, summary = ? WHERE id = ?",
                      [iso(utcnow()), status, exit_code, json.dumps(summary), run_id])

    @_serialized
    def last_runs(self, pair: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
        where, args = ("WHERE pair = ? ", [pair]) if pair else ("", [])
        return self._rows(f"SELECT * FROM runs {where}ORDER BY started DESC LIMIT ?", [*args, limit])

    # watermarks ------------------------------------------------------------------------------
    @_serialized
    def watermark(self, pair: str, flow: str) -> datetime | None:
        row = self._execute("SELECT value FROM watermarks WHERE pair = ? AND flow = ?", [pair, flow]).fetchone()
        return parse_iso(row[0]) if row else None

    @_serialized
    def flow_marks(self, pair: str, flow: str) -> FlowMarks:
        """The flow's watermark, its mapping digest and whether a record of it is queued, in one statement."""
        row = self._execute("SELECT (SELECT value FROM watermarks WHERE pair = ? AND flow = ?), "
                            "(SELECT digest FROM mapping_digests WHERE pair = ? AND flow = ?), "
                            "EXISTS (SELECT 1 FROM replay WHERE pair = ? AND flow = ?)", [pair, flow] * 3).fetchone()
        return FlowMarks(parse_iso(row[0]), row[1], bool(row[2]))

    def set_watermark(self, pair: str, flow: str, value: datetime, *, now: str | None = None) -> None:
        """Move the watermark forward; it never moves back (a late, older record cannot rewind it)."""
        # One plain statement (a load moves it once per batch): stored values are all iso(), UTC to the
        # microsecond, so their text orders as their time does.
        self._execute("INSERT INTO watermarks (pair, flow, value, updated) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT (pair, flow) DO UPDATE SET value = excluded.value, updated = excluded.updated "
                      "WHERE excluded.value > watermarks.value", [pair, flow, iso(value), now or iso(utcnow())])

    @_serialized
    def reset_watermark(self, pair: str, flow: str) -> None:
        self._execute("DELETE FROM watermarks WHERE pair = ? AND flow = ?", [pair, flow])

    @_serialized
    def watermarks(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM watermarks ORDER BY pair, flow")

    # deletions ---------------------------------------------------------------------------------------------
    @_serialized
    def deletion_marks(self, pair: str, flow: str) -> DeletionMarks:
        """What the flow's deletion look needs: the target records kept after deletions, and where the checks got."""
        # One statement (a round trip less per flow and run on a server): the checks' row first, tagged 0.
        rows = self._execute("SELECT 0, feed_since, scanned FROM deletion_checks WHERE pair = ? AND flow = ? "
                             "UNION ALL SELECT 1, target_id, policy FROM kept_after_delete WHERE pair = ? AND flow = ?",
                             [pair, flow] * 2).fetchall()
        row = next((row[1:] for row in rows if row[0] == 0), None)
        kept = {row[1]: row[2] for row in rows if row[0] == 1}
        return DeletionMarks(kept, *((parse_iso(row[0]), parse_iso(row[1])) if row else (None, None)))

    @_serialized
    def note_deletion_check(self, pair: str, flow: str, *, feed_since: datetime | None = None,
                            scanned: datetime | None = None) -> None:
        self._execute(
            "INSERT INTO deletion_checks (pair, flow, feed_since, scanned) VALUES (?, ?, ?, ?) ON CONFLICT (pair, flow) "
            "DO UPDATE SET feed_since = coalesce(excluded.feed_since, deletion_checks.feed_since), "
            "scanned = coalesce(excluded.scanned, deletion_checks.scanned)", [pair, flow, iso(feed_since), iso(scanned)])

    def note_kept_after_delete(self, pair: str, flow: str, target_ids: list[str], system: str, policy: str,
                               when: datetime) -> None:
        """Target records ``flow`` kept (``policy`` flag or unlink) when their sources were deleted in ``system``."""
        self._insert_rows("INSERT INTO kept_after_delete (pair, flow, target_id, system, policy, noted)", 6,
                          [(pair, flow, target_id, system, policy, iso(when)) for target_id in dict.fromkeys(target_ids)],
                          " ON CONFLICT (pair, flow, target_id) DO UPDATE SET system = excluded.system, "
                          "policy = excluded.policy, noted = excluded.noted")

    @_serialized
    def kept_after_delete(self, pair: str, flow: str) -> dict[str, str]:
        """Target records ``flow`` kept when their sources were deleted: target id -> where they were deleted."""
        return dict(self._execute("SELECT target_id, system FROM kept_after_delete WHERE pair = ? AND flow = ?",
                                  [pair, flow]).fetchall())

    @_serialized
    def kept_policies(self, pair: str, flow: str) -> dict[str, str]:
        """Target id -> the policy that kept it (flag, unlink)."""
        return dict(self._execute("SELECT target_id, policy FROM kept_after_delete WHERE pair = ? AND flow = ?",
                                  [pair, flow]).fetchall())

    def forget_kept_after_delete(self, pair: str, flow: str, target_ids: list[str]) -> None:
        for start in range(0, len(target_ids), MAX_ROWS_PER_STATEMENT):
            chunk = target_ids[start:start + MAX_ROWS_PER_STATEMENT]
            self._execute(f"DELETE FROM kept_after_delete WHERE pair = ? AND flow = ? AND target_id IN "
                          f"({', '.join('?' * len(chunk))})", [pair, flow, *chunk])

    # configured mappings ---------------------------------------------------------------------------
    @_serialized
    def mapping_digest(self, pair: str, flow: str) -> str | None:
        """The digest of the configured mappings a flow's records were last mapped with ("" none; None: never
        recorded)."""
        row = self._execute("SELECT digest FROM mapping_digests WHERE pair = ? AND flow = ?", [pair, flow]).fetchone()
        return row[0] if row else None

    @_serialized
    def set_mapping_digest(self, pair: str, flow: str, digest: str) -> None:
        self._execute("INSERT INTO mapping_digests (pair, flow, digest, updated) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT (pair, flow) DO UPDATE SET digest = excluded.digest, updated = excluded.updated",
                      [pair, flow, digest, iso(utcnow())])

    @_serialized
    def field_check(self, pair: str, flow: str) -> tuple[str, datetime] | None:
        """The digest of the configured mappings whose fields were last found in the systems, and when."""
        row = self._execute("SELECT digest, checked FROM field_checks WHERE pair = ? AND flow = ?",
                            [pair, flow]).fetchone()
        return (row[0], parse_iso(row[1])) if row else None

    @_serialized
    def set_field_check(self, pair: str, flow: str, digest: str, checked: datetime) -> None:
        self._execute("INSERT INTO field_checks (pair, flow, digest, checked) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT (pair, flow) DO UPDATE SET digest = excluded.digest, checked = excluded.checked",
                      [pair, flow, digest, iso(checked)])
