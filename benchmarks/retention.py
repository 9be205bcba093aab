"""A simulated year of daily runs against one state file: does retention keep it small?

    python -m benchmarks.retention            # 100,000 records, 1% changed a day, 365 days, 90 days kept
    python -m benchmarks.retention --quick    # 10,000 records

Time is simulated: each day's run records what a sync of that many changed records records (a link updated and an
audit row per record, in batches of 100, with the day's time on the audit rows), then prunes as `api.sync` does
after a run (`RUN_PRUNE_BATCHES` batches at most). No system is called: the connectors' work does not depend on
the state file's size. A no-change run's state work is measured as the reads a run's batches make (`batch_links`
for every record, 100 ids a call) and the pruning after it, in CPU seconds: "a no-change run's time" here is that
part of it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mlconnector.api import RUN_PRUNE_BATCHES
from mlconnector.state import BatchRecord, Link, State

PAIR, FLOW = "nav-zoho", "customers"
BATCH = 100
MEASURED = (1, 7, 30, 90, 91, 180, 270, 365)


def _link(source_id: str, stamp: datetime) -> Link:
    return Link(PAIR, FLOW, source_id, f"zcrm_{source_id}", stamp, f"h{random.getrandbits(64):x}", stamp,
                ("Account_Name", "Phone", "Billing_City"), target_key=f"c{source_id}",
                written=json.dumps({"Account_Name": f"Customer {source_id}", "Phone": "+44 20 7946 0000"}))


def _audit(source_id: str, stamp: datetime, run_id: str, action: str) -> dict:
    return {"run_id": run_id, "time": stamp.isoformat(timespec="microseconds"), "pair": PAIR, "flow": FLOW,
            "source_system": "nav", "source_entity": "customer", "source_id": source_id, "target_system": "zoho",
            "target_entity": "Accounts", "target_id": f"zcrm_{source_id}", "action": action, "status": "ok",
            "record_key": f"C{source_id}",
            "changes": json.dumps([{"field": "Phone", "old": "+44 20 7946 0000", "new": "+44 20 7946 0001"}])}


def _record(state: State, ids: list[str], stamp: datetime, run_id: str, action: str) -> None:
    for start in range(0, len(ids), BATCH):
        chunk = ids[start:start + BATCH]
        state.record_batch(PAIR, FLOW, BatchRecord(links=[_link(i, stamp) for i in chunk],
                                                   audits=[_audit(i, stamp, run_id, action) for i in chunk],
                                                   watermark=stamp))


def _no_change_run(state: State, ids: list[str], cutoff: datetime) -> float:
    """A no-change run's state work: its batches' reads of the links, then the pruning after it. CPU seconds, the
    fastest of three passes: the machine may be shared, and its neighbours' load says nothing of the file."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for start in range(0, len(ids), BATCH):
            state.batch_links(PAIR, FLOW, "accounts_to_customers", ids[start:start + BATCH])
        state.prune(cutoff, max_batches=RUN_PRUNE_BATCHES)
        best = min(best, time.process_time() - started)
    return best


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def simulate(records: int, days: int, changed: float, keep_days: int, folder: Path) -> list[dict]:
    random.seed(7)
    path = folder / "state.db"
    ids = [str(n) for n in range(1, records + 1)]
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = []
    with State(path) as state:
        _record(state, ids, start, "load", "create")  # the first load: every record created
        for day in range(1, days + 1):
            now = start + timedelta(days=day)
            run_id = f"{now:%Y%m%dT%H%M%SZ}-day{day}"
            state.start_run(run_id, PAIR)
            began = time.perf_counter()
            _record(state, random.sample(ids, int(records * changed)), now, run_id, "update")
            state.finish_run(run_id, "ok", 0, {})
            recorded = time.perf_counter() - began
            state.prune(now - timedelta(days=keep_days), max_batches=RUN_PRUNE_BATCHES)
            if day in MEASURED:
                state.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                audit = state.db.execute("SELECT count(*) FROM audit").fetchone()[0]
                rows.append({"day": day, "file_mb": round(_size(path) / 1e6, 2), "audit_rows": audit,
                             "run_record_seconds": round(recorded, 3),
                             "no_change_cpu_seconds": round(
                                 _no_change_run(state, ids, now - timedelta(days=keep_days)), 3)})
                print(f"day {day:3d}: state file {rows[-1]['file_mb']:7.2f} MB, {audit:,} audit rows, the day's "
                      f"changes recorded in {recorded:.2f} s, a no-change run's state work "
                      f"{rows[-1]['no_change_cpu_seconds']:.2f} s of CPU", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 records instead of 100,000")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--changed", type=float, default=0.01, help="fraction of the records changed a day")
    parser.add_argument("--keep-days", type=int, default=90, help="audit_retention_days")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    records = args.records or (10_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory(prefix="mlconnector-retention-") as folder:
        rows = simulate(records, args.days, args.changed, args.keep_days, Path(folder))
    month = next((r for r in rows if r["day"] == 30), rows[0])
    last = rows[-1]
    summary = {"records": records, "days": args.days, "changed_per_day": args.changed, "keep_days": args.keep_days,
               "cores": os.cpu_count(), "load_average": os.getloadavg(), "rows": rows,
               "size_ratio_last_to_day30": round(last["file_mb"] / month["file_mb"], 2),
               "no_change_ratio_last_to_day30": round(last["no_change_cpu_seconds"] /
                                                      max(month["no_change_cpu_seconds"], 1e-9), 2)}
    print(f"state file on day {last['day']}: {summary['size_ratio_last_to_day30']}x its size on day {month['day']}; "
          f"a no-change run's state work {summary['no_change_ratio_last_to_day30']}x")
    if not args.no_save:
        results = Path(__file__).parent / "results"
        results.mkdir(exist_ok=True)
        name = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-retention-{'quick' if args.quick else 'full'}.json"
        (results / name).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
