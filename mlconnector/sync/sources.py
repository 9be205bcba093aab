"""Source records fetched by id (a notification's, the replay queue's), and what to do with one that is gone."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from mlconnector.state import State
from mlconnector.sync.bookkeeping import audit_row
from mlconnector.sync.outcomes import FlowStats, Outcome, RunResult
from mlconnector.flows import Flow
from mlconnector.systems.base import Connector, Record

# Ids asked of a connector's get_many at once; it splits them at its API's own maximum per call (Zoho: 100).
FETCH_CHUNK = 1_000


def current(source: Connector, entity: str, ids: list[str]) -> dict[str, Record]:
    """The current records of ``ids`` that still exist."""
    found: dict[str, Record] = {}
    for start in range(0, len(ids), FETCH_CHUNK):
        found.update(source.get_many(entity, ids[start:start + FETCH_CHUNK]))
    return found


def present_or_gone(run: RunResult, state: State, pair: str, flow: Flow, names: tuple[str, str], ids: list[str],
                    found: Mapping[str, Record], gone: set[str] | None = None) -> Iterator[Record]:
    """The records of ``ids`` in ``found``; one that no longer exists leaves the replay queue with a note in the
    audit (``names``: the flow's source and target system), and is added to ``gone`` (a deletion, see deletes)."""
    for source_id in ids:
        record = found.get(source_id)
        if record is not None:
            yield record
            continue
        if gone is not None:
            gone.add(source_id)
        if not run.dry_run:
            with state.transaction():
                state.clear_replay(pair, flow.name, source_id)
                state.add_audit(audit_row(run.run_id, pair, flow, *names, source_id, None, Outcome.SKIPPED,
                                          note="no longer exists in the source"))
        run.flows.setdefault(flow.name, FlowStats()).count(Outcome.SKIPPED, "no longer exists in the source")


def fetch(run: RunResult, state: State, pair: str, flow: Flow, source: Connector, names: tuple[str, str],
          ids: list[str], gone: set[str] | None = None) -> Iterator[Record]:
    """The current version of each record, fetched as many ids a call as the system takes."""
    for start in range(0, len(ids), FETCH_CHUNK):
        chunk = ids[start:start + FETCH_CHUNK]
        yield from present_or_gone(run, state, pair, flow, names, chunk, source.get_many(flow.source_entity, chunk),
                                   gone)
