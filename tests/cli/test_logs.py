"""Log lines for journald and log shippers: --log-format json (or $MLCONNECTOR_LOG_FORMAT), each line one JSON
object carrying the run id, pair, flow and level; the text format names the run too."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mlconnector.cli.main import build_app

runner = CliRunner()


def cli(*args: str, env: dict | None = None):
    return runner.invoke(build_app(), list(args), env=env)


def seed(erp, n=3):
    for i in range(1, n + 1):
        erp.put("customer", {"number": f"C{i}", "name": f"Customer {i}"})


def test_json_log_lines_parse_and_carry_the_run_id(config_file, erp):
    seed(erp)
    result = cli("--log-format", "json", "-v", "sync", "erp-crm", "--json")
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["run_id"]
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert lines, "nothing was logged"
    assert all(line["run_id"] == run_id and line["pair"] == "erp-crm" for line in lines)
    assert all({"time", "level", "logger", "message", "flow"} <= line.keys() for line in lines)
    assert {line["flow"] for line in lines} >= {"customers", "items"}
    last = lines[-1]
    assert last["level"] == "info" and last["status"] == "ok" and last["exit_code"] == 0
    assert last["records"] == 3 and last["failed"] == 0 and last["duration_seconds"] >= 0


def test_the_environment_chooses_json_and_a_failed_run_says_so(config_file, erp, crm):
    seed(erp, 2)
    crm.set_fault("reject", ["C2"])
    result = cli("-v", "sync", "erp-crm", "--flow", "customers", env={"MLCONNECTOR_LOG_FORMAT": "json"})
    assert result.exit_code == 3
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines[-1]["status"] == "failed" and lines[-1]["exit_code"] == 3 and lines[-1]["failed"] == 1
    # The command's own lines (the warning naming the replay queue) stay readable text.
    assert any("wait in the replay queue" in line for line in result.stderr.splitlines() if not line.startswith("{"))


def test_text_log_lines_name_the_run(config_file, erp):
    seed(erp, 1)
    result = cli("-v", "sync", "erp-crm", "--flow", "customers", "--json")
    run_id = json.loads(result.stdout)["run_id"]
    assert f"[{run_id} erp-crm/customers]: erp-crm/customers: reading customer" in result.stderr


def test_an_unknown_format_is_one_line_and_exit_2(config_file):
    result = cli("--log-format", "xml", "status")
    assert result.exit_code == 2 and result.stderr.strip() == "error: --log-format 'xml': use text or json"
    result = cli("status", env={"MLCONNECTOR_LOG_FORMAT": "yaml"})
    assert result.exit_code == 2 and result.stderr.strip() == "error: MLCONNECTOR_LOG_FORMAT 'yaml': use text or json"
