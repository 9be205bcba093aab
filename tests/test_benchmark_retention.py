"""The retention benchmark's harness on a tiny state file, so it cannot rot: the audit holds only the days kept."""

from __future__ import annotations

from benchmarks.retention import simulate


def test_a_simulated_year_keeps_only_the_retained_days(tmp_path):
    rows = simulate(records=500, days=365, changed=0.02, keep_days=90, folder=tmp_path)
    by_day = {r["day"]: r for r in rows}
    assert by_day[90]["audit_rows"] == 500 + 90 * 10  # the first load is 90 days old, not older
    # Rows exactly 90 days old are kept: 91 days of changes.
    assert by_day[365]["audit_rows"] == 91 * 10 and by_day[180]["audit_rows"] == 91 * 10
    assert by_day[365]["file_mb"] <= 2 * by_day[30]["file_mb"]
