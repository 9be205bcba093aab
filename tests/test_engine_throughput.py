"""Throughput promises found by the benchmarks (python -m benchmarks): a slow API is kept as busy as it allows,
and the state file's per-record bookkeeping stays cheap."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from tests.test_engine import make_engine, seed_customers


def test_as_many_write_batches_are_in_flight_as_the_target_api_allows(config_file, tmp_path, erp, crm):
    seed_customers(erp, 80)
    engine = make_engine(config_file, tmp_path)   # batch_size 10: eight write calls
    target = engine.connectors["crm"]
    target.http = SimpleNamespace(max_concurrency=8)   # e.g. a Zoho edition allowing 8 concurrent calls
    active, peak, lock = [0], [0], threading.Lock()
    write = target.write

    def slow_write(*args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.3)   # a 300 ms API: waiting on one batch at a time would take 2.4 s
        try:
            return write(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    target.write = slow_write

    result = engine.sync(["customers"])

    assert result.flows["customers"].created == 80
    assert peak[0] == 8


def count_peak_writes(target, delay: float = 0.05) -> list[int]:
    """Wraps the target's write: [writes in flight now, the most seen at once]. Each write takes ``delay``."""
    counts, lock = [0, 0], threading.Lock()
    write = target.write

    def counted(*args, **kwargs):
        with lock:
            counts[0] += 1
            counts[1] = max(counts[1], counts[0])
        time.sleep(delay)
        try:
            return write(*args, **kwargs)
        finally:
            with lock:
                counts[0] -= 1

    target.write = counted
    return counts


def test_a_target_that_limits_large_writes_further_is_asked_how_many_to_keep_in_flight(config_file, tmp_path,
                                                                                         erp, crm):
    # Zoho: 20 calls at once for an enterprise org, but only 10 inserts/updates/upserts of more than 10 records.
    seed_customers(erp, 80)
    engine = make_engine(config_file, tmp_path)   # batch_size 10
    target = engine.connectors["crm"]
    target.http = SimpleNamespace(max_concurrency=20)
    asked = []

    def write_concurrency(entity: str, batch_size: int) -> int:
        asked.append((entity, batch_size))
        return 3

    target.write_concurrency = write_concurrency
    peak = count_peak_writes(target)

    assert engine.sync(["customers"]).flows["customers"].created == 80
    assert asked == [("account", 10)]
    assert 1 < peak[1] <= 3


def test_an_explicit_engine_concurrency_still_wins(config_file, tmp_path, erp, crm):
    seed_customers(erp, 30)
    engine = make_engine(config_file, tmp_path)
    engine.concurrency = 1
    engine.connectors["crm"].http = SimpleNamespace(max_concurrency=8)
    peak = count_peak_writes(engine.connectors["crm"])

    assert engine.sync(["customers"]).flows["customers"].created == 30
    assert peak[1] == 1


def test_links_and_audit_rows_of_a_large_batch_land_with_their_values(config_file, tmp_path, erp, crm):
    seed_customers(erp, 250)
    engine = make_engine(config_file, tmp_path, batch_size=100)

    first = engine.sync(["customers"])
    changed = erp.all("customer")[7]["id"]
    erp.update("customer", changed, city="Bergen")
    second = engine.sync(["customers"])

    assert first.flows["customers"].created == 250 and second.flows["customers"].updated == 1
    assert engine.state.count_links("erp-crm", "customers") == 250
    [row] = [r for r in engine.state.audit_rows(run=second.run_id, limit=None) if r["action"] == "update"]
    assert row["source_id"] == changed and row["status"] == "ok" and row["time"]


def test_records_waiting_in_a_batch_keep_only_their_id_and_version(config_file, tmp_path, erp, crm):
    from mlconnector.sync.context import FlowRun
    from mlconnector.sync.decide import Decider
    from mlconnector.sync.pipeline import batched
    from mlconnector.sync.outcomes import FlowStats, RunResult

    seed_customers(erp, 12)
    engine = make_engine(config_file, tmp_path)
    flow = engine.pair.flow("customers")
    fr = FlowRun(RunResult("r", "erp-crm"), engine.pair, flow, engine.config, engine.connectors, engine.state,
                 engine.context, "poll", FlowStats())
    [batch] = list(batched(engine.connectors["erp"].changes("customer", None), 100))

    to_write = Decider(fr, {}, lambda flow, n: None).prepare(batch)

    assert len(to_write) == 12 and all(item.payload for item in to_write)
    assert all(item.record.id and item.record.modified and item.record.data == {} for item in batch)


def test_a_slow_write_does_not_hold_up_the_writes_after_it(config_file, tmp_path, erp, crm):
    """Batches are recorded in read order, but the next ones are written while an older one is still out."""
    seed_customers(erp, 80)
    engine = make_engine(config_file, tmp_path)   # batch_size 10: eight write calls
    target = engine.connectors["crm"]
    target.http = SimpleNamespace(max_concurrency=2)
    write, first, done_meanwhile, done = target.write, threading.Event(), [0], threading.Condition()

    def write_first_slowly(entity, payloads, *args, **kwargs):
        if payloads[0]["number"] == "C00001":
            first.set()
            # Out until four later writes have finished (10 s at most): an engine that waited for the oldest write
            # would let only one other through meanwhile.
            with done:
                done.wait_for(lambda: done_meanwhile[0] >= 4, timeout=10)
                meanwhile = done_meanwhile[0]
            result = write(entity, payloads, *args, **kwargs)
            done_meanwhile.append(meanwhile)
            return result
        assert first.wait(5)
        result = write(entity, payloads, *args, **kwargs)
        with done:
            done_meanwhile[0] += 1
            done.notify_all()
        return result

    target.write = write_first_slowly

    result = engine.sync(["customers"])

    assert result.flows["customers"].created == 80
    assert done_meanwhile[1] >= 4   # waiting for the oldest would have let one other write through
    assert engine.state.watermark("erp-crm", "customers") is not None


def test_a_failed_write_stops_the_flow_and_every_batch_already_sent_is_recorded(config_file, tmp_path, erp, crm):
    from mlconnector.errors import EXIT_UNREACHABLE, Unreachable

    seeded = seed_customers(erp, 80)
    engine = make_engine(config_file, tmp_path)
    target = engine.connectors["crm"]
    target.http = SimpleNamespace(max_concurrency=4)
    write = target.write

    def third_batch_fails(entity, payloads, *args, **kwargs):
        if payloads[0]["number"] == "C00021":
            time.sleep(0.1)
            raise Unreachable("crm", "connection reset")
        return write(entity, payloads, *args, **kwargs)

    target.write = third_batch_fails

    result = engine.sync(["customers"])

    assert result.exit_code == EXIT_UNREACHABLE
    linked = engine.state.links("erp-crm", "customers", [c["id"] for c in seeded])
    queued = {row["source_id"] for row in engine.state.replay_items(pair="erp-crm", flow="customers")}
    assert {c["id"] for c in seeded[20:30]} <= queued
    assert all(linked[c["id"]].target_id for c in seeded[:20])
    # Nothing is lost: every record written is linked, and none is both linked and queued.
    assert len(crm.all("account")) == len(linked) and not (set(linked) & queued)
    audited = {r["source_id"] for r in engine.state.audit_rows(run=result.run_id, limit=None)}
    assert set(linked) | queued <= audited


def _slow_first_write(target, first_number: str, seconds: float) -> None:
    write = target.write

    def write_first_slowly(entity, payloads, *args, **kwargs):
        if payloads[0]["number"] == first_number:
            time.sleep(seconds)
        return write(entity, payloads, *args, **kwargs)

    target.write = write_first_slowly


def _count_commits(state) -> list[int]:
    commits, execute = [0], state.db.execute

    def counting(sql, *args, **kwargs):
        if sql == "COMMIT":
            commits[0] += 1
        return execute(sql, *args, **kwargs)

    state.db.execute = counting
    return commits


def test_batches_finished_while_an_older_one_is_out_are_recorded_together(config_file, tmp_path, erp, crm):
    """Recording takes one commit of the state file for the batches that finished behind a slow one, not one each."""
    seeded = seed_customers(erp, 80)
    engine = make_engine(config_file, tmp_path)   # batch_size 10: eight write calls
    target = engine.connectors["crm"]
    target.http = SimpleNamespace(max_concurrency=8)
    _slow_first_write(target, "C00001", 0.5)
    commits = _count_commits(engine.state)

    result = engine.sync(["customers"])

    assert result.flows["customers"].created == 80 and len(crm.all("account")) == 80
    assert commits[0] <= 4   # eight batches, recorded in one or two transactions (plus the run's own rows)
    linked = engine.state.links("erp-crm", "customers", [c["id"] for c in seeded])
    assert len(linked) == 80 and all(link.target_id for link in linked.values())
    audited = [r for r in engine.state.audit_rows(run=result.run_id, limit=None) if r["action"] == "create"]
    assert len(audited) == 80


def test_a_batch_that_cannot_be_recorded_keeps_the_watermark_before_it_and_the_others_land(config_file, tmp_path,
                                                                                        erp, crm):
    from mlconnector.errors import EXIT_OK
    from mlconnector.state import parse_iso

    seeded = seed_customers(erp, 80)
    engine = make_engine(config_file, tmp_path)
    target = engine.connectors["crm"]
    target.http = SimpleNamespace(max_concurrency=8)
    _slow_first_write(target, "C00001", 0.5)   # so that the batches behind it are recorded together
    failing = {c["id"] for c in seeded[30:40]}
    save_links = engine.state.save_links

    def disk_full_for_one_batch(links, **when):
        if any(link.source_id in failing for link in links):
            raise OSError("database or disk is full")
        return save_links(links, **when)

    engine.state.save_links = disk_full_for_one_batch

    with pytest.raises(OSError, match="disk is full"):
        engine.sync(["customers"])

    linked = engine.state.links("erp-crm", "customers", [c["id"] for c in seeded])
    # The batches recorded with it in one transaction still landed; the failed one left nothing half-done.
    assert set(linked) == {c["id"] for c in seeded} - failing
    audited = {r["source_id"] for r in engine.state.audit_rows(pair="erp-crm", limit=None)}
    assert not (audited & failing) and len(audited) == 70
    # The watermark stays before the batch that was written but not recorded: the next run reads it again.
    mark = engine.state.watermark("erp-crm", "customers")
    assert mark is None or mark < min(parse_iso(c["modified"]) for c in seeded[30:40])

    engine.state.save_links = save_links
    again = engine.sync(["customers"])

    assert again.exit_code == EXIT_OK
    assert len(crm.all("account")) == 80   # upserted by number: no second record
    assert set(engine.state.links("erp-crm", "customers", [c["id"] for c in seeded])) == {c["id"] for c in seeded}


def test_each_systems_first_calls_are_made_at_once_before_the_run(config_file, tmp_path, erp, crm):
    """Tokens, the company, the org: every run asks them first; the systems are asked side by side."""
    seed_customers(erp, 3)
    engine = make_engine(config_file, tmp_path)
    both = threading.Barrier(2, timeout=5)   # broken, and the run fails, if one system waits for the other
    connected = []

    def connect(name):
        def step():
            both.wait()
            connected.append(name)
        return step

    engine.connectors["erp"].connect = connect("erp")
    engine.connectors["crm"].connect = connect("crm")

    result = engine.sync(["customers"])

    assert sorted(connected) == ["crm", "erp"]
    assert result.flows["customers"].created == 3


def test_a_system_that_cannot_be_reached_first_is_reported_by_the_run_as_before(config_file, tmp_path, erp, crm):
    from mlconnector.errors import EXIT_UNREACHABLE, Unreachable

    seed_customers(erp, 3)
    engine = make_engine(config_file, tmp_path)

    def down(*args, **kwargs):
        raise Unreachable("crm", "connection refused")

    engine.connectors["crm"].connect = down
    engine.connectors["erp"].connect = lambda: None
    engine.connectors["crm"].write = down

    result = engine.sync(["customers"])

    assert result.exit_code == EXIT_UNREACHABLE and "connection refused" in result.stopped


def test_a_group_whose_commit_fails_keeps_the_watermark_before_it(config_file, tmp_path, erp, crm):
    from mlconnector.state import parse_iso

    seeded = seed_customers(erp, 160)   # sixteen batches: more are recorded after the failed group
    engine = make_engine(config_file, tmp_path)
    target = engine.connectors["crm"]
    target.http = SimpleNamespace(max_concurrency=8)
    _slow_first_write(target, "C00001", 0.5)   # the batches behind the first finish meanwhile: one group
    conn, commits = engine.state.db.conn, [0]

    class FirstRecordingCommitFails:
        """The state file's connection, whose first commit on the recording thread fails as SQLite's does on an I/O
        error (the transaction is lost)."""

        def execute(self, sql, *args, **kwargs):
            if sql == "COMMIT" and threading.current_thread().name == "record":
                commits[0] += 1
                if commits[0] == 1:
                    conn.execute("ROLLBACK")
                    raise OSError("disk I/O error")
            return conn.execute(sql, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(conn, name)

    engine.state.db.conn = FirstRecordingCommitFails()

    with pytest.raises(OSError, match="disk I/O error"):
        engine.sync(["customers"])

    mark = engine.state.watermark("erp-crm", "customers")
    unrecorded = [c for c in seeded if c["id"] not in engine.state.links("erp-crm", "customers",
                                                                       [c["id"] for c in seeded])]
    assert unrecorded   # the failed commit left its group unrecorded ...
    assert mark is None or mark < min(parse_iso(c["modified"]) for c in unrecorded)   # ... and to be read again
    engine.state.db.conn = conn
    again = engine.sync(["customers"])
    assert len(crm.all("account")) == 160
    assert len(engine.state.links("erp-crm", "customers", [c["id"] for c in seeded])) == 160
    assert again.flows["customers"].failed == 0
