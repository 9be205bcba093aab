"""Field mappings between Dynamics (NAV and Business Central, in the BC API v2.0 field names the
dynamics connector produces for both) and Zoho CRM. Shared by the nav-zoho and bc-zoho pairs.

Each mapping is a table of field names plus a small function, so a consultant can read what goes where.
Keys a pair upserts on (the Zoho duplicate-check fields) come from the pair's options:

    options.account_key_field   default "Account_Number"  (mark it unique in Zoho: Setup > Modules > Accounts)
    options.contact_key_field   default "Email"           (Zoho's own unique field for Contacts)
    options.product_key_field   default "Product_Code"    (mark it unique in Zoho)
    options.order_key_field     default "ERP_Number"      (a unique custom field on Sales_Orders)
    options.invoice_key_field   default "ERP_Number"      (a unique custom field on Invoices)
    options.vendor_number_prefix default "V-"             (vendor numbers in Account_Number, so they never
                                                           clash with customer numbers)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from mlconnector.errors import RecordError, UnresolvedReference
from mlconnector.flows import MapContext, Option, SkipRecord, Totals
from mlconnector.flows import text as _text
from mlconnector.flows import joined, texts
from mlconnector.flows import without_none as _clean
from mlconnector.systems.base import Record

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"

# What `reconcile` sums per month and currency: posted invoices with tax (Zoho's Grand_Total carries the ERP's
# discount and tax: invoice_from_posted_invoice); a blank currency is the side's own (flows.Totals).
INVOICE_TOTALS = Totals("invoiceDate", "totalAmountIncludingTax", "Invoice_Date", "Grand_Total",
                        "currencyCode", "Currency", local_currency_option="local_currency")


def option_key(what: str) -> "Callable[[Mapping[str, Any]], str]":
    """The upsert key of a flow, as the pair's options set it (for Flow.key)."""
    return lambda options: key(options, what)


# The options of nav-zoho and bc-zoho (`[pairs.NAME.options]`), checked when a run starts.
ACCOUNT_KEY = Option("account_key_field", "Account_Number", "Zoho Accounts field holding the ERP number (unique)")
CONTACT_KEY = Option("contact_key_field", "Email", "Zoho Contacts field contacts are upserted on")
PRODUCT_KEY = Option("product_key_field", "Product_Code", "Zoho Products field holding the item number (unique)")
ORDER_KEY = Option("order_key_field", "ERP_Number", "unique field on Zoho Sales_Orders holding the order number")
VENDOR_KEY = Option("vendor_key_field", "ERP_Number", "unique field on Zoho Vendors holding the vendor number")
PURCHASE_ORDER_KEY = Option("purchase_order_key_field", "ERP_Number", "unique field on Zoho Purchase_Orders holding "
                            "the purchase order number")
INVOICE_KEY = Option("invoice_key_field", "ERP_Number", "unique field on Zoho Invoices holding the invoice number")
REMAINING_FIELD = Option("invoice_remaining_field", "Remaining_Amount", "Zoho Invoices currency field for what the "
                         "customer still owes on the posted invoice; \"\" leaves it out")
ORDER_STATUSES = Option("order_status_values", {
    "Draft": "Created", "Released": "Approved", "Partly shipped": "Approved", "Shipped": "Delivered",
    "Invoiced": "Delivered"}, "the Zoho Sales_Orders Status each NAV order state becomes (NAV: Draft, Released, Partly "
    "shipped, Shipped, Invoiced); Zoho's standard picklist has Created, Approved, Delivered, Cancelled: add values "
    "such as Invoiced to it to tell more apart")
LOCAL_CURRENCY = Option("local_currency", "USD", "the ERP company's own currency, for documents with a blank currency "
                        "code where the system does not say it (NAV's page web services; BC's API tells it)")
VENDOR_PREFIX = Option("vendor_number_prefix", "V-", "before vendor numbers in the account key, so they never "
                       "clash with customer numbers")
ACCOUNT_TYPE_FIELD = Option("account_type_field", "Account_Type", "Zoho Accounts field telling customers from "
                            "vendors")
VENDOR_ACCOUNT_TYPES = Option("vendor_account_types", ["Vendor", "Supplier"], "values of that field meaning a "
                              "vendor")
KEYS = {"account": ACCOUNT_KEY.name, "contact": CONTACT_KEY.name, "product": PRODUCT_KEY.name,
        "order": ORDER_KEY.name, "invoice": INVOICE_KEY.name, "vendor": VENDOR_KEY.name,
        "purchase_order": PURCHASE_ORDER_KEY.name}


def key(options: Mapping[str, Any], what: str) -> str:
    return str(options[KEYS[what]])


def _street(record: Record, line1: str = "addressLine1", line2: str = "addressLine2") -> str | None:
    return joined(record.data, (line1, line2))


# Customers and vendors -> Accounts -------------------------------------------------------------------------------
# Zoho Account field   <- Dynamics customer/vendor field
ACCOUNT_FIELDS = {
    "Account_Name": "displayName",
    "Phone": "phoneNumber",
    "Website": "website",
    "Billing_Street": "addressLine1 + addressLine2",
    "Billing_City": "city",
    "Billing_State": "state",
    "Billing_Code": "postalCode",
    "Billing_Country": "country",
    "Account_Type": '"Customer" or "Vendor"',
}
# The fields above that are source fields' text as it is (the street: its two lines joined, as ``_street``).
_ACCOUNT_TEXTS: dict[str, str | tuple[str, ...]] = {
    **{zoho: field for zoho, field in ACCOUNT_FIELDS.items() if zoho not in ("Billing_Street", "Account_Type")},
    "Billing_Street": ("addressLine1", "addressLine2")}


def _account(party: Record, ctx: MapContext, number: str, account_type: str) -> dict[str, Any]:
    fields = texts(party.data, _ACCOUNT_TEXTS)
    if "Account_Name" not in fields:
        raise RecordError(f"{account_type.lower()} {number} has no name; Zoho requires Account_Name", "INVALID_DATA")
    return {"Account_Name": fields.pop("Account_Name"), key(ctx.options, "account"): number, **fields,
            "Account_Type": account_type}


def account_from_customer(customer: Record, ctx: MapContext) -> dict[str, Any]:
    return _account(customer, ctx, str(customer.data["number"]), "Customer")


def account_from_vendor(vendor: Record, ctx: MapContext) -> dict[str, Any]:
    return _account(vendor, ctx, f"{ctx.options[VENDOR_PREFIX.name]}{vendor['number']}", "Vendor")


# Vendors -> Zoho Vendors (bc-zoho's purchase orders name them) ------------------------------------------------------
# Zoho Vendors field <- Dynamics vendor field
VENDOR_FIELDS = {"Vendor_Name": "displayName", "<vendor key field>": "number", "Email": "email",
                 "Phone": "phoneNumber", "Website": "website", "Street": "addressLine1",
                 "City / State / Zip_Code / Country": "city / state / postalCode / country"}


def vendor_module_from_vendor(vendor: Record, ctx: MapContext) -> dict[str, Any]:
    name = _text(vendor.get("displayName"))
    if not name:
        raise RecordError(f"vendor {vendor.get('number')} has no name; Zoho requires Vendor_Name", "INVALID_DATA")
    return _clean({"Vendor_Name": name, key(ctx.options, "vendor"): str(vendor["number"]),
                   "Email": _text(vendor.get("email")), "Phone": _text(vendor.get("phoneNumber")),
                   "Website": _text(vendor.get("website")), "Street": _street(vendor),
                   "City": _text(vendor.get("city")), "State": _text(vendor.get("state")),
                   "Zip_Code": _text(vendor.get("postalCode")), "Country": _text(vendor.get("country"))})


# Purchase orders -> Zoho Purchase_Orders (bc-zoho; BC's purchase orders are polled: no webhooks for them)
PURCHASE_ORDER_FIELDS = {"Subject": '"Purchase order " + number', "<purchase order key field>": "number",
                         "Vendor_Name": "the Vendor linked to vendorId", "PO_Date": "orderDate",
                         "Due_Date": "requestedReceiptDate", "Status": "status (Draft -> Created, Open -> Approved)",
                         "Purchased_Items": "lines: Product_Name, Quantity, List_Price <- directUnitCost, Discount",
                         "Discount / Tax": "as for invoices: Zoho's Grand_Total is BC's total with tax",
                         "Currency": "currencyCode (as for invoices)"}
PURCHASE_STATUS = {"Draft": "Created", "In Review": "Created", "Open": "Approved"}


def purchase_order_from_order(order: Record, ctx: MapContext) -> dict[str, Any]:
    lines = [{**line, "unitPrice": line.get("directUnitCost")} for line in order.get("purchaseOrderLines") or []]
    items = _lines(Record(order.system, order.entity, order.id, order.modified,
                          {**order.data, "purchaseOrderLines": lines}), "purchaseOrderLines", ctx)
    vendor = ctx.target_id("vendors", str(order["vendorId"]),
                           what=f"vendor {order.get('vendorNumber') or order['vendorId']}")
    totals = invoice_totals(order, items)
    return _clean({"Subject": f"Purchase order {order['number']}",
                   key(ctx.options, "purchase_order"): str(order["number"]), "Vendor_Name": {"id": vendor}, "PO_Date": _text(order.get("orderDate")),
                   "Due_Date": _text(order.get("requestedReceiptDate")),
                   "Status": PURCHASE_STATUS.get(order.get("status") or "", "Approved"), "Purchased_Items": items,
                   "Discount": totals["Discount"], "Tax": totals["Tax"], "Adjustment": totals["Adjustment"],
                   "Currency": _currency(order, ctx)})


# Accounts -> customers and vendors (the way back). Financial fields (credit limit, payment terms,
# currency, blocked) are not mapped: the ERP owns them.
# Dynamics field   <- Zoho Account field
CUSTOMER_FIELDS = {
    "displayName": "Account_Name",
    "phoneNumber": "Phone",
    "website": "Website",
    "addressLine1": "Billing_Street",
    "city": "Billing_City",
    "state": "Billing_State",
    "postalCode": "Billing_Code",
    "country": "Billing_Country",
}


def account_type(account: Record, ctx: MapContext) -> str:
    field = str(ctx.options[ACCOUNT_TYPE_FIELD.name])
    return "Vendor" if account.get(field) in ctx.options[VENDOR_ACCOUNT_TYPES.name] else "Customer"


def _party_from_account(account: Record, ctx: MapContext, number: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {field: _text(account.get(source)) for field, source in CUSTOMER_FIELDS.items()}
    payload["number"] = number  # None for an account born in Zoho: the ERP assigns one
    return {k: v for k, v in payload.items() if v is not None or k == "number"}


def customer_from_account(account: Record, ctx: MapContext) -> dict[str, Any]:
    if account_type(account, ctx) != "Customer":
        raise SkipRecord("a vendor account (goes to vendors)")
    return _party_from_account(account, ctx, _text(account.get(key(ctx.options, "account"))))


def vendor_from_account(account: Record, ctx: MapContext) -> dict[str, Any]:
    if account_type(account, ctx) != "Vendor":
        raise SkipRecord("a customer account (goes to customers)")
    number = _text(account.get(key(ctx.options, "account")))
    prefix = str(ctx.options[VENDOR_PREFIX.name])
    if number and number.startswith(prefix):
        number = number[len(prefix):]
    return _party_from_account(account, ctx, number)


# Contacts <-> Contacts ------------------------------------------------------------------------------------------
# Zoho Contact field <- Dynamics contact field
CONTACT_FIELDS = {
    "First_Name": "displayName (all but the last word)",
    "Last_Name": "displayName (last word)",
    "Email": "email",
    "Phone": "phoneNumber",
    "Mobile": "mobilePhoneNumber",
    "Title": "jobTitle",
    "Mailing_Street": "addressLine1 + addressLine2",
    "Mailing_City": "city",
    "Mailing_State": "state",
    "Mailing_Zip": "postalCode",
    "Mailing_Country": "country",
    "Account_Name": "the Account linked to the contact's customer or vendor",
}


def _split_name(name: str) -> tuple[str | None, str]:
    parts = name.rsplit(" ", 1)
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def contact_from_contact(contact: Record, ctx: MapContext) -> dict[str, Any]:
    """A contact of a customer or a vendor (nav-zoho)."""
    return _contact(contact, ctx, ("Customer", "Vendor"))


def contact_of_customer(contact: Record, ctx: MapContext) -> dict[str, Any]:
    """A contact of a customer (bc-zoho); vendors' contacts stay out of the CRM."""
    return _contact(contact, ctx, ("Customer",))


def _contact(contact: Record, ctx: MapContext, kinds: tuple[str, ...]) -> dict[str, Any]:
    if contact.get("type") == "Company":
        raise SkipRecord("a company contact (its customer or vendor is the Account)")
    name = _text(contact.get("displayName"))
    if not name:
        raise RecordError(f"contact {contact.get('number')} has no name; Zoho requires Last_Name", "INVALID_DATA")
    contact_key = key(ctx.options, "contact")
    if contact_key == "Email" and not _text(contact.get("email")):
        raise RecordError(f"contact {contact.get('number')} has no email, and Zoho matches contacts by Email "
                          "(or set options.contact_key_field to another unique field)", "INVALID_DATA")
    first, last = _split_name(name)
    payload = _clean({
        "First_Name": first, "Last_Name": last, "Email": _text(contact.get("email")),
        "Phone": _text(contact.get("phoneNumber")), "Mobile": _text(contact.get("mobilePhoneNumber")),
        "Title": _text(contact.get("jobTitle")), "Mailing_Street": _street(contact),
        "Mailing_City": _text(contact.get("city")), "Mailing_State": _text(contact.get("state")),
        "Mailing_Zip": _text(contact.get("postalCode")), "Mailing_Country": _text(contact.get("country")),
        "Account_Name": {"id": _contact_account(contact, ctx, kinds)},
    })
    if contact_key not in ("Email",) and contact_key not in payload:
        payload[contact_key] = str(contact.get("number"))
    return payload


def _contact_account(contact: Record, ctx: MapContext, kinds: tuple[str, ...]) -> str:
    """The Zoho Account of the contact's customer (or vendor): it must be synced and linked first."""
    relations = [r for r in contact.get("relations") or [] if r.get("type") in kinds]
    if not relations:
        raise SkipRecord(f"belongs to no {' or '.join(k.lower() for k in kinds)}")
    relation = relations[0]
    flow = "customers" if relation["type"] == "Customer" else "vendors"
    return ctx.target_id(flow, str(relation["id"]), what=f"{relation['type'].lower()} {relation.get('number') or relation['id']}")


# Dynamics contact field <- Zoho Contact field (the way back; nav-zoho only)
NAV_CONTACT_FIELDS = {
    "type": '"Person"',
    "displayName": "First_Name + Last_Name",
    "email": "Email",
    "phoneNumber": "Phone",
    "mobilePhoneNumber": "Mobile",
    "jobTitle": "Title",
    "addressLine1": "Mailing_Street",
    "city": "Mailing_City",
    "state": "Mailing_State",
    "postalCode": "Mailing_Zip",
    "country": "Mailing_Country",
}


def contact_from_zoho_contact(contact: Record, ctx: MapContext) -> dict[str, Any]:
    name = " ".join(p for p in (_text(contact.get("First_Name")), _text(contact.get("Last_Name"))) if p)
    if not _text(contact.get("Email")):
        raise SkipRecord("no email: NAV contacts are matched by email")
    payload = _clean({
        "type": "Person", "displayName": name, "email": _text(contact.get("Email")),
        "phoneNumber": _text(contact.get("Phone")), "mobilePhoneNumber": _text(contact.get("Mobile")),
        "jobTitle": _text(contact.get("Title")), "addressLine1": _text(contact.get("Mailing_Street")),
        "city": _text(contact.get("Mailing_City")), "state": _text(contact.get("Mailing_State")),
        "postalCode": _text(contact.get("Mailing_Zip")), "country": _text(contact.get("Mailing_Country")),
    })
    relation = _business_relation(contact, ctx)
    if relation:
        payload["businessRelation"] = relation
    return payload


def _business_relation(contact: Record, ctx: MapContext) -> dict[str, str] | None:
    """The NAV customer or vendor of the Zoho contact's Account: the connector puts the contact under that
    customer's or vendor's company contact (the one its Contact Business Relation names). None without an Account."""
    account = contact.get("Account_Name")
    account_id = str(account.get("id") or "") if isinstance(account, Mapping) else ""
    if not account_id:
        return None
    for flow, kind in (("customers", "Customer"), ("vendors", "Vendor")):
        related = ctx.source_id(flow, account_id)
        if related:
            return {"type": kind, "id": str(related)}
    name = account.get("name") if isinstance(account, Mapping) else None
    raise UnresolvedReference(f"the contact's Account {name or account_id} is not linked to a NAV customer or "
                              "vendor yet (flows customers, vendors, accounts_to_customers, accounts_to_vendors)")


# Items -> Products ----------------------------------------------------------------------------------------------
PRODUCT_FIELDS = {
    "Product_Name": "displayName",
    "Product_Code": "number",
    "Unit_Price": "unitPrice",
    "Qty_in_Stock": "inventory",
    "Usage_Unit": "baseUnitOfMeasureCode",
    "Product_Active": "not blocked",
    "Description": "displayName2",
}


def product_from_item(item: Record, ctx: MapContext) -> dict[str, Any]:
    if not _text(item.get("displayName")):
        raise RecordError(f"item {item.get('number')} has no description; Zoho requires Product_Name", "INVALID_DATA")
    return _clean({
        "Product_Name": _text(item.get("displayName")),
        key(ctx.options, "product"): str(item["number"]),
        "Unit_Price": item.get("unitPrice"),
        "Qty_in_Stock": item.get("inventory"),
        "Usage_Unit": _text(item.get("baseUnitOfMeasureCode")),
        "Product_Active": not bool(item.get("blocked")),
        "Description": _text(item.get("displayName2")),
    })


# Sales orders and posted invoices -> Sales_Orders and Invoices ----------------------------------------------------
CENT = Decimal("0.01")
INVOICE_STATUS = {"Open": "Approved", "Paid": "Paid", "Canceled": "Cancelled", "Corrective": "Cancelled"}
LINE_FIELDS = {
    "Product_Name": "the Product linked to the line's item",
    "Quantity": "quantity",
    "List_Price": "unitPrice",
    "Discount": "discountAmount",
    "Description": "description",
}


# Zoho Sales_Orders / Invoices field <- Dynamics sales order / posted sales invoice field
ORDER_FIELDS = {
    "Subject": '"Order " + number',
    "Account_Name": "the Account linked to the order's customer",
    "Status": "status (Draft, In Review: Created; Open: Approved; fully shipped: Delivered)",
    "Due_Date": "requestedDeliveryDate",
    "Ordered_Items": "salesOrderLines (item lines; see LINE_FIELDS)",
    "Currency": "currencyCode, blank: options.local_currency (left out for a Zoho org without multi-currency)",
}
INVOICE_FIELDS = {
    "Subject": '"Invoice " + number',
    "Account_Name": "the Account linked to the invoice's customer",
    "Invoice_Date": "invoiceDate",
    "Due_Date": "dueDate",
    "Status": "status (Open: Approved; Paid; Canceled, Corrective: Cancelled)",
    "Invoiced_Items": "salesInvoiceLines (item lines; see LINE_FIELDS)",
    "Sales_Order": "the Sales_Order linked to orderId, where synced",
    "Currency": "currencyCode, blank: options.local_currency (left out for a Zoho org without multi-currency)",
}


def _lines(document: Record, field: str, ctx: MapContext) -> list[dict[str, Any]]:
    lines = []
    for index, line in enumerate(document.get(field) or [], start=1):
        kind = line.get("lineType", "Item")
        if kind == "Comment" or (kind == "Item" and not line.get("itemId")):
            continue
        if kind != "Item":
            raise RecordError(f"line {index} of {document.get('number')} is a {kind} line; Zoho line items need "
                              "a product", "unsupported_line")
        product = ctx.target_id("items", str(line["itemId"]),
                                what=f"item {line.get('lineObjectNumber') or line['itemId']}")
        lines.append(_clean({"Product_Name": {"id": product}, "Quantity": line.get("quantity"),
                             "List_Price": line.get("unitPrice"), "Discount": line.get("discountAmount"),
                             "Description": _text(line.get("description"))}))
    if not lines:
        raise SkipRecord("no item lines")
    return lines


def _account_of(document: Record, ctx: MapContext) -> dict[str, str]:
    return {"id": ctx.target_id("customers", str(document["customerId"]),
                                what=f"customer {document.get('customerNumber') or document['customerId']}")}


def order_state(order: Record) -> str:
    """Where a NAV order stands, from what NAV exposes: its lines' shipped and invoiced quantities (API v2.0
    salesOrderLines; the Sales Order Subform's Quantity Shipped / Quantity Invoiced on pages), the header's Fully
    Shipped (API v2.0), else its status (draft or released)."""
    lines = [l for l in order.get("salesOrderLines") or [] if float(l.get("quantity") or 0) > 0]

    def all_lines(field: str) -> bool:
        return bool(lines) and all(float(l.get(field) or 0) >= float(l["quantity"]) for l in lines)
    if all_lines("invoicedQuantity"):
        return "Invoiced"
    if order.get("fullyShipped") or all_lines("shippedQuantity"):
        return "Shipped"
    if any(float(l.get("shippedQuantity") or 0) > 0 for l in lines):
        return "Partly shipped"
    return "Released" if order.get("status") == "Open" else "Draft"


def sales_order_from_order(order: Record, ctx: MapContext) -> dict[str, Any]:
    states = {**ORDER_STATUSES.default, **(ctx.options.get(ORDER_STATUSES.name) or {})}
    status = states[order_state(order)]
    return _clean({
        "Subject": f"Order {order['number']}",
        key(ctx.options, "order"): str(order["number"]),
        "Account_Name": _account_of(order, ctx),
        "Status": status,
        "Due_Date": _text(order.get("requestedDeliveryDate")),
        "Ordered_Items": _lines(order, "salesOrderLines", ctx),
        "Currency": _currency(order, ctx),
    })


def _currency(document: Record, ctx: MapContext) -> str | None:
    """Zoho's Currency: currencyCode (BC's API fills in the company's own), blank (NAV's own) options.local_currency."""
    code = _text(document.get("currencyCode"))
    return (code or str(ctx.options.get(LOCAL_CURRENCY.name) or "")).upper() or None


def _money(value: Any) -> Decimal:
    return Decimal(str(value if value not in (None, "") else 0)).quantize(CENT)


def invoice_totals(invoice: Record, lines: list[dict[str, Any]]) -> dict[str, Decimal]:
    """Zoho's header Discount and Tax set so that Zoho, computing Sub_Total from the lines (each quantity times list
    price, rounded, less its discount) and Grand_Total = Sub_Total - Discount + Tax, lands on the ERP's figures:
    Discount the invoice discount the ERP spread over its lines, Tax its tax, Grand_Total its total with tax."""
    sub_total = sum((_money(Decimal(str(line.get("Quantity") or 0)) * _money(line.get("List_Price")))
                     - _money(line.get("Discount")) for line in lines), Decimal("0.00"))
    excluding = _money(invoice.get("totalAmountExcludingTax"))
    including = _money(invoice.get("totalAmountIncludingTax"))
    discount = sub_total - excluding
    return {"Discount": max(discount, Decimal("0.00")), "Tax": including - excluding,
            "Adjustment": min(discount, Decimal("0.00")) * -1}   # lines summing below the ERP's (never so far)


def invoice_from_posted_invoice(invoice: Record, ctx: MapContext) -> dict[str, Any]:
    lines = _lines(invoice, "salesInvoiceLines", ctx)
    payload = {
        "Subject": f"Invoice {invoice['number']}",
        key(ctx.options, "invoice"): str(invoice["number"]),
        "Account_Name": _account_of(invoice, ctx),
        "Invoice_Date": _text(invoice.get("invoiceDate")),
        "Due_Date": _text(invoice.get("dueDate")),
        "Status": INVOICE_STATUS.get(invoice.get("status") or "", "Approved"),
        "Invoiced_Items": lines,
        **invoice_totals(invoice, lines),
        "Currency": _currency(invoice, ctx),
    }
    remaining = str(ctx.options.get(REMAINING_FIELD.name, REMAINING_FIELD.default) or "")
    if remaining and invoice.get("remainingAmount") is not None:
        payload[remaining] = _money(invoice.get("remainingAmount"))
    order = _text(invoice.get("orderId"))
    if order and order != EMPTY_GUID:
        try:
            payload["Sales_Order"] = {"id": ctx.target_id("sales_orders", order)}
        except (RecordError, KeyError):
            pass  # an invoice without a synced order still goes; the link is a convenience
    return _clean(payload)


# What Zoho must have (`mlconnector setup nav-zoho` / `bc-zoho` checks it and creates what the API allows) -------------
