"""Scenario 7: records the target refuses (a mandatory field missing, a value too long, a lookup to a record
that is gone) fail alone, each with Zoho's error code and field in its audit row, and the rest of the batch
goes through. Fixed at the source, `replay` completes them."""

from __future__ import annotations

import json

from tests.reliability.harness import check_pair, count, exit_code_ok


def test_refused_records_fail_alone_with_the_vendors_code_and_field(make_rig):
    rig = make_rig(erps=("bc",))
    dynamics, company = rig.sandboxes.dynamics, rig.company("bc-zoho")
    items, customers = dynamics.records(company, "items"), dynamics.records(company, "customers")
    nameless, long_named = items[3]["number"], customers[5]["number"]
    dynamics.modify(company, "items", nameless, displayName="")                       # Product_Name is mandatory
    dynamics.modify(company, "customers", long_named, displayName="Aurora " * 40)     # 280 characters

    first = rig.cli("sync", "bc-zoho", "--json")
    exit_code_ok(first.returncode, (3,), first.stderr)
    flows = json.loads(first.stdout)["flows"]
    assert flows["customers"]["created"] == len(customers) - 1 and flows["customers"]["failed"] == 1
    assert flows["items"]["created"] == len(items) - 1 and flows["items"]["failed"] == 1
    failed = {r["source_id"]: r for r in json.loads(rig.cli("audit", "--status", "failed", "--json").stdout)}
    by_number = {r["number"]: r["id"] for r in [*items, *customers]}
    item_row, customer_row = failed[by_number[nameless]], failed[by_number[long_named]]
    # The pair checks Zoho's mandatory fields before sending (no API call wasted), in Zoho's terms.
    assert item_row["error_class"] in ("MANDATORY_NOT_FOUND", "INVALID_DATA") and "Product_Name" in item_row["error"]
    assert customer_row["error_class"] == "INVALID_DATA" and "Account_Name" in customer_row["error"]
    # Invoices of the customer that failed wait for it, with the reason; every other record is in Zoho.
    check_pair(rig, "bc-zoho").assert_clean()

    # A lookup to a record deleted in Zoho: the contact fails alone with the field named.
    org = rig.zoho("bc-zoho")
    contacts = [c for c in org.records("Contacts") if c.get("Account_Name")]
    victim, others = contacts[0], contacts[1:4]
    org.store.delete(org.spec("Accounts"), victim["Account_Name"]["id"])
    bc_contacts = {c["email"]: c for c in dynamics.records(company, "contacts") if c.get("email")}
    for contact in [victim, *others]:
        dynamics.modify(company, "contacts", bc_contacts[contact["Email"]]["number"], jobTitle="Buyer")
    second = rig.cli("sync", "bc-zoho", "--flow", "contacts", "--json")
    exit_code_ok(second.returncode, (3,), second.stderr)
    stats = json.loads(second.stdout)["flows"]["contacts"]
    assert stats["failed"] == 1 and stats["updated"] >= len(others), stats
    victim_id = bc_contacts[victim["Email"]]["id"]
    [row] = [r for r in json.loads(rig.cli("audit", "--status", "failed", "--flow", "contacts", "--json").stdout)
             if r["source_id"] == victim_id]
    assert row["error_class"] == "INVALID_DATA" and "Account_Name" in row["error"], row
    count("records_refused", 3)

    # Fixed at the source, replay completes the two refused records (the deleted account stays an operator's call).
    dynamics.modify(company, "items", nameless, displayName="Conference Chair")
    dynamics.modify(company, "customers", long_named, displayName="Aurora Trading")
    replay = rig.cli("replay", "--flow", "items")
    exit_code_ok(replay.returncode, (0,), replay.stderr)
    replay = rig.cli("replay", "--flow", "customers")
    exit_code_ok(replay.returncode, (0,), replay.stderr)
    assert {p["Product_Code"] for p in org.records("Products")} >= {nameless}
