"""The fields configured mappings name, checked against each system's own field list before a run writes anything:
a source field a mapping or filter reads, per kind of source (NAV's and BC's $metadata, F&O's $metadata, Zuora's
Describe, GP's records, Zoho's Fields Metadata), and a target field deleted after setup. One line naming pair, flow
and field, exit 2, nothing written; a run soon after a good check asks no metadata."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from tests.pairs.fo_world import make_fo_world
from tests.pairs.gp_world import make_gp_world
from tests.pairs.world import World, make_world
from tests.pairs.zuora_world import make_zuora_world


def configure(config_path: Path, text: str) -> None:
    """The world's connections.toml with ``text`` (mapping tables) after it, replacing what an earlier call added."""
    base = config_path.read_text().split("\n# mappings\n")[0]
    config_path.write_text(base + "\n# mappings\n" + text)


def cli(world, *args: str):
    return CliRunner().invoke(build_app(), ["--config", str(world.config_path), *args], obj=world.runtime())


def refused(world, pair: str, *args: str) -> str:
    """`mlconnector sync PAIR` refused: exit 2 and the one line it printed."""
    result = cli(world, "sync", pair, *args)
    assert result.exit_code == 2, result.output
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: "), line
    return line[len("error: "):]


@pytest.fixture
def nav(tmp_path, monkeypatch):
    made = make_world(tmp_path, monkeypatch, "nav")
    made.dynamics.extend_table("customers", {"industryCode": "string"})
    made.dynamics.extend_page("Customer", {"Industry_Code": "industryCode"})  # an extension's field on the page
    made.zoho.add_field("Accounts", "Customer_Industry")
    yield made
    made.close()


# -- an unknown source field, per kind of source --------------------------------------------------------------------

def test_nav_a_page_extension_field_is_known_and_a_misspelt_one_stops_the_run(nav: World):
    nav.config_path.write_text(re.sub(r"notify_url = .*\n", "", nav.config_path.read_text()))  # no listener here
    configure(nav.config_path, '[pairs.nav-zoho.mappings.customers]\nadd = { Customer_Industry = "Industry_Cod" }\n')
    assert refused(nav, "nav-zoho") == (
        "pairs.nav-zoho.mappings.customers reads Industry_Cod, which nav's customers does not have (did you mean "
        "Industry_Code?): correct the name (the API name, as the system's field list shows it)")
    assert not nav.crm("Accounts")  # nothing was written
    setup = cli(nav, "setup", "nav-zoho")
    assert setup.exit_code == 2
    assert "missing nav: customers.Industry_Cod (customers has no field Industry_Cod; did you mean Industry_Code?): " \
           "pairs.nav-zoho.mappings.customers reads Industry_Cod" in setup.output

    nav.dynamics.modify(nav.company, "customers", "C00010", industryCode="RETAIL")
    configure(nav.config_path, '[pairs.nav-zoho.mappings.customers]\nadd = { Customer_Industry = "Industry_Code" }\n'
                               'filter = { Bill_to_Customer_No = { is_set = false } }\n')  # a page-only control
    assert cli(nav, "setup", "nav-zoho").exit_code == 0  # setup's findings stand until it finds them fixed
    result = nav.sync("nav-zoho", flows=["customers"])
    assert result.exit_code == 0, result.to_dict()
    assert nav.account("C00010")["Customer_Industry"] == "RETAIL"


def test_a_zoho_source_field_the_org_lacks_stops_the_run(nav: World):
    configure(nav.config_path, '[pairs.nav-zoho.mappings.accounts_to_customers]\n'
                               'add = { Industry_Code = "Customer_Industy" }\n')
    line = refused(nav, "nav-zoho", "--flow", "accounts_to_customers")
    assert line.startswith("pairs.nav-zoho.mappings.accounts_to_customers reads Customer_Industy, which zoho's "
                           "Accounts does not have (did you mean Customer_Industry?)"), line


def test_bc_api_names_its_own_fields_only(tmp_path, monkeypatch):
    bc = make_world(tmp_path, monkeypatch, "bc")
    try:
        configure(bc.config_path, '[pairs.bc-zoho.mappings.customers]\noverride = { Phone = "phoneNumbr" }\n')
        assert refused(bc, "bc-zoho").startswith(
            "pairs.bc-zoho.mappings.customers reads phoneNumbr, which bc's customers does not have (did you "
            "mean phoneNumber?)")
        # A table extension's field: API v2.0's standard pages do not show it, so no BC read could carry it.
        bc.dynamics.extend_table("customers", {"industryCode": "string"})
        configure(bc.config_path, '[pairs.bc-zoho.mappings.customers]\nfilter = { industryCode = "RETAIL" }\n')
        assert refused(bc, "bc-zoho").startswith(
            "pairs.bc-zoho.mappings.customers reads industryCode, which bc's customers does not have")
        assert not bc.crm("Accounts")
    finally:
        bc.close()


def test_fo_a_misspelt_entity_field_stops_the_run(tmp_path, monkeypatch):
    fo = make_fo_world(tmp_path, monkeypatch)
    try:
        fo.zoho.add_field("Accounts", "Customer_Group")
        configure(fo.config_path, '[pairs.fo-zoho.mappings.customers]\n'
                                  'add = { Customer_Group = { concat = ["CustomerAccount", "CustomerGroupID"] } }\n')
        assert refused(fo, "fo-zoho").startswith(
            "pairs.fo-zoho.mappings.customers reads CustomerGroupID, which fo's CustomersV3 does not have (did you "
            "mean CustomerGroupId?)")
        assert not fo.crm("Accounts")
    finally:
        fo.close()


def test_zuora_knows_a_custom_field_once_it_is_made(tmp_path, monkeypatch):
    zuora = make_zuora_world(tmp_path, monkeypatch, zuora_settings='account_match = "company_name"\n')
    try:
        configure(zuora.config_path, '[pairs.nav-zuora.mappings.accounts_to_customers]\n'
                                     'filter = { Region__c = { is_set = true } }\n')
        assert refused(zuora, "nav-zuora", "--flow", "accounts_to_customers").startswith(
            "pairs.nav-zuora.mappings.accounts_to_customers reads Region__c, which zuora's accounts does not have")
        zuora.zuora.add_custom_field("accounts", "Region__c")  # Settings > Billing > Manage Custom Fields
        assert zuora.sync(flows=["accounts_to_customers"]).exit_code == 0
        assert zuora.zuora.calls["describe"] == 2  # Account described once a run
    finally:
        zuora.close()


def test_gp_a_field_its_records_do_not_carry_stops_the_run(tmp_path, monkeypatch):
    gp = make_gp_world(tmp_path, monkeypatch)
    try:
        gp.zoho.add_field("Accounts", "Account_Short")
        configure(gp.config_path, '[pairs.gp-zoho.mappings.customers]\nadd = { Account_Short = "shortname" }\n')
        assert refused(gp, "gp-zoho", "--flow", "customers").startswith(
            "pairs.gp-zoho.mappings.customers reads shortname, which gp's customers does not have (did you mean "
            "shortName?)")
        assert not gp.crm("Accounts")
    finally:
        gp.close()


# -- a target field gone after setup; the check's cost ---------------------------------------------------------------

def test_a_nav_field_gone_after_setup_stops_the_next_run_before_anything_is_written(nav: World):
    nav.config_path.write_text(re.sub(r"notify_url = .*\n", "", nav.config_path.read_text()))  # no listener here
    configure(nav.config_path, '[pairs.nav-zoho.mappings.accounts_to_customers]\n'
                               'add = { Industry_Code = "Customer_Industry" }\n')
    setup = cli(nav, "setup", "nav-zoho")
    assert setup.exit_code == 0, setup.output
    nav.dynamics.publish_page("Customer", "Customer")  # the page extension uninstalled: its control is gone
    before = nav.erp("customers")

    assert refused(nav, "nav-zoho") == (
        "pairs.nav-zoho.mappings.accounts_to_customers writes Industry_Code, which nav's customers does not have: "
        "add it to customers (in NAV or BC a table extension and a page extension, elsewhere a custom field), or "
        "change the mapping")
    assert not nav.crm("Accounts") and nav.erp("customers") == before


def test_a_run_soon_after_a_good_check_asks_no_metadata_until_a_day_passes_or_the_mappings_change(nav: World):
    both_ways = ('[pairs.nav-zoho.mappings.customers]\nadd = { Customer_Industry = "Industry_Code" }\n\n'
                 '[pairs.nav-zoho.mappings.accounts_to_customers]\nadd = { Industry_Code = "Customer_Industry" }\n')
    configure(nav.config_path, both_ways)

    def metadata_calls() -> tuple[int, int]:
        return nav.dynamics.call_count(path_contains="$metadata"), nav.zoho.calls["settings.fields"]

    assert nav.sync("nav-zoho").exit_code == 0
    assert metadata_calls() == (1, 1)  # two flows, both systems' entities asked once
    assert nav.sync("nav-zoho").exit_code == 0
    assert metadata_calls() == (1, 1)  # checked an instant ago: not asked again

    with nav.state() as state:  # a day later, a flow is checked again
        digest, checked = state.field_check("nav-zoho", "customers")
        state.set_field_check("nav-zoho", "customers", digest, checked - timedelta(hours=24))
    assert nav.sync("nav-zoho").exit_code == 0
    assert metadata_calls() == (2, 2)

    configure(nav.config_path, both_ways + 'filter = { Customer_Industry = { is_set = true } }\n')
    assert nav.sync("nav-zoho").exit_code == 0
    assert metadata_calls() == (3, 3)  # a changed mapping is checked again


def test_reconcile_replay_and_listen_process_check_the_mapped_fields_as_a_sync_does(nav: World):
    from mlconnector import api
    from mlconnector.errors import ConfigError
    from mlconnector.state import Replay

    configure(nav.config_path, '[pairs.nav-zoho.mappings.accounts_to_customers]\n'
                               'add = { Industry_Code = "Customer_Industry" }\n')
    assert nav.sync("nav-zoho", flows=["customers"]).exit_code == 0  # the Accounts made; the mapped flow unchecked
    nav.dynamics.publish_page("Customer", "Customer")  # the page extension uninstalled: its control is gone
    with nav.state() as state:  # a record waits for replay in the flow whose mapping writes the field
        state.queue_replays("nav-zoho", "accounts_to_customers", [Replay(
            nav.account("C00010")["id"], "zoho", "Accounts", "remote", "a 503", "run-1")])
    says = "pairs.nav-zoho.mappings.accounts_to_customers writes Industry_Code, which nav's customers does not have"
    before = nav.erp("customers")

    for command in (["reconcile", "nav-zoho", "--fix", "--now"], ["replay", "--pair", "nav-zoho"]):
        result = cli(nav, *command)
        assert result.exit_code == 2 and says in result.stderr, (command, result.output)
    with pytest.raises(ConfigError, match=says):  # what `listen --process` runs for each notified pair
        api.drain(nav.runtime(), "nav-zoho")
    assert nav.erp("customers") == before
