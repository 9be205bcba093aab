"""Kill -9 the sync process at random moments, many times, then let it finish: the target holds exactly
one record per source record, with the source's values, and the watermark is never ahead of what landed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from mlconnector.state import State

TRIALS = int(os.environ.get("MLCONNECTOR_CRASH_TRIALS", "25"))
ROOT = Path(__file__).parents[1]


def start_sync(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlconnector", "sync", "erp-crm", "--flow", "customers",
                             "--flow", "items"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_killed_runs_never_duplicate_or_lose_records(config_file, erp, crm, tmp_path):
    rng = random.Random(20261123)  # seeded: a failure can be replayed
    for i in range(1, 151):
        erp.put("customer", {"number": f"C{i:04d}", "name": f"Customer {i}", "city": "Oslo"})
    for i in range(1, 41):
        erp.put("item", {"number": f"I{i:03d}", "name": f"Item {i}", "price": i})
    crm.set_fault("slow", 0.05)  # each write call takes a little while, so kills land mid-batch
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLCONNECTOR_PLUGINS": "tests.fakes",
           "MLCONNECTOR_CONFIG": str(config_file)}

    killed = 0
    for trial in range(TRIALS):
        # The source keeps changing between crashes, so every run has writes to be killed in.
        for row in rng.sample(erp.all("customer"), 15):
            erp.update("customer", row["id"], city=f"City {trial}")
        erp.put("customer", {"number": f"N{trial:04d}", "name": f"New {trial}", "city": "Bodø"})
        proc = start_sync(env)
        time.sleep(rng.uniform(0.3, 1.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
        # After every crash the watermark is never ahead of what the target holds.
        with State(os.environ["MLCONNECTOR_STATE"]) as state:
            mark = state.watermark("erp-crm", "customers")
            linked = {link for link in state.db.execute("SELECT source_id FROM links WHERE flow='customers'")}
        if mark:
            landed = {a["number"] for a in crm.all("account")}
            behind = [c for c in erp.all("customer") if datetime.fromisoformat(c["modified"]) <= mark]
            assert all(c["number"] in landed for c in behind), f"trial {trial}: watermark ahead of the target"
        assert len(linked) <= len(erp.all("customer"))

    final = start_sync(env)
    assert final.wait(timeout=120) == 0, final.stderr.read().decode()
    assert killed >= TRIALS // 2, f"only {killed} of {TRIALS} runs were killed mid-way; the test proves little"

    accounts = crm.all("account")
    numbers = [a["number"] for a in accounts]
    assert len(numbers) == len(set(numbers)) == 150 + TRIALS, "duplicates or missing accounts"
    by_number = {a["number"]: a for a in accounts}
    for customer in erp.all("customer"):
        assert by_number[customer["number"]]["city"] == customer["city"]
    products = [p["code"] for p in crm.all("product")]
    assert len(products) == len(set(products)) == 40
