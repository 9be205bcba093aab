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
from mlconnector.state import BatchRecord, Link, Replay
from mlconnector.sync import changes, echo
from mlconnector.sync.context import FlowRun
from mlconnector.sync.items import Item
from mlconnector.sync.outcomes import NotSent, Outcome
from mlconnector.systems.base import NOT_SENT, Record, WriteResult


_WRITTEN = (Outcome.CREATED, Outcome.UPDATED)


def audit_row(run_id: str, pair: str, flow: Flow, source: str, target: str, source_id: str,
              target_id: str | None, outcome: Outcome | str, *, error_class: str | None = None,
              error: str | None = None, note: str | None = None, payload: str | None = None,
              changes: str | None = None, record_key: str | None = None) -> dict[str, Any]:
    """The audit trail's row for one record in one flow (``outcome``: an Outcome, or "link" for a record found and
    linked rather than written)."""
    action = ("skip" if outcome is Outcome.UNCHANGED else outcome.value) if isinstance(outcome, Outcome) else outcome
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
        # The target record it was written to, else the one it is linked to.
        target_id = (item.result.target_id if item.result else None) or item.linked_id
        return audit_row(fr.run.run_id, fr.pair.name, fr.flow, fr.source_name, fr.target_name, item.record.id,
                         target_id, item.outcome or Outcome.FAILED,
                         record_key=str(key) if key not in (None, "") else item.key, **fields)

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
            for item, result in zip(written, results):  # the target's answer decides each record's outcome
                item.result = result
                if result.error_class == NOT_SENT:  # left for the next run, which reads the rest of the batch again
                    item.outcome = Outcome.NOT_SENT
                    fr.hold = True
                elif result.action != "fail":
                    item.outcome = Outcome.CREATED if result.action == "create" else Outcome.UPDATED
                else:
                    item.decide(Outcome.FAILED, result.error or "", result.error_class or "error")
        try:
            self.record(batch, advance=not fr.hold)
        except BaseException:
            fr.hold = True  # written but not recorded: the next run must read this batch again
            raise

    def record(self, batch: list[Item], advance: bool = True, landed: bool = True) -> None:
        """What ``batch`` did, written to the state file in one call (``State.record_batch``)."""
        fr = self.fr
        flow, pair = fr.flow, fr.pair.name
        if fr.run.dry_run:
            fr.stats.count_batch([(item.outcome or Outcome.SKIPPED, item.reason) for item in batch])
            return
        fr.keys.recorded([item.key for item in batch])
        newest: datetime | None = None
        done = BatchRecord()
        written_back: list[tuple[Record, WriteResult]] = []
        sharing: list[Item] = []
        settled: list[tuple[Outcome, str | None]] = []  # counted in the flow's stats once the batch is gone through
        for item in batch:
            outcome = item.outcome or Outcome.FAILED
            if outcome is Outcome.NOT_SENT:
                continue  # neither an attempt nor read, as far as it goes
            record = item.record
            newest = _later(newest, record.modified)
            if outcome is Outcome.SEEN:
                settled.append((outcome, None))  # re-read through the overlap window: no attempt, no audit row
                continue
            if outcome is Outcome.FAILED:
                done.queued.append(Replay(record.id, fr.source_name, flow.source_entity, item.error_class or "error",
                                          item.reason or "", fr.run.run_id, item.key))
                if item.shares_key_with:
                    sharing.append(item)
            changed: str | None = None
            if outcome is not Outcome.FAILED:
                done.replayed.append(record.id)
                if outcome in _WRITTEN:
                    changed, links = self._links_of_write(item, written_back)
                    done.links += links
                elif outcome is Outcome.UNCHANGED and item.link:
                    done.links.append(replace(item.link, source_version=record.modified,
                                              source_hash=item.fingerprint, target_key=item.key))
            settled.append((outcome, item.reason))
            note = item.reason if outcome in (Outcome.SKIPPED, Outcome.UNCHANGED) else \
                "; ".join(filter(None, (fr.mode if fr.mode != "poll" else None, item.note))) or None
            payload = (json.dumps(item.payload, default=str)
                       if fr.config.audit_payloads and item.payload is not None else None)
            done.audits.append(self.row(item, note=note, payload=payload, error_class=item.error_class or "error",
                                        error=item.reason or "", changes=changed))
        fr.stats.count_batch(settled)
        if not fr.replay_waiting:
            done.replayed = []  # none of this flow's records waits: nothing to take out of the queue
        if done.queued:
            fr.replay_waiting = True
        if sharing:
            held = self._queue_key_holders(sharing, {item.record.id for item in batch})
            done.queued += [replay for replay, _ in held]
            done.audits += [row for _, row in held]
        if written_back:
            done.links_if_absent = link_back(pair, flow, written_back)
        if flow.find_by and landed:
            done.intents_closed = [item.record.id for item in batch]
        if fr.mode == "poll" and advance:
            done.watermark = newest
        fr.state.record_batch(pair, flow.name, done)

    def _links_of_write(self, item: Item, written_back: list[tuple[Record, WriteResult]]) -> tuple[str | None,
                                                                                                 list[Link]]:
        """An update's changes, field by field, against the payload its link last wrote (as the audit row's JSON;
        counted for the run's summary); and the links a written record leaves: its own, and in a two-way sync the
        opposite flow's."""
        fr = self.fr
        flow, record, result = fr.flow, item.record, item.result
        assert result is not None
        before = item.link.written if item.link and item.outcome is Outcome.UPDATED else None
        written, changed, fields = changes.of_write(before, item.payload or {})
        for field in fields:
            fr.stats.fields_changed[field] = fr.stats.fields_changed.get(field, 0) + 1
        links = [Link(fr.pair.name, flow.name, record.id, result.target_id, record.modified, item.hash,
                      result.version, _field_names(tuple(item.payload or ())), item.fingerprint,
                      *_stored_content(result.stored), item.key, written)]
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
        return changed, links

    def _queue_key_holders(self, sharing: list[Item], in_batch: set[str]) -> list[tuple[Replay, dict[str, Any]]]:
        """The records outside this batch that hold a key which records of the batch share (written and linked
        earlier): each waits in the replay queue too, and is not written again, until the keys differ."""
        fr = self.fr
        flow, state, pair = fr.flow, fr.state, fr.pair.name
        holders: dict[str, tuple[str, list[str]]] = {}
        for item in sharing:
            for other in item.shares_key_with:
                if other not in in_batch:
                    holders.setdefault(other, (str(item.key), []))[1].append(item.record.id)
        waiting = state.queued(pair, flow.name, list(holders))
        out = []
        for other, (key, sharers) in holders.items():
            if other in waiting:
                continue
            error = (f"{fr.key_field} {key!r} is also the key of {flow.source_entity} {', '.join(sorted(sharers))} "
                     f"(as {fr.target_name} compares it): not written again until the keys differ in "
                     f"{fr.source_name}, then `mlconnector replay`")
            out.append((Replay(other, fr.source_name, flow.source_entity, "duplicate_key", error, fr.run.run_id, key),
                        audit_row(fr.run.run_id, pair, flow, fr.source_name, fr.target_name, other,
                                  state.target_of(pair, flow.name, other), Outcome.FAILED,
                                  error_class="duplicate_key", error=error)))
        return out


def link_back(pair: str, flow: Flow, written: list[tuple[Record, WriteResult]]) -> list[Link]:
    """The opposite flow's links to records ``flow`` just wrote, to be saved where it has none yet (so it never
    creates a second record for one we just wrote). Nothing was sent that way yet: no hash, no source version."""
    assert flow.echo_of
    fresh: dict[str, Link] = {}
    for record, result in written:
        target_id = str(result.target_id)
        fresh.setdefault(target_id, Link(pair, flow.echo_of, target_id, record.id, None, None, record.modified))
    return list(fresh.values())


def _stored_content(stored: Record | None) -> tuple[tuple[str, ...] | None, str | None]:
    """(fields, fingerprint) of a record as a write left it (``WriteResult.stored``), for the writer's link; (None,
    None) if not told."""
    if stored is None or not stored.data:
        return None, None
    fields = tuple(sorted(stored.data))
    return fields, echo.content_hash(stored, fields)


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
