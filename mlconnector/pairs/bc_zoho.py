"""bc-zoho: Business Central is the source of truth; its customers, items, contacts and posted invoices go to Zoho
CRM, and where the pair names them its vendors and purchase orders. Nothing is written into Business Central."""

from mlconnector.flows import Flow, PairSpec
from mlconnector.pairs import dynamics_zoho as m
from mlconnector.pairs import register
from mlconnector.pairs.dynamics_zoho_setup import zoho_prerequisites

BC_ZOHO = register(PairSpec(
    name="bc-zoho",
    options=(m.ACCOUNT_KEY, m.CONTACT_KEY, m.PRODUCT_KEY, m.INVOICE_KEY, m.REMAINING_FIELD, m.LOCAL_CURRENCY,
             m.VENDOR_KEY, m.PURCHASE_ORDER_KEY),
    prerequisites=lambda options: zoho_prerequisites(options, {
        "account": ("customers",), "contact": ("contacts",), "product": ("items",), "invoice": ("invoices",),
        "vendor": ("vendors",), "purchase_order": ("purchase_orders",)}),
    roles={"erp": ("bc",), "crm": ("zoho",)},
    description="Business Central -> Zoho CRM: customers, items, contacts and posted invoices",
    flows=(
        Flow("customers", "erp", "customers", "crm", "Accounts", m.option_key("account"), m.account_from_customer,
             fields=m.ACCOUNT_FIELDS, description="BC customers -> Zoho Accounts, keyed on the BC number"),
        Flow("items", "erp", "items", "crm", "Products", m.option_key("product"), m.product_from_item,
             fields=m.PRODUCT_FIELDS, description="BC items -> Zoho Products, keyed on the BC number"),
        Flow("contacts", "erp", "contacts", "crm", "Contacts", m.option_key("contact"), m.contact_of_customer,
             fields=m.CONTACT_FIELDS, depends_on=("customers",),
             description="BC contacts of customers -> Zoho Contacts"),
        Flow("invoices", "erp", "postedSalesInvoices", "crm", "Invoices", m.option_key("invoice"),
             m.invoice_from_posted_invoice, fields=m.INVOICE_FIELDS, depends_on=("customers", "items"),
             description="BC posted sales invoices -> Zoho Invoices with Invoiced_Items and totals",
             totals=m.INVOICE_TOTALS),
        # Optional (name them in pairs.bc-zoho.flows): purchase orders are not among BC's webhook resources, so
        # they are polled on lastModifiedDateTime; their vendors go to Zoho Vendors first.
        Flow("vendors", "erp", "vendors", "crm", "Vendors", m.option_key("vendor"), m.vendor_module_from_vendor,
             optional=True, description="BC vendors -> Zoho Vendors (optional, for purchase orders)"),
        Flow("purchase_orders", "erp", "purchaseOrders", "crm", "Purchase_Orders", m.option_key("purchase_order"),
             m.purchase_order_from_order, depends_on=("vendors", "items"), optional=True,
             description="BC purchase orders -> Zoho Purchase_Orders with Purchased_Items (optional, polled)"),
    ),
))
