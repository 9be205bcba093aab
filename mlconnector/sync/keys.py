"""Natural keys two source records share: neither is written, so that neither is merged into the other."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from mlconnector.flows import key_value
from mlconnector.state import State
from mlconnector.sync.items import Item
from mlconnector.sync.outcomes import Outcome


class ClaimedKeys:
    """The natural keys of a flow run's records prepared for writing but not yet recorded in the state file (where
    the next batches find them), each with the source record holding it."""

    def __init__(self) -> None:
        self._holders: dict[str, str] = {}
        self._recorded: list[str] = []

    def holder(self, key: str) -> str | None:
        return self._holders.get(key)

    def claim(self, key: str, source_id: str) -> None:
        self._holders[key] = source_id

    def recorded(self, keys: Iterable[str | None]) -> None:
        """Keys whose records are being recorded (released once their transaction commits)."""
        self._recorded.extend(k for k in keys if k)

    def release_recorded(self) -> None:
        for key in self._recorded:
            self._holders.pop(key, None)
        self._recorded.clear()


def key_form(value: Any, ignore_case: bool) -> str:
    """A natural key's value as a system compares keys (``Capabilities.keys_ignore_case``): two values of one form
    are one key there."""
    text = str(value).strip()
    return text.casefold() if ignore_case else text


def refuse_shared_keys(items: list[Item], *, field: str, ignore_case: bool, state: State, pair: str,
                       flow: str, claimed: ClaimedKeys, describe: Callable[[str, Any, tuple[str, ...]], str],
                       shared: bool = False) -> None:
    """Records that map to one natural key, as the target compares keys (``key_form``; Zoho: without case or
    surrounding spaces), would be upserted into one target record, each over the other. None of them is written:
    each fails (``describe`` words why) and waits in the replay queue until the data is fixed; a record already
    linked under that key is queued too (bookkeeping). Records of the batch, of batches not yet recorded
    (``claimed``), and records linked or queued before (the state file) all count."""
    for item in items:
        value = key_value(item.payload or {}, field)
        item.key = key_form(value, ignore_case) if value not in (None, "") else None
    if shared:
        return  # a many-to-one flow (Flow.many_to_one): records sharing their target's key is what it does
    by_key: dict[str, list[Item]] = {}
    for item in items:
        if item.key:
            by_key.setdefault(item.key, []).append(item)
    if not by_key:
        return
    # Batches prepared but not recorded yet first: one recorded meanwhile is then found in the state file.
    in_flight = {key: claimed.holder(key) for key in by_key}
    recorded = state.holders_of_keys(pair, flow, list(by_key))
    # A record of this batch holds the key it maps to now, whatever it was linked or queued under before.
    now = {item.record.id: item.key for item in items}
    for key, group in by_key.items():
        holders = {h for h in recorded.get(key, set()) | {in_flight[key]} if h and now.get(h, key) == key}
        holders.update(i.record.id for i in group)
        if len(holders) == 1:
            claimed.claim(key, group[0].record.id)
            continue
        for item in group:
            others = tuple(sorted(holders - {item.record.id}))
            item.shares_key_with = others
            item.decide(Outcome.FAILED, describe(field, key_value(item.payload or {}, field), others), "duplicate_key")
            item.payload = item.hash = None
