"""Tenants: two companies running the same pair (nav-zoho, each against its own NAV and Zoho sandboxes) from one
host's environment, with the state in SQLite files and in one PostgreSQL database. Each sees only its own records,
links, audit, watermarks and runs, and one tenant's run lock does not hold up the other's."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlconnector import api
from mlconnector.cli.main import build_app
from tests.pairs.world import World, make_world
from tests.postgres import SERVER_URL, drop_schemas


def _tenant_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tenant: str) -> World:
    """One company's sandboxes, its config where the tenant search finds it, its secrets in variables of its own
    (MLCONNECTOR_ACME_ZOHO_CLIENT_SECRET ...), none left under the plain names both tenants would read."""
    (tmp_path / tenant).mkdir()
    world = make_world(tmp_path / tenant, monkeypatch, "nav")
    config = tmp_path / "xdg-config" / "mlconnector" / "tenants" / tenant / "connections.toml"
    config.parent.mkdir(parents=True)
    config.write_text(world.config_path.read_text())
    for name, value in world.secrets.items():
        monkeypatch.delenv(name)
        monkeypatch.setenv(name.replace("MLCONNECTOR_", f"MLCONNECTOR_{tenant.upper()}_", 1), value)
    return world


@pytest.fixture(params=["sqlite", "postgres"])
def two_tenants(request, tmp_path, monkeypatch):
    """Tenants named afresh for each test (one PostgreSQL server serves parallel tests: the schemas must not meet)."""
    names = [f"{prefix}_{uuid.uuid4().hex[:8]}" for prefix in ("acme", "globex")]
    worlds = {name: _tenant_world(tmp_path, monkeypatch, name) for name in names}
    for variable in ("MLCONNECTOR_CONFIG", "MLCONNECTOR_STATE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MLCONNECTOR_STATE", str(tmp_path / "state" / "state.db"))  # shared: a file each below it
    if request.param == "postgres":
        with drop_schemas(*(f"mlconnector_{name}" for name in names)):
            monkeypatch.setenv("MLCONNECTOR_STATE_URL", SERVER_URL)
            yield worlds
    else:
        yield worlds
    for world in worlds.values():
        world.close()


def cli(world: World, tenant: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_app(), ["--tenant", tenant, *args], obj=api.Runtime(transport=world.router))
    return result.exit_code, result.output


def test_two_tenants_run_one_pair_apart(two_tenants, tmp_path, monkeypatch):
    (acme, acme_world), (globex, globex_world) = two_tenants.items()

    code, out = cli(acme_world, acme, "sync", "nav-zoho")
    assert code == 0, out
    accounts = {a["Account_Number"] for a in acme_world.crm("Accounts")}
    assert "C00010" in accounts and globex_world.crm("Accounts") == []

    # Globex has nothing yet: no watermark, no run, no audit row of acme's.
    code, out = cli(globex_world, globex, "status", "--json")
    status = json.loads(out)
    assert code == 0 and status["tenant"] == globex and status["watermarks"] == [] and status["last_runs"] == []
    assert json.loads(cli(globex_world, globex, "audit", "--json")[1]) == []
    acme_status = json.loads(cli(acme_world, acme, "status", "--json")[1])
    assert {w["pair"] for w in acme_status["watermarks"]} == {"nav-zoho"}
    [acme_run] = acme_status["last_runs"]
    if "postgresql://" in acme_status["state_file"]:
        assert f"search_path%3Dmlconnector_{acme}" in acme_status["state_file"]  # the tenant's own schema
    else:
        assert acme_status["state_file"] == str(tmp_path / "state" / "tenants" / acme / "state.db")

    # Its first run creates every record in its own Zoho, whatever acme's links say.
    code, out = cli(globex_world, globex, "sync", "nav-zoho")
    assert code == 0, out
    assert {a["Account_Number"] for a in globex_world.crm("Accounts")} == accounts
    globex_rows = json.loads(cli(globex_world, globex, "audit", "--json", "--limit", "5000")[1])
    acme_rows = json.loads(cli(acme_world, acme, "audit", "--json", "--limit", "5000")[1])
    assert {r["run_id"] for r in acme_rows} == {acme_run["id"]}
    assert acme_run["id"] not in {r["run_id"] for r in globex_rows}
    assert {r["action"] for r in globex_rows if r["flow"] == "customers"} == {"create"}

    # A run of acme's holding nav-zoho's lock: acme's next run exits 75, globex's runs.
    monkeypatch.setenv("MLCONNECTOR_TENANT", acme)
    with api.Runtime().state_location().pair_lock("nav-zoho"):
        assert cli(acme_world, acme, "sync", "nav-zoho")[0] == 75
        code, out = cli(globex_world, globex, "-v", "--log-format", "json", "sync", "nav-zoho")
        assert code == 0, out
        logged = [json.loads(line) for line in out.splitlines() if line.startswith('{"time"')]
        assert logged and {line["tenant"] for line in logged} == {globex}  # whose run, for a log shipper


def test_a_tenant_name_is_checked_and_its_secrets_are_its_own(tmp_path, monkeypatch):
    runner = CliRunner()
    for bad in ("Acme", "acme-eu", "1acme", "a" * 41, "acme\nx"):
        result = runner.invoke(build_app(), ["--tenant", bad, "status"])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
        assert "lower-case letters, digits and underscores" in result.output
    monkeypatch.setenv("MLCONNECTOR_TENANT", "Bad Name")
    result = runner.invoke(build_app(), ["status"])
    assert result.exit_code == 2 and "MLCONNECTOR_TENANT" in result.output

    monkeypatch.setenv("MLCONNECTOR_TENANT", "acme")
    monkeypatch.setenv("MLCONNECTOR_STATE_URL", "postgresql://db.example.com/mlc?options=-csearch_path%3Dshared")
    result = runner.invoke(build_app(), ["status"])  # the tenant chooses the schema: refused before any connection
    assert result.exit_code == 2 and "remove search_path" in result.output and len(result.output.splitlines()) == 1
    monkeypatch.delenv("MLCONNECTOR_STATE_URL")
    monkeypatch.delenv("MLCONNECTOR_TENANT")
    monkeypatch.delenv("MLCONNECTOR_CONFIG")
    config = tmp_path / "xdg-config" / "mlconnector" / "tenants" / "acme" / "connections.toml"
    config.parent.mkdir(parents=True)
    sink = tmp_path / "alerts.jsonl"
    command = [sys.executable, "-c", f"import sys; open({str(sink)!r}, 'a').write(sys.stdin.read() + '\\n')"]
    config.write_text('[systems.zoho]\nkind = "zoho"\nclient_id = "1000.ACME"\n\n[alerts]\n'
                      f"command = {json.dumps(command)}\n")
    shown = runner.invoke(build_app(), ["--tenant", "acme", "config", "show"])
    assert shown.exit_code == 0 and shown.output.startswith(f"tenant: acme\nconfig: {config} (found by the default "
                                                            "search)"), shown.output
    # One alert hook often serves every tenant: an alert says whose it is.
    assert runner.invoke(build_app(), ["--tenant", "acme", "alert", "test"]).exit_code == 0
    alert = json.loads(sink.read_text())
    assert alert["tenant"] == "acme" and " for acme: " in alert["text"]
    missing = runner.invoke(build_app(), ["--tenant", "globex", "config", "show"])  # acme's file is not globex's
    assert missing.exit_code == 2 and "tenants/globex/connections.toml: not found" in missing.output
    monkeypatch.setenv("MLCONNECTOR_SECRETS_BACKEND", "keyring")
    stored = runner.invoke(build_app(), ["--tenant", "acme", "secrets", "set", "zoho", "client_secret"],
                           input="acme-zoho-secret-4711\n")
    assert stored.exit_code == 0, stored.output
    assert "service mlconnector:acme" in stored.output
    listed = json.loads(runner.invoke(build_app(), ["--tenant", "acme", "secrets", "list", "--json"]).output)
    assert listed == [{"system": "zoho", "field": "client_secret", "source": "keyring"}]
    assert json.loads(runner.invoke(build_app(), ["--tenant", "globex", "secrets", "list", "--json"]).output) == []
    assert json.loads(runner.invoke(build_app(), ["secrets", "list", "--json"]).output) == []
    # globex's own variable provides its secret, and shows as globex's
    monkeypatch.setenv("MLCONNECTOR_GLOBEX_ZOHO_CLIENT_SECRET", "globex-zoho-secret-0815")
    listed = json.loads(runner.invoke(build_app(), ["--tenant", "globex", "secrets", "list", "zoho", "--json"]).output)
    assert listed == [{"system": "zoho", "field": "client_secret", "source": "env"}]
    assert json.loads(runner.invoke(build_app(), ["--tenant", "acme", "secrets", "list", "--json"]).output) == [
        {"system": "zoho", "field": "client_secret", "source": "keyring"}]

    # The encrypted file: a tenant's key and secrets in its own folder of the secrets directory.
    monkeypatch.setenv("MLCONNECTOR_SECRETS_BACKEND", "file")
    assert runner.invoke(build_app(), ["--tenant", "acme", "secrets", "init-file"]).exit_code == 0
    stored = runner.invoke(build_app(), ["--tenant", "acme", "secrets", "set", "zoho", "refresh_token"],
                           input="acme-refresh-1000.abc\n")
    assert stored.exit_code == 0 and str(tmp_path / "secrets" / "tenants" / "acme") in stored.output, stored.output
    assert sorted(p.name for p in (tmp_path / "secrets").iterdir()) == ["tenants"]
    refused = runner.invoke(build_app(), ["--tenant", "globex", "secrets", "list"])  # globex has no key of its own
    assert refused.exit_code == 2 and "init-file" in refused.output


def test_tenants_on_one_host_sharing_a_refresh_token_share_zohos_mint_limit(tmp_path, monkeypatch):
    # acme_eu and acme_us keep one Zoho org, each with its own state file: Zoho counts the refresh token's mints
    # whichever tenant asks (nine allowed here), while each tenant's credit budget stays its own.
    from mlconnector.systems import ConnectorContext
    from mlconnector.systems.zoho import quota_of

    minted = 0
    for tenant in ("acme_eu", "acme_us"):
        monkeypatch.setenv("MLCONNECTOR_TENANT", tenant)
        quota = quota_of(ConnectorContext(secrets=None, state_dir=tmp_path / "state" / "tenants" / tenant))
        minted += sum(1 for _ in range(10) if quota.reserve_mint("one-refresh-token", 9) == 0)
        assert quota.charge("zoho", 5, 8) == 5
    assert minted == 9
    assert (tmp_path / "state" / "zoho-quota.json").exists()
