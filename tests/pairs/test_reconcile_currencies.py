"""Documents in several currencies: each carries its currency to the other side, and `reconcile`'s totals per month
and currency compare them currency by currency (never USD added to EUR); a document edited or deleted in Zoho is named
with exactly its month and currency, and `--fix` brings both sides back to agreement."""

from __future__ import annotations

import json

from mlconnector.errors import EXIT_DISAGREE
from tests.pairs.test_reconcile import cli, reconciled
from tests.pairs.world import make_world


def rows(report: dict, flow: str) -> dict[tuple[str, str], tuple]:
    return {(t["month"], t["currency"]): (t["source_count"], t["source_sum"], t["target_count"], t["target_sum"],
                                          t["agrees"]) for t in report["flows"][flow]["totals"]}


def test_bc_invoices_in_two_currencies_agree_per_month_and_currency_and_euro_drift_is_named_and_fixed(
        tmp_path, monkeypatch):
    world = make_world(tmp_path, monkeypatch, "bc")
    try:
        lines = [{"lineObjectNumber": "1936-S", "quantity": 1}]  # 192.80 each
        drafts = world.dynamics.seed(world.company, "salesInvoices", [
            {"customerNumber": "C00010", "invoiceDate": "2026-11-03", "currencyCode": "EUR",
             "salesInvoiceLines": lines},
            {"customerNumber": "C00020", "invoiceDate": "2026-11-17", "currencyCode": "EUR",
             "salesInvoiceLines": lines + lines},
            {"customerNumber": "C00030", "invoiceDate": "2026-11-24", "salesInvoiceLines": lines}])
        for draft in drafts:
            world.dynamics.post_invoice(world.company, draft["number"])
        # A Zoho org without multi-currency takes no euro amounts: those invoices fail, naming the fix.
        assert cli(world, "sync", "bc-zoho", "--flow", "customers", "--flow", "items", "--flow",
                   "invoices").exit_code == 3
        failed = json.loads(cli(world, "audit", "--status", "failed", "--json").stdout)
        assert len(failed) == 2 and all("Zoho takes no EUR amounts: activate multi-currency" in r["error"]
                                        for r in failed), failed
        world.zoho.enable_multi_currency("USD")
        world.zoho.add_currency("EUR", "0.92")
        assert cli(world, "replay", "--pair", "bc-zoho", "--all").exit_code == 0
        invoices = {i["ERP_Number"]: i for i in world.crm("Invoices")}
        assert sorted(i["Currency"] for i in invoices.values()) == ["EUR", "EUR", "USD", "USD"]

        code, report = reconciled(world, "bc-zoho", "--flow", "invoices")

        assert code == 0, report
        november = rows(report, "invoices")
        assert november[("2026-11", "EUR")] == (2, 578.4, 2, 578.4, True)
        assert november[("2026-11", "USD")] == (1, 192.8, 1, 192.8, True)
        shown = cli(world, "reconcile", "bc-zoho", "--flow", "invoices")
        assert shown.exit_code == 0 and "EUR" in shown.stdout and "both sides agree" in shown.stdout

        # A CRM user adds an adjustment to one euro invoice: November's euros disagree, and nothing else does.
        [edited] = [i for i in invoices.values() if i["Currency"] == "EUR" and i["Grand_Total"] == 192.8]
        world.zoho_user().edit("Invoices", edited["id"], Adjustment=10)

        code, report = reconciled(world, "bc-zoho", "--flow", "invoices")

        assert code == EXIT_DISAGREE and not report["flows"]["invoices"]["agrees"]
        now = rows(report, "invoices")
        assert [k for k, v in now.items() if not v[-1]] == [("2026-11", "EUR")]
        assert now[("2026-11", "EUR")] == (2, 578.4, 2, 588.4, False)
        [differs] = report["flows"]["invoices"]["records"]
        assert (differs["kind"], differs["key"]) == ("differs", edited["ERP_Number"])
        assert {f["field"] for f in differs["fields"]} == {"Adjustment", "Grand_Total"}
        shown = cli(world, "reconcile", "bc-zoho", "--flow", "invoices")
        assert shown.exit_code == EXIT_DISAGREE and "differs" in shown.stdout

        fixed = cli(world, "reconcile", "bc-zoho", "--flow", "invoices", "--fix", "--now")
        assert fixed.exit_code == 0, fixed.output
        code, report = reconciled(world, "bc-zoho", "--flow", "invoices")
        assert code == 0 and rows(report, "invoices")[("2026-11", "EUR")][-1], report

        # The other euro invoice deleted in Zoho: one euro invoice short in November; --fix queues it, replay writes it.
        [other] = [i for i in world.crm("Invoices") if i["Currency"] == "EUR" and i["id"] != edited["id"]]
        world.zoho_user().delete("Invoices", other["id"])
        code, report = reconciled(world, "bc-zoho", "--flow", "invoices")
        assert code == EXIT_DISAGREE and [k for k, v in rows(report, "invoices").items() if not v[-1]] == [
            ("2026-11", "EUR")] and rows(report, "invoices")[("2026-11", "EUR")][:3] == (2, 578.4, 1)
        assert cli(world, "reconcile", "bc-zoho", "--flow", "invoices", "--fix").exit_code == EXIT_DISAGREE
        assert cli(world, "replay", "--error-class", "reconcile").exit_code == 0
        assert reconciled(world, "bc-zoho", "--flow", "invoices")[0] == 0
    finally:
        world.close()


def test_nav_zuora_invoices_and_payments_agree_with_what_nav_holds_before_and_after_posting(tmp_path, monkeypatch):
    from tests.pairs.test_nav_zuora_money import NO_STATUS_FIELDS, sync_cli
    from tests.pairs.zuora_world import make_zuora_world

    world = make_zuora_world(tmp_path, monkeypatch, zuora_settings='account_match = "company_name"\n',
                             pair_settings=NO_STATUS_FIELDS)
    try:
        assert sync_cli(world) == 0
        [invoice] = world.zuora.bill_run()
        amount, paid = round(float(invoice["amount"]), 2), round(float(invoice["amount"]) / 2, 2)
        payment = world.zuora.pay(invoice["id"], paid, kind="External")
        assert sync_cli(world) == 0
        month = invoice["invoiceDate"][:7]
        flows = ("--flow", "invoices", "--flow", "payments")

        code, report = reconciled(world, "nav-zuora", *flows)

        assert code == 0, report
        # NAV keeps its own currency (USD) blank: compared as USD, the invoice's currency in Zuora.
        assert rows(report, "invoices") == {(month, "USD"): (1, amount, 1, amount, True)}
        assert rows(report, "payments") == {(payment["effectiveDate"][:7], "USD"): (1, paid, 1, paid, True)}

        # Posted by a NAV user, the lines become ledger entries: still one document each, still agreeing.
        world.dynamics.post_journal(world.company, "SALES", "ZUORA")
        world.dynamics.post_journal(world.company, "CASHRCPT", "ZUORA")
        code, report = reconciled(world, "nav-zuora", *flows)
        assert code == 0 and rows(report, "invoices") == {(month, "USD"): (1, amount, 1, amount, True)}, report

        # A payment cancelled in Zuora before anyone posted it left the journal: nothing to hold, nothing to sum.
        later = world.zuora.pay(invoice["id"], 10.0, kind="External")
        assert sync_cli(world) == 0
        world.zuora.cancel_payment(later["paymentNumber"])
        assert sync_cli(world) == 0
        code, report = reconciled(world, "nav-zuora", *flows)
        assert code == 0 and rows(report, "payments")[(payment["effectiveDate"][:7], "USD")][:3] == (1, paid, 1), \
            report
    finally:
        world.close()


def test_fo_zoho_orders_in_two_currencies_total_per_month_and_currency_in_fo(tmp_path, monkeypatch):
    from tests.pairs.fo_world import make_fo_world

    world = make_fo_world(tmp_path, monkeypatch)
    try:
        world.zoho.enable_multi_currency("USD")
        world.zoho.add_currency("EUR", "0.92")
        assert world.sync().exit_code == 0
        world.zoho_order("US-002", [("D0001", 2)], SO_Number="SO-1", Due_Date="2026-11-20", Currency="EUR")
        world.zoho_order("US-003", [("T0001", 10)], SO_Number="SO-2", Due_Date="2026-11-25")
        assert world.sync().exit_code == 0
        assert sorted(o["CurrencyCode"] for o in world.fo("SalesOrderHeadersV2")) == ["EUR", "USD"]

        code, report = reconciled(world, "fo-zoho", "--flow", "sales_orders")

        assert code == 0, report
        assert rows(report, "sales_orders") == {("2026-11", "EUR"): (1, 460.0, 1, 460.0, True),
                                                ("2026-11", "USD"): (1, 125.0, 1, 125.0, True)}
    finally:
        world.close()


def test_gp_zoho_orders_carry_their_zoho_currency_to_gp(tmp_path, monkeypatch):
    from tests.pairs.gp_world import make_gp_world
    from tests.pairs.test_gp_zoho import seed_zoho_order

    world = make_gp_world(tmp_path, monkeypatch)
    try:
        world.zoho.enable_multi_currency("USD")
        world.zoho.add_currency("EUR", "0.92")
        assert world.sync(flows=["customers"]).exit_code == 0
        order_id = seed_zoho_order(world, "AARONFIT0001")
        world.zoho.edit("Sales_Orders", order_id, Currency="EUR")
        assert world.sync(flows=["sales_orders_to_gp"]).exit_code == 0
        [order] = world.gp.sales_orders()
        assert order["CurrencyKey"] == {"ISOCode": "EUR"} and order["TotalAmount"]["Value"] == 300
    finally:
        world.close()
