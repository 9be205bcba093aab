"""`reconcile`'s totals per month and currency: documents in two currencies compared currency by currency (never
USD added to EUR), a document edited in Zoho named with exactly its month and currency, and `--fix --now` bringing
both sides back to agreement."""

from __future__ import annotations

from mlconnector.errors import EXIT_DISAGREE
from tests.pairs.test_reconcile import cli, reconciled
from tests.pairs.world import make_world


def rows(report: dict, flow: str) -> dict[tuple[str, str], tuple]:
    return {(t["month"], t["currency"]): (t["source_count"], t["source_sum"], t["target_count"], t["target_sum"],
                                          t["agrees"]) for t in report["flows"][flow]["totals"]}


def test_bc_invoices_in_two_currencies_agree_per_month_and_currency_and_an_edited_euro_invoice_is_fixed(
        tmp_path, monkeypatch):
    world = make_world(tmp_path, monkeypatch, "bc")
    try:
        world.zoho.enable_multi_currency("USD")
        world.zoho.add_currency("EUR", "0.92")
        lines = [{"lineObjectNumber": "1936-S", "quantity": 1}]  # 192.80 each
        drafts = world.dynamics.seed(world.company, "salesInvoices", [
            {"customerNumber": "C00010", "invoiceDate": "2026-11-03", "currencyCode": "EUR", "salesInvoiceLines": lines},
            {"customerNumber": "C00020", "invoiceDate": "2026-11-17", "currencyCode": "EUR",
             "salesInvoiceLines": lines + lines},
            {"customerNumber": "C00030", "invoiceDate": "2026-11-24", "salesInvoiceLines": lines}])
        for draft in drafts:
            world.dynamics.post_invoice(world.company, draft["number"])
        assert cli(world, "sync", "bc-zoho", "--flow", "customers", "--flow", "items", "--flow",
                   "invoices").exit_code == 0
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
    finally:
        world.close()
