"""Scenario 2, for fo-zoho, gp-zoho and nav-zuora: every sandbox of the three pairs (F&O, GP, Zuora, NAV and the
Zoho orgs) answers 429 with Retry-After and 5xx at random while the real CLI syncs the three side by side, with
changes waiting on both sides of each pair. Whatever the exit codes, once the operator's next runs (and
`replay`) finish, everything is there exactly once; GP's concurrency limit is never exceeded."""

from __future__ import annotations

import time

from tests.reliability.harness import (FO_COMPANY, Rig, check_pair, count, exit_code_ok,
                                      sync_through_latency_spikes)

PAIRS = ("fo-zoho", "gp-zoho", "nav-zuora")
GP_CONCURRENCY = 2   # the GP connector's default: GP's web server also serves its interactive users


def _finish_cleanly(rig: Rig) -> None:
    """What an operator's next cron runs do: sync, replay what is queued, sync again; then all must be right."""
    rig.quiet()
    for pair in PAIRS:
        first = rig.cli("sync", pair)
        exit_code_ok(first.returncode, (0, 3), first.stderr)
    with rig.state() as state:
        queued = state.replay_items()
    if queued:
        replay = rig.cli("replay", "--all")
        exit_code_ok(replay.returncode, (0, 3), replay.stderr)
    for pair in PAIRS:
        again = rig.cli("sync", pair)
        exit_code_ok(again.returncode, (0,), again.stdout[-3000:] + again.stderr)
    with rig.state() as state:
        assert state.replay_items() == [], "records left in the replay queue"
    for pair in PAIRS:
        check_pair(rig, pair).assert_clean()


def _injected(rig: Rig) -> dict[str, int]:
    zoho = sum(rig.zoho(p).calls["throttled"] + rig.zoho(p).calls["server_error"] for p in ("fo-zoho", "gp-zoho"))
    return {"zoho": zoho,
            "fo": sum(1 for call in rig.finops.calls if call.status in (429, 500, 503)),
            "gp": sum(1 for call in rig.gp.calls if call.status in (500, 503)),
            "zuora": rig.zuora.calls["throttled"] + rig.zuora.calls["server_error"],
            "nav": sum(1 for call in rig.sandboxes.dynamics.calls if call.status in (429, 500, 502, 503))}


def _both_sides_change(rig: Rig) -> int:
    """Edits in each ERP, and documents and accounts born on the other side; returns how many records."""
    finops = rig.finops
    finops.modify(FO_COMPANY, "CustomersV3", "US-001", PrimaryContactPhone="+1 619 555 0199")
    finops.seed(FO_COMPANY, "CustomersV3", [{"PartyType": "Organization", "CustomerGroupId": "30", "SalesCurrencyCode": "USD",
                                             "CustomerAccount": "US-STORM", "OrganizationName": "Storm Retail"}])
    org = rig.zoho("fo-zoho")
    accounts = {a["Account_Number"]: a for a in org.records("Accounts")}
    products = {p["Product_Code"]: p for p in org.records("Products")}
    for n, number in enumerate(("US-001", "US-002", "US-003")):
        lines = [{"Product_Name": {"id": products[code]["id"]}, "Quantity": n + 1,
                  "List_Price": products[code]["Unit_Price"]} for code in ("D0001", "T0001")]
        org.seed("Sales_Orders", [{"Subject": f"Storm order {n}", "Status": "Created",
                                   "Account_Name": {"id": accounts[number]["id"]}, "Ordered_Items": lines}])
        org.seed("Invoices", [{"Subject": f"Storm invoice {n}", "Status": "Created", "Invoice_Date": "2026-03-01",
                               "Account_Name": {"id": accounts[number]["id"]}, "Invoiced_Items": lines}])
    gp, company_id = rig.gp, rig.sandboxes.gp.company_id
    gp.modify("customers", "ADAMPARK0001", company_id=company_id, address="PRIMARY", City="Evanston")
    gp.add_customer("STORM0001", "Storm Supplies", company_id=company_id, addresses={"PRIMARY": {"city": "Oslo"}})
    org = rig.zoho("gp-zoho")
    accounts = {a.get("Account_Number"): a for a in org.records("Accounts")}
    products = {p["Product_Code"]: p for p in org.records("Products")}
    for n, number in enumerate(("AARONFIT0001", "ADAMPARK0001", "ALTONMAN0001")):
        org.seed("Sales_Orders", [{"Subject": f"Storm GP order {n}", "Status": "Created",
                                   "Account_Name": {"id": accounts[number]["id"]},
                                   "Ordered_Items": [{"Product_Name": {"id": products["100XLG"]["id"]},
                                                      "Quantity": n + 2, "List_Price": 79.99}]}])
    org.seed("Deals", [{"Deal_Name": "Storm deal", "Stage": "Closed Won", "Amount": 2500,
                        "Account_Name": {"id": accounts["AARONFIT0001"]["id"]}, "Closing_Date": "2026-03-31"}])
    dynamics, company = rig.sandboxes.dynamics, rig.company("nav-zuora")
    for row in dynamics.records(company, "customers")[:5]:
        dynamics.modify(company, "customers", row["number"], city="Storm City")
    dynamics.seed(company, "customers", [{"displayName": "Storm NAV customer", "city": "Bergen"}])
    for n in range(3):
        rig.zuora.seed_account(f"Storm Zuora account {n}", email=f"storm{n}@zuora-born.example")
    return 2 + 6 + 2 + 4 + 6 + 3


def test_a_storm_of_429s_and_5xx_on_fo_gp_and_zuora_pairs_loses_and_doubles_nothing(make_rig):
    retries = {"retry_attempts": 8}
    rig = make_rig(pairs=PAIRS, faults="seed=17",
                   system_settings={"zoho-fo": retries, "zoho-gp": retries, "zuora": retries})
    for pair in PAIRS:  # master data first, quietly: the documents born in Zoho need accounts to book against
        first = rig.cli("sync", pair)
        exit_code_ok(first.returncode, (0,), first.stderr)
    changed = _both_sides_change(rig)
    time.sleep(1.1)  # Zoho and Zuora stamp to the second: the storm's runs must see these as changes
    rig.gp.reset_counters()
    # 30% 429 with Retry-After 0 (F&O's 503 and NAV announce at least 1 s), 5% 500/503, latency spikes.
    rig.set_faults(rate_limit=0.3, server_error=0.05, retry_after=0.0)
    sync_through_latency_spikes(rig, PAIRS, spike=0.1, timeout=180)
    injected = _injected(rig)
    for system in ("zoho", "fo", "gp", "zuora"):
        assert injected[system] >= 2, f"only {injected} faults were injected"
    count("faults_injected", sum(injected.values()))
    _finish_cleanly(rig)
    count("records_checked", changed)
    # GP's web server also serves its users: the connector never had more calls open than it is allowed.
    assert 1 <= rig.gp.max_in_flight <= GP_CONCURRENCY, rig.gp.max_in_flight
    assert rig.gp.rejected == 0, f"GP refused {rig.gp.rejected} calls over its concurrency limit"
