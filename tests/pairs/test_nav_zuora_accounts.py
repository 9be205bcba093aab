"""nav-zuora's accounts seen from both sides: the Zuora account id on the NAV customer card, and NAV's bill-to
customers as Zuora's customer hierarchy (parentId), read through each vendor's API."""

from __future__ import annotations

import pytest

from tests.pairs.test_nav_zuora_money import sync_cli
from tests.pairs.zuora_world import ZuoraWorld, make_zuora_world


@pytest.fixture
def world(tmp_path, monkeypatch):
    made = make_zuora_world(tmp_path, monkeypatch, zuora_settings='account_match = "company_name"\n')
    yield made
    made.close()


def card(world: ZuoraWorld, number: str) -> dict:
    return world.nav_user().card("customers", number)   # (shares the world's transport: the world closes it)


def test_each_nav_customer_card_shows_its_zuora_account_id_and_a_lost_state_file_makes_no_second_account(world):
    assert world.sync().exit_code == 0

    for number in ("C00010", "C00020", "C00030"):
        account = world.account(number)
        assert card(world, number)["Zuora_Account_Id"] == account["id"]
        assert world.zuora_user().account(account["id"])["basicInfo"]["NAVCustomerNumber__c"] == number
    again = world.sync()
    assert again.flows["account_ids"].updated == again.flows["account_ids"].created == 0, again.to_dict()

    world.state_path.unlink()
    world.dynamics.modify(world.company, "customers", "C00010", displayName="Adatum Corporation Ltd")
    assert world.sync().exit_code == 0
    assert len(world.zuora.records("accounts")) == 3
    assert card(world, "C00010")["Zuora_Account_Id"] == world.account("C00010")["id"]
    assert world.account("C00010")["name"] == "Adatum Corporation Ltd"


def test_an_account_made_again_after_a_deletion_in_zuora_puts_its_new_id_on_the_card(world):
    world.sync()
    gone = world.account("C00010")["id"]
    del world.zuora.data.tables["accounts"][gone]
    world.dynamics.modify(world.company, "customers", "C00010", displayName="Adatum Corporation Ltd")

    assert world.sync().exit_code == 0

    assert card(world, "C00010")["Zuora_Account_Id"] == world.account("C00010")["id"] != gone


def zuora_writes(world: ZuoraWorld) -> int:
    return sum(n for name, n in world.zuora.calls.items() if name.endswith((".create", ".update")))


def parent_of(world: ZuoraWorld, number: str) -> str | None:
    """The parent account of the NAV customer's account, as Zuora's GET /v1/accounts/{id} shows it."""
    return world.zuora_user().account(world.account(number)["id"])["basicInfo"]["parentId"] or None


def test_a_bill_to_customer_makes_the_zuora_account_a_child_of_its_account_even_when_the_parent_loads_last(world):
    # Adatum (read first) is billed to School of Fine Art (read last), as a NAV user sets it on the Customer card.
    nav = world.nav_user()
    nav.edit("customers", "C00010", Bill_to_Customer_No="C00030")

    first = world.sync()

    assert first.exit_code == 0, first.to_dict()
    assert parent_of(world, "C00010") == world.account("C00030")["id"]
    assert parent_of(world, "C00020") is None and parent_of(world, "C00030") is None
    writes = zuora_writes(world)
    assert world.sync().exit_code == 0 and zuora_writes(world) == writes     # nothing to write again

    nav.edit("customers", "C00010", Bill_to_Customer_No="C00020")
    assert world.sync().exit_code == 0
    assert parent_of(world, "C00010") == world.account("C00020")["id"]

    nav.edit("customers", "C00010", Bill_to_Customer_No="")
    assert world.sync().exit_code == 0
    assert parent_of(world, "C00010") is None


def test_a_hierarchy_zuora_refuses_fails_the_customer_with_zuoras_reason(world):
    nav = world.nav_user()
    nav.edit("customers", "C00010", Bill_to_Customer_No="C00020")
    nav.edit("customers", "C00020", Bill_to_Customer_No="C00010")   # each the other's parent: a circle

    result = world.sync()

    assert result.exit_code == 3
    with world.state() as state:
        [failed] = state.audit_rows(status="failed", flow="account_parents", limit=None)
    assert "own parent" in failed["error"] and failed["error_class"] == "zuora_business_rule"


def test_a_customer_group_dimension_names_the_parent_account_when_the_pair_is_told_to_use_it(tmp_path, monkeypatch):
    flows = ('flows = ["customers", "items", "sales_orders", "accounts_to_customers", "products_to_items", '
             '"account_parents_by_dimension", "account_ids"]\n')
    made = make_zuora_world(tmp_path, monkeypatch, zuora_settings='account_match = "company_name"\n',
                            pair_settings=flows + '[pairs.nav-zuora.options]\nparent_dimension = "CUSTGROUP"\n')
    try:
        # A NAV user sets CUSTGROUP on two customers' Dimensions: both belong to School of Fine Art's group.
        for number in ("C00010", "C00020"):
            made.dynamics.set_default_dimension(made.company, number, "CUSTGROUP", "C00030")
        made.dynamics.set_default_dimension(made.company, "C00030", "AREA", "30")   # another dimension: no parent

        first = made.sync()

        assert first.exit_code == 0, first.to_dict()
        head_office = made.account("C00030")["id"]
        assert parent_of(made, "C00010") == parent_of(made, "C00020") == head_office
        assert parent_of(made, "C00030") is None
        writes = zuora_writes(made)
        assert made.sync().exit_code == 0 and zuora_writes(made) == writes
    finally:
        made.close()


def test_in_api_mode_a_customer_group_dimension_read_through_bc_api_names_the_parent_account(tmp_path, monkeypatch):
    made = make_zuora_world(tmp_path, monkeypatch, zuora_settings='account_match = "company_name"\n',
                            nav_settings='api = "api"\n',
                            pair_settings='flows = ["customers", "account_parents_by_dimension"]\n'
                                          '[pairs.nav-zuora.options]\nparent_dimension = "CUSTGROUP"\n')
    bc = made.bc_user()
    try:
        made.dynamics.set_default_dimension(made.company, "C00010", "CUSTGROUP", "C00030")
        made.dynamics.set_default_dimension(made.company, "C00020", "AREA", "30")   # another dimension: no parent
        adatum = bc.rows("customers", "number eq 'C00010'")[0]
        [seen] = bc.rows(f"customers({adatum['id']})/defaultDimensions")   # as BC's API shows it
        assert (seen["dimensionCode"], seen["dimensionValueCode"]) == ("CUSTGROUP", "C00030")

        assert sync_cli(made) == 0

        assert parent_of(made, "C00010") == made.account("C00030")["id"]
        assert parent_of(made, "C00020") is None and parent_of(made, "C00030") is None
        writes = zuora_writes(made)
        assert sync_cli(made) == 0 and zuora_writes(made) == writes
    finally:
        bc.close()
        made.close()
