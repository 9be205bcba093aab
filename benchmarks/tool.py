"""One sync run of the tool in a process of its own, reporting what it cost that process:
``python -m benchmarks.tool OUT.json CONFIG PAIR [FLOW ...]`` writes the run's result, wall time, CPU time and
peak RSS of this process only, never the sandboxes'."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


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


def main(argv: list[str]) -> int:
    out, config, pair, *flows = argv
    imported_kb = peak_rss_kb()
    from mlconnector import api

    baseline_kb = peak_rss_kb()
    runtime = api.Runtime(config_path=Path(config))
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
