"""A run of one pair: which flows, in which order, from where; its start, its finish and its exit code."""

from __future__ import annotations

import functools
import logging
import secrets as _random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from mlconnector.clock import utcnow
from mlconnector.config import PairConfig
from mlconnector.errors import ConfigError, MLConnectorError
from mlconnector.flows import Flow, PairSpec
from mlconnector.http import CallCounter
from mlconnector.state import FlowMarks, State
from mlconnector import interrupt, logs
from mlconnector.sync import deletes, estimate, mapped_fields, push, recovery, sources, window
from mlconnector.sync.context import FlowRun, MappingContext
from mlconnector.sync.deletion_looks import DeletionLooks
from mlconnector.sync.decide import Decider
from mlconnector.sync.outcomes import FlowStats, RunResult
from mlconnector.sync.pipeline import Stop, run_flow
from mlconnector.systems.base import Connector, Record

log = logging.getLogger("mlconnector.sync")

DEFAULT_BATCH = 100


def _mapping_changed(flow: Flow, marks: FlowMarks) -> bool:
    """Whether the flow's configured mappings changed since its records were last mapped: then this poll reads
    them all and maps each again, and those whose payload changed are written (the rest are unchanged). A flow
    that never ran maps everything anyway."""
    if marks.mapping_digest is None:
        return bool(flow.mapping_digest) and marks.watermark is not None
    return marks.mapping_digest != flow.mapping_digest


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a random suffix."""
    return f"{utcnow():%Y%m%dT%H%M%SZ}-{_random.token_hex(3)}"


_F = TypeVar("_F", bound=Callable[..., Any])


def _one_run(method: _F) -> _F:
    """An entry point making one run: log lines carry its id (set when it starts) until it returns or raises."""
    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        finally:
            logs.end()
    return run  # type: ignore[return-value]


class Engine:
    """Runs one pair's flows between connectors (role -> connector) and records it in ``state``."""

    def __init__(self, pair: PairSpec, config: PairConfig, connectors: Mapping[str, Connector], state: State, *,
                 counter: CallCounter | None = None, progress: Callable[[str, int], None] | None = None,
                 concurrency: int | None = None, now: Callable[[], datetime] = utcnow,
                 stop_requested: Callable[[], int | None] = interrupt.requested,
                 progress_total: Callable[[str, int], None] | None = None, allow_deletes: bool = False) -> None:
        missing = set(pair.roles) - set(connectors)
        if missing:
            raise ConfigError(f"pair {pair.name}: no system for role {sorted(missing)[0]}")
        self.pair = pair
        self.config = config
        self.connectors = connectors
        self.state = state
        self.counter = counter or CallCounter()
        self.progress = progress
        # Where a progress bar can show a total: sources that can tell how many records a read gives do.
        self.progress_total = progress_total
        self.stop_requested = stop_requested  # a signal asked the run to stop (see _stop_if_asked)
        # Write batches in flight at once; None: as many as the target's API allows.
        self.concurrency = max(1, concurrency) if concurrency else None
        self.now = now
        self.batch_size = config.batch_size or DEFAULT_BATCH
        self.planned: dict[str, set[str]] = {}  # dry run: source ids each flow would write
        self.context = MappingContext(pair, config, state, connectors, self.planned)
        # What a record deleted in its source does, per flow (checked now: a bad on_delete stops the run before it
        # starts); --allow-deletes lets the mass-delete guard through once.
        self.deletions = DeletionLooks(deletes.policies(pair, config, connectors), allow_deletes, self.counter, now)
        self._started = 0.0  # the run's start (monotonic), for its duration in the log
        self._credits: dict[int, int] = {}  # each connector's credits spent before the run, for the run's own
        if config.credit_budget:
            # Systems that charge credits keep their own daily ledger and stop a run before crossing it.
            for connector in connectors.values():
                connector.set_budget(config.credit_budget)

    def system_name(self, role: str) -> str:
        return self.connectors[role].name or role

    # entry points ------------------------------------------------------------------------------------------------
    @_one_run
    def sync(self, flows: Iterable[str] | None = None, *, full: bool = False, since: datetime | None = None,
             dry_run: bool = False) -> RunResult:
        """Poll every chosen flow from its watermark (or ``since``, or everything with ``full``)."""
        names = self._flow_names(flows)
        chosen = self.pair.ordered(names)
        mapped_fields.check(self.pair, self.config, self.connectors, self.state, chosen, self.now())
        run = self._start(dry_run, "sync")
        until = self.now()
        try:
            self._connect(chosen)
            if not dry_run:
                self.recover_interrupted_creates(run)
                push.renew_expiring_channels(run, self.state, self.connectors, chosen, self.now)
                self.drain_inbox(run, chosen)
            for flow in chosen:
                self._stop_if_asked()
                reason = self._unavailable(flow)
                if reason:
                    run.flows.setdefault(flow.name, FlowStats()).note = reason
                    continue
                marks = self.state.flow_marks(self.pair.name, flow.name)  # one read of what the poll needs
                fr = self._flow_run(run, flow, "poll", queued=marks.queued)
                fr.remap = _mapping_changed(flow, marks)
                start = None if fr.remap else window.read_start(fr, full, since, marks.watermark)
                log.info("%s/%s: reading %s changed since %s%s", self.pair.name, flow.name, flow.source_entity,
                         start.isoformat() if start else "the beginning",
                         " (its configured mapping changed: every record is mapped again)" if fr.remap else "")
                read = window.Window(until)
                if self.progress_total and fr.source.capabilities.counts:
                    fr.source.count_rows = True  # its first page says how many records the read gives
                records = window.changes_to_source_clock(fr, start, read)
                self._run_flow(fr, records, initial=start is None and not fr.remap,
                               finished=lambda fr=fr, read=read, digest=marks.mapping_digest:
                               self._read_whole(fr, read, digest))
                # A poll that read every record needs no read of ids as well (it was one): deletions are looked for
                # from the next run on.
                self.deletions.look(fr, look=start is not None, whole_read=start is None)
        except Stop as stop:
            run.stopped = str(stop)
        return self._finish(run)

    @_one_run
    def replay(self, *, flow: str | None = None, error_class: str | None = None, ids: list[str] | None = None,
               dry_run: bool = False) -> RunResult:
        """Re-fetch each queued record from its source (its current version) and run it through again."""
        # Read once, before the run starts (settling interrupted creates links records; it queues none).
        items = self.state.replay_items(pair=self.pair.name, flow=flow, error_class=error_class, ids=ids)
        waiting = sorted({i["flow"] for i in items if self._has_flow(i["flow"])})
        specs = self.pair.ordered(waiting)
        mapped_fields.check(self.pair, self.config, self.connectors, self.state, specs if waiting else [], self.now())
        run = self._start(dry_run, "replay")
        try:
            if not dry_run:
                self.recover_interrupted_creates(run)
            for spec in specs:
                queued = [i["source_id"] for i in items if i["flow"] == spec.name]
                fr = self._flow_run(run, spec, "replay")
                self._run_flow(fr, sources.fetch(run, self.state, self.pair.name, spec, fr.source,
                                                 (fr.source_name, fr.target_name), queued, self.deletions.gone_of(spec)))
                self.deletions.look(fr, look=False)
        except Stop as stop:
            run.stopped = str(stop)
        return self._finish(run)

    @_one_run
    def drain(self, flows: Iterable[str] | None = None) -> RunResult:
        """Process the notifications waiting in the inbox, without polling (`listen --process`)."""
        chosen = self.pair.ordered(self._flow_names(flows))
        mapped_fields.check(self.pair, self.config, self.connectors, self.state, chosen, self.now())
        run = self._start(False, "drain")
        try:
            self.recover_interrupted_creates(run)
            self.drain_inbox(run, chosen)
            for flow in chosen:
                if self.deletions.pending(flow):
                    self.deletions.look(self._flow_run(run, flow, "push"), look=False)
        except Stop as stop:
            run.stopped = str(stop)
        return self._finish(run)

    def keep_channels(self, flows: Iterable[str] | None = None) -> RunResult:
        """Subscribe or renew the pair's push channels now, and nothing else (`listen` does it on its own schedule,
        so channels live on where no sync runs for a while). Not recorded as a run: what was renewed, and what
        failed, is in the result (and a failure in the state file, for `status --check`)."""
        run = RunResult(run_id=new_run_id(), pair=self.pair.name)
        push.renew_expiring_channels(run, self.state, self.connectors, self.pair.ordered(self._flow_names(flows)),
                                     self.now)
        return run

    def channels_due(self, flows: Iterable[str] | None = None) -> bool:
        """Whether ``keep_channels`` would have anything to do now (see push.due)."""
        return push.due(self.state, self.connectors, self.pair.ordered(self._flow_names(flows)), self.now())

    def recover_interrupted_creates(self, run: RunResult) -> None:
        recovery.recover_interrupted_creates(run, self.pair, self.state, self.connectors, self.context)

    def drain_inbox(self, run: RunResult, flows: list[Flow]) -> None:
        """Fetch and sync the records that notifications named; the poll afterwards is the safety net. Flows
        reading the same entity (accounts to customers, accounts to vendors) share one fetch of its records."""
        waiting = push.waiting(self.state, self.pair.name, flows, self.system_name)
        if not waiting.inbox_ids:
            return
        readers = Counter((self.system_name(f.source), f.source_entity) for f in flows)
        fetched: dict[tuple[str, str], dict[str, Record]] = {}
        for flow in flows:
            ids = waiting.ids.get(flow.name)
            if not ids:
                continue
            fr = self._flow_run(run, flow, "push")
            names = (fr.source_name, fr.target_name)
            if readers[(fr.source_name, flow.source_entity)] > 1:
                found = fetched.setdefault((fr.source_name, flow.source_entity), {})
                found.update(sources.current(fr.source, flow.source_entity, [i for i in ids if i not in found]))
                records: Iterable[Record] = sources.present_or_gone(run, self.state, self.pair.name, flow, names,
                                                                    ids, found, self.deletions.gone_of(flow))
            else:
                records = sources.fetch(run, self.state, self.pair.name, flow, fr.source, names, ids,
                                        self.deletions.gone_of(flow))
            self._run_flow(fr, records)
        run.notifications += len(waiting.inbox_ids)
        self.state.mark_processed(waiting.inbox_ids)

    # one flow ------------------------------------------------------------------------------------------------------
    def _read_whole(self, fr: FlowRun, read: window.Window, recorded: str | None) -> None:
        """A poll's window read and recorded: the watermark moves, and the mapping it used (``recorded``: the digest
        as the flow began) is the flow's now."""
        window.close_window(fr, read.end)
        if recorded != fr.flow.mapping_digest:
            self.state.set_mapping_digest(self.pair.name, fr.flow.name, fr.flow.mapping_digest)

    def _flow_run(self, run: RunResult, flow: Flow, mode: str, queued: bool | None = None) -> FlowRun:
        logs.set_flow(flow.name)
        # Whether a record of this flow may wait in the replay queue: if none did when the flow began and none is
        # queued since, a batch's bookkeeping need not ask.
        if queued is None:
            queued = run.dry_run or self.state.has_queued(self.pair.name, flow.name)
        return FlowRun(run, self.pair, flow, self.config, self.connectors, self.state, self.context, mode,
                       run.flows.setdefault(flow.name, FlowStats()), replay_waiting=run.dry_run or queued)

    def _run_flow(self, fr: FlowRun, records: Iterable[Record], *, initial: bool = False,
                  finished: Callable[[], None] = lambda: None) -> None:
        def between_batches() -> None:
            self._stop_if_asked()
            self._report_total(fr)

        run_flow(fr, records, Decider(fr, self.planned, self.progress), batch_size=self.batch_size,
                 writers=self._in_flight(fr), initial=initial, counter=self.counter,
                 before_send=functools.partial(recovery.note_intents, fr) if fr.flow.find_by else None,
                 finished=finished,
                 stop_if_asked=self._stop_if_asked, stop_requested=self.stop_requested,
                 between_batches=between_batches)

    def _report_total(self, fr: FlowRun) -> None:
        """The number of records the read under way gives, where the source's API told it (a progress bar's total);
        sources that can are asked to when the read starts."""
        total = fr.source.counted(fr.flow.source_entity) if self.progress_total else None
        if total is not None and self.progress_total:
            self.progress_total(fr.flow.name, total)

    def _stop_if_asked(self) -> None:
        """Between batches: a run told to stop (SIGTERM, Ctrl-C) reads and sends nothing more; what is in flight
        ends and is recorded on the way out."""
        signum = self.stop_requested()
        if signum is not None:
            raise Stop(f"interrupted by {interrupt.signal_name(signum)}", interrupt.exit_code(signum))

    def _in_flight(self, fr: FlowRun) -> int:
        """How many write batches to keep in flight: as many calls as the target's API allows at once (Zoho's
        edition limit, BC's 5 per user), so a slow API is kept busy rather than waited on one batch at a time.
        A target whose limit depends on the call (Zoho: 10 for writes of more than 10 records) says so."""
        if self.concurrency is not None:
            return self.concurrency
        return max(1, int(fr.target.write_concurrency(fr.flow.target_entity, self.batch_size)))

    def _connect(self, flows: list[Flow]) -> None:
        """The calls each system's connector makes first in every run (tokens, the company, the org), made for
        all of them at once: a run then starts after the slowest system's, not after the sum of them. A failure
        here is left to the run's own call, which meets it again where it is reported."""
        used = {id(c): c for f in flows for c in (self.connectors[f.source], self.connectors[f.target])}
        steps = [c.connect for c in used.values()]
        if len(steps) < 2:
            return
        with ThreadPoolExecutor(max_workers=len(steps), thread_name_prefix="connect") as pool:
            for future in [pool.submit(step) for step in steps]:
                try:
                    future.result()
                except MLConnectorError as exc:
                    log.debug("connecting ahead: %s", exc)

    def _unavailable(self, flow: Flow) -> str | None:
        """Why this flow cannot run at all, if it cannot: the source or the target says so (a module the Zoho
        edition lacks, a GP resource its configured transport does not serve)."""
        for role, entity in ((flow.source, flow.source_entity), (flow.target, flow.target_entity)):
            reason = self.connectors[role].unavailable(entity)
            if reason:
                return reason
        return None

    # run bookkeeping -----------------------------------------------------------------------------------------------
    def _flow_names(self, flows: Iterable[str] | None) -> list[str] | None:
        names = list(flows or self.config.flows or [])
        for name in names:
            if not self._has_flow(name):
                known = ", ".join(f.name for f in self.pair.flows)
                raise ConfigError(f"pair {self.pair.name} has no flow {name!r} (flows: {known})")
        return names or None

    def _has_flow(self, name: str) -> bool:
        return any(f.name == name for f in self.pair.flows)

    def _start(self, dry_run: bool, kind: str) -> RunResult:
        self.planned.clear()
        self.deletions.start()
        run = RunResult(run_id=new_run_id(), pair=self.pair.name, dry_run=dry_run)
        logs.begin(run.run_id, self.pair.name)
        self._started = time.monotonic()
        self._credits = {id(c): c.credits_used for c in self.connectors.values()}
        if not dry_run:
            self.state.start_run(run.run_id, self.pair.name, dry_run=dry_run, kind=kind)
        return run

    def _finish(self, run: RunResult) -> RunResult:
        if run.dry_run:
            estimate.add_reads(run)
        signum = self.stop_requested()
        if signum is not None and run.stopped:
            # Told to stop: whatever else ended the run (a retry cut short on the way out), it was the signal.
            run.interrupted = interrupt.signal_name(signum)
            run.stopped = f"interrupted by {run.interrupted}"
            run.exit_code = interrupt.exit_code(signum)
        run.settle()
        status = run.status
        for connector in {id(c): c for c in self.connectors.values()}.values():
            spent = connector.credits_used - self._credits.get(id(connector), 0)
            if spent:
                run.credits[connector.name] = run.credits.get(connector.name, 0) + spent
        if not run.dry_run:
            self.state.finish_run(run.run_id, status, run.exit_code, run.to_dict())
        logs.set_flow(None)
        failed, recorded = run.failed, run.recorded
        # The run's last line carries its outcome as fields (status, exit_code ...) for a log shipper.
        log.info("%s run %s: %s, exit %d, %d record(s), %d failed%s", self.pair.name, run.run_id, status,
                 run.exit_code, recorded, failed, f" ({run.stopped})" if run.stopped else "",
                 extra={"status": status, "exit_code": run.exit_code, "records": recorded, "failed": failed,
                        "duration_seconds": round(time.monotonic() - self._started, 3)})
        return run
