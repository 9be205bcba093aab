"""Creates the target numbers itself (no key to upsert on): noted before they are sent, and settled after a run
that died before their links landed, so that nothing is created twice."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlconnector.errors import MLConnectorError
from mlconnector.fingerprints import comparable, payload_hash
from mlconnector.flows import Flow, MapContext, PairSpec
from mlconnector.state import Link, State
from mlconnector.sync.bookkeeping import audit_row, link_back
from mlconnector.sync.context import FlowRun
from mlconnector.sync.decide import MAP_ERRORS
from mlconnector.sync.items import Item
from mlconnector.sync.outcomes import RunResult
from mlconnector.sync.pipeline import Stop
from mlconnector.sync.sources import current
from mlconnector.systems.base import Connector, Record, WriteResult

log = logging.getLogger("mlconnector.sync")


def note_intents(fr: FlowRun, items: list[Item]) -> None:
    """Before sending creates that carry no key (the target numbers them), note them in the state file: a run
    killed before their links land leaves the notes for the next run to resolve (flows with ``find_by`` only)."""
    keyless = [i.record.id for i in items if not i.linked_id and i.payload is not None
               and i.payload.get(fr.key_field) in (None, "")]
    if keyless:
        fr.state.add_intents(fr.pair.name, fr.flow.name, keyless, fr.run.run_id)


@dataclass
class _Found:
    record: Record
    payload: dict[str, Any]


def recover_interrupted_creates(run: RunResult, pair: PairSpec, state: State, connectors: Mapping[str, Connector],
                                context: MapContext) -> None:
    """Resolve the creates an earlier run sent but died before linking: each record that landed in the target is
    found (by the flow's ``find_by`` fields) and linked, so it is never created a second time. A target that
    cannot be asked stops the run: creating blindly could make a duplicate."""
    intents = state.open_intents(pair.name)
    names = {f.name for f in pair.flows}
    for name in dict.fromkeys(row["flow"] for row in intents):
        ids = [row["source_id"] for row in intents if row["flow"] == name]
        if name not in names:
            state.clear_intents(pair.name, name, ids)
            continue
        flow = pair.flow(name)
        source, target = connectors[flow.source], connectors[flow.target]
        systems = (source.name or flow.source, target.name or flow.target)
        by_run = {row["source_id"]: row["run_id"] for row in intents if row["flow"] == name}
        try:
            links = state.links(pair.name, name, ids)
            open_ids = [i for i in ids if not (i in links and links[i].target_id)]
            records = current(source, flow.source_entity, open_ids)
            found = {i: _created_by_us(pair, state, flow, target, context, records[i]) for i in open_ids
                     if i in records}
        except MLConnectorError as exc:
            raise Stop(f"cannot check {systems[1]} for the {flow.target_entity} an interrupted run may have "
                       f"created ({exc}); run again once it answers", exc.exit_code) from None
        with state.transaction():
            for source_id, (record, landed) in ((i, (records[i], c)) for i, c in found.items() if c):
                # No target version: the record may have changed since it landed, and some targets stamp only a
                # date. Content alone then tells an echo of what we wrote from a later edit.
                state.save_link(Link(pair.name, name, source_id, landed.record.id, None,
                                     payload_hash(landed.payload), None, tuple(sorted(landed.payload))))
                if flow.echo_of:
                    state.add_links_if_absent(link_back(pair.name, flow, [(record, WriteResult(
                        "create", landed.record.id, landed.record.modified))]))
                state.add_audit(audit_row(
                    run.run_id, pair.name, flow, *systems, source_id, landed.record.id, "link",
                    note=f"created by interrupted run {by_run[source_id]}; found by {', '.join(flow.find_by)} and "
                         "linked, not created again"))
                log.warning("%s/%s: %s %s was created by an interrupted run; linked to %s %s", pair.name, name,
                            flow.source_entity, source_id, flow.target_entity, landed.record.id)
            state.clear_intents(pair.name, name, ids)


def _created_by_us(pair: PairSpec, state: State, flow: Flow, target: Connector, context: MapContext,
                   record: Record) -> _Found | None:
    """The target record this source record's interrupted create made, if it landed: one holding the ``find_by``
    values it maps to and linked to nothing else."""
    try:
        payload = flow.map(record, context)
    except MAP_ERRORS:
        return None  # it cannot be written now either; the flow reports why
    first, *rest = flow.find_by
    if payload.get(first) in (None, ""):
        return None
    for candidate in target.find(flow.target_entity, first, payload[first]):
        if any(comparable(candidate.get(f)) != comparable(payload.get(f)) for f in rest):
            continue
        if state.link_by_target(pair.name, flow.name, candidate.id):
            continue  # another source record's
        if flow.echo_of and state.link(pair.name, flow.echo_of, candidate.id):
            continue  # already paired with a record on this side
        return _Found(candidate, payload)
    return None
