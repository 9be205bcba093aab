"""What a batch did, recorded in one transaction: its links, an audit row per record, the replay queue, the
watermark. Runs on the recording thread, in read order."""

from __future__ import annotations

import json
from concurrent.futures import Future
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from mlconnector.errors import AuthError, BudgetExhausted, RemoteError, Unreachable
from mlconnector.fingerprints import payload_hash
from mlconnector.flows import Flow
from mlconnector.state import Link
from mlconnector.sync import changes, echo
from mlconnector.sync.context import FlowRun
from mlconnector.sync.items import Item
from mlconnector.sync.outcomes import Outcome
from mlconnector.sync.writer import NotSent
from mlconnector.systems.base import Record, WriteResult


def audit_row(run_id: str, pair: str, flow: Flow, source: str, target: str, source_id: str,
              target_id: str | None, outcome: Outcome | str, *, error_class: str | None = None,
              error: str | None = None, note: str | None = None, payload: str | None = None,
              changes: str | None = None, record_key: str | None = None) -> dict[str, Any]:
    """The audit trail's row for one record in one flow (``outcome``: an Outcome, or "link" for a record found and
    linked rather than written)."""
    action = outcome.audit_action if isinstance(outcome, Outcome) else outcome
    failed = action == "fail"
    return {"run_id": run_id, "pair": pair, "flow": flow.name, "source_system": source,
            "source_entity": flow.source_entity, "source_id": source_id, "target_system": target,
            "target_entity": flow.target_entity, "target_id": target_id, "action": action,
            "status": "failed" if failed else "ok", "error_class": error_class if failed else None,
            "error": error if failed else None, "note": note, "payload": payload, "changes": changes,
            "record_key": record_key}


class Recorder:
    """Records the batches of one flow run."""

    def __init__(self, fr: FlowRun) -> None:
        self.fr = fr

    def row(self, item: Item, **fields: Any) -> dict[str, Any]:
        fr = self.fr
        key = (item.payload or {}).get(fr.key_field) if item.payload else None
        return audit_row(fr.run.run_id, fr.pair.name, fr.flow, fr.source_name, fr.target_name, item.record.id,
                         item.target_id, item.outcome or Outcome.FAILED,
                         record_key=str(key) if key not in (None, "") else item.key, **fields)

    def _changes(self, item: Item) -> list[tuple[str, Any, Any]]:
        """An update's changes, field by field, against the payload its link last wrote; counted for the run's
        summary."""
        before = json.loads(item.link.written) if item.link and item.link.written else None
        found = changes.diff(before, item.payload or {})
        for field, _, _ in found:
            self.fr.stats.fields_changed[field] = self.fr.stats.fields_changed.get(field, 0) + 1
        return found

    def commit(self, batch: list[Item], future: Future[list[WriteResult]] | None) -> None:
        """Record one batch once its write (``future``, None where nothing was written) is done."""
        fr = self.fr
        written = [item for item in batch if item.outcome is None]
        if future is not None:
            if future.cancelled() or isinstance(future.exception(), NotSent):
                fr.hold = True  # never sent (the run stopped first): the next run reads these again
                return
            try:
                results = future.result()
            except (AuthError, BudgetExhausted):
                fr.hold = True  # not written, not queued: the next run reads these again
                raise
            except (Unreachable, RemoteError) as exc:
                # The whole batch failed; queue every record so that replay can finish it.
                for item in written:
                    item.decide(Outcome.FAILED, str(exc), type(exc).__name__)
                # Some creates may have landed before the failure: their intents stay for the next run.
                self.record(batch, advance=not fr.hold, landed=False)
                raise
            for item, result in zip(written, results):
                item.answered(result)
            if any(r.not_sent for r in results):
                fr.hold = True  # the run stopped part way through the batch: the next run reads the rest again
        try:
            self.record(batch, advance=not fr.hold)
        except BaseException:
            fr.hold = True  # written but not recorded: the next run must read this batch again
            raise

    def record(self, batch: list[Item], advance: bool = True, landed: bool = True) -> None:
        fr = self.fr
        flow, state, pair = fr.flow, fr.state, fr.pair.name
        if fr.run.dry_run:
            for item in batch:
                fr.stats.count(item.outcome or Outcome.SKIPPED, item.reason)
            return
        fr.keys.recorded(item.key for item in batch)
        newest: datetime | None = None
        links: list[Link] = []
        audits: list[dict[str, Any]] = []
        written_back: list[tuple[Record, WriteResult]] = []
        sharing: list[Item] = []
        with state.transaction():
            queued = state.queued(pair, flow.name, [item.record.id for item in batch]) if fr.replay_waiting else set()
            for item in batch:
                if item.result is not None and item.result.not_sent:
                    continue  # never sent (the run was told to stop): neither an attempt nor read, as far as it goes
                outcome = item.outcome or Outcome.FAILED
                record = item.record
                newest = _later(newest, record.modified)
                if outcome is Outcome.SEEN:
                    fr.stats.count(outcome)  # re-read through the overlap window: no attempt, no audit row
                    continue
                if outcome is Outcome.FAILED:
                    fr.replay_waiting = True
                    state.queue_replay(pair=pair, flow=flow.name, source_system=fr.source_name,
                                       source_entity=flow.source_entity, source_id=record.id,
                                       error_class=item.error_class or "error", error=item.reason or "",
                                       run_id=fr.run.run_id, target_key=item.key)
                    if item.shares_key_with:
                        sharing.append(item)
                else:
                    if record.id in queued:
                        state.clear_replay(pair, flow.name, record.id)
                    if outcome.written:
                        links += self._links_of_write(item, written_back)
                    elif outcome is Outcome.UNCHANGED and item.link:
                        links.append(replace(item.link, source_version=record.modified,
                                             source_hash=item.fingerprint, target_key=item.key))
                fr.stats.count(outcome, item.reason)
                note = item.reason if outcome in (Outcome.SKIPPED, Outcome.UNCHANGED) else \
                    "; ".join(filter(None, (fr.mode if fr.mode != "poll" else None, item.note))) or None
                payload = (json.dumps(item.payload, default=str)
                           if fr.config.audit_payloads and item.payload is not None else None)
                changed = self._changes(item) if outcome is Outcome.UPDATED else []
                audits.append(self.row(item, note=note, payload=payload, error_class=item.error_class or "error",
                                       error=item.reason or "", changes=changes.to_json(changed)))
            if sharing:
                audits += self._queue_key_holders(sharing, {item.record.id for item in batch})
            # One statement each for the batch's links and audit rows, in the same transaction.
            state.save_links(links)
            if written_back:
                self._link_back(written_back)
            state.add_audits(audits)
            if flow.find_by and landed:
                state.clear_intents(pair, flow.name, [item.record.id for item in batch])
            if fr.mode == "poll" and advance and newest is not None:
                state.set_watermark(pair, flow.name, newest)

    def _links_of_write(self, item: Item, written_back: list[tuple[Record, WriteResult]]) -> list[Link]:
        """The links a written record leaves: its own, and in a two-way sync the opposite flow's."""
        fr = self.fr
        flow, record, result = fr.flow, item.record, item.result
        assert result is not None
        written = json.dumps(changes.compact(item.payload or {}), default=str)
        links = [Link(fr.pair.name, flow.name, record.id, result.target_id, record.modified, item.hash,
                      result.version, _field_names(tuple(item.payload or ())), item.fingerprint,
                      *echo.stored_content(result.stored), item.key, written)]
        opposite = item.opposite
        if opposite is not None and opposite.source_id == result.target_id:
            # The other side now holds this record's content: its flow's next read of what we wrote is no edit, and
            # this record's stamp is where the two last agreed.
            links.append(Link(opposite.pair, opposite.flow, opposite.source_id, opposite.target_id,
                              opposite.source_version, item.agreed, record.modified, opposite.fields,
                              opposite.source_hash, target_key=opposite.target_key, written=item.agreed_written))
        if item.sent_back is not None and flow.echo_of:
            # Its source now holds what the opposite flow maps this record to, key included.
            payload, answer = item.sent_back
            links.append(Link(fr.pair.name, flow.echo_of, str(result.target_id), record.id, None,
                              payload_hash(payload), answer.version, _field_names(tuple(payload)),
                              written=json.dumps(changes.compact(payload), default=str)))
        elif flow.echo_of and result.target_id:
            written_back.append((record, result))
        return links

    def _queue_key_holders(self, sharing: list[Item], in_batch: set[str]) -> list[dict[str, Any]]:
        """The records outside this batch that hold a key which records of the batch share (written and linked
        earlier): each waits in the replay queue too, and is not written again, until the keys differ."""
        fr = self.fr
        flow, state, pair = fr.flow, fr.state, fr.pair.name
        audits: list[dict[str, Any]] = []
        holders: dict[str, tuple[str, list[str]]] = {}
        for item in sharing:
            for other in item.shares_key_with:
                if other not in in_batch:
                    holders.setdefault(other, (str(item.key), []))[1].append(item.record.id)
        waiting = state.queued(pair, flow.name, list(holders))
        for other, (key, sharers) in holders.items():
            if other in waiting:
                continue
            error = (f"{fr.key_field} {key!r} is also the key of {flow.source_entity} {', '.join(sorted(sharers))} "
                     f"(as {fr.target_name} compares it): not written again until the keys differ in "
                     f"{fr.source_name}, then `mlconnector replay`")
            state.queue_replay(pair=pair, flow=flow.name, source_system=fr.source_name,
                               source_entity=flow.source_entity, source_id=other, error_class="duplicate_key",
                               error=error, run_id=fr.run.run_id, target_key=key)
            audits.append(audit_row(fr.run.run_id, pair, flow, fr.source_name, fr.target_name, other,
                                    state.target_of(pair, flow.name, other), Outcome.FAILED,
                                    error_class="duplicate_key", error=error))
            fr.replay_waiting = True
        return audits

    def _link_back(self, written: list[tuple[Record, WriteResult]]) -> None:
        """In a two-way sync, the opposite flow learns the pairing too, so it never creates a second record for
        the one we just wrote. Nothing was sent that way yet: no hash, no source version."""
        fr = self.fr
        link_back(fr.state, fr.pair.name, fr.flow, written)


def link_back(state: Any, pair: str, flow: Flow, written: list[tuple[Record, WriteResult]]) -> None:
    """The opposite flow's links to records ``flow`` just wrote, where it has none yet."""
    assert flow.echo_of
    known = state.links(pair, flow.echo_of, [str(r.target_id) for _, r in written])
    fresh: dict[str, Link] = {}
    for record, result in written:
        target_id = str(result.target_id)
        if target_id not in known and target_id not in fresh:
            fresh[target_id] = Link(pair, flow.echo_of, target_id, record.id, None, None, record.modified)
    state.save_links(list(fresh.values()))


@lru_cache(maxsize=256)
def _field_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """A payload's field names, sorted (as links keep them); a flow's payloads share a few sets of names."""
    return tuple(sorted(names))


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
