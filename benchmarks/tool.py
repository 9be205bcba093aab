"""One sync run of the tool in a process of its own, reporting what it cost that process:
``python -m benchmarks.tool OUT.json CONFIG PAIR [FLOW ...]`` writes the run's result, wall time, CPU time and
peak RSS of this process only, never the sandboxes'. ``python -m benchmarks.tool --limit OUT.json CONFIG PAIR CALLS
AT_ONCE SIZE`` sends upserts of new Accounts with the pair's Zoho connector alone and writes their times;
``python -m benchmarks.tool --warm CONFIG PAIR`` reads the first page of the ERP's customers and stores nothing."""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def peak_rss_kb() -> int:
    """This process's peak resident set. Linux keeps ru_maxrss across exec, so a process started by a large
    parent (a long test session) would report the parent's peak; VmHWM belongs to this process's memory alone."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def limit(out: str, config: str, pair: str, calls: int, at_once: int, size: int) -> None:
    """``calls`` upserts of ``size`` new Accounts, ``at_once`` at a time, with the pair's Zoho connector alone."""
    from concurrent.futures import ThreadPoolExecutor

    with _connectors(config, pair) as (zoho, _):
        batches = [[{"Account_Name": f"Limit {b}-{i}", "Account_Number": f"LIMIT-{b:05d}-{i:03d}",
                     "Account_Type": "Customer", "Billing_City": "Oslo", "Billing_Country": "NO",
                     "Billing_Street": "Storgata 1", "Billing_Code": "0155", "Phone": "+47 22 00 00 00",
                     "Website": "example.com"} for i in range(size)] for b in range(calls)]
        zoho.write("Accounts", [{**batches[0][0], "Account_Number": "LIMIT-FIRST"}], "Account_Number")  # token, org
        durations: list[float] = []

        def upsert(batch: list[dict[str, object]]) -> None:
            started = time.perf_counter()
            zoho.write("Accounts", batch, "Account_Number")
            durations.append(time.perf_counter() - started)

        started = time.perf_counter()
        with ThreadPoolExecutor(at_once) as pool:
            list(pool.map(upsert, batches))
        wall = time.perf_counter() - started
    Path(out).write_text(json.dumps({"wall_seconds": wall, "durations": durations}), encoding="utf-8")


class _Unchanged:
    """A secret store as a later run will find it: what is stored here (a token minted) is kept in memory only."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._kept: dict[tuple[str, str], str | None] = {}

    def get(self, system: str, field: str) -> str | None:
        return self._kept[(system, field)] if (system, field) in self._kept else self._store.get(system, field)

    def set(self, system: str, field: str, value: str) -> None:
        self._kept[(system, field)] = value

    def delete(self, system: str, field: str) -> None:
        self._kept[(system, field)] = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def warm(config: str, pair: str) -> None:
    """The first page of the ERP's customers, read as a first run reads it, with a state file of its own and no
    token kept: the ERP emulator orders a table on the first read of it (what the server's SQL index is for)
    and keeps that order until a row is written, so a run measured after this one is not charged for it."""
    with _connectors(config, pair, keep_tokens=False) as (_, erp):
        erp.pages_ahead = False
        reading = erp.changes("customers", None)
        next(reading, None)
        reading.close()


@contextmanager
def _connectors(config: str, pair: str, *, keep_tokens: bool = True) -> Iterator[tuple[Any, Any]]:
    """The pair's (Zoho, ERP) connectors as a run opens them, with a state file of its own (deleted after);
    without ``keep_tokens`` the tokens minted are not stored for later runs."""
    from mlconnector import api
    from mlconnector.sync import open_pair
    from mlconnector.state import State
    from mlconnector.systems.zoho import ZohoConnector

    runtime = api.Runtime(config_path=Path(config))
    if not keep_tokens:
        runtime.secrets = _Unchanged(runtime.secret_store())
    with tempfile.TemporaryDirectory() as scratch, State(Path(scratch) / "state.db") as state:
        session = open_pair(runtime.config, pair, runtime.context(state))
        try:
            connectors = list(session.connectors.values())
            yield (next(c for c in connectors if isinstance(c, ZohoConnector)),
                   next(c for c in connectors if not isinstance(c, ZohoConnector)))
        finally:
            session.close()


def import_run_modules(pair: str, runtime: Any = None) -> None:
    """Imports the modules a sync of ``pair`` loads on first use (the pairs, the two systems' connectors, the
    secret store, the HTTP transport, and the state's store: PostgreSQL's driver where the state is in a database),
    so the measured wall time is the sync's, as ``from mlconnector import api`` is already outside it: about 0.1 s
    of imports here, in a 9 s run; psycopg's own import is about 0.13 s, paid by every process that opens a state
    database (the figures give each run's whole process time beside its sync's)."""
    import importlib

    from mlconnector import auth, pairs, secrets  # noqa: F401 - imported for their cost, outside the clock
    from mlconnector.systems import BUILTIN_KINDS

    for kinds in pairs.get_pair(pair).roles.values():
        for kind in kinds:
            if kind in BUILTIN_KINDS:
                importlib.import_module(BUILTIN_KINDS[kind])
    importlib.import_module("httpcore")  # httpx imports its transport on the first client
    if runtime is not None and runtime.state_location().url:
        for module in ("mlconnector.state.postgres", "mlconnector.state.pg_locks", "mlconnector.state.ledger"):
            importlib.import_module(module)


def reconcile(out: str, config: str, pair: str, *flows: str) -> None:
    """`mlconnector reconcile PAIR` once, timed as a sync is (imports before the clock starts)."""
    from mlconnector import api

    runtime = api.Runtime(config_path=Path(config))
    import_run_modules(pair, runtime)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    result = api.reconcile(runtime, pair, flows=list(flows) or None)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    Path(out).write_text(json.dumps({
        "report": result.report.to_dict(), "wall_seconds": wall,
        "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "peak_rss_mb": peak_rss_kb() / 1024,
    }, default=str), encoding="utf-8")


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--warm":
        warm(*argv[1:])
        return 0
    if argv and argv[0] == "--limit":
        out, config, pair, calls, at_once, size = argv[1:]
        limit(out, config, pair, int(calls), int(at_once), int(size))
        return 0
    if argv and argv[0] == "--reconcile":
        reconcile(*argv[1:])
        return 0
    out, config, pair, *flows = argv
    imported_kb = peak_rss_kb()
    from mlconnector import api

    runtime = api.Runtime(config_path=Path(config))
    import_run_modules(pair, runtime)
    baseline_kb = peak_rss_kb()
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    result = api.sync(runtime, pair, flows=flows or None)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    Path(out).write_text(json.dumps({
        "result": result.to_dict(), "wall_seconds": wall,
        "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "peak_rss_mb": peak_rss_kb() / 1024, "rss_after_imports_mb": baseline_kb / 1024,
        "rss_interpreter_mb": imported_kb / 1024,
    }, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
