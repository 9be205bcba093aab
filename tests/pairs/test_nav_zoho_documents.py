"""nav-zoho's documents as a sales rep sees them in Zoho: a NAV order's Status follows what NAV shipped and
invoiced; read back through Zoho's API."""

from __future__ import annotations

import pytest

from tests.pairs.world import World, make_world

# A Zoho org that added "Partly Shipped" and "Invoiced" to the Sales_Orders Status picklist.
STATUSES = ('\n[pairs.nav-zoho.options]\n'
            'order_status_values = { "Partly shipped" = "Partly Shipped", Invoiced = "Invoiced" }\n')


@pytest.fixture
def world(tmp_path, monkeypatch):
    made = make_world(tmp_path, monkeypatch, "nav")
    yield made
    made.close()


def zoho_status(world: World) -> str:
    [order] = world.erp("salesOrders")
    [linked] = [o for o in world.crm("Sales_Orders") if o.get("ERP_Number") == order["number"]]
    return world.zoho_user().record("Sales_Orders", str(linked["id"]))["Status"]


def test_a_nav_order_shows_created_then_delivered_once_nav_shipped_it_all(world):
    world.sync("nav-zoho")
    assert zoho_status(world) == "Created"
    [order] = world.erp("salesOrders")

    world.dynamics.ship(world.company, order["number"])
    assert world.sync("nav-zoho").exit_code == 0

    assert zoho_status(world) == "Delivered"


def test_partly_shipped_and_invoiced_orders_take_the_values_the_org_added_to_its_picklist(world):
    with world.config_path.open("a") as config:
        config.write(STATUSES)
    world.sync("nav-zoho")
    [order] = world.erp("salesOrders")

    world.dynamics.ship(world.company, order["number"], share=0.5)
    assert world.sync("nav-zoho").exit_code == 0
    assert zoho_status(world) == "Partly Shipped"

    world.dynamics.ship(world.company, order["number"], invoice=True)
    assert world.sync("nav-zoho").exit_code == 0
    assert zoho_status(world) == "Invoiced"


def test_a_zoho_contact_lands_in_nav_under_its_accounts_company_contact_and_so_under_the_customer(world):
    world.sync("nav-zoho")
    adatum = world.account("C00010")["id"]
    world.zoho_user().create("Contacts", First_Name="Megan", Last_Name="Bowen", Email="megan.bowen@adatum.example",
                             Account_Name={"id": adatum})

    assert world.sync("nav-zoho").exit_code == 0

    nav = world.nav_user()
    [megan] = [c for c in nav.cards("contacts") if c.get("E_Mail") == "megan.bowen@adatum.example"]
    assert (megan["Type"], megan["Company_No"]) == ("Person", "CT000010")   # Adatum's company contact
    relations = nav.rows("ContactBusinessRelations", "Contact_No eq 'CT000010'")
    assert [(r["Link_to_Table"], r["No"]) for r in relations] == [("Customer", "C00010")]


def test_a_zoho_contact_whose_customer_has_no_company_contact_in_nav_fails_with_the_fix(world):
    world.sync("nav-zoho")
    trey = world.account("C00020")["id"]
    world.zoho_user().create("Contacts", Last_Name="Ray", Email="helen.ray@trey.example", Account_Name={"id": trey})

    result = world.sync("nav-zoho")

    assert result.exit_code == 3
    with world.state() as state:
        [failed] = state.audit_rows(status="failed", limit=None)
    assert failed["error_class"] == "no_company_contact" and "customer C00020" in failed["error"]
    assert "Create as Contact" in failed["error"]
