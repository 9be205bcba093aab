"""What an update changes, field by field: the payload last written beside the one about to be, both kept short
(long text cut, a document's lines as their count and a fingerprint), never a whole record."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from mlconnector.fingerprints import canonical_json, comparable

# Longest text kept of a value (in a link's last payload and in an audit row's changes).
MAX_TEXT = 120


def compact(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` as a link keeps it: each field's value short enough to store per record."""
    return {field: _short(value) for field, value in payload.items()}


def _short(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[:MAX_TEXT - 1] + "…"
    if isinstance(value, list):
        digest = hashlib.sha256(canonical_json(comparable(value)).encode()).hexdigest()[:8]
        return f"[{len(value)} item{'s' if len(value) != 1 else ''} #{digest}]"
    if isinstance(value, Mapping):
        return comparable(value) if set(value) <= {"id", "name"} else _short(canonical_json(value))
    return value


def of_write(before: str | None, payload: Mapping[str, Any]) -> tuple[str, str | None, list[str]]:
    """What a write of ``payload`` leaves in its link (the payload compacted, as JSON text), and what it changes
    against ``before`` (that text as the link kept it of the last write; None: unknown, no changes told): the
    audit row's changes as JSON text (None for none), and the changed fields' names. A field ``payload`` leaves
    out is left alone by the write: no change."""
    kept = compact(payload)
    last = json.loads(before) if before else None
    changed = [] if last is None else [(f, last.get(f), new) for f, new in kept.items() if last.get(f) != new]
    return json.dumps(kept, default=str), to_json(changed), [f for f, _, _ in changed]


def to_json(changes: list[tuple[str, Any, Any]]) -> str | None:
    return json.dumps([{"field": f, "old": o, "new": n} for f, o, n in changes], default=str) if changes else None


def of_row(text: str | None) -> list[dict[str, Any]]:
    return json.loads(text) if text else []
