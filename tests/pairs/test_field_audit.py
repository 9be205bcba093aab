"""Field-level audit: an update's audit row says which mapped fields changed, from what to what; records are named
by their business key; the run summary counts updates by field."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from tests.pairs.world import make_world


def cli(world, *args: str):
    return CliRunner().invoke(build_app(), list(args), obj=world.runtime())


def test_an_update_says_what_changed_field_by_field_and_audit_shows_the_history(tmp_path, monkeypatch):
    world = make_world(tmp_path, monkeypatch, "bc")  # BC ids are GUIDs: records are named by their number
    try:
        assert cli(world, "sync", "bc-zoho").exit_code == 0
        world.dynamics.modify(world.company, "customers", "C00020", phoneNumber="+1 312 555 0123", city="Evanston")

        ran = cli(world, "sync", "bc-zoho")

        assert ran.exit_code == 0, ran.output
        assert "customers: updated 1 (Billing_City 1, Phone 1)" in ran.stdout
        rows = json.loads(cli(world, "audit", "--record", "C00020", "--json").stdout)
        [update] = [r for r in rows if r["action"] == "update"]
        assert update["record_key"] == "C00020" and update["source_id"] != "C00020"  # a GUID
        assert update["changes"] == [{"field": "Phone", "old": None, "new": "+1 312 555 0123"},
                                     {"field": "Billing_City", "old": "Chicago", "new": "Evanston"}]
        [create] = [r for r in rows if r["action"] == "create"]
        assert create["changes"] == []  # a create is no change of fields

        shown = cli(world, "audit", "--record", "C00020")
        assert shown.exit_code == 0
        assert "field by field" in shown.stdout and "Chicago" in shown.stdout and "Evanston" in shown.stdout
        assert "C00020" in shown.stdout and update["source_id"] not in shown.stdout
        assert max(len(line) for line in cli(world, "audit", "--limit", "5").stdout.splitlines()) <= 160

        # Nothing changed: no update, no field changes.
        quiet = cli(world, "sync", "bc-zoho", "--json")
        assert json.loads(quiet.stdout)["flows"]["customers"]["fields_changed"] == {}
    finally:
        world.close()
