"""Config where operators look: the default search ($XDG_CONFIG_HOME, /etc after ./), `config show` with where each
value came from (secrets only as set/unset), `config validate` offline."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mlconnector.cli.main import build_app

runner = CliRunner()


def cli(*args: str, input: str | None = None):
    return runner.invoke(build_app(), list(args), input=input)


def test_the_user_config_dir_is_searched_after_the_current_one(config_file, tmp_path, monkeypatch):
    monkeypatch.delenv("MLCONNECTOR_CONFIG")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    missing = cli("config", "validate")
    assert missing.exit_code == 2
    assert f"looked in connections.toml, {tmp_path}/xdg-config/mlconnector/connections.toml, " \
           "/etc/mlconnector/connections.toml" in missing.stderr

    user = tmp_path / "xdg-config" / "mlconnector" / "connections.toml"
    user.parent.mkdir(parents=True)
    user.write_text(config_file.read_text())
    shown = json.loads(cli("config", "show", "--json").stdout)
    assert shown["config"] == {"path": str(user), "source": "found by the default search"}

    (work / "connections.toml").write_text(config_file.read_text())
    assert json.loads(cli("config", "show", "--json").stdout)["config"]["path"] == "connections.toml"


def test_show_tells_where_each_value_came_from_and_never_a_secret(config_file, monkeypatch):
    config_file.write_text(config_file.read_text() + '''
[systems.zoho]
kind = "zoho"
client_id = "1000.ABC"
''')
    assert cli("secrets", "set", "zoho", "client_secret", input="s3cr3t-value\n").exit_code == 0
    monkeypatch.setenv("MLCONNECTOR_ALERTS_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/hook-s3cr3t")

    result = cli("config", "show", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["config"]["source"] == "$MLCONNECTOR_CONFIG"
    assert shown["state"]["source"] == "$MLCONNECTOR_STATE"
    assert shown["systems"]["zoho"]["settings"]["client_id"] == {"value": "1000.ABC", "source": "file"}
    assert shown["systems"]["zoho"]["secrets"]["client_secret"] == {"set": True, "source": "keyring"}
    assert shown["systems"]["zoho"]["secrets"]["refresh_token"] == {"set": False, "source": None}
    assert shown["pairs"]["erp-crm"]["overlap_seconds"] == {"value": 60, "source": "file"}
    assert shown["pairs"]["erp-crm"]["credit_budget"] == {"value": 0, "source": "default"}
    assert shown["audit_retention_days"] == {"value": 90, "source": "default"}
    assert shown["alerts"]["webhook"] == {"host": "https://hooks.slack.com", "source": "$MLCONNECTOR_ALERTS_WEBHOOK_URL"}

    text = cli("config", "show").stdout
    assert "  secret client_secret: set (keyring)" in text
    assert "  secret refresh_token: unset: run `mlconnector secrets set zoho refresh_token`" in text
    assert "  overlap_seconds = 60 (file)" in text and "[alerts] webhook: https://hooks.slack.com/... " in text
    for output in (result.stdout, text):
        assert "s3cr3t" not in output


def test_validate_checks_pairs_offline(config_file):
    result = cli("config", "validate")
    assert result.exit_code == 0 and result.stdout.startswith(f"ok: {config_file}: 2 system(s), 1 pair(s)")

    config_file.write_text(config_file.read_text().replace("batch_size = 10", 'batch_size = 10\nflows = ["custmers"]')
                           + "\n[pairs.nav-zoho-typo]\n")
    result = cli("config", "validate")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "pairs.erp-crm.flows names no flow 'custmers'" in lines[0]
    assert "pairs.nav-zoho-typo is not a pair this installation knows" in lines[1]

    config_file.write_text("[systems.x]\nkind = 3\n")
    result = cli("config", "validate")
    assert result.exit_code == 2 and "systems.x.kind is missing" in result.stderr


def test_show_names_a_postgresql_state_by_its_url_without_the_password(config_file, monkeypatch):
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", "postgresql://mlc:pg-s3cr3t@db.example.com/integration")
    shown = json.loads(cli("config", "show", "--json").stdout)["state"]
    assert shown["source"] == "$MLCONNECTOR_STATE_URL" and "db.example.com/integration" in shown["path"]
    assert "pg-s3cr3t" not in shown["path"]
    monkeypatch.delenv("MLCONNECTOR_STATE_URL")
    config_file.write_text(config_file.read_text() + '\n[state]\nurl = "postgresql://mlc@db.example.com/integration"\n')
    monkeypatch.delenv("MLCONNECTOR_STATE")
    shown = json.loads(cli("config", "show", "--json").stdout)["state"]
    assert shown == {"path": "postgresql://mlc@db.example.com/integration", "source": "[state] url"}


def test_show_and_validate_know_the_configured_mappings(config_file):
    config_file.write_text(config_file.read_text() + '''
[pairs.erp-crm.mappings.customers]
add = { region = { from = "country", lookup = { US = "Americas" } } }
''')
    shown = json.loads(cli("config", "show", "--json").stdout)
    assert shown["pairs"]["erp-crm"]["mappings"] == {
        "value": {"customers": {"add": {"region": {"from": "country", "lookup": {"US": "Americas"}}}}},
        "source": "file"}
    assert cli("config", "validate").exit_code == 0

    config_file.write_text(config_file.read_text() + '\n[pairs.erp-crm.mappings.items]\noverride = { code = "sku" }\n')
    result = cli("config", "validate")
    assert result.exit_code == 2
    assert "pairs.erp-crm.mappings.items.override.code: code is the key field of flow items" in result.stderr
