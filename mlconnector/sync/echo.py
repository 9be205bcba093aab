"""Our own writes, known when a two-way flow reads them back, and what the two sides last agreed on.

A flow that writes a record keeps, in its link, what it wrote (the payload's fields and their hash), the
record's stamp after the write, and, where the target's answer carried it, the record as the target then held
it (``stored``). The opposite flow, reading that record back, asks ``is_echo``: a record that still holds
what our write left is not the other side's edit, however coarse its stamps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mlconnector.fingerprints import payload_hash
from mlconnector.state import Link
from mlconnector.systems.base import Record


def content_hash(record: Record | Mapping[str, Any], fields: Iterable[str]) -> str:
    """The fingerprint of ``fields`` of ``record`` (absent ones as None), as a payload of them is hashed."""
    return payload_hash({k: record.get(k) for k in fields})


class _Reads(dict):  # type: ignore[type-arg]
    """A record's fields that notes which of them a mapping asks for."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)

    def __iter__(self):  # type: ignore[no-untyped-def]
        self.read.update(self.keys())
        return super().__iter__()

    def items(self):  # type: ignore[no-untyped-def]
        self.read.update(self.keys())
        return super().items()

    def values(self):  # type: ignore[no-untyped-def]
        self.read.update(self.keys())
        return super().values()


def as_read_by(map_record: Callable[[Record], Any], stored: Record) -> Record:
    """``stored`` narrowed to the fields ``map_record`` (the mapping of the flow that will read the record back)
    takes from it: what the target changes on its own (a balance, a stamp) is then no edit. A mapping that
    cannot map the stored record leaves it whole."""
    reads = _Reads(stored.data)
    try:
        map_record(Record(stored.system, stored.entity, stored.id, stored.modified, reads))
    except Exception:  # noqa: BLE001 - whichever way the mapping refuses, the whole record is compared
        return stored
    # A field the mapping reads that the answer leaves out is empty there (Object Query leaves out null fields): kept
    # as None, so that a value someone puts in it later is an edit, not our echo.
    return Record(stored.system, stored.entity, stored.id, stored.modified,
                  {k: stored.data.get(k) for k in sorted(reads.read)})


def agreed_hash(record: Record, fields: Iterable[str]) -> str:
    """What ``record`` holds of ``fields``, hashed as a payload of those of them with a value would be: the hash a
    flow that writes ``fields`` into ``record`` keeps once the other side has taken ``record``'s content."""
    return payload_hash({k: v for k in fields if (v := record.get(k)) is not None})


def is_echo(record: Record, written: Link, adds_nothing: Callable[[], bool]) -> bool:
    """Whether ``record``, read back, is still what the opposite flow's write (``written``, that flow's link to
    it) left it, not a later edit.

    Where the write's answer told the stored record, its content decides alone: a record read with the same
    content is our echo, any other content is an edit (a page that stamps only a date cannot say which came
    first). Otherwise the stamps decide, and where they cannot (the same clock tick as our write, or a bulk
    job's write without a version) the content of what we wrote does, and ``adds_nothing`` must confirm that
    the record holds nothing the reading flow would take beyond what we wrote (a field we left empty that
    someone filled in the same second)."""
    if written.target_hash and written.target_fields:
        return content_hash(record, written.target_fields) == written.target_hash
    if written.target_version is None:
        return bool(written.fields and written.hash) and holds_written(record, written) and adds_nothing()
    if record.modified is None or record.modified > written.target_version:
        return False
    if record.modified == written.target_version and written.fields and written.hash:
        return holds_written(record, written) and adds_nothing()
    return True


def holds_written(record: Record, written: Link) -> bool:
    """Whether ``record`` still holds, in the fields ``written`` wrote, exactly what it wrote."""
    return bool(written.fields) and content_hash(record, written.fields or ()) == written.hash
