"""Fingerprints of payloads and records: the text they are taken of, and what counts as the same value."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any


def _canonical_json() -> Callable[[Any], str]:
    """``json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)``, the text fingerprints are taken
    of, with its encoder made once: json.dumps makes a new one on every call, most of the cost for a record of a
    dozen fields. The text is the same, so fingerprints already stored still match."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return lambda value: json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    # (markers: no circular check, payloads are trees; default; string encoder; indent; key and item
    # separators; sort_keys; skipkeys; allow_nan), in the order json.encoder passes them.
    encode = make(None, str, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True)
    return lambda value: "".join(encode(value, 0))


canonical_json = _canonical_json()


def payload_hash(payload: Mapping[str, Any]) -> str:
    """A fingerprint of what is (or would be) written. A lookup counts by its id alone, since systems
    answer {"id": ...} with {"id": ..., "name": ...}."""
    return hashlib.sha256(canonical_json(comparable(payload)).encode()).hexdigest()


def source_fingerprint(data: Mapping[str, Any]) -> str:
    """A fingerprint of a source record's whole content, for sources that stamp no modification time (or one too
    coarse to tell versions apart)."""
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


_SCALARS = (str, int, float, bool, type(None))


def comparable(value: Any) -> Any:
    """``value`` as fingerprints see it: a lookup by its id alone, the rest as it is."""
    if isinstance(value, _SCALARS):  # most values: checked first, since a Mapping check is slow
        return value
    if isinstance(value, Mapping):
        if "id" in value and set(value) <= {"id", "name"}:
            return {"id": str(value["id"])}
        return {k: v if isinstance(v, _SCALARS) else comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value
