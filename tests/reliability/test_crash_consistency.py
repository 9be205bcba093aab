"""Scenario 1: `kill -9` the real `mlconnector sync` at random (seeded) points of its run, many times per pair,
while both pairs run side by side on one state (the SQLite file, and PostgreSQL: ``state_store``); then let them
finish. Zero duplicates, zero missing, every value as the pair maps it, every link audited, and after every crash no
watermark ahead of what landed."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.reliability.harness import SOAK, Rig, check_pair, count, exit_code_ok

TRIALS = int(os.environ.get("MLCONNECTOR_CRASH_TRIALS", "150" if SOAK else "20"))
SEED = int(os.environ.get("MLCONNECTOR_CRASH_SEED", "20261123"))
LATENCY = 0.03
# The fewest API calls a run of each pair makes here (NAV or BC, and its Zoho org; counted on Python 3.11 and
# 3.13: nav-zoho 15-16, bc-zoho 8): a run is killed once its systems have answered 1 to this many of its calls,
# from its first call to its last.
FEWEST_CALLS = {"nav-zoho": 15, "bc-zoho": 8}


def _change_sources(rig: Rig, rng: random.Random, trial: int) -> None:
    """What users do between cron runs: edit some ERP records, add one, and (nav-zoho) add a Zoho account."""
    dynamics = rig.sandboxes.dynamics
    for pair in ("nav-zoho", "bc-zoho"):
        company = rig.company(pair)
        customers = dynamics.records(company, "customers")
        for row in rng.sample(customers, min(6, len(customers))):
            dynamics.modify(company, "customers", row["number"], city=f"City {trial}-{rng.randrange(100)}")
        items = dynamics.records(company, "items")
        for row in rng.sample(items, min(2, len(items))):
            dynamics.modify(company, "items", row["number"], unitPrice=round(rng.uniform(5, 500), 2))
        dynamics.seed(company, "customers", [{"displayName": f"Crash {pair} {trial}", "city": "Bergen",
                                              "phoneNumber": f"+47 55 {trial:02d} 00 00"}])
    if trial % 5 == 1:
        rig.zoho("nav-zoho").seed("Accounts", [{"Account_Name": f"Born in Zoho {trial}", "Account_Type": "Customer",
                                                "Billing_City": "Trondheim"}])


@pytest.mark.timeout(120 + 8 * TRIALS)
def test_kill_9_at_random_moments_then_rerun_leaves_exactly_one_correct_record_each(make_rig, state_store):
    rig = make_rig(seed="medium" if SOAK else "small")
    # A network's round trip on every call (loopback answers in 1-2 ms), so a call is a while in flight.
    rig.set_faults(latency=LATENCY)
    rng = random.Random(SEED)  # seeded: MLCONNECTOR_CRASH_SEED replays a failure
    killed = 0
    started = time.monotonic()
    for trial in range(TRIALS):
        if trial:
            _change_sources(rig, rng, trial)
        ended = rig.sync_killed({pair: rng.randint(1, FEWEST_CALLS[pair]) for pair in ("nav-zoho", "bc-zoho")})
        for pair, (code, _, err) in ended.items():
            exit_code_ok(code, (0, 3, -signal.SIGKILL), err)
            killed += code == -signal.SIGKILL
        # After every crash: nothing below a watermark is missing from the target (read without the latency).
        rig.set_faults(latency=0.0)
        for pair in ("nav-zoho", "bc-zoho"):
            check_pair(rig, pair, flows=("customers", "items"), below_watermark=True).assert_clean()
        rig.set_faults(latency=LATENCY)
    count("crash_trials", TRIALS * 2)
    count("kills", killed)
    assert killed == 2 * TRIALS, f"{2 * TRIALS - killed} of {2 * TRIALS} runs ended before their kill point"

    # Re-run until done; nav-zoho needs a second run to send ERP numbers back to Zoho-born accounts.
    for pair in ("nav-zoho", "bc-zoho"):
        for _ in range(2):
            result = rig.cli("sync", pair)
            exit_code_ok(result.returncode, (0,), result.stderr)
    for pair in ("nav-zoho", "bc-zoho"):
        check_pair(rig, pair).assert_clean()

    # The Zoho-born accounts went to NAV exactly once each and learnt their NAV number.
    nav = rig.sandboxes.dynamics.records(rig.company("nav-zoho"), "customers")
    names = [c["displayName"] for c in nav]
    born = [a for a in rig.zoho("nav-zoho").records("Accounts") if a["Account_Name"].startswith("Born in Zoho")]
    assert born
    for account in born:
        assert names.count(account["Account_Name"]) == 1, f"{account['Account_Name']} in NAV {names.count(account['Account_Name'])} times"
        [customer] = [c for c in nav if c["displayName"] == account["Account_Name"]]
        assert account.get("Account_Number") == customer["number"]
    count("records_checked", len(born))
    print(f"crash: {TRIALS} trials per pair, {killed} kills, {time.monotonic() - started:.0f} s")
