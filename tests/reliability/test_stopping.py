"""Stopping a run as service managers and operators do: SIGTERM (systemd stop, `timeout`), Ctrl-C (SIGINT), a
second Ctrl-C, kill -9. The run stops reading, lets the writes in flight end, records them, says so in one line and
exits 143 or 130; `status` never shows a dead run as running; the next run continues and nothing is lost or
doubled."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from tests.reliability.harness import Rig, check_pair, count, exit_code_ok, wait_until
from tests.reliability.test_fault_storms import _orphans

STOP_LINE = re.compile(r"^interrupted by (SIGTERM|SIGINT) after (\d+) records?; the next run continues$")


def _slow_run(make_rig) -> Rig:
    # Small batches and slow calls: many writes, each in flight for a while, so a signal lands mid-run.
    rig = make_rig(erps=("nav",), pair_settings={"batch_size": 2})
    rig.set_faults(latency=0.1)
    return rig


def _writing(rig: Rig, n: int = 3):
    org = rig.zoho("nav-zoho")
    return lambda: org.calls["records.upsert"] >= n


def _runs(rig: Rig) -> list[dict]:
    result = rig.cli("status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["last_runs"]


def _finish(rig: Rig) -> None:
    rig.quiet()
    again = rig.cli("sync", "nav-zoho")
    exit_code_ok(again.returncode, (0,), again.stdout + again.stderr)
    with rig.state() as state:
        assert state.replay_items() == [], "records left in the replay queue"
    check_pair(rig, "nav-zoho").assert_clean()


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_run_records_the_writes_in_flight_and_says_so_in_one_line(make_rig, signum, code):
    rig = _slow_run(make_rig)
    proc = rig.popen("sync", "nav-zoho")
    assert wait_until(_writing(rig), timeout=60, step=0.005)
    proc.send_signal(signum)
    sent = time.monotonic()
    returncode, out, err = rig.finish(proc, timeout=90)
    took = time.monotonic() - sent

    assert returncode == code, f"exit {returncode}: {err[-2000:]}"
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and STOP_LINE.match(lines[0]), err
    assert lines[0].startswith(f"interrupted by {signum.name} ")
    assert took < 10, f"{took:.1f} s from the signal to the exit"  # a call takes 0.1 s; the HTTP timeout is 60
    assert _orphans(rig, "nav-zoho") == [], "written but not recorded"
    # Every record the run wrote or settled is in the count the line gives, as the run's audit rows show it.
    [run] = [r for r in _runs(rig) if r["status"] != "ok"][:1]
    assert run["status"] == "interrupted" and run["finished"] and run["exit_code"] == code, run
    with rig.state() as state:
        audited = state.db.execute("SELECT count(*) FROM audit WHERE run_id = ?", [run["id"]]).fetchone()[0]
    assert int(STOP_LINE.match(lines[0]).group(2)) == audited > 0
    count("runs_interrupted")
    _finish(rig)


def test_a_second_ctrl_c_stops_at_once_and_status_shows_the_run_interrupted(make_rig):
    rig = _slow_run(make_rig)
    proc = rig.popen("sync", "nav-zoho")
    assert wait_until(_writing(rig), timeout=60, step=0.005)
    rig.set_faults(latency=3.0)  # the writes now sent stay in flight for seconds: the first Ctrl-C waits for them
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    returncode, _, err = rig.finish(proc, timeout=90)
    assert returncode == 130, err[-2000:]
    assert time.monotonic() - sent < 1.5, "the second Ctrl-C waited for the writes in flight"
    assert "Traceback" not in err and "stopped at once by a second SIGINT" in err, err
    [run] = _runs(rig)
    assert run["status"] == "interrupted", run
    _finish(rig)


def test_a_run_killed_with_9_shows_as_interrupted_once_its_lock_is_free(make_rig):
    rig = _slow_run(make_rig)
    proc = rig.popen("sync", "nav-zoho")
    assert wait_until(_writing(rig, 1), timeout=60, step=0.005)
    assert rig.kill(proc)
    rig.finish(proc)
    [run] = _runs(rig)
    assert run["status"] == "interrupted", run  # no process holds the pair's lock: it cannot be running
    _finish(rig)
    with rig.state() as state:  # the next run recorded it so
        status, finished = state.db.execute("SELECT status, finished FROM runs WHERE id = ?", [run["id"]]).fetchone()
    assert status == "interrupted" and finished


def test_a_target_written_one_call_per_record_stops_within_the_batch(make_rig):
    # Zuora takes one record a call: a batch of 100 accounts is 100 calls and more. The stop must not wait for the
    # rest of the batch; the records not sent are not recorded, and the next run sends them.
    rig = make_rig(pairs=("nav-zuora",))
    rig.set_faults(latency=0.05)
    proc = rig.popen("sync", "nav-zuora")
    assert wait_until(lambda: sum(rig.zuora.calls.values()) >= 10, timeout=60, step=0.005)
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    returncode, _, err = rig.finish(proc, timeout=90)
    assert returncode == 143, err[-2000:]
    assert time.monotonic() - sent < 3, "the stop waited for the rest of the batch"
    assert STOP_LINE.match(err.strip()), err
    rig.quiet()
    again = rig.cli("sync", "nav-zuora")
    exit_code_ok(again.returncode, (0,), again.stdout + again.stderr)
    check_pair(rig, "nav-zuora").assert_clean()
