"""Small JSON files that processes share next to the state file (Zoho's credit use, BC company ids, GP content
digests): read, changed and replaced whole under a file lock, so no writer drops another's entries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock


@contextmanager
def edited(path: Path, lock: FileLock) -> Iterator[dict[str, Any]]:
    """The file's object (empty when the file is missing or unreadable), written back when the block ends
    without an error; the replacement is atomic, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with lock:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        yield data
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
