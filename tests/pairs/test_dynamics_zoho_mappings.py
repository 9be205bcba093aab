"""The Dynamics <-> Zoho field mappings, record by record (the end-to-end pair tests use the sandboxes)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from mlconnector.errors import RecordError, UnresolvedReference
from mlconnector.flows import SkipRecord
from mlconnector.pairs import dynamics_zoho as m
from mlconnector.pairs.bc_zoho import BC_ZOHO
from mlconnector.pairs.nav_zoho import NAV_ZOHO
from mlconnector.systems.base import Record

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


class Ctx:
    def __init__(self, links: dict[tuple[str, str], str] | None = None, **options):
        self.links = links or {}
        self.options = NAV_ZOHO.option_values(options)  # as a run sees them: every option, defaults filled in

    def target_id(self, flow: str, source_id: str, *, what: str = "record") -> str:
        try:
            return self.links[(flow, source_id)]
        except KeyError:
            raise UnresolvedReference(f"{what} is not yet in zoho") from None

    def source_id(self, flow: str, target_id: str) -> str | None:
        return None


def rec(entity: str, **data) -> Record:
    return Record("nav", entity, str(data.get("id", data.get("number", "x"))), NOW, data)


def test_customer_to_account_maps_the_documented_fields():
    customer = rec("customers", number="10000", displayName="Adatum Corporation", addressLine1="192 Market Square",
                   addressLine2="", city="Atlanta", state="GA", country="US", postalCode="31772", phoneNumber="",
                   email="robert.townes@contoso.com", website="", blocked=" ", creditLimit=5000)
    assert m.account_from_customer(customer, Ctx()) == {
        "Account_Name": "Adatum Corporation", "Account_Number": "10000", "Billing_Street": "192 Market Square",
        "Billing_City": "Atlanta", "Billing_State": "GA", "Billing_Code": "31772", "Billing_Country": "US",
        "Account_Type": "Customer"}
    assert m.account_from_customer(customer, Ctx(account_key_field="ERP_Id"))["ERP_Id"] == "10000"


def test_vendor_numbers_are_prefixed_so_they_never_clash_with_customers():
    vendor = rec("vendors", number="10000", displayName="Fabrikam")
    account = m.account_from_vendor(vendor, Ctx())
    assert account["Account_Number"] == "V-10000" and account["Account_Type"] == "Vendor"
    back = m.vendor_from_account(Record("zoho", "Accounts", "1", NOW, account), Ctx())
    assert back["number"] == "10000" and back["displayName"] == "Fabrikam"


def test_accounts_go_back_to_customers_or_vendors_by_account_type_and_never_carry_financials():
    account = Record("zoho", "Accounts", "1", NOW, {"Account_Name": "Born in Zoho", "Account_Type": "Customer",
                                                    "Billing_City": "Oslo", "Annual_Revenue": 10})
    assert m.customer_from_account(account, Ctx()) == {"displayName": "Born in Zoho", "city": "Oslo", "number": None}
    with pytest.raises(SkipRecord):
        m.vendor_from_account(account, Ctx())
    supplier = Record("zoho", "Accounts", "2", NOW, {"Account_Name": "S", "Account_Type": "Supplier"})
    with pytest.raises(SkipRecord):
        m.customer_from_account(supplier, Ctx())


def test_a_contact_needs_its_customer_linked_first():
    contact = rec("contacts", number="CT1", type="Person", displayName="Helen Ray", email="helen@trey.example",
                  relations=[{"type": "Customer", "id": "cust-guid", "number": "20000"}])
    with pytest.raises(UnresolvedReference, match="customer 20000 is not yet in zoho"):
        m.contact_from_contact(contact, Ctx())
    payload = m.contact_from_contact(contact, Ctx({("customers", "cust-guid"): "z-acc-1"}))
    assert payload == {"First_Name": "Helen", "Last_Name": "Ray", "Email": "helen@trey.example",
                       "Account_Name": {"id": "z-acc-1"}}


def test_company_contacts_vendor_contacts_in_bc_and_contacts_without_email_are_handled():
    company = rec("contacts", number="CT2", type="Company", displayName="Trey")
    with pytest.raises(SkipRecord):
        m.contact_from_contact(company, Ctx())
    vendor_contact = rec("contacts", number="CT3", type="Person", displayName="Vic", email="v@x.example",
                         relations=[{"type": "Vendor", "id": "v1", "number": "V1"}])
    with pytest.raises(SkipRecord):
        m.contact_of_customer(vendor_contact, Ctx())
    no_mail = rec("contacts", number="CT4", type="Person", displayName="Nomail",
                  relations=[{"type": "Customer", "id": "c", "number": "C"}])
    with pytest.raises(RecordError, match="no email"):
        m.contact_from_contact(no_mail, Ctx({("customers", "c"): "z"}))


def test_invoice_lines_need_linked_products_and_comment_lines_are_dropped():
    invoice = rec("postedSalesInvoices", id="inv-1", number="PS-INV103001", customerId="cust", customerNumber="20000",
                  invoiceDate="2019-01-15", dueDate="2019-01-15", status="Paid", orderId=m.EMPTY_GUID,
                  salesInvoiceLines=[
                      {"lineType": "Item", "itemId": "item-1", "lineObjectNumber": "1928-S", "quantity": 3,
                       "unitPrice": 54.9, "discountAmount": 0, "description": "AMSTERDAM Lamp"},
                      {"lineType": "Comment", "description": "thanks"}])
    with pytest.raises(UnresolvedReference, match="item 1928-S"):
        m.invoice_from_posted_invoice(invoice, Ctx({("customers", "cust"): "acc"}))
    payload = m.invoice_from_posted_invoice(invoice, Ctx({("customers", "cust"): "acc", ("items", "item-1"): "p1"}))
    assert payload["ERP_Number"] == "PS-INV103001" and payload["Status"] == "Paid"
    assert payload["Account_Name"] == {"id": "acc"}
    assert payload["Invoiced_Items"] == [{"Product_Name": {"id": "p1"}, "Quantity": 3, "List_Price": 54.9,
                                          "Discount": 0, "Description": "AMSTERDAM Lamp"}]


def test_a_gl_account_line_fails_the_document_with_the_reason():
    order = rec("salesOrders", number="S1", customerId="c", salesOrderLines=[{"lineType": "Account", "quantity": 1}])
    with pytest.raises(RecordError, match="Account line"):
        m.sales_order_from_order(order, Ctx({("customers", "c"): "a"}))


def test_pairs_declare_dependencies_and_two_way_echoes():
    assert [f.name for f in BC_ZOHO.ordered(["invoices"])] == ["invoices"]
    assert [f.name for f in BC_ZOHO.ordered()] == ["customers", "items", "contacts", "invoices"]
    assert {f.target for f in BC_ZOHO.flows} == {"crm"}  # nothing is written into Business Central
    nav = {f.name: f for f in NAV_ZOHO.flows}
    assert nav["accounts_to_customers"].echo_of == "customers" and nav["customers"].echo_of == "accounts_to_customers"
    assert nav["customers"].key_field(NAV_ZOHO.option_values({})) == "Account_Number"
    assert nav["customers"].key_field(NAV_ZOHO.option_values({"account_key_field": "ERP_Id"})) == "ERP_Id"
