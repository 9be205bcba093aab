"""The SQLite state file: schema and migrations, and the queries the engine and the CLI need.

Timestamps are stored as ISO-8601 UTC text with microseconds, so text order is time order.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache, wraps
from pathlib import Path
from typing import Any, TypeVar

import platformdirs
from filelock import FileLock, Timeout
import sqlite_utils
from sqlite_utils import Migrations

from mlconnector.errors import ConfigError

STATE_ENV = "MLCONNECTOR_STATE"


class StateFileReplaced(ConfigError):
    """The state file a run opened was deleted or replaced while it ran."""

migrations = Migrations("mlconnector")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["runs"].create({"id": str, "pair": str, "started": str, "finished": str, "status": str,
                       "exit_code": int, "dry_run": int, "summary": str}, pk="id")
    db["runs"].create_index(["pair", "started"])
    db["watermarks"].create({"pair": str, "flow": str, "value": str, "updated": str}, pk=("pair", "flow"))
    db["links"].create({"pair": str, "flow": str, "source_id": str, "target_id": str,
                        "source_version": str, "hash": str, "target_version": str, "updated": str},
                       pk=("pair", "flow", "source_id"))
    db["links"].create_index(["pair", "flow", "target_id"])
    db["audit"].create({"id": int, "run_id": str, "time": str, "pair": str, "flow": str,
                        "source_system": str, "source_entity": str, "source_id": str,
                        "target_system": str, "target_entity": str, "target_id": str,
                        "action": str, "status": str, "error_class": str, "error": str,
                        "note": str, "payload": str}, pk="id")
    db["audit"].create_index(["pair", "time"])
    db["audit"].create_index(["run_id"])
    db["audit"].create_index(["source_id"])
    db["replay"].create({"pair": str, "flow": str, "source_id": str, "source_system": str,
                         "source_entity": str, "error_class": str, "error": str, "attempts": int,
                         "first_failed": str, "last_failed": str, "run_id": str},
                        pk=("pair", "flow", "source_id"))
    db["inbox"].create({"id": int, "received": str, "system": str, "entity": str, "ids": str,
                        "operation": str, "channel_id": str, "since": str, "processed": str}, pk="id")
    db["inbox"].create_index(["system", "processed"])
    db["channels"].create({"system": str, "entity": str, "channel_id": str, "expires": str,
                           "notify_url": str, "extra": str, "updated": str}, pk=("system", "channel_id"))


@migrations()
def m002_inbox_per_pair(db: sqlite_utils.Database) -> None:
    # One notification may concern several pairs (both read the same CRM module); each drains its own copy.
    db["inbox"].add_column("pair", str)
    db["inbox"].create_index(["pair", "processed"])


@migrations()
def m003_link_fields(db: sqlite_utils.Database) -> None:
    # Which fields we wrote: lets an echo check compare content when timestamps are too coarse.
    db["links"].add_column("fields", str)


@migrations()
def m004_create_intents(db: sqlite_utils.Database) -> None:
    # A create the target numbers itself (no natural key to upsert on), recorded before it is sent: if the
    # run dies before the link lands, the next run finds that record instead of creating a second one.
    db["intents"].create({"pair": str, "flow": str, "source_id": str, "run_id": str, "started": str},
                         pk=("pair", "flow", "source_id"))


@migrations()
def m005_link_source_hash(db: sqlite_utils.Database) -> None:
    # A fingerprint of the source record last synced, for sources that stamp no modification time (NAV's
    # posted documents): an unchanged one is then known without mapping it again.
    db["links"].add_column("source_hash", str)


@migrations()
def m006_link_target_content(db: sqlite_utils.Database) -> None:
    # The target record as our write left it (its fields and their fingerprint), where the target's answer
    # told it: the opposite flow reads it back and knows our own write by content, whatever its stamps say.
    db["links"].add_column("target_fields", str)
    db["links"].add_column("target_hash", str)


@migrations()
def m007_target_keys(db: sqlite_utils.Database) -> None:
    # The natural key each source record is written under, as the target compares keys: two source records
    # holding one key would be merged into one target record, so each is refused until the data is fixed.
    db["links"].add_column("target_key", str)
    db["links"].create_index(["pair", "flow", "target_key"])
    db["replay"].add_column("target_key", str)
    db["replay"].create_index(["pair", "flow", "target_key"])


@migrations()
def m008_health(db: sqlite_utils.Database) -> None:
    # A row the receiver's /health rewrites: a real commit, so a state file that cannot be written shows there.
    db["health"].create({"name": str, "checked": str}, pk="name")


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:  # most values are UTC already: no conversion then
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored")
        value = value.astimezone(timezone.utc)
    return value.isoformat(timespec="microseconds")


@lru_cache(maxsize=256)
def _fields_json(fields: tuple[str, ...]) -> str:
    """A link's field list as stored; a flow's links share a few lists, so each is encoded once."""
    return json.dumps(list(fields))


def parse_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def default_state_path() -> Path:
    """--state, else $MLCONNECTOR_STATE, else the platform's user state dir."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    return Path(platformdirs.user_state_dir("mlconnector")) / "state.db"


def refuse_foreign_database(path: Path) -> None:
    """A SQLite file that holds tables but none of ours is another program's: refused before anything is written to
    it (opened read-only here; not switched to WAL, not migrated). Files that are not SQLite at all are refused where
    they are opened, also untouched."""
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return
        with path.open("rb") as file:
            if file.read(16) != b"SQLite format 3\x00":
                return
    except OSError:
        return  # opening it says what is wrong
    conn = None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        ours = "_sqlite_migrations" in tables and conn.execute(
            f"SELECT 1 FROM _sqlite_migrations WHERE migration_set = ? LIMIT 1", [migrations.name]).fetchone()
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


@dataclass(frozen=True)
class Link:
    """Source id -> target id for one flow, with the versions and the hash of what we last wrote."""

    pair: str
    flow: str
    source_id: str
    target_id: str | None
    source_version: datetime | None
    hash: str | None
    target_version: datetime | None
    fields: tuple[str, ...] | None = None
    source_hash: str | None = None  # the source record's fingerprint, kept where it has no modification time
    # The target record as our last write left it: the fields its answer held and their fingerprint.
    target_fields: tuple[str, ...] | None = None
    target_hash: str | None = None
    target_key: str | None = None  # the natural key it is written under, as the target compares keys

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Link":
        fields = tuple(json.loads(row["fields"])) if row.get("fields") else None
        target_fields = tuple(json.loads(row["target_fields"])) if row.get("target_fields") else None
        return cls(row["pair"], row["flow"], row["source_id"], row["target_id"],
                   parse_iso(row["source_version"]), row["hash"], parse_iso(row["target_version"]), fields,
                   row.get("source_hash"), target_fields, row.get("target_hash"), row.get("target_key"))


_SAVE_LINK_HEAD = ("INSERT INTO links (pair, flow, source_id, target_id, source_version, hash, target_version, "
                   "updated, fields, source_hash, target_fields, target_hash, target_key)")
_SAVE_LINK_TAIL = (
    " ON CONFLICT (pair, flow, source_id) DO UPDATE SET "
    "target_id = excluded.target_id, source_version = excluded.source_version, hash = excluded.hash, "
    "target_version = excluded.target_version, updated = excluded.updated, fields = excluded.fields, "
    "source_hash = excluded.source_hash, target_fields = excluded.target_fields, target_hash = excluded.target_hash, "
    "target_key = excluded.target_key")
MAX_ROWS_PER_STATEMENT = 500
WAL_CHECKPOINT_PAGES = 10_000  # about 40 MB of log at most between checkpoints
CACHE_KIB = 6_144  # the writing connection's page cache (SQLite's default is 2,000 KiB)
_SELECT_LINK = ("SELECT pair, flow, source_id, target_id, source_version, hash, target_version, fields, "
                "source_hash, target_fields, target_hash, target_key FROM links")
AUDIT_COLUMNS = frozenset({"run_id", "time", "pair", "flow", "source_system", "source_entity", "source_id",
                           "target_system", "target_entity", "target_id", "action", "status", "error_class",
                           "error", "note", "payload"})
_AUDIT_ORDER = tuple(sorted(AUDIT_COLUMNS))
_AUDIT_TIME = _AUDIT_ORDER.index("time")
_INSERT_AUDIT = f"INSERT INTO audit ({', '.join(_AUDIT_ORDER)})"


def _link_of(row: tuple[Any, ...]) -> Link:
    (pair, flow, source_id, target_id, source_version, hash_, target_version, fields, source_hash, target_fields,
     target_hash, target_key) = row
    return Link(pair, flow, source_id, target_id, parse_iso(source_version), hash_, parse_iso(target_version),
                _fields_of(fields) if fields else None, source_hash,
                _fields_of(target_fields) if target_fields else None, target_hash, target_key)


@lru_cache(maxsize=256)
def _fields_of(text: str) -> tuple[str, ...]:
    """A stored field list; a flow's links share a few lists, so each is decoded once."""
    return tuple(json.loads(text))


_F = TypeVar("_F", bound=Callable[..., Any])


def _serialized(method: _F) -> _F:
    """Runs the method holding the state's lock: a run records batches on one thread while it prepares the next
    on another, and a read must not land inside the other thread's transaction half done."""
    @wraps(method)
    def locked(self: "State", *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)
    return locked  # type: ignore[return-value]


class State:
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

    def prove_writable(self, name: str) -> None:
        """Commit a one-row write (raises what a run's commit would meet: a full disk, a read-only or replaced file)."""
        with self.transaction():
            self.db.conn.execute("INSERT OR REPLACE INTO health (name, checked) VALUES (?, ?)", [name, iso(utcnow())])

    # runs ------------------------------------------------------------------------------------
    def start_run(self, run_id: str, pair: str, *, dry_run: bool = False) -> None:
        self.db["runs"].insert({"id": run_id, "pair": pair, "started": iso(utcnow()), "status": "running",
                                "dry_run": int(dry_run)})

    def finish_run(self, run_id: str, status: str, exit_code: int, summary: dict[str, Any]) -> None:
        self.db["runs"].update(run_id, {"finished": iso(utcnow()), "status": status, "exit_code": exit_code,
                                        "summary": json.dumps(summary)})

    def close_abandoned_runs(self, pair: str) -> int:
        """Runs of ``pair`` still marked running while this process holds the pair's lock ended without a word
        (kill -9, a power cut, a second Ctrl-C): interrupted, ended at their last audit row."""
        return self.db.conn.execute(
            "UPDATE runs SET status = 'interrupted', finished = coalesce((SELECT max(time) FROM audit "
            "WHERE audit.run_id = runs.id), started) WHERE pair = ? AND status = 'running'", [pair]).rowcount

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

    def watermarks(self) -> list[dict[str, Any]]:
        return list(self.db["watermarks"].rows_where(order_by="pair, flow"))

    # links -----------------------------------------------------------------------------------
    @_serialized
    def links(self, pair: str, flow: str, source_ids: list[str]) -> dict[str, Link]:
        return {link.source_id: link for link in self._links_in(pair, flow, "source_id", source_ids)}

    def committed_links(self, pair: str, flow: str, source_ids: list[str], *,
                        by_target: bool = False) -> dict[str, Link]:
        """``links`` as committed (with ``by_target``: target id -> a link of ``flow`` to it), read on a connection
        of this state's own for reads: a run preparing its next batch does not wait for the transaction its
        recording thread has open."""
        with self._read_lock:
            found: dict[str, Link] = {}
            for link in self._links_in(pair, flow, "target_id" if by_target else "source_id", source_ids,
                                       self._reader()):
                found.setdefault(str(link.target_id) if by_target else link.source_id, link)
            return found

    def _reader(self) -> sqlite3.Connection:
        """This state's connection for reads of what is committed (hold ``_read_lock``)."""
        if self._read_conn is None:
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA query_only=1")
            self._read_conn = conn
        return self._read_conn

    def _links_in(self, pair: str, flow: str, column: str, values: list[str],
                  conn: sqlite3.Connection | None = None) -> Iterator[Link]:
        # Plain statements, not sqlite-utils' rows_where (which inspects the schema on every call): a first
        # load asks for a batch's links, and a document's lines each ask for their item's link.
        for start in range(0, len(values), 500):
            chunk = values[start:start + 500]
            rows = (conn or self.db.conn).execute(f"{_SELECT_LINK} WHERE pair = ? AND flow = ? AND {column} IN "
                                                  f"({','.join('?' * len(chunk))})", [pair, flow, *chunk]).fetchall()
            yield from map(_link_of, rows)

    @_serialized
    def link(self, pair: str, flow: str, source_id: str) -> Link | None:
        row = self.db.conn.execute(f"{_SELECT_LINK} WHERE pair = ? AND flow = ? AND source_id = ?",
                                   [pair, flow, source_id]).fetchone()
        return _link_of(row) if row else None

    @_serialized
    def target_of(self, pair: str, flow: str, source_id: str) -> str | None:
        """The target id a source record is linked to, if any (the whole link is not needed)."""
        row = self.db.conn.execute("SELECT target_id FROM links WHERE pair = ? AND flow = ? AND source_id = ?",
                                   [pair, flow, source_id]).fetchone()
        return row[0] if row else None

    @_serialized
    def link_by_target(self, pair: str, flow: str, target_id: str) -> Link | None:
        row = self.db.conn.execute(f"{_SELECT_LINK} WHERE pair = ? AND flow = ? AND target_id = ? LIMIT 1",
                                   [pair, flow, target_id]).fetchone()
        return _link_of(row) if row else None

    def save_link(self, link: Link) -> None:
        self.save_links([link])

    def save_links(self, links: list[Link]) -> None:
        """One statement for many links (a batch's), not sqlite-utils' upsert, which inspects the table on
        every call: a first load saves a link per record."""
        if not links:
            return
        now = iso(utcnow())
        self._insert_rows(_SAVE_LINK_HEAD, 13, [
            (link.pair, link.flow, link.source_id, link.target_id, iso(link.source_version), link.hash,
             iso(link.target_version), now, _fields_json(tuple(link.fields)) if link.fields else None, link.source_hash,
             _fields_json(tuple(link.target_fields)) if link.target_fields else None, link.target_hash,
             link.target_key)
            for link in links], _SAVE_LINK_TAIL)

    def count_links(self, pair: str, flow: str) -> int:
        return self.db.execute("SELECT count(*) FROM links WHERE pair = ? AND flow = ?", [pair, flow]).fetchone()[0]

    # intents: creates sent but not yet linked ------------------------------------------------
    @_serialized
    def add_intents(self, pair: str, flow: str, source_ids: list[str], run_id: str) -> None:
        """Committed before the create is sent, so a run killed in between leaves the intent behind."""
        started = iso(utcnow())
        # Synced to disk before the create goes out, with every commit before it (a power cut must not lose it).
        self.db.conn.execute("PRAGMA synchronous=FULL")
        try:
            with self.transaction():
                self._insert_rows("INSERT OR REPLACE INTO intents (pair, flow, source_id, run_id, started)", 5,
                                  [(pair, flow, i, run_id, started) for i in source_ids])
        finally:
            self.db.conn.execute("PRAGMA synchronous=NORMAL")

    def open_intents(self, pair: str) -> list[dict[str, Any]]:
        return [{**row, "started": parse_iso(row["started"])}
                for row in self.db["intents"].rows_where("pair = ?", [pair], order_by="started, flow, source_id")]

    def clear_intents(self, pair: str, flow: str, source_ids: list[str]) -> None:
        for start in range(0, len(source_ids), 500):
            chunk = source_ids[start:start + 500]
            self.db.execute(f"DELETE FROM intents WHERE pair = ? AND flow = ? AND source_id IN "
                            f"({','.join('?' * len(chunk))})", [pair, flow, *chunk])

    # audit -----------------------------------------------------------------------------------
    def add_audit(self, row: dict[str, Any]) -> None:
        self.add_audits([row])

    def add_audits(self, rows: list[dict[str, Any]]) -> None:
        """Many audit rows in one statement (a batch's); every row gets the same columns, absent ones NULL."""
        if not rows:
            return
        now = iso(utcnow())
        values = []
        for row in rows:
            if not row.keys() <= AUDIT_COLUMNS:
                raise ValueError(f"audit has no column {sorted(row.keys() - AUDIT_COLUMNS)[0]!r}")
            columns = list(map(row.get, _AUDIT_ORDER))
            if "time" not in row:
                columns[_AUDIT_TIME] = now
            values.append(columns)
        self._insert_rows(_INSERT_AUDIT, len(_AUDIT_ORDER), values)

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
        if record:
            clauses.append("(source_id = ? or target_id = ?)")
            args += [record, record]
        if since:
            clauses.append("time >= ?")
            args.append(iso(since))
        rows = self.db["audit"].rows_where(" and ".join(clauses) or None, args, order_by="id desc", limit=limit)
        return list(reversed(list(rows)))

    def arrivals(self, since: datetime) -> list[dict[str, Any]]:
        """Per pair and flow, how many changes arrived by notification and how many only by the poll."""
        rows = self.db.execute(
            "SELECT pair, flow, sum(note = 'push'), sum(note IS NULL) FROM audit "
            "WHERE action IN ('create', 'update') AND time >= ? GROUP BY pair, flow ORDER BY pair, flow",
            [iso(since)]).fetchall()
        return [{"pair": p, "flow": f, "by_push": push or 0, "by_poll_only": poll or 0} for p, f, push, poll in rows]

    # replay queue ----------------------------------------------------------------------------
    def queue_replay(self, *, pair: str, flow: str, source_system: str, source_entity: str, source_id: str,
                     error_class: str, error: str, run_id: str, target_key: str | None = None) -> None:
        """``target_key``: the natural key the record would be written under (as the target compares keys), so
        that another record holding it is known to share it while this one waits."""
        now = iso(utcnow())
        existing = list(self.db["replay"].rows_where("pair = ? and flow = ? and source_id = ?",
                                                      [pair, flow, source_id]))
        attempts = existing[0]["attempts"] + 1 if existing else 1
        first = existing[0]["first_failed"] if existing else now
        self.db["replay"].upsert({"pair": pair, "flow": flow, "source_id": source_id,
                                  "source_system": source_system, "source_entity": source_entity,
                                  "error_class": error_class, "error": error, "attempts": attempts,
                                  "first_failed": first, "last_failed": now, "run_id": run_id,
                                  "target_key": target_key},
                                 pk=("pair", "flow", "source_id"))

    def replay_items(self, *, pair: str | None = None, flow: str | None = None,
                     error_class: str | None = None, ids: list[str] | None = None) -> list[dict[str, Any]]:
        clauses, args = [], []
        for column, value in (("pair", pair), ("flow", flow), ("error_class", error_class)):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if ids:
            clauses.append(f"source_id in ({','.join('?' * len(ids))})")
            args += ids
        return list(self.db["replay"].rows_where(" and ".join(clauses) or None, args,
                                                 order_by="pair, flow, first_failed"))

    @_serialized
    def has_queued(self, pair: str, flow: str) -> bool:
        return self.db.conn.execute("SELECT 1 FROM replay WHERE pair = ? AND flow = ? LIMIT 1",
                                    [pair, flow]).fetchone() is not None

    def queued(self, pair: str, flow: str, source_ids: list[str]) -> set[str]:
        """Which of these records wait in the replay queue (one query for a batch)."""
        found: set[str] = set()
        for start in range(0, len(source_ids), 500):
            chunk = source_ids[start:start + 500]
            found.update(row[0] for row in self.db.execute(
                f"SELECT source_id FROM replay WHERE pair = ? AND flow = ? AND source_id IN "
                f"({','.join('?' * len(chunk))})", [pair, flow, *chunk]).fetchall())
        return found

    def holders_of_keys(self, pair: str, flow: str, keys: list[str]) -> dict[str, set[str]]:
        """Key -> the source records of ``flow`` linked under it or waiting to be written under it (replay), as
        committed (read like ``committed_links``)."""
        found: dict[str, set[str]] = {}
        for start in range(0, len(keys), 400):
            chunk = keys[start:start + 400]
            marks = ",".join("?" * len(chunk))
            with self._read_lock:
                rows = self._reader().execute(
                    f"SELECT target_key, source_id FROM links WHERE pair = ? AND flow = ? AND target_key IN ({marks}) "
                    f"UNION SELECT target_key, source_id FROM replay WHERE pair = ? AND flow = ? AND target_key IN "
                    f"({marks})", [pair, flow, *chunk, pair, flow, *chunk]).fetchall()
            for key, source_id in rows:
                found.setdefault(key, set()).add(source_id)
        return found

    def clear_replay(self, pair: str, flow: str, source_id: str) -> None:
        self.db.execute("DELETE FROM replay WHERE pair = ? AND flow = ? AND source_id = ?", [pair, flow, source_id])

    def replay_depth(self) -> dict[tuple[str, str], int]:
        rows = self.db.execute("SELECT pair, flow, count(*) FROM replay GROUP BY pair, flow").fetchall()
        return {(p, f): n for p, f, n in rows}

    # inbox -----------------------------------------------------------------------------------
    def add_to_inbox(self, *, pair: str, system: str, entity: str, ids: list[str], operation: str,
                     channel_id: str | None = None, since: datetime | None = None) -> int:
        table = self.db["inbox"]
        table.insert({"received": iso(utcnow()), "pair": pair, "system": system, "entity": entity,
                      "ids": json.dumps(ids), "operation": operation, "channel_id": channel_id,
                      "since": iso(since)})
        return int(table.last_pk)

    def pending_inbox(self, pair: str | None = None) -> list[dict[str, Any]]:
        where = "processed is null" + (" and pair = ?" if pair else "")
        rows = self.db["inbox"].rows_where(where, [pair] if pair else [], order_by="id")
        return [{**row, "ids": json.loads(row["ids"])} for row in rows]

    def mark_processed(self, inbox_ids: list[int]) -> None:
        now = iso(utcnow())
        for start in range(0, len(inbox_ids), 500):
            chunk = inbox_ids[start:start + 500]
            self.db.execute(f"UPDATE inbox SET processed = ? WHERE id in ({','.join('?' * len(chunk))})",
                            [now, *chunk])

    def inbox_depth(self) -> int:
        return self.db.execute("SELECT count(*) FROM inbox WHERE processed IS NULL").fetchone()[0]

    # channels --------------------------------------------------------------------------------
    def save_channel(self, *, system: str, entity: str, channel_id: str, expires: datetime, notify_url: str,
                     extra: dict[str, Any] | None = None) -> None:
        self.db["channels"].upsert({"system": system, "entity": entity, "channel_id": channel_id,
                                    "expires": iso(expires), "notify_url": notify_url,
                                    "extra": json.dumps(extra or {}), "updated": iso(utcnow())},
                                   pk=("system", "channel_id"))

    def channels(self, system: str | None = None) -> list[dict[str, Any]]:
        rows = self.db["channels"].rows_where("system = ?" if system else None, [system] if system else [],
                                              order_by="expires")
        return [{**row, "expires": parse_iso(row["expires"]), "extra": json.loads(row["extra"] or "{}")}
                for row in rows]

    def delete_channel(self, system: str, channel_id: str) -> None:
        self.db.execute("DELETE FROM channels WHERE system = ? AND channel_id = ?", [system, channel_id])
