"""From a batch of source records and what the state file knows of them, a decision for each: seen before, our
own echo, unchanged, failed, a conflict the target keeps, or to be written."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mlconnector.errors import RecordError
from mlconnector.fingerprints import payload_hash, source_fingerprint
from mlconnector.flows import SkipRecord
from mlconnector.state import Link
from mlconnector.sync import changes, deletes, echo
from mlconnector.sync.context import FlowRun
from mlconnector.sync.items import Item
from mlconnector.sync.keys import refuse_shared_keys
from mlconnector.sync.outcomes import Outcome, Planned
from mlconnector.sync.targets import TargetView
from mlconnector.systems.base import Record

MAP_ERRORS = (RecordError, SkipRecord, KeyError, ValueError, TypeError)


class Decider:
    """Decides the batches of one flow run, in read order, on the run's own thread."""

    def __init__(self, fr: FlowRun, planned: dict[str, set[str]],
                 progress: Callable[[str, int], None] | None = None) -> None:
        self.fr = fr
        self.planned = planned
        self.progress = progress
        self.targets = TargetView(fr)
        self.coarse = fr.source.coarse_stamps(fr.flow.source_entity)
        self._written: dict[str, Link] = {}
        self.gone = deletes.kept_from_the_way_back(fr)

    def prepare(self, batch: list[Item]) -> list[Item]:
        """Decide each record of ``batch``; returns those to write (in a dry run: those that would be)."""
        fr = self.fr
        flow = fr.flow
        # What is committed: the batches before this one that are not recorded yet are still out (as they were
        # when records were recorded on this thread); a record read twice in one run is upserted by its key. For
        # the echo check, what the opposite flow wrote to these records: one read for the batch.
        links, self._written = fr.state.batch_links(fr.pair.name, flow.name, flow.echo_of,
                                                    [i.record.id for i in batch])
        self.targets.new_batch(batch)
        if self.progress is not None:
            self.progress(flow.name, len(batch))  # once a batch: a batch is mapped in a moment
        mapped = [item for item in batch if self._map(item, links.get(item.record.id))]
        refuse_shared_keys(mapped, field=fr.key_field, ignore_case=fr.target.capabilities.keys_ignore_case,
                           state=fr.state, pair=fr.pair.name, flow=flow.name, claimed=fr.keys,
                           describe=self._shared_key_error, shared=flow.many_to_one)
        to_write = [item for item in mapped if item.outcome is None and self._to_write(item)]
        for item in batch:
            # From here on only the id and version matter (links, audit, watermark): a batch waiting for its
            # bulk job need not hold every source record's fields as well as its payload.
            record = item.record
            item.record = Record(record.system, record.entity, record.id, record.modified, {})
        return to_write

    def _map(self, item: Item, link: Link | None) -> bool:
        """Seen, echo or mapped (False for the first two and for a record that cannot be mapped)."""
        fr = self.fr
        record = item.record
        item.link, item.linked_id = link, link.target_id if link else None
        if record.modified is None or self.coarse:
            item.fingerprint = source_fingerprint(record.data)
        if fr.mode == "poll" and not fr.remap and self._already_synced(item):
            # Re-read through the overlap window: this exact version is already done.
            item.decide(Outcome.SEEN)
            return False
        note = self._echo(item)
        if record.id in self.gone and not (link and link.target_id):
            # Kept by the other flow when the ERP deleted it: never carried back, whatever the mapping.
            item.decide(Outcome.SKIPPED, f"skipped: its record in {self.gone[record.id]} was deleted there; not sent "
                                         "back")
            return False
        if note and not fr.remap:
            item.decide(Outcome.SKIPPED, note)
            return False
        # The configured mapping changed: what the other side wrote here may now map to something new for it.
        item.echo = note
        try:
            item.payload = fr.flow.map(record, fr.context)
        except SkipRecord as exc:
            item.decide(Outcome.SKIPPED, f"skipped: {exc}")
            return False
        except RecordError as exc:
            item.decide(Outcome.FAILED, str(exc), exc.error_class)
            return False
        except (KeyError, ValueError, TypeError) as exc:
            item.decide(Outcome.FAILED, f"cannot map: {type(exc).__name__}: {exc}", "mapping")
            return False
        item.hash = payload_hash(item.payload)
        return True

    def _to_write(self, item: Item) -> bool:
        fr = self.fr
        if item.linked_id and item.link and item.link.hash == item.hash:
            # Nothing the target does not hold already: no write, and so no conflict to settle.
            item.decide(Outcome.UNCHANGED, "unchanged")
            return False
        keep, item.note = self._echo_held(item) if item.echo else self._conflict(item)
        if keep:
            item.decide(Outcome.SKIPPED, item.note)
            item.payload = item.hash = None
            return False
        self._agreement(item)
        if fr.run.dry_run:
            action = "update" if item.linked_id else "create"
            fr.run.planned.append(Planned(fr.flow.name, item.record.id, action, item.linked_id))
            self.planned.setdefault(fr.flow.name, set()).add(item.record.id)
            item.decide(Outcome.UPDATED if item.linked_id else Outcome.CREATED)
        return True

    def _already_synced(self, item: Item) -> bool:
        link, modified = item.link, item.record.modified
        if link and link.target_id and item.fingerprint and ((modified is None and link.hash) or self.coarse):
            # A source without modification times (NAV's posted documents), read whole on every run, or whose
            # stamps are too coarse to order versions (a card changed twice on one GP day keeps its date): the
            # very content last synced needs no mapping again, and any other content is a change.
            return link.source_hash == item.fingerprint
        return bool(link and link.target_id and link.source_version and modified and modified <= link.source_version)

    def _shared_key_error(self, field: str, value: Any, others: tuple[str, ...]) -> str:
        fr = self.fr
        return (f"{field} {value!r} is also the key of {fr.flow.source_entity} {', '.join(others)} (as "
                f"{fr.target_name} compares it): none of them is written, so that none is merged into another; "
                f"make the keys differ in {fr.source_name}, then run `mlconnector replay`")

    # two-way flows -------------------------------------------------------------------------------------------------
    def _echo(self, item: Item) -> str | None:
        """A record the opposite flow wrote, not edited since that write, is our own echo (see echo.is_echo).

        Except, once, a record the opposite flow created here when this flow has ``send_back_created``:
        this system assigned it keys (a customer number) that the other side must learn.
        """
        flow = self.fr.flow
        record = item.record
        if not flow.echo_of:
            return None
        if flow.send_back_created and item.link and item.link.hash is None:
            return None
        written = self._written.get(record.id)
        if written is None or not echo.is_echo(record, written, lambda: self._adds_nothing(record, written)):
            return None
        return f"echo of our own write by {flow.echo_of}"

    def _adds_nothing(self, record: Record, written: Link) -> bool:
        """Whether this flow takes from ``record`` only what the opposite flow wrote into it: mapped with every
        other field left out, the record maps to the same payload."""
        fr = self.fr
        try:
            whole = fr.flow.map(record, fr.context)
        except MAP_ERRORS:
            return True  # nothing this flow would write either way
        # The configured filter's fields are kept too: the part must pass the filter when the whole does.
        kept = {k: record.data[k] for k in ("id", *(written.fields or ()), *fr.flow.filter_fields)
                if k in record.data}
        try:
            part = fr.flow.map(Record(record.system, record.entity, record.id, record.modified, kept), fr.context)
        except MAP_ERRORS:
            return False
        return payload_hash(whole) == payload_hash(part)

    def _echo_held(self, item: Item) -> tuple[bool, str | None]:
        """A record the opposite flow wrote, mapped again under a changed mapping, goes to the target only where the
        target holds no change since: one it has is the opposite flow's to carry (this record is still our echo),
        whatever the conflict rule, so no edit is lost to a mapping change."""
        link = item.link
        if link is None or not link.target_id:
            return False, None
        current = self.targets.current(link.target_id)
        if current is None or current.modified is None or not self.targets.changed_since_sync(
                link, current, item.payload or {}):
            return False, None
        return True, item.echo

    def _agreement(self, item: Item) -> None:
        """Before a record of a two-way flow is written, what the opposite flow's link will keep once it is: the
        record's own content in the fields that flow writes (see bookkeeping). The other side then holds what this
        record maps to, so its next read is not taken for an edit (nor this write for a conflict)."""
        opposite = self._written.get(item.record.id)
        if opposite is not None and opposite.fields and opposite.hash is not None:
            item.opposite, item.agreed = opposite, echo.agreed_hash(item.record, opposite.fields)
            held = {k: v for k in opposite.fields if (v := item.record.get(k)) is not None}
            item.agreed_written = json.dumps(changes.compact(held), default=str)

    def _conflict(self, item: Item) -> tuple[bool, str | None]:
        """In a two-way flow, when the record we are about to write over also changed since we last
        synced it, the rule decides: ``later-wins`` (default), ``source-wins`` or ``target-wins``. The last two
        name the pair's sides, not the flow's: ``source-wins`` is the pair's first system (NAV in nav-zoho and
        nav-zuora) in both directions, ``target-wins`` its second; read per flow, each direction would take the
        other side's change (or keep its own), and the two systems would end up disagreeing.
        Returns (keep the target as it is, the note for the audit row)."""
        fr = self.fr
        link = item.link
        if not fr.flow.echo_of or link is None or not link.target_id:
            return False, None
        current = self.targets.current(link.target_id)
        if current is None or current.modified is None or not self.targets.changed_since_sync(
                link, current, item.payload or {}):
            return False, None
        rule = fr.config.options.get("conflict_rule", fr.flow.conflict_rule)
        record = item.record
        if rule == "later-wins":
            keep = record.modified is not None and current.modified > record.modified
        else:
            from_first_side = fr.flow.source == next(iter(fr.pair.roles))
            keep = (rule == "target-wins") == from_first_side
        kept = f"kept {fr.target_name}'s version" if keep else f"applied {fr.source_name}'s change"
        return keep, f"conflict: both sides changed; rule {rule}: {kept}"
