"""gp-zoho: Dynamics GP and Zoho CRM. GP customers and vendors (with their contacts) become Zoho Accounts and
Contacts that sales can see; GP's chart of accounts and journal entries become reference records in two Zoho
custom modules (so deals can be tagged to a GL account); Zoho sales orders and won deals become GP sales
orders. GP is polled (it has no webhooks); Zoho changes arrive by watch channel where enabled, else by poll.

Options (``[pairs.gp-zoho.options]``; keys Zoho upserts on must be unique fields there):

    account_key_field      default "Account_Number"  GP customer id (vendors: prefix + vendor id) on the Account
    match_by_name          default true              an Account without that id but with the same Account_Name
                                                      is taken as the match (and gets the id); never a duplicate
    vendor_number_prefix   default "V-"
    vendor_module          default "Accounts"         or "Vendors" (Zoho's Vendors module, key vendor_key_field)
    vendor_key_field       default "GP_Vendor_Id"     (Vendors module only)
    contact_key_field      default "GP_Contact_Id"    vendor id/address id of a vendor contact
    gl_account_key_field   default "GL_Account_Number"   on the custom module GL_Accounts
    journal_key_field      default "GL_Journal_Id"       on the custom module GL_Journal_Entries
    order_number_prefix    default "Z"               GP order number = prefix + Zoho SO_Number (or record id)
    deal_number_prefix     default "D"
    deal_stages            default ["Closed Won"]    deals in these stages become GP orders
    deal_item              default "SERVICES"        the GP item a deal's amount is ordered as
    item_numbers           default {}                Zoho product name -> GP item number (else the name itself)
    order_skip_statuses    default ["Cancelled"]
    quote_number_prefix    default "Q"               GP quote number = prefix + Zoho Quote_Number (or record id)
    quote_skip_stages      default ["Closed Lost"]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mlconnector.errors import RecordError, UnresolvedReference
from mlconnector.flows import Flow, MapContext, Option, PairSpec, SkipRecord
from mlconnector.flows import text as _text
from mlconnector.flows import without_none as _clean
from mlconnector.pairs import register
from mlconnector.prerequisites import CUSTOM_MODULE, FIELD, MANUAL, MODULE, Requirement
from mlconnector.systems.base import Record

GL_ACCOUNT_MODULE = "GL_Accounts"
JOURNAL_MODULE = "GL_Journal_Entries"
GP_ORDER_NUMBER_LENGTH = 21

OPTIONS = (
    Option("account_key_field", "Account_Number", "GP id on the Account (unique in Zoho); vendors get the prefix"),
    Option("vendor_number_prefix", "V-", "before vendor ids on Accounts"),
    Option("vendor_module", "Accounts", "where GP vendors go", ("Accounts", "Vendors")),
    Option("vendor_key_field", "GP_Vendor_Id", "unique field on Zoho Vendors (vendor_module Vendors)"),
    Option("contact_key_field", "GP_Contact_Id", "unique field on Contacts: vendor id/address id"),
    Option("gl_account_key_field", "GL_Account_Number", "unique field on the GL accounts module"),
    Option("journal_key_field", "GL_Journal_Id", "unique field on the journal entries module"),
    Option("order_number_prefix", "Z", "before GP order numbers made from Zoho sales orders"),
    Option("match_by_name", True, "an Account without the GP id but with the same name is the customer's"),
    Option("deal_number_prefix", "D", "before GP order numbers made from won deals"),
    Option("quote_number_prefix", "Q", "before GP quote numbers made from Zoho quotes"),
    Option("quote_skip_stages", ["Closed Lost"], "Zoho quote stages not sent to GP"),
    Option("deal_stages", ["Closed Won"], "deal stages that become GP orders"),
    Option("deal_item", "SERVICES", "the GP item a deal's amount is ordered as"),
    Option("item_numbers", {}, "Zoho product name -> GP item number (else the name itself)"),
    Option("order_skip_statuses", ["Cancelled"], "Zoho order statuses not sent to GP"),
)


def option(options: Mapping[str, Any], name: str) -> Any:
    return options[name]


def option_key(name: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda options: str(option(options, name))


def account_match(options: Mapping[str, Any]) -> str:
    """Zoho upserts on the stored GP id first, then (unless switched off) on the account name."""
    key = str(option(options, "account_key_field"))
    return f"{key},Account_Name" if option(options, "match_by_name") else key


def _street(address: Mapping[str, Any] | None) -> str | None:
    if not address:
        return None
    return _text(", ".join(p for p in (_text(address.get(k)) for k in ("line1", "line2", "line3")) if p))


def _lookup_id(value: Any) -> str | None:
    return str(value["id"]) if isinstance(value, Mapping) and value.get("id") else None


# The GL coding of an Account: the GP card's posting accounts, one custom text field each
# (https://learn.microsoft.com/previous-versions/dynamicsgp/developer/cc533830(v=msdn.10): Vendor's GLAccountKeys)
POSTING_FIELDS = {"GL_Cash_Account": "Cash", "GL_Receivables_Account": "AccountsReceivable (customers)",
                  "GL_Sales_Account": "Sales (customers)", "GL_Payables_Account": "AccountsPayable (vendors)",
                  "GL_Purchases_Account": "Purchases (vendors)"}
_POSTING_KEYS = {"GL_Cash_Account": "cash", "GL_Receivables_Account": "receivables", "GL_Sales_Account": "sales",
                 "GL_Payables_Account": "payables", "GL_Purchases_Account": "purchases"}
CUSTOMER_POSTING_FIELDS = ("GL_Cash_Account", "GL_Receivables_Account", "GL_Sales_Account")
VENDOR_POSTING_FIELDS = ("GL_Cash_Account", "GL_Payables_Account", "GL_Purchases_Account")


def _gl_coding(party: Record, fields: tuple[str, ...]) -> dict[str, Any]:
    accounts = party.get("postingAccounts") or {}
    return {field: _text(accounts.get(_POSTING_KEYS[field])) for field in fields}


# GP customers and vendors -> Zoho Accounts ---------------------------------------------------------------------
# Zoho Account field  <- GP field
ACCOUNT_FIELDS = {
    "Account_Name": "Name",
    "Account_Number": "customer id (vendors: prefix + vendor id); options.account_key_field",
    "Account_Type": '"Customer" or "Vendor"',
    "Phone": "phone of the default address",
    **{f"Billing_{part}": f"bill-to address {source} (customers; vendors: the remit-to or default address)"
       for part, source in (("Street", "street lines"), ("City", "city"), ("State", "state"), ("Code", "postalCode"),
                            ("Country", "country"))},
    **{f"Shipping_{part}": f"ship-to address {source} (customers)"
       for part, source in (("Street", "street lines"), ("City", "city"), ("State", "state"), ("Code", "postalCode"),
                            ("Country", "country"))},
    "Credit_Limit": "CreditLimit amount (custom currency field)",
    "Balance": "Balance (custom currency field; read-only for sales)",
    "Outstanding_Payables": "vendors: open payables documents, debits less credits (custom currency field)",
    **{field: f"the card's {source} posting account (custom text field)" for field, source in POSTING_FIELDS.items()},
    "Description": "Comment1",
}


def _address_fields(prefix: str, address: Mapping[str, Any] | None, code_name: str = "Code") -> dict[str, Any]:
    address = address or {}
    return {f"{prefix}_Street": _street(address), f"{prefix}_City": _text(address.get("city")),
            f"{prefix}_State": _text(address.get("state")), f"{prefix}_{code_name}": _text(address.get("postalCode")),
            f"{prefix}_Country": _text(address.get("country"))}


def account_from_customer(customer: Record, ctx: MapContext) -> dict[str, Any]:
    name = _text(customer.get("name"))
    if not name:
        raise RecordError(f"customer {customer.id} has no name; Zoho requires Account_Name", "INVALID_DATA")
    return _clean({
        "Account_Name": name, option(ctx.options, "account_key_field"): customer.id, "Account_Type": "Customer",
        "Phone": _text(customer.get("phone")), "Description": _text(customer.get("comment")),
        **_address_fields("Billing", customer.get("billingAddress")),
        **_address_fields("Shipping", customer.get("shippingAddress")),
        "Credit_Limit": customer.get("creditLimit"), "Balance": customer.get("balance"),
        **_gl_coding(customer, CUSTOMER_POSTING_FIELDS),
    })


def account_from_vendor(vendor: Record, ctx: MapContext) -> dict[str, Any]:
    if option(ctx.options, "vendor_module") != "Accounts":
        raise SkipRecord("vendors go to Zoho's Vendors module (options.vendor_module)")
    name = _text(vendor.get("name"))
    if not name:
        raise RecordError(f"vendor {vendor.id} has no name; Zoho requires Account_Name", "INVALID_DATA")
    return _clean({
        "Account_Name": name,
        option(ctx.options, "account_key_field"): f"{option(ctx.options, 'vendor_number_prefix')}{vendor.id}",
        "Account_Type": "Vendor", "Phone": _text(vendor.get("phone")), "Description": _text(vendor.get("comment")),
        **_address_fields("Billing", vendor.get("remitToAddress") or vendor.get("defaultAddress")),
        "Outstanding_Payables": vendor.get("outstandingPayables"), **_gl_coding(vendor, VENDOR_POSTING_FIELDS),
    })


# Zoho Vendor field <- GP field (options.vendor_module = "Vendors")
VENDOR_FIELDS = {"Vendor_Name": "Name", "GP_Vendor_Id": "vendor id (options.vendor_key_field)", "Phone": "phone",
                 **{name: f"remit-to (else default) address {source}" for name, source in (
                     ("Street", "street lines"), ("City", "city"), ("State", "state"), ("Zip_Code", "postalCode"),
                     ("Country", "country"))}}


def zoho_vendor_from_vendor(vendor: Record, ctx: MapContext) -> dict[str, Any]:
    if option(ctx.options, "vendor_module") != "Vendors":
        raise SkipRecord("vendors go to Zoho Accounts (options.vendor_module)")
    name = _text(vendor.get("name"))
    if not name:
        raise RecordError(f"vendor {vendor.id} has no name; Zoho requires Vendor_Name", "INVALID_DATA")
    address = vendor.get("remitToAddress") or vendor.get("defaultAddress") or {}
    return _clean({"Vendor_Name": name, option(ctx.options, "vendor_key_field"): vendor.id,
                   "Phone": _text(vendor.get("phone")), "Street": _street(address), "City": _text(address.get("city")),
                   "State": _text(address.get("state")), "Zip_Code": _text(address.get("postalCode")),
                   "Country": _text(address.get("country"))})


# GP vendor contact persons -> Zoho Contacts ----------------------------------------------------------------------
def contact_from_vendor_contact(contact: Record, ctx: MapContext) -> dict[str, Any]:
    name = _text(contact.get("name"))
    if not name:
        raise SkipRecord("no contact person on this address")
    first, _, last = name.rpartition(" ")
    payload = {"First_Name": _text(first), "Last_Name": last, option(ctx.options, "contact_key_field"): contact.id,
               "Phone": _text(contact.get("phone")), "Mailing_Street": _street(contact),
               "Mailing_City": _text(contact.get("city")), "Mailing_State": _text(contact.get("state")),
               "Mailing_Zip": _text(contact.get("postalCode")), "Mailing_Country": _text(contact.get("country"))}
    vendor = str(contact.get("vendorId"))
    if option(ctx.options, "vendor_module") == "Vendors":
        payload["Vendor_Name"] = {"id": ctx.target_id("vendors_to_vendor_module", vendor, what=f"vendor {vendor}")}
    else:
        payload["Account_Name"] = {"id": ctx.target_id("vendors", vendor, what=f"vendor {vendor}")}
    return _clean(payload)


# GL accounts and journal entries -> Zoho reference records --------------------------------------------------------
# custom module GL_Accounts: Name, GL_Account_Number (unique), Description, Account_Type, Active, Alias
def gl_account_reference(account: Record, ctx: MapContext) -> dict[str, Any]:
    description = _text(account.get("description")) or account.id
    return _clean({"Name": f"{account.id} {description}"[:120], option(ctx.options, "gl_account_key_field"): account.id,
                   "Description": description, "Account_Type": _text(account.get("accountType")),
                   "Active": bool(account.get("isActive", True)), "Alias": _text(account.get("alias"))})


# custom module GL_Journal_Entries: Name, GL_Journal_Id (unique), Reference, Transaction_Date, Batch, State,
# Total, GL_Accounts (the account numbers it touches), Lines (one text line per journal line)
def journal_reference(entry: Record, ctx: MapContext) -> dict[str, Any]:
    lines = entry.get("lines") or []
    accounts = sorted({str(line["account"]) for line in lines if line.get("account")})
    text = "\n".join(f"{line.get('account')}: debit {line.get('debit') or 0:.2f} credit {line.get('credit') or 0:.2f}"
                     + (f" ({line['description']})" if line.get("description") else "") for line in lines)
    return _clean({"Name": f"JE {entry.id} {_text(entry.get('reference')) or ''}".strip()[:120],
                   option(ctx.options, "journal_key_field"): entry.id, "Reference": _text(entry.get("reference")),
                   "Transaction_Date": entry.get("transactionDate"), "Batch": _text(entry.get("batch")),
                   "State": _text(entry.get("state")), "Total": entry.get("total"),
                   "GL_Accounts": ", ".join(accounts) or None, "Lines": text or None})


# Zoho Sales_Orders and Deals -> GP sales orders --------------------------------------------------------------------
def _gp_customer(account: Any, ctx: MapContext, what: str) -> str:
    account_id = _lookup_id(account)
    if not account_id:
        raise RecordError(f"{what} has no Account; a GP sales order needs a customer", "INVALID_DATA")
    customer = ctx.source_id("customers", account_id)
    if not customer:
        name = account.get("name") if isinstance(account, Mapping) else account_id
        raise UnresolvedReference(f"account {name} is not linked to a GP customer (only accounts that came from "
                                  "GP customers can order in GP)")
    return customer


def _order_number(prefix: str, number: str, what: str) -> str:
    value = f"{prefix}{number}"
    if len(value) > GP_ORDER_NUMBER_LENGTH:
        raise RecordError(f"{what}: GP order number {value} is longer than {GP_ORDER_NUMBER_LENGTH} characters; "
                          "shorten the prefix option", "INVALID_DATA")
    return value


def order_from_sales_order(order: Record, ctx: MapContext) -> dict[str, Any]:
    if _text(order.get("Status")) in option(ctx.options, "order_skip_statuses"):
        raise SkipRecord(f"status {order.get('Status')}")
    what = f"sales order {order.get('Subject') or order.id}"
    items = option(ctx.options, "item_numbers")
    lines = []
    for row in order.get("Ordered_Items") or []:
        product = row.get("Product_Name") if isinstance(row.get("Product_Name"), Mapping) else {}
        name = _text((product or {}).get("name"))
        item = items.get(name) or items.get(_lookup_id(product) or "") or name
        if not item:
            raise RecordError(f"{what}: a line has no product", "INVALID_DATA")
        lines.append(_clean({"item": item, "quantity": row.get("Quantity"), "unitPrice": row.get("List_Price"),
                             "description": _text(row.get("Description"))}))
    if not lines:
        raise SkipRecord("no lines")
    return _clean({"Id": _order_number(option(ctx.options, "order_number_prefix"),
                                       str(order.get("SO_Number") or order.id), what),
                   "customerId": _gp_customer(order.get("Account_Name"), ctx, what),
                   "customerPONumber": _text(order.get("Subject"))[:21] if _text(order.get("Subject")) else None,
                   "date": _text(order.get("Due_Date")), "lines": lines,
                   "currency": _text(order.get("Currency")), "comment": f"Zoho sales order {order.id}"})


def quote_from_zoho_quote(quote: Record, ctx: MapContext) -> dict[str, Any]:
    """A Zoho quote as a GP sales quote (CreateSalesQuote), numbered prefix + Quote_Number (else the record id)."""
    if _text(quote.get("Quote_Stage")) in option(ctx.options, "quote_skip_stages"):
        raise SkipRecord(f"stage {quote.get('Quote_Stage')}")
    what = f"quote {quote.get('Subject') or quote.id}"
    document = order_from_sales_order(Record(quote.system, quote.entity, quote.id, quote.modified,
                                             {**quote.data, "Ordered_Items": quote.get("Quoted_Items"),
                                              "Status": None, "SO_Number": None}), ctx)
    return {**document, "Id": _order_number(option(ctx.options, "quote_number_prefix"),
                                            str(quote.get("Quote_Number") or quote.id), what),
            "date": _text(quote.get("Valid_Till")), "comment": f"Zoho quote {quote.id}"}


def order_from_deal(deal: Record, ctx: MapContext) -> dict[str, Any]:
    if deal.get("Stage") not in option(ctx.options, "deal_stages"):
        raise SkipRecord(f"stage {deal.get('Stage')} is not one of options.deal_stages")
    what = f"deal {deal.get('Deal_Name') or deal.id}"
    amount = deal.get("Amount")
    if amount in (None, ""):
        raise RecordError(f"{what} has no Amount", "INVALID_DATA")
    return _clean({"Id": _order_number(option(ctx.options, "deal_number_prefix"), deal.id, what),
                   "customerId": _gp_customer(deal.get("Account_Name"), ctx, what),
                   "customerPONumber": (_text(deal.get("Deal_Name")) or "")[:21] or None,
                   "date": _text(deal.get("Closing_Date")), "currency": _text(deal.get("Currency")),
                   "lines": [{"item": option(ctx.options, "deal_item"), "quantity": 1, "unitPrice": float(amount),
                              "description": _text(deal.get("Deal_Name"))}],
                   "comment": f"Zoho deal {deal.id}"})


def prerequisites(options: Mapping[str, Any]) -> tuple[Requirement, ...]:
    """Zoho: the keys as unique fields, Credit_Limit, Balance, Outstanding_Payables and the GL coding on Accounts,
    the two custom modules and their fields; GP: the Dynamics Security Console role (a person's step)."""
    account = str(option(options, "account_key_field"))
    gl, journal = str(option(options, "gl_account_key_field")), str(option(options, "journal_key_field"))
    needed = [
        Requirement("crm", FIELD, "Accounts", account, unique=True, flows=("customers", "vendors")),
        Requirement("crm", FIELD, "Accounts", "Credit_Limit", "currency", flows=("customers",)),
        Requirement("crm", FIELD, "Accounts", "Balance", "currency", flows=("customers",)),
        Requirement("crm", FIELD, "Accounts", "Outstanding_Payables", "currency", flows=("vendors",)),
        *(Requirement("crm", FIELD, "Accounts", name, "text",
                      flows=tuple(flow for flow, names in (("customers", CUSTOMER_POSTING_FIELDS),
                                                           ("vendors", VENDOR_POSTING_FIELDS)) if name in names))
          for name in POSTING_FIELDS),
        Requirement("crm", FIELD, "Contacts", str(option(options, "contact_key_field")), unique=True,
                    flows=("vendor_contacts",)),
        Requirement("crm", CUSTOM_MODULE, GL_ACCOUNT_MODULE, label="GL Accounts", singular="GL Account",
                    flows=("gl_accounts", "journal_entries")),
        Requirement("crm", FIELD, GL_ACCOUNT_MODULE, gl, unique=True, flows=("gl_accounts",)),
        *(Requirement("crm", FIELD, GL_ACCOUNT_MODULE, name, data_type, flows=("gl_accounts",))
          for name, data_type in (("Description", "textarea"), ("Account_Type", "text"), ("Active", "boolean"),
                                  ("Alias", "text"))),
        Requirement("crm", CUSTOM_MODULE, JOURNAL_MODULE, label="GL Journal Entries", singular="GL Journal Entry",
                    flows=("journal_entries",)),
        Requirement("crm", FIELD, JOURNAL_MODULE, journal, unique=True, flows=("journal_entries",)),
        *(Requirement("crm", FIELD, JOURNAL_MODULE, name, data_type, flows=("journal_entries",))
          for name, data_type in (("Reference", "text"), ("Transaction_Date", "date"), ("Batch", "text"),
                                  ("State", "text"), ("Total", "currency"), ("GL_Accounts", "text"),
                                  ("Lines", "textarea"))),
        Requirement("crm", MODULE, "Sales_Orders", flows=("sales_orders_to_gp",)),
        Requirement("erp", MANUAL, "GP Web Services role",
                    fix="Dynamics Security Console: give the Windows account a role allowing the read operations "
                        "(customers, vendors, payables documents, GL accounts and transactions) and CreateSalesOrder, "
                        "with access to the company, and the CreateSalesOrder policy (`mlconnector ping gp` checks "
                        "both)"),
    ]
    if option(options, "vendor_module") == "Vendors":
        needed.append(Requirement("crm", FIELD, "Vendors", str(option(options, "vendor_key_field")), unique=True,
                                  flows=("vendors_to_vendor_module",)))
    return tuple(needed)


GP_ZOHO = register(PairSpec(
    name="gp-zoho",
    options=OPTIONS,
    prerequisites=prerequisites,
    roles={"erp": ("gp",), "crm": ("zoho",)},
    description="Dynamics GP <-> Zoho CRM: customers, vendors and vendor contacts to Zoho; GL accounts and journal "
                "entries to Zoho reference modules; Zoho sales orders and won deals to GP sales orders",
    flows=(
        Flow("customers", "erp", "customers", "crm", "Accounts", account_match,
             account_from_customer,
             fields=ACCOUNT_FIELDS,
             description="GP customers -> Zoho Accounts (addresses, credit limit, balance, GL coding)"),
        Flow("vendors", "erp", "vendors", "crm", "Accounts", account_match, account_from_vendor,
             fields=ACCOUNT_FIELDS,
             description="GP vendors -> Zoho Accounts (Account_Type Vendor, outstanding payables, GL coding)"),
        Flow("vendors_to_vendor_module", "erp", "vendors", "crm", "Vendors", option_key("vendor_key_field"),
             zoho_vendor_from_vendor,
             fields=VENDOR_FIELDS, description="GP vendors -> Zoho Vendors (when options.vendor_module = Vendors)"),
        Flow("vendor_contacts", "erp", "vendorContacts", "crm", "Contacts", option_key("contact_key_field"),
             contact_from_vendor_contact, depends_on=("vendors", "vendors_to_vendor_module"),
             description="Contact persons of GP vendor addresses -> Zoho Contacts"),
        Flow("gl_accounts", "erp", "glAccounts", "crm", GL_ACCOUNT_MODULE, option_key("gl_account_key_field"),
             gl_account_reference, description="GP chart of accounts -> Zoho custom module GL_Accounts"),
        Flow("journal_entries", "erp", "glTransactions", "crm", JOURNAL_MODULE, option_key("journal_key_field"),
             journal_reference, depends_on=("gl_accounts",),
             description="GP journal entries -> Zoho custom module GL_Journal_Entries"),
        Flow("sales_orders_to_gp", "crm", "Sales_Orders", "erp", "salesOrders", "Id", order_from_sales_order,
             depends_on=("customers",), description="Zoho Sales_Orders -> GP sales orders (CreateSalesOrder)"),
        Flow("deals_to_gp", "crm", "Deals", "erp", "salesOrders", "Id", order_from_deal, depends_on=("customers",),
             description="Zoho Deals in a won stage -> GP sales orders"),
        Flow("quotes_to_gp", "crm", "Quotes", "erp", "salesQuotes", "Id", quote_from_zoho_quote,
             depends_on=("customers",), description="Zoho Quotes -> GP sales quotes (CreateSalesQuote)"),
    ),
))
