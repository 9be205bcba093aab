"""nav-zoho: Dynamics NAV and Zoho CRM. The customer master goes both ways; items, sales orders and
posted invoices go from NAV to Zoho. Nothing is ever written into NAV's general ledger."""

from mlconnector.flows import CONFLICT_RULE, Flow, PairSpec
from mlconnector.pairs import dynamics_zoho as m
from mlconnector.pairs import register
from mlconnector.pairs.dynamics_zoho_setup import zoho_prerequisites

NAV_ZOHO = register(PairSpec(
    name="nav-zoho",
    options=(m.ACCOUNT_KEY, m.CONTACT_KEY, m.PRODUCT_KEY, m.ORDER_KEY, m.ORDER_STATUSES, m.INVOICE_KEY,
             m.REMAINING_FIELD, m.LOCAL_CURRENCY, m.VENDOR_PREFIX, m.ACCOUNT_TYPE_FIELD, m.VENDOR_ACCOUNT_TYPES,
             CONFLICT_RULE),
    prerequisites=lambda options: zoho_prerequisites(options, {
        "account": ("customers", "vendors", "accounts_to_customers", "accounts_to_vendors"),
        "contact": ("contacts", "contacts_to_nav"), "product": ("items",), "order": ("sales_orders",),
        "invoice": ("invoices",)}),
    roles={"erp": ("nav",), "crm": ("zoho",)},
    description="Dynamics NAV <-> Zoho CRM: customers, vendors and contacts both ways; items, sales orders "
                "and posted invoices to Zoho",
    flows=(
        Flow("customers", "erp", "customers", "crm", "Accounts", m.option_key("account"), m.account_from_customer,
             fields=m.ACCOUNT_FIELDS, echo_of="accounts_to_customers", send_back_created=True,
             description="NAV customers -> Zoho Accounts (Account_Type Customer)"),
        Flow("vendors", "erp", "vendors", "crm", "Accounts", m.option_key("account"), m.account_from_vendor,
             fields=m.ACCOUNT_FIELDS, echo_of="accounts_to_vendors", send_back_created=True,
             description="NAV vendors -> Zoho Accounts (Account_Type Vendor)"),
        Flow("contacts", "erp", "contacts", "crm", "Contacts", m.option_key("contact"), m.contact_from_contact,
             fields=m.CONTACT_FIELDS, depends_on=("customers", "vendors"), echo_of="contacts_to_nav",
             send_back_created=True,
             description="NAV contacts -> Zoho Contacts, under the Account of their customer or vendor"),
        Flow("items", "erp", "items", "crm", "Products", m.option_key("product"), m.product_from_item,
             fields=m.PRODUCT_FIELDS, description="NAV items -> Zoho Products (Product_Code = item number)"),
        Flow("sales_orders", "erp", "salesOrders", "crm", "Sales_Orders", m.option_key("order"), m.sales_order_from_order,
             fields=m.ORDER_FIELDS, depends_on=("customers", "items"),
             description="NAV sales orders -> Zoho Sales_Orders with Ordered_Items"),
        Flow("invoices", "erp", "postedSalesInvoices", "crm", "Invoices", m.option_key("invoice"),
             m.invoice_from_posted_invoice, fields=m.INVOICE_FIELDS,
             depends_on=("customers", "items", "sales_orders"),
             description="NAV posted sales invoices -> Zoho Invoices with Invoiced_Items", totals=m.INVOICE_TOTALS),
        Flow("accounts_to_customers", "crm", "Accounts", "erp", "customers", "number", m.customer_from_account,
             fields=m.CUSTOMER_FIELDS, echo_of="customers", find_by=("displayName",),
             description="Zoho Accounts (customers) -> NAV customers"),
        Flow("accounts_to_vendors", "crm", "Accounts", "erp", "vendors", "number", m.vendor_from_account,
             fields=m.CUSTOMER_FIELDS, echo_of="vendors", find_by=("displayName",),
             description="Zoho Accounts (Account_Type Vendor) -> NAV vendors"),
        Flow("contacts_to_nav", "crm", "Contacts", "erp", "contacts", "email", m.contact_from_zoho_contact,
             fields=m.NAV_CONTACT_FIELDS, echo_of="contacts", depends_on=("accounts_to_customers", "accounts_to_vendors"),
             description="Zoho Contacts -> NAV person contacts (matched by email) under the company contact of "
                         "their Account's customer or vendor"),
    ),
))
