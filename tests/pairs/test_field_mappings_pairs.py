"""Configured mappings and filters on fo-zoho, gp-zoho and nav-zuora (nav-zoho and bc-zoho: test_field_mappings.py):
each pair's own records, connectors and targets, with the README's kind of configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlconnector.errors import ConfigError

from tests.pairs.fo_world import LEGAL_ENTITY, make_fo_world
from tests.pairs.gp_world import make_gp_world
from tests.pairs.zuora_world import make_zuora_world


def configure(config_path: Path, text: str) -> None:
    config_path.write_text(config_path.read_text() + "\n" + text)


@pytest.fixture
def fo(tmp_path, monkeypatch):
    made = make_fo_world(tmp_path, monkeypatch)
    yield made
    made.close()


@pytest.fixture
def gp(tmp_path, monkeypatch):
    made = make_gp_world(tmp_path, monkeypatch)
    yield made
    made.close()


@pytest.fixture
def zuora(tmp_path, monkeypatch):
    made = make_zuora_world(tmp_path, monkeypatch, zuora_settings='account_match = "company_name"\n')
    yield made
    made.close()


def test_fo_zoho_a_customer_group_field_a_filter_and_a_transform_into_fo(fo):
    fo.zoho.add_field("Accounts", "Customer_Group")
    configure(fo.config_path, '''
[pairs.fo-zoho.mappings.customers]
add = { Customer_Group = "CustomerGroupId" }
filter = { OnHoldStatus = { not_in = ["Invoice", "All"] } }

[pairs.fo-zoho.mappings.sales_orders]
transform = { SalesOrderName = { case = "upper", truncate = 10 } }
''')
    first = fo.sync()
    assert first.exit_code == 0, first.to_dict()
    accounts = {a["Account_Number"]: a for a in fo.crm("Accounts")}
    assert set(accounts) == {"US-001", "US-002"}  # Forest Wholesales is on hold for invoicing
    assert accounts["US-001"]["Customer_Group"] == "30"
    assert first.flows["customers"].skip_reasons == {"left out by the filter: OnHoldStatus not in ['Invoice', "
                                                     "'All']": 1}

    fo.zoho_order("US-002", [("D0001", 2)], subject="Rush order from Zoho")
    second = fo.sync()
    assert second.flows["sales_orders"].created == 1, second.to_dict()
    [order] = fo.finops.records(LEGAL_ENTITY, "SalesOrderHeadersV2")
    assert order["SalesOrderName"] == "RUSH ORDER"


def test_gp_zoho_an_added_field_from_gp_and_only_active_customers(gp):
    gp.gp.add_customer("ZENITH0001", "Zenith Closed Stores", active=False,
                       addresses={"PRIMARY": {"line1": "1 Gone Street", "city": "Fargo", "country": "USA"}})
    configure(gp.config_path, '''
[pairs.gp-zoho.mappings.customers]
add = { Account_Site = { from = "shortName", truncate = 10 } }
transform = { Description = { default = "no comment" } }
filter = { isActive = true }
''')
    result = gp.sync(flows=["customers"])
    assert result.exit_code == 0, result.to_dict()
    accounts = {a["Account_Number"]: a for a in gp.crm("Accounts")}
    assert set(accounts) == {"AARONFIT0001", "ADAMPARK0001", "ALTONMAN0001"}
    assert accounts["AARONFIT0001"]["Account_Site"] == "Aaron Fitz"
    assert accounts["ADAMPARK0001"]["Description"] == "no comment"
    assert result.flows["customers"].skip_reasons == {"left out by the filter: isActive equals true": 1}


def test_nav_zuora_account_names_truncated_and_blocked_customers_left_out_of_billing(zuora):
    zuora.dynamics.modify(zuora.company, "customers", "C00030", blocked="All")
    configure(zuora.config_path, '''
[pairs.nav-zuora.mappings.customers]
transform = { name = { truncate = 12 } }
filter = { blocked = { not_in = ["All", "Invoice"] } }
''')
    result = zuora.sync(flows=["customers"])
    assert result.exit_code == 0, result.to_dict()
    assert zuora.account("C00010")["name"] == "Adatum Corpo"
    assert zuora.account("C00020")["name"] == "Trey Researc"
    assert not [a for a in zuora.zuora.records("accounts") if a.get("NAVCustomerNumber__c") == "C00030"]
    assert result.flows["customers"].skipped == 1


def test_gp_zoho_a_field_gp_sales_orders_cannot_take_stops_the_run_before_any_order_rather_than_vanish(gp):
    configure(gp.config_path, '''
[pairs.gp-zoho.mappings.sales_orders_to_gp]
add = { shippingMethod = "Carrier" }
transform = { customerPONumber = { case = "upper" } }
''')
    assert gp.sync(flows=["customers"]).exit_code == 0
    gp.zoho.add_field("Sales_Orders", "Carrier")
    [product] = gp.zoho.seed("Products", [{"Product_Name": "100XLG", "Product_Code": "100XLG"}])
    gp.zoho.seed("Sales_Orders", [{
        "Subject": "Phones", "Account_Name": {"id": gp.account("AARONFIT0001")["id"]}, "Carrier": "FedEX",
        "Ordered_Items": [{"Product_Name": {"id": product}, "Quantity": 4, "List_Price": 75.0}]}])

    with pytest.raises(ConfigError) as refused:
        gp.sync(flows=["sales_orders_to_gp"])

    assert refused.value.exit_code == 2
    assert str(refused.value).startswith("pairs.gp-zoho.mappings.sales_orders_to_gp writes shippingMethod, which gp's "
                                         "salesOrders does not have")
    assert gp.gp.sales_orders() == [] and not gp.state().replay_items(pair="gp-zoho")

    gp.config_path.write_text(gp.config_path.read_text().replace('add = { shippingMethod = "Carrier" }\n', ""))
    # Without that field the order goes (the next run maps it again: the mapping changed).
    assert gp.sync(flows=["sales_orders_to_gp"]).exit_code == 0
    [order] = gp.gp.sales_orders()
    assert order["CustomerPONumber"] == "PHONES"


def test_nav_zuora_a_nav_extension_field_and_a_zuora_custom_field_both_ways(zuora):
    zuora.dynamics.extend_table("customers", {"region": "string"})
    zuora.dynamics.extend_page("Customer", {"Sales_Region": "region"})
    zuora.dynamics.modify(zuora.company, "customers", "C00010", region="SOUTH")
    zuora.zuora.add_custom_field("accounts", "Region__c")  # Settings > Billing > Manage Custom Fields
    configure(zuora.config_path, '''
[pairs.nav-zuora.mappings.customers]
add = { Region__c = "Sales_Region" }

[pairs.nav-zuora.mappings.accounts_to_customers]
add = { Sales_Region = "Region__c" }
''')
    first = zuora.sync(flows=["customers", "accounts_to_customers"])
    assert first.exit_code == 0, first.to_dict()
    # Everything a rare failure needs to be told apart: what NAV holds, what Zuora holds, what the run did.
    assert zuora.account("C00010")["Region__c"] == "SOUTH", (zuora.customer("C00010"), zuora.account("C00010"),
                                                             first.to_dict(), zuora.zuora.calls)

    zuora.zuora_user().edit_account(zuora.account("C00020")["id"], Region__c="MIDWEST")
    back = zuora.sync(flows=["customers", "accounts_to_customers"])
    assert back.exit_code == 0, back.to_dict()
    assert zuora.customer("C00020")["region"] == "MIDWEST"
    again = zuora.sync(flows=["customers", "accounts_to_customers"])
    assert all(s.created == s.updated == 0 for s in again.flows.values()), again.to_dict()
