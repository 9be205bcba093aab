"""The benchmark harness (python -m benchmarks) on a tiny data set, so it cannot rot between real runs: the
sandboxes start in their own process, the tool runs in another, and results land as JSON and a table."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from benchmarks.harness import render, run, tiny


def test_the_benchmark_harness_runs_end_to_end_on_a_tiny_data_set(tmp_path):
    plan = replace(tiny(40), pushes=1)

    report = run(plan, pairs=("bc-zoho",), only={"initial", "latency", "no_changes", "one_percent", "push"},
                 results_dir=tmp_path, say=lambda text: None)

    figures = report["pairs"]["bc-zoho"]
    initial = figures["initial"]
    assert initial["exit_code"] == 0 and initial["records"] == 40 + plan.size.items + plan.size.invoices
    assert initial["zoho_write_calls"] == initial["zoho_write_calls_minimum"]
    assert 0 < initial["tool_peak_rss_mb"] < 200
    assert figures["no_changes"]["zoho_write_calls"] == 0 and figures["no_changes"]["zoho_token_mints"] == 0
    assert figures["one_percent"]["written"] >= sum(figures["one_percent"]["changed"].values())
    assert figures["push"]["arrived"] == 1
    # The latency scenario's Zoho org runs in a process of its own: its calls still count, its CPU too.
    latency = figures["latency"]
    assert latency["records"] == 40 and latency["zoho_write_calls"] == 1
    assert latency["zoho_peak_heavy_in_flight"] == 1 and latency["sandbox_cpu_seconds"] > 0
    # The ERP's first page read before the run (the emulator's sort) keeps no token: the run mints its own.
    assert latency["erp_token_mints"] == 1 and latency["erp_reads"] >= 1
    # ... and the same upserts alone, after the run, tell what the sandboxes allow on this machine.
    assert latency["sandbox_limit"]["calls"] == 1 and latency["sandbox_limit"]["records_per_second"] > 0
    assert latency["fraction_of_sandbox_limit"] > 0
    [saved] = tmp_path.glob("*-tiny.json")
    assert json.loads(saved.read_text())["cores"] and report["commit"]
    assert (tmp_path / "latest.md").read_text() == render(report)


def test_the_measured_sync_imports_none_of_the_pairs_modules_itself():
    """The run's wall time is the sync's: what a sync of the pair imports on first use is imported before the
    clock starts, as ``from mlconnector import api`` is."""
    code = ("import sys\nfrom benchmarks.tool import import_run_modules\nimport_run_modules('bc-zoho')\n"
            "print(' '.join(sorted(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1]).stdout.split()
    for module in ("mlconnector.systems.dynamics", "mlconnector.systems.zoho", "mlconnector.pairs.bc_zoho",
                   "mlconnector.secrets", "httpcore"):
        assert module in loaded
    assert "mlconnector.systems.gp" not in loaded  # only the pair's own systems


def test_the_reconcile_benchmark_finds_exactly_what_it_planted_on_a_tiny_data_set(tmp_path):
    from benchmarks import reconcile

    size = reconcile.Size(300, 30, 0)
    figures = reconcile.measure(size, tmp_path, lambda line: None)

    assert figures["load_exit_code"] == 0
    assert figures["planted"] == {"differs": 1, "missing": 1, "gone": 1, "unlinked": 1, "orphan": 1}
    assert figures["found"] == figures["planted"] and not figures["missed"] and not figures["extra"]
    assert all(figures["targets"].values()), figures["targets"]
    assert figures["zoho_calls"] > 0 and figures["erp_calls"] > 0
