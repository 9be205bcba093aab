"""The command line as an operator uses it: exit codes, messages, JSON, audit, status, replay, locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from mlconnector.sync import pair_lock
from mlconnector.state import default_state_path

runner = CliRunner()


def cli(*args: str, input: str | None = None):
    return runner.invoke(build_app(), list(args), input=input)


def seed(erp, n=3):
    return [erp.put("customer", {"number": f"C{i}", "name": f"Customer {i}"}) for i in range(1, n + 1)]


def test_sync_prints_a_summary_and_exits_0(config_file, erp, crm):
    seed(erp)
    result = cli("sync", "erp-crm", "--flow", "customers")
    assert result.exit_code == 0, result.output
    assert "customers" in result.stdout and "crm 1" in result.stdout  # API calls per system
    assert len(crm.all("account")) == 3


def test_sync_json_is_machine_readable(config_file, erp, crm):
    seed(erp, 2)
    result = cli("sync", "erp-crm", "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 0
    assert data["flows"]["customers"]["created"] == 2 and data["failed"] == 0 and data["exit_code"] == 0


def test_failed_records_exit_3_and_replay_fixes_them(config_file, erp, crm):
    seed(erp, 2)
    crm.set_fault("reject", ["C2"])
    first = cli("sync", "erp-crm", "--flow", "customers")
    assert first.exit_code == 3
    assert "wait in the replay queue" in first.stderr

    failed = json.loads(cli("audit", "--status", "failed", "--json").stdout)
    assert [r["source_id"] for r in failed] == [erp.find("customer", "number", "C2")[0]["id"]]
    status = json.loads(cli("status", "--json").stdout)
    assert status["replay_queue"] == {"erp-crm/customers": 1}

    crm.set_fault("reject", [])
    assert cli("replay", "--dry-run", "--all").exit_code == 0 and len(crm.all("account")) == 1
    replayed = cli("replay", "--all")
    assert replayed.exit_code == 0, replayed.output
    assert len(crm.all("account")) == 2
    assert json.loads(cli("status", "--json").stdout)["replay_queue"] == {}


def test_replay_needs_to_be_told_what(config_file):
    result = cli("replay")
    assert result.exit_code == 2 and "--all" in result.output


def test_dry_run_writes_nothing_and_tells_the_cost(config_file, erp, crm):
    seed(erp, 3)
    result = cli("sync", "erp-crm", "--flow", "customers", "--dry-run")
    assert result.exit_code == 0
    assert "would create customers" in result.stdout and "API calls the run would make: crm 1, erp 1" in result.stdout
    assert crm.all("account") == []


def test_audit_table_and_filters(config_file, erp):
    rows = seed(erp, 2)
    cli("sync", "erp-crm", "--flow", "customers")
    table = cli("audit")
    # Records are named by their business key (the customer number), not the source's id.
    assert table.exit_code == 0 and "create" in table.stdout and rows[0]["number"] in table.stdout
    one = json.loads(cli("audit", "--record", rows[1]["id"], "--json").stdout)
    assert len(one) == 1 and one[0]["action"] == "create" and one[0]["flow"] == "customers"
    assert json.loads(cli("audit", "--record", rows[1]["number"], "--json").stdout) == one
    assert json.loads(cli("audit", "--pair", "other", "--json").stdout) == []


def test_status_shows_watermarks_and_last_runs(config_file, erp):
    seed(erp, 1)
    cli("sync", "erp-crm", "--flow", "customers")
    result = cli("status")
    assert result.exit_code == 0
    assert "watermarks" in result.stdout and "customers" in result.stdout and "last runs" in result.stdout


def test_bad_config_is_one_line_exit_2_no_traceback(tmp_path):
    (tmp_path / "connections.toml").write_text('[systems.zoho]\nkind = "zoho"\nclient_secret = "abc123"\n')
    result = cli("sync", "erp-crm")
    assert result.exit_code == 2
    assert "Traceback" not in result.output and "abc123" not in result.output
    assert "mlconnector secrets set zoho client_secret" in result.stderr


def test_unknown_flow_and_bad_since_are_usage_errors(config_file):
    assert cli("sync", "erp-crm", "--flow", "nope").exit_code == 2
    bad = cli("sync", "erp-crm", "--since", "yesterday")
    assert bad.exit_code == 2 and "not an ISO date" in bad.stderr


def test_a_second_run_of_the_same_pair_exits_75_at_once(config_file, erp):
    seed(erp, 1)
    with pair_lock(default_state_path(), "erp-crm"):
        result = cli("sync", "erp-crm")
    assert result.exit_code == 75 and "another run of erp-crm" in result.stderr
    assert cli("sync", "erp-crm").exit_code == 0


def test_auth_failure_exits_4(config_file, erp, crm):
    seed(erp, 1)
    crm.set_fault("auth", True)
    result = cli("sync", "erp-crm", "--flow", "customers")
    assert result.exit_code == 4 and "credentials refused" in result.stderr


def test_unreachable_system_exits_5(config_file, erp, crm):
    seed(erp, 1)
    crm.set_fault("down", True)
    assert cli("sync", "erp-crm", "--flow", "customers").exit_code == 5


def test_ping_one_line_per_system(config_file, crm):
    ok = cli("ping")
    assert ok.exit_code == 0 and ok.stdout.count("ok ") == 2
    crm.set_fault("auth", True)
    refused = cli("ping")
    assert refused.exit_code == 4 and "FAILED crm" in refused.stdout


def test_init_writes_a_starter_and_never_overwrites_without_force(tmp_path):
    target = tmp_path / "connections.toml"
    first = cli("init")
    assert first.exit_code == 0 and target.exists()
    assert "[systems.zoho]" in target.read_text() and "[pairs.nav-zoho]" in target.read_text()
    target.write_text("# mine\n")
    again = cli("init")
    assert again.exit_code == 2 and "--force" in again.stderr and target.read_text() == "# mine\n"
    assert cli("init", "--force", "--pair", "bc-zoho").exit_code == 0 and "[systems.bc]" in target.read_text()


@pytest.mark.parametrize("pair", ["nav-zoho", "bc-zoho", "fo-zoho", "gp-zoho", "nav-zuora"])
def test_init_starts_every_pair_with_a_config_that_runs(tmp_path, pair):
    from mlconnector.config import load_config
    from tests.test_examples import assert_runnable

    target = tmp_path / f"{pair}.toml"
    result = cli("init", "--pair", pair, "--path", str(target))
    assert result.exit_code == 0, result.output
    config = load_config(target)
    assert_runnable(config, pair, tmp_path)
    for system in config.systems.values():  # a Windows account reads back as DOMAIN\name, one backslash
        assert "\\\\" not in str(system.settings.get("user", "")), system.settings["user"]


def test_version_and_help_everywhere():
    assert cli("--version").stdout.startswith("mlconnector ")
    for args in (["--help"], ["sync", "--help"], ["audit", "--help"], ["replay", "--help"],
                 ["status", "--help"], ["ping", "--help"], ["secrets", "--help"], ["init", "--help"]):
        result = cli(*args)
        assert result.exit_code == 0 and "Usage" in result.output, args
    assert "75 another run" in " ".join(cli("--help").stdout.split())


def test_python_dash_m_runs_the_tool(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run([sys.executable, "-m", "mlconnector", "--version"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("mlconnector ")


def test_verbose_logs_go_to_stderr_and_keep_stdout_clean(config_file, erp):
    seed(erp, 2)
    result = cli("-v", "sync", "erp-crm", "--flow", "customers", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["flows"]["customers"]["created"] == 2
    assert "erp-crm/customers: read 2, created 2" in result.stderr


def test_a_full_disk_under_the_state_file_is_one_line_exit_2_not_a_bug(config_file, erp, crm, monkeypatch):
    import logging
    import sqlite3

    from mlconnector.state import State

    seed(erp)
    monkeypatch.setattr(logging.root, "handlers", [])  # none left by an earlier -v run, bound to its closed stderr

    def disk_full(self, links, **_):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(State, "save_links", disk_full)
    result = cli("sync", "erp-crm", "--flow", "customers")

    assert result.exit_code == 2, result.output
    assert "state file" in result.stderr and "database or disk is full" in result.stderr
    assert "make room" in result.stderr and "internal error" not in result.stderr
    assert "Traceback" not in result.output
