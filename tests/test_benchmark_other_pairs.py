"""The benchmarks of fo-zoho, gp-zoho and nav-zuora (python -m benchmarks.other_pairs) on a tiny data set, so they
cannot rot between real runs: per pair, the sandboxes start in their own process, the tool loads everything in
another, then runs again with nothing changed; results land as JSON and a table."""

from __future__ import annotations

import json

from benchmarks.other_pairs import PAIRS, _reads_per_flow, render, run, tiny


def test_the_other_pairs_benchmarks_run_end_to_end_on_a_tiny_data_set(tmp_path):
    plan = tiny()

    report = run(plan, only={"initial", "no_changes"}, results_dir=tmp_path, say=lambda text: None)

    assert tuple(report["pairs"]) == PAIRS
    for pair, figures in report["pairs"].items():
        initial, quiet = figures["initial"], figures["no_changes"]
        assert initial["exit_code"] == 0 and initial["failed"] == 0, pair
        assert initial["records"] >= plan.sizes[pair]["customers"], pair
        assert initial["target_writes"] > 0 and initial["target_token_mints"] == 1, pair
        assert 0 < initial["tool_peak_rss_mb"] < 200 and initial["tool_cpu_us_per_record"] > 0, pair
        # The run with nothing changed writes nothing, on either side, and mints no token (GP: NTLM handshakes
        # are per connection, not counted as mints).
        assert quiet["writes"] == 0 and quiet["erp_writes"] == 0 and quiet["target_writes"] == 0, pair
        assert quiet["token_mints"] == 0, pair
        assert quiet["exit_code"] == 0 and set(quiet["calls_per_flow"]) == set(initial["flows"]), pair
        assert sum(quiet["reads_per_flow"].values()) == sum(quiet["calls_per_flow"].values()) - (
            2 * quiet["erp_token_mints"] if pair == "gp-zoho" else 0), pair
        assert set(quiet["targets"]) == {"<= 1 read call per flow (+ deleted records)", "0 writes", "0 token mints", "sync < 2 s"}
    fo = report["pairs"]["fo-zoho"]["initial"]
    assert fo["target_writes"] == fo["target_write_calls_minimum"] and fo["target_credits"] > 0
    [saved] = tmp_path.glob("*-other-pairs-tiny.json")
    assert json.loads(saved.read_text())["cores"] and report["commit"]
    assert (tmp_path / "latest-other-pairs.md").read_text() == render(report)


def test_a_gp_handshakes_legs_are_not_counted_as_reads():
    # One handshake: its two 401 legs went with the run's first GP call, in the customers flow.
    assert _reads_per_flow({"customers": 3, "vendors": 1, "deals_to_gp": 0}, 1) == {
        "customers": 1, "vendors": 1, "deals_to_gp": 0}
    # Spread over flows that each made more than one call; a flow's one read is never taken.
    assert _reads_per_flow({"customers": 2, "vendors": 2, "gl_accounts": 1}, 1) == {
        "customers": 1, "vendors": 1, "gl_accounts": 1}
    assert _reads_per_flow({"customers": 4, "vendors": 1}, 0) == {"customers": 4, "vendors": 1}
