"""`sync --dry-run` tells what the run would cost: for every pair, the API calls it estimates per system are within
10% of the calls the run then makes, on a first load and after edits on both sides (records born on the other side,
documents entered in Zoho, accounts added in Zuora). The run starts as cold as the dry run did: no access token and
no GP WSDL cached, which the dry run would otherwise have paid for it."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.reliability.harness import FO_COMPANY, PAIRS, Rig, count, exit_code_ok


def _calls(result: dict) -> dict[str, int]:
    total: dict[str, int] = {}
    for flow in result["flows"].values():
        for system, calls in flow["calls"].items():
            total[system] = total.get(system, 0) + calls
    return total


def _cold(rig: Rig) -> None:
    store = rig.setup.secret_store()
    for entry in store.list():
        if entry.field == "access_token_cache":
            store.delete(entry.system, entry.field)
    for wsdl in rig.setup.state_path.parent.glob("gp-*-wsdl.db*"):
        wsdl.unlink()


def _compare(rig: Rig, pair: str) -> tuple[dict[str, int], dict[str, int]]:
    _cold(rig)
    dry = rig.cli("sync", pair, "--dry-run", "--json")
    exit_code_ok(dry.returncode, (0,), dry.stderr)
    _cold(rig)
    run = rig.cli("sync", pair, "--json")
    exit_code_ok(run.returncode, (0,), run.stderr)
    estimated, made = json.loads(dry.stdout)["estimated_calls"], _calls(json.loads(run.stdout))
    for system in set(estimated) | set(made):
        est, actual = estimated.get(system, 0), made.get(system, 0)
        assert abs(est - actual) <= 0.1 * actual, f"{pair}: {system} estimated {est}, the run made {actual}"
    count("dry_run_estimates_checked", len(made))
    return estimated, made


def _edit_nav_zoho(rig: Rig, pair: str) -> None:
    dynamics, company = rig.sandboxes.dynamics, rig.company(pair)
    for row in dynamics.records(company, "customers")[:3]:
        dynamics.modify(company, "customers", row["number"], city="Drammen")
    item = dynamics.records(company, "items")[0]
    dynamics.modify(company, "items", item["number"], unitPrice=123.45)
    if pair == "nav-zoho":  # accounts entered in Zoho: NAV numbers them, and the numbers go back
        rig.zoho(pair).seed("Accounts", [{"Account_Name": f"Born in Zoho {i}", "Account_Type": "Customer",
                                          "Billing_City": "Bergen"} for i in range(5)])


def _edit_fo_zoho(rig: Rig, pair: str) -> None:
    finops = rig.finops
    for row in finops.records(FO_COMPANY, "CustomersV3")[:2]:
        finops.modify(FO_COMPANY, "CustomersV3", row["CustomerAccount"], AddressCity="Drammen")
    org = rig.zoho(pair)
    account = next(a for a in org.records("Accounts") if a.get("Account_Number"))
    products = [p for p in org.records("Products") if p.get("Product_Code")][:2]
    lines = [{"Product_Name": {"id": p["id"]}, "Quantity": 2, "List_Price": p.get("Unit_Price")} for p in products]
    org.seed("Sales_Orders", [{"Subject": f"Order {i}", "Status": "Created", "Account_Name": {"id": account["id"]},
                               "Ordered_Items": lines} for i in range(3)])
    org.seed("Invoices", [{"Subject": f"Invoice {i}", "Status": "Created", "Account_Name": {"id": account["id"]},
                           "Invoice_Date": "2026-01-15", "Invoiced_Items": lines} for i in range(2)])


def _edit_gp_zoho(rig: Rig, pair: str) -> None:
    gp, company_id = rig.gp, rig.sandboxes.gp.company_id
    customer = gp.company(company_id).customers[sorted(gp.company(company_id).customers)[0]]
    gp.modify("customers", customer["Key"]["Id"], company_id=company_id,
              address=customer["Addresses"][0]["Key"]["Id"], City="Drammen")
    org = rig.zoho(pair)
    account = next(a for a in org.records("Accounts") if a.get("Account_Number") and a["Account_Type"] == "Customer")
    product = next(p for p in org.records("Products") if p.get("Product_Code"))
    org.seed("Sales_Orders", [{"Subject": f"GP order {i}", "Status": "Created", "Account_Name": {"id": account["id"]},
                               "Ordered_Items": [{"Product_Name": {"id": product["id"]}, "Quantity": 1 + i,
                                                  "List_Price": product.get("Unit_Price")}]} for i in range(3)])
    org.seed("Deals", [{"Deal_Name": "Won deal", "Stage": "Closed Won", "Amount": 2500, "Closing_Date": "2026-02-01",
                        "Account_Name": {"id": account["id"]}}])


def _edit_nav_zuora(rig: Rig, pair: str) -> None:
    _edit_nav_zoho(rig, pair)
    for i in range(3):
        rig.zuora.seed_account(f"Born in Zuora {i}", email=f"billing{i}@zuora-born.example")


EDITS: dict[str, Callable[[Rig, str], None]] = {"nav-zoho": _edit_nav_zoho, "bc-zoho": _edit_nav_zoho,
                                               "fo-zoho": _edit_fo_zoho, "gp-zoho": _edit_gp_zoho,
                                               "nav-zuora": _edit_nav_zuora}


@pytest.mark.parametrize("pair", list(PAIRS))
def test_the_dry_run_estimates_the_calls_of_the_run_within_10_percent(make_rig, pair):
    rig = make_rig(pairs=(pair,))
    first_estimate, first_made = _compare(rig, pair)
    assert sum(first_made.values()) > 0
    EDITS[pair](rig, pair)
    _compare(rig, pair)
