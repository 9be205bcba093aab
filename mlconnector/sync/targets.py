"""The target record a two-way flow is about to write over, as it is now: whether it changed since the two
sides last agreed (a conflict), at the cost of one read per flow run where it can."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from mlconnector.errors import RecordError
from mlconnector.fingerprints import comparable, payload_hash
from mlconnector.flows import Flow, SkipRecord
from mlconnector.state import Link
from mlconnector.sync.context import FlowRun
from mlconnector.sync.echo import content_hash
from mlconnector.sync.items import Item
from mlconnector.systems.base import Record

# The most target records a conflict check reads as "changed since the opposite flow last read": beyond it, the
# linked targets of each batch are fetched instead (one call per batch).
CHANGED_TARGETS_CAP = 2_000


class TargetView:
    """The targets of one flow run, looked up for conflict checks.

    Only a target change the opposite flow has not read yet can conflict: one it read was synced to this flow's
    source already (or queued for replay). So the first question in a flow run reads the target's changes since
    that flow's watermark, less the overlap: one call, usually empty, however many source records changed.
    Without that watermark, or past CHANGED_TARGETS_CAP changes, the first question in a batch fetches every
    linked target of that batch where the target fetches many ids in one call."""

    def __init__(self, fr: FlowRun) -> None:
        self.fr = fr
        self._changed: dict[str, Record] | None = None
        self._changed_read = False
        self._batch: list[Item] = []
        self._batch_targets: dict[str, Record] | None = None

    def new_batch(self, batch: list[Item]) -> None:
        self._batch, self._batch_targets = batch, None

    def current(self, target_id: str) -> Record | None:
        """The target record as it is now, where it may hold a change not yet synced (None: it holds none)."""
        changed = self._changed_targets()
        if changed is not None:
            return changed.get(target_id)
        fr = self.fr
        target, entity = fr.target, fr.flow.target_entity
        if not target.capabilities.fetches_many:
            return target.get(entity, target_id)
        if self._batch_targets is None:
            ids = list(dict.fromkeys(i.linked_id for i in self._batch if i.linked_id))
            self._batch_targets = target.get_many(entity, ids)
        if target_id not in self._batch_targets:
            return target.get(entity, target_id)
        return self._batch_targets[target_id]

    def _changed_targets(self) -> dict[str, Record] | None:
        if self._changed_read:
            return self._changed
        self._changed_read = True
        fr = self.fr
        opposite = fr.opposite
        if opposite is None or opposite.source_entity != fr.flow.target_entity:
            return None
        mark = fr.state.watermark(fr.pair.name, opposite.name)
        if mark is None:
            return None
        found: dict[str, Record] = {}
        records = fr.target.changes(fr.flow.target_entity, mark - timedelta(seconds=fr.config.overlap_seconds))
        try:
            for record in records:
                if len(found) >= CHANGED_TARGETS_CAP:
                    return None
                found[record.id] = record
        finally:
            close = getattr(records, "close", None)  # a generator's open response
            if callable(close):
                close()
        self._changed = found
        return found

    def changed_since_sync(self, link: Link, current: Record, payload: Mapping[str, Any]) -> bool:
        """Whether the target record changed, in what we sync, since the two were last in agreement (``payload``:
        what we are about to write to it)."""
        assert current.modified is not None
        if link.hash is not None:  # we wrote it: compare with what we wrote
            return edited_since_written(link, current, payload)
        # The pairing came from the opposite flow, which read this record as its source.
        fr = self.fr
        opposite = fr.state.link(fr.pair.name, fr.flow.echo_of or "", link.target_id or "")
        if opposite is None or opposite.source_version is None or current.modified <= opposite.source_version:
            return False
        return self._maps_differently(fr.pair.flow(fr.flow.echo_of or ""), current, opposite)

    def _maps_differently(self, flow: Flow, record: Record, link: Link) -> bool:
        """Whether ``record`` would now map to something other than what ``flow`` last wrote."""
        try:
            return link.hash is None or payload_hash(flow.map(record, self.fr.context)) != link.hash
        except (RecordError, SkipRecord, KeyError, ValueError, TypeError):
            return True


def edited_since_written(link: Link, current: Record, payload: Mapping[str, Any]) -> bool:
    """Whether a target record we wrote (``link``) was edited since, in what we sync (``payload``: what we would
    write to it now)."""
    if current.modified is None or link.target_version is None or current.modified < link.target_version:
        return False
    # Equal times may still hide an edit (whole-second clocks): the content decides.
    if link.fields:
        if content_hash(current, link.fields) != link.hash:
            return True
        # A field we left alone then (it was empty on our side), which the target holds another value in now,
        # would be overwritten: that value is the target's change.
        return any(current.get(k) not in (None, "") and comparable(current.get(k)) != comparable(v)
                   for k, v in payload.items() if k not in link.fields)
    return current.modified > link.target_version
