"""nav-zuora deletions: neither side lists its deleted records, so each is found missing from a read of ids (NAV's
page keys; Zuora's ZOQL ``select Id``, 2,000 a call). Zuora marks no records, so a NAV customer deleted leaves its
Zuora account as it is (unlink), and the way back does not re-create it in NAV; a Zuora product deleted leaves the
NAV item alone; delete into Zuora is refused. Each test runs with
the state in the SQLite file and in PostgreSQL (``state_store``)."""

from __future__ import annotations

import json

import pytest

from mlconnector.errors import EXIT_CONFIG
from tests.pairs.deleting import audit, cli, set_pair
from tests.pairs.zuora_world import ZuoraWorld, make_zuora_world


@pytest.fixture
def world(tmp_path, monkeypatch, state_store):
    made = make_zuora_world(tmp_path, monkeypatch, zuora_settings='account_match = "company_name"\n',
                            pair_settings="deletes_every_hours = 0\n")
    yield made
    made.close()


def test_a_customer_deleted_in_nav_leaves_its_zuora_account_which_is_not_sent_back(world: ZuoraWorld):
    assert cli(world, "sync", "nav-zuora").exit_code == 0
    account = world.account("C00030")
    world.dynamics.delete(world.company, "customers", "C00030")

    ran = cli(world, "sync", "nav-zuora")

    assert ran.exit_code == 0, ran.output
    assert "customers: 1 record(s) deleted in the source: 1 unlinked (the target's record kept)" in ran.stdout
    assert world.account("C00030") == account  # untouched
    [row] = [r for r in audit(world, "C00030") if r["action"] == "unlink" and r["flow"] == "customers"]
    assert row["note"] == "deleted in nav; link closed, zuora's record kept"
    assert not [c for c in world.erp("customers") if c["number"] == "C00030"]

    world.zuora.edit("accounts", account["id"], notes="still billing them")  # a Zuora user edits it later
    again = cli(world, "sync", "nav-zuora", "--json")

    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["flows"]["accounts_to_customers"]["created"] == 0
    assert not [c for c in world.erp("customers") if c["number"] == "C00030"]
    assert any(r["note"] == "skipped: its record in nav was deleted there; not sent back"
               for r in audit(world, account["id"]))


def test_a_product_deleted_in_zuora_closes_the_link_and_the_nav_item_stays(world: ZuoraWorld):
    assert cli(world, "sync", "nav-zuora").exit_code == 0
    [product] = [p for p in world.zuora.records("products") if p["sKU"] == "1936-S"]
    world.zuora.remove("products", product["id"])
    world.zuora.reset_counters()

    ran = cli(world, "sync", "nav-zuora", "--json")

    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["flows"]["products_to_items"]["deletions"] == {"unlink": 1}
    assert [i for i in world.erp("items") if i["number"] == "1936-S"]
    [row] = [r for r in audit(world, product["id"]) if r["action"] == "unlink"]
    assert row["note"] == "deleted in zuora; link closed, nav's record kept"
    assert world.zuora.calls["action.query"] >= 1  # the ids came from ZOQL


def test_delete_or_flag_into_zuora_is_refused_naming_the_fix(world: ZuoraWorld):
    set_pair(world, "nav-zuora", 'on_delete = {customers = "delete"}')
    ran = cli(world, "sync", "nav-zuora")
    assert ran.exit_code == EXIT_CONFIG
    assert "pairs.nav-zuora.on_delete.customers = 'delete': zuora's connector does not delete records there; " \
        "use unlink or ignore" in ran.output
