"""Scenario 4: cron fires again while a run is still going. The second run of the same pair exits 75 at once
and does nothing; different pairs run side by side on one state file without corrupting it."""

from __future__ import annotations

import sqlite3
import time

from tests.reliability.harness import check_pair, count, exit_code_ok, wait_until


def test_a_second_run_of_the_same_pair_exits_75_at_once_and_other_pairs_run_alongside(make_rig):
    rig = make_rig()
    # Every call slow enough that the first run is surely still going when the second starts (a process start
    # takes about a second); then faster, for the rest of the scenario.
    rig.set_faults(latency=0.5)
    first = rig.popen("sync", "nav-zoho")
    assert wait_until(lambda: rig.zoho("nav-zoho").calls["records.upsert"] >= 1, timeout=30)
    started = time.monotonic()
    second = rig.cli("sync", "nav-zoho")
    took = time.monotonic() - started
    rig.set_faults(latency=0.06)
    assert second.returncode == 75, second.stderr
    assert "another run of nav-zoho is in progress" in second.stderr and "Traceback" not in second.stderr
    assert took < 5, f"the second run took {took:.1f} s to give up"
    replay = rig.cli("replay", "--pair", "nav-zoho", "--all")  # replay takes the same lock (nothing queued: 0)
    assert replay.returncode in (0, 75), replay.stderr
    # Meanwhile the other pair runs, twice, on the same state file.
    for _ in range(2):
        other = rig.cli("sync", "bc-zoho")
        exit_code_ok(other.returncode, (0,), other.stderr)
    code, _, err = rig.finish(first)
    exit_code_ok(code, (0,), err)

    rig.quiet()
    again = rig.cli("sync", "nav-zoho")
    exit_code_ok(again.returncode, (0,), again.stderr)
    with rig.state() as state:
        runs = state.last_runs(limit=50)
    assert not [r for r in runs if r["status"] == "running"], runs
    with sqlite3.connect(rig.setup.state_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for pair in ("nav-zoho", "bc-zoho"):
        check_pair(rig, pair).assert_clean()
    count("overlapping_runs_refused")
