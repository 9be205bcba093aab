"""Two-way flows keep every edit. Edits made one after another on one side all reach the other side and stay
there: a value ml-connector wrote itself is never taken for the other side's edit, whatever the precision of the
stamps (NAV's pages carry only a date, Zoho whole seconds). An edit on each side is a real conflict, and the
conflict rule settles it. Edits are made and results read through the vendors' own APIs, as their users would."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mlconnector import api
from tests.pairs.users import NavUser, ZohoUser, ZuoraUser
from tests.pairs.world import World, make_world
from tests.pairs.zuora_world import ZuoraWorld, make_zuora_world

HOUR = 3600  # the sandboxes' clocks start an hour behind this host's, so minutes can pass between edits


@dataclass(frozen=True)
class TwoWay:
    """A record of a two-way flow of nav-zoho, and the field each side edits on it."""

    flow: str
    module: str
    zoho_field: str
    nav_entity: str
    nav_field: str  # the page field
    account_number: str | None  # the Zoho Account's number; None: the pair's one person contact

    def zoho_id(self, world: World) -> str:
        if self.account_number:
            return world.account(self.account_number)["id"]
        [contact] = world.crm("Contacts")
        return contact["id"]

    def nav_number(self, world: World, nav: NavUser, zoho: ZohoUser) -> str:
        if self.account_number:
            return self.account_number.removeprefix("V-")
        email = zoho.record("Contacts", self.zoho_id(world))["Email"].lower()
        [card] = [c for c in nav.cards("contacts") if (c.get("E_Mail") or "").lower() == email]
        return card["No"]


TWO_WAY = [
    TwoWay("accounts_to_customers", "Accounts", "Billing_City", "customers", "City", "C00030"),
    TwoWay("accounts_to_vendors", "Accounts", "Billing_City", "vendors", "City", "V-V00010"),
    TwoWay("contacts_to_nav", "Contacts", "Title", "contacts", "Job_Title", None),
]


@pytest.fixture(params=["page", "api"])
def world(request, tmp_path, monkeypatch):
    settings = 'api = "api"\n' if request.param == "api" else ""
    made = make_world(tmp_path, monkeypatch, "nav", erp_settings=settings, clocks_behind=HOUR)
    yield made
    made.close()


def synced(world: World) -> None:
    result = world.sync("nav-zoho")
    assert result.exit_code == 0, result.to_dict()


def later(world: World, seconds: float) -> None:
    """Time passes on both sides."""
    world.zoho.advance(seconds=seconds)
    world.dynamics.advance(seconds=seconds)


def conflict_notes(world: World, zoho_id: str, nav_number: str) -> list[str]:
    with world.state() as state:
        rows = {r["id"]: r for r in state.audit_rows(record=zoho_id, limit=None)
                + state.audit_rows(record=nav_number, limit=None)}
    return [r["note"] for _, r in sorted(rows.items()) if r["note"] and r["note"].startswith("conflict")]


@pytest.mark.parametrize("case", TWO_WAY, ids=lambda c: c.flow)
@pytest.mark.parametrize("gap", [0, 65])
@pytest.mark.parametrize("side", ["zoho", "nav"])
def test_successive_edits_on_one_side_all_arrive_and_none_is_reverted(world: World, case: TwoWay, gap: int,
                                                                       side: str):
    synced(world)
    zoho, nav = world.zoho_user(), world.nav_user()
    zoho_id, number = case.zoho_id(world), case.nav_number(world, nav, zoho)

    for value in ("First", "Second", "Third"):
        if side == "zoho":
            zoho.edit(case.module, zoho_id, **{case.zoho_field: value})
        else:
            nav.edit(case.nav_entity, number, **{case.nav_field: value})
        synced(world)
        synced(world)  # and a run with nothing new changes nothing back
        assert zoho.record(case.module, zoho_id)[case.zoho_field] == value, f"after the edit to {value}"
        assert nav.card(case.nav_entity, number)[case.nav_field] == value, f"after the edit to {value}"
        later(world, gap)

    assert conflict_notes(world, zoho_id, number) == [], "our own writes were taken for edits"


@pytest.mark.parametrize("case", TWO_WAY, ids=lambda c: c.flow)
@pytest.mark.parametrize("gap", [1, 65])
def test_an_edit_on_each_side_is_a_conflict_the_later_edit_wins(world: World, case: TwoWay, gap: int):
    synced(world)
    zoho, nav = world.zoho_user(), world.nav_user()
    zoho_id, number = case.zoho_id(world), case.nav_number(world, nav, zoho)

    zoho.edit(case.module, zoho_id, **{case.zoho_field: "Zoho first"})
    later(world, gap)
    nav.edit(case.nav_entity, number, **{case.nav_field: "NAV later"})
    synced(world)

    assert zoho.record(case.module, zoho_id)[case.zoho_field] == "NAV later"
    assert nav.card(case.nav_entity, number)[case.nav_field] == "NAV later"
    assert conflict_notes(world, zoho_id, number) == [
        "conflict: both sides changed; rule later-wins: applied nav's change"]


@pytest.mark.parametrize("case", TWO_WAY, ids=lambda c: c.flow)
@pytest.mark.parametrize("gap", [1, 65])
def test_a_zoho_edit_later_than_nav_s_wins_where_nav_stamps_the_time(tmp_path, monkeypatch, case: TwoWay, gap: int):
    # API v2.0 stamps lastModifiedDateTime to the millisecond; NAV's pages stamp only the date (docs/pairs.md: a card
    # changed today counts as changed when the run reads it).
    world = make_world(tmp_path, monkeypatch, "nav", erp_settings='api = "api"\n', clocks_behind=HOUR)
    try:
        synced(world)
        zoho, nav = world.zoho_user(), world.nav_user()
        zoho_id, number = case.zoho_id(world), case.nav_number(world, nav, zoho)

        nav.edit(case.nav_entity, number, **{case.nav_field: "NAV first"})
        later(world, gap)
        zoho.edit(case.module, zoho_id, **{case.zoho_field: "Zoho later"})
        synced(world)
        synced(world)

        assert zoho.record(case.module, zoho_id)[case.zoho_field] == "Zoho later"
        assert nav.card(case.nav_entity, number)[case.nav_field] == "Zoho later"
        # Each direction met the conflict: NAV's change was not sent, Zoho's was applied.
        assert conflict_notes(world, zoho_id, number) == [
            "conflict: both sides changed; rule later-wins: kept zoho's version",
            "conflict: both sides changed; rule later-wins: applied zoho's change"]
    finally:
        world.close()


# nav-zuora: customers <-> accounts and items <-> products ---------------------------------------------------------
@dataclass(frozen=True)
class ZuoraTwoWay:
    flow: str
    nav_entity: str
    nav_number: str
    nav_field: str  # the page field
    zuora_field: str


ZUORA_TWO_WAY = [
    ZuoraTwoWay("accounts_to_customers", "customers", "C00010", "Name", "name"),
    ZuoraTwoWay("products_to_items", "items", "1896-S", "Description", "Name"),
]


def zuora_value(zuora: ZuoraUser, world: ZuoraWorld, case: ZuoraTwoWay) -> str:
    if case.nav_entity == "customers":
        return zuora.account(world.account(case.nav_number)["id"])["basicInfo"]["name"]
    return zuora.product(zuora_product_id(world, case.nav_number))["Name"]


def zuora_product_id(world: ZuoraWorld, sku: str) -> str:
    [product] = [p for p in world.zuora.records("products") if p.get("sKU") == sku]
    return str(product["id"])


def zuora_edit(zuora: ZuoraUser, world: ZuoraWorld, case: ZuoraTwoWay, value: str) -> None:
    if case.nav_entity == "customers":
        zuora.edit_account(world.account(case.nav_number)["id"], name=value)
    else:
        zuora.edit_product(zuora_product_id(world, case.nav_number), Name=value)


@pytest.mark.parametrize("case", ZUORA_TWO_WAY, ids=lambda c: c.flow)
@pytest.mark.parametrize("gap", [0, 65])
@pytest.mark.parametrize("side", ["zuora", "nav"])
def test_nav_zuora_successive_edits_on_one_side_all_arrive(tmp_path, monkeypatch, case: ZuoraTwoWay, gap: int,
                                                            side: str):
    world = make_zuora_world(tmp_path, monkeypatch, clocks_behind=HOUR)
    try:
        def sync() -> None:
            result = world.sync()
            assert result.exit_code == 0, result.to_dict()

        sync()
        zuora, nav = world.zuora_user(), world.nav_user()
        for value in ("First name", "Second name", "Third name"):
            if side == "zuora":
                zuora_edit(zuora, world, case, value)
            else:
                nav.edit(case.nav_entity, case.nav_number, **{case.nav_field: value})
            sync()
            sync()
            assert zuora_value(zuora, world, case) == value, f"after the edit to {value}"
            assert nav.card(case.nav_entity, case.nav_number)[case.nav_field] == value, f"after the edit to {value}"
            world.zuora.advance(seconds=gap)
            world.dynamics.advance(seconds=gap)
        with world.state() as state:
            notes = [r["note"] for r in state.audit_rows(limit=None) if (r["note"] or "").startswith("conflict")]
        assert notes == [], "our own writes were taken for edits"
    finally:
        world.close()


@pytest.mark.parametrize("rule, winner", [("source-wins", "nav"), ("target-wins", "zoho")])
def test_an_edit_on_each_side_goes_to_the_side_the_rule_names_in_both_directions(tmp_path, monkeypatch, rule: str,
                                                                                  winner: str):
    # The rule names one of the pair's systems; read per flow, each direction would keep its own target's value (or
    # take the other's), and the two systems would end up disagreeing.
    world = make_world(tmp_path, monkeypatch, "nav", erp_settings='api = "api"\n', clocks_behind=HOUR)
    world.config_path.write_text(world.config_path.read_text()
                                 + f'\n[pairs.nav-zoho.options]\nconflict_rule = "{rule}"\n')
    try:
        synced(world)
        zoho, nav = world.zoho_user(), world.nav_user()
        for case in TWO_WAY[:2]:
            zoho_id, number = case.zoho_id(world), case.nav_number(world, nav, zoho)
            zoho.edit(case.module, zoho_id, **{case.zoho_field: "Zoho's"})
            later(world, 65)
            nav.edit(case.nav_entity, number, **{case.nav_field: "NAV's"})
        synced(world)
        again = world.sync("nav-zoho")

        expected = "NAV's" if winner == "nav" else "Zoho's"
        for case in TWO_WAY[:2]:
            zoho_id, number = case.zoho_id(world), case.nav_number(world, nav, zoho)
            assert zoho.record(case.module, zoho_id)[case.zoho_field] == expected, case.flow
            assert nav.card(case.nav_entity, number)[case.nav_field] == expected, case.flow
        assert all(s.created == s.updated == 0 for s in again.flows.values()), again.to_dict()
        report = api.reconcile(world.runtime(), "nav-zoho",
                               flows=["accounts_to_customers", "accounts_to_vendors"]).report
        assert report.agrees, report.to_dict()
    finally:
        world.close()
