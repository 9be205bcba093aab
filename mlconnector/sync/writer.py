"""One batch's write to the target, on a thread of the write pool; and the keys new records get, sent back."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from mlconnector.errors import MLConnectorError, RemoteError
from mlconnector.sync import echo
from mlconnector.sync.context import FlowRun
from mlconnector.sync.decide import MAP_ERRORS
from mlconnector.sync.items import Item
from mlconnector.sync.outcomes import NotSent
from mlconnector.systems.base import WriteResult

log = logging.getLogger("mlconnector.sync")


def write_batch(fr: FlowRun, items: list[Item], stop_requested: Callable[[], int | None]) -> list[WriteResult]:
    """Upsert the batch's payloads: linked records by their id (their natural key may be missing or changed), the
    rest by key. Results come back in order, one per item."""
    if stop_requested() is not None:
        raise NotSent()  # a batch still waiting for a free call when the run was told to stop
    flow = fr.flow
    ids = [item.linked_id for item in items]
    results = fr.target.write(flow.target_entity, [item.payload or {} for item in items], fr.key_field, ids=ids)
    if len(results) != len(items):
        raise RemoteError(fr.target_name, 0, "", f"write returned {len(results)} results for {len(items)} records")
    opposite = fr.opposite
    if opposite is not None and any(r.stored is not None for r in results):
        # The opposite flow reads these records back: it is their content as that flow sees it that tells our
        # write from a later edit.
        results = [replace(r, stored=echo.as_read_by(lambda rec: opposite.map(rec, fr.context), r.stored))
                   if r.stored is not None else r for r in results]
    if flow.find_by and opposite is not None and opposite.send_back_created:
        send_keys_back(fr, items, results)
    return results


def send_keys_back(fr: FlowRun, items: list[Item], results: list[WriteResult]) -> None:
    """Records this flow just created without a key, numbered by the target (a NAV customer for an account born in
    Zoho), go back to their source at once with the key the target gave them (the opposite flow's mapping of the
    record as stored): should the state file be lost, that key in the source is what links the two again, on
    either side. A send-back that fails is left to the opposite flow's next run (``send_back_created``)."""
    opposite = fr.opposite
    assert opposite is not None
    back: list[tuple[Item, dict[str, Any]]] = []
    for item, result in zip(items, results):
        if result.action != "create" or result.stored is None or (item.payload or {}).get(fr.key_field) not in (
                None, ""):
            continue
        try:
            back.append((item, opposite.map(result.stored, fr.context)))
        except MAP_ERRORS:
            continue
    if not back:
        return
    try:
        answers = fr.source.write(fr.flow.source_entity, [payload for _, payload in back],
                                  opposite.key_field(fr.config.options), ids=[i.record.id for i, _ in back])
    except MLConnectorError as exc:
        log.warning("%s/%s: the keys of %d new %s go back to %s with the next run: %s", fr.pair.name,
                    fr.flow.name, len(back), fr.flow.target_entity, fr.source_name, exc)
        return
    for (item, payload), answer in zip(back, answers):
        if answer.ok:
            item.sent_back = (payload, answer)
