"""fo-zoho: Dynamics 365 Finance & Operations and Zoho CRM. F&O's customers, released products and vendors go
to Zoho (master data first); Zoho Sales_Orders and Invoices come back as F&O sales orders and (unposted)
customer free text invoices, every line resolved to an F&O item and the document to an F&O customer. Nothing
is posted and nothing goes to the general ledger: posting stays with F&O users.

Options (``[pairs.fo-zoho.options]``):

    account_key_field     default "Account_Number"  Zoho Accounts field holding the CustomerAccount (unique)
    product_key_field     default "Product_Code"    Zoho Products field holding the ItemNumber (unique)
    vendor_key_field      default "ERP_Number"      a unique custom field on Zoho Vendors (VendorAccountNumber)
    order_reference_field default "CustomersOrderReference"  F&O order header field that keeps the Zoho id
    invoice_reference_field default "CustomerReference"      F&O free text invoice field that keeps the Zoho id
    invoice_main_account  default "401100"          revenue main account on free text invoice lines
    invoice_target        default "free_text_invoice"  or "invoice_journal": Zoho invoices as customer invoice
                                                    journals (receivables once posted), by invoice number and customer
    invoice_journal_name  default "CInv"            the journal name of those journals
    invoice_currency      default "USD"             for Zoho orders and invoices that name no currency
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from mlconnector.errors import RecordError, UnresolvedReference
from mlconnector.flows import Flow, MapContext, Option, PairSpec, SkipRecord, Totals
from mlconnector.flows import text as _text
from mlconnector.flows import without_none as _clean
from mlconnector.pairs import register
from mlconnector.prerequisites import FIELD, MANUAL, MODULE, Requirement
from mlconnector.systems.base import Record

OPTIONS = (
    Option("account_key_field", "Account_Number", "Zoho Accounts field holding the CustomerAccount (unique)"),
    Option("product_key_field", "Product_Code", "Zoho Products field holding the ItemNumber (unique)"),
    Option("vendor_key_field", "ERP_Number", "a unique custom field on Zoho Vendors (VendorAccountNumber)"),
    Option("order_reference_field", "CustomersOrderReference", "F&O order header field that keeps the Zoho id"),
    Option("invoice_reference_field", "CustomerReference", "F&O free text invoice field that keeps the Zoho id"),
    Option("invoice_main_account", "401100", "revenue main account on free text invoice lines"),
    Option("invoice_target", "free_text_invoice", "what a Zoho invoice becomes in F&O: an unposted free text invoice "
           "(flow invoices), or a line of a customer invoice journal, a customer transaction once posted (flow "
           "invoices_to_journal: name it in the pair's flows)", ("free_text_invoice", "invoice_journal")),
    Option("invoice_currency", "USD", "the currency of Zoho orders and invoices that name none (a Zoho org without "
           "multi-currency keeps amounts in its home currency)"),
    Option("invoice_journal_name", "CInv", "the F&O journal name (General ledger > Journal setup > Journal names) "
           "of the customer invoice journals Zoho invoices go to"),
)
FIELDS = {"account": "account_key_field", "product": "product_key_field", "vendor": "vendor_key_field",
          "order": "order_reference_field", "invoice": "invoice_reference_field"}


def option(options: Mapping[str, Any], what: str) -> str:
    return str(options[FIELDS[what]])


def option_key(what: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda options: option(options, what)


# F&O master data -> Zoho ------------------------------------------------------------------------------------------
# Zoho Account field  <- F&O CustomersV3 field
ACCOUNT_FIELDS = {
    "Account_Name": "OrganizationName (a person: PersonFirstName PersonLastName)",
    "Account_Number": "CustomerAccount",
    "Phone": "PrimaryContactPhone",
    "Website": "PrimaryContactURL",
    "Billing_Street": "AddressStreet",
    "Billing_City": "AddressCity",
    "Billing_State": "AddressState",
    "Billing_Code": "AddressZipCode",
    "Billing_Country": "AddressCountryRegionId",
    "Account_Type": '"Customer"',
}


def account_from_customer(customer: Record, ctx: MapContext) -> dict[str, Any]:
    name = _text(customer.get("OrganizationName"))
    if customer.get("PartyType") == "Person" or not name:
        name = _text(" ".join(p for p in (_text(customer.get("PersonFirstName")),
                                          _text(customer.get("PersonLastName"))) if p)) or name
    if not name:
        raise RecordError(f"customer {customer.id} has no name; Zoho requires Account_Name", "INVALID_DATA")
    return _clean({
        "Account_Name": name,
        option(ctx.options, "account"): customer.id,
        "Phone": _text(customer.get("PrimaryContactPhone")),
        "Website": _text(customer.get("PrimaryContactURL")),
        "Billing_Street": _text(customer.get("AddressStreet")),
        "Billing_City": _text(customer.get("AddressCity")),
        "Billing_State": _text(customer.get("AddressState")),
        "Billing_Code": _text(customer.get("AddressZipCode")),
        "Billing_Country": _text(customer.get("AddressCountryRegionId")),
        "Account_Type": "Customer",
    })


# Zoho Product field <- F&O ReleasedProductsV2 field (the product name lives on the shared product; the
# released product carries its search name)
PRODUCT_FIELDS = {
    "Product_Name": "ProductSearchName (else SearchName, else ItemNumber)",
    "Product_Code": "ItemNumber",
    "Unit_Price": "SalesPrice",
    "Usage_Unit": "SalesUnitSymbol",
    "Product_Category": "ProductGroupId",
    "Product_Active": "IsPOSRegistrationBlocked is not Yes",
}


def product_from_released_product(product: Record, ctx: MapContext) -> dict[str, Any]:
    return _clean({
        "Product_Name": _text(product.get("ProductSearchName")) or _text(product.get("SearchName")) or product.id,
        option(ctx.options, "product"): product.id,
        "Unit_Price": product.get("SalesPrice"),
        "Usage_Unit": _text(product.get("SalesUnitSymbol")),
        "Product_Category": _text(product.get("ProductGroupId")),
        "Product_Active": product.get("IsPOSRegistrationBlocked") != "Yes",
    })


# Zoho Vendor field <- F&O VendorsV2 field
VENDOR_FIELDS = {
    "Vendor_Name": "VendorOrganizationName",
    "ERP_Number": "VendorAccountNumber",
    "Email": "PrimaryEmailAddress",
    "Phone": "PrimaryPhoneNumber",
    "Website": "PrimaryURL",
    "Street": "AddressStreet",
    "City": "AddressCity",
    "State": "AddressStateId",
    "Zip_Code": "AddressZipCode",
    "Country": "AddressCountryRegionId",
}


def vendor_from_vendor(vendor: Record, ctx: MapContext) -> dict[str, Any]:
    name = _text(vendor.get("VendorOrganizationName"))
    if not name:
        raise RecordError(f"vendor {vendor.id} has no name; Zoho requires Vendor_Name", "INVALID_DATA")
    return _clean({
        "Vendor_Name": name,
        option(ctx.options, "vendor"): vendor.id,
        "Email": _text(vendor.get("PrimaryEmailAddress")),
        "Phone": _text(vendor.get("PrimaryPhoneNumber")),
        "Website": _text(vendor.get("PrimaryURL")),
        "Street": _text(vendor.get("AddressStreet")),
        "City": _text(vendor.get("AddressCity")),
        "State": _text(vendor.get("AddressStateId")),
        "Zip_Code": _text(vendor.get("AddressZipCode")),
        "Country": _text(vendor.get("AddressCountryRegionId")),
    })


# Zoho documents -> F&O ----------------------------------------------------------------------------------------------
def _lookup_id(value: Any) -> str | None:
    return _text(value.get("id")) if isinstance(value, Mapping) else _text(value)


def customer_account(document: Record, ctx: MapContext) -> str:
    """The F&O customer of a Zoho document: its Account must be one synced from an F&O customer."""
    account = document.get("Account_Name")
    account_id = _lookup_id(account)
    name = account.get("name") if isinstance(account, Mapping) else account_id
    if not account_id:
        raise RecordError(f"{document.entity} {document.id} has no Account; F&O needs a customer account",
                          "INVALID_DATA")
    found = ctx.source_id("customers", account_id)
    if not found:
        raise UnresolvedReference(f"account {name} ({account_id}) is not an F&O customer (only accounts synced "
                                  "from F&O customers can be booked); it goes through once the account is linked")
    return found


def _item_lines(document: Record, field: str, ctx: MapContext) -> list[tuple[int, str, dict[str, Any]]]:
    """(line number, F&O item number, the Zoho line) for every line; a line without an F&O item fails."""
    out = []
    for number, line in enumerate(document.get(field) or [], start=1):
        product = line.get("Product_Name")
        product_id = _lookup_id(product)
        name = product.get("name") if isinstance(product, Mapping) else product_id
        item = ctx.source_id("products", product_id) if product_id else None
        if not item:
            raise UnresolvedReference(f"line {number}: product {name or '(none)'} is not an F&O released product "
                                      "(only products synced from F&O can be booked)")
        out.append((number, item, line))
    if not out:
        raise SkipRecord("no line items")
    return out


def _quantity(line: Mapping[str, Any]) -> float:
    return float(line.get("Quantity") or 0)


def _date(value: Any) -> str | None:
    """A Zoho date (YYYY-MM-DD) as F&O's date-only DateTimeOffset (noon UTC)."""
    text = _text(value)
    return f"{text[:10]}T12:00:00Z" if text else None


def _currency(document: Record, ctx: MapContext) -> str:
    """A Zoho document's currency: its Currency (a multi-currency org), else options.invoice_currency (the home
    currency of an org without multi-currency, whose records have no Currency field)."""
    return (_text(document.get("Currency")) or str(ctx.options["invoice_currency"])).upper()


# What `reconcile` sums per month and currency for orders: Zoho's Sub_Total (its lines, after their discounts) against
# F&O's OrderTotalAmount (the sum of its lines' LineAmount), by the requested date both sides hold (Zoho's order has
# no order date of its own). Line taxes, which Zoho adds to Sub_Total and F&O keeps apart, make them differ. Free text
# invoices and invoice journals are not totalled: F&O keeps their amounts on the lines alone, which its reads of
# headers do not bring (a fetch per document would).
ORDER_TOTALS = Totals("Due_Date", "Sub_Total", "RequestedShippingDate", "OrderTotalAmount", "Currency", "CurrencyCode",
                      local_currency_option="invoice_currency")


# F&O SalesOrderHeadersV2 field <- Zoho Sales_Orders field
ORDER_FIELDS = {
    "OrderingCustomerAccountNumber": "Account_Name (the F&O customer it came from)",
    "CustomersOrderReference": "the Zoho record id (the natural key: a re-read never books twice)",
    "CustomerRequisitionNumber": "SO_Number",
    "SalesOrderName": "Subject",
    "RequestedShippingDate": "Due_Date",
    "CurrencyCode": "Currency, else options.invoice_currency",
    "lines": "Ordered_Items: ItemNumber <- Product_Name, OrderedSalesQuantity <- Quantity, "
             "SalesPrice <- List_Price, LineDiscountAmount <- Discount, LineDescription <- Description",
}


def sales_order_from_zoho(order: Record, ctx: MapContext) -> dict[str, Any]:
    if order.get("Status") in ("Cancelled", "Canceled"):
        raise SkipRecord("cancelled in Zoho")
    customer = customer_account(order, ctx)
    lines = [_clean({"ItemNumber": item, "OrderedSalesQuantity": _quantity(line),
                     "SalesPrice": line.get("List_Price"),
                     "LineDiscountAmount": line.get("Discount") or None,
                     "LineDescription": _text(line.get("Description"))})
             for _, item, line in _item_lines(order, "Ordered_Items", ctx)]
    return _clean({
        "OrderingCustomerAccountNumber": customer,
        option(ctx.options, "order"): order.id,
        "CustomerRequisitionNumber": _text(order.get("SO_Number")),
        "SalesOrderName": (_text(order.get("Subject")) or "")[:60] or None,
        "RequestedShippingDate": _date(order.get("Due_Date")),
        "CurrencyCode": _currency(order, ctx),
        "lines": lines,
    })


# F&O FreeTextInvoiceHeaders field <- Zoho Invoices field
INVOICE_FIELDS = {
    "CustomerAccount": "Account_Name (the F&O customer it came from)",
    "CustomerReference": "the Zoho record id (the natural key)",
    "CustomerRequisition": "Invoice_Number",
    "InvoiceDate": "Invoice_Date",
    "DueDate": "Due_Date",
    "CurrencyCode": "Currency, else options.invoice_currency",
    "lines": "Invoiced_Items: Description <- item number + Description/product name, Quantity, "
             "UnitPrice <- List_Price less the line's Discount, MainAccountDisplayValue <- options",
}


def free_text_invoice_from_zoho(invoice: Record, ctx: MapContext) -> dict[str, Any]:
    if ctx.options["invoice_target"] != "free_text_invoice":
        raise SkipRecord("options.invoice_target is invoice_journal: flow invoices_to_journal books it")
    if invoice.get("Status") in ("Cancelled", "Canceled"):
        raise SkipRecord("cancelled in Zoho")
    customer = customer_account(invoice, ctx)
    account = str(ctx.options["invoice_main_account"])
    lines = []
    for _, item, line in _item_lines(invoice, "Invoiced_Items", ctx):
        quantity = _quantity(line)
        price = float(line.get("List_Price") or 0)
        if line.get("Discount") and quantity:
            price = round(price - float(line["Discount"]) / quantity, 2)
        product = line.get("Product_Name")
        name = _text(line.get("Description")) or (product.get("name") if isinstance(product, Mapping) else None)
        lines.append(_clean({"ItemNumber": item, "Description": f"{item} {name or ''}".strip()[:60],
                             "Quantity": quantity, "UnitPrice": price, "MainAccountDisplayValue": account}))
    return _clean({
        "CustomerAccount": customer,
        option(ctx.options, "invoice"): invoice.id,
        "CustomerRequisition": (_text(invoice.get("Invoice_Number")) or "")[:20] or None,
        "InvoiceDate": _date(invoice.get("Invoice_Date")),
        "DueDate": _date(invoice.get("Due_Date")),
        "CurrencyCode": _currency(invoice, ctx),
        "lines": lines,
    })


# F&O CustomerInvoiceJournalHeaders / CustomerInvoiceJournalLines field <- Zoho Invoices field
INVOICE_JOURNAL_FIELDS = {
    "Description": "the Zoho record id (the natural key)",
    "JournalName": "options.invoice_journal_name",
    "line InvoiceId": "Invoice_Number (with the customer account: the document's identity in F&O)",
    "line AccountType / CustomerAccountDisplayValue": '"Cust" / Account_Name (the F&O customer it came from)',
    "line InvoiceDate / DueDate": "Invoice_Date / Due_Date",
    "line DebitAmount / Currency": "Grand_Total (with tax and discount, as Zoho computed it) / Currency, else "
                                   "options.invoice_currency",
    "line OffsetAccountType / OffsetAccountDisplayValue": '"Ledger" / options.invoice_main_account',
    "line DocumentNumber": "the Zoho record id",
}


def invoice_journal_from_zoho(invoice: Record, ctx: MapContext) -> dict[str, Any]:
    """One journal per Zoho invoice, one line: the customer debited the invoice's total, revenue credited.
    F&O users post the journals; the posted invoice is then a customer transaction (a receivable)."""
    if ctx.options["invoice_target"] != "invoice_journal":
        raise SkipRecord("options.invoice_target is free_text_invoice: flow invoices books it")
    if invoice.get("Status") in ("Cancelled", "Canceled"):
        raise SkipRecord("cancelled in Zoho")
    number = _text(invoice.get("Invoice_Number"))
    if not number:
        raise RecordError(f"Zoho invoice {invoice.id} has no Invoice_Number: F&O knows an invoice by its number",
                          "INVALID_DATA")
    currency = _currency(invoice, ctx)
    total = Decimal(str(invoice.get("Grand_Total") or 0)).quantize(Decimal("0.01"))
    line = _clean({"InvoiceId": number[:20], "AccountType": "Cust",
                   "CustomerAccountDisplayValue": customer_account(invoice, ctx),
                   "InvoiceDate": _date(invoice.get("Invoice_Date")), "DueDate": _date(invoice.get("Due_Date")),
                   "DebitAmount": str(total), "Currency": currency, "TransactionText": f"Zoho invoice {number}"[:60],
                   "DocumentNumber": str(invoice.id), "OffsetAccountType": "Ledger",
                   "OffsetAccountDisplayValue": str(ctx.options["invoice_main_account"])})
    return {"Description": str(invoice.id), "JournalName": str(ctx.options["invoice_journal_name"]),
            "lines": [line]}


def prerequisites(options: Mapping[str, Any]) -> tuple[Requirement, ...]:
    """Zoho: the master-data keys as unique fields, the document modules; F&O: the app registered for the legal
    entity (an admin's step in F&O)."""
    return (
        Requirement("crm", FIELD, "Accounts", option(options, "account"), unique=True, flows=("customers",)),
        Requirement("crm", FIELD, "Products", option(options, "product"), unique=True, flows=("products",)),
        Requirement("crm", FIELD, "Vendors", option(options, "vendor"), unique=True, flows=("vendors",)),
        Requirement("crm", MODULE, "Sales_Orders", flows=("sales_orders",)),
        Requirement("crm", MODULE, "Invoices", flows=("invoices",)),
        *((Requirement("erp", MANUAL, f"journal name {options['invoice_journal_name']}", flows=("invoices_to_journal",),
                       fix=f"in F&O, General ledger > Journal setup > Journal names: a journal name "
                           f"{options['invoice_journal_name']} for customer invoice journals"),)
          if options["invoice_target"] == "invoice_journal" else ()),
        Requirement("erp", MANUAL, "Microsoft Entra application in F&O",
                    fix="System administration > Setup > Microsoft Entra applications: add the app's client id "
                        "with an F&O user that may read customers, released products and vendors and create sales "
                        "orders and free text invoices in the legal entity (`mlconnector ping` checks the token "
                        "and the legal entity)"),
    )


FO_ZOHO = register(PairSpec(
    name="fo-zoho",
    options=OPTIONS,
    prerequisites=prerequisites,
    roles={"erp": ("finops",), "crm": ("zoho",)},
    description="Finance & Operations <-> Zoho CRM: customers, products and vendors to Zoho; Zoho sales orders "
                "and invoices to F&O sales orders and free text invoices (unposted)",
    flows=(
        Flow("customers", "erp", "CustomersV3", "crm", "Accounts", option_key("account"), account_from_customer,
             fields=ACCOUNT_FIELDS, description="F&O customers -> Zoho Accounts, keyed on the customer account"),
        Flow("products", "erp", "ReleasedProductsV2", "crm", "Products", option_key("product"),
             product_from_released_product,
             fields=PRODUCT_FIELDS, description="F&O released products -> Zoho Products (item number)"),
        Flow("vendors", "erp", "VendorsV2", "crm", "Vendors", option_key("vendor"), vendor_from_vendor,
             fields=VENDOR_FIELDS, description="F&O vendors -> Zoho Vendors, keyed on the vendor account"),
        Flow("sales_orders", "crm", "Sales_Orders", "erp", "SalesOrderHeadersV2", option_key("order"),
             sales_order_from_zoho, fields=ORDER_FIELDS, depends_on=("customers", "products"), totals=ORDER_TOTALS,
             description="Zoho Sales_Orders -> F&O sales orders with lines, booked once"),
        Flow("invoices", "crm", "Invoices", "erp", "FreeTextInvoiceHeaders", option_key("invoice"),
             free_text_invoice_from_zoho, fields=INVOICE_FIELDS, depends_on=("customers", "products"),
             description="Zoho Invoices -> F&O customer free text invoices (unposted), booked once"),
        # Optional, so the default run does not read Zoho invoices twice: name it in pairs.fo-zoho.flows (instead of
        # invoices) with options.invoice_target = "invoice_journal".
        Flow("invoices_to_journal", "crm", "Invoices", "erp", "CustomerInvoiceJournalHeaders", "Description",
             invoice_journal_from_zoho, depends_on=("customers",), optional=True,
             description="Zoho Invoices -> F&O customer invoice journals (options.invoice_target = "
                         "\"invoice_journal\"), keyed on invoice number and customer account, booked once"),
    ),
))
