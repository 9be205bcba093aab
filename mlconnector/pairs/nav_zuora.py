"""nav-zuora: Dynamics NAV and Zuora Billing. Customers and items align both ways with accounts and products;
NAV sales orders become Zuora subscriptions (Orders API), changed orders become amendments; Zuora's invoices and
payments are booked in NAV journals, and their last status shown on the NAV customer card.

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
    account_id_field      default "Zuora_Account_Id"  NAV customer field for the Zuora account id; "" leaves it out
    parent_from           default "bill_to"  a customer's Bill-to Customer No. makes its account a child account
    parent_dimension      default ""         a dimension whose value names the parent customer (optional flow
                                             account_parents_by_dimension)

    invoice_journal       default "SALES/ZUORA"     NAV sales journal TEMPLATE/BATCH for Zuora invoices
    payment_journal       default "CASHRCPT/ZUORA"  NAV cash receipt journal TEMPLATE/BATCH for Zuora payments
    revenue_account       default ""                G/L account balancing invoice lines ("": the batch's)
    local_currency        default "USD"             NAV's own currency (its amounts: blank Currency Code)

Zuora invoices and payments are booked per document in NAV journals (zuora_money.py): an invoice a Sales Journal
line, a payment Cash Receipt Journal lines applied to the invoices it paid, for NAV users to post. The last
invoice's and payment's status also land in two text fields on the NAV customer, which the customer adds to the
Customer card (table and page extension, published as the Customer web service): a summary at a glance.
With NAV reached through API v2.0 (``api = "api"``) the same documents become a draft BC sales invoice and
customerPayments lines of the customer payment journal named by the batch (systems/dynamics/api_journals.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlconnector.errors import RecordError, UnresolvedReference
from mlconnector.flows import CONFLICT_RULE, Flow, MapContext, Option, PairSpec, SkipRecord
from mlconnector.flows import text as _text
from mlconnector.flows import without_none as _clean
from mlconnector.pairs import register
from mlconnector.pairs.zuora_money import (INVOICE_TOTALS, PAYMENT_TOTALS, amount, booked_invoice, booked_payment,
                                           customer_number, invoice_document, payment_document, undone)
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
    Option("account_id_field", "Zuora_Account_Id", "NAV customer field (a page extension) holding the Zuora "
           "account id; \"\" leaves it out"),
    Option("parent_from", "bill_to", "what makes a NAV customer's Zuora account a child account: its Bill-to "
           "Customer No. (the Customer card), or none", ("bill_to", "none")),
    Option("parent_dimension", "", "a dimension code (NAV's Default Dimensions of a customer) whose value is the "
           "number of the customer whose Zuora account is the parent (optional flow account_parents_by_dimension)"),
    Option("invoice_journal", "SALES/ZUORA", "NAV sales journal TEMPLATE/BATCH Zuora invoices are booked in; \"\" "
           "leaves invoices out"),
    Option("payment_journal", "CASHRCPT/ZUORA", "NAV cash receipt journal TEMPLATE/BATCH Zuora payments are booked "
           "in; \"\" leaves payments out"),
    Option("revenue_account", "", "G/L account balancing invoice lines (\"\": the sales journal batch's balancing "
           "account); in API mode the account of the BC sales invoice's line, required"),
    Option("local_currency", "USD", "the NAV company's own currency: its amounts go with a blank Currency Code"),
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
    "<account_id_field>": "id",
}


def customer_from_account(account: Record, ctx: MapContext) -> dict[str, Any]:
    contact = account.get("billTo") or {}
    payload = _clean({
        "displayName": _text(account.get("name")), "email": _text(contact.get("workEmail")),
        "phoneNumber": _text(contact.get("workPhone")), "addressLine1": _text(contact.get("address1")),
        "city": _text(contact.get("city")), "state": _text(contact.get("state")),
        "postalCode": _text(contact.get("zipCode")), "country": _text(contact.get("country"))})
    payload["number"] = _text(account.get(option(ctx.options, "account_key_field")))
    field = option(ctx.options, "account_id_field")
    if field:
        payload[field] = str(account.id)  # a customer made from the account holds its id from the start
    return payload


def account_parent_by_dimension(dimension: Record, ctx: MapContext) -> dict[str, Any]:
    """A customer's default dimension named by options.parent_dimension holds the number of its parent customer (a
    customer group, a head office): that customer's Zuora account becomes the parent."""
    code = str(option(ctx.options, "parent_dimension") or "").upper()
    if not code:
        raise SkipRecord("options.parent_dimension is empty")
    if str(dimension.get("dimensionCode") or "").upper() != code:
        raise SkipRecord(f"dimension {dimension.get('dimensionCode')}, not {code}")
    number, parent = str(dimension["customerNumber"]), _text(dimension.get("dimensionValue"))
    if not parent or parent == number:
        raise SkipRecord("the customer is its own group")
    # the parent customer as the customers flow knows it: its number on pages, its id in API v2.0
    parent_id = _text(dimension.get("valueCustomerId")) or parent
    return {option(ctx.options, "account_key_field"): number,
            "parentId": ctx.target_id("customers", parent_id, what=f"customer {parent} ({code} {parent})")}


# The Zuora account id -> the NAV customer (who holds which account, seen from NAV) -----------------------------------
# NAV customer field <- the account the customers flow linked the customer to
ACCOUNT_ID_FIELDS = {"<account_id_field>": "the linked Zuora account's id"}


def account_id(customer: Record, ctx: MapContext) -> dict[str, Any]:
    """NAV customers read again after the customers flow: each gets the id of the account it is linked to. (Read
    from NAV, not from Zuora: a Zuora account made again after a deletion would share its customer's number with
    the deleted one's link, and the engine writes neither of two records sharing a key.)"""
    field = option(ctx.options, "account_id_field")
    if not field:
        raise SkipRecord("options.account_id_field is empty: the Zuora account id is not written to NAV")
    try:
        account = ctx.target_id("customers", str(customer.id))
    except UnresolvedReference:
        raise SkipRecord("not linked to a Zuora account yet") from None
    if _text(customer.get(field)) == account and not _linked(ctx, "account_ids", str(customer.id)):
        # a customer made from a Zuora account holds its id from the start: nothing to write, nothing to link
        raise SkipRecord("holds its Zuora account id already")
    return {"number": str(customer["number"]), field: account}


def _linked(ctx: MapContext, flow: str, source_id: str) -> bool:
    try:
        ctx.target_id(flow, source_id)
    except UnresolvedReference:
        return False
    return True


# NAV bill-to customers -> Zuora's customer hierarchy ---------------------------------------------------------------
# Zuora Account field <- NAV customer field
PARENT_FIELDS = {"parentId": "Bill_to_Customer_No (the Customer card; page web services): its linked account"}


def account_parent(customer: Record, ctx: MapContext) -> dict[str, Any]:
    """Runs after the customers flow, so every account exists however the first load ordered parents and children.
    A customer whose bill-to was taken away is detached (parentId empty) only where this flow once attached it."""
    if option(ctx.options, "parent_from") == "none":
        raise SkipRecord("options.parent_from is none: no customer hierarchy in Zuora")
    number = str(customer["number"])
    parent = _text(customer.get("Bill_to_Customer_No"))  # a page control: API v2.0 customers have no bill-to
    key = option(ctx.options, "account_key_field")
    if parent and parent != number:
        return {key: number, "parentId": ctx.target_id("customers", parent, what=f"bill-to customer {parent}")}
    if not _linked(ctx, "account_parents", str(customer.id)):
        raise SkipRecord("no bill-to customer")
    return {key: number, "parentId": ""}


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


_customer_number = customer_number


def _money(value: Any) -> str:
    return str(amount(value))


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
    # (a customer made from a Zuora account holds its account id from the start: accounts_to_customers writes it too)
    needed = [Requirement("erp", FIELD, "customers", str(option(options, name)), flows=flows,
                          fix=extension.format(name=option(options, name)), option=name)
              for name, flows in (("invoice_status_field", ("invoice_status",)),
                                  ("payment_status_field", ("payment_status",)),
                                  ("account_id_field", ("account_ids", "accounts_to_customers")))
              if option(options, name)]
    for journal_option, page, flow in (("invoice_journal", "253 Sales Journal as SalesJournal", "invoices"),
                                       ("payment_journal", "255 Cash Receipt Journal as CashReceiptJournal",
                                        "payments")):
        journal = str(option(options, journal_option))
        if journal:
            template, _, batch = journal.partition("/")
            needed.append(Requirement("erp", MANUAL, f"journal {journal}", flows=(flow,), fix=(
                f"in NAV, a journal batch {batch} in template {template} with its balancing account, page {page} "
                "and page 25 Customer Ledger Entries as CustomerLedgerEntries on the Web Services page (API mode: "
                f"a customer payment journal {batch}, and options.revenue_account for invoices)")))
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
        Flow("account_parents", "erp", "customers", "billing", "accounts", _key("account_key_field"), account_parent,
             depends_on=("customers", "accounts_to_customers"),
             description="NAV bill-to customers -> parent accounts in Zuora (customer hierarchy)"),
        Flow("account_parents_by_dimension", "erp", "customerDimensions", "billing", "accounts",
             _key("account_key_field"), account_parent_by_dimension, depends_on=("customers",), optional=True,
             description="a NAV customer dimension (options.parent_dimension) naming the parent customer -> the "
                         "Zuora account's parent (optional; page 540 Default Dimensions, in API mode customers' "
                         "defaultDimensions; read whole)"),
        Flow("account_ids", "erp", "customers", "erp", "customers", "number", account_id,
             depends_on=("customers", "accounts_to_customers"),
             description="the linked Zuora account's id -> the NAV customer's account id field"),
        Flow("invoices", "billing", "invoices", "erp", "salesJournalLines", "documentNumber", invoice_document,
             depends_on=("customers", "accounts_to_customers"), totals=INVOICE_TOTALS, owns=booked_invoice,
             may_be_absent=undone,
             description="Zuora invoices -> NAV sales journal lines (Document No. = invoice number)"),
        Flow("payments", "billing", "payments", "erp", "cashReceiptLines", "documentNumber", payment_document,
             depends_on=("invoices",), totals=PAYMENT_TOTALS, owns=booked_payment,
             may_be_absent=undone,
             description="Zuora payments -> NAV cash receipt journal lines applied to the invoices they pay"),
        Flow("invoice_status", "billing", "invoices", "erp", "customers", "number", invoice_status,
             depends_on=("customers", "accounts_to_customers"), many_to_one=True,
             description="Zuora invoice status -> the NAV customer's invoice status field"),
        Flow("payment_status", "billing", "payments", "erp", "customers", "number", payment_status,
             depends_on=("customers", "accounts_to_customers"), many_to_one=True,
             description="Zuora payments -> the NAV customer's payment status field"),
    ),
))
