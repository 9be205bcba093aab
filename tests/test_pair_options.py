"""A pair's options are declared once, with their defaults; `[pairs.NAME.options]` is checked against them
before a run starts: a misspelt key or a value of the wrong kind is one line naming it and the fix (exit 2)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from mlconnector.errors import ConfigError
from mlconnector.pairs import all_pairs
from mlconnector.pairs.gp_zoho import GP_ZOHO
from mlconnector.pairs.nav_zuora import NAV_ZUORA
from tests.pairs.world import make_world


def test_every_option_is_set_once_checked_and_the_defaults_fill_the_rest():
    values = NAV_ZUORA.option_values({"currency": "EUR", "bill_cycle_day": 15})
    assert values["currency"] == "EUR" and values["bill_cycle_day"] == 15
    assert values["account_key_field"] == "NAVCustomerNumber__c" and values["conflict_rule"] == "later-wins"
    assert set(values) == {option.name for option in NAV_ZUORA.options}
    assert GP_ZOHO.option_values({"match_by_name": False})["match_by_name"] is False


@pytest.mark.parametrize("given, says", [
    ({"acount_key_field": "X"}, "pairs.nav-zuora.options.acount_key_field: nav-zuora has no such option"),
    ({"bill_cycle_day": "15"}, "pairs.nav-zuora.options.bill_cycle_day = '15': a whole number"),
    ({"bill_cycle_day": True}, "a whole number"),
    ({"term_type": "MONTHLY"}, "one of EVERGREEN, TERMED"),
    ({"conflict_rule": "coin-flip"}, "one of later-wins, source-wins, target-wins"),
    ({"currency": 978}, "a text"),
])
def test_a_wrong_option_is_refused_naming_it(given, says):
    with pytest.raises(ConfigError, match=says.replace(".", r"\.").replace("(", r"\(")):
        NAV_ZUORA.option_values(given)


def test_every_pair_declares_its_options_and_their_names_are_unique():
    for name in ("nav-zoho", "bc-zoho", "fo-zoho", "gp-zoho", "nav-zuora"):
        spec = all_pairs()[name]
        names = [option.name for option in spec.options]
        assert names and len(names) == len(set(names)), spec.name
        assert all(option.doc for option in spec.options), spec.name


def test_sync_with_a_misspelt_option_exits_2_before_anything_moves(tmp_path, monkeypatch):
    world = make_world(tmp_path, monkeypatch, "nav")
    try:
        with world.config_path.open("a") as config:
            config.write('\n[pairs.nav-zoho.options]\nvendor_prefix = "S-"\n')

        result = CliRunner().invoke(build_app(), ["sync", "nav-zoho"], obj=world.runtime())

        assert result.exit_code == 2, result.output
        assert "pairs.nav-zoho.options.vendor_prefix: nav-zoho has no such option (its options: account_key_field" \
            in result.stderr
        assert world.crm("Accounts") == []
    finally:
        world.close()
