"""Benchmark of `mlconnector reconcile`: ``python -m benchmarks.reconcile [--quick] [--customers N] [--no-save]``.

bc-zoho's data set (100,000 customers and 10,000 items; ``--quick``: 5,000 and 500) is loaded by a first sync as
in ``python -m benchmarks``; then 1% of the customers drift apart as people make them (``plant_drift``: Accounts
edited and deleted in Zoho, customers deleted in BC, customers added in BC with an Account entered by hand in Zoho,
Accounts of Zoho's own). One `reconcile bc-zoho --flow customers --flow items` then runs in a process of its own.

Targets: every planted difference named, with its kind and key, and nothing else; within 60 s; within the call
budget: one COQL read per 2,000 Zoho records and one read per ERP page (10,000 rows), plus the token, the org
and the BC company. Invoices are left out: Zoho returns an invoice's line items only on a read of that invoice, so
a reconcile of invoices reads each one (one call per invoice, not within this budget).

Results: ``benchmarks/results/<time>-reconcile-<mode>.json`` and ``benchmarks/results/latest-reconcile.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.harness import ERP_PAGE_SIZE, _ok, _tool, compile_package, delta, machine, run_tool, save_report
from benchmarks.sandboxes import ERP_OF, SandboxProcess, Size

PAIR = "bc-zoho"
FLOWS = ["customers", "items"]
DRIFT_SHARE = 0.01
SECONDS_TARGET = 60.0
COQL_ROWS = 2_000
# Calls besides the reads: Zoho's token and org; BC's token and company look-up.
FIXED_CALLS = {"zoho": 3, "erp": 3}


def run_reconcile(config: Path, work: Path) -> dict[str, Any]:
    out = work / f"reconcile-{time.monotonic_ns()}.json"
    started = time.perf_counter()
    _tool(["--reconcile", str(out), str(config), PAIR, *FLOWS], f"reconcile {PAIR}", out)
    data = json.loads(out.read_text(encoding="utf-8"))
    data["process_wall_seconds"] = time.perf_counter() - started
    return data


def found_by_kind(report: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for flow in report["flows"].values():
        for record in flow["records"]:
            found.setdefault(record["kind"], []).append(record["key"])
    return {kind: sorted(keys) for kind, keys in found.items()}


def measure(size: Size, work: Path, say: Any) -> dict[str, Any]:
    say(f"{PAIR}: seeding {size.customers} customers, {size.items} items")
    sp = SandboxProcess(PAIR, work, size, settings={ERP_OF[PAIR]: {"page_size": ERP_PAGE_SIZE}})
    try:
        say(f"{PAIR}: first sync")
        load = run_tool(sp.config, PAIR, FLOWS, work)
        drift = max(1, round(size.customers * DRIFT_SHARE))
        planted = {kind: sorted(keys) for kind, keys in sp.call("plant_drift", drift).items()}
        say(f"{PAIR}: {sum(map(len, planted.values()))} differences planted; reconcile")
        before = sp.call("counters")
        run = run_reconcile(sp.config, work)
        calls = delta(before, sp.call("counters"))
    finally:
        sp.stop()
    report = run["report"]
    found = found_by_kind(report)
    accounts = size.customers - len(planted["missing"]) + len(planted["unlinked"]) + len(planted["orphan"])
    zoho_budget = math.ceil(accounts / COQL_ROWS) + math.ceil(size.items / COQL_ROWS) + FIXED_CALLS["zoho"]
    customers = size.customers - len(planted["gone"]) + len(planted["unlinked"])
    erp_budget = math.ceil(customers / ERP_PAGE_SIZE) + math.ceil(size.items / ERP_PAGE_SIZE) + FIXED_CALLS["erp"]
    figures = {
        "load_exit_code": load["result"]["exit_code"], "load_wall_seconds": round(load["wall_seconds"], 2),
        "planted": {k: len(v) for k, v in planted.items()}, "found": {k: len(v) for k, v in found.items()},
        "missed": {k: sorted(set(v) - set(found.get(k, [])))[:20] for k, v in planted.items()
                   if set(v) - set(found.get(k, []))},
        "extra": {k: sorted(set(v) - set(planted.get(k, [])))[:20] for k, v in found.items()
                  if set(v) - set(planted.get(k, []))},
        "wall_seconds": round(run["wall_seconds"], 2), "process_wall_seconds": round(run["process_wall_seconds"], 2),
        "tool_cpu_seconds": round(run["cpu_seconds"], 2), "tool_peak_rss_mb": round(run["peak_rss_mb"], 1),
        "zoho_calls": calls["zoho_calls"], "zoho_credits": calls["zoho_credits"], "zoho_calls_budget": zoho_budget,
        "erp_calls": calls["erp_calls"], "erp_calls_budget": erp_budget, "erp_writes": calls["erp_writes"],
        "zoho_write_calls": calls["zoho_write_calls"], "reported_calls": report["calls"],
        "reported_credits": report["credits"],
    }
    figures["targets"] = {
        "every planted difference found, nothing else": found == planted,
        f"reconcile < {SECONDS_TARGET:.0f} s": run["wall_seconds"] < SECONDS_TARGET,
        "zoho calls within budget": calls["zoho_calls"] <= zoho_budget,
        "erp calls within budget": calls["erp_calls"] <= erp_budget,
        "nothing written": calls["zoho_write_calls"] == 0 and calls["erp_writes"] == 0,
    }
    return figures


def render(report: dict[str, Any]) -> str:
    figures = report["result"]
    lines = [f"# reconcile {PAIR}: {report['size']['customers']} customers, {report['size']['items']} items, "
             f"{sum(figures['planted'].values())} differences planted ({report['timestamp']}, {report['mode']})", "",
             "| figure | value | target | |", "|---|---|---|---|"]
    targets = figures["targets"]
    lines.append(f"| found (by kind) | {figures['found']} | = planted {figures['planted']} | "
                 f"{_ok(targets['every planted difference found, nothing else'])} |")
    lines.append(f"| wall | {figures['wall_seconds']} s | < {SECONDS_TARGET:.0f} s | "
                 f"{_ok(targets[f'reconcile < {SECONDS_TARGET:.0f} s'])} |")
    lines.append(f"| Zoho calls (credits) | {figures['zoho_calls']} ({figures['zoho_credits']}) | <= "
                 f"{figures['zoho_calls_budget']} | {_ok(targets['zoho calls within budget'])} |")
    lines.append(f"| BC calls | {figures['erp_calls']} | <= {figures['erp_calls_budget']} | "
                 f"{_ok(targets['erp calls within budget'])} |")
    lines.append(f"| writes | {figures['zoho_write_calls'] + figures['erp_writes']} | 0 | "
                 f"{_ok(targets['nothing written'])} |")
    lines.append(f"| tool peak RSS | {figures['tool_peak_rss_mb']} MB | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reconcile", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 customers and 500 items")
    parser.add_argument("--customers", type=int, help="customers in the data set (items: a tenth)")
    parser.add_argument("--no-save", action="store_true", help="print the table; keep no result file")
    args = parser.parse_args(argv)
    customers = args.customers or (5_000 if args.quick else 100_000)
    if customers < 100:
        parser.error("--customers: use at least 100 (1% of them drift)")
    size = Size(customers, max(10, customers // 10), 0)
    mode = "quick" if args.quick and not args.customers else "full" if customers == 100_000 else f"{customers}"
    compile_package()
    report: dict[str, Any] = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"), "mode": mode,
                              "size": {"customers": size.customers, "items": size.items}, **machine()}
    with tempfile.TemporaryDirectory(prefix="mlconnector-bench-") as tmp:
        report["result"] = measure(size, Path(tmp), lambda line: print(line, file=sys.stderr))
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    table = render(report)
    print(table)
    if not args.no_save:
        save_report(report, table, Path(__file__).resolve().parent / "results", f"reconcile-{mode}",
                    "latest-reconcile.md")
    return 0 if all(report["result"]["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
