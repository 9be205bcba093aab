"""What waits: creates noted before they are sent (intents), records to replay, notifications in the inbox, push
channels, and the prerequisites `setup` found missing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlconnector.clock import utcnow
from mlconnector.state.common import _serialized, iso, parse_iso


@dataclass(frozen=True)
class Replay:
    """A record to wait in the replay queue, and why."""

    source_id: str
    source_system: str
    source_entity: str
    error_class: str
    error: str
    run_id: str
    target_key: str | None = None


_QUEUE_REPLAY_HEAD = ("INSERT INTO replay (pair, flow, source_id, source_system, source_entity, error_class, error, "
                      "attempts, first_failed, last_failed, run_id, target_key)")
_QUEUE_REPLAY_TAIL = (" ON CONFLICT (pair, flow, source_id) DO UPDATE SET source_system = excluded.source_system, "
                      "source_entity = excluded.source_entity, error_class = excluded.error_class, "
                      "error = excluded.error, attempts = replay.attempts + 1, last_failed = excluded.last_failed, "
                      "run_id = excluded.run_id, target_key = excluded.target_key")


class QueueQueries:
    """The intents, replay, inbox, channels and setup tables' queries, part of State."""

    # intents: creates sent but not yet linked ------------------------------------------------
    @_serialized
    def add_intents(self, pair: str, flow: str, source_ids: list[str], run_id: str) -> None:
        """Committed before the create is sent, so a run killed in between leaves the intent behind."""
        started = iso(utcnow())
        # Synced to disk before the create goes out, with every commit before it (a power cut must not lose it).
        with self._durable(), self.transaction():
            self._insert_rows("INSERT INTO intents (pair, flow, source_id, run_id, started)", 5,
                              [(pair, flow, i, run_id, started) for i in dict.fromkeys(source_ids)],
                              " ON CONFLICT (pair, flow, source_id) DO UPDATE SET run_id = excluded.run_id, "
                              "started = excluded.started")

    def open_intents(self, pair: str) -> list[dict[str, Any]]:
        return [{**row, "started": parse_iso(row["started"])}
                for row in self._rows("SELECT * FROM intents WHERE pair = ? ORDER BY started, flow, source_id", [pair])]

    def clear_intents(self, pair: str, flow: str, source_ids: list[str]) -> None:
        for start in range(0, len(source_ids), 500):
            chunk = source_ids[start:start + 500]
            self._execute(f"DELETE FROM intents WHERE pair = ? AND flow = ? AND source_id IN "
                            f"({','.join('?' * len(chunk))})", [pair, flow, *chunk])

    # replay queue ----------------------------------------------------------------------------
    def queue_replay(self, *, pair: str, flow: str, source_system: str, source_entity: str, source_id: str,
                     error_class: str, error: str, run_id: str, target_key: str | None = None) -> None:
        """``target_key``: the natural key the record would be written under (as the target compares keys), so
        that another record holding it is known to share it while this one waits."""
        self.queue_replays(pair, flow, [Replay(source_id, source_system, source_entity, error_class, error, run_id,
                                               target_key)])

    def queue_replays(self, pair: str, flow: str, entries: list[Replay], *, now: str | None = None) -> None:
        """Many records into the replay queue in one statement: a record already waiting keeps when it first failed
        and counts one attempt more."""
        if not entries:
            return
        now = now or iso(utcnow())
        # One entry per record: a statement may not touch a row twice (PostgreSQL refuses it); the last one counts.
        entries = list({e.source_id: e for e in entries}.values())
        self._insert_rows(_QUEUE_REPLAY_HEAD, 12, [
            (pair, flow, e.source_id, e.source_system, e.source_entity, e.error_class, e.error, 1, now, now, e.run_id,
             e.target_key) for e in entries], _QUEUE_REPLAY_TAIL)

    def clear_replays(self, pair: str, flow: str, source_ids: list[str]) -> None:
        for start in range(0, len(source_ids), 500):
            chunk = source_ids[start:start + 500]
            self._execute(f"DELETE FROM replay WHERE pair = ? AND flow = ? AND source_id IN "
                                 f"({','.join('?' * len(chunk))})", [pair, flow, *chunk])

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
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        return self._rows(f"SELECT * FROM replay {where}ORDER BY pair, flow, first_failed", args)

    @_serialized
    def has_queued(self, pair: str, flow: str) -> bool:
        return self._execute("SELECT 1 FROM replay WHERE pair = ? AND flow = ? LIMIT 1",
                                    [pair, flow]).fetchone() is not None

    def queued(self, pair: str, flow: str, source_ids: list[str]) -> set[str]:
        """Which of these records wait in the replay queue (one query for a batch)."""
        found: set[str] = set()
        for start in range(0, len(source_ids), 500):
            chunk = source_ids[start:start + 500]
            found.update(row[0] for row in self._execute(
                f"SELECT source_id FROM replay WHERE pair = ? AND flow = ? AND source_id IN "
                f"({','.join('?' * len(chunk))})", [pair, flow, *chunk]).fetchall())
        return found

    def clear_replay(self, pair: str, flow: str, source_id: str) -> None:
        self._execute("DELETE FROM replay WHERE pair = ? AND flow = ? AND source_id = ?", [pair, flow, source_id])

    def replay_depth(self) -> dict[tuple[str, str], int]:
        rows = self._execute("SELECT pair, flow, count(*) FROM replay GROUP BY pair, flow").fetchall()
        return {(p, f): n for p, f, n in rows}

    # inbox -----------------------------------------------------------------------------------
    def add_to_inbox(self, *, pair: str, system: str, entity: str, ids: list[str], operation: str,
                     channel_id: str | None = None, since: datetime | None = None) -> bool:
        """Store a notification for ``pair``, unless the same one (system, entity, channel, operation, ids and
        since) already waits: then nothing is added. True when it was stored."""
        digest = hashlib.sha256(json.dumps([system, entity, channel_id, operation, sorted(set(ids)), iso(since)],
                                           separators=(",", ":")).encode()).hexdigest()
        # DO NOTHING on the waiting copy's unique index (inbox_waiting_digest).
        cursor = self._execute(
            "INSERT INTO inbox (received, pair, system, entity, ids, operation, channel_id, since, digest) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", [iso(utcnow()), pair, system, entity, json.dumps(ids), operation,
                                                   channel_id, iso(since), digest])
        return cursor.rowcount > 0

    def pending_inbox(self, pair: str | None = None) -> list[dict[str, Any]]:
        where = "processed IS NULL" + (" AND pair = ?" if pair else "")
        rows = self._rows(f"SELECT * FROM inbox WHERE {where} ORDER BY id", [pair] if pair else [])
        return [{**row, "ids": json.loads(row["ids"])} for row in rows]

    def mark_processed(self, inbox_ids: list[int]) -> None:
        now = iso(utcnow())
        for start in range(0, len(inbox_ids), 500):
            chunk = inbox_ids[start:start + 500]
            self._execute(f"UPDATE inbox SET processed = ? WHERE id in ({','.join('?' * len(chunk))})",
                            [now, *chunk])

    def inbox_depth(self) -> int:
        return self._execute("SELECT count(*) FROM inbox WHERE processed IS NULL").fetchone()[0]

    # channels --------------------------------------------------------------------------------
    def save_channel(self, *, system: str, entity: str, channel_id: str, expires: datetime, notify_url: str,
                     extra: dict[str, Any] | None = None) -> None:
        self._execute("INSERT INTO channels (system, entity, channel_id, expires, notify_url, extra, updated) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (system, channel_id) DO UPDATE SET "
                      "entity = excluded.entity, expires = excluded.expires, notify_url = excluded.notify_url, "
                      "extra = excluded.extra, updated = excluded.updated",
                      [system, entity, channel_id, iso(expires), notify_url, json.dumps(extra or {}), iso(utcnow())])

    def channels(self, system: str | None = None) -> list[dict[str, Any]]:
        rows = self._rows(f"SELECT * FROM channels {'WHERE system = ? ' if system else ''}ORDER BY expires",
                          [system] if system else [])
        return [{**row, "expires": parse_iso(row["expires"]), "extra": json.loads(row["extra"] or "{}")}
                for row in rows]

    def delete_channel(self, system: str, channel_id: str) -> None:
        self._execute("DELETE FROM channels WHERE system = ? AND channel_id = ?", [system, channel_id])

    # what setup found missing ---------------------------------------------------------------------
    def save_setup_missing(self, pair: str, missing: dict[str, list[str]]) -> None:
        """Replace the pair's recorded missing prerequisites (flow -> lines) with a new check's."""
        with self.transaction():
            self._execute("DELETE FROM setup_missing WHERE pair = ?", [pair])
            stamp = iso(utcnow())
            rows = [(pair, flow, line, stamp) for flow, lines in missing.items() for line in dict.fromkeys(lines)]
            self._insert_rows("INSERT INTO setup_missing (pair, flow, line, checked)", 4, rows)

    def setup_missing(self, pair: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for flow, line in self._execute("SELECT flow, line FROM setup_missing WHERE pair = ? ORDER BY flow, line",
                                          [pair]).fetchall():
            found.setdefault(flow, []).append(line)
        return found
