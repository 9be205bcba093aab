"""Retention: `[state] audit_retention_days` (90) and `mlconnector prune`; each sync prunes a little as it goes.
The tests taking ``state_store`` run with the SQLite file and with PostgreSQL (vacuum is the file's own)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from mlconnector.api import Runtime

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(build_app(), list(args))


def old_audit_rows(n: int, days: float, payload: str = "") -> None:
    """Rows as an earlier run left them ``days`` ago (the audit keeps the time it is given)."""
    when = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat(timespec="microseconds")
    with Runtime().open_state() as state, state.transaction():
        state.add_audits([{"run_id": "20200101T000000Z-old", "time": when, "pair": "erp-crm", "flow": "customers",
                           "source_id": f"old-{i}", "action": "update", "status": "ok", "payload": payload or None}
                          for i in range(n)])


def audit_count() -> int:
    return len(json.loads(cli("audit", "--limit", "10000000", "--json").stdout))


def seed(erp, n=3):
    for i in range(1, n + 1):
        erp.put("customer", {"number": f"C{i}", "name": f"Customer {i}"})


def test_prune_deletes_what_is_older_than_the_retention_and_keeps_the_rest(config_file, erp, state_store):
    old_audit_rows(4_500, days=120)
    old_audit_rows(10, days=30)
    seed(erp)
    # A sync prunes as it goes: this one keeps everything, so that `prune` finds the old rows.
    config_file.write_text(config_file.read_text() + "\n[state]\naudit_retention_days = 0\n")
    assert cli("sync", "erp-crm", "--flow", "customers").exit_code == 0
    config_file.write_text(config_file.read_text().replace("audit_retention_days = 0", "audit_retention_days = 90"))
    assert audit_count() == 3 + 4_510

    result = cli("prune")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("deleted 4500 audit row(s), 0 processed notification(s) and 0 run(s) from before ")
    assert audit_count() == 13
    data = json.loads(cli("prune", "--older-than", "7", "--json").stdout)
    assert data["deleted"] == {"audit": 10, "inbox": 0, "runs": 0} and data["bytes"] > 0
    assert audit_count() == 3
    assert json.loads(cli("status", "--json").stdout)["last_runs"]  # the pair's last sync stays


def test_each_sync_prunes_by_the_configured_retention(config_file, erp, state_store):
    config_file.write_text(config_file.read_text() + "\n[state]\naudit_retention_days = 10\n")
    old_audit_rows(3_000, days=11)
    old_audit_rows(5, days=9)
    seed(erp, 1)
    assert cli("sync", "erp-crm", "--flow", "customers").exit_code == 0
    assert audit_count() == 5 + 1


def test_vacuum_gives_the_space_back(config_file):
    old_audit_rows(5_000, days=200, payload="x" * 500)
    before = json.loads(cli("prune", "--older-than", "365", "--json").stdout)["bytes"]
    after = json.loads(cli("prune", "--vacuum", "--json").stdout)
    assert after["deleted"]["audit"] == 5_000
    assert after["bytes"] < before / 4 and after["free_bytes"] == 0


def test_bad_retention_settings_are_one_line_and_exit_2(config_file, state_store):
    config_file.write_text(config_file.read_text() + "\n[state]\naudit_retention_days = -1\n")
    result = cli("prune")
    assert result.exit_code == 2 and "state.audit_retention_days = -1: use a whole number of days" in result.stderr
    config_file.write_text(config_file.read_text().replace("= -1", "= 0"))
    result = cli("prune")
    assert result.exit_code == 2 and "pass --older-than DAYS" in result.stderr
    assert cli("prune", "--older-than", "30").exit_code == 0
    config_file.write_text(config_file.read_text().replace("audit_retention_days = 0", "retention = 3"))
    result = cli("prune")
    assert result.exit_code == 2 and "state.retention is not a known key" in result.stderr
