"""One record on its way through a flow: read, decided, written, recorded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlconnector.state import Link
from mlconnector.sync.outcomes import Outcome
from mlconnector.systems.base import Record, WriteResult


@dataclass(slots=True)  # a first load holds a bulk file's worth of these
class Item:
    """One source record in one flow run, with what was decided and what its write answered."""

    record: Record
    link: Link | None = None  # this flow's link of the record, as committed when its batch was prepared
    linked_id: str | None = None  # the target record that link names, if any
    payload: dict[str, Any] | None = None
    hash: str | None = None  # of the payload
    fingerprint: str | None = None  # of the source record, where its stamp cannot tell versions apart
    outcome: Outcome | None = None  # decided before the write (or after it, from its result)
    reason: str | None = None  # a skip's audit note, a failure's error
    error_class: str | None = None
    note: str | None = None  # on a written record: which conflict rule applied
    result: WriteResult | None = None  # the target's answer to its write
    # Two-way flows: the opposite flow's link to this record, and the hash it keeps once this record's content
    # is what both sides agree on (see decide.Decider.agreement).
    opposite: Link | None = None
    agreed: str | None = None
    key: str | None = None  # the natural key it is written under, as the target compares keys
    shares_key_with: tuple[str, ...] = ()  # other source records holding that key (then none is written)
    sent_back: tuple[dict[str, Any], WriteResult] | None = None  # a new record's key, written back to its source
    # The opposite flow's link refreshed to what this record holds (two-way; see decide.Decider._agreement).
    agreed_written: str | None = None
    # A record the opposite flow wrote, mapped again all the same because the flow's configured mapping changed:
    # the echo note, its skip reason should the target have changed since (see decide.Decider._to_write).
    echo: str | None = None

    def decide(self, outcome: Outcome, reason: str | None = None, error_class: str | None = None) -> None:
        self.outcome, self.reason, self.error_class = outcome, reason, error_class
