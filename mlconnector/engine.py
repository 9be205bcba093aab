"""System-agnostic sync: flows, watermarks, links, batching, audit and replay.

The engine reads changes from a source connector, maps them with the pair's functions, skips what is
unchanged or our own echo, upserts the rest through the target connector, and records every attempt
in the state file. It knows no vendor.
"""

from __future__ import annotations

import inspect
import logging
import json
import queue
import threading
import time
import secrets as _random
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from itertools import islice, takewhile
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from mlconnector.config import Config, PairConfig
from mlconnector.errors import (
    EXIT_OK,
    EXIT_RECORDS_FAILED,
    EXIT_UNREACHABLE,
    AuthError,
    BudgetExhausted,
    ConfigError,
    LockHeld,
    MLConnectorError,
    RecordError,
    RemoteError,
    Unreachable,
    UnresolvedReference,
)
from mlconnector import echo, interrupt
from mlconnector.fingerprints import comparable, payload_hash, source_fingerprint
from mlconnector.flows import CONFLICT_RULES, Flow, PairSpec, SkipRecord
from mlconnector.http import CallCounter
from mlconnector.pairs import get_pair
from mlconnector.state import Link, State
from mlconnector.systems import ConnectorContext, make_connector
from mlconnector.systems.base import Channel, Connector, Record, WriteResult, supports_push

log = logging.getLogger("mlconnector.engine")

DEFAULT_BATCH = 100
DEFAULT_CONCURRENCY = 4
# The most target records a conflict check reads as "changed since the opposite flow last read": beyond it, the
# linked targets of each batch are fetched instead (one call per batch).
CHANGED_TARGETS_CAP = 2_000
# Records a poll reads ahead of the pipeline, in a thread of its own, so the source's parsing overlaps mapping and
# writing (a connector that can also asks for its next page early: see ``pages_ahead``).
READ_AHEAD = 1_000
# Batches sent but not yet recorded (the recording thread takes them in read order, so a done one may wait behind
# a slower one): at most this many per write in flight, before the run waits.
BACKLOG_PER_WRITER = 3
# Prepared batches queued for a free write call, beyond those in flight.
WRITES_WAITING = 2
# Finished batches recorded in one transaction at most, and how long recording waits for the writes behind a
# finished one to finish too (seconds), so that they share the transaction.
RECORD_TOGETHER = 10
RECORD_WAIT = 0.2


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a random suffix."""
    return f"{utcnow():%Y%m%dT%H%M%SZ}-{_random.token_hex(3)}"


@dataclass
class FlowStats:
    """Counts for one flow in one run, as the summary table shows them. Every record read is counted once, as it
    is recorded: read = created + updated + unchanged + skipped + failed (a record the run read but was stopped
    before settling is not counted: the next run reads it again)."""

    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    note: str = ""
    skip_reasons: dict[str, int] = field(default_factory=dict)  # why records were skipped, with their counts

    def count(self, action: str, reason: str | None = None) -> None:
        """One record read and settled: ``action`` create, update, unchanged, skip (with its reason) or fail."""
        attr = {"create": "created", "update": "updated", "fail": "failed", "skip": "skipped",
                "unchanged": "unchanged"}[action]
        setattr(self, attr, getattr(self, attr) + 1)
        self.read += 1
        if action == "skip":
            why = (reason or "no reason given").removeprefix("skipped: ")
            self.skip_reasons[why] = self.skip_reasons.get(why, 0) + 1


@dataclass
class Planned:
    """What a dry run would do to one record."""

    flow: str
    source_id: str
    action: str
    target_id: str | None


@dataclass
class RunResult:
    run_id: str
    pair: str
    dry_run: bool = False
    flows: dict[str, FlowStats] = field(default_factory=dict)
    stopped: str | None = None
    exit_code: int = EXIT_OK
    # Push channels: what was subscribed or renewed, and what failed (then that entity is polled only).
    channels: list[str] = field(default_factory=list)
    channel_problems: list[str] = field(default_factory=list)
    notifications: int = 0
    planned: list[Planned] = field(default_factory=list)
    estimated_calls: dict[str, int] = field(default_factory=dict)
    interrupted: str | None = None  # the signal that stopped the run (SIGTERM, SIGINT)

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.flows.values())

    @property
    def recorded(self) -> int:
        """Records this run settled (written, found unchanged, skipped or failed) and recorded."""
        return sum(s.read for s in self.flows.values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"] = self.failed
        if not self.dry_run:
            data.pop("planned")
            data.pop("estimated_calls")
        return data


@dataclass(slots=True)  # a first load holds a bulk file's worth of these
class _Item:
    """One record on its way through a flow."""

    record: Record
    link: Link | None
    payload: dict[str, Any] | None = None
    hash: str | None = None
    result: WriteResult | None = None
    note: str | None = None  # e.g. which conflict rule applied
    fingerprint: str | None = None  # of the source record, where its modification time cannot tell versions apart
    # Two-way flows: the opposite flow's link to this record, and the hash it keeps once this record's content
    # is what both sides agree on (set for records to be written; see _agreement).
    opposite: Link | None = None
    agreed: str | None = None
    key: str | None = None  # the natural key it is written under, as the target compares keys
    sent_back: tuple[dict[str, Any], WriteResult] | None = None  # a new record's key, written back to its source
    shares_key_with: tuple[str, ...] = ()  # other source records holding that key (then none is written)


@dataclass
class _Found:
    record: Record
    payload: dict[str, Any]


class _Context:
    """The MapContext a mapping function sees: link look-ups and pair options."""

    def __init__(self, engine: "Engine") -> None:
        self._engine = engine
        self.options = engine.config.options

    def target_id(self, flow: str, source_id: str, *, what: str = "record") -> str:
        # Only the id: a document asks this once per line.
        target = self._engine.state.target_of(self._engine.pair.name, flow, str(source_id))
        if not target and str(source_id) in self._engine.planned.get(flow, ()):
            return f"(new from {flow} {source_id})"  # a dry run: the referenced record would be created first
        if not target:
            spec = self._engine.pair.flow(flow)
            raise UnresolvedReference(
                f"{what} {source_id} is not yet in {self._engine.system_name(spec.target)} "
                f"(flow {flow} has not synced it); it will go through once {flow} has")
        return target

    def source_id(self, flow: str, target_id: str) -> str | None:
        link = self._engine.state.link_by_target(self._engine.pair.name, flow, str(target_id))
        return link.source_id if link else None


def pair_lock_file(state_path: Path, pair: str) -> Path:
    return state_path.with_name(f"{state_path.name}.{pair}.lock")


@contextmanager
def pair_lock(state_path: Path, pair: str) -> Iterator[None]:
    """One run per pair at a time: a lock file next to the state file; a second run fails at once (within a
    fraction of a second: `status` takes the lock for an instant to see whether a run is alive)."""
    lock = FileLock(str(pair_lock_file(state_path, pair)))
    try:
        lock.acquire(timeout=0.2)
    except Timeout:
        raise LockHeld(f"another run of {pair} is in progress (lock {lock.lock_file}); "
                       "this run exits without doing anything") from None
    try:
        yield
    finally:
        lock.release()


class Engine:
    """Runs one pair's flows between connectors (role -> connector) and records it in ``state``."""

    def __init__(
        self,
        pair: PairSpec,
        config: PairConfig,
        connectors: Mapping[str, Connector],
        state: State,
        *,
        counter: CallCounter | None = None,
        progress: Callable[[str, int], None] | None = None,
        concurrency: int | None = None,
        now: Callable[[], datetime] = utcnow,
        stop_requested: Callable[[], int | None] = interrupt.requested,
        progress_total: Callable[[str, int], None] | None = None,
    ) -> None:
        missing = set(pair.roles) - set(connectors)
        if missing:
            raise ConfigError(f"pair {pair.name}: no system for role {sorted(missing)[0]}")
        self.pair = pair
        self.config = config
        self.connectors = connectors
        self.state = state
        self.counter = counter or CallCounter()
        self.progress = progress or (lambda flow, n: None)
        # Where a progress bar can show a total: sources that can tell how many records a read gives do (_totals).
        self.progress_total = progress_total
        # Write batches in flight at once; None: as many as the target's API allows (see _in_flight).
        self.concurrency = max(1, concurrency) if concurrency else None
        self.now = now
        self.stop_requested = stop_requested  # a signal asked the run to stop (see _stop_if_asked)
        self.batch_size = config.batch_size or DEFAULT_BATCH
        self.planned: dict[str, set[str]] = {}  # dry run: source ids each flow would write
        self._batch: list[_Item] = []
        self._written: dict[str, Link] = {}
        self._replay_waiting = True  # see _run_flow
        self._batch_targets: dict[str, Record] | None = None
        self._keys = _ClaimedKeys()  # per flow run (see _run_flow)
        # Per flow run: target records changed since the opposite flow's watermark (None: not known).
        self._target_changes: dict[str, Record] | None = None
        self._target_changes_read = False
        self._context = _Context(self)
        rule = config.options.get("conflict_rule")
        if rule is not None and rule not in CONFLICT_RULES:
            raise ConfigError(f"pairs.{pair.name}.options.conflict_rule = {rule!r}: use one of "
                              f"{', '.join(CONFLICT_RULES)}")
        if config.credit_budget:
            # Systems that charge credits keep their own daily ledger and stop a run before crossing it.
            for connector in connectors.values():
                if callable(getattr(connector, "set_budget", None)):
                    connector.set_budget(config.credit_budget)

    def system_name(self, role: str) -> str:
        return getattr(self.connectors[role], "name", role)

    # public entry points ---------------------------------------------------------------------
    def sync(self, flows: Iterable[str] | None = None, *, full: bool = False, since: datetime | None = None,
             dry_run: bool = False) -> RunResult:
        """Poll every chosen flow from its watermark (or ``since``, or everything with ``full``)."""
        names = self._flow_names(flows)
        run = self._start(dry_run)
        until = self.now()
        chosen = self.pair.ordered(names)
        try:
            self._connect(chosen)
            if not dry_run:
                self.recover_interrupted_creates(run)
                self.renew_expiring_channels(run, chosen)
                self.drain_inbox(run, chosen)
            for flow in chosen:
                self._stop_if_asked()
                reason = self._unavailable(flow)
                if reason:
                    run.flows.setdefault(flow.name, FlowStats()).note = reason
                    continue
                start = self._read_start(flow, full, since)
                log.info("%s/%s: reading %s changed since %s", self.pair.name, flow.name, flow.source_entity,
                         start.isoformat() if start else "the beginning")
                source = self.connectors[flow.source]
                if self.progress_total and hasattr(source, "count_rows"):
                    source.count_rows = True  # its first page says how many records the read gives
                records = source.changes(flow.source_entity, start, until)
                self._run_flow(run, flow, records, mode="poll", initial=start is None, until=until)
        except _Stop as stop:
            run.stopped = str(stop)
        return self._finish(run)

    def replay(self, *, flow: str | None = None, error_class: str | None = None, ids: list[str] | None = None,
               dry_run: bool = False) -> RunResult:
        """Re-fetch each queued record from its source (its current version) and run it through again."""
        run = self._start(dry_run)
        try:
            if not dry_run:
                self.recover_interrupted_creates(run)
            items = self.state.replay_items(pair=self.pair.name, flow=flow, error_class=error_class, ids=ids)
            for spec in self.pair.ordered(sorted({i["flow"] for i in items if self._has_flow(i["flow"])})):
                queued = [i["source_id"] for i in items if i["flow"] == spec.name]
                self._run_flow(run, spec, self._fetch(run, spec, queued), mode="replay")
        except _Stop as stop:
            run.stopped = str(stop)
        return self._finish(run)

    def drain(self, flows: Iterable[str] | None = None) -> RunResult:
        """Process the notifications waiting in the inbox, without polling (`listen --process`)."""
        run = self._start(False)
        try:
            self.recover_interrupted_creates(run)
            self.drain_inbox(run, self.pair.ordered(self._flow_names(flows)))
        except _Stop as stop:
            run.stopped = str(stop)
        return self._finish(run)

    # push ------------------------------------------------------------------------------------
    def renew_expiring_channels(self, run: RunResult, flows: list[Flow]) -> None:
        """Subscribe where a channel is missing and renew those expiring within the system's margin.

        A failure is reported and that entity falls back to the poll, which runs in any case.
        """
        wanted: dict[tuple[str, str], Any] = {}
        for flow in flows:
            source = self.connectors[flow.source]
            if supports_push(source) and getattr(source, "notify_url", None) \
                    and flow.source_entity in source.push_entities():
                wanted[(source.name, flow.source_entity)] = source
        for (system, entity), source in wanted.items():
            margin = getattr(source, "renew_margin", timedelta(hours=2))
            stored = [c for c in self.state.channels(system) if c["entity"] == entity]
            try:
                if not stored:
                    self._save_channel(run, source.subscribe(entity, source.notify_url), "subscribed")
                for row in stored:
                    channel = Channel(system, entity, row["channel_id"], row["expires"], row["notify_url"],
                                      row["extra"])
                    if row["notify_url"] != source.notify_url:
                        # notify_url changed in the configuration: move the channel to the new address.
                        self._move(run, source, channel)
                    elif row["expires"] - self.now() <= margin:
                        self._renew(run, source, channel)
            except MLConnectorError as exc:
                run.channel_problems.append(f"{system} {entity}: {exc}; polling only until this is fixed")
                run.exit_code = max(run.exit_code, exc.exit_code)

    def _renew(self, run: RunResult, source: Any, channel: Channel) -> None:
        if channel.expires > self.now():
            try:
                self._save_channel(run, source.renew(channel), "renewed")
                return
            except (RemoteError, RecordError):
                pass  # gone or refused on the system's side: a new one replaces it below
        self.state.delete_channel(channel.system, channel.channel_id)
        self._save_channel(run, source.subscribe(channel.entity, channel.notify_url), "re-subscribed")

    def _move(self, run: RunResult, source: Any, channel: Channel) -> None:
        try:
            source.unsubscribe(channel)
        except (RemoteError, RecordError):
            pass  # already gone on the system's side
        self.state.delete_channel(channel.system, channel.channel_id)
        self._save_channel(run, source.subscribe(channel.entity, source.notify_url), "moved to the new notify_url")

    def _save_channel(self, run: RunResult, channel: Channel, what: str) -> None:
        self.state.save_channel(system=channel.system, entity=channel.entity, channel_id=channel.channel_id,
                                expires=channel.expires, notify_url=channel.notify_url, extra=dict(channel.extra))
        run.channels.append(f"{channel.system} {channel.entity}: {what} until {channel.expires:%Y-%m-%d %H:%M} UTC")

    def drain_inbox(self, run: RunResult, flows: list[Flow]) -> None:
        """Fetch and sync the records that notifications named; the poll afterwards is the safety net."""
        rows = self.state.pending_inbox(self.pair.name)
        if not rows:
            return
        done: set[int] = set()
        for flow in flows:
            source = self.system_name(flow.source)
            mine = [row for row in rows if row["system"] == source and row["entity"] == flow.source_entity]
            ids = list(dict.fromkeys(i for row in mine for i in row["ids"]))
            if ids:
                self._run_flow(run, flow, self._fetch(run, flow, ids), mode="push")
            done.update(row["id"] for row in mine)
        # Notifications for flows not run this time (--flow) wait for a run that includes them.
        run.notifications += len(done)
        self.state.mark_processed(sorted(done))

    # the pipeline ----------------------------------------------------------------------------
    def _run_flow(self, run: RunResult, flow: Flow, records: Iterable[Record], *, mode: str,
                  initial: bool = False, until: datetime | None = None) -> None:
        stats = run.flows.setdefault(flow.name, FlowStats())
        before = self.counter.snapshot()
        self._target_changes, self._target_changes_read = None, False
        # Whether a record of this flow may wait in the replay queue: if none did when the flow began and none was
        # queued since, a batch's bookkeeping need not ask.
        self._replay_waiting = run.dry_run or self.state.has_queued(self.pair.name, flow.name)
        stop: _Stop | None = None
        # Once a batch ends neither written nor queued, the watermark must stay before it.
        hold = [False]
        writers = self._in_flight(flow)
        ahead: _ReadAhead | None = None
        paused: Any = None  # a source told to read no page ahead for this flow

        self._keys = _ClaimedKeys()

        @contextmanager
        def together() -> Iterator[None]:
            try:
                with self.state.transaction():
                    yield
            except BaseException:
                hold[0] = True  # a group written but not recorded: the next run must read it again
                raise
            self._keys.release_recorded()  # now in the state file's links, where the next batches find them

        committer = _Committer(lambda segment, future: self._commit(run, flow, segment, future, stats, mode, hold),
                               together=together)
        with ThreadPoolExecutor(max_workers=writers, thread_name_prefix=f"write-{flow.name}") as pool:
            try:
                size, in_flight = self.batch_size, writers
                bulk = getattr(self.connectors[flow.target], "initial_load_batch", None)
                # (A dry run groups records the same way, so that its estimate counts bulk jobs, not batches.)
                if initial and callable(bulk) and (bulk(flow.target_entity) or 0) > size:
                    # A first load the target takes in bulk jobs: few large writes, one at a time, and the next
                    # file is filled only once the job before it is done and recorded, so that one file's payloads
                    # are held at a time, not two (peak memory; the job and the next reads no longer overlap).
                    size, in_flight = bulk(flow.target_entity), 0
                    # For the same reason the source reads no page ahead (a connector that can, says so).
                    source = self.connectors[flow.source]
                    if getattr(source, "pages_ahead", False):
                        source.pages_ahead, paused = False, source
                elif mode == "poll":
                    records = ahead = _ReadAhead(records, READ_AHEAD, self.batch_size)
                # Batches are prepared while the writes before them are out, and up to WRITES_WAITING of them wait
                # in the pool's queue for a free call: a write that ends is followed by the next at once, not after
                # this thread has mapped another batch (the pool has as many threads as calls are allowed at once).
                for segment, to_write in self._segments(run, flow, records, stats, mode, size):
                    self._stop_if_asked()  # this segment is not sent: the watermark stays before it
                    if to_write and run.dry_run:
                        self._estimate_writes(run, flow, to_write)
                    elif to_write:
                        self.state.check_same_file()  # nothing more is sent once the state file is gone
                        self._note_intents(run, flow, to_write)
                        if in_flight > 0:
                            committer.room(in_flight + WRITES_WAITING)
                    future = pool.submit(self._write, flow, to_write) if to_write and not run.dry_run else None
                    committer.put(segment, future, backlog=BACKLOG_PER_WRITER * max(1, in_flight))
                    if in_flight <= 0:  # one write at a time, recorded before the next is filled (bulk jobs)
                        committer.drain()
                committer.drain()
                if mode == "poll" and until is not None and not run.dry_run and not hold[0]:
                    self._close_window(flow, until)
            except BudgetExhausted as exc:
                stop = _Stop(str(exc))
            except (Unreachable, RemoteError) as exc:
                stop = _Stop(str(exc), EXIT_UNREACHABLE)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # what waits for a free call is not sent
                raise
            finally:
                if ahead is not None:
                    ahead.close()
                if paused is not None:
                    paused.pages_ahead = True
                # Writes already sent may have landed: record each of them before leaving.
                committer.close()
                stats.calls = _merge(stats.calls, self.counter.since(before))
        log.info("%s/%s: read %d, created %d, updated %d, unchanged %d, skipped %d, failed %d", self.pair.name,
                 flow.name, stats.read, stats.created, stats.updated, stats.unchanged, stats.skipped, stats.failed)
        if stop:
            log.warning("%s/%s: stopped: %s", self.pair.name, flow.name, stop)
            run.exit_code = max(run.exit_code, stop.exit_code)
            raise stop

    def _close_window(self, flow: Flow, until: datetime) -> None:
        """After a poll that read its whole window and recorded every record in it, move the watermark to
        where the window provably ends, not just to the newest record read: the next run's overlap then re-reads
        only the last few seconds, not a cluster of records sharing an old stamp (a Bulk Write job's).

        The end is the earlier of ``until`` (this host's clock) and the source's own clock when the read began
        (connectors that know it offer ``read_clock``): under clock skew either may be the earlier. A source that
        dates changes by day (GP) offers the end of the earliest day that may still change instead. A source that
        does not tell its clock keeps the watermark at the newest record read. Records that land late with an
        older stamp are what the overlap is for, as before."""
        clock = getattr(self.connectors[flow.source], "read_clock", None)
        seen = clock(flow.source_entity) if callable(clock) else None
        if isinstance(seen, datetime) and seen.tzinfo is not None:
            self.state.set_watermark(self.pair.name, flow.name, min(until, seen))

    def _in_flight(self, flow: Flow) -> int:
        """How many write batches to keep in flight: as many calls as the target's API allows at once (Zoho's
        edition limit, BC's 5 per user), so a slow API is kept busy rather than waited on one batch at a time.
        A target whose limit depends on the call (Zoho: 10 for writes of more than 10 records) says so."""
        if self.concurrency is not None:
            return self.concurrency
        sized = getattr(self.connectors[flow.target], "write_concurrency", None)
        if callable(sized):
            return max(1, int(sized(flow.target_entity, self.batch_size)))
        allowed = getattr(getattr(self.connectors[flow.target], "http", None), "max_concurrency", None)
        return max(1, allowed) if isinstance(allowed, int) else DEFAULT_CONCURRENCY

    def _prepare(self, run: RunResult, flow: Flow, batch: list[_Item], stats: FlowStats, mode: str) -> list[_Item]:
        """Map each record and decide: already seen, echo, unchanged, failed, or to be written."""
        # What is committed: the batches before this one that are not recorded yet are still out (as they were
        # when records were recorded on this thread); a record read twice in one run is upserted by its key.
        links = self.state.committed_links(self.pair.name, flow.name, [i.record.id for i in batch])
        for item in batch:
            item.link = links.get(item.record.id)
        self._batch, self._batch_targets = batch, None  # for _current_target
        # For the echo check: what the opposite flow wrote to these records, one query for the batch.
        self._written = (self.state.committed_links(self.pair.name, flow.echo_of, [i.record.id for i in batch],
                                                    by_target=True) if flow.echo_of else {})
        mapped: list[_Item] = []
        coarse = self._coarse_stamps(flow)
        for item in batch:
            record = item.record
            item.link = links.get(record.id)
            self.progress(flow.name, 1)
            if record.modified is None or coarse:
                item.fingerprint = source_fingerprint(record.data)
            if mode == "poll" and self._already_synced(item, coarse):
                # Re-read through the overlap window: this exact version is already done.
                item.result = WriteResult("skip", item.link.target_id if item.link else None)
                item.payload = None
                item.hash = "seen"
                continue
            note = self._echo(flow, item)
            if note:
                item.result = WriteResult("skip", item.link.target_id if item.link else None, error=note)
                continue
            try:
                item.payload = flow.map(record, self._context)
            except SkipRecord as exc:
                item.result = WriteResult("skip", None, error=f"skipped: {exc}")
                continue
            except RecordError as exc:
                item.result = WriteResult("fail", None, error=str(exc), error_class=exc.error_class)
                continue
            except (KeyError, ValueError, TypeError) as exc:
                item.result = WriteResult("fail", None, error=f"cannot map: {type(exc).__name__}: {exc}",
                                          error_class="mapping")
                continue
            item.hash = payload_hash(item.payload)
            mapped.append(item)
        self._refuse_shared_keys(flow, mapped)
        to_write: list[_Item] = []
        for item in mapped:
            record = item.record
            if item.result is not None:
                continue
            if item.link and item.link.target_id and item.link.hash == item.hash:
                # Nothing the target does not hold already: no write, and so no conflict to settle.
                item.result = WriteResult("skip", item.link.target_id, error="unchanged")
                continue
            keep, item.note = self._conflict(flow, item)
            if keep:
                item.result = WriteResult("skip", item.link.target_id if item.link else None, error=item.note)
                item.payload = item.hash = None
                continue
            self._agreement(item)
            if run.dry_run:
                action = "update" if item.link and item.link.target_id else "create"
                run.planned.append(Planned(flow.name, record.id, action,
                                           item.link.target_id if item.link else None))
                self.planned.setdefault(flow.name, set()).add(record.id)
                item.result = WriteResult(action, item.link.target_id if item.link else None)  # type: ignore[arg-type]
            to_write.append(item)
        for item in batch:
            # From here on only the id and version matter (links, audit, watermark): a batch waiting for its
            # bulk job need not hold every source record's fields as well as its payload.
            record = item.record
            item.record = Record(record.system, record.entity, record.id, record.modified, {})
        return to_write

    def _segments(self, run: RunResult, flow: Flow, records: Iterable[Record], stats: FlowStats,
                  mode: str, size: int) -> Iterator[tuple[list[_Item], list[_Item]]]:
        """Group records, in read order, so that each write call carries a full batch even when most
        records are skipped (quota: the fewest calls). A long stretch without writes is committed on
        its own, so memory stays bounded and the watermark moves."""
        segment: list[_Item] = []
        to_write: list[_Item] = []
        for batch in _batched(records, self.batch_size):
            self._stop_if_asked()
            self._report_total(flow)
            wanted = {id(item) for item in self._prepare(run, flow, batch, stats, mode)}
            for item in batch:
                segment.append(item)
                if id(item) in wanted:
                    to_write.append(item)
                    if len(to_write) == size:
                        yield segment, to_write
                        segment, to_write = [], []
            if len(segment) >= max(10 * self.batch_size, size):
                yield segment, to_write
                segment, to_write = [], []
        if segment:
            yield segment, to_write

    def _connect(self, flows: list[Flow]) -> None:
        """The calls each system's connector makes first in every run (tokens, the company, the org), made for
        all of them at once: a run then starts after the slowest system's, not after the sum of them. A failure
        here is left to the run's own call, which meets it again where it is reported."""
        used = {id(c): c for f in flows for c in (self.connectors[f.source], self.connectors[f.target])}
        steps = [c.connect for c in used.values() if callable(getattr(c, "connect", None))]
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
            check = getattr(self.connectors[role], "unavailable", None)
            reason = check(entity) if callable(check) else None
            if reason:
                return reason
        return None

    def _coarse_stamps(self, flow: Flow) -> bool:
        """Whether the source's stamps for the flow's entity cannot tell two versions of a record apart (GP keeps
        a card's last change as a date): such records are known unchanged by their content, not their stamp."""
        coarse = getattr(self.connectors[flow.source], "coarse_stamps", None)
        return bool(coarse(flow.source_entity)) if callable(coarse) else False

    def _already_synced(self, item: _Item, coarse: bool = False) -> bool:
        link, modified = item.link, item.record.modified
        if link and link.target_id and item.fingerprint and ((modified is None and link.hash) or coarse):
            # A source without modification times (NAV's posted documents), read whole on every run, or whose
            # stamps are too coarse to order versions (a card changed twice on one GP day keeps its date): the
            # very content last synced needs no mapping again, and any other content is a change.
            return link.source_hash == item.fingerprint
        return bool(link and link.target_id and link.source_version and modified and modified <= link.source_version)

    def _refuse_shared_keys(self, flow: Flow, items: list[_Item]) -> None:
        """Records that map to one natural key, as the target compares keys (Zoho: without case or surrounding
        spaces), would be upserted into one target record, each over the other. None of them is written: each
        fails naming the others and the key, and waits in the replay queue until the data is fixed; a record
        already linked under that key is queued too (see _record). Records of the batch, of batches not yet
        recorded, and records linked or queued before all count."""
        field = flow.key_field(self.config.options)
        form = self._key_form(flow, field)
        for item in items:
            value = (item.payload or {}).get(field)
            item.key = form(value) if value not in (None, "") else None
        by_key: dict[str, list[_Item]] = {}
        for item in items:
            if item.key:
                by_key.setdefault(item.key, []).append(item)
        if not by_key:
            return
        # Batches prepared but not recorded yet first: one recorded meanwhile is then found in the state file.
        claimed = {key: self._keys.holder(key) for key in by_key}
        recorded = self.state.holders_of_keys(self.pair.name, flow.name, list(by_key))
        # A record of this batch holds the key it maps to now, whatever it was linked or queued under before.
        now = {item.record.id: item.key for item in items}
        for key, group in by_key.items():
            holders = {h for h in recorded.get(key, set()) | {claimed[key]} if h and now.get(h, key) == key}
            holders.update(i.record.id for i in group)
            if len(holders) == 1:
                self._keys.claim(key, group[0].record.id)
                continue
            target = self.system_name(flow.target)
            for item in group:
                others = tuple(sorted(holders - {item.record.id}))
                value = (item.payload or {}).get(field)
                item.shares_key_with = others
                item.result = WriteResult(
                    "fail", item.link.target_id if item.link else None, error_class="duplicate_key",
                    error=f"{field} {value!r} is also the key of {flow.source_entity} {', '.join(others)} (as "
                          f"{target} compares it): none of them is written, so that none is merged into another; "
                          f"make the keys differ in {self.system_name(flow.source)}, then run `mlconnector replay`")
                item.payload = item.hash = None

    def _key_form(self, flow: Flow, field: str) -> Callable[[Any], str]:
        """How the target compares values of its key ``field`` (a connector that says: ``key_form``); else as text
        without surrounding spaces."""
        form = getattr(self.connectors[flow.target], "key_form", None)
        if callable(form):
            return lambda value: form(flow.target_entity, field, value)
        return lambda value: str(value).strip()

    def _echo(self, flow: Flow, item: _Item) -> str | None:
        """A record the opposite flow wrote, not edited since that write, is our own echo (see echo.is_echo).

        Except, once, a record the opposite flow created here when this flow has ``send_back_created``:
        this system assigned it keys (a customer number) that the other side must learn.
        """
        record = item.record
        if not flow.echo_of:
            return None
        if flow.send_back_created and item.link and item.link.hash is None:
            return None
        written = self._written.get(record.id)  # fetched for the whole batch by _prepare
        if written is None or not echo.is_echo(record, written, lambda: self._adds_nothing(flow, record, written)):
            return None
        return f"echo of our own write by {flow.echo_of}"

    def _adds_nothing(self, flow: Flow, record: Record, written: Link) -> bool:
        """Whether ``flow`` takes from ``record`` only what the opposite flow wrote into it: mapped with every other
        field left out, the record maps to the same payload."""
        try:
            whole = flow.map(record, self._context)
        except (RecordError, SkipRecord, KeyError, ValueError, TypeError):
            return True  # nothing this flow would write either way
        kept = {k: record.data[k] for k in ("id", *(written.fields or ())) if k in record.data}
        try:
            part = flow.map(Record(record.system, record.entity, record.id, record.modified, kept), self._context)
        except (RecordError, SkipRecord, KeyError, ValueError, TypeError):
            return False
        return payload_hash(whole) == payload_hash(part)

    def _agreement(self, item: _Item) -> None:
        """Before a record of a two-way flow is written, what the opposite flow's link will keep once it is: the
        record's own content in the fields that flow writes (see _record). The other side then holds what this
        record maps to, so its next read is not taken for an edit (nor this write for a conflict)."""
        opposite = self._written.get(item.record.id)
        if opposite is not None and opposite.fields and opposite.hash is not None:
            item.opposite, item.agreed = opposite, echo.agreed_hash(item.record, opposite.fields)

    def _conflict(self, flow: Flow, item: _Item) -> tuple[bool, str | None]:
        """In a two-way flow, when the record we are about to write over also changed since we last
        synced it, the flow's rule decides: ``later-wins`` (default), ``source-wins`` or ``target-wins``.
        Returns (keep the target as it is, the note for the audit row)."""
        link = item.link
        if not flow.echo_of or link is None or not link.target_id:
            return False, None
        current = self._current_target(flow, link.target_id)
        if current is None or current.modified is None or not self._changed_since_sync(flow, link, current,
                                                                                        item.payload or {}):
            return False, None
        source, target = self.system_name(flow.source), self.system_name(flow.target)
        rule = self.config.options.get("conflict_rule", flow.conflict_rule)
        record = item.record
        keep = rule == "target-wins" or (rule == "later-wins" and record.modified is not None
                                         and current.modified > record.modified)
        kept = f"kept {target}'s version" if keep else f"applied {source}'s change"
        return keep, f"conflict: both sides changed; rule {rule}: {kept}"

    def _current_target(self, flow: Flow, target_id: str) -> Record | None:
        """The target record as it is now, where it may hold a change not yet synced (None: it holds none).

        Only a target change the opposite flow has not read yet can conflict: one it read was synced to this
        flow's source already (or queued for replay). So the first question in a flow run reads the target's
        changes since that flow's watermark, less the overlap: one call, usually empty, however many source
        records changed. Without that watermark, or past CHANGED_TARGETS_CAP changes, the first question in a
        batch fetches every linked target of that batch where the target fetches many ids in one call."""
        changed = self._changed_targets(flow)
        if changed is not None:
            return changed.get(target_id)
        target = self.connectors[flow.target]
        many = getattr(target, "get_many", None)
        if not callable(many):
            return target.get(flow.target_entity, target_id)
        if self._batch_targets is None:
            ids = list(dict.fromkeys(i.link.target_id for i in self._batch if i.link and i.link.target_id))
            self._batch_targets = many(flow.target_entity, ids)
        if target_id not in self._batch_targets:
            return target.get(flow.target_entity, target_id)
        return self._batch_targets[target_id]

    def _changed_targets(self, flow: Flow) -> dict[str, Record] | None:
        if self._target_changes_read:
            return self._target_changes
        self._target_changes_read = True
        opposite = self.pair.flow(flow.echo_of) if flow.echo_of else None
        if opposite is None or opposite.source_entity != flow.target_entity:
            return None
        mark = self.state.watermark(self.pair.name, opposite.name)
        target = self.connectors[flow.target]
        if mark is None or not callable(getattr(target, "changes", None)):
            return None
        found: dict[str, Record] = {}
        records = target.changes(flow.target_entity, mark - timedelta(seconds=self.config.overlap_seconds))
        try:
            for record in records:
                if len(found) >= CHANGED_TARGETS_CAP:
                    return None
                found[record.id] = record
        finally:
            close = getattr(records, "close", None)
            if callable(close):
                close()
        self._target_changes = found
        return found

    def _changed_since_sync(self, flow: Flow, link: Link, current: Record, payload: Mapping[str, Any]) -> bool:
        """Whether the target record changed, in what we sync, since the two were last in agreement (``payload``:
        what we are about to write to it)."""
        assert current.modified is not None
        if link.hash is not None:  # we wrote it: compare with what we wrote
            if link.target_version is None or current.modified < link.target_version:
                return False
            # Equal times may still hide an edit (whole-second clocks): the content decides.
            if link.fields:
                if echo.content_hash(current, link.fields) != link.hash:
                    return True
                # A field we left alone then (it was empty on our side), which the target holds another value in
                # now, would be overwritten: that value is the target's change.
                return any(current.get(k) not in (None, "") and comparable(current.get(k)) != comparable(v)
                           for k, v in payload.items() if k not in link.fields)
            return current.modified > link.target_version
        # The pairing came from the opposite flow, which read this record as its source.
        opposite = self.state.link(self.pair.name, flow.echo_of, link.target_id)
        if opposite is None or opposite.source_version is None or current.modified <= opposite.source_version:
            return False
        return self._maps_differently(self.pair.flow(flow.echo_of), current, opposite)

    def _maps_differently(self, flow: Flow, record: Record, link: Link) -> bool:
        """Whether ``record`` would now map to something other than what ``flow`` last wrote."""
        try:
            return link.hash is None or payload_hash(flow.map(record, self._context)) != link.hash
        except (RecordError, SkipRecord, KeyError, ValueError, TypeError):
            return True

    def _write(self, flow: Flow, items: list[_Item]) -> list[WriteResult]:
        if self.stop_requested() is not None:
            raise _NotSent()  # a batch still waiting for a free call when the run was told to stop
        payloads = [i.payload for i in items if i.payload is not None]
        target = self.connectors[flow.target]
        if _accepts_ids(target):
            # Linked records are updated by their id: their natural key may be missing or changed.
            ids = [i.link.target_id if i.link else None for i in items if i.payload is not None]
            results = target.write(flow.target_entity, payloads, flow.key_field(self.config.options), ids=ids)
        else:
            results = target.write(flow.target_entity, payloads, flow.key_field(self.config.options))
        if len(results) != len(payloads):
            raise RemoteError(self.system_name(flow.target), 0, "", f"write returned {len(results)} results "
                              f"for {len(payloads)} records")
        if flow.echo_of and any(r.stored is not None for r in results):
            # The opposite flow reads these records back: it is their content as that flow sees it that tells
            # our write from a later edit.
            reader = self.pair.flow(flow.echo_of)
            results = [replace(r, stored=echo.as_read_by(lambda rec: reader.map(rec, self._context), r.stored))
                       if r.stored is not None else r for r in results]
        if flow.find_by and flow.echo_of and self.pair.flow(flow.echo_of).send_back_created:
            self._send_keys_back(flow, [i for i in items if i.payload is not None], results)
        return results

    def _send_keys_back(self, flow: Flow, items: list[_Item], results: list[WriteResult]) -> None:
        """Records this flow just created without a key, numbered by the target (a NAV customer for an account born
        in Zoho), go back to their source at once with the key the target gave them (the opposite flow's mapping of
        the record as stored): should the state file be lost, that key in the source is what links the two again,
        on either side. A send-back that fails is left to the opposite flow's next run (``send_back_created``)."""
        opposite = self.pair.flow(flow.echo_of or "")
        key = flow.key_field(self.config.options)
        back: list[tuple[_Item, dict[str, Any]]] = []
        for item, result in zip(items, results):
            if result.action != "create" or result.stored is None or (item.payload or {}).get(key) not in (None, ""):
                continue
            try:
                back.append((item, opposite.map(result.stored, self._context)))
            except (RecordError, SkipRecord, KeyError, ValueError, TypeError):
                continue
        if not back:
            return
        source = self.connectors[flow.source]
        try:
            answers = source.write(flow.source_entity, [payload for _, payload in back],
                                   opposite.key_field(self.config.options), ids=[i.record.id for i, _ in back])
        except MLConnectorError as exc:
            log.warning("%s/%s: the keys of %d new %s go back to %s with the next run: %s", self.pair.name,
                        flow.name, len(back), flow.target_entity, self.system_name(flow.source), exc)
            return
        for (item, payload), answer in zip(back, answers):
            if answer.ok:
                item.sent_back = (payload, answer)

    def _commit(self, run: RunResult, flow: Flow, batch: list[_Item], future: Future | None, stats: FlowStats,
                mode: str, hold: list[bool]) -> None:
        """Record one batch's outcome: links, audit, replay queue and watermark land in one transaction."""
        if future is not None:
            if future.cancelled() or isinstance(future.exception(), _NotSent):
                hold[0] = True  # never sent (the run stopped first): the next run reads these again
                return
            try:
                results = iter(future.result())
            except (AuthError, BudgetExhausted):
                hold[0] = True  # not written, not queued: the next run reads these again
                raise
            except (Unreachable, RemoteError) as exc:
                # The whole batch failed; queue every record so that replay can finish it.
                error = WriteResult("fail", None, error=str(exc), error_class=type(exc).__name__)
                for item in batch:
                    if item.result is None:
                        item.result = error
                # Some creates may have landed before the failure: their intents stay for the next run.
                self._record(run, flow, batch, stats, mode, advance=not hold[0], landed=False)
                raise
            for item in batch:
                if item.result is None:
                    item.result = next(results)
            if any(item.result is not None and item.result.not_sent for item in batch):
                hold[0] = True  # the run stopped part way through the batch: the next run reads the rest again
        try:
            self._record(run, flow, batch, stats, mode, advance=not hold[0])
        except BaseException:
            hold[0] = True  # written but not recorded: the next run must read this batch again
            raise

    def _record(self, run: RunResult, flow: Flow, batch: list[_Item], stats: FlowStats, mode: str,
                advance: bool = True, landed: bool = True) -> None:
        source, target = self.system_name(flow.source), self.system_name(flow.target)
        if run.dry_run:
            for item in batch:
                result = item.result or WriteResult("skip")
                unchanged = item.hash == "seen" or result.error == "unchanged"
                stats.count("unchanged" if unchanged else result.action, result.error)
            return
        self._keys.recorded(item.key for item in batch)
        newest: datetime | None = None
        links: list[Link] = []
        audits: list[dict[str, Any]] = []
        written_back: list[tuple[Record, WriteResult]] = []
        sharing: list[_Item] = []
        with self.state.transaction():
            queued = (self.state.queued(self.pair.name, flow.name, [item.record.id for item in batch])
                      if self._replay_waiting else set())
            for item in batch:
                result = item.result or WriteResult("fail", error="no result", error_class="bug")
                record = item.record
                if result.not_sent:
                    continue  # never sent (the run was told to stop): neither an attempt nor read, as far as it goes
                if item.hash == "seen":
                    # Re-read through the overlap window: neither an attempt nor a change (no audit row).
                    newest = _later(newest, record.modified)
                    stats.count("unchanged")
                    continue
                if result.ok:
                    newest = _later(newest, record.modified)
                    if record.id in queued:
                        self.state.clear_replay(self.pair.name, flow.name, record.id)
                    if result.action in ("create", "update"):
                        links.append(Link(self.pair.name, flow.name, record.id, result.target_id, record.modified,
                                          item.hash, result.version, _field_names(tuple(item.payload or ())),
                                          item.fingerprint, *echo.stored_content(result.stored), item.key))
                        opposite = item.opposite
                        if opposite is not None and opposite.source_id == result.target_id:
                            # The other side now holds this record's content: its flow's next read of what we
                            # wrote is no edit, and this record's stamp is where the two last agreed.
                            links.append(Link(opposite.pair, opposite.flow, opposite.source_id, opposite.target_id,
                                              opposite.source_version, item.agreed, record.modified,
                                              opposite.fields, opposite.source_hash))
                        if item.sent_back is not None and flow.echo_of:
                            # Its source now holds what the opposite flow maps this record to, key included.
                            payload, answer = item.sent_back
                            links.append(Link(self.pair.name, flow.echo_of, str(result.target_id), record.id, None,
                                              payload_hash(payload), answer.version, _field_names(tuple(payload))))
                        elif flow.echo_of and result.target_id:
                            written_back.append((record, result))
                    elif result.error == "unchanged" and item.link:
                        links.append(replace(item.link, source_version=record.modified,
                                             source_hash=item.fingerprint, target_key=item.key))
                else:
                    newest = _later(newest, record.modified)
                    self._replay_waiting = True
                    self.state.queue_replay(pair=self.pair.name, flow=flow.name, source_system=source,
                                            source_entity=flow.source_entity, source_id=record.id,
                                            error_class=result.error_class or "error",
                                            error=result.error or "", run_id=run.run_id, target_key=item.key)
                    if item.shares_key_with:
                        sharing.append(item)
                action = "skip" if result.action == "skip" else result.action
                stats.count("unchanged" if result.error == "unchanged" else action, result.error)
                audits.append({
                    "run_id": run.run_id, "pair": self.pair.name, "flow": flow.name,
                    "source_system": source, "source_entity": flow.source_entity, "source_id": record.id,
                    "target_system": target, "target_entity": flow.target_entity,
                    "target_id": result.target_id or (item.link.target_id if item.link else None),
                    "action": action, "status": "failed" if action == "fail" else "ok",
                    "error_class": result.error_class if action == "fail" else None,
                    "error": result.error if action == "fail" else None,
                    "note": (result.error if action == "skip"
                             else "; ".join(filter(None, (mode if mode != "poll" else None, item.note))) or None),
                    "payload": json.dumps(item.payload, default=str)
                    if self.config.audit_payloads and item.payload is not None else None,
                })
            if sharing:
                audits += self._queue_key_holders(run, flow, sharing, {item.record.id for item in batch})
            # One statement each for the batch's links and audit rows, in the same transaction.
            self.state.save_links(links)
            if written_back:
                self._link_back_many(flow, written_back)
            self.state.add_audits(audits)
            if flow.find_by and landed:
                self.state.clear_intents(self.pair.name, flow.name, [item.record.id for item in batch])
            if mode == "poll" and advance and newest is not None:
                self.state.set_watermark(self.pair.name, flow.name, newest)

    def _queue_key_holders(self, run: RunResult, flow: Flow, sharing: list[_Item],
                           in_batch: set[str]) -> list[dict[str, Any]]:
        """The records outside this batch that hold a key which records of the batch share (written and linked
        earlier): each waits in the replay queue too, and is not written again, until the keys differ."""
        source, target = self.system_name(flow.source), self.system_name(flow.target)
        field = flow.key_field(self.config.options)
        audits: list[dict[str, Any]] = []
        holders: dict[str, tuple[str, list[str]]] = {}
        for item in sharing:
            for other in item.shares_key_with:
                if other not in in_batch:
                    holders.setdefault(other, (str(item.key), []))[1].append(item.record.id)
        waiting = self.state.queued(self.pair.name, flow.name, list(holders))
        for other, (key, sharers) in holders.items():
            if other in waiting:
                continue
            error = (f"{field} {key!r} is also the key of {flow.source_entity} {', '.join(sorted(sharers))} (as "
                     f"{target} compares it): not written again until the keys differ in {source}, then "
                     "`mlconnector replay`")
            self.state.queue_replay(pair=self.pair.name, flow=flow.name, source_system=source,
                                    source_entity=flow.source_entity, source_id=other, error_class="duplicate_key",
                                    error=error, run_id=run.run_id, target_key=key)
            audits.append({"run_id": run.run_id, "pair": self.pair.name, "flow": flow.name, "source_system": source,
                           "source_entity": flow.source_entity, "source_id": other, "target_system": target,
                           "target_entity": flow.target_entity,
                           "target_id": self.state.target_of(self.pair.name, flow.name, other), "action": "fail",
                           "status": "failed", "error_class": "duplicate_key", "error": error})
            self._replay_waiting = True
        return audits

    def _link_back(self, flow: Flow, record: Record, result: WriteResult) -> None:
        """In a two-way sync, the opposite flow learns the pairing too, so it never creates a second
        record for the one we just wrote. Nothing was sent that way yet: no hash, no source version."""
        self._link_back_many(flow, [(record, result)])

    def _link_back_many(self, flow: Flow, written: list[tuple[Record, WriteResult]]) -> None:
        assert flow.echo_of
        known = self.state.links(self.pair.name, flow.echo_of, [str(r.target_id) for _, r in written])
        fresh: dict[str, Link] = {}
        for record, result in written:
            target_id = str(result.target_id)
            if target_id not in known and target_id not in fresh:
                fresh[target_id] = Link(self.pair.name, flow.echo_of, target_id, record.id, None, None,
                                        record.modified)
        self.state.save_links(list(fresh.values()))

    # creates the target numbers itself ---------------------------------------------------------
    def _note_intents(self, run: RunResult, flow: Flow, items: list[_Item]) -> None:
        """Before sending creates that carry no key (the target numbers them), note them in the state
        file: a run killed before their links land leaves the notes for the next run to resolve."""
        if not flow.find_by:
            return
        key = flow.key_field(self.config.options)
        keyless = [i.record.id for i in items if not (i.link and i.link.target_id)
                   and i.payload is not None and i.payload.get(key) in (None, "")]
        if keyless:
            self.state.add_intents(self.pair.name, flow.name, keyless, run.run_id)

    def recover_interrupted_creates(self, run: RunResult) -> None:
        """Resolve the creates an earlier run sent but died before linking: each record that landed in the
        target is found (by the flow's ``find_by`` fields) and linked, so it is never created a second time.
        A target that cannot be asked stops the run: creating blindly could make a duplicate."""
        intents = self.state.open_intents(self.pair.name)
        for name in dict.fromkeys(row["flow"] for row in intents):
            ids = [row["source_id"] for row in intents if row["flow"] == name]
            if not self._has_flow(name):
                self.state.clear_intents(self.pair.name, name, ids)
                continue
            flow = self.pair.flow(name)
            by_run = {row["source_id"]: row["run_id"] for row in intents if row["flow"] == name}
            try:
                links = self.state.links(self.pair.name, name, ids)
                open_ids = [i for i in ids if not (i in links and links[i].target_id)]
                records = self._current_sources(flow, open_ids)
                found = {i: self._created_by_us(flow, records[i]) for i in open_ids if i in records}
            except MLConnectorError as exc:
                raise _Stop(f"cannot check {self.system_name(flow.target)} for the {flow.target_entity} an "
                            f"interrupted run may have created ({exc}); run again once it answers",
                            exc.exit_code) from None
            with self.state.transaction():
                for source_id, (record, target) in ((i, (records[i], c)) for i, c in found.items() if c):
                    # No target version: the record may have changed since it landed, and some targets stamp
                    # only a date. Content alone then tells an echo of what we wrote from a later edit.
                    self.state.save_link(Link(self.pair.name, name, source_id, target.record.id, None,
                                              payload_hash(target.payload), None, tuple(sorted(target.payload))))
                    if flow.echo_of:
                        self._link_back(flow, record, WriteResult("create", target.record.id,
                                                                  target.record.modified))
                    self.state.add_audit({
                        "run_id": run.run_id, "pair": self.pair.name, "flow": name,
                        "source_system": self.system_name(flow.source), "source_entity": flow.source_entity,
                        "source_id": source_id, "target_system": self.system_name(flow.target),
                        "target_entity": flow.target_entity, "target_id": target.record.id, "action": "link",
                        "status": "ok", "note": f"created by interrupted run {by_run[source_id]}; found by "
                                                f"{', '.join(flow.find_by)} and linked, not created again"})
                    log.warning("%s/%s: %s %s was created by an interrupted run; linked to %s %s", self.pair.name,
                                name, flow.source_entity, source_id, flow.target_entity, target.record.id)
                self.state.clear_intents(self.pair.name, name, ids)

    def _current_sources(self, flow: Flow, ids: list[str]) -> dict[str, Record]:
        source = self.connectors[flow.source]
        many = getattr(source, "get_many", None)
        found: dict[str, Record] = {}
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start:start + self.batch_size]
            found.update(many(flow.source_entity, chunk) if callable(many) else {
                i: r for i in chunk if (r := source.get(flow.source_entity, i)) is not None})
        return found

    def _created_by_us(self, flow: Flow, record: Record) -> "_Found | None":
        """The target record this source record's interrupted create made, if it landed: one holding the
        ``find_by`` values it maps to and linked to nothing else."""
        find = getattr(self.connectors[flow.target], "find", None)
        try:
            payload = flow.map(record, self._context)
        except (RecordError, SkipRecord, KeyError, ValueError, TypeError):
            return None  # it cannot be written now either; the flow reports why
        first, *rest = flow.find_by
        if not callable(find) or payload.get(first) in (None, ""):
            return None
        for candidate in find(flow.target_entity, first, payload[first]):
            if any(comparable(candidate.get(f)) != comparable(payload.get(f)) for f in rest):
                continue
            if self.state.link_by_target(self.pair.name, flow.name, candidate.id):
                continue  # another source record's
            if flow.echo_of and self.state.link(self.pair.name, flow.echo_of, candidate.id):
                continue  # already paired with a record on this side
            return _Found(candidate, payload)
        return None

    # helpers ---------------------------------------------------------------------------------
    def _fetch(self, run: RunResult, flow: Flow, ids: list[str]) -> Iterator[Record]:
        """The current version of each record; one that no longer exists leaves the queue with a note."""
        source = self.connectors[flow.source]
        many = getattr(source, "get_many", None)
        for start in range(0, len(ids), self.batch_size):
            chunk = ids[start:start + self.batch_size]
            # One call for many ids where the system allows it; otherwise one call per record.
            found = many(flow.source_entity, chunk) if callable(many) else {
                i: r for i in chunk if (r := source.get(flow.source_entity, i)) is not None}
            yield from self._present_or_gone(run, flow, chunk, found)

    def _present_or_gone(self, run: RunResult, flow: Flow, ids: list[str],
                         found: Mapping[str, Record]) -> Iterator[Record]:
        for source_id in ids:
            record = found.get(source_id)
            if record is not None:
                yield record
                continue
            if not run.dry_run:
                with self.state.transaction():
                    self.state.clear_replay(self.pair.name, flow.name, source_id)
                    self.state.add_audit({
                        "run_id": run.run_id, "pair": self.pair.name, "flow": flow.name,
                        "source_system": self.system_name(flow.source), "source_entity": flow.source_entity,
                        "source_id": source_id, "target_system": self.system_name(flow.target),
                        "target_entity": flow.target_entity, "action": "skip", "status": "ok",
                        "note": "no longer exists in the source"})
            run.flows.setdefault(flow.name, FlowStats()).count("skip", "no longer exists in the source")

    def _read_start(self, flow: Flow, full: bool, since: datetime | None) -> datetime | None:
        if since is not None:
            return since
        if full:
            return None
        mark = self.state.watermark(self.pair.name, flow.name)
        return mark - timedelta(seconds=self.config.overlap_seconds) if mark else None

    def _flow_names(self, flows: Iterable[str] | None) -> list[str] | None:
        names = list(flows or self.config.flows or [])
        for name in names:
            if not self._has_flow(name):
                known = ", ".join(f.name for f in self.pair.flows)
                raise ConfigError(f"pair {self.pair.name} has no flow {name!r} (flows: {known})")
        return names or None

    def _has_flow(self, name: str) -> bool:
        return any(f.name == name for f in self.pair.flows)

    def _start(self, dry_run: bool) -> RunResult:
        self.planned = {}
        run = RunResult(run_id=new_run_id(), pair=self.pair.name, dry_run=dry_run)
        if not dry_run:
            self.state.start_run(run.run_id, self.pair.name, dry_run=dry_run)
        return run

    def _estimate_writes(self, run: RunResult, flow: Flow, items: list[_Item]) -> None:
        """A dry run: the calls writing these records would cost, as the target's connector counts them (one a
        batch where it cannot say), and those sending new records' keys back to their source."""
        payloads = [i.payload for i in items if i.payload is not None]
        ids = [i.link.target_id if i.link else None for i in items if i.payload is not None]
        key = flow.key_field(self.config.options)
        for role, entity, chosen, linked in [(flow.target, flow.target_entity, payloads, ids)] + self._send_back_costs(
                flow, payloads, key, items):
            cost = getattr(self.connectors[role], "write_calls", None)
            calls = int(cost(entity, chosen, key, linked)) if callable(cost) else 1
            name = self.system_name(role)
            run.estimated_calls[name] = run.estimated_calls.get(name, 0) + calls

    def _send_back_costs(self, flow: Flow, payloads: list[dict[str, Any]], key: str,
                         items: list[_Item]) -> list[tuple[str, str, list[dict[str, Any]], list[str | None]]]:
        """For _estimate_writes: records created without a key go back to their source with the one the target
        gives them (_send_keys_back), as updates of the source records."""
        if not (flow.find_by and flow.echo_of and self.pair.flow(flow.echo_of).send_back_created):
            return []
        new = [(p, i.record.id) for p, i in zip(payloads, [i for i in items if i.payload is not None])
               if p.get(key) in (None, "") and not (i.link and i.link.target_id)]
        if not new:
            return []
        opposite_key = self.pair.flow(flow.echo_of).key_field(self.config.options)
        return [(flow.source, flow.source_entity, [{opposite_key: "?"} for _ in new], [r for _, r in new])]

    def _report_total(self, flow: Flow) -> None:
        """The number of records the read under way gives, where the source's API told it (a progress bar's
        total); sources that can are asked to when the read starts (_run_flow)."""
        counted = getattr(self.connectors[flow.source], "counted", None)
        total = counted(flow.source_entity) if self.progress_total and callable(counted) else None
        if total is not None:
            self.progress_total(flow.name, total)

    def _stop_if_asked(self) -> None:
        """Between batches: a run told to stop (SIGTERM, Ctrl-C) reads and sends nothing more; what is in flight
        ends and is recorded on the way out (_run_flow)."""
        signum = self.stop_requested()
        if signum is not None:
            raise _Stop(f"interrupted by {interrupt.signal_name(signum)}", interrupt.exit_code(signum))

    def _finish(self, run: RunResult) -> RunResult:
        if run.dry_run:
            # The estimate is of every call the run would make: the reads this dry run made, and the writes.
            for stats in run.flows.values():
                for system, calls in stats.calls.items():
                    run.estimated_calls[system] = run.estimated_calls.get(system, 0) + calls
        signum = self.stop_requested()
        if signum is not None and run.stopped:
            # Told to stop: whatever else ended the run (a retry cut short on the way out), it was the signal.
            run.interrupted = interrupt.signal_name(signum)
            run.stopped = f"interrupted by {run.interrupted}"
            run.exit_code = interrupt.exit_code(signum)
        if run.failed and run.exit_code == EXIT_OK:
            run.exit_code = EXIT_RECORDS_FAILED
        if run.stopped and run.exit_code == EXIT_OK:
            run.exit_code = EXIT_RECORDS_FAILED
        if not run.dry_run:
            status = "ok" if run.exit_code == EXIT_OK else ("stopped" if run.stopped else "failed")
            status = "interrupted" if run.interrupted else status
            self.state.finish_run(run.run_id, status, run.exit_code, run.to_dict())
        return run


class _ClaimedKeys:
    """The natural keys of a flow run's records prepared for writing but not yet recorded in the state file (where
    the next batches find them), each with the source record holding it."""

    def __init__(self) -> None:
        self._holders: dict[str, str] = {}
        self._recorded: list[str] = []

    def holder(self, key: str) -> str | None:
        return self._holders.get(key)

    def claim(self, key: str, source_id: str) -> None:
        self._holders[key] = source_id

    def recorded(self, keys: Iterable[str | None]) -> None:
        """Keys whose records are being recorded (released once their transaction commits)."""
        self._recorded.extend(k for k in keys if k)

    def release_recorded(self) -> None:
        for key in self._recorded:
            self._holders.pop(key, None)
        self._recorded.clear()


class _Stop(Exception):
    """Internal: stop the run cleanly (budget reached, a system gone) after recording what was done."""

    def __init__(self, message: str, exit_code: int = EXIT_RECORDS_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _NotSent(Exception):
    """Internal: a batch's write was not sent because the run was told to stop."""


def _accepts_ids(connector: Connector) -> bool:
    try:
        return "ids" in inspect.signature(connector.write).parameters
    except (TypeError, ValueError):
        return False


class _Committer:
    """Records written batches in read order on a thread of its own, while the run prepares the next ones: a
    batch's bookkeeping (a transaction in the state file) then no longer holds up the writes. Read order keeps the
    watermark from passing a batch still in flight. The first failure to record a batch (its write failed) reaches
    the run at its next step; the batches already sent after it are still recorded, as far as they can be."""

    def __init__(self, commit: Callable[[list[_Item], Future[list[WriteResult]] | None], None],
                 together: Callable[[], AbstractContextManager[Any]]) -> None:
        self._commit = commit
        self._together = together  # the transaction a group of batches is recorded in (each in one of its own)
        self._entries: deque[tuple[list[_Item], Future[list[WriteResult]] | None]] = deque()
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="record", daemon=True)
        self._thread.start()

    def put(self, segment: list[_Item], future: Future[list[WriteResult]] | None, *, backlog: int) -> None:
        """Queue a batch to be recorded once its write is done (always: its write is out); waits while
        ``backlog`` batches are queued."""
        with self._cond:
            while len(self._entries) >= backlog and self._error is None:
                self._cond.wait()
            self._entries.append((segment, future))
            self._cond.notify_all()
            self._raise()

    def room(self, in_flight: int) -> None:
        """Returns once fewer than ``in_flight`` of the queued writes are unfinished: waiting for any write, not
        for the oldest, keeps the API busy when one call is slow."""
        while True:
            with self._cond:
                self._raise()
                unfinished = [future for _, future in self._entries if future is not None and not future.done()]
            if len(unfinished) < in_flight:
                return
            wait(unfinished, return_when=FIRST_COMPLETED)

    def drain(self) -> None:
        """Returns once every queued batch is recorded."""
        with self._cond:
            while self._entries and self._error is None:
                self._cond.wait()
            self._raise()

    def close(self) -> None:
        """Records what is still queued (writes already sent may have landed), then ends the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._entries and not self._closing:
                    self._cond.wait()
                if not self._entries:
                    return
                head = self._entries[0][1]
            if head is not None:
                wait([head])
            # Between groups this thread holds no batch: a bulk job's is large, and the next is being filled.
            head = None
            # The head and the finished batches right behind it are recorded in one transaction, waiting up to
            # RECORD_WAIT for the writes still out behind it: each commit writes every page it changed to the
            # state file's log, and a batch's links and audit rows touch a page of each index per record, so
            # fewer, larger commits write far less (and the next run re-reads what a crash left unrecorded).
            self._record_group(self._group(time.monotonic() + RECORD_WAIT))

    def _record_group(self, group: list[tuple[list[_Item], Future[list[WriteResult]] | None]]) -> None:
        with self._cond:
            settling = self._error is not None or self._closing
        try:
            with self._together():
                for segment, future in group:
                    self._record_one(segment, future, settling)
                    settling = settling or self._error is not None
        except BaseException as exc:  # noqa: BLE001 - the commit itself failed: handed to the run
            if self._error is None:
                self._error = exc
            elif not isinstance(exc, MLConnectorError):  # an expected error is told once, by the run
                log.error("recording a batch failed after the flow stopped: %s", exc)
        finally:
            with self._cond:
                for _ in group:
                    self._entries.popleft()
                self._cond.notify_all()

    def _group(self, deadline: float) -> list[tuple[list[_Item], Future[list[WriteResult]] | None]]:
        while True:
            with self._cond:
                done = list(islice(takewhile(lambda entry: entry[1] is None or entry[1].done(), self._entries),
                                   RECORD_TOGETHER))
                behind = next((future for _, future in islice(self._entries, len(done), None)
                               if future is not None), None)
                stop = self._closing or self._error is not None
            left = deadline - time.monotonic()
            if len(done) >= RECORD_TOGETHER or behind is None or stop or left <= 0:
                return done
            wait([behind], timeout=left)

    def _record_one(self, segment: list[_Item], future: Future[list[WriteResult]] | None, settling: bool) -> None:
        try:
            self._commit(segment, future)
        except MLConnectorError as exc:
            if not settling and self._error is None:
                self._error = exc
        except BaseException as exc:  # noqa: BLE001 - handed to the run, which raises it
            if self._error is None:
                self._error = exc
            else:
                log.error("recording a batch failed after the flow stopped: %s", exc)


class _ReadAhead:
    """The records of ``records``, pulled by a thread of its own up to ``limit`` records ahead of the consumer,
    in chunks of ``chunk``. An error of the source reaches the consumer where the records end; ``close`` stops
    the thread and closes the source's iterator (its open response)."""

    _END = object()

    def __init__(self, records: Iterable[Record], limit: int, chunk: int) -> None:
        self._chunk = max(1, chunk)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, limit // self._chunk))
        self._stop = threading.Event()
        self._source = iter(records)
        self._thread = threading.Thread(target=self._pull, name="read-ahead", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _pull(self) -> None:
        chunk: list[Record] = []
        try:
            for record in self._source:
                chunk.append(record)
                if len(chunk) >= self._chunk:
                    if not self._put(chunk):
                        return
                    chunk = []
            if chunk and not self._put(chunk):
                return
            self._put(self._END)
        except BaseException as exc:  # the records read before it first, then the error, raised there
            if not chunk or self._put(chunk):
                self._put(exc)
        finally:
            close = getattr(self._source, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001 - closing an abandoned read must not mask the run's outcome
                    pass

    def __iter__(self) -> Iterator[Record]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _batched(records: Iterable[Record], size: int) -> Iterator[list[_Item]]:
    iterator = iter(records)
    while batch := [_Item(r, None) for r in islice(iterator, size)]:
        yield batch


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


def _merge(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}


# Building a run from configuration ---------------------------------------------------------------
@dataclass
class Session:
    """A pair ready to run: its spec, configuration, connectors and the shared call counter."""

    pair: PairSpec
    config: PairConfig
    connectors: dict[str, Connector]
    counter: CallCounter

    def close(self) -> None:
        for connector in self.connectors.values():
            connector.close()


def open_pair(config: Config, pair_name: str, context: ConnectorContext) -> Session:
    """Resolve the pair's roles to configured systems and build their connectors."""
    spec = get_pair(pair_name)
    made: dict[str, Connector] = {}
    connectors: dict[str, Connector] = {}
    for role, name in resolve_roles(config, spec).items():
        if name not in made:
            made[name] = make_connector(config.system(name), context)
        connectors[role] = made[name]
    return Session(spec, config.pair(pair_name), connectors, context.counter)


def resolve_roles(config: Config, spec: PairSpec) -> dict[str, str]:
    """Role -> configured system name: as pairs.NAME.systems says, else the only system of a fitting kind."""
    pair_config = config.pair(spec.name)
    roles = {}
    for role, kinds in spec.roles.items():
        name = pair_config.systems.get(role) or _only_system_of(config, kinds, spec.name, role)
        system = config.system(name)
        if system.kind not in kinds:
            raise ConfigError(f"pairs.{spec.name}.systems.{role} = {name!r} is a {system.kind} system; "
                              f"the {role} of {spec.name} must be {' or '.join(kinds)}")
        roles[role] = name
    return roles


def _only_system_of(config: Config, kinds: tuple[str, ...], pair: str, role: str) -> str:
    matches = [s.name for s in config.systems.values() if s.kind in kinds]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(f"pair {pair} needs a {' or '.join(kinds)} system for its {role}: add a "
                          f"[systems.NAME] table with kind = \"{kinds[0]}\"")
    raise ConfigError(f"pair {pair}: several systems could be its {role} ({', '.join(matches)}); "
                      f"choose one with pairs.{pair}.systems.{role} = \"NAME\"")
