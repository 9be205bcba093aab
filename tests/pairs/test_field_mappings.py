"""Field mappings and filters as configuration (`[pairs.NAME.mappings.FLOW]`), end to end: the emulated NAV, BC and
Zoho, the real connectors and engine, assertions on the records the target holds, the audit, run summaries and exit
codes. Custom fields are made as the vendors make them: a NAV table and page extension, a Zoho custom field. The
tests on the ``nav`` and ``bc`` worlds run with the state in the SQLite file and in PostgreSQL (``state_store``)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from tests.pairs.world import World, make_world


def configure(world: World, text: str) -> None:
    """The world's connections.toml with ``text`` (mapping tables) after it, replacing what an earlier call added."""
    base = world.config_path.read_text().split("\n# mappings\n")[0]
    world.config_path.write_text(base + "\n# mappings\n" + text)


def cli(world: World, *args: str):
    return CliRunner().invoke(build_app(), ["--config", str(world.config_path), *args], obj=world.runtime())


def zoho_account(world: World, number: str) -> dict:
    return world.account(number)


def erp_customer(world: World, number: str) -> dict:
    [found] = [c for c in world.erp("customers") if c["number"] == number]
    return found


def audited(world: World, run, flow: str) -> list[dict]:
    with world.state() as state:
        return [r for r in state.audit_rows(run=run.run_id, limit=None) if r["flow"] == flow]


@pytest.fixture
def nav(tmp_path, monkeypatch, state_store):
    made = make_world(tmp_path, monkeypatch, "nav")
    yield made
    made.close()


@pytest.fixture
def bc(tmp_path, monkeypatch, state_store):
    made = make_world(tmp_path, monkeypatch, "bc")
    yield made
    made.close()


# -- a custom field both ways ---------------------------------------------------------------------------------------

def test_a_custom_field_of_each_side_travels_both_ways_in_nav_zoho(nav: World):
    # NAV: a table extension with an industry code, shown on the Customer card page published as "Customer".
    nav.dynamics.extend_table("customers", {"industryCode": "string"})
    nav.dynamics.extend_page("Customer", {"Industry_Code": "industryCode"})
    nav.dynamics.modify(nav.company, "customers", "C00010", industryCode="RETAIL")
    # Zoho: a custom field on Accounts (Setup > Modules and Fields).
    nav.zoho.add_field("Accounts", "Customer_Industry")
    configure(nav, '''
[pairs.nav-zoho.mappings.customers]
add = { Customer_Industry = "Industry_Code" }

[pairs.nav-zoho.mappings.accounts_to_customers]
add = { Industry_Code = "Customer_Industry" }
''')

    first = nav.sync("nav-zoho")
    assert first.exit_code == 0, first.to_dict()
    assert zoho_account(nav, "C00010")["Customer_Industry"] == "RETAIL"
    assert zoho_account(nav, "C00020").get("Customer_Industry") is None  # nothing to carry: left alone

    nav.zoho.edit("Accounts", zoho_account(nav, "C00020")["id"], Customer_Industry="FOOD")
    back = nav.sync("nav-zoho")
    assert back.exit_code == 0, back.to_dict()
    assert back.flows["accounts_to_customers"].updated == 1
    assert erp_customer(nav, "C00020")["industryCode"] == "FOOD"

    # Our own write read back is an echo, and nothing else moved.
    again = nav.sync("nav-zoho")
    assert all(s.created == s.updated == 0 for s in again.flows.values()), again.to_dict()
    assert zoho_account(nav, "C00020")["Customer_Industry"] == "FOOD"


# -- override, drop and every transform -----------------------------------------------------------------------------

def test_override_drop_and_each_transform_shape_what_zoho_receives(bc: World):
    bc.dynamics.modify(bc.company, "customers", "C00010", website="www.adatum.example", creditLimit=12500.6)
    bc.zoho.add_field("Accounts", "Last_Change")
    bc.zoho.add_field("Accounts", "Credit_Score", "double")
    configure(bc, '''
[pairs.bc-zoho.mappings.customers]
drop = ["Website"]
override = { Billing_City = { from = "city", case = "upper" } }
transform = { Account_Name = { trim = true, case = "lower", truncate = 8 } }

[pairs.bc-zoho.mappings.customers.add]
Account_Site = { concat = ["city", "state"], separator = ", " }
Ticker_Symbol = { constant = "ERP" }
Industry = { from = "country", lookup = { US = "Retail" } }
Rating = { from = "state", picklist = { GA = "Active", IL = "Market Failed" } }
Description = { from = "salespersonCode", default = "no salesperson" }
Credit_Score = { from = "creditLimit", decimals = 0 }
Last_Change = { from = "lastModifiedDateTime", date_format = "%d.%m.%Y" }
''')

    result = bc.sync("bc-zoho", flows=["customers"])

    adatum = zoho_account(bc, "C00010")
    source = erp_customer(bc, "C00010")
    assert adatum["Account_Name"] == "adatum c"                      # trim, lower, truncate
    assert adatum["Billing_City"] == "ATLANTA"                       # override, upper
    assert "Website" not in adatum or adatum["Website"] is None      # dropped
    assert adatum["Account_Site"] == "Atlanta, GA"                   # concat
    assert adatum["Ticker_Symbol"] == "ERP"                          # constant
    assert adatum["Industry"] == "Retail"                            # lookup
    assert adatum["Rating"] == "Active"                              # picklist
    assert adatum["Description"] == "no salesperson"                 # default when empty
    assert adatum["Credit_Score"] == 12501                           # decimals
    stamp = datetime.fromisoformat(source["lastModifiedDateTime"].replace("Z", "+00:00"))
    assert adatum["Last_Change"] == stamp.strftime("%d.%m.%Y")       # date_format
    assert zoho_account(bc, "C00020")["Rating"] == "Market Failed"
    # A value the picklist map does not hold fails its record, naming the value (and the run exits 3).
    assert result.exit_code == 3 and result.flows["customers"].failed == 1
    with bc.state() as state:
        [failed] = state.audit_rows(status="failed", limit=None)
    assert "Rating: 'FL' is not in its picklist map (GA, IL)" in failed["error"]


# -- a filter --------------------------------------------------------------------------------------------------------

def test_a_filter_leaves_records_out_and_a_changed_filter_deletes_nothing(bc: World):
    configure(bc, '''
[pairs.bc-zoho.mappings.customers]
filter = { city = { in = ["Atlanta", "Chicago"] } }
''')
    first = bc.sync("bc-zoho", flows=["customers"])
    assert first.exit_code == 0, first.to_dict()
    assert sorted(a["Account_Number"] for a in bc.crm("Accounts")) == ["C00010", "C00020"]
    assert first.flows["customers"].skip_reasons == {"left out by the filter: city in ['Atlanta', 'Chicago']": 1}
    [row] = [r for r in audited(bc, first, "customers") if r["action"] == "skip"]
    assert row["source_id"] == erp_customer(bc, "C00030")["id"]
    assert row["note"] == "skipped: left out by the filter: city in ['Atlanta', 'Chicago']"

    # Narrower now: Chicago is out, and so is every customer without a phone. Trey's account, linked before, stays
    # in Zoho as it is: a filter change alone deletes nothing.
    configure(bc, '''
[pairs.bc-zoho.mappings.customers]
filter = { city = { not_in = ["Chicago"] }, phoneNumber = { is_set = true } }
''')
    bc.dynamics.modify(bc.company, "customers", "C00020", phoneNumber="+1 312 555 0100", city="Evanston")
    bc.dynamics.modify(bc.company, "customers", "C00030", displayName="School of Fine Arts")
    second = bc.sync("bc-zoho", flows=["customers"])
    assert second.exit_code == 0, second.to_dict()
    reasons = second.flows["customers"].skip_reasons
    assert reasons == {"left out by the filter: phoneNumber is set": 1}, second.to_dict()
    assert zoho_account(bc, "C00020")["Billing_City"] == "Evanston"  # matches now: synced
    assert sorted(a["Account_Number"] for a in bc.crm("Accounts")) == ["C00010", "C00020"]
    assert not bc.zoho.calls.get("records.delete") and not bc.zoho.calls.get("records.add_tags")


def test_reconcile_compares_what_the_configured_mapping_writes_and_calls_a_left_out_record_no_loss(bc: World):
    assert bc.sync("bc-zoho", flows=["customers"]).exit_code == 0
    configure(bc, '''
[pairs.bc-zoho.mappings.customers]
transform = { Billing_City = { case = "upper" } }
filter = { city = { not_in = ["Chicago"] } }
''')
    before = cli(bc, "reconcile", "bc-zoho", "--flow", "customers", "--json")
    report = json.loads(before.stdout)["flows"]["customers"]
    assert before.exit_code == 6 and report["left_out"] == 1
    assert sorted((r["kind"], r["key"]) for r in report["records"]) == [("differs", "C00010"), ("differs", "C00030")]

    assert bc.sync("bc-zoho", flows=["customers"]).flows["customers"].updated == 2
    after = cli(bc, "reconcile", "bc-zoho", "--flow", "customers", "--json")
    assert after.exit_code == 0, after.stdout  # Trey's account, left out now, is neither gone nor an orphan


# -- a mapping change -----------------------------------------------------------------------------------------------

def test_a_changed_mapping_updates_exactly_the_affected_records_on_the_next_run(bc: World):
    assert bc.sync("bc-zoho").exit_code == 0
    before = {a["Account_Number"]: a for a in bc.crm("Accounts")}
    assert not audited(bc, bc.sync("bc-zoho"), "customers")  # nothing changed: every record seen before

    configure(bc, '''
[pairs.bc-zoho.mappings.customers]
transform = { Billing_City = { lookup = { Atlanta = "ATL" } } }
''')
    planned = bc.sync("bc-zoho", dry_run=True)
    assert planned.flows["customers"].updated == 1 and planned.flows["customers"].unchanged == 2
    assert [p.source_id for p in planned.planned if p.flow == "customers"] == [erp_customer(bc, "C00010")["id"]]
    assert planned.estimated_calls["zoho"] >= 1  # the write it would make, with the reads
    shown = json.loads(cli(bc, "sync", "bc-zoho", "--flow", "customers", "--dry-run", "--json").stdout)
    assert shown["flows"]["customers"]["updated"] == 1 and shown["estimated_calls"]["zoho"] >= 1
    assert zoho_account(bc, "C00010")["Billing_City"] == "Atlanta"  # a dry run writes nothing

    run = bc.sync("bc-zoho")  # no --full
    assert run.exit_code == 0, run.to_dict()
    customers = run.flows["customers"]
    assert (customers.read, customers.updated, customers.unchanged) == (3, 1, 2)
    assert all(s.updated == s.created == 0 for name, s in run.flows.items() if name != "customers")
    after = {a["Account_Number"]: a for a in bc.crm("Accounts")}
    assert after["C00010"]["Billing_City"] == "ATL"
    assert after["C00020"]["Modified_Time"] == before["C00020"]["Modified_Time"]
    assert after["C00030"]["Modified_Time"] == before["C00030"]["Modified_Time"]
    with bc.state() as state:
        rows = [r for r in state.audit_rows(run=run.run_id, limit=None) if r["action"] == "update"]
    assert [r["record_key"] for r in rows] == ["C00010"]

    # Once mapped with the new table, the flow is incremental again: records read through the overlap are known as
    # seen (no audit row), not mapped again.
    assert not audited(bc, bc.sync("bc-zoho"), "customers")


# -- validation ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("table, message", [
    ('[pairs.bc-zoho.mappings.customers]\ntransform = { Phone = { squash = true } }',
     "pairs.bc-zoho.mappings.customers.transform.Phone: unknown transform 'squash'"),
    ('[pairs.bc-zoho.mappings.customers]\nadd = { Customer_Tier = "x" }\noverride = { Customer_Tier = "y" }',
     "pairs.bc-zoho.mappings.customers.override.Customer_Tier: two mappings onto one target field"),
    ('[pairs.bc-zoho.mappings.customers]\nadd = { Phone = "mobilePhoneNumber" }',
     "pairs.bc-zoho.mappings.customers.add.Phone: two mappings onto one target field (bc-zoho maps Phone from "
     "phoneNumber); use override"),
    ('[pairs.bc-zoho.mappings.customers]\noverride = { Account_Number = "displayName" }',
     "pairs.bc-zoho.mappings.customers.override.Account_Number: Account_Number is the key field of flow customers"),
    ('[pairs.bc-zoho.mappings.customers]\ntransform = { Phone = { truncate = 0 } }',
     "pairs.bc-zoho.mappings.customers.transform.Phone.truncate = 0: a whole number of characters, 1 or more"),
    ('[pairs.bc-zoho.mappings.customers]\nadd = { Rating = { from = "state", case = "title" } }',
     "pairs.bc-zoho.mappings.customers.add.Rating.case = 'title': \"upper\" or \"lower\""),
    ('[pairs.bc-zoho.mappings.customers]\nadd = { Rating = { from = "state", constant = "A" } }',
     "pairs.bc-zoho.mappings.customers.add.Rating: give exactly one of from, concat, constant"),
    ('[pairs.bc-zoho.mappings.customers]\noverride = { Fax = "phoneNumber" }',
     "pairs.bc-zoho.mappings.customers.override.Fax: bc-zoho does not map Fax in flow customers"),
    ('[pairs.bc-zoho.mappings.customers]\nfilter = { city = { like = "A%" } }',
     "pairs.bc-zoho.mappings.customers.filter.city: a value, a list of values, or a table with one of equals"),
    ('[pairs.bc-zoho.mappings.orders]\ndrop = ["Phone"]',
     "pairs.bc-zoho.mappings.orders: bc-zoho has no flow 'orders'"),
])
def test_each_wrong_mapping_is_one_line_naming_pair_flow_and_field_and_exit_2(bc: World, table: str, message: str):
    configure(bc, table)
    writes = sum(bc.zoho.calls.values())

    shown = cli(bc, "mappings", "bc-zoho")
    ran = cli(bc, "sync", "bc-zoho")

    for result in (shown, ran):
        assert result.exit_code == 2, result.output
        [line] = [line for line in result.stderr.splitlines() if line.strip()]
        assert line.startswith("error: ") and message in line, line
    assert sum(bc.zoho.calls.values()) == writes  # nothing was sent


def test_setup_finds_an_added_field_the_target_lacks_and_makes_it(bc: World):
    bc.config_path.write_text(re.sub(r"notify_url = .*\n", "", bc.config_path.read_text()))  # no listener here
    configure(bc, '''
[pairs.bc-zoho.mappings.customers]
add = { Customer_Tier = { from = "state", truncate = 20 }, Ticker_Symbol = { from = "creditLimit", decimals = 0 } }
transform = { Account_Name = { truncate = 250 } }
''')
    first = cli(bc, "setup", "bc-zoho")
    assert first.exit_code == 2
    assert "wrong   zoho: Accounts.Ticker_Symbol (exists as text, not double): pairs.bc-zoho.mappings.customers " \
           "writes Ticker_Symbol (a number: decimals)" in first.output
    assert "missing zoho: Accounts.Customer_Tier: create a text field Customer_Tier on Accounts" in first.output
    assert "wrong   zoho: Accounts.Account_Name (holds 200 characters, the mapping truncates to 250): set " \
           "truncate = 200" in first.output
    refused = cli(bc, "sync", "bc-zoho", "--flow", "customers")
    assert refused.exit_code == 2 and "Customer_Tier" in refused.output + refused.stderr
    assert not bc.crm("Accounts")

    configure(bc, '''
[pairs.bc-zoho.mappings.customers]
add = { Customer_Tier = { from = "state", truncate = 20 } }
''')
    applied = cli(bc, "setup", "bc-zoho", "--apply")
    assert applied.exit_code == 0, applied.output
    assert cli(bc, "sync", "bc-zoho", "--flow", "customers").exit_code == 0
    assert zoho_account(bc, "C00010")["Customer_Tier"] == "GA"


def test_setup_names_a_misspelt_zoho_source_field_and_a_nav_field_no_page_extension_shows(nav: World):
    nav.config_path.write_text(re.sub(r"notify_url = .*\n", "", nav.config_path.read_text()))  # no listener here
    configure(nav, '''
[pairs.nav-zoho.mappings.accounts_to_customers]
add = { Industry_Code = "Custmer_Industry" }
''')
    found = cli(nav, "setup", "nav-zoho")
    assert found.exit_code == 2
    assert "missing zoho: Accounts.Custmer_Industry (no such field): pairs.nav-zoho.mappings.accounts_to_customers " \
           "reads Custmer_Industry" in found.output
    assert "missing nav: customers.Industry_Code (customers has no field Industry_Code)" in found.output
    refused = cli(nav, "sync", "nav-zoho", "--flow", "accounts_to_customers")
    assert refused.exit_code == 2

    nav.zoho.add_field("Accounts", "Custmer_Industry")
    nav.dynamics.extend_table("customers", {"industryCode": "string"})
    nav.dynamics.extend_page("Customer", {"Industry_Code": "industryCode"})
    assert cli(nav, "setup", "nav-zoho").exit_code == 0
    assert cli(nav, "sync", "nav-zoho").exit_code == 0


# -- the effective table ---------------------------------------------------------------------------------------------

def test_mappings_prints_the_effective_table_with_where_each_line_comes_from(bc: World):
    configure(bc, '''
[pairs.bc-zoho.mappings.customers]
add = { Customer_Tier = { from = "state", lookup = { GA = "Gold" } } }
override = { Phone = "mobilePhoneNumber" }
drop = ["Website"]
filter = { country = "US" }
''')
    table = cli(bc, "mappings", "bc-zoho", "--flow", "customers")
    assert table.exit_code == 0, table.output
    rows = {line.split()[1]: line for line in table.output.splitlines()[1:]}
    assert "displayName" in rows["Account_Name"] and rows["Account_Name"].rstrip().endswith("pair")
    assert "mobilePhoneNumber" in rows["Phone"] and "config (override)" in rows["Phone"]
    assert "config (drop)" in rows["Website"] and "config (add)" in rows["Customer_Tier"]
    assert "the record's key" in rows["Account_Number"]
    assert "country equals 'US'" in table.output

    data = json.loads(cli(bc, "mappings", "bc-zoho", "--json").stdout)
    # every flow of the pair, its optional ones too (vendors, purchase_orders: run only when named)
    assert {line["flow"] for line in data} == {"customers", "items", "contacts", "invoices", "vendors",
                                               "purchase_orders"}
    [tier] = [line for line in data if line["target"] == "Customer_Tier"]
    assert tier == {"flow": "customers", "target": "Customer_Tier", "source": "state",
                    "transforms": ['lookup={"GA": "Gold"}'], "from": "config", "change": "add"}
    [phone] = [line for line in data if line["flow"] == "items" and line["target"] == "Unit_Price"]
    assert phone["from"] == "pair" and phone["source"] == "unitPrice"


def test_a_changed_mapping_reaches_records_the_other_side_wrote_last_but_never_over_a_newer_edit(nav: World):
    assert nav.sync("nav-zoho").exit_code == 0
    # Zoho edits two accounts; the next run writes them to NAV, where they are now our own echo.
    nav.zoho.edit("Accounts", zoho_account(nav, "C00030")["id"], Billing_City="Orlando")
    nav.zoho.edit("Accounts", zoho_account(nav, "C00020")["id"], Billing_City="Evanston")
    assert nav.sync("nav-zoho").flows["accounts_to_customers"].updated == 2
    assert erp_customer(nav, "C00030")["city"] == "Orlando"
    # Since then Zoho edited one of them again (the next run carries it to NAV, after the customers flow).
    nav.zoho.edit("Accounts", zoho_account(nav, "C00020")["id"], Billing_City="Skokie")

    configure(nav, '''
[pairs.nav-zoho.options]
conflict_rule = "source-wins"    # even so: an edit the other side has not carried yet is never written over

[pairs.nav-zoho.mappings.customers]
transform = { Billing_City = { case = "upper" } }
''')
    run = nav.sync("nav-zoho")

    assert run.exit_code == 0, run.to_dict()
    assert zoho_account(nav, "C00030")["Billing_City"] == "ORLANDO"
    assert zoho_account(nav, "C00010")["Billing_City"] == "ATLANTA"
    assert zoho_account(nav, "C00020")["Billing_City"] == "Skokie"  # Zoho's newer edit is not written over ...
    assert erp_customer(nav, "C00020")["city"] == "Skokie"          # ... and reaches NAV
    assert run.flows["customers"].updated == 2


def test_mappings_without_a_configuration_shows_the_pairs_own_lines(tmp_path):
    shown = CliRunner().invoke(build_app(), ["--config", str(tmp_path / "none.toml"), "mappings", "nav-zoho",
                                             "--flow", "contacts_to_nav", "--json"])
    assert shown.exit_code == 0, shown.output
    lines = json.loads(shown.stdout)
    assert {line["from"] for line in lines} == {"pair"}
    assert {"target": "email", "source": "Email"}.items() <= [l for l in lines if l["target"] == "email"][0].items()
    unknown = CliRunner().invoke(build_app(), ["--config", str(tmp_path / "none.toml"), "mappings", "nav-zoho",
                                               "--flow", "orders"])
    assert unknown.exit_code == 2 and "has no flow 'orders'" in unknown.stderr


def test_the_documented_nav_zoho_example_runs_as_written(tmp_path, monkeypatch):
    import tomllib

    import tomli_w

    world = make_world(tmp_path, monkeypatch, "nav")
    try:
        documented = (Path(__file__).parents[2] / "docs" / "mappings.md").read_text()
        [block] = [b for b in re.findall(r"```toml\n(.*?)```", documented, re.S)
                   if "[pairs.nav-zoho.mappings.customers]" in b]
        tables = {"pairs": {"nav-zoho": {"mappings": tomllib.loads(block)["pairs"]["nav-zoho"]["mappings"]}}}
        # What the example assumes NAV and Zoho hold: the extension field on the Customer card, the custom field.
        world.dynamics.extend_table("customers", {"industryCode": "string"})
        world.dynamics.extend_page("Customer", {"Industry_Code": "industryCode"})
        world.zoho.add_field("Accounts", "Customer_Industry")
        world.dynamics.modify(world.company, "customers", "C00010", industryCode="RETAIL", customerPriceGroup="RETAIL")
        world.dynamics.modify(world.company, "customers", "C00030", customerPostingGroup="FOREIGN")
        configure(world, tomli_w.dumps(tables))

        # (C00030's posted invoice waits for its customer, left out by the filter: the invoices flow is not run.)
        run = world.sync("nav-zoho", flows=["customers", "accounts_to_customers"])
        assert run.exit_code == 0, run.to_dict()
        accounts = {a["Account_Number"]: a for a in world.crm("Accounts") if a.get("Account_Number")}
        assert "C00030" not in accounts and {"C00010", "C00020"} <= set(accounts)  # only domestic customers
        assert accounts["C00010"]["Customer_Industry"] == "RETAIL" and accounts["C00010"]["Rating"] == "Active"
        assert accounts["C00020"]["Rating"] == "-None-"
    finally:
        world.close()
