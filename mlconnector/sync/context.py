"""What a pair's mapping functions may ask while they map a record, and what one flow's run shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mlconnector.config import PairConfig
from mlconnector.errors import UnresolvedReference
from mlconnector.flows import Flow, PairSpec
from mlconnector.state import State
from mlconnector.sync.keys import ClaimedKeys
from mlconnector.sync.outcomes import FlowStats, RunResult
from mlconnector.systems.base import Connector


class MappingContext:
    """The MapContext a mapping function sees: link look-ups and the pair's options."""

    def __init__(self, pair: PairSpec, config: PairConfig, state: State, connectors: Mapping[str, Connector],
                 planned: Mapping[str, set[str]]) -> None:
        self.pair, self.state, self.connectors = pair, state, connectors
        self.options = config.options
        self.planned = planned  # a dry run: per flow, the source ids it would write

    def target_id(self, flow: str, source_id: str, *, what: str = "record") -> str:
        # Only the id: a document asks this once per line.
        target = self.state.target_of(self.pair.name, flow, str(source_id))
        if not target and str(source_id) in self.planned.get(flow, ()):
            return f"(new from {flow} {source_id})"  # a dry run: the referenced record would be created first
        if not target:
            spec = self.pair.flow(flow)
            raise UnresolvedReference(
                f"{what} {source_id} is not yet in {self.connectors[spec.target].name or spec.target} "
                f"(flow {flow} has not synced it); it will go through once {flow} has")
        return target

    def source_id(self, flow: str, target_id: str) -> str | None:
        link = self.state.link_by_target(self.pair.name, flow, str(target_id))
        return link.source_id if link else None


@dataclass
class FlowRun:
    """One flow in one run: what its stages (decide, write, record) share. ``hold`` and ``replay_waiting`` are
    written by the recording thread and read by the others between batches."""

    run: RunResult
    pair: PairSpec
    flow: Flow
    config: PairConfig
    connectors: Mapping[str, Connector]
    state: State
    context: MappingContext
    mode: str  # "poll", "push" or "replay"
    stats: FlowStats
    hold: bool = False  # a batch neither written nor recorded: the watermark must stay before it
    replay_waiting: bool = True  # a record of this flow may wait in the replay queue
    keys: ClaimedKeys = field(default_factory=ClaimedKeys)
    remap: bool = False  # the flow's configured mapping changed: versions already synced are mapped again

    # Worked out once, as the flow run is made (the flow, its config and its connectors do not change while it
    # runs): every batch asks these, and the key field is asked of the pair's mapping module.
    source: Connector = field(init=False)
    target: Connector = field(init=False)
    source_name: str = field(init=False)
    target_name: str = field(init=False)
    key_field: str = field(init=False)
    opposite: Flow | None = field(init=False)  # the flow writing the other way in a two-way sync

    def __post_init__(self) -> None:
        self.source = self.connectors[self.flow.source]
        self.target = self.connectors[self.flow.target]
        self.source_name = self.source.name or self.flow.source
        self.target_name = self.target.name or self.flow.target
        self.key_field = self.flow.key_field(self.config.options)
        self.opposite = self.pair.flow(self.flow.echo_of) if self.flow.echo_of else None
