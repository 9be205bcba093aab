"""`mlconnector reconcile PAIR`: both systems read whole and compared, record by record and (documents) as totals by
month; drift planted through the vendors' APIs is found and named, `--fix` queues what writing again settles, and
once it is written the two sides agree (exit 0) again."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from mlconnector.errors import EXIT_DISAGREE
from tests.pairs.users import ZohoUser
from tests.pairs.world import make_world


def cli(world, *args: str):
    return CliRunner().invoke(build_app(), list(args), obj=world.runtime())


def reconciled(world, pair: str, *args: str) -> tuple[int, dict]:
    ran = cli(world, "reconcile", pair, "--json", *args)
    return ran.exit_code, json.loads(ran.stdout)


def kinds(report: dict, flow: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for record in report["flows"][flow]["records"]:
        found.setdefault(record["kind"], []).append(record["key"])
    return found


def test_drift_planted_in_zoho_is_found_fixed_and_then_both_sides_agree(tmp_path, monkeypatch):
    world = make_world(tmp_path, monkeypatch, "bc")
    try:
        assert cli(world, "sync", "bc-zoho").exit_code == 0
        code, report = reconciled(world, "bc-zoho")
        assert code == 0 and report["agrees"], report
        zoho = world.zoho_user()
        # Someone edits an account in Zoho, deletes another and the invoice, creates an account of their own; a new
        # BC item is entered by hand in Zoho before any run carried it over.
        zoho.edit("Accounts", world.account("C00020")["id"], Billing_City="Nowhere")
        zoho.delete("Accounts", world.account("C00030")["id"])
        [invoice] = world.crm("Invoices")
        zoho.delete("Invoices", invoice["id"])
        stray = zoho.create("Accounts", Account_Name="Stray Ltd", Account_Number="X-999")
        world.dynamics.seed(world.company, "items", [{"number": "2000-S", "displayName": "OSLO Shelf",
                                                      "unitPrice": 80.5}])
        zoho.create("Products", Product_Name="OSLO Shelf", Product_Code="2000-S")

        code, report = reconciled(world, "bc-zoho")

        assert code == EXIT_DISAGREE and not report["agrees"]
        assert kinds(report, "customers") == {"differs": ["C00020"], "missing": ["C00030"], "orphan": ["X-999"]}
        [differs] = [r for r in report["flows"]["customers"]["records"] if r["kind"] == "differs"]
        assert differs["fields"] == [{"field": "Billing_City", "source": "Chicago", "target": "Nowhere"}]
        assert kinds(report, "items") == {"unlinked": ["2000-S"]}
        assert list(kinds(report, "invoices")) == ["missing"]
        [month] = report["flows"]["invoices"]["totals"]
        assert (month["source_count"], month["target_count"], month["agrees"]) == (1, 0, False)
        assert report["calls"]["bc"] > 0 and report["calls"]["zoho"] > 0
        # COQL reads of up to 2,000 rows cost 3 credits each (the other calls: the token, the org)
        assert 0 < report["credits"]["zoho"] <= 3 * report["calls"]["zoho"]
        # Reading compared; nothing was written to either side.
        assert world.account("C00020")["Billing_City"] == "Nowhere"

        shown = cli(world, "reconcile", "bc-zoho")
        assert shown.exit_code == EXIT_DISAGREE
        assert "differs C00020" in shown.stdout and "orphan X-999" in shown.stdout
        assert "documents per month" in shown.stdout and "do not agree" in shown.stderr
        assert "zoho credits" in shown.stdout

        fixing = cli(world, "reconcile", "bc-zoho", "--fix")
        assert fixing.exit_code == EXIT_DISAGREE
        assert "queued 4 record(s)" in fixing.stdout  # differs, missing account, unlinked item, missing invoice
        rows = json.loads(cli(world, "audit", "--record", "C00020", "--json").stdout)
        assert any("reconcile: differs" in (r["note"] or "") for r in rows)

        replayed = cli(world, "replay", "--error-class", "reconcile")
        assert replayed.exit_code == 0, replayed.output

        code, report = reconciled(world, "bc-zoho")
        assert code == EXIT_DISAGREE and kinds(report, "customers") == {"orphan": ["X-999"]}  # not ours to remove
        assert all(report["flows"][f]["agrees"] for f in ("items", "invoices", "contacts"))
        assert world.account("C00020")["Billing_City"] == "Chicago"
        assert len([a for a in world.crm("Accounts") if a.get("Account_Number") == "C00030"]) == 1
        assert len([p for p in world.crm("Products") if p.get("Product_Code") == "2000-S"]) == 1  # linked, not twice

        zoho.delete("Accounts", stray)
        code, report = reconciled(world, "bc-zoho")
        assert code == 0 and report["agrees"], report
    finally:
        world.close()


def test_fix_now_writes_at_once_and_duplicates_are_named_not_fixed(tmp_path, monkeypatch):
    world = make_world(tmp_path, monkeypatch, "bc")
    try:
        assert cli(world, "sync", "bc-zoho").exit_code == 0
        zoho = world.zoho_user()
        zoho.edit("Accounts", world.account("C00010")["id"], Billing_City="Nowhere")

        now = cli(world, "reconcile", "bc-zoho", "--fix", "--now")

        assert now.exit_code == 0, now.output
        assert world.account("C00010")["Billing_City"] == "Atlanta"
        assert reconciled(world, "bc-zoho")[0] == 0

        # A second contact under one number is a duplicate in the target: named, never merged or fixed by us.
        [contact] = world.crm("Contacts")
        zoho.create("Contacts", Last_Name="Townes again", Email=contact["Email"])
        code, report = reconciled(world, "bc-zoho", "--fix", "--now")
        assert code == EXIT_DISAGREE
        assert kinds(report, "contacts") == {"duplicate in target": [contact["Email"]]}
        assert len([c for c in world.crm("Contacts")
                    if c.get("Email") == contact["Email"]]) == 2
    finally:
        world.close()


def test_a_two_way_pair_is_compared_in_both_directions(tmp_path, monkeypatch):
    world = make_world(tmp_path, monkeypatch, "nav")
    try:
        assert cli(world, "sync", "nav-zoho").exit_code == 0
        code, report = reconciled(world, "nav-zoho")
        assert code == 0, report
        assert report["flows"]["accounts_to_customers"]["left_out"] > 0  # Zoho's vendor accounts: not customers

        world.nav_user().edit("customers", "C00010", Name="Adatum Corp. (renamed)")
        code, report = reconciled(world, "nav-zoho", "--flow", "customers", "--flow", "accounts_to_customers")
        assert code == EXIT_DISAGREE and list(report["flows"]) == ["customers", "accounts_to_customers"]
        assert kinds(report, "customers") == {"differs": ["C00010"]}
        assert kinds(report, "accounts_to_customers") == {"differs": ["C00010"]}

        assert cli(world, "sync", "nav-zoho").exit_code == 0  # the next run carries the edit: agreement again
        assert reconciled(world, "nav-zoho")[0] == 0
    finally:
        world.close()


def test_bad_input_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    world = make_world(tmp_path, monkeypatch, "bc")
    try:
        ran = cli(world, "reconcile", "bc-zoho", "--flow", "nope")
        assert ran.exit_code == 2 and "has no flow 'nope'" in ran.output and "Traceback" not in ran.output
        ran = cli(world, "reconcile", "bc-zoho", "--now")
        assert ran.exit_code == 2 and "--fix --now" in ran.output
    finally:
        world.close()


def test_every_pair_agrees_after_a_run_and_a_flow_that_cannot_be_read_back_is_said_not_compared(tmp_path,
                                                                                                monkeypatch):
    from tests.pairs.gp_world import make_gp_world
    from tests.pairs.zuora_world import make_zuora_world

    (tmp_path / "zuora").mkdir()
    zuora = make_zuora_world(tmp_path / "zuora", monkeypatch, zuora_settings='account_match = "company_name"\n')
    try:
        assert zuora.sync().exit_code == 0
        # Subscriptions are read as versions and linked by number: still the one the run wrote.
        code, report = reconciled(zuora, "nav-zuora")
        assert code == 0 and report["flows"]["sales_orders"]["agreeing"] == 1, report
    finally:
        zuora.close()

    (tmp_path / "gp").mkdir()
    gp = make_gp_world(tmp_path / "gp", monkeypatch)
    try:
        assert gp.sync().exit_code == 0
        code, report = reconciled(gp, "gp-zoho")
        assert code == 0, report
        # Customers are keyed "Account_Number,Account_Name" (tried in order): compared by their number.
        assert report["flows"]["customers"]["agreeing"] == 3
        assert "reading salesOrders is not supported" in report["flows"]["sales_orders_to_gp"]["not_compared"]
        shown = cli(gp, "reconcile", "gp-zoho")
        assert "sales_orders_to_gp: not compared" in shown.stdout and "not compared: sales_orders_to_gp" in shown.stdout
    finally:
        gp.close()


def zoho_user_in(world) -> ZohoUser:
    """A CRM user with an OAuth client of their own, in the world's Zoho org."""
    client = world.zoho.register_client()
    return ZohoUser(world.router, "http://zoho.sandbox", client.client_id, client.client_secret,
                    world.zoho.issue_refresh_token(client.client_id))


@pytest.mark.parametrize("pair", ["fo-zoho", "gp-zoho", "nav-zoho"])
def test_each_pair_into_zoho_finds_an_edited_and_a_deleted_record_and_fix_now_brings_agreement(
        pair, tmp_path, monkeypatch):
    from tests.pairs.fo_world import make_fo_world
    from tests.pairs.gp_world import make_gp_world

    world = {"fo-zoho": lambda: make_fo_world(tmp_path, monkeypatch), "gp-zoho": lambda: make_gp_world(
        tmp_path, monkeypatch), "nav-zoho": lambda: make_world(tmp_path, monkeypatch, "nav")}[pair]()
    try:
        assert cli(world, "sync", pair).exit_code == 0
        zoho = zoho_user_in(world)
        flows, module, key = {"fo-zoho": (("customers", "products"), "Products", "Product_Code"),
                              "gp-zoho": (("customers", "gl_accounts"), "GL_Accounts", "GL_Account_Number"),
                              "nav-zoho": (("customers", "items"), "Products", "Product_Code")}[pair]
        accounts = sorted((a for a in world.crm("Accounts") if a.get("Account_Number")
                           and a.get("Account_Type") != "Vendor"), key=lambda a: a["Account_Number"])
        edited, deleted = accounts[0], sorted(world.crm(module), key=lambda r: r[key])[0]
        zoho.edit("Accounts", edited["id"], Account_Name="Renamed in Zoho")
        zoho.delete(module, deleted["id"])

        code, report = reconciled(world, pair, *(arg for f in flows for arg in ("--flow", f)))

        assert code == EXIT_DISAGREE
        assert kinds(report, flows[0]) == {"differs": [edited["Account_Number"]]}
        assert kinds(report, flows[1]) == {"missing": [deleted[key]]}
        fixed = cli(world, "reconcile", pair, "--fix", "--now", *(arg for f in flows for arg in ("--flow", f)))
        assert [r[key] for r in world.crm(module)].count(deleted[key]) == 1
        [name] = [a["Account_Name"] for a in world.crm("Accounts") if a["id"] == edited["id"]]
        if pair == "nav-zoho":
            # Two-way: the Zoho edit is the other side's change, which the next run carries to NAV; reconcile
            # names it and leaves it alone.
            assert fixed.exit_code == EXIT_DISAGREE and "since the last run" in fixed.stdout, fixed.stdout
            assert name == "Renamed in Zoho"
            assert cli(world, "sync", pair).exit_code == 0
            assert world.nav_user().card("customers", edited["Account_Number"])["Name"] == "Renamed in Zoho"
        else:
            assert fixed.exit_code == 0, fixed.output
            assert name != "Renamed in Zoho"
        code, report = reconciled(world, pair)
        assert code == 0, report
    finally:
        world.close()


def test_a_first_load_through_zoho_bulk_write_agrees_field_by_field(tmp_path, monkeypatch):
    """Bulk Write imports CSV cells into typed fields (Product_Active "true" is true): what it loaded compares equal
    to what an upsert would have written."""
    world = make_world(tmp_path, monkeypatch, "bc", zoho_settings="bulk_threshold = 1\n")
    try:
        assert cli(world, "sync", "bc-zoho").exit_code == 0
        assert world.zoho.calls["bulk_write.create"] >= 1
        assert all(p["Product_Active"] is True for p in world.crm("Products"))
        code, report = reconciled(world, "bc-zoho")
        assert code == 0 and report["agrees"], report
    finally:
        world.close()
