"""gp-zoho's financial context on Zoho Accounts, end to end through the CLI: a GP customer's credit limit and GL
coding, a GP vendor's outstanding payables and GL coding, read back through Zoho's REST API; a payables document
posted in GP moves the vendor's figure on the next run although its card did not change."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mlconnector.cli.main import build_app
from tests.pairs.deleting import zoho_user
from tests.pairs.gp_world import GPWorld, make_gp_world


@pytest.fixture
def world(tmp_path, monkeypatch):
    made = make_gp_world(tmp_path, monkeypatch)
    yield made
    made.close()


def sync_cli(world: GPWorld) -> int:
    result = CliRunner().invoke(build_app(), ["sync", "gp-zoho", "--flow", "customers", "--flow", "vendors"],
                                obj=world.runtime())
    assert world.secrets["MLCONNECTOR_GP_PASSWORD"] not in result.output
    return result.exit_code


def test_accounts_show_credit_limit_payables_and_gl_coding_and_payables_follow_gp(world: GPWorld):
    assert sync_cli(world) == 0
    user = zoho_user(world.router, world.zoho)
    try:
        customer = user.record("Accounts", world.account("AARONFIT0001")["id"])
        assert customer["Credit_Limit"] == 15000
        assert (customer["GL_Cash_Account"], customer["GL_Receivables_Account"], customer["GL_Sales_Account"]) == (
            "000-1100-00", "000-1200-00", "000-4100-00")
        vendor_id = world.account("V-ACETRAVE0001")["id"]
        vendor = user.record("Accounts", vendor_id)
        # two open invoices (1,200 + 300) less an open credit memo (150); the invoice in history is paid
        assert vendor["Outstanding_Payables"] == pytest.approx(1350.0)
        assert (vendor["GL_Cash_Account"], vendor["GL_Payables_Account"], vendor["GL_Purchases_Account"]) == (
            "000-1100-00", "000-2100-00", "000-5100-00")
        assert user.record("Accounts", world.account("V-ADVANCED0001")["id"])["Outstanding_Payables"] == 0

        # A GP user posts a new invoice and pays one off: the vendor card is untouched, the figure moves.
        world.gp.clock.advance(days=1)
        world.gp.add_payables_document("PM-INV-1003", "ACETRAVE0001", "Invoice", 99.5)
        world.gp.settle_payables_document("PM-INV-1002")
        world.gp.clock.advance(days=1)
        assert sync_cli(world) == 0
        assert user.record("Accounts", vendor_id)["Outstanding_Payables"] == pytest.approx(1149.5)
    finally:
        user.close()
