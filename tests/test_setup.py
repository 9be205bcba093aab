"""`mlconnector setup PAIR [--apply]` against bare orgs (`sandbox serve --bare`): setup lists what is missing with the
fix, sync refuses those flows (exit 2), --apply creates what the vendors' APIs allow, setup then finds all in place,
and sync works. nav-zuora's NAV card fields can only be added by a person (a table extension)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from mlconnector.demo import write_sandbox_config
from mlconnector.sandbox import server as sandbox_server

# pair -> (lines the first check prints, the Zoho org's erp, a flow and the Zoho module it fills)
EXPECTED = {
    "nav-zoho": (["wrong   zoho: Accounts.Account_Number (exists but is not unique)",
                  "missing zoho: Sales_Orders.ERP_Number: create a text field ERP_Number, unique on Sales_Orders"],
                 "nav", "sales_orders", "Sales_Orders"),
    "bc-zoho": (["wrong   zoho: Products.Product_Code (exists but is not unique)",
                 "missing zoho: Invoices.ERP_Number: create a text field ERP_Number, unique on Invoices"],
                "bc", "invoices", "Invoices"),
    "fo-zoho": (["missing zoho: Vendors.ERP_Number: create a text field ERP_Number, unique on Vendors",
                 "manual  fo: Microsoft Entra application in F&O: System administration > Setup"],
                "fo", "vendors", "Vendors"),
    "gp-zoho": (["missing zoho: GL_Accounts (no such custom module): create the custom module GL_Accounts",
                 "missing zoho: Accounts.Credit_Limit: create a currency field Credit_Limit on Accounts",
                 "missing zoho: GL_Journal_Entries.GL_Journal_Id (the module GL_Journal_Entries is missing first)"],
                "gp", "gl_accounts", "GL_Accounts"),
}


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLCONNECTOR_SECRETS_DIR", raising=False)  # the sandbox config's own [secrets] is used
    runner = CliRunner()

    def run(config: Path, *args: str):
        return runner.invoke(build_app(), ["--config", str(config), *args])
    return run


@pytest.mark.parametrize("pair", list(EXPECTED))
def test_a_bare_zoho_org_is_set_up_by_setup_apply_and_then_syncs(pair: str, tmp_path: Path, cli) -> None:
    lines, erp, flow, module = EXPECTED[pair]
    with sandbox_server.start_pairs((pair,), seed=3, bare=True) as running:
        config = write_sandbox_config(running, tmp_path / "sandbox.toml").config_path
        org = running.zoho_sandboxes[erp]

        first = cli(config, "setup", pair)
        assert first.exit_code == 2, first.output
        for line in lines:
            assert line in first.output
        missing = sum(1 for line in first.output.splitlines() if line.startswith(("missing", "wrong")))
        assert f"{missing} missing or wrong; `mlconnector setup {pair} --apply` makes {missing} of them" \
            in first.output

        refused = cli(config, "sync", pair, "--flow", flow)
        assert refused.exit_code == 2
        assert f"{pair} flow {flow} cannot run: zoho: " in refused.output
        assert not org.records(module) if org.spec(module) else True  # nothing was written

        applied = cli(config, "setup", pair, "--apply")
        assert applied.exit_code == 0, applied.output
        assert f"Plan: {missing} change(s) through the vendors' APIs:" in applied.output
        assert f"{missing} change(s) made." in applied.output
        assert applied.output.index("Plan:") < applied.output.index("done by setup")

        again = cli(config, "setup", pair, "--apply")  # idempotent: nothing left to make
        assert again.exit_code == 0 and "done by setup" not in again.output and "Plan:" not in again.output
        assert f"All checked prerequisites of {pair} are in place" in again.output

        synced = cli(config, "sync", pair, "--json")
        assert synced.exit_code == 0, synced.output
        flows = json.loads(synced.stdout)["flows"]
        assert sum(f["failed"] for f in flows.values()) == 0, flows
        if flows[flow]["read"]:
            assert flows[flow]["created"] > 0
        # Zoho itself now has the fields, their uniqueness and the custom modules.
        assert org.schema.field("Accounts", "Account_Number").unique or pair == "fo-zoho" and \
            org.schema.field("Vendors", "ERP_Number").unique
        if pair == "gp-zoho":
            numbers = [r["GL_Account_Number"] for r in org.records("GL_Accounts")]
            assert len(numbers) == flows["gl_accounts"]["created"] == 6 and "000-1100-00" in numbers


def test_setup_never_changes_a_fields_type_and_says_what_is_wrong(tmp_path: Path, cli) -> None:
    with sandbox_server.start_pairs(("nav-zoho",), seed=3, bare=True) as running:
        config = write_sandbox_config(running, tmp_path / "sandbox.toml").config_path
        org = running.zoho_sandboxes["nav"]
        org.add_field("Sales_Orders", "ERP_Number", "integer")
        result = cli(config, "setup", "nav-zoho", "--apply")
        assert result.exit_code == 2
        assert ("wrong   zoho: Sales_Orders.ERP_Number (exists as integer, not text): the field's type cannot be "
                "changed") in result.output
        assert org.schema.field("Sales_Orders", "ERP_Number").data_type == "integer"
        refused = cli(config, "sync", "nav-zoho", "--flow", "sales_orders")
        assert refused.exit_code == 2 and "exists as integer" in refused.output
        assert cli(config, "sync", "nav-zoho", "--flow", "customers").exit_code == 0  # other flows still run


def test_nav_zuora_lists_the_nav_card_fields_only_a_partner_can_add(tmp_path: Path, cli) -> None:
    with sandbox_server.start_pairs(("nav-zuora",), seed=3, bare=True) as running:
        config = write_sandbox_config(running, tmp_path / "sandbox.toml").config_path
        result = cli(config, "setup", "nav-zuora", "--apply")
        assert result.exit_code == 2
        assert "missing nav: customers.Zuora_Invoice_Status (customers has no field Zuora_Invoice_Status): " \
               "add a Text field Zuora_Invoice_Status to the Customer table" in result.output
        assert "manual  zuora: Account.NAVCustomerNumber__c: in Zuora, Settings > Billing > Manage Custom Fields" \
            in result.output
        assert "Plan:" not in result.output  # nothing here can be made through an API
        refused = cli(config, "sync", "nav-zuora")
        assert refused.exit_code == 2 and "flow account_ids cannot run" in refused.output
        # The partner's table and page extension, then setup finds it and sync runs.
        fields = sandbox_server.NAV_STATUS_FIELDS
        running.dynamics.extend_table("customers", {name: "string" for name in fields.values()})
        running.dynamics.extend_page("Customer", fields)
        assert cli(config, "setup", "nav-zuora").exit_code == 0
        synced = cli(config, "sync", "nav-zuora", "--json")
        assert synced.exit_code == 0, synced.output
        assert json.loads(synced.stdout)["flows"]["customers"]["created"] == 3


@pytest.mark.parametrize("pair", [*EXPECTED, "nav-zuora"])
def test_the_default_sandbox_orgs_need_nothing(pair: str, tmp_path: Path, cli) -> None:
    with sandbox_server.start_pairs((pair,), seed=3) as running:
        config = write_sandbox_config(running, tmp_path / "sandbox.toml").config_path
        result = cli(config, "setup", pair)
        assert result.exit_code == 0, result.output
        assert "missing" not in result.output and f"All checked prerequisites of {pair} are in place" in result.output
