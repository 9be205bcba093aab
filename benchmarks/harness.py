"""The scenarios, their targets, and the results: JSON per run in benchmarks/results/ (kept, so a regression
shows) plus a short table printed and written to benchmarks/results/latest.md."""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.sandboxes import ERP_OF, OVERLAP_SECONDS, SandboxProcess, Size, median_p95

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("initial", "latency", "no_changes", "one_percent", "push")
PAIRS = ("bc-zoho", "nav-zoho")
ERP_PAGE_SIZE = 10_000     # rows per read; both servers allow up to 20,000 (see the README's Performance section)
# The sandboxes are enterprise orgs (20 calls at once), but inserts, updates and upserts of more than 10 records
# (and COQL) fall under Zoho's sub-concurrency limit, 10 in every edition (API limits page).
ZOHO_UPSERT_CONCURRENCY = 10
ZOHO_BATCH = 100
BULK_THRESHOLD = 5_000
BULK_FILE = 25_000
LATENCY = 0.150


@dataclass(frozen=True)
class Plan:
    mode: str
    size: Size
    latency_customers: int
    changed_share: float
    pushes: int
    # Steady no-change runs made (each a process of its own); the figure is their median: one run's time moves by
    # half with what else the shared machine does.
    no_change_runs: int = 5


FULL = Plan("full", Size(100_000, 10_000, 20_000), 50_000, 0.01, 20)
QUICK = Plan("quick", Size(5_000, 500, 1_000), 5_000, 0.01, 8)


def tiny(customers: int = 300) -> Plan:
    return Plan("tiny", Size(customers, max(6, customers // 10), max(3, customers // 5)), customers, 0.05, 2,
                no_change_runs=1)


# With --state-url: the PostgreSQL database the tool keeps its state in, a schema per pair (set by run_pair).
_state_url: str | None = None


def _tool_env() -> dict[str, str]:
    """The tool's environment: ours without MLCONNECTOR_ settings (the sandbox config says where secrets are), and
    the state database where one is benchmarked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCONNECTOR_")}
    if _state_url:
        env["MLCONNECTOR_STATE_URL"] = _state_url
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def compile_package() -> None:
    """Byte-compile the package once, as installing it does (pip compiles on install): run from a checkout
    with PYTHONDONTWRITEBYTECODE set, every tool process compiled each module it imported, part of it inside
    the timed sync (modules a run imports when it needs them)."""
    import compileall

    compileall.compile_dir(str(ROOT / "mlconnector"), quiet=1)


def _tool(args: list[str], what: str, out: Path | None = None) -> None:
    """``python -m benchmarks.tool ARGS`` in a process of its own, with the tool's environment; a failure (or no
    ``out`` written) raises, naming ``what``."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.tool", *args], cwd=ROOT, env=_tool_env(),
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0 or (out is not None and not out.exists()):
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def run_tool(config: Path, pair: str, flows: list[str], out_dir: Path) -> dict[str, Any]:
    """One `sync` in a process of its own; its own peak RSS and CPU come back with the result."""
    out = out_dir / f"run-{time.monotonic_ns()}.json"
    started = time.perf_counter()
    _tool([str(out), str(config), pair, *flows], f"sync {pair}", out)
    process_wall = time.perf_counter() - started
    data = json.loads(out.read_text(encoding="utf-8"))
    data["process_wall_seconds"] = process_wall
    return data


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    ops = after["zoho"]["by_operation"]
    old = before["zoho"]["by_operation"]
    zoho_ops = {k: ops.get(k, 0) - old.get(k, 0) for k in ops if ops.get(k, 0) - old.get(k, 0)}
    return {
        "erp_calls": after["erp"]["calls"] - before["erp"]["calls"],
        "erp_reads": after["erp"]["reads"] - before["erp"]["reads"],
        "erp_writes": after["erp"]["writes"] - before["erp"]["writes"],
        "erp_token_mints": after["erp"]["token_mints"] - before["erp"]["token_mints"],
        "zoho_calls": after["zoho"]["calls"] - before["zoho"]["calls"],
        "zoho_credits": after["zoho"]["credits"] - before["zoho"]["credits"],
        "zoho_token_mints": after["zoho"]["token_mints"] - before["zoho"]["token_mints"],
        "zoho_by_operation": zoho_ops,
        "zoho_write_calls": sum(zoho_ops.get(k, 0) for k in ("records.upsert", "records.update", "records.insert",
                                                             "bulk_write.create")),
    }


def minimum_write_calls(records: int, flat: bool, initial: bool) -> int:
    """The fewest Zoho writes that can carry ``records``: Bulk Write files of 25,000 above the threshold on a
    first load of flat records, else upserts of 100."""
    if records <= 0:
        return 0
    if initial and flat and records > BULK_THRESHOLD:
        return math.ceil(records / BULK_FILE)
    return math.ceil(records / ZOHO_BATCH)


def _flows(result: dict[str, Any]) -> dict[str, Any]:
    return {name: {k: s[k] for k in ("read", "created", "updated", "unchanged", "skipped", "failed", "calls", "note")}
            for name, s in result["result"]["flows"].items()}


def _tool_figures(run: dict[str, Any], records: int) -> dict[str, Any]:
    return {"wall_seconds": round(run["wall_seconds"], 2), "process_wall_seconds": round(run["process_wall_seconds"], 2),
            "records": records, "records_per_second": round(records / run["wall_seconds"], 1) if records else None,
            "tool_cpu_seconds": round(run["cpu_seconds"], 2),
            "tool_cpu_us_per_record": round(1e6 * run["cpu_seconds"] / records, 1) if records else None,
            "tool_peak_rss_mb": round(run["peak_rss_mb"], 1), "tool_rss_after_imports_mb": round(run["rss_after_imports_mb"], 1),
            "exit_code": run["result"]["exit_code"], "failed": run["result"]["failed"]}


def scenario_initial(sp: SandboxProcess, pair: str, plan: Plan, work: Path) -> dict[str, Any]:
    before = sp.call("counters")
    run = run_tool(sp.config, pair, [], work)
    calls = delta(before, sp.call("counters"))
    flows = _flows(run)
    written = {name: f["created"] + f["updated"] for name, f in flows.items()}
    minimum = (minimum_write_calls(written.get("customers", 0), True, True)
               + minimum_write_calls(written.get("items", 0), True, True)
               + minimum_write_calls(written.get("invoices", 0), False, True))
    records = sum(written.values())
    figures = {**_tool_figures(run, records), **calls, "zoho_write_calls_minimum": minimum,
               "zoho_write_calls_ratio": round(calls["zoho_write_calls"] / minimum, 3) if minimum else None,
               "flows": flows}
    figures["targets"] = {
        "zoho_write_calls_ratio <= 1.05": figures["zoho_write_calls_ratio"] is not None
        and figures["zoho_write_calls_ratio"] <= 1.05,
        "tool_peak_rss_mb < 200": figures["tool_peak_rss_mb"] < 200,
        "all records written": run["result"]["failed"] == 0 and records >= plan.size.customers + plan.size.items
        + plan.size.invoices,
    }
    return figures


def scenario_no_changes(sp: SandboxProcess, pair: str, plan: Plan, work: Path) -> dict[str, Any]:
    """The first run after the load reads back, once, what the load wrote where a flow goes the other way
    (nav-zoho: every Account, to tell our writes from edits); the runs after that are the steady state judged:
    ``plan.no_change_runs`` of them, each a cron run's process, their median time the figure."""
    time.sleep(OVERLAP_SECONDS + 1)  # past the read overlap, as the next cron run would be
    before = sp.call("counters")
    first = run_tool(sp.config, pair, [], work)
    after_load = {**_tool_figures(first, 0), **delta(before, sp.call("counters")),
                  "calls_per_flow": {name: sum(f["calls"].values()) for name, f in _flows(first).items()}}
    runs, walls, process_walls = [], [], []
    for _ in range(plan.no_change_runs):
        time.sleep(OVERLAP_SECONDS + 1)
        before = sp.call("counters")
        run = run_tool(sp.config, pair, [], work)
        runs.append((run, delta(before, sp.call("counters"))))
        walls.append(run["wall_seconds"])
        process_walls.append(run["process_wall_seconds"])
    run, calls = runs[len(runs) // 2]  # the calls and flows of one run (every such run makes the same)
    run = {**run, "wall_seconds": statistics.median(walls), "process_wall_seconds": statistics.median(process_walls)}
    flows = _flows(run)
    per_flow = {name: sum(f["calls"].values()) for name, f in flows.items()}
    figures = {**_tool_figures(run, 0), **calls, "calls_per_flow": per_flow, "flows": flows,
               "first_run_after_load": after_load, "runs": len(walls),
               "wall_seconds_each": [round(w, 3) for w in walls],
               "process_wall_seconds_each": [round(w, 3) for w in process_walls]}
    figures["targets"] = {
        # Besides Zoho's list of deleted records: one call per module a flow reads from Zoho (deletions).
        "<= 1 read call per flow (+ deleted records)": max(per_flow.values(), default=0) <= 2 and sum(
            per_flow.values()) - calls["zoho_by_operation"].get("records.deleted.list", 0) <= len(per_flow),
        "0 writes": all(c["zoho_write_calls"] == 0 and c["erp_writes"] == 0 for _, c in runs),
        "0 token mints": all(c["zoho_token_mints"] == 0 and c["erp_token_mints"] == 0 for _, c in runs),
        "sync < 2 s": run["wall_seconds"] < 2.0,
    }
    return figures


def scenario_one_percent(sp: SandboxProcess, pair: str, plan: Plan, work: Path) -> dict[str, Any]:
    """1% of customers and items changed in the ERP. Calls are judged against a run without changes just before:
    what the changes add must be the writes they need (Zoho upserts of 100) plus at most one read per flow."""
    before = sp.call("counters")
    run_tool(sp.config, pair, [], work)
    quiet = delta(before, sp.call("counters"))
    changed = {entity: sp.call("modify", entity, max(1, round(n * plan.changed_share)))
               for entity, n in (("customers", plan.size.customers), ("items", plan.size.items))}
    before = sp.call("counters")
    run = run_tool(sp.config, pair, [], work)
    calls = delta(before, sp.call("counters"))
    flows = _flows(run)
    written = sum(f["updated"] + f["created"] for f in flows.values())
    minimum = sum(minimum_write_calls(n, True, False) for n in changed.values())
    total = sum(changed.values())
    added = calls["erp_calls"] + calls["zoho_calls"] - quiet["erp_calls"] - quiet["zoho_calls"]
    allowed = math.ceil(1.05 * minimum) + len(changed)
    figures = {**_tool_figures(run, total), **calls, "changed": changed, "written": written,
               "zoho_write_calls_minimum": minimum, "calls_without_changes": quiet["erp_calls"] + quiet["zoho_calls"],
               "calls_added_by_changes": added, "calls_added_allowed": allowed, "flows": flows}
    figures["targets"] = {
        "every change written": written >= total and run["result"]["failed"] == 0,
        "zoho_write_calls <= 1.05 x minimum": calls["zoho_write_calls"] <= math.ceil(1.05 * minimum),
        "calls added <= writes needed + 1 read per changed flow": added <= allowed,
    }
    return figures


def scenario_latency(pair: str, plan: Plan, work: Path) -> dict[str, Any]:
    erp = ERP_OF[pair]
    directory = work / "latency"
    directory.mkdir()
    # The ERP and Zoho emulators in processes of their own, as the real services are: in one process a page
    # build held the interpreter lock Zoho's answers waited for.
    sp = SandboxProcess(pair, directory, Size(plan.latency_customers, 0, 0), faults=f"latency={int(LATENCY * 1000)}ms",
                        settings={erp: {"page_size": ERP_PAGE_SIZE}, "zoho": {"bulk_threshold": 0}}, zoho_apart=True)
    try:
        warm_erp(sp.config, pair)
        before = sp.call("counters")
        sandbox_cpu = sp.cpu_seconds()
        run = run_tool(sp.config, pair, ["customers"], work)
        sandbox_cpu = sp.cpu_seconds() - sandbox_cpu
        sp_counters = sp.call("counters")
        calls = delta(before, sp_counters)
        allowed = sandbox_limit(sp.config, pair, math.ceil(plan.latency_customers / ZOHO_BATCH), work)
    finally:
        sp.stop()
    records = run["result"]["flows"]["customers"]["created"]
    write_ceiling = ZOHO_UPSERT_CONCURRENCY * ZOHO_BATCH / LATENCY
    read_ceiling = ERP_PAGE_SIZE / LATENCY
    ceiling = min(write_ceiling, read_ceiling)
    after = sp_counters
    figures = {**_tool_figures(run, records), **calls, "added_latency_seconds": LATENCY,
               # On a machine of few cores the sandboxes' own work competes with the tool's.
               "sandbox_cpu_seconds": round(sandbox_cpu, 3),
               "sandbox_cpu_us_per_record": round(sandbox_cpu / max(1, records) * 1e6, 1),
               "zoho_peak_heavy_in_flight": after["zoho"].get("peak_heavy_in_flight"),
               "zoho_concurrency_refused": after["zoho"].get("concurrency_refused"),
               "ceiling_records_per_second": round(ceiling, 1),
               "ceiling": f"{ZOHO_UPSERT_CONCURRENCY} concurrent Zoho upserts x {ZOHO_BATCH} records / "
                          f"{LATENCY:g} s",
               "fraction_of_ceiling": round(records / run["wall_seconds"] / ceiling, 3),
               # The same upserts with nothing else to do, on the same sandboxes and machine: how near the ceiling
               # the emulators themselves let a client come here, and how much of that the tool reaches.
               "sandbox_limit": allowed,
               "fraction_of_sandbox_limit": round(records / run["wall_seconds"] / allowed["records_per_second"], 3)}
    figures["targets"] = {"fraction_of_ceiling >= 0.8": figures["fraction_of_ceiling"] >= 0.8}
    return figures


def warm_erp(config: Path, pair: str) -> None:
    """A first page of the ERP's customers read before the measured run, in a process of its own that keeps no
    token and no state: the ERP emulator sorts a table on the first read of it (about 0.3 s for 50,000 rows on
    this machine, in a 10 s run), a cost of the emulator's, where the real server reads its SQL index."""
    _tool(["--warm", str(config), pair], f"warming the {pair} ERP emulator")


def sandbox_limit(config: Path, pair: str, calls: int, work: Path) -> dict[str, Any]:
    """``calls`` upserts of 100 new Accounts, ZOHO_UPSERT_CONCURRENCY at once, sent with the tool's own Zoho
    connector and nothing else (no ERP reads, no mapping, no state file), in a process of its own as the tool
    runs: what the sandboxes (their latency and their own work) allow a client on this machine, for scenario 2's
    figure to be read against."""
    out = work / f"limit-{time.monotonic_ns()}.json"
    _tool(["--limit", str(out), str(config), pair, str(calls), str(ZOHO_UPSERT_CONCURRENCY), str(ZOHO_BATCH)],
          f"upserts alone for {pair}", out)
    figures = json.loads(out.read_text(encoding="utf-8"))
    rate = calls * ZOHO_BATCH / figures["wall_seconds"]
    durations = figures.pop("durations")
    return {"calls": calls, "wall_seconds": round(figures["wall_seconds"], 2), "records_per_second": round(rate, 1),
            "fraction_of_ceiling": round(rate / (ZOHO_UPSERT_CONCURRENCY * ZOHO_BATCH / LATENCY), 3),
            "median_call_seconds": round(median_p95(durations)[0], 3)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scenario_push(sp: SandboxProcess, pair: str, plan: Plan, work: Path) -> dict[str, Any]:
    erp = ERP_OF[pair]
    port = free_port()
    pushing = erp if erp == "bc" else "zoho"
    text = sp.config.read_text(encoding="utf-8").replace(
        f"[systems.{pushing}]\n", f'[systems.{pushing}]\nnotify_url = "http://127.0.0.1:{port}/hooks/{pushing}"\n', 1)
    push_config = sp.config.with_name("push.toml")
    push_config.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCONNECTOR_")}
    if _state_url:
        env["MLCONNECTOR_STATE_URL"] = _state_url
    log = (work / "listen.log").open("w")
    listener = subprocess.Popen([sys.executable, "-m", "mlconnector", "--config", str(push_config), "listen",
                                 "--host", "127.0.0.1", "--port", str(port), "--process"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if listener.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"listen did not start: {(work / 'listen.log').read_text()[-2000:]}")
                time.sleep(0.1)
        subscribe = run_tool(push_config, pair, [], work)  # creates the channel / subscription
        seconds = sp.call("push_latency", plan.pushes)
    finally:
        listener.terminate()
        try:
            listener.wait(10)
        except subprocess.TimeoutExpired:
            listener.kill()
        log.close()
    arrived = [s for s in seconds if s is not None]
    median, p95 = median_p95(arrived)
    figures = {"changes": len(seconds), "arrived": len(arrived), "median_seconds": median, "p95_seconds": p95,
               "max_seconds": max(arrived) if arrived else None, "direction": "BC -> Zoho" if erp == "bc"
               else "Zoho -> NAV", "channels": subscribe["result"].get("channels"),
               "channel_problems": subscribe["result"].get("channel_problems")}
    figures["targets"] = {"median < 2 s": median is not None and median < 2.0, "every change arrived":
                          len(arrived) == len(seconds)}
    return figures


@contextmanager
def state_schema(server_url: str | None, pair: str) -> Iterator[None]:
    """A fresh PostgreSQL schema for one pair's runs (dropped after), or nothing: the sandbox's state file."""
    global _state_url
    if not server_url:
        yield
        return
    import psycopg

    schema = f"bench_{pair.replace('-', '_')}_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if "?" in server_url else "?"
        _state_url = f"{server_url}{separator}options=-csearch_path%3D{schema}"
        try:
            yield
        finally:
            _state_url = None
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def run_pair(pair: str, plan: Plan, only: set[str], work: Path, say: Any,
             state_url: str | None = None) -> dict[str, Any]:
    with state_schema(state_url, pair):
        return _run_pair(pair, plan, only, work, say)


def _run_pair(pair: str, plan: Plan, only: set[str], work: Path, say: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    loaded = {"initial", "no_changes", "one_percent", "push"} & only
    if loaded:
        directory = work / pair
        directory.mkdir()
        say(f"{pair}: seeding {plan.size.customers} customers, {plan.size.items} items, {plan.size.invoices} "
            f"invoices x {plan.size.lines} lines")
        sp = SandboxProcess(pair, directory, plan.size, settings={ERP_OF[pair]: {"page_size": ERP_PAGE_SIZE}})
        out["seed_seconds"] = sp.seed_seconds
        try:
            steps = [("initial", scenario_initial), ("no_changes", scenario_no_changes),
                     ("one_percent", scenario_one_percent), ("push", scenario_push)]
            for name, step in steps:
                if name == "initial" or name in only:
                    say(f"{pair}: {name}")
                    figures = step(sp, pair, plan, work)
                    if name in only:
                        out[name] = figures
        finally:
            sp.stop()
    if "latency" in only:
        say(f"{pair}: latency ({plan.latency_customers} customers, {int(LATENCY * 1000)} ms per call)")
        out["latency"] = scenario_latency(pair, plan, work / pair if (work / pair).exists() else work)
    return out


def machine() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "cores": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "platform": platform.platform(),
            "note": "shared machine: other test runs may be using the cores at the same time"}


def run(plan: Plan, *, pairs: tuple[str, ...] = PAIRS, only: set[str] | None = None, save: bool = True,
        say: Any = print, results_dir: Path = RESULTS, state_url: str | None = None) -> dict[str, Any]:
    """``state_url``: a PostgreSQL server for the tool's state (a schema per pair), instead of the state file."""
    only = set(only or SCENARIOS)
    unknown = only - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenario {sorted(unknown)[0]!r}; one of {', '.join(SCENARIOS)}")
    compile_package()
    report: dict[str, Any] = {"timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "mode": plan.mode, "size": plan.size.__dict__, **machine(), "pairs": {},
                              "state": "postgresql" if state_url else "sqlite"}
    with tempfile.TemporaryDirectory(prefix="mlconnector-bench-") as tmp:
        for pair in pairs:
            work = Path(tmp) / f"work-{pair}"
            work.mkdir()
            report["pairs"][pair] = run_pair(pair, plan, only, work, say, state_url)
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if save:
        save_report(report, render(report), results_dir, plan.mode, "latest.md")
    return report


def save_report(report: dict[str, Any], table: str, results_dir: Path, name: str, latest: str) -> None:
    """``<time>-<name>.json`` next to the earlier results (a regression shows), and the table as ``latest``."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = report["timestamp"].replace(":", "").replace("-", "")
    (results_dir / f"{stamp}-{name}.json").write_text(json.dumps(report, indent=2, default=str) + "\n",
                                                      encoding="utf-8")
    (results_dir / latest).write_text(table, encoding="utf-8")


def _ok(flag: bool) -> str:
    return "met" if flag else "MISSED"


def rows(report: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(pair, scenario, figure, target, met) for the table."""
    out = []
    for pair, scenarios in report["pairs"].items():
        i = scenarios.get("initial")
        if i:
            out += [
                (pair, "1 initial load", f"{i['records']} records in {i['wall_seconds']} s = {i['records_per_second']}/s",
                 "-", "-"),
                (pair, "1 initial load", f"API calls: ERP {i['erp_calls']}, Zoho {i['zoho_calls']} "
                 f"({i['zoho_credits']} credits)", "-", "-"),
                (pair, "1 initial load", f"Zoho write calls {i['zoho_write_calls']} (minimum {i['zoho_write_calls_minimum']})",
                 "<= 1.05 x minimum", _ok(i["targets"]["zoho_write_calls_ratio <= 1.05"])),
                (pair, "1 initial load", f"tool peak RSS {i['tool_peak_rss_mb']} MB", "< 200 MB",
                 _ok(i["targets"]["tool_peak_rss_mb < 200"])),
                (pair, "1 initial load", f"tool CPU {i['tool_cpu_seconds']} s = {i['tool_cpu_us_per_record']} us/record",
                 "small", "-"),
            ]
        lat = scenarios.get("latency")
        if lat:
            out.append((pair, "2 latency 150 ms", f"{lat['records_per_second']}/s of ceiling "
                        f"{lat['ceiling_records_per_second']}/s = {lat['fraction_of_ceiling']}", ">= 0.8",
                        _ok(lat["targets"]["fraction_of_ceiling >= 0.8"])))
            out.append((pair, "2 latency 150 ms", f"CPU per record: tool {lat['tool_cpu_us_per_record']} us, sandboxes "
                        f"{lat.get('sandbox_cpu_us_per_record')} us; Zoho upserts "
                        f"in flight at most {lat.get('zoho_peak_heavy_in_flight')}, refused for concurrency "
                        f"{lat.get('zoho_concurrency_refused')}", "<= 10 in flight, 0 refused", "-"))
            limit = lat.get("sandbox_limit")
            if limit:
                out.append((pair, "2 latency 150 ms", f"the same upserts alone (no reads, mapping or state file): "
                            f"{limit['records_per_second']}/s = {limit['fraction_of_ceiling']} of the ceiling, median "
                            f"call {limit['median_call_seconds']} s; the run reached "
                            f"{lat['fraction_of_sandbox_limit']} of that", "-", "-"))
        n = scenarios.get("no_changes")
        if n:
            out.append((pair, "3 no changes", f"{n['wall_seconds']} s (median of {n.get('runs', 1)}; the whole process "
                        f"{n['process_wall_seconds']} s); calls per flow {n['calls_per_flow']}; writes "
                        f"{n['zoho_write_calls'] + n['erp_writes']}; mints {n['zoho_token_mints'] + n['erp_token_mints']}",
                        "<= 1 read/flow, 0 writes, 0 mints, < 2 s", _ok(all(n["targets"].values()))))
            a = n["first_run_after_load"]
            out.append((pair, "3 (first run after the load)", f"{a['wall_seconds']} s; {a['erp_calls']} ERP + "
                        f"{a['zoho_calls']} Zoho calls; writes {a['zoho_write_calls'] + a['erp_writes']}",
                        "(reads the load back once)", "-"))
        p = scenarios.get("one_percent")
        if p:
            out.append((pair, "4 1% changed", f"{sum(p['changed'].values())} changed: ERP {p['erp_calls']} + Zoho "
                        f"{p['zoho_calls']} calls ({p['zoho_write_calls']} writes, min {p['zoho_write_calls_minimum']}; "
                        f"{p['calls_added_by_changes']} more than with no change) in {p['wall_seconds']} s",
                        f"added calls <= {p['calls_added_allowed']}", _ok(all(p["targets"].values()))))
        s = scenarios.get("push")
        if s:
            out.append((pair, "5 push", f"{s['direction']}: median {_round(s['median_seconds'])} s, p95 {s['p95_seconds']} s "
                        f"({s['arrived']}/{s['changes']} arrived)", "median < 2 s", _ok(all(s["targets"].values()))))
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def render(report: dict[str, Any]) -> str:
    head = (f"Benchmarks ({report['mode']}: {report['size']['customers']} customers, {report['size']['items']} items, "
            f"{report['size']['invoices']} invoices x {report['size']['lines']} lines) at {report['timestamp']}, "
            f"commit {report['commit'][:10]}{' (dirty)' if report['dirty'] else ''}, {report['cores']} cores, "
            f"load {report['load_average_at_start']} -> {report.get('load_average_at_end')} (shared machine)\n\n")
    lines = ["| pair | scenario | figure | target | |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(r)} |" for r in rows(report)]
    return head + "\n".join(lines) + "\n"
