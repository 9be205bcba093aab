"""``GET /v1/describe/{object}``: the fields of an object in this tenant, custom fields included, as the Describe
operation lists them (https://developer.zuora.com/v1-api-reference/api/operation/GET_Describe/): an XML document,
``<object><name/><label/><fields><field><name/><label/><type/><contexts/></field>...``, fields under their API
(SOAP / export) names, PascalCase (``AccountNumber``; Object Query names the same field ``accountNumber``); object
names as "API object names for Describe" gives them (``Account``, ``Product``, ``Subscription``, ``Invoice``,
``Payment``). Only the standard fields this tenant stores are listed (a real tenant lists many more)."""

from __future__ import annotations

from xml.sax.saxutils import escape

from .store import Tenant

# Describe's object name -> (the tenant's table, its standard fields: name, type).
OBJECTS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "Account": ("accounts", (
        ("Id", "text"), ("AccountNumber", "text"), ("Name", "text"), ("Currency", "picklist"),
        ("BillCycleDay", "integer"), ("Status", "picklist"), ("AutoPay", "boolean"), ("PaymentTerm", "text"),
        ("CrmId", "text"), ("Notes", "text"), ("ParentId", "text"), ("Balance", "decimal"),
        ("TotalInvoiceBalance", "decimal"), ("BillToId", "text"), ("SoldToId", "text"),
        ("LastInvoiceDate", "date"), ("CreatedDate", "datetime"), ("UpdatedDate", "datetime"))),
    "Product": ("products", (
        ("Id", "text"), ("Name", "text"), ("SKU", "text"), ("Description", "text"), ("Category", "picklist"),
        ("ProductNumber", "text"), ("EffectiveStartDate", "date"), ("EffectiveEndDate", "date"),
        ("CreatedDate", "datetime"), ("UpdatedDate", "datetime"))),
    "Subscription": ("subscriptions", (
        ("Id", "text"), ("Name", "text"), ("AccountId", "text"), ("Version", "integer"),
        ("Status", "picklist"), ("TermType", "picklist"), ("ContractEffectiveDate", "date"),
        ("SubscriptionStartDate", "date"), ("TermStartDate", "date"), ("CreatedDate", "datetime"),
        ("UpdatedDate", "datetime"))),
    "Invoice": ("invoices", (
        ("Id", "text"), ("InvoiceNumber", "text"), ("AccountId", "text"), ("Amount", "decimal"),
        ("AmountWithoutTax", "decimal"), ("TaxAmount", "decimal"), ("Balance", "decimal"),
        ("PaymentAmount", "decimal"), ("InvoiceDate", "date"), ("DueDate", "date"), ("TargetDate", "date"),
        ("Status", "picklist"), ("PostedDate", "datetime"), ("Source", "text"), ("SourceType", "picklist"),
        ("CreatedDate", "datetime"), ("UpdatedDate", "datetime"))),
    "Payment": ("payments", (
        ("Id", "text"), ("PaymentNumber", "text"), ("AccountId", "text"), ("Amount", "decimal"),
        ("AppliedAmount", "decimal"), ("UnappliedAmount", "decimal"), ("RefundAmount", "decimal"),
        ("Currency", "text"), ("EffectiveDate", "date"), ("Status", "picklist"), ("Type", "picklist"),
        ("GatewayState", "picklist"), ("CreatedDate", "datetime"), ("UpdatedDate", "datetime"))),
}


def _label(name: str) -> str:
    base = name[:-3] if name.endswith("__c") else name
    return "".join(f" {c}" if c.isupper() and i else c for i, c in enumerate(base)).replace("_", " ").strip()


def document(name: str, tenant: Tenant) -> str | None:
    """The object's describe document, or None for an object this tenant does not have. Its custom fields: those
    defined, and any a record holds (this tenant stores custom fields sent without a definition; in Zuora a field
    had to be defined to be written)."""
    if name not in OBJECTS:
        return None
    table, standard = OBJECTS[name]
    held = {key for row in tenant.tables[table].values() for key in row if key.endswith("__c")}
    custom = [*tenant.custom_fields.get(table, ()), *sorted(held - set(tenant.custom_fields.get(table, ())))]
    fields = [*standard, *((field, "text") for field in custom)]
    body = "".join(f"<field><name>{escape(field)}</name><label>{escape(_label(field))}</label><type>{kind}</type>"
                   "<contexts><context>export</context><context>soap</context></contexts></field>"
                   for field, kind in fields)
    return (f'<?xml version="1.0" encoding="UTF-8"?><object><name>{name}</name><label>{_label(name)}</label>'
            f"<fields>{body}</fields></object>")
