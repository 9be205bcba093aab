"""What a dry run says a run would cost: the calls writing each batch would make, as the target's connector counts
them, and those sending new records' keys back to their source."""

from __future__ import annotations

from typing import Any

from mlconnector.sync.context import FlowRun
from mlconnector.sync.items import Item


def estimate_writes(fr: FlowRun, items: list[Item]) -> None:
    """Adds to the run's estimated calls what writing ``items`` would cost (one call a batch where the connector
    cannot say)."""
    payloads = [i.payload for i in items if i.payload is not None]
    ids = [i.linked_id for i in items if i.payload is not None]
    costs = [(fr.flow.target, fr.flow.target_entity, payloads, ids)] + _send_back_costs(fr, payloads, items)
    for role, entity, chosen, linked in costs:
        connector = fr.connectors[role]
        calls = int(connector.write_calls(entity, chosen, fr.key_field, linked))
        name = connector.name or role
        fr.run.estimated_calls[name] = fr.run.estimated_calls.get(name, 0) + calls


def _send_back_costs(fr: FlowRun, payloads: list[dict[str, Any]],
                     items: list[Item]) -> list[tuple[str, str, list[dict[str, Any]], list[str | None]]]:
    """Records created without a key go back to their source with the one the target gives them (writer), as
    updates of the source records."""
    opposite = fr.opposite
    if not (fr.flow.find_by and opposite is not None and opposite.send_back_created):
        return []
    written = [i for i in items if i.payload is not None]
    new = [i.record.id for p, i in zip(payloads, written) if p.get(fr.key_field) in (None, "") and not i.linked_id]
    if not new:
        return []
    opposite_key = opposite.key_field(fr.config.options)
    return [(fr.flow.source, fr.flow.source_entity, [{opposite_key: "?"} for _ in new], list(new))]


def add_reads(fr_run: Any) -> None:
    """A dry run's estimate counts every call the run would make: the reads this dry run made, and the writes."""
    for stats in fr_run.flows.values():
        for system, calls in stats.calls.items():
            fr_run.estimated_calls[system] = fr_run.estimated_calls.get(system, 0) + calls
