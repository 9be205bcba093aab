"""The first ten minutes: `mlconnector demo` as the README runs it, and `mlconnector sandbox serve` with a real
config that `ping`, `sync` and `audit` use. Everything runs on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from mlconnector.demo import MARKER, write_sandbox_config
from mlconnector.errors import ConfigError
from mlconnector.sandbox import server as sandbox_server
from mlconnector.sandbox.dynamics import create_app as create_dynamics
from mlconnector.sandbox.seed import SeedSize, seed_company
from mlconnector.secrets import SecretStore

MLCONNECTOR = [sys.executable, "-m", "mlconnector"]


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([*MLCONNECTOR, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_readme_demo_runs_nav_zoho_end_to_end() -> None:
    """The README's command: a first sync, edits on both sides, echoes skipped, a change pushed to NAV."""
    result = _run("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout
    assert "1. First sync: everything moves" in text
    assert "company 'CRONUS International Ltd.': 24 customers" in text
    first, second = text.split("2. A few edits")[0], text.split("2. A few edits")[1].split("3. Push")[0]
    assert "│ customers" in first and "│ invoices" in first and "│      24 │" in first  # 24 customers created
    # The second run moves the edits only: one NAV customer and one item to Zoho, one Zoho account to NAV.
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:8]]
            for line in second.splitlines() if line.startswith("│") and "│" in line[1:]}
    assert rows["customers"][2] == "1" and rows["items"][2] == "1" and rows["accounts_to_customers"][2] == "1"
    assert rows["sales_orders"][1:3] == ["0", "0"] and rows["invoices"][1:3] == ["0", "0"]
    assert "echo of our own write" in second
    assert "Billing_City 'London'" in second or "Billing_City" in second
    assert "arrived in NAV customer 30000 after" in text
    assert "the emulators and the webhook receiver are stopped" in text


def test_demo_bc_zoho_shows_a_bc_change_arriving_in_zoho_by_webhook() -> None:
    result = CliRunner().invoke(build_app(), ["demo", "bc-zoho"])
    assert result.exit_code == 0, result.output
    assert "Business Central and Zoho CRM" in result.output
    assert "BC   customer C00010" in result.output  # an edit in BC ...
    assert "arrived in Zoho account C00030 after" in result.output  # ... and the pushed one in Zoho


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[sandbox_server.Sandboxes]:
    """The sandboxes a demo started, kept for the test to look into after the demo stopped them."""
    kept: list[sandbox_server.Sandboxes] = []
    real = sandbox_server.start_pairs

    def start_pairs(*args, **kwargs):
        kept.append(real(*args, **kwargs))
        return kept[-1]
    monkeypatch.setattr(sandbox_server, "start_pairs", start_pairs)
    return kept


def test_demo_fo_zoho_books_zoho_orders_in_fo_and_pushes_one_by_watch_channel(started) -> None:
    result = CliRunner().invoke(build_app(), ["demo", "fo-zoho"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Finance & Operations and Zoho CRM" in text and "legal entity USMF: 3 customers" in text
    assert "F&O  customer US-001 Contoso Retail San Diego: PrimaryContactPhone" in text
    assert "Zoho sales order 'Speakers for the new store' for account US-002" in text
    assert "2 record(s) moved, one per edit" in text
    assert "arrived in an F&O sales order after" in text
    [sandboxes] = started
    orders = sandboxes.finops_sandbox.records("usmf", "SalesOrderHeadersV2")
    assert sorted(o["OrderingCustomerAccountNumber"] for o in orders) == ["US-002", "US-003"]
    assert all(o["dataAreaId"] == "usmf" for o in orders)
    [account] = [a for a in sandboxes.zoho_sandboxes["fo"].records("Accounts") if a["Account_Number"] == "US-001"]
    assert account["Phone"] == "+1 619 555 0142"


def test_demo_gp_zoho_moves_a_gp_change_and_zoho_orders_into_gp(started) -> None:
    result = CliRunner().invoke(build_app(), ["demo", "gp-zoho"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Dynamics GP and Zoho CRM" in text and "Windows auth as SANDBOX\\svc-mlconnector" in text
    assert "GP   customer ADAMPARK0001 Adam Park Resort: City (PRIMARY address) 'Chicago' -> 'Evanston'" in text
    assert "2 record(s) moved, one per edit" in text
    assert "arrived in a GP sales order after" in text
    [sandboxes] = started
    orders = sandboxes.gp_sandbox.sales_orders()
    assert sorted(o["CustomerKey"]["Id"] for o in orders) == ["AARONFIT0001", "ALTONMAN0001"]
    [adam] = [a for a in sandboxes.zoho_sandboxes["gp"].records("Accounts") if a["Account_Number"] == "ADAMPARK0001"]
    assert adam["Billing_City"] == "Evanston"
    assert any(line.startswith("│ gl_accounts") and "│    6 │       6 │" in line for line in text.splitlines())
    from mlconnector.sandbox.zoho.modules import MODULES
    assert "GL_Accounts" not in MODULES  # the custom modules are the demo org's own, not every org's


def test_demo_nav_zuora_bills_nav_orders_and_a_callout_brings_the_invoice_to_nav(started) -> None:
    result = CliRunner().invoke(build_app(), ["demo", "nav-zuora", "--seed", "6"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Dynamics NAV and Zuora Billing" in text
    assert "3 record(s) moved, one per edit" in text and "echo of our own write" in text
    assert "Zuora bill run for account" in text and "(Zuora_Invoice_Status) after" in text
    [sandboxes] = started
    zuora, seeded = sandboxes.zuora_sandbox, sandboxes.seeded["nav"]
    assert len(zuora.subscriptions()) == len(seeded.sales_orders) == 2
    assert len(zuora.records("accounts")) == 6 and len(zuora.records("invoices")) == 1
    renamed = sandboxes.dynamics.get(sandboxes.company("nav"), "customers", seeded.customers[1]["number"])
    assert renamed["displayName"] == f"{seeded.customers[1]['displayName']} (Billing)"


def test_demo_refuses_an_unknown_pair() -> None:
    result = CliRunner().invoke(build_app(), ["demo", "sap-zoho"])
    assert result.exit_code == 2
    assert "nav-zoho, bc-zoho, fo-zoho, gp-zoho, nav-zuora" in result.output


def test_sandbox_serve_writes_a_config_that_ping_sync_and_audit_use(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "sandbox.toml"
    proc = subprocess.Popen([*MLCONNECTOR, "sandbox", "serve", "--port", "0", "--seed", "6", "--config-out",
                             str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (config.exists() and "[pairs.nav-zuora]" in config.read_text()):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "sandbox serve wrote no config"
            time.sleep(0.1)
        text = config.read_text()
        assert text.startswith(MARKER)
        for pair in ("nav-zoho", "bc-zoho", "fo-zoho", "gp-zoho", "nav-zuora"):
            assert f"[pairs.{pair}]" in text
        # The config's own [secrets] table must be what is used: no env override, no keyring needed.
        monkeypatch.delenv("MLCONNECTOR_SECRETS_DIR")
        cli = CliRunner()
        ping = cli.invoke(build_app(), ["--config", str(config), "ping"])
        assert ping.exit_code == 0, ping.output
        assert [line.split()[:2] for line in ping.output.splitlines() if line.startswith("ok")] == [
            ["ok", name] for name in ("bc", "fo", "gp", "nav", "zoho", "zoho-bc", "zoho-fo", "zoho-gp", "zuora")]

        def sync(pair: str) -> dict:
            result = cli.invoke(build_app(), ["--config", str(config), "sync", pair, "--json"])
            assert result.exit_code == 0, result.output
            flows = json.loads(result.stdout)["flows"]
            assert sum(f["failed"] for f in flows.values()) == 0, flows
            return flows

        flows = sync("nav-zoho")
        assert flows["customers"]["created"] == 6 and flows["items"]["created"] == 6
        assert flows["invoices"]["created"] == 3 and flows["sales_orders"]["created"] == 2
        # F&O's USMF and GP's Fabrikam are fixed demo companies; nav-zuora bills NAV's customers in Zuora.
        flows = sync("fo-zoho")
        assert (flows["customers"]["created"], flows["products"]["created"], flows["vendors"]["created"]) == (3, 3, 2)
        flows = sync("gp-zoho")
        assert (flows["customers"]["created"], flows["vendors"]["created"], flows["gl_accounts"]["created"],
                flows["journal_entries"]["created"]) == (3, 2, 6, 2)
        flows = sync("nav-zuora")
        assert (flows["customers"]["created"], flows["items"]["created"], flows["sales_orders"]["created"]) == (
            6, 6, 2)

        audit = cli.invoke(build_app(), ["--config", str(config), "audit", "--json", "--limit", "1000"])
        rows = json.loads(audit.stdout)
        created = [r for r in rows if r["flow"] == "customers" and r["action"] == "create"]
        assert {(r["pair"], r["target_system"]) for r in created} == {
            ("nav-zoho", "zoho"), ("fo-zoho", "zoho-fo"), ("gp-zoho", "zoho-gp"),
            ("nav-zuora", "zuora")}
        assert all(r["target_id"] for r in created)
        assert (tmp_path / "sandbox.state.db").exists() and (tmp_path / "sandbox.secrets" / "secrets.key").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "Sandboxes running on 127.0.0.1" in out and "Stopped." in out
    assert "Dynamics GP" in out and "Finance & Operations" in out and "sync nav-zuora" in out
    store = SecretStore(backend="file", directory=tmp_path / "sandbox.secrets", environ={})
    values = [store.get(system, name) for system, name in (("fo", "client_secret"), ("gp", "password"),
                                                           ("zuora", "client_secret"), ("zuora", "callout_password"),
                                                           ("zoho-gp", "refresh_token"))]
    assert all(values)
    shown = out + err + ping.output + audit.output + text
    assert not [v for v in values if v in shown]


def test_sandbox_config_never_overwrites_a_users_file(tmp_path: Path) -> None:
    mine = tmp_path / "connections.toml"
    mine.write_text('[systems.zoho]\nkind = "zoho"\n')
    with sandbox_server.start(("bc",), seed=3) as sandboxes:
        with pytest.raises(ConfigError, match="not written by `mlconnector sandbox serve`"):
            write_sandbox_config(sandboxes, mine)
    assert mine.read_text() == '[systems.zoho]\nkind = "zoho"\n'


def test_seed_is_deterministic_and_documents_add_up() -> None:
    def seeded(seed: int):
        sandbox = create_dynamics().state.dynamics
        company = sandbox.create_company("CRONUS USA, Inc.")
        return sandbox, company, seed_company(sandbox, company, style="bc", seed=seed, size=30)

    sandbox, company, first = seeded(1)
    again, other = seeded(1)[2], seeded(2)[2]
    assert [c["displayName"] for c in first.customers] == [c["displayName"] for c in again.customers]
    assert [c["displayName"] for c in first.customers] != [c["displayName"] for c in other.customers]
    assert len(first.customers) == 30 and len({c["country"] for c in first.customers}) >= 4
    assert all(c["email"] and c["phoneNumber"] and c["city"] for c in first.customers)
    persons = [c for c in first.contacts if c["type"] == "Person"]
    assert persons and len({p["email"] for p in persons}) == len(persons)
    lines = sandbox.records(company, "salesInvoiceLines")
    for invoice in first.invoices:
        assert invoice["status"] in ("Open", "Paid") and invoice["number"].startswith("PS-INV")
        mine = [line for line in lines if line["documentId"] == invoice["id"]]
        # net of the invoice discount BC spreads over the lines
        net = round(sum(line["netAmountIncludingTax"] for line in mine), 2)
        assert mine and invoice["totalAmountIncludingTax"] == net > 0
        expected = invoice["totalAmountIncludingTax"] if invoice["status"] == "Open" else 0
        assert invoice["remainingAmount"] == expected


def test_seed_sizes() -> None:
    assert SeedSize.parse("small").customers == 24 and SeedSize.parse("medium").customers == 60
    assert SeedSize.parse("7").customers == 7
    with pytest.raises(ValueError, match="small, medium or a number"):
        SeedSize.parse("huge")


def test_every_command_has_help_text() -> None:
    import typer.main

    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    root = typer.main.get_command(build_app())
    commands = list(walk(root, []))
    assert {"demo", "sandbox"} <= {path[0] for path, _ in commands if path}
    for path, command in commands:
        assert (command.help or "").strip(), f"`mlconnector {' '.join(path)}` has no help text"
        result = CliRunner().invoke(build_app(), [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
