"""Source records that share a natural key, as the target compares keys, are never merged: each fails naming the
others and the key, waits in the replay queue and shows in the audit; nothing on either side is renamed or
overwritten; the rest of the run goes on. Once the data is fixed, the next sync and `replay` write them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from tests.pairs.world import World, make_world

SHARED = ["shared@example.com", "Shared@Example.COM ", "shared@example.com"]


@pytest.fixture
def world(tmp_path, monkeypatch):
    made = make_world(tmp_path, monkeypatch, "nav")
    yield made
    made.close()


def cli(world: World, *args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(build_app(), [*args, "--json"], obj=world.runtime())
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else None


def failed_rows(world: World) -> dict[str, dict[str, Any]]:
    code, rows = cli(world, "audit", "--status", "failed", "--limit", "100")
    assert code == 0
    return {row["source_id"]: row for row in rows}


def add_person_contacts(world: World, emails: list[str], *, first: int = 31) -> list[str]:
    """Person contacts of Adatum's company contact (so of customer C00010), as NAV users would add them."""
    numbers = [f"CT0000{n}" for n in range(first, first + len(emails))]
    world.dynamics.seed(world.company, "contacts", [
        {"number": number, "displayName": f"Person {number}", "type": "Person", "companyNumber": "CT000010",
         "companyName": "Adatum Corporation", "email": email} for number, email in zip(numbers, emails)])
    return numbers


def test_three_contacts_sharing_an_email_are_none_of_them_written_and_the_rest_move_on(world: World):
    numbers = add_person_contacts(world, SHARED)

    code, run = cli(world, "sync", "nav-zoho")

    assert code == 3, run
    zoho_emails = [c["Email"] for c in world.crm("Contacts")]
    assert zoho_emails == ["robert.townes@contoso.com"], "the contacts that share no key are written"
    assert len(world.crm("Accounts")) == 5 and run["flows"]["contacts"]["failed"] == 3
    failed = failed_rows(world)
    for number in numbers:
        row = failed[number]
        others = [n for n in numbers if n != number]
        assert row["error_class"] == "duplicate_key" and row["flow"] == "contacts"
        assert all(other in row["error"] for other in others) and "Email" in row["error"], row["error"]
        assert "mlconnector replay" in row["error"]
    with world.state() as state:
        assert {i["source_id"] for i in state.replay_items(pair="nav-zoho")} == set(numbers)
    names = {c["number"]: c["displayName"] for c in world.erp("contacts")}
    assert [names[n] for n in numbers] == [f"Person {n}" for n in numbers], "no NAV contact renamed"

    # The operator fixes the data in NAV: two of them get their own address.
    nav = world.nav_user()
    nav.edit("contacts", numbers[1], E_Mail="second@example.com")
    nav.edit("contacts", numbers[2], E_Mail="third@example.com")
    # The sync writes the two changed ones; the first is written by it too where it is read again (NAV pages: a
    # card changed today is read on every run of the day), else by `replay`.
    assert cli(world, "sync", "nav-zoho")[0] == 0
    code, replayed = cli(world, "replay", "--all")
    assert code == 0, replayed

    contacts = {c["Email"]: c for c in world.crm("Contacts")}
    assert set(contacts) == {"robert.townes@contoso.com", "shared@example.com", "second@example.com",
                             "third@example.com"}
    assert [contacts[e]["Last_Name"] for e in ("shared@example.com", "second@example.com", "third@example.com")] \
        == [n for n in numbers], "each Zoho contact is its own NAV contact"
    with world.state() as state:
        assert state.replay_items(pair="nav-zoho") == []
    code, run = cli(world, "sync", "nav-zoho")
    assert code == 0 and all(f["created"] == f["updated"] == 0 for f in run["flows"].values()), run


def test_customer_numbers_differing_only_in_case_or_spaces_are_not_merged(world: World):
    world.dynamics.seed(world.company, "customers", [
        {"number": "K100", "displayName": "Kestrel Upper"}, {"number": "k100 ", "displayName": "Kestrel Lower"}])

    code, run = cli(world, "sync", "nav-zoho")

    assert code == 3, run
    assert not [a for a in world.crm("Accounts") if (a.get("Account_Number") or "").strip().lower() == "k100"]
    assert {a["Account_Number"] for a in world.crm("Accounts")} >= {"C00010", "C00020", "C00030"}
    failed = failed_rows(world)
    assert failed["K100"]["error_class"] == failed["k100 "]["error_class"] == "duplicate_key"
    assert "k100 " in failed["K100"]["error"] and "K100" in failed["k100 "]["error"]
    names = {c["number"]: c["displayName"] for c in world.erp("customers")}
    assert (names["K100"], names["k100 "]) == ("Kestrel Upper", "Kestrel Lower")


def test_a_later_record_with_a_linked_record_s_key_queues_both_and_overwrites_nothing(world: World):
    [first] = add_person_contacts(world, ["pat@example.com"])
    code, _ = cli(world, "sync", "nav-zoho")
    assert code == 0
    [pat] = [c for c in world.crm("Contacts") if c["Email"] == "pat@example.com"]
    [second] = add_person_contacts(world, ["PAT@example.com"], first=41)

    code, run = cli(world, "sync", "nav-zoho")

    assert code == 3, run
    assert world.zoho.record("Contacts", pat["id"])["Last_Name"] == first, "the linked Zoho contact is untouched"
    assert [c["Email"] for c in world.crm("Contacts")].count("pat@example.com") == 1
    failed = failed_rows(world)
    assert first in failed[second]["error"] and second in failed[first]["error"]
    assert failed[first]["target_id"] == pat["id"]
    names = {c["number"]: c["displayName"] for c in world.erp("contacts")}
    assert (names[first], names[second]) == (f"Person {first}", f"Person {second}")

    code, _ = cli(world, "replay", "--all")
    assert code == 3, "still shared: both wait"
    world.nav_user().edit("contacts", second, E_Mail="pat.second@example.com")
    code, run = cli(world, "sync", "nav-zoho")
    assert code == 0 and run["flows"]["contacts"]["created"] == 1, run  # the changed one, read again
    code, _ = cli(world, "replay", "--all")
    assert code == 0
    with world.state() as state:
        assert state.replay_items(pair="nav-zoho") == []
    emails = sorted(c["Email"] for c in world.crm("Contacts"))
    assert emails == ["pat.second@example.com", "pat@example.com", "robert.townes@contoso.com"]
    assert world.zoho.record("Contacts", pat["id"])["Last_Name"] == first


def test_zoho_contacts_whose_emails_nav_takes_for_one_are_not_merged_into_one_nav_contact(world: World):
    # NAV and Business Central compare key text without case (their database's collation): kim@example.com and
    # Kim@Example.com are one contact there, whatever Zoho, which keeps them as two Contacts, says.
    code, _ = cli(world, "sync", "nav-zoho")
    assert code == 0
    world.zoho.seed("Contacts", [{"First_Name": "Kim", "Last_Name": "Upper", "Email": "Kim@Example.com"},
                                 {"First_Name": "Kim", "Last_Name": "Lower", "Email": "kim@example.com"}])

    code, run = cli(world, "sync", "nav-zoho")

    assert code == 3, run
    assert not [c for c in world.erp("contacts") if (c.get("email") or "").lower() == "kim@example.com"]
    failed = [row for row in failed_rows(world).values() if row["flow"] == "contacts_to_nav"]
    assert len(failed) == 2 and {row["error_class"] for row in failed} == {"duplicate_key"}
