"""Kill -9 the sync process many times, each time once the target has seen a chosen number of this run's
writes, then let it finish: the target holds exactly one record per source record, with the source's values,
and the watermark is never ahead of what landed. With the state in the SQLite file and in PostgreSQL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from mlconnector.api import Runtime
from tests.helpers import kill_on_progress

TRIALS = int(os.environ.get("MLCONNECTOR_CRASH_TRIALS", "25"))
ROOT = Path(__file__).parents[1]
BATCH = 10      # the config's batch_size
CHANGED = 16    # customers each trial changes: every run writes at least these


def start_sync(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlconnector", "sync", "erp-crm", "--flow", "customers",
                             "--flow", "items"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.timeout(120 + 4 * TRIALS)
def test_killed_runs_never_duplicate_or_lose_records(config_file, erp, crm, tmp_path, state_store):
    rng = random.Random(20261123)  # seeded: a failure can be replayed
    for i in range(1, 151):
        erp.put("customer", {"number": f"C{i:04d}", "name": f"Customer {i}", "city": "Oslo"})
    for i in range(1, 41):
        erp.put("item", {"number": f"I{i:03d}", "name": f"Item {i}", "price": i})
    crm.set_fault("slow", 0.005)  # each record takes a little while to land, so a batch is in flight a while
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLCONNECTOR_PLUGINS": "tests.fakes",
           "MLCONNECTOR_CONFIG": str(config_file)}

    landed_at_kill: list[int] = []  # this run's records in the target when it died
    for trial in range(TRIALS):
        # The source keeps changing between crashes, so every run has writes to be killed in.
        for row in rng.sample(erp.all("customer"), CHANGED - 1):
            erp.update("customer", row["id"], city=f"City {trial}")
        erp.put("customer", {"number": f"N{trial:04d}", "name": f"New {trial}", "city": "Bodø"})
        # Killed once the target has seen the chosen number of this run's writes: anywhere from its first record
        # to its last, whatever the speed of the machine and the interpreter.
        before, kill_at = crm.landed(), rng.randint(1, CHANGED)
        proc = start_sync(env)
        kill_on_progress({"sync": proc}, {"sync": lambda: crm.landed() - before >= kill_at})
        code = proc.wait(timeout=60)
        assert code in (0, -signal.SIGKILL), proc.stderr.read().decode()
        if code == -signal.SIGKILL:
            landed_at_kill.append(crm.landed() - before)
        proc.stderr.close()
        # After every crash the watermark is never ahead of what the target holds.
        with Runtime().open_state() as state:  # the state the killed run used: the file, or MLCONNECTOR_STATE_URL
            mark = state.watermark("erp-crm", "customers")
            linked = set(state.linked_ids("erp-crm", "customers", "source"))
        if mark:
            landed_numbers = {a["number"] for a in crm.all("account")}
            behind = [c for c in erp.all("customer") if datetime.fromisoformat(c["modified"]) <= mark]
            assert all(c["number"] in landed_numbers for c in behind), f"trial {trial}: watermark ahead of the target"
        assert len(linked) <= len(erp.all("customer"))
    # Every run was cut short, most of them with a batch part landed.
    assert len(landed_at_kill) == TRIALS, f"{TRIALS - len(landed_at_kill)} of {TRIALS} runs ended before their kill"
    inside_a_batch = [n for n in landed_at_kill if n < CHANGED and n % BATCH]
    assert len(inside_a_batch) >= TRIALS // 2, f"kills landed after {landed_at_kill} records: few inside a batch"

    final = start_sync(env)
    assert final.wait(timeout=120) == 0, final.stderr.read().decode()

    accounts = crm.all("account")
    numbers = [a["number"] for a in accounts]
    assert len(numbers) == len(set(numbers)) == 150 + TRIALS, "duplicates or missing accounts"
    by_number = {a["number"]: a for a in accounts}
    for customer in erp.all("customer"):
        assert by_number[customer["number"]]["city"] == customer["city"]
    products = [p["code"] for p in crm.all("product")]
    assert len(products) == len(set(products)) == 40
