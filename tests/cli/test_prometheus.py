"""`status --prometheus`: node_exporter's textfile format, read back with prometheus_client's own parser.
Each test runs with the state in the SQLite file and in PostgreSQL (``state_store``)."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from mlconnector.cli.main import build_app

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(build_app(), list(args))


def scrape() -> dict[str, dict[tuple, float]]:
    result = cli("status", "--prometheus")
    assert result.exit_code == 0, result.output
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(result.stdout):
        assert family.type == "gauge" and family.documentation
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_after_a_good_and_a_failing_run(config_file, erp, crm, state_store):
    for i in range(1, 4):
        erp.put("customer", {"number": f"C{i}", "name": f"Customer {i}"})
    before = time.time()
    assert cli("sync", "erp-crm").exit_code == 0
    metrics = scrape()
    pair = (("pair", "erp-crm"),)
    assert metrics["mlconnector_last_run_ok"] == {pair: 1.0}
    assert metrics["mlconnector_last_run_exit_code"] == {pair: 0.0}
    assert before - 1 <= metrics["mlconnector_last_success_timestamp_seconds"][pair] <= time.time()
    assert metrics["mlconnector_last_run_duration_seconds"][pair] >= 0
    records = metrics["mlconnector_last_run_records"]
    assert records[(("action", "created"), ("flow", "customers"), ("pair", "erp-crm"))] == 3
    assert records[(("action", "failed"), ("flow", "customers"), ("pair", "erp-crm"))] == 0
    assert metrics["mlconnector_last_run_api_calls"][(("pair", "erp-crm"), ("system", "crm"))] >= 1
    assert metrics["mlconnector_inbox_waiting_notifications"] == {(): 0.0}
    assert metrics["mlconnector_check_problems"][(("code", "10"),)] == 0

    crm.set_fault("reject", ["C4"])
    erp.put("customer", {"number": "C4", "name": "Customer 4"})
    assert cli("sync", "erp-crm", "--flow", "customers").exit_code == 3
    metrics = scrape()
    assert metrics["mlconnector_last_run_ok"] == {pair: 0.0}
    assert metrics["mlconnector_last_run_exit_code"] == {pair: 3.0}
    assert metrics["mlconnector_replay_queue_records"] == {(("flow", "customers"), ("pair", "erp-crm")): 1.0}
    assert metrics["mlconnector_replay_oldest_age_seconds"][(("flow", "customers"), ("pair", "erp-crm"))] >= 0
    assert metrics["mlconnector_check_problems"][(("code", "10"),)] == 1
    assert metrics["mlconnector_last_run_records"][(("action", "failed"), ("flow", "customers"), ("pair", "erp-crm"))] == 1


def test_channels_show_their_expiry_and_failures(config_file, crm, state_store):
    config_file.write_text(config_file.read_text().replace(
        'kind = "testcrm"', 'kind = "testcrm"\nnotify_url = "https://hooks.example.com/hooks/crm"'))
    assert cli("sync", "erp-crm", "--flow", "accounts").exit_code == 0
    expiry = scrape()["mlconnector_channel_expiry_timestamp_seconds"][(("entity", "account"), ("system", "crm"))]
    assert 23 * 3600 < expiry - time.time() <= 24 * 3600
    assert "mlconnector_channel_failing" not in scrape()

    config_file.write_text(config_file.read_text().replace('notify_url = "https://hooks.example.com/hooks/crm"',
                                                           'notify_url = "https://new.example.com/hooks/crm"'))
    crm.set_fault("no_subscribe", True)  # moving the channel to the new address fails
    assert cli("sync", "erp-crm", "--flow", "accounts").exit_code == 5
    assert scrape()["mlconnector_channel_failing"] == {(("entity", "account"), ("system", "crm")): 1.0}


def test_prometheus_with_check_is_refused_in_one_line(config_file, state_store):
    result = cli("status", "--prometheus", "--check")
    assert result.exit_code == 2 and result.stderr.strip() == ("error: --prometheus prints metrics only: leave out "
                                                               "--check and --json")
