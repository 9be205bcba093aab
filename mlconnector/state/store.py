"""The SQLite state store: one file (WAL), its connection and pragmas, its identity while a run writes; the queries
themselves are the shared ones (``state.base``)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils
from filelock import FileLock, Timeout

from mlconnector.errors import ConfigError
from mlconnector.state.base import StateStore
from mlconnector.state.common import MAX_ROWS_PER_STATEMENT, StateFileReplaced
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


class State(StateStore):
    """One open SQLite state file (the default store). Use as a context manager, or call close()."""

    BEGIN = "BEGIN IMMEDIATE"  # writers queue for the file's lock, rather than fail when upgrading later
    kind = "file"
    _variables = 999  # bound values one statement may carry (SQLite's limit, read as the file opens)

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path).expanduser()
        self.shown = str(self.path)
        self._read_conn: sqlite3.Connection | None = None  # committed reads
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

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.db.conn.execute(sql, args)

    def _insert_rows(self, head: str, width: int, rows: list[Any], tail: str = "") -> None:
        """``head VALUES (?, ...), (?, ...) tail`` for many rows at once, a statement per few hundred rows. Not
        executemany, which steps once per row: each step lets go of the interpreter lock, and taking it back
        waits for whichever thread holds it then, so a batch's bookkeeping waited on the run's other work."""
        per = max(1, min(MAX_ROWS_PER_STATEMENT, self._variables // width))
        group = "(" + ", ".join("?" * width) + ")"
        for start in range(0, len(rows), per):
            chunk = rows[start:start + per]
            self._execute(f"{head} VALUES {', '.join([group] * len(chunk))}{tail}",
                          [value for row in chunk for value in row])

    def _committed(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._read_lock:
            return self._reader().execute(sql, args).fetchall()

    @contextmanager
    def _durable(self) -> Iterator[None]:
        self.db.conn.execute("PRAGMA synchronous=FULL")
        try:
            yield
        finally:
            self.db.conn.execute("PRAGMA synchronous=NORMAL")

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

    def _reader(self) -> sqlite3.Connection:
        """This state's connection for reads of what is committed (hold ``_read_lock``)."""
        if self._read_conn is None:
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA query_only=1")
            self._read_conn = conn
        return self._read_conn

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
