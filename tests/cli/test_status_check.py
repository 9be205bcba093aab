"""`mlconnector status --check`: one line per problem and an exit code naming its kind, for cron and monitoring.
Each test runs with the state in the SQLite file and in PostgreSQL (``state_store``)."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from mlconnector.config import load_config
from mlconnector.api import Runtime
from mlconnector.sync import Engine, open_pair
from mlconnector.systems import ConnectorContext

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(build_app(), list(args))


def check(*args: str):
    result = cli("status", "--check", "--json", *args)
    return result.exit_code, json.loads(result.stdout)


def seed(erp, n=2):
    return [erp.put("customer", {"number": f"C{i}", "name": f"Customer {i}"}) for i in range(1, n + 1)]


def test_all_well_exits_0_with_one_line(config_file, erp, state_store):
    seed(erp)
    assert cli("sync", "erp-crm").exit_code == 0
    result = cli("status", "--check", "--max-age", "1h")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ok: no problems found"


def test_a_configured_pair_that_never_ran_is_stale_only_with_max_age(config_file, state_store):
    assert check()[0] == 0
    code, data = check("--max-age", "2h")
    assert code == 11 and data["problems"] == [
        {"code": 11, "pair": "erp-crm", "problem": "erp-crm: has never run; run `mlconnector sync erp-crm` (from cron)"}]


def test_a_run_older_than_max_age_exits_11(config_file, erp, state_store):
    seed(erp)
    cli("sync", "erp-crm")
    time.sleep(1.1)
    result = cli("status", "--check", "--max-age", "1s")
    assert result.exit_code == 11
    assert "erp-crm: the last run started 1 s ago" in result.stdout and "longer than --max-age 1 s" in result.stdout


def test_a_failed_run_exits_10_and_old_replay_entries_12(config_file, erp, crm, state_store):
    seed(erp)
    crm.set_fault("reject", ["C2"])
    assert cli("sync", "erp-crm", "--flow", "customers").exit_code == 3
    run_id = json.loads(cli("status", "--json").stdout)["last_runs"][0]["id"]

    code, data = check()
    assert code == 10
    assert [p["problem"] for p in data["problems"]] == [
        f"erp-crm: the last run {run_id} failed, exit 3; see `mlconnector audit --run {run_id}`"]

    time.sleep(1.1)
    code, data = check("--replay-age", "1s")
    assert code == 10  # the lowest code of the problems found
    assert [p["code"] for p in data["problems"]] == [10, 12]
    assert data["problems"][1]["problem"].startswith("erp-crm/customers: 1 record(s) in the replay queue, the oldest "
                                                     "failed 1 s ago")

    crm.set_fault("reject", [])
    assert cli("replay", "--all").exit_code == 0
    assert [p["code"] for p in check("--replay-age", "1s")[1]["problems"]] == [10]  # a replay is not a sync
    assert cli("sync", "erp-crm", "--flow", "customers").exit_code == 0
    assert check("--replay-age", "1s") == (0, {"ok": True, "exit_code": 0, "problems": []})


def test_an_interrupted_run_exits_10(config_file, erp, tmp_path, state_store):
    seed(erp, 30)
    session = open_pair(load_config(config_file), "erp-crm", ConnectorContext(secrets=None))
    with Runtime().open_state() as state:
        result = Engine(session.pair, session.config, session.connectors, state, counter=session.counter,
                        stop_requested=lambda: signal.SIGTERM).sync()
    assert result.interrupted == "SIGTERM"
    code, data = check()
    assert code == 10 and data["problems"][0]["problem"].startswith(f"erp-crm: the last run {result.run_id} "
                                                                    "interrupted, exit 143")


@pytest.fixture
def push_config(config_file: Path) -> Path:
    config_file.write_text(config_file.read_text().replace(
        'kind = "testcrm"', 'kind = "testcrm"\nnotify_url = "https://hooks.example.com/hooks/crm"'))
    return config_file


def test_a_channel_that_failed_to_renew_or_expires_within_the_hour_exits_13(push_config, crm, state_store):
    crm.set_fault("no_subscribe", True)
    assert cli("sync", "erp-crm", "--flow", "accounts").exit_code == 5
    code, data = check()
    assert [p["code"] for p in data["problems"]] == [10, 13]
    assert data["problems"][1]["problem"].startswith("push channel crm account: failing since ")
    assert "NO_PERMISSION" in data["problems"][1]["problem"] and "polled only" in data["problems"][1]["problem"]

    crm.set_fault("no_subscribe", False)
    assert cli("sync", "erp-crm", "--flow", "accounts").exit_code == 0
    assert check() == (0, {"ok": True, "exit_code": 0, "problems": []})

    # A channel made 23 h 30 min ago expires (after a day) in 30 minutes: not renewed yet (within the 2 h margin
    # a sync renews it), so it is a problem.
    crm.set_fault("channels", {})
    with Runtime().open_state() as state:
        state.delete_channel("crm", "ch-account-1")
    made = datetime.now(timezone.utc) - timedelta(hours=23, minutes=30)
    session = open_pair(load_config(push_config), "erp-crm", ConnectorContext(secrets=None))
    for connector in session.connectors.values():
        connector.clock = lambda: made
    with Runtime().open_state() as state:
        Engine(session.pair, session.config, session.connectors, state, counter=session.counter,
               now=lambda: made).sync(["accounts"])
    code, data = check()
    assert code == 13
    assert data["problems"][0]["problem"].startswith("push channel crm account: expires in 29 min")


def test_disagreement_found_by_the_last_reconcile_exits_14(config_file, erp, crm, state_store):
    seed(erp)
    assert cli("sync", "erp-crm", "--flow", "customers").exit_code == 0
    account = crm.all("account")[0]
    crm.update("account", account["id"], city="Elsewhere")
    assert cli("reconcile", "erp-crm", "--flow", "customers").exit_code == 6
    code, data = check()
    assert code == 14 and data["problems"][0]["problem"].startswith("erp-crm: the last reconcile (")
    assert "found 1 difference(s)" in data["problems"][0]["problem"]


@pytest.mark.parametrize("value", ["soon", "5x", "-1h", ""])
def test_a_bad_duration_is_one_line_and_exit_2(config_file, value, state_store):
    result = cli("status", "--check", "--max-age", value)
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: --max-age") and "30m, 2h, 1d" in result.stderr
    assert "Traceback" not in result.output
