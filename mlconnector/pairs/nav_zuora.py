"""nav-zuora: Dynamics NAV and Zuora Billing. Customers and items align both ways with accounts and products;
NAV sales orders become Zuora subscriptions (Orders API), changed orders become amendments; Zuora's invoice
and payment status comes back onto the NAV customer card.

Each mapping is a table of field names plus a small function. Options (``[pairs.nav-zuora.options]``):

    account_key_field     default "NAVCustomerNumber__c"  custom field on the Zuora Account holding the NAV number
    order_key_field       default "NAVOrderNumber__c"     custom field on the Subscription holding the NAV order
    currency              default "USD"      for accounts of customers without a currency code, and for prices
    bill_cycle_day        default 1          of new accounts (0 = set by the first subscription)
    term_type             default "EVERGREEN"  of new subscriptions (TERMED needs terms Zuora would ask for)
    order_statuses        default all        NAV order statuses that become subscriptions, e.g. ["Open"]
    invoice_status_field  default "Zuora_Invoice_Status"  NAV customer field (a page extension) for the last
                                                          invoice's status; "" leaves invoice status out
    payment_status_field  default "Zuora_Payment_Status"  the same for the last payment

NAV's sales and invoice documents are not written: the dynamics connector writes customers, vendors, contacts
and items only. Zuora's billing status therefore lands in two text fields on the NAV customer, which the
customer adds to the Customer card (table and page extension, published as the Customer web service).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlconnector.errors import RecordError, UnresolvedReference
from mlconnector.flows import CONFLICT_RULE, Flow, MapContext, Option, PairSpec, SkipRecord
from mlconnector.flows import text as _text
from mlconnector.flows import without_none as _clean
from mlconnector.pairs import register
from mlconnector.prerequisites import FIELD, MANUAL, Requirement
from mlconnector.systems.base import Record

OPTIONS = (
    Option("account_key_field", "NAVCustomerNumber__c", "custom field on the Zuora Account holding the NAV number"),
    Option("order_key_field", "NAVOrderNumber__c", "custom field on the Subscription holding the NAV order"),
    Option("currency", "USD", "for accounts of customers without a currency code, and for prices"),
    Option("bill_cycle_day", 1, "of new accounts (0 = set by the first subscription)"),
    Option("term_type", "EVERGREEN", "of new subscriptions", ("EVERGREEN", "TERMED")),
    Option("order_statuses", [], "NAV order statuses that become subscriptions (empty: all), e.g. [\"Open\"]"),
    Option("invoice_status_field", "Zuora_Invoice_Status", "NAV customer field for the last invoice's status; "
           "\"\" leaves it out"),
    Option("payment_status_field", "Zuora_Payment_Status", "the same for the last payment"),
    CONFLICT_RULE,
)


def option(options: Mapping[str, Any], name: str) -> Any:
    return options[name]


# NAV customers -> Zuora accounts ------------------------------------------------------------------------------
# Zuora Account field            <- NAV customer field
ACCOUNT_FIELDS = {
    "name": "displayName",
    "<account_key_field>": "number",
    "currency": "currencyCode, else options.currency (only when the account is created)",
    "billCycleDay": "options.bill_cycle_day (only when the account is created)",
    "billToContact.firstName": '"Billing"',
    "billToContact.lastName": "displayName",
    "billToContact.workEmail": "email",
    "billToContact.workPhone": "phoneNumber",
    "billToContact.address1 / address2": "addressLine1 / addressLine2",
    "billToContact.city / state / zipCode / country": "city / state / postalCode / country",
}


def account_from_customer(customer: Record, ctx: MapContext) -> dict[str, Any]:
    name = _text(customer.get("displayName"))
    if not name:
        raise RecordError(f"customer {customer.get('number')} has no name; Zuora requires an account name",
                          "INVALID_DATA")
    contact = _clean({
        "firstName": "Billing", "lastName": name[:100], "workEmail": _text(customer.get("email")),
        "workPhone": _text(customer.get("phoneNumber")), "address1": _text(customer.get("addressLine1")),
        "address2": _text(customer.get("addressLine2")), "city": _text(customer.get("city")),
        "state": _text(customer.get("state")), "zipCode": _text(customer.get("postalCode")),
        "country": _text(customer.get("country"))})
    return {"name": name, option(ctx.options, "account_key_field"): str(customer["number"]),
            "currency": _text(customer.get("currencyCode")) or option(ctx.options, "currency"),
            "billCycleDay": int(option(ctx.options, "bill_cycle_day")), "billToContact": contact}


# Zuora accounts -> NAV customers (the way back). Financial fields stay the ERP's.
# NAV customer field <- Zuora Account field
CUSTOMER_FIELDS = {
    "number": "<account_key_field> (empty for an account born in Zuora: NAV numbers it, and the number goes back)",
    "displayName": "name",
    "email": "billTo.workEmail",
    "phoneNumber": "billTo.workPhone",
    "addressLine1": "billTo.address1",
    "city": "billTo.city",
    "state": "billTo.state",
    "postalCode": "billTo.zipCode",
    "country": "billTo.country",
}


def customer_from_account(account: Record, ctx: MapContext) -> dict[str, Any]:
    contact = account.get("billTo") or {}
    payload = _clean({
        "displayName": _text(account.get("name")), "email": _text(contact.get("workEmail")),
        "phoneNumber": _text(contact.get("workPhone")), "addressLine1": _text(contact.get("address1")),
        "city": _text(contact.get("city")), "state": _text(contact.get("state")),
        "postalCode": _text(contact.get("zipCode")), "country": _text(contact.get("country"))})
    payload["number"] = _text(account.get(option(ctx.options, "account_key_field")))
    return payload


# NAV items <-> Zuora products ------------------------------------------------------------------------------------
# Zuora product (+ its rate plan and recurring per-unit charge) <- NAV item
PRODUCT_FIELDS = {
    "sku": "number",
    "name": "displayName",
    "description": "displayName2",
    "charge price": "unitPrice (in options.currency)",
}


def product_from_item(item: Record, ctx: MapContext) -> dict[str, Any]:
    if not _text(item.get("displayName")):
        raise RecordError(f"item {item.get('number')} has no description; Zuora requires a product name",
                          "INVALID_DATA")
    return _clean({"sku": str(item["number"]), "name": _text(item.get("displayName")),
                   "description": _text(item.get("displayName2")), "price": item.get("unitPrice"),
                   "currency": option(ctx.options, "currency")})


# NAV item <- Zuora product (prices stay NAV's)
ITEM_FIELDS = {"number": "sku (empty: NAV numbers it)", "displayName": "name"}


def item_from_product(product: Record, ctx: MapContext) -> dict[str, Any]:
    return {"number": _text(product.get("sku")), "displayName": _text(product.get("name"))}


# NAV sales orders -> Zuora subscriptions -------------------------------------------------------------------------
# Orders API field <- NAV sales order
SUBSCRIPTION_FIELDS = {
    "existingAccountId": "the account linked to the order's customer",
    "<order_key_field>": "number",
    "orderDate": "orderDate",
    "termType": "options.term_type",
    "one rate plan per product": "item lines; product by the item's SKU link, quantity and unitPrice "
                                 "(lines of one item add up)",
}


def subscription_from_order(order: Record, ctx: MapContext) -> dict[str, Any]:
    statuses = ctx.options["order_statuses"]
    if statuses and order.get("status") not in statuses:
        raise SkipRecord(f"status {order.get('status')} is not in options.order_statuses")
    lines = []
    for index, line in enumerate(order.get("salesOrderLines") or [], start=1):
        kind = line.get("lineType", "Item")
        if kind == "Comment" or (kind == "Item" and not line.get("itemId")):
            continue
        if kind != "Item":
            raise RecordError(f"line {index} of order {order.get('number')} is a {kind} line; a subscription needs "
                              "products", "unsupported_line")
        product = ctx.target_id("items", str(line["itemId"]),
                                what=f"item {line.get('lineObjectNumber') or line['itemId']}")
        lines.append(_clean({"productId": product, "sku": _text(line.get("lineObjectNumber")),
                             "quantity": line.get("quantity"), "price": line.get("unitPrice")}))
    if not lines:
        raise SkipRecord("no item lines")
    account = ctx.target_id("customers", str(order["customerId"]),
                            what=f"customer {order.get('customerNumber') or order['customerId']}")
    return _clean({option(ctx.options, "order_key_field"): str(order["number"]), "accountId": account,
                   "orderDate": _text(order.get("orderDate")), "termType": option(ctx.options, "term_type"),
                   "lines": lines})


# Zuora invoices and payments -> the NAV customer card ----------------------------------------------------------------
STATUS_FIELDS = {
    "<invoice_status_field>": '"INV00000041 Posted 2025-01-01: 49.99 USD, open 0.00" (the last invoice changed)',
    "<payment_status_field>": '"P-00000001 Processed 2025-01-05: 49.99 USD" (the last payment changed)',
}


def _customer_number(record: Record, ctx: MapContext, what: str) -> str:
    account = str(record.get("accountId") or "")
    number = ctx.source_id("customers", account)
    if not number:
        raise UnresolvedReference(f"{what}'s account {account} is not linked to a NAV customer yet (flow customers "
                                  "or accounts_to_customers has not synced it)")
    return number


def _money(value: Any) -> str:
    return f"{float(value or 0):.2f}"


def invoice_status(invoice: Record, ctx: MapContext) -> dict[str, Any]:
    field = option(ctx.options, "invoice_status_field")
    if not field:
        raise SkipRecord("options.invoice_status_field is empty: invoice status is not written to NAV")
    text = (f"{invoice.get('invoiceNumber')} {invoice.get('status')} {invoice.get('invoiceDate')}: "
            f"{_money(invoice.get('amount'))} {invoice.get('currency')}, open {_money(invoice.get('balance'))}")
    return {"number": _customer_number(invoice, ctx, f"invoice {invoice.get('invoiceNumber')}"), field: text}


def payment_status(payment: Record, ctx: MapContext) -> dict[str, Any]:
    field = option(ctx.options, "payment_status_field")
    if not field:
        raise SkipRecord("options.payment_status_field is empty: payment status is not written to NAV")
    text = (f"{payment.get('paymentNumber')} {payment.get('status')} {payment.get('effectiveDate')}: "
            f"{_money(payment.get('amount'))} {payment.get('currency')}")
    return {"number": _customer_number(payment, ctx, f"payment {payment.get('paymentNumber')}"), field: text}


def _key(name: str) -> Any:
    return lambda options: str(option(options, name))


def prerequisites(options: Mapping[str, Any]) -> tuple[Requirement, ...]:
    """NAV: the two status fields on the Customer card (a table and page extension, the partner's work); Zuora: the
    two custom fields (Settings > Billing > Manage Custom Fields: no public API creates them)."""
    extension = ("add a Text field {name} to the Customer table and to the Customer card page published as the "
                 "Customer web service (a table extension and a page extension: a NAV partner's work)")
    needed = [Requirement("erp", FIELD, "customers", str(option(options, name)), flows=(flow,),
                          fix=extension.format(name=option(options, name)))
              for name, flow in (("invoice_status_field", "invoice_status"), ("payment_status_field", "payment_status"))
              if option(options, name)]
    for field_option, zuora_object, flow in (("account_key_field", "Account", "customers"),
                                             ("order_key_field", "Subscription", "sales_orders")):
        name = str(option(options, field_option))
        needed.append(Requirement("billing", MANUAL, f"{zuora_object}.{name}", flows=(flow,),
                                  fix=f"in Zuora, Settings > Billing > Manage Custom Fields: a Text field {name} "
                                      f"on {zuora_object}, filterable"))
    return tuple(needed)


NAV_ZUORA = register(PairSpec(
    name="nav-zuora",
    options=OPTIONS,
    prerequisites=prerequisites,
    roles={"erp": ("nav",), "billing": ("zuora",)},
    description="Dynamics NAV <-> Zuora: customers and items both ways; sales orders to subscriptions; "
                "invoice and payment status back to the NAV customer",
    flows=(
        Flow("customers", "erp", "customers", "billing", "accounts", _key("account_key_field"), account_from_customer,
             echo_of="accounts_to_customers", send_back_created=True,
             description="NAV customers -> Zuora accounts (matched by the key field, then account_match)"),
        Flow("items", "erp", "items", "billing", "products", "sku", product_from_item,
             echo_of="products_to_items", send_back_created=True,
             description="NAV items -> Zuora products with a monthly per-unit rate plan (SKU = item number)"),
        Flow("sales_orders", "erp", "salesOrders", "billing", "subscriptions", _key("order_key_field"),
             subscription_from_order, depends_on=("customers", "items"),
             description="NAV sales orders -> Zuora subscriptions (CreateSubscription; changes as amendments)"),
        Flow("accounts_to_customers", "billing", "accounts", "erp", "customers", "number", customer_from_account,
             fields=CUSTOMER_FIELDS, echo_of="customers", find_by=("displayName",),
             description="Zuora accounts -> NAV customers"),
        Flow("products_to_items", "billing", "products", "erp", "items", "number", item_from_product,
             fields=ITEM_FIELDS, echo_of="items", find_by=("displayName",),
             description="Zuora products -> NAV items"),
        Flow("invoice_status", "billing", "invoices", "erp", "customers", "number", invoice_status,
             depends_on=("customers", "accounts_to_customers"),
             description="Zuora invoice status -> the NAV customer's invoice status field"),
        Flow("payment_status", "billing", "payments", "erp", "customers", "number", payment_status,
             depends_on=("customers", "accounts_to_customers"),
             description="Zuora payments -> the NAV customer's payment status field"),
    ),
))
