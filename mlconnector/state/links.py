"""Links: source id -> target id per flow, with what was last written; the queries a batch needs of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from mlconnector.clock import utcnow
from mlconnector.state.common import _serialized, iso, parse_iso

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
    written: str | None = None  # the payload last written, field by field and kept short (JSON; sync.changes)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Link":
        fields = tuple(json.loads(row["fields"])) if row.get("fields") else None
        target_fields = tuple(json.loads(row["target_fields"])) if row.get("target_fields") else None
        return cls(row["pair"], row["flow"], row["source_id"], row["target_id"],
                   parse_iso(row["source_version"]), row["hash"], parse_iso(row["target_version"]), fields,
                   row.get("source_hash"), target_fields, row.get("target_hash"), row.get("target_key"),
                   row.get("written"))



_SAVE_LINK_HEAD = ("INSERT INTO links (pair, flow, source_id, target_id, source_version, hash, target_version, "
                   "updated, fields, source_hash, target_fields, target_hash, target_key, written)")
_SAVE_LINK_TAIL = (
    " ON CONFLICT (pair, flow, source_id) DO UPDATE SET "
    "target_id = excluded.target_id, source_version = excluded.source_version, hash = excluded.hash, "
    "target_version = excluded.target_version, updated = excluded.updated, fields = excluded.fields, "
    "source_hash = excluded.source_hash, target_fields = excluded.target_fields, target_hash = excluded.target_hash, "
    "target_key = excluded.target_key, written = excluded.written")
_SELECT_LINK = ("SELECT pair, flow, source_id, target_id, source_version, hash, target_version, fields, "
                "source_hash, target_fields, target_hash, target_key, written FROM links")


def _link_of(row: tuple[Any, ...]) -> Link:
    (pair, flow, source_id, target_id, source_version, hash_, target_version, fields, source_hash, target_fields,
     target_hash, target_key, written) = row
    # fromisoformat itself, not parse_iso: a batch's links are read here one by one.
    return Link(pair, flow, source_id, target_id,
                datetime.fromisoformat(source_version) if source_version else None, hash_,
                datetime.fromisoformat(target_version) if target_version else None,
                _fields_of(fields) if fields else None, source_hash,
                _fields_of(target_fields) if target_fields else None, target_hash, target_key, written)


@lru_cache(maxsize=256)
def _fields_of(text: str) -> tuple[str, ...]:
    """A stored field list; a flow's links share a few lists, so each is decoded once."""
    return tuple(json.loads(text))


@lru_cache(maxsize=256)
def _fields_json(fields: tuple[str, ...]) -> str:
    """A link's field list as stored; a flow's links share a few lists, so each is encoded once."""
    return json.dumps(list(fields))


class LinkQueries:
    """The links table's queries, part of a state store (``state.base``: ``_execute``, ``_committed``, ``lock``)."""

    # links -----------------------------------------------------------------------------------
    @_serialized
    def links(self, pair: str, flow: str, source_ids: list[str]) -> dict[str, Link]:
        return {link.source_id: link for link in self._links_in(pair, flow, "source_id", source_ids)}

    def committed_links(self, pair: str, flow: str, source_ids: list[str], *,
                        by_target: bool = False) -> dict[str, Link]:
        """``links`` as committed (with ``by_target``: target id -> a link of ``flow`` to it), read on a connection
        of this state's own for reads: a run preparing its next batch does not wait for the transaction its
        recording thread has open."""
        found: dict[str, Link] = {}
        for link in self._links_in(pair, flow, "target_id" if by_target else "source_id", source_ids, committed=True):
            found.setdefault(str(link.target_id) if by_target else link.source_id, link)
        return found

    def batch_links(self, pair: str, flow: str, opposite: str | None,
                    source_ids: list[str]) -> tuple[dict[str, Link], dict[str, Link]]:
        """What a batch of ``flow`` needs of the links, as committed, in one read: its own links (by source id)
        and, in a two-way sync, the ``opposite`` flow's links to these same records (by target id)."""
        own = {link.source_id: link for link in self._links_in(pair, flow, "source_id", source_ids, committed=True)}
        written: dict[str, Link] = {}
        if opposite:
            for link in self._links_in(pair, opposite, "target_id", source_ids, committed=True):
                written.setdefault(str(link.target_id), link)
        return own, written

    def _links_in(self, pair: str, flow: str, column: str, values: list[str], *,
                  committed: bool = False) -> Iterator[Link]:
        # Plain statements, not sqlite-utils' rows_where (which inspects the schema on every call): a first
        # load asks for a batch's links, and a document's lines each ask for their item's link.
        for start in range(0, len(values), 500):
            chunk = values[start:start + 500]
            sql = f"{_SELECT_LINK} WHERE pair = ? AND flow = ? AND {column} IN ({','.join('?' * len(chunk))})"
            args = [pair, flow, *chunk]
            rows = self._committed(sql, args) if committed else self._execute(sql, args).fetchall()
            yield from map(_link_of, rows)

    @_serialized
    def link(self, pair: str, flow: str, source_id: str) -> Link | None:
        row = self._execute(f"{_SELECT_LINK} WHERE pair = ? AND flow = ? AND source_id = ?",
                                   [pair, flow, source_id]).fetchone()
        return _link_of(row) if row else None

    @_serialized
    def target_of(self, pair: str, flow: str, source_id: str) -> str | None:
        """The target id a source record is linked to, if any (the whole link is not needed)."""
        row = self._execute("SELECT target_id FROM links WHERE pair = ? AND flow = ? AND source_id = ?",
                                   [pair, flow, source_id]).fetchone()
        return row[0] if row else None

    @_serialized
    def link_by_target(self, pair: str, flow: str, target_id: str) -> Link | None:
        row = self._execute(f"{_SELECT_LINK} WHERE pair = ? AND flow = ? AND target_id = ? LIMIT 1",
                                   [pair, flow, target_id]).fetchone()
        return _link_of(row) if row else None

    def save_link(self, link: Link) -> None:
        self.save_links([link])

    def save_links(self, links: list[Link], *, now: str | None = None) -> None:
        """One statement for many links (a batch's), not sqlite-utils' upsert, which inspects the table on
        every call: a first load saves a link per record. ``now``: their saved time (stored form)."""
        if not links:
            return
        now = now or iso(utcnow())
        self._insert_rows(_SAVE_LINK_HEAD, 14, [_link_row(link, now) for link in links], _SAVE_LINK_TAIL)

    @_serialized
    def linked_ids(self, pair: str, flow: str, side: str) -> list[str]:
        """Every source id (``side`` "source") or target id ("target") the flow has a link for."""
        column = {"source": "source_id", "target": "target_id"}[side]
        return [row[0] for row in self._execute(
            f"SELECT {column} FROM links WHERE pair = ? AND flow = ? AND {column} IS NOT NULL", [pair, flow])]

    @_serialized
    def forget_written(self, pair: str, flow: str, source_ids: list[str]) -> None:
        """The next run writes these records again even though they have not changed since (what the target holds
        is no longer what was written: `reconcile --fix`)."""
        self._each_chunk("UPDATE links SET hash = NULL", pair, flow, source_ids)

    @_serialized
    def unlink(self, pair: str, flow: str, source_ids: list[str]) -> None:
        """These records' links go: the target records they named are gone, so the next write finds or creates
        one by key."""
        self._each_chunk("DELETE FROM links", pair, flow, source_ids)

    def _each_chunk(self, statement: str, pair: str, flow: str, source_ids: list[str]) -> None:
        for start in range(0, len(source_ids), 500):
            chunk = source_ids[start:start + 500]
            self._execute(f"{statement} WHERE pair = ? AND flow = ? AND source_id IN "
                                 f"({','.join('?' * len(chunk))})", [pair, flow, *chunk])

    def add_links_if_absent(self, links: list[Link], *, now: str | None = None) -> None:
        """Links saved only where the flow has none for that source record yet (one statement)."""
        if not links:
            return
        now = now or iso(utcnow())
        self._insert_rows(_SAVE_LINK_HEAD, 14, [_link_row(link, now) for link in links],
                          " ON CONFLICT (pair, flow, source_id) DO NOTHING")

    def count_links(self, pair: str, flow: str) -> int:
        return self._execute("SELECT count(*) FROM links WHERE pair = ? AND flow = ?", [pair, flow]).fetchone()[0]

    def holders_of_keys(self, pair: str, flow: str, keys: list[str]) -> dict[str, set[str]]:
        """Key -> the source records of ``flow`` linked under it or waiting to be written under it (replay), as
        committed (read like ``committed_links``)."""
        found: dict[str, set[str]] = {}
        for start in range(0, len(keys), 400):
            chunk = keys[start:start + 400]
            marks = ",".join("?" * len(chunk))
            rows = self._committed(
                f"SELECT target_key, source_id FROM links WHERE pair = ? AND flow = ? AND target_key IN ({marks}) "
                f"UNION SELECT target_key, source_id FROM replay WHERE pair = ? AND flow = ? AND target_key IN "
                f"({marks})", [pair, flow, *chunk, pair, flow, *chunk])
            for key, source_id in rows:
                found.setdefault(key, set()).add(source_id)
        return found


def _link_row(link: Link, saved: str) -> tuple[Any, ...]:
    """A link as the 14 values of _SAVE_LINK_HEAD's columns."""
    return (link.pair, link.flow, link.source_id, link.target_id, iso(link.source_version), link.hash,
            iso(link.target_version), saved, _fields_json(tuple(link.fields)) if link.fields else None,
            link.source_hash, _fields_json(tuple(link.target_fields)) if link.target_fields else None,
            link.target_hash, link.target_key, link.written)
