"""Records deleted in a flow's source: found (a source's deletion feed, a notified record no longer there, or a whole
read of ids), then handled by the flow's on_delete (flag, unlink, delete, ignore) as the user sees it in the target
system, in the audit and in the run summary; the mass-delete guard stops a flow that would touch too many. Each test
runs with the state in the SQLite file and in PostgreSQL (``state_store``)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from mlconnector.errors import EXIT_CONFIG, EXIT_RECORDS_FAILED
from tests.pairs.world import make_world


def cli(world, *args: str):
    return CliRunner().invoke(build_app(), list(args), obj=world.runtime())


def set_pair(world, pair: str, *lines: str) -> None:
    text = world.config_path.read_text()
    world.config_path.write_text(text.replace(f"[pairs.{pair}]\n", f"[pairs.{pair}]\n" + "".join(
        line + "\n" for line in lines), 1))


def accounts_by_number(world) -> dict[str, dict]:
    return {a.get("Account_Number"): a for a in world.crm("Accounts")}


def audit(world, record: str) -> list[dict]:
    return json.loads(cli(world, "audit", "--record", record, "--json").stdout)


def test_a_customer_deleted_in_bc_is_tagged_in_zoho_once_and_its_link_closed(tmp_path, monkeypatch, state_store):
    world = make_world(tmp_path, monkeypatch, "bc")
    try:
        set_pair(world, "bc-zoho", "deletes_every_hours = 0")  # look at every run (default: once a day)
        assert cli(world, "sync", "bc-zoho").exit_code == 0
        kept = accounts_by_number(world)["C00030"]
        world.dynamics.delete(world.company, "customers", "C00030")

        ran = cli(world, "sync", "bc-zoho")

        assert ran.exit_code == 0, ran.output
        assert "customers: 1 record(s) deleted in the source: 1 marked deleted in the target" in ran.stdout
        account = accounts_by_number(world)["C00030"]
        assert account["id"] == kept["id"]  # still there, for sales to see
        assert [t["name"] for t in account["Tag"]] == ["Deleted in bc"]
        assert not accounts_by_number(world)["C00020"].get("Tag")
        [row] = [r for r in audit(world, "C00030") if r["action"] == "flag"]
        assert row["note"] == "deleted in bc; marked deleted in zoho"

        again = cli(world, "sync", "bc-zoho", "--json")
        assert again.exit_code == 0
        assert json.loads(again.stdout)["flows"]["customers"]["deletions"] == {}  # the link is closed: told once
        assert len(accounts_by_number(world)["C00030"]["Tag"]) == 1
        status = json.loads(cli(world, "status", "--json").stdout)
        assert status["deletions"] == [{"pair": "bc-zoho", "flow": "customers", "deleted": 0, "flagged": 1,
                                        "unlinked": 0, "failed": 0}]
        shown = cli(world, "status")
        assert "deleted in their source" in shown.stdout and "customers" in shown.stdout
    finally:
        world.close()


def test_on_delete_delete_removes_the_zoho_account_and_unlink_keeps_it_untouched(tmp_path, monkeypatch, state_store):
    world = make_world(tmp_path, monkeypatch, "bc")
    try:
        set_pair(world, "bc-zoho", "deletes_every_hours = 0", 'on_delete = {customers = "delete", items = "unlink"}')
        assert cli(world, "sync", "bc-zoho").exit_code == 0
        gone = accounts_by_number(world)["C00030"]["id"]
        [lamp] = [p for p in world.crm("Products") if p.get("Product_Code") == "1928-S"]
        world.dynamics.delete(world.company, "customers", "C00030")
        world.dynamics.delete(world.company, "items", "1928-S")

        ran = cli(world, "sync", "bc-zoho")

        assert ran.exit_code == 0, ran.output
        assert "C00030" not in accounts_by_number(world)
        # Zoho lists it among its deleted records, as for a delete made by hand (the recycle bin).
        deleted = world.zoho_user().http.get("/crm/v8/Accounts/deleted", params={"type": "all"}).json()["data"]
        assert [d["id"] for d in deleted] == [gone]
        assert [p for p in world.crm("Products") if p.get("Product_Code") == "1928-S"] == [lamp]
        assert "items: 1 record(s) deleted in the source: 1 unlinked (the target's record kept)" in ran.stdout
        notes = {r["note"] for r in audit(world, "C00030")} | {r["note"] for r in audit(world, "1928-S")}
        assert "deleted in bc; deleted in zoho too" in notes
        assert "deleted in bc; link closed, zoho's record kept" in notes
    finally:
        world.close()


def test_the_mass_delete_guard_does_nothing_until_allow_deletes(tmp_path, monkeypatch, state_store):
    world = make_world(tmp_path, monkeypatch, "bc")
    try:
        set_pair(world, "bc-zoho", "deletes_every_hours = 0", 'on_delete = {customers = "delete"}')
        assert cli(world, "sync", "bc-zoho").exit_code == 0
        for number in ("C00020", "C00030"):  # two of three customers: a wrong company or filter looks like this
            world.dynamics.delete(world.company, "customers", number)

        guarded = cli(world, "sync", "bc-zoho")

        assert guarded.exit_code == EXIT_RECORDS_FAILED
        assert ("customers: 2 of 3 linked records look deleted in bc (more than 5%): nothing was done about them; "
                "if that is right, run again with --allow-deletes") in guarded.stdout
        assert {"C00010", "C00020", "C00030"} <= set(accounts_by_number(world))
        dry = cli(world, "sync", "bc-zoho", "--dry-run", "--allow-deletes")
        assert "customers: 2 record(s) deleted in the source would be handled: 2 deleted in the target too" \
            in dry.stdout
        assert {"C00020", "C00030"} <= set(accounts_by_number(world))

        allowed = cli(world, "sync", "bc-zoho", "--allow-deletes")

        assert allowed.exit_code == 0, allowed.output
        assert set(accounts_by_number(world)) & {"C00020", "C00030"} == set()
        assert "C00010" in accounts_by_number(world)
    finally:
        world.close()


def test_an_account_deleted_in_zoho_unlinks_the_nav_customer_which_stays(tmp_path, monkeypatch, state_store):
    world = make_world(tmp_path, monkeypatch, "nav")
    try:
        assert cli(world, "sync", "nav-zoho").exit_code == 0
        account = accounts_by_number(world)["C00020"]
        world.zoho_user().delete("Accounts", account["id"])

        ran = cli(world, "sync", "nav-zoho", "--json")

        assert ran.exit_code == 0, ran.output
        result = json.loads(ran.stdout)
        # Zoho's deletion feed names it; a flow into the ERP never deletes there: the link is closed.
        assert result["flows"]["accounts_to_customers"]["deletions"] == {"unlink": 1}
        assert [c for c in world.erp("customers") if c["number"] == "C00020"]
        [row] = [r for r in audit(world, account["id"]) if r["action"] == "unlink"]
        assert row["note"] == "deleted in zoho; link closed, nav's record kept"
    finally:
        world.close()


def test_a_policy_the_target_cannot_carry_out_is_one_line_naming_the_fix(tmp_path, monkeypatch, state_store):
    world = make_world(tmp_path, monkeypatch, "nav")
    original = world.config_path.read_text()
    try:
        set_pair(world, "nav-zoho", 'on_delete = {accounts_to_customers = "delete"}')
        ran = cli(world, "sync", "nav-zoho")
        assert ran.exit_code == EXIT_CONFIG
        assert ("pairs.nav-zoho.on_delete.accounts_to_customers = 'delete': the ERP's records are its own: a flow into it "
                "never deletes or marks them; use unlink or ignore") in ran.output
        assert "Traceback" not in ran.output
        world.config_path.write_text(original)
        set_pair(world, "nav-zoho", 'on_delete = {accounts_to_customers = "unlink", customer = "flag"}')
        wrong = cli(world, "sync", "nav-zoho")
        assert wrong.exit_code == EXIT_CONFIG and "nav-zoho has no flow 'customer'" in wrong.output
    finally:
        world.close()
