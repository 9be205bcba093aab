"""A flow's target ids by source id, kept in memory by the PostgreSQL store for ``target_of`` (a document's lines
each ask, and a round trip apiece cost a first load more than all its other state work). At 100,000 customers the
ids as text were about 20 MB of a first load's peak; each is kept in its smallest exact form instead: digits as an
integer (Zoho's 19-digit ids), a GUID in its canonical form as its 16 bytes (Business Central's), anything else as
it is. Each form is one type, so two ids never meet in one key."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_Packed = int | bytes | str


def pack(value: str) -> _Packed:
    if value.isdigit() and value.isascii() and (value == "0" or not value.startswith("0")):
        return int(value)  # str(int(value)) gives it back: no sign, no leading zero, ASCII digits only
    if len(value) == 36 and _GUID.fullmatch(value):
        return uuid.UUID(value).bytes
    return value


def unpack(value: _Packed) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return str(uuid.UUID(bytes=value))
    return value


class TargetIds:
    """Source id -> target id for one flow."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._ids = {pack(source): pack(target) for source, target in pairs}

    def get(self, source_id: str) -> str | None:
        found = self._ids.get(pack(source_id))
        return None if found is None else unpack(found)

    def put(self, source_id: str, target_id: str) -> None:
        self._ids[pack(source_id)] = pack(target_id)

    def drop(self, source_id: str) -> None:
        self._ids.pop(pack(source_id), None)
