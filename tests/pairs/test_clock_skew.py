"""A system whose clock runs ahead of this host's: its edits arrive with the next run, not once this host's clock
has caught up, and the run says how far ahead it is, once."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from tests.pairs.world import make_world


def sync(world, pair: str):
    result = CliRunner().invoke(build_app(), ["sync", pair], obj=world.runtime())
    return result.exit_code, result.stderr


def test_zoho_two_hours_ahead_its_edit_reaches_nav_at_once_with_one_warning(tmp_path, monkeypatch):
    world = make_world(tmp_path, monkeypatch, "nav")
    try:
        assert sync(world, "nav-zoho")[0] == 0
        world.zoho.advance(hours=2)  # Zoho's servers now run two hours ahead of this host
        zoho = world.zoho_user()
        zoho.edit("Accounts", world.account("C00030")["id"], Billing_City="Ahead City")

        code, err = sync(world, "nav-zoho")

        assert code == 0, err
        assert world.nav_user().card("customers", "C00030")["City"] == "Ahead City"
        told = [line for line in err.splitlines() if "its clock is" in line]
        assert len(told) == 1 and told[0].startswith("zoho: its clock is 2 h ahead of this host's"), err
        # The next run reads nothing twice and writes nothing back.
        code, err = sync(world, "nav-zoho")
        assert code == 0
        assert world.zoho.record("Accounts", world.account("C00030")["id"])["Billing_City"] == "Ahead City"
    finally:
        world.close()


def test_business_central_two_hours_ahead_its_edit_reaches_zoho_at_once(tmp_path, monkeypatch):
    world = make_world(tmp_path, monkeypatch, "bc")
    try:
        assert sync(world, "bc-zoho")[0] == 0
        world.dynamics.advance(hours=2)
        world.dynamics.modify(world.company, "customers", "C00020", phoneNumber="+1 312 555 0123")

        result = CliRunner().invoke(build_app(), ["sync", "bc-zoho", "--json"], obj=world.runtime())

        assert result.exit_code == 0, result.output
        assert world.account("C00020")["Phone"] == "+1 312 555 0123"
        warnings = json.loads(result.stdout)["warnings"]
        assert len(warnings) == 1 and warnings[0].startswith("bc: its clock is 2 h") and "ahead" in warnings[0]
    finally:
        world.close()


@pytest.mark.parametrize("ahead", [0, 1])
def test_clocks_that_agree_say_nothing(tmp_path, monkeypatch, ahead):
    world = make_world(tmp_path, monkeypatch, "nav")
    try:
        world.zoho.advance(seconds=ahead)
        code, err = sync(world, "nav-zoho")
        assert code == 0 and "its clock is" not in err, err
    finally:
        world.close()
