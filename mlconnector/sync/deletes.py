"""Records deleted in a flow's source, and what that does to their targets.

A deletion is seen three ways: the source's own list of deleted records (``deleted_since``, read from where the
last run stopped), a notified or queued record that is no longer there when fetched, and, for sources with no such
list, absence from a whole read of ids (``record_ids``, at most once per ``deletes_every_hours``). Only records a
flow linked count. Each is handled by the flow's ``on_delete`` policy:

- ``ignore``: deletions are not looked for;
- ``unlink``: the link is closed; the target record stays as it is;
- ``flag``: the target record is marked (``flag_deleted``), and the link closed;
- ``delete``: the target record is deleted, and the link closed.

A target record kept (flag, unlink) is noted: reconcile counts it as accounted for, and the way back into the ERP
skips it. A source record created again later under the same key is linked again by its upsert, and the kept
record's mark comes off (``relinked``). Before anything is done, the
mass-delete guard: when more than ``max_delete_fraction`` of a flow's linked records (and more than one) look
deleted at once, nothing is done for that flow (a wrong company or filter must never wipe a CRM); the run says so
and exits 3, and `--allow-deletes` confirms.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta

from mlconnector.config import PairConfig
from mlconnector.errors import ConfigError
from mlconnector.flows import Flow, PairSpec, key_value
from mlconnector.state import DeletionMarks, Link
from mlconnector.sync.bookkeeping import audit_row
from mlconnector.sync.context import FlowRun
from mlconnector.sync.outcomes import FlowStats, Outcome
from mlconnector.systems.base import Connector

log = logging.getLogger("mlconnector.sync")

POLICIES = ("ignore", "unlink", "flag", "delete")
ERP_ROLE = "erp"  # what the ERP owns is never deleted nor marked there by a flow
CHUNK = 100  # target records deleted or marked per call


def policies(pair: PairSpec, config: PairConfig, connectors: Mapping[str, Connector]) -> dict[str, str]:
    """Each flow's policy: the pair's ``on_delete`` table over the flow's default. A flow the pair lacks, a policy
    that is not one, or one the target cannot do, is a ConfigError naming the fix."""
    names = {flow.name for flow in pair.flows}
    for flow_name, policy in config.on_delete.items():
        if flow_name not in names:
            raise ConfigError(f"pairs.{pair.name}.on_delete.{flow_name}: {pair.name} has no flow {flow_name!r} "
                              f"(flows: {', '.join(f.name for f in pair.flows)})")
        if policy not in POLICIES:
            raise ConfigError(f"pairs.{pair.name}.on_delete.{flow_name} = {policy!r}: use one of "
                              f"{', '.join(POLICIES)}")
    chosen = {}
    for flow in pair.flows:
        target = connectors.get(flow.target)
        policy = config.on_delete.get(flow.name) or flow.on_delete or _default(flow, target)
        if policy in ("flag", "delete") and target is not None:
            can = target.capabilities.flags if policy == "flag" else target.capabilities.deletes
            if flow.target == ERP_ROLE or not can:
                why = ("the ERP's records are its own: a flow into it never deletes or marks them"
                       if flow.target == ERP_ROLE else f"{target.name}'s connector does not {policy} records there")
                raise ConfigError(f"pairs.{pair.name}.on_delete.{flow.name} = {policy!r}: {why}; use unlink or "
                                  "ignore")
        chosen[flow.name] = policy
    return chosen


def _default(flow: Flow, target: Connector | None) -> str:
    if flow.target != ERP_ROLE and target is not None and target.capabilities.flags:
        return "flag"
    return "unlink"


def kept_from_the_way_back(fr: FlowRun) -> dict[str, str]:
    """For a flow into the ERP in a two-way pair: the records the opposite flow kept (flagged or unlinked) when their
    ERP records were deleted (id -> that system). Carrying one back would undo the ERP's deletion, so the flow
    skips them until the two are linked again. The other way round, the ERP's record is the master: a record
    deleted in Zoho or Zuora comes back there when its ERP record next changes, as in a one-way pair."""
    flow = fr.flow
    if not flow.echo_of or flow.target != ERP_ROLE:
        return {}
    return fr.state.kept_after_delete(fr.pair.name, flow.echo_of)


def relinked(fr: FlowRun, kept: dict[str, str]) -> None:
    """Target records kept after their source's deletion (``kept``: id -> policy) that this flow has linked again
    (the source record created again under its key, and upserted onto them): the mark comes off where the flow
    flagged them, and they are no longer kept (reconcile compares them again; the way back carries their edits
    again). A mark that cannot come off is tried again by the next run."""
    state, pair, flow = fr.state, fr.pair.name, fr.flow
    if not kept or fr.run.dry_run:
        return
    linked = sorted(state.committed_links(pair, flow.name, sorted(kept), by_target=True))
    if not linked:
        return
    systems = state.kept_after_delete(pair, flow.name)
    failed: dict[str, str | None] = {}
    flagged = [target_id for target_id in linked if kept[target_id] == "flag" and fr.target.capabilities.flags]
    for system in sorted({systems[t] for t in flagged}):
        ids = [t for t in flagged if systems[t] == system]
        for start in range(0, len(ids), CHUNK):
            failed.update(fr.target.unflag_deleted(flow.target_entity, ids[start:start + CHUNK], system))
    with state.transaction():
        state.forget_kept_after_delete(pair, flow.name, [t for t in linked if not failed.get(t)])


def detect(fr: FlowRun, policy: str, now: datetime, gone: Iterable[str], marks: DeletionMarks, *, look: bool = True,
           feed: Callable[[Connector, str, datetime | None], Iterable[str]] | None = None) -> list[str]:
    """The flow's linked source records that are deleted: those ``gone`` (notified or queued, and not found) and,
    with ``look``, those the source's deletion feed lists since the last look (``marks.feed_since``; read by
    ``feed``, else the source's ``deleted_since``) or, where it has no feed and a whole read of ids is due
    (``marks.scanned``), those absent from it."""
    if policy == "ignore":
        return []
    state, pair, flow = fr.state, fr.pair.name, fr.flow
    source = fr.source
    found = set(gone)
    feed_since, scanned = marks.feed_since, marks.scanned
    if not look:
        pass
    elif source.capabilities.deletion_feed:
        found.update(feed(source, flow.source_entity, feed_since) if feed
                     else source.deleted_since(flow.source_entity, feed_since))
    elif scanned is None or now - scanned >= timedelta(hours=fr.config.deletes_every_hours):
        linked = set(state.linked_ids(pair, flow.name, "source"))
        if linked:
            present = set(source.record_ids(flow.source_entity))
            found.update(linked - present)
    return sorted(state.links(pair, flow.name, sorted(found))) if found else []


def settle(fr: FlowRun, policy: str, deleted: list[str], now: datetime, *, allow: bool, looked: bool = True) -> bool:
    """Handle ``deleted`` by ``policy``, unless the mass-delete guard stops the flow (returns False then, with the
    flow's note saying why). Where the checks went (``looked``: the feed or ids were read, or the flow's poll read
    every record) is recorded only when every deletion was handled, so that the next run finds again what was
    not."""
    state, pair, flow = fr.state, fr.pair.name, fr.flow
    fraction = fr.config.max_delete_fraction
    # The flow's links are counted only where the guard may stop it: most looks find nothing deleted.
    if deleted and not allow and len(deleted) > 1 and len(deleted) > fraction * (
            linked := state.count_links(pair, flow.name)):
        fr.stats.note = (f"{len(deleted)} of {linked} linked records look deleted in {fr.source_name} (more than "
                         f"{fraction:.0%}): nothing was done about them; if that is right, run again with "
                         "--allow-deletes")
        fr.stats.guarded = len(deleted)
        log.warning("%s/%s: %s", pair, flow.name, fr.stats.note)
        return False
    failed = 0
    if deleted and not fr.run.dry_run:
        failed = _apply(fr, policy, deleted, now)
    elif deleted:
        fr.stats.deletions[_outcome(policy).value] = len(deleted)
    if looked and not failed and not fr.run.dry_run:
        # The feed is read again from a little before this run began (the source's clock may lag ours).
        overlap = timedelta(seconds=fr.config.overlap_seconds)
        state.note_deletion_check(pair, flow.name, feed_since=now - overlap,
                                  scanned=None if fr.source.capabilities.deletion_feed else now)
    return True


def _outcome(policy: str) -> Outcome:
    return {"delete": Outcome.DELETED, "flag": Outcome.FLAGGED}.get(policy, Outcome.UNLINKED)


def _business_key(fr: FlowRun, link: Link | None) -> str | None:
    """The record's natural key as last written (as the user knows it), else as the target compares it."""
    if link is None:
        return None
    try:
        written = json.loads(link.written) if link.written else {}
    except ValueError:
        written = {}
    value = key_value(written, fr.key_field) if isinstance(written, dict) else None
    return str(value) if value not in (None, "") else link.target_key


def _apply(fr: FlowRun, policy: str, deleted: list[str], now: datetime) -> int:
    """Returns how many could not be done (they stay linked, and are found again next time)."""
    state, pair, flow = fr.state, fr.pair.name, fr.flow
    links = state.links(pair, flow.name, deleted)
    targets = {source_id: str(link.target_id) for source_id, link in links.items() if link.target_id}
    errors: dict[str, str | None] = {}
    ids = sorted(set(targets.values()))
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        if policy == "delete":
            errors.update(fr.target.delete(flow.target_entity, chunk))
        elif policy == "flag":
            errors.update(fr.target.flag_deleted(flow.target_entity, chunk, fr.source_name))
    outcome = _outcome(policy)
    done = [source_id for source_id in deleted if not errors.get(targets.get(source_id, ""))]
    rows = []
    for source_id in deleted:
        target_id = targets.get(source_id)
        error = errors.get(target_id or "")
        key = _business_key(fr, links.get(source_id))
        if error:
            rows.append(audit_row(fr.run.run_id, pair, flow, fr.source_name, fr.target_name, source_id, target_id,
                                  Outcome.FAILED, error_class="delete", note=f"deleted in {fr.source_name}",
                                  error=f"could not {policy} it in {fr.target_name}: {error}", record_key=key))
            continue
        note = {"delete": f"deleted in {fr.source_name}; deleted in {fr.target_name} too",
                "flag": f"deleted in {fr.source_name}; marked deleted in {fr.target_name}"}.get(
                    policy, f"deleted in {fr.source_name}; link closed, {fr.target_name}'s record kept")
        rows.append(audit_row(fr.run.run_id, pair, flow, fr.source_name, fr.target_name, source_id, target_id,
                              outcome, note=note, record_key=key))
    with state.transaction():
        state.unlink(pair, flow.name, done)
        opposite = fr.opposite
        if opposite is not None:
            # The way back links the same two records the other way round: closed too, so the target's record (if
            # deleted here) is not taken for a deletion to carry back.
            state.unlink(pair, opposite.name, [targets[s] for s in done if s in targets])
        if policy != "delete":
            # The target's record stays: accounted for (reconcile), and not carried back to where it was deleted.
            state.note_kept_after_delete(pair, flow.name, [targets[s] for s in done if s in targets], fr.source_name,
                                         policy, now)
        state.add_audits(rows)
    failed = len(deleted) - len(done)
    stats: FlowStats = fr.stats
    if done:
        stats.deletions[outcome.value] = stats.deletions.get(outcome.value, 0) + len(done)
    if failed:
        stats.deletions["failed"] = stats.deletions.get("failed", 0) + failed
    return failed
