"""Lists GP reads whole (SBA's, the chart of accounts): what their last reads looked like, kept in a small JSON
file beside the state file, and the items new or changed since."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from filelock import FileLock

from mlconnector import jsonfile
from mlconnector.systems import ConnectorContext


class SeenList:
    """What the last full reads of a list without a date criterion (GL accounts) looked like: per record a
    digest and the moment its current content was first seen. A small JSON file next to the state file, or, with
    the state in PostgreSQL, a document in its ledger (``ledger``, under ``name``), which every host sees."""

    def __init__(self, path: Path, ledger: Any = None, name: str = "") -> None:
        self.path = path
        self._lock = FileLock(str(path) + ".lock", timeout=30)
        self._ledger, self._name = ledger, name

    def _edited(self) -> AbstractContextManager[dict[str, Any]]:
        if self._ledger is not None:
            return self._ledger.edited(self._name)
        return jsonfile.edited(self.path, self._lock)

    def update(self, entity: str, digests: Mapping[str, str], now: datetime) -> dict[str, datetime]:
        """Store the current digests; return, per id, when its current content was first seen."""
        with self._edited() as data:
            known = data.get(entity, {})
            fresh: dict[str, list[str]] = {}
            for record_id, digest in digests.items():
                before = known.get(record_id)
                fresh[record_id] = before if before and before[0] == digest else [digest, now.isoformat()]
            data[entity] = fresh
        return {record_id: datetime.fromisoformat(entry[1]) for record_id, entry in fresh.items()}

    def changes(self, entity: str, items: list[tuple[str, Any]], since: datetime | None,
                until: datetime) -> Iterator[tuple[datetime, Any]]:
        """A whole list compared with the last read: an item is new or changed when its content differs; it then
        counts as modified at the moment this connector first saw that content. An item first seen before
        ``since`` is already synced and is not handed out again."""
        digests = {item_id: hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
                   for item_id, data in items}
        first_seen = self.update(entity, digests, until - timedelta(milliseconds=1))
        rows = []
        for item_id, data in items:
            stamp = min(first_seen[item_id], until - timedelta(milliseconds=1))
            if since is None or stamp >= since:
                rows.append((stamp, item_id, data))
        for stamp, _, data in sorted(rows, key=lambda r: (r[0], r[1])):
            yield stamp, data

def side_file(context: ConnectorContext, system: str, suffix: str) -> Path:
    """A file of the system's beside the state file: what lists were last seen, or the cached WSDL."""
    return context.state_file(f"gp-{system}-{suffix}")
