"""One open state file: the SQLite connection, transactions, the file's identity, runs and watermarks; the
links, audit and queue queries come from the classes it is made of."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils
from filelock import FileLock, Timeout

from mlconnector.errors import ConfigError
from mlconnector.state.audit import AuditQueries
from mlconnector.state.checks import CheckQueries
from mlconnector.state.incidents import IncidentQueries
from mlconnector.state.retention import RetentionQueries
from mlconnector.state.common import MAX_ROWS_PER_STATEMENT, StateFileReplaced, _serialized, iso, parse_iso, utcnow
from mlconnector.state.links import Link, LinkQueries
from mlconnector.state.queues import QueueQueries, Replay
from mlconnector.state.schema import migrations

WAL_CHECKPOINT_PAGES = 10_000  # about 40 MB of log at most between checkpoints
CACHE_KIB = 6_144  # the writing connection's page cache (SQLite's default is 2,000 KiB)


def refuse_foreign_database(path: Path) -> None:
    """A SQLite file that holds tables but none of ours is another program's: refused before anything is written to
    it (opened read-only here; not switched to WAL, not migrated). Files that are not SQLite at all are refused where
    they are opened, also untouched."""
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return
    except OSError:
        return  # opening it says what is wrong
    # Read through SQLite only, never opened here: closing any descriptor of the file drops every POSIX lock this
    # process holds on it, and another connection of this process (the receiver's inbox, while `listen` renews
    # channels or drains) may hold some; another process could then write under it and damage the file. A file
    # that is not SQLite at all fails the query below and is left to the opening to refuse.
    conn = None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        ours = "_sqlite_migrations" in tables and conn.execute(
            "SELECT 1 FROM _sqlite_migrations WHERE migration_set = ? LIMIT 1", [migrations.name]).fetchone()
    except sqlite3.DatabaseError:
        return  # damaged: opening it says so, without changing it
    finally:
        if conn is not None:
            conn.close()
    # Only the migrations table: a state file another run is creating this instant (it adds that table first).
    if set(tables) - {"_sqlite_migrations"} and not ours:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise ConfigError(f"state file {path} is another program's SQLite database (tables {shown}), not "
                          "mlconnector's; it was left untouched: pass --state with a path of its own (a new file is "
                          "created there)")


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


class State(LinkQueries, AuditQueries, QueueQueries, CheckQueries, IncidentQueries, RetentionQueries):
    """One open state file. Use as a context manager, or call close(). Threads of one run may share it: a
    transaction and the reads a run makes while another thread records are serialized (``lock``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.lock = threading.RLock()
        self._depth = 0  # transactions open on the thread holding ``lock`` (nested ones are savepoints)
        self._read_lock = threading.Lock()
        self._read_conn: sqlite3.Connection | None = None  # committed_links
        refuse_foreign_database(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                # Created 0600 before SQLite opens it: it holds ids and audit, which are private.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            self._variables = min(conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER), 32766)
            self.db = sqlite_utils.Database(conn)
            # Switching to WAL and migrating take locks SQLite may refuse at once instead of waiting
            # (a reader upgrading to a writer): processes opening the file take turns here.
            with FileLock(str(self.path) + ".open.lock", timeout=60):
                self.db.execute("PRAGMA journal_mode=WAL")
                migrations.apply(self.db)
            # WAL with NORMAL: a commit survives the process being killed; only a power cut or an OS crash can
            # take back the last few, and a re-read redoes those (upserts by natural key). The one commit that
            # must never be taken back, the intent before a keyless create, is made with FULL (add_intents).
            conn.execute("PRAGMA synchronous=NORMAL")
            # The log is copied into the file (and both synced) every WAL_CHECKPOINT_PAGES pages rather than
            # SQLite's 1,000: a first load's links and audit rows filled 1,000 pages every few batches.
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            # A page cache that holds what a group of batches changes (their links and audit rows touch a page of
            # each index per record): with SQLite's 2 MB, pages were written to the log before the commit and
            # again at it, and read back from the file. A 50,000-record load made 9.2 pwrite and 2.4 pread calls
            # per record with 2 MB, 6.5 and 0.8 with this (more cache saves no more).
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            self._identity = self._file_identity()
        except Timeout:
            raise ConfigError(f"state file {self.path} is held by another process for over a minute; "
                              "is a run stuck?") from None
        except (OSError, sqlite3.DatabaseError) as exc:
            raise ConfigError(f"state file {self.path} cannot be opened ({exc}); pass --state PATH "
                              "to use another") from None

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return None
        return found.st_dev, found.st_ino

    def check_same_file(self) -> None:
        """Raises StateFileReplaced when the path no longer names the file this state opened: deleted, or replaced
        by another (a restore, a copy over it). Commits would then go to a file nobody will open again."""
        if self._file_identity() != self._identity:
            raise StateFileReplaced(
                f"state file {self.path} is no longer the file this run opened (deleted or replaced while it ran), "
                "so the run stopped writing; put the file back (from a backup) or run again to start a new one: "
                "records already in both systems are matched again by their keys")

    def close(self) -> None:
        with self._read_lock:
            if self._read_conn is not None:
                self._read_conn.close()
                self._read_conn = None
        self.db.close()

    def __enter__(self) -> "State":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside lands together or not at all (BEGIN IMMEDIATE: writers queue, not fail). Inside
        another one (on the thread holding it), a savepoint: undone alone when it fails, landing with the outer."""
        with self.lock:
            if self._depth:
                name = f"nested{self._depth}"
                self._depth += 1
                self.db.execute(f"SAVEPOINT {name}")
                try:
                    yield
                except BaseException:
                    self.db.execute(f"ROLLBACK TO {name}")
                    self.db.execute(f"RELEASE {name}")
                    raise
                finally:
                    self._depth -= 1
                self.db.execute(f"RELEASE {name}")
                return
            self.check_same_file()
            self.db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
                self.check_same_file()  # what would be committed must land where the next run looks
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
            self.db.execute("COMMIT")

    def _reader(self) -> sqlite3.Connection:
        """This state's connection for reads of what is committed (hold ``_read_lock``)."""
        if self._read_conn is None:
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA query_only=1")
            self._read_conn = conn
        return self._read_conn

    def _insert_rows(self, head: str, width: int, rows: list[Any], tail: str = "") -> None:
        """``head VALUES (?, ...), (?, ...) tail`` for many rows at once, a statement per few hundred rows. Not
        executemany, which steps once per row: each step lets go of the interpreter lock, and taking it back
        waits for whichever thread holds it then, so a batch's bookkeeping waited on the run's other work."""
        per = max(1, min(MAX_ROWS_PER_STATEMENT, self._variables // width))
        group = "(" + ", ".join("?" * width) + ")"
        for start in range(0, len(rows), per):
            chunk = rows[start:start + per]
            self.db.conn.execute(f"{head} VALUES {', '.join([group] * len(chunk))}{tail}",
                                 [value for row in chunk for value in row])

    def record_batch(self, pair: str, flow: str, batch: BatchRecord) -> None:
        """What one batch of a flow did, in one transaction (a savepoint inside one already open): its links (and
        the opposite flow's it made), its audit rows, the replay queue, its intents closed and the watermark."""
        with self.transaction():
            self.save_links(batch.links)
            self.add_links_if_absent(batch.links_if_absent)
            if batch.replayed:
                self.clear_replays(pair, flow, batch.replayed)
            self.queue_replays(pair, flow, batch.queued)
            self.add_audits(batch.audits)
            if batch.intents_closed:
                self.clear_intents(pair, flow, batch.intents_closed)
            if batch.watermark is not None:
                self.set_watermark(pair, flow, batch.watermark)

    # runs ------------------------------------------------------------------------------------
    def prove_writable(self, name: str) -> None:
        """Commit a one-row write (raises what a run's commit would meet: a full disk, a read-only or replaced file)."""
        with self.transaction():
            self.db.conn.execute("INSERT OR REPLACE INTO health (name, checked) VALUES (?, ?)", [name, iso(utcnow())])

    def close_abandoned_runs(self, pair: str) -> int:
        """Runs of ``pair`` still marked running while this process holds the pair's lock ended without a word
        (kill -9, a power cut, a second Ctrl-C): interrupted, ended at their last audit row."""
        return self.db.conn.execute(
            "UPDATE runs SET status = 'interrupted', finished = coalesce((SELECT max(time) FROM audit "
            "WHERE audit.run_id = runs.id), started) WHERE pair = ? AND status = 'running'", [pair]).rowcount

    def start_run(self, run_id: str, pair: str, *, dry_run: bool = False, kind: str = "sync") -> None:
        """``kind``: sync, replay or drain (the receiver's processing of notifications)."""
        self.db["runs"].insert({"id": run_id, "pair": pair, "started": iso(utcnow()), "status": "running",
                                "dry_run": int(dry_run), "kind": kind})

    def finish_run(self, run_id: str, status: str, exit_code: int, summary: dict[str, Any]) -> None:
        self.db["runs"].update(run_id, {"finished": iso(utcnow()), "status": status, "exit_code": exit_code,
                                        "summary": json.dumps(summary)})

    def last_runs(self, pair: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
        where, args = ("pair = ?", [pair]) if pair else (None, [])
        return list(self.db["runs"].rows_where(where, args, order_by="started desc", limit=limit))

    # watermarks ------------------------------------------------------------------------------
    @_serialized
    def watermark(self, pair: str, flow: str) -> datetime | None:
        row = self.db.conn.execute("SELECT value FROM watermarks WHERE pair = ? AND flow = ?",
                                   [pair, flow]).fetchone()
        return parse_iso(row[0]) if row else None

    def set_watermark(self, pair: str, flow: str, value: datetime) -> None:
        """Move the watermark forward; it never moves back (a late, older record cannot rewind it)."""
        # One plain statement (a load moves it once per batch): stored values are all iso(), UTC to the
        # microsecond, so their text orders as their time does.
        self.db.conn.execute("INSERT INTO watermarks (pair, flow, value, updated) VALUES (?, ?, ?, ?) "
                             "ON CONFLICT (pair, flow) DO UPDATE SET value = excluded.value, updated = excluded.updated "
                             "WHERE excluded.value > watermarks.value", [pair, flow, iso(value), iso(utcnow())])

    def reset_watermark(self, pair: str, flow: str) -> None:
        self.db.execute("DELETE FROM watermarks WHERE pair = ? AND flow = ?", [pair, flow])

    # deletions ---------------------------------------------------------------------------------------------
    @_serialized
    def deletion_check(self, pair: str, flow: str) -> tuple[datetime | None, datetime | None]:
        """(how far the flow's deletion feed was read, when its source's ids were last read whole)."""
        row = self.db.conn.execute("SELECT feed_since, scanned FROM deletion_checks WHERE pair = ? AND flow = ?",
                                   [pair, flow]).fetchone()
        return (parse_iso(row[0]), parse_iso(row[1])) if row else (None, None)

    def note_deletion_check(self, pair: str, flow: str, *, feed_since: datetime | None = None,
                            scanned: datetime | None = None) -> None:
        self.db.conn.execute(
            "INSERT INTO deletion_checks (pair, flow, feed_since, scanned) VALUES (?, ?, ?, ?) ON CONFLICT (pair, flow) "
            "DO UPDATE SET feed_since = coalesce(excluded.feed_since, feed_since), "
            "scanned = coalesce(excluded.scanned, scanned)", [pair, flow, iso(feed_since), iso(scanned)])

    def note_kept_after_delete(self, pair: str, flow: str, target_ids: list[str], system: str, policy: str,
                               when: datetime) -> None:
        """Target records ``flow`` kept (``policy`` flag or unlink) when their sources were deleted in ``system``."""
        self.db.conn.executemany(
            "INSERT OR REPLACE INTO kept_after_delete (pair, flow, target_id, system, policy, noted) "
            "VALUES (?, ?, ?, ?, ?, ?)", [(pair, flow, target_id, system, policy, iso(when)) for target_id in target_ids])

    @_serialized
    def kept_after_delete(self, pair: str, flow: str) -> dict[str, str]:
        """Target records ``flow`` kept when their sources were deleted: target id -> where they were deleted."""
        return dict(self.db.conn.execute("SELECT target_id, system FROM kept_after_delete WHERE pair = ? AND flow = ?",
                                         [pair, flow]).fetchall())

    @_serialized
    def kept_policies(self, pair: str, flow: str) -> dict[str, str]:
        """Target id -> the policy that kept it (flag, unlink)."""
        return dict(self.db.conn.execute("SELECT target_id, policy FROM kept_after_delete WHERE pair = ? AND flow = ?",
                                         [pair, flow]).fetchall())

    def forget_kept_after_delete(self, pair: str, flow: str, target_ids: list[str]) -> None:
        for start in range(0, len(target_ids), MAX_ROWS_PER_STATEMENT):
            chunk = target_ids[start:start + MAX_ROWS_PER_STATEMENT]
            self.db.conn.execute(f"DELETE FROM kept_after_delete WHERE pair = ? AND flow = ? AND target_id IN "
                                 f"({', '.join('?' * len(chunk))})", [pair, flow, *chunk])

    # configured mappings ---------------------------------------------------------------------------
    @_serialized
    def mapping_digest(self, pair: str, flow: str) -> str | None:
        """The digest of the configured mappings a flow's records were last mapped with ("" none; None: never
        recorded)."""
        row = self.db.conn.execute("SELECT digest FROM mapping_digests WHERE pair = ? AND flow = ?",
                                   [pair, flow]).fetchone()
        return row[0] if row else None

    def set_mapping_digest(self, pair: str, flow: str, digest: str) -> None:
        self.db.conn.execute("INSERT INTO mapping_digests (pair, flow, digest, updated) VALUES (?, ?, ?, ?) "
                             "ON CONFLICT (pair, flow) DO UPDATE SET digest = excluded.digest, "
                             "updated = excluded.updated", [pair, flow, digest, iso(utcnow())])

    def watermarks(self) -> list[dict[str, Any]]:
        return list(self.db["watermarks"].rows_where(order_by="pair, flow"))
