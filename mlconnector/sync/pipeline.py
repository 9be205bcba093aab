"""The threads of a flow run: a read-ahead thread pulling the source's records, a pool writing batches (as many at
once as the target allows), and a recording thread committing each written batch in read order. Batches are
prepared on the run's own thread in between."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager
from itertools import islice, takewhile
from typing import Any

from mlconnector.errors import EXIT_RECORDS_FAILED, EXIT_UNREACHABLE, BudgetExhausted, MLConnectorError, RemoteError, Unreachable
from mlconnector.http import CallCounter
from mlconnector.sync.bookkeeping import Recorder
from mlconnector.sync.context import FlowRun
from mlconnector.sync.decide import Decider
from mlconnector.sync.estimate import estimate_writes
from mlconnector.sync.items import Item
from mlconnector.sync.writer import write_batch
from mlconnector.systems.base import Record, WriteResult

log = logging.getLogger("mlconnector.sync")

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


class Stop(Exception):
    """The run stops cleanly (budget reached, a system gone) after recording what was done."""

    def __init__(self, message: str, exit_code: int = EXIT_RECORDS_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run_flow(fr: FlowRun, records: Iterable[Record], decider: Decider, *, batch_size: int, writers: int,
             initial: bool, counter: CallCounter, before_send: Callable[[list[Item]], None] | None,
             finished: Callable[[], None], stop_if_asked: Callable[[], None],
             stop_requested: Callable[[], int | None], between_batches: Callable[[], None]) -> None:
    """Decide, write and record every record of ``records`` for one flow run. ``before_send``, where given, sees
    each batch just before it is sent (intents of keyless creates); ``finished`` runs once every batch is recorded
    (a poll closes its window); ``stop_if_asked`` raises Stop once a signal asked the run to stop (checked between
    batches; ``stop_requested`` tells a write still waiting for a call); ``between_batches`` runs before each batch
    is read (a progress bar's total). A budget reached or a system gone ends it with Stop; what was sent is
    recorded first."""
    run, flow, stats = fr.run, fr.flow, fr.stats
    before = counter.snapshot()
    recorder = Recorder(fr)
    stop: Stop | None = None
    ahead: ReadAhead | None = None
    paused: Any = None  # a source told to read no page ahead for this flow

    @contextmanager
    def together() -> Iterator[None]:
        try:
            with fr.state.transaction():
                yield
        except BaseException:
            fr.hold = True  # a group written but not recorded: the next run must read it again
            raise
        fr.keys.release_recorded()  # now in the state file's links, where the next batches find them

    committer = Committer(recorder.commit, together=together)
    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix=f"write-{flow.name}") as pool:
        try:
            size, in_flight = batch_size, writers
            bulk = fr.target.initial_load_batch(flow.target_entity) if initial else None
            # (A dry run groups records the same way, so that its estimate counts bulk jobs, not batches.)
            if bulk is not None and bulk > size:
                # A first load the target takes in bulk jobs: few large writes, one at a time, and the next file is
                # filled only once the job before it is done and recorded, so that one file's payloads are held at
                # a time, not two (peak memory; the job and the next reads no longer overlap).
                size, in_flight = bulk, 0
                # For the same reason the source reads no page ahead (a connector that can, says so).
                if fr.source.capabilities.read_ahead and fr.source.pages_ahead:
                    fr.source.pages_ahead, paused = False, fr.source
            elif fr.mode == "poll":
                records = ahead = ReadAhead(records, READ_AHEAD, batch_size)
            # Batches are prepared while the writes before them are out, and up to WRITES_WAITING of them wait in
            # the pool's queue for a free call: a write that ends is followed by the next at once, not after this
            # thread has mapped another batch (the pool has as many threads as calls are allowed at once).
            for segment, to_write in segments(records, decider, batch_size, size, between_batches):
                stop_if_asked()  # this segment is not sent: the watermark stays before it
                if to_write and run.dry_run:
                    estimate_writes(fr, to_write)
                elif to_write:
                    fr.state.check_same_file()  # nothing more is sent once the state file is gone
                    if before_send is not None:
                        before_send(to_write)
                    if in_flight > 0:
                        committer.room(in_flight + WRITES_WAITING)
                future = pool.submit(write_batch, fr, to_write, stop_requested) \
                    if to_write and not run.dry_run else None
                committer.put(segment, future, backlog=BACKLOG_PER_WRITER * max(1, in_flight))
                if in_flight <= 0:  # one write at a time, recorded before the next is filled (bulk jobs)
                    committer.drain()
            committer.drain()
            if not run.dry_run and not fr.hold:
                finished()
        except BudgetExhausted as exc:
            stop = Stop(str(exc))
        except (Unreachable, RemoteError) as exc:
            stop = Stop(str(exc), EXIT_UNREACHABLE)
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
            stats.calls = _merge(stats.calls, counter.since(before))
    log.info("%s/%s: read %d, created %d, updated %d, unchanged %d, skipped %d, failed %d", fr.pair.name,
             flow.name, stats.read, stats.created, stats.updated, stats.unchanged, stats.skipped, stats.failed)
    if stop:
        log.warning("%s/%s: stopped: %s", fr.pair.name, flow.name, stop)
        run.exit_code = max(run.exit_code, stop.exit_code)
        raise stop


def segments(records: Iterable[Record], decider: Decider, batch_size: int, size: int,
             before_batch: Callable[[], None] = lambda: None) -> Iterator[tuple[list[Item], list[Item]]]:
    """Group records, in read order, so that each write call carries a full batch (``size``) even when most records
    are skipped (quota: the fewest calls). A long stretch without writes is committed on its own, so memory stays
    bounded and the watermark moves."""
    segment: list[Item] = []
    to_write: list[Item] = []
    for batch in batched(records, batch_size):
        before_batch()
        wanted = {id(item) for item in decider.prepare(batch)}
        for item in batch:
            segment.append(item)
            if id(item) in wanted:
                to_write.append(item)
                if len(to_write) == size:
                    yield segment, to_write
                    segment, to_write = [], []
        if len(segment) >= max(10 * batch_size, size):
            yield segment, to_write
            segment, to_write = [], []
    if segment:
        yield segment, to_write


def batched(records: Iterable[Record], size: int) -> Iterator[list[Item]]:
    iterator = iter(records)
    while batch := [Item(r) for r in islice(iterator, size)]:
        yield batch


def _merge(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}


class Committer:
    """Records written batches in read order on a thread of its own, while the run prepares the next ones: a
    batch's bookkeeping (a transaction in the state file) then no longer holds up the writes. Read order keeps the
    watermark from passing a batch still in flight. The first failure to record a batch (its write failed) reaches
    the run at its next step; the batches already sent after it are still recorded, as far as they can be."""

    def __init__(self, commit: Callable[[list[Item], Future[list[WriteResult]] | None], None],
                 together: Callable[[], AbstractContextManager[Any]]) -> None:
        self._commit = commit
        self._together = together  # the transaction a group of batches is recorded in (each in one of its own)
        self._entries: deque[tuple[list[Item], Future[list[WriteResult]] | None]] = deque()
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="record", daemon=True)
        self._thread.start()

    def put(self, segment: list[Item], future: Future[list[WriteResult]] | None, *, backlog: int) -> None:
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

    def _record_group(self, group: list[tuple[list[Item], Future[list[WriteResult]] | None]]) -> None:
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

    def _group(self, deadline: float) -> list[tuple[list[Item], Future[list[WriteResult]] | None]]:
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

    def _record_one(self, segment: list[Item], future: Future[list[WriteResult]] | None, settling: bool) -> None:
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


class ReadAhead:
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
