"""OData ``$batch`` as F&O takes it: one changeset per document (all or nothing), and the multipart/mixed answer
read back into one list of responses per changeset."""

from __future__ import annotations

import email.parser
import email.policy
import json
from dataclasses import dataclass, field
from typing import Any

from mlconnector.systems.finops.odata import _error_message


@dataclass
class _Part:
    """One request of a changeset; ``url`` may start with ``$HEADER``, the header created in the same
    changeset (sent as ``$<its Content-ID>``)."""

    method: str
    url: str
    body: dict[str, Any]
    what: str                     # "header", "line 2 (item D0001)": named in a failure


@dataclass
class _Changeset:
    """One document's changeset: the payload index it answers, its parts, and for a document already in F&O
    (lines being completed) its key."""

    index: int
    what: str
    parts: list[_Part]
    existing: str | None
    content_ids: dict[str, _Part] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchAnswer:
    """One request's response inside a ``$batch`` response."""

    status: int
    content_id: str | None
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body.strip() else None
        except ValueError:
            return None

    @property
    def code(self) -> str:
        error = (self.json() or {}).get("error") if isinstance(self.json(), dict) else None
        return str(error.get("code") or "") if isinstance(error, dict) else ""

    @property
    def message(self) -> str:
        return _error_message(self.json())


def parse_batch_response(content_type: str, content: bytes) -> list[list[BatchAnswer]]:
    """The responses of a multipart/mixed ``$batch`` response (OData v4.0), one list per top-level part: a
    changeset's responses (only the failing one when the changeset failed), or a single request's response.
    MIME parsing is Python's ``email`` package."""
    if not content_type.lower().startswith("multipart/mixed"):
        raise ValueError(f"a $batch response must be multipart/mixed, not {content_type or 'untyped'}")
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + content)
    out: list[list[BatchAnswer]] = []
    for part in message.get_payload() if message.is_multipart() else []:
        inner = part.get_payload() if part.is_multipart() else [part]
        out.append([_answer(p) for p in inner])
    return out


def _answer(part: Any) -> BatchAnswer:
    raw = (part.get_payload(decode=True) or b"").lstrip(b"\r\n")
    status_line, _, rest = raw.partition(b"\n")
    words = status_line.split()
    status = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
    body = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(rest).get_payload(decode=True) or b""
    return BatchAnswer(status, part.get("Content-ID"), body.strip())
