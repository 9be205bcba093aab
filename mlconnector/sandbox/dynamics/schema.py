"""The entities the sandbox serves: BC API v2.0 field tables and the NAV/BC card pages published over ODataV4.

API field names and types are from the v2.0 resource reference (api-reference/v2.0/resources/dynamics_*.md).
Fields not listed for an entity are rejected in ``$select``/``$filter`` like BC does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
BLANK_DATE = "0001-01-01"
BLANK_DATETIME = "0001-01-01T00:00:00Z"

TYPE_DEFAULTS: dict[str, object] = {
    "string": "", "decimal": 0, "boolean": False, "guid": EMPTY_GUID, "date": BLANK_DATE,
    "datetime": BLANK_DATETIME, "integer": 0,
}


def _fields(spec: str) -> dict[str, str]:
    """``"id:guid number displayName blocked:boolean"`` -> {name: type}; the type defaults to string."""
    out: dict[str, str] = {}
    for token in spec.split():
        name, _, kind = token.partition(":")
        out[name] = kind or "string"
    return out


_ADDRESS = "addressLine1 addressLine2 city state country postalCode"
_DOC_ADDRESSES = " ".join(
    f"{party}{part}" for party in ("sellTo", "billTo", "shipTo")
    for part in ("AddressLine1", "AddressLine2", "City", "Country", "State", "PostCode"))
_LINE_COMMON = (
    "id:guid documentId:guid sequence:integer itemId:guid accountId:guid lineType lineObjectNumber description "
    "description2 unitOfMeasureId:guid unitOfMeasureCode quantity:decimal discountAmount:decimal "
    "discountPercent:decimal discountAppliedBeforeTax:boolean amountExcludingTax:decimal taxCode "
    "taxPercent:decimal totalTaxAmount:decimal amountIncludingTax:decimal invoiceDiscountAllocation:decimal "
    "netAmount:decimal netTaxAmount:decimal netAmountIncludingTax:decimal itemVariantId:guid locationId:guid")
_DOC_TOTALS = ("discountAmount:decimal discountAppliedBeforeTax:boolean totalAmountExcludingTax:decimal "
               "totalTaxAmount:decimal totalAmountIncludingTax:decimal")


@dataclass(frozen=True)
class EntitySpec:
    """One API v2.0 entity set."""

    set_name: str                 # URL segment, e.g. "customers"
    entity_name: str              # EDM type name, e.g. "customer"
    fields: dict[str, str]        # API property -> type
    number_series: str | None = None     # first number BC's number series hands out, e.g. "C00010"
    number_step: int = 10
    defaults: dict[str, object] = field(default_factory=dict)
    read_only: frozenset[str] = frozenset({"id", "lastModifiedDateTime"})
    lines: str | None = None      # navigation property holding the document lines
    header: str | None = None     # for line sets: the header entity set
    webhooks: bool = False        # listed in BC's webhook-supported resources (dynamics-subscriptions.md)
    expands: frozenset[str] = frozenset()
    # Table fields the card page shows that the API v2.0 entity does not (Customer's "Bill-to Customer No.").
    page_only: dict[str, str] = field(default_factory=dict)

    @cached_property
    def view_shape(self) -> tuple[dict[str, Any], frozenset[str], list[tuple[str, Any]]]:
        """The API view of a row with every field at its default (etag first), the field names, and the fields in
        order with their defaults. ``cached_property`` writes the instance's ``__dict__`` directly, which a frozen
        dataclass allows."""
        defaults = [(name, self.defaults.get(name, TYPE_DEFAULTS[kind])) for name, kind in self.fields.items()]
        return {"@odata.etag": None, **dict(defaults)}, frozenset(self.fields), defaults


# A single-valued navigation to a setup table: its name -> (the entity set, the key field on the pointing row).
REFERENCES: dict[str, tuple[str, str]] = {
    "currency": ("currencies", "currencyId"), "paymentTerm": ("paymentTerms", "paymentTermsId"),
    "paymentMethod": ("paymentMethods", "paymentMethodId"), "shipmentMethod": ("shipmentMethods", "shipmentMethodId"),
    "customer": ("customers", "customerId"), "vendor": ("vendors", "vendorId"),
}

ENTITIES: dict[str, EntitySpec] = {spec.set_name: spec for spec in [
    EntitySpec(
        "customers", "customer",
        _fields(f"id:guid number displayName type {_ADDRESS} phoneNumber email website salespersonCode "
                "balanceDue:decimal creditLimit:decimal taxLiable:boolean taxAreaId:guid taxAreaDisplayName "
                "taxRegistrationNumber currencyId:guid currencyCode paymentTermsId:guid shipmentMethodId:guid "
                "paymentMethodId:guid blocked lastModifiedDateTime:datetime"),
        number_series="C00010", defaults={"type": "Company", "blocked": " "},
        read_only=frozenset({"id", "lastModifiedDateTime", "balanceDue"}), webhooks=True,
        expands=frozenset({"currency", "paymentTerm", "paymentMethod", "shipmentMethod", "defaultDimensions"}),
        # Card fields API v2.0's customers entity does not have (Customer card, page 21):
        # https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/api-reference/v2.0/resources/dynamics_customer
        page_only={"billToCustomerNumber": "string", "customerPostingGroup": "string",
                   "genBusPostingGroup": "string", "customerPriceGroup": "string"}),
    EntitySpec(
        "vendors", "vendor",
        _fields(f"id:guid number displayName {_ADDRESS} phoneNumber email website taxRegistrationNumber "
                "currencyId:guid currencyCode irs1099Code paymentTermsId:guid paymentMethodId:guid "
                "taxLiable:boolean blocked balance:decimal lastModifiedDateTime:datetime"),
        number_series="V00010", defaults={"blocked": " "},
        read_only=frozenset({"id", "lastModifiedDateTime", "balance"}), webhooks=True,
        expands=frozenset({"currency", "paymentTerm", "paymentMethod"})),
    EntitySpec(
        "contacts", "contact",
        _fields(f"id:guid number type displayName jobTitle companyNumber companyName contactBusinessRelation "
                f"{_ADDRESS} phoneNumber mobilePhoneNumber email website searchName privacyBlocked:boolean "
                "taxRegistrationNumber lastInteractionDate:date lastModifiedDateTime:datetime"),
        number_series="CT000010", defaults={"type": "Company", "contactBusinessRelation": "None"},
        # contacts are absent from BC's webhook-supported list
        webhooks=False, expands=frozenset({"contactInformation"})),
    EntitySpec(
        "items", "item",
        _fields("id:guid number displayName displayName2 type itemCategoryId:guid itemCategoryCode blocked:boolean "
                "gtin inventory:decimal unitPrice:decimal priceIncludesTax:boolean unitCost:decimal taxGroupId:guid "
                "taxGroupCode baseUnitOfMeasureId:guid baseUnitOfMeasureCode generalProductPostingGroupId:guid "
                "generalProductPostingGroupCode inventoryPostingGroupId:guid inventoryPostingGroupCode "
                "lastModifiedDateTime:datetime"),
        number_series="1000", number_step=1, defaults={"type": "Inventory", "baseUnitOfMeasureCode": "PCS"},
        read_only=frozenset({"id", "lastModifiedDateTime", "inventory"}), webhooks=True),
    EntitySpec(
        "salesOrders", "salesOrder",
        _fields("id:guid number externalDocumentNumber orderDate:date postingDate:date customerId:guid "
                "customerNumber customerName billToName billToCustomerId:guid billToCustomerNumber shipToName "
                f"shipToContact {_DOC_ADDRESSES} currencyId:guid currencyCode pricesIncludeTax:boolean "
                "paymentTermsId:guid shipmentMethodId:guid salesperson partialShipping:boolean "
                f"requestedDeliveryDate:date {_DOC_TOTALS} fullyShipped:boolean status "
                "lastModifiedDateTime:datetime phoneNumber email"),
        number_series="S-ORD101001", number_step=1, defaults={"status": "Draft", "partialShipping": True},
        read_only=frozenset({"id", "lastModifiedDateTime", "totalAmountExcludingTax", "totalTaxAmount",
                             "totalAmountIncludingTax", "fullyShipped", "status"}),
        lines="salesOrderLines", webhooks=True, expands=frozenset({"salesOrderLines", "customer"})),
    EntitySpec(
        "salesOrderLines", "salesOrderLine",
        _fields(f"{_LINE_COMMON} unitPrice:decimal shipmentDate:date shippedQuantity:decimal "
                "invoicedQuantity:decimal invoiceQuantity:decimal shipQuantity:decimal"),
        defaults={"lineType": "Item"}, header="salesOrders",
        read_only=frozenset({"id", "documentId", "amountExcludingTax", "amountIncludingTax", "totalTaxAmount",
                             "netAmount", "netTaxAmount", "netAmountIncludingTax"})),
    EntitySpec(
        "salesInvoices", "salesInvoice",
        _fields("id:guid number externalDocumentNumber invoiceDate:date postingDate:date dueDate:date "
                "promisedPayDate:date customerPurchaseOrderReference customerId:guid customerNumber customerName "
                f"billToName billToCustomerId:guid billToCustomerNumber shipToName shipToContact {_DOC_ADDRESSES} "
                "currencyId:guid currencyCode orderId:guid orderNumber paymentTermsId:guid shipmentMethodId:guid "
                "salesperson disputeStatusId:guid disputeStatus pricesIncludeTax:boolean remainingAmount:decimal "
                f"{_DOC_TOTALS} status lastModifiedDateTime:datetime phoneNumber email"),
        number_series="S-INV102001", number_step=1, defaults={"status": "Draft"},
        read_only=frozenset({"id", "lastModifiedDateTime", "totalAmountExcludingTax", "totalTaxAmount",
                             "totalAmountIncludingTax", "remainingAmount", "status", "orderId", "orderNumber"}),
        lines="salesInvoiceLines", webhooks=True, expands=frozenset({"salesInvoiceLines", "customer"})),
    EntitySpec(
        "salesInvoiceLines", "salesInvoiceLine",
        _fields(f"{_LINE_COMMON} unitPrice:decimal shipmentDate:date"),
        defaults={"lineType": "Item"}, header="salesInvoices",
        read_only=frozenset({"id", "documentId", "amountExcludingTax", "amountIncludingTax", "totalTaxAmount",
                             "netAmount", "netTaxAmount", "netAmountIncludingTax"})),
    EntitySpec(
        "purchaseOrders", "purchaseOrder",
        _fields("id:guid number orderDate:date postingDate:date vendorId:guid vendorNumber vendorName payToName "
                "payToVendorId:guid payToVendorNumber shipToName shipToContact "
                + " ".join(f"{p}{s}" for p in ("buyFrom", "payTo", "shipTo")
                           for s in ("AddressLine1", "AddressLine2", "City", "Country", "State", "PostCode"))
                + " currencyId:guid currencyCode pricesIncludeTax:boolean paymentTermsId:guid "
                "shipmentMethodId:guid purchaser requestedReceiptDate:date "
                f"{_DOC_TOTALS} fullyReceived:boolean status lastModifiedDateTime:datetime"),
        number_series="106001", number_step=1, defaults={"status": "Draft"},
        read_only=frozenset({"id", "lastModifiedDateTime", "totalAmountExcludingTax", "totalTaxAmount",
                             "totalAmountIncludingTax", "status"}),
        lines="purchaseOrderLines", webhooks=False,  # purchaseOrders are absent from the webhook list
        expands=frozenset({"purchaseOrderLines", "vendor"})),
    EntitySpec(
        "purchaseOrderLines", "purchaseOrderLine",
        _fields(f"{_LINE_COMMON} directUnitCost:decimal expectedReceiptDate:date receivedQuantity:decimal "
                "invoicedQuantity:decimal invoiceQuantity:decimal receiveQuantity:decimal"),
        defaults={"lineType": "Item"}, header="purchaseOrders",
        read_only=frozenset({"id", "documentId", "amountExcludingTax", "amountIncludingTax", "totalTaxAmount",
                             "netAmount", "netTaxAmount", "netAmountIncludingTax"})),
    # Setup tables a customer or vendor points to (API v2.0 resources currency, paymentTerm, paymentMethod,
    # shipmentMethod: https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/
    # resources/dynamics_currency and its siblings), reached by $expand from customers and vendors.
    EntitySpec("currencies", "currency",
               _fields("id:guid code displayName symbol amountDecimalPlaces amountRoundingPrecision:decimal "
                       "lastModifiedDateTime:datetime")),
    EntitySpec("paymentTerms", "paymentTerm",
               _fields("id:guid code displayName dueDateCalculation discountDateCalculation discountPercent:decimal "
                       "calculateDiscountOnCreditMemos:boolean lastModifiedDateTime:datetime")),
    EntitySpec("paymentMethods", "paymentMethod", _fields("id:guid code displayName lastModifiedDateTime:datetime")),
    EntitySpec("shipmentMethods", "shipmentMethod",
               _fields("id:guid code displayName lastModifiedDateTime:datetime")),
]}

# Entity sets served beside ENTITIES, each by a module of its own, with their API v2.0 properties (for $metadata and
# their reads): companyInformation (api.py), customerPaymentJournals / customerPayments / generalLedgerEntries
# (api_journals.py), defaultDimensions (dimensions.py), subscriptions (webhooks.py, outside companies).
# https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/resources/dynamics_companyinformation
COMPANY_INFORMATION_TYPES = _fields(
    "id:guid displayName addressLine1 addressLine2 city state country postalCode phoneNumber faxNumber email website "
    "taxRegistrationNumber currencyCode currentFiscalYearStartDate:date industry lastModifiedDateTime:datetime")
# .../resources/dynamics_customerpaymentjournal, dynamics_customerpayment, dynamics_generalledgerentry
JOURNAL_TYPES = _fields("id:guid code displayName lastModifiedDateTime:datetime balancingAccountId:guid "
                        "balancingAccountNumber")
PAYMENT_TYPES = _fields("id:guid journalId:guid journalDisplayName lineNumber:integer customerId:guid customerNumber "
                        "postingDate:date documentNumber externalDocumentNumber amount:decimal "
                        "appliesToInvoiceId:guid appliesToInvoiceNumber description comment "
                        "lastModifiedDateTime:datetime")
GL_ENTRY_TYPES = _fields("id:guid entryNumber:integer postingDate:date documentNumber documentType accountId:guid "
                         "accountNumber description debitAmount:decimal creditAmount:decimal "
                         "lastModifiedDateTime:datetime")
# .../resources/dynamics_defaultdimension: parentType is " ", "Customer", "Item", "Vendor" or "Employee";
# postingValidation " ", "Code_Mandatory", "Same_Code" or "No_Code".
DEFAULT_DIMENSION_TYPES = _fields("id:guid parentType parentId:guid dimensionId:guid dimensionCode "
                                  "dimensionValueId:guid dimensionValueCode postingValidation")
SUBSCRIPTION_TYPES = _fields("subscriptionId notificationUrl resource clientState expirationDateTime:datetime "
                             "userId:guid lastModifiedDateTime:datetime timestamp:integer")


@dataclass(frozen=True)
class OtherSet:
    """An entity set served beside ENTITIES: its EDM type, properties and key, and the entity set whose rows lead
    to it (a navigation property of the same name: ``customers({id})/defaultDimensions``)."""

    set_name: str
    entity_name: str
    fields: dict[str, str]
    key: str = "id"
    under: str | None = None
    nested_only: bool = False     # reached only through ``under`` (no set of the company's own)


OTHER_SETS: dict[str, OtherSet] = {s.set_name: s for s in (
    OtherSet("companyInformation", "companyInformation", COMPANY_INFORMATION_TYPES),
    OtherSet("customerPaymentJournals", "customerPaymentJournal", JOURNAL_TYPES),
    OtherSet("customerPayments", "customerPayment", PAYMENT_TYPES, under="customerPaymentJournals"),
    OtherSet("generalLedgerEntries", "generalLedgerEntry", GL_ENTRY_TYPES),
    OtherSet("defaultDimensions", "defaultDimension", DEFAULT_DIMENSION_TYPES, under="customers"),
    # .../resources/dynamics_contactinformation: contacts({id})/contactInformation only
    OtherSet("contactInformation", "contactInformation",
             _fields("contactId:guid contactNumber contactName contactType relatedId:guid relatedType"),
             key="contactId", under="contacts", nested_only=True),
)}
# outside companies: .../api/v2.0/subscriptions
SUBSCRIPTIONS = OtherSet("subscriptions", "subscription", SUBSCRIPTION_TYPES, key="subscriptionId")

# salesInvoices.status: drafts are "Draft"/"In Review"; everything else has been posted.
POSTED_INVOICE_STATUSES = frozenset({"Open", "Paid", "Canceled", "Corrective"})
POSTED_INVOICE_SERIES = "PS-INV103001"


# ---------------------------------------------------------------------------------------------------------------
# NAV / BC ODataV4 page web services.
#
# A published page exposes its controls under EDM-mangled names ("No." -> "No", "E-Mail" -> "E_Mail",
# "Balance (LCY)" -> "Balance_LCY"; return-obtain-service-metadata-edmx-document.md). Option values are
# XML-encoded too, so a blank option " " reads "_x0020_". The service name is whatever the administrator
# typed on the Web Services page; the defaults below are the names commonly used for the standard pages.
# ---------------------------------------------------------------------------------------------------------------

NavField = tuple[str, str | Callable[[dict], object]]


def _option(api_field: str) -> Callable[[dict], object]:
    """Option fields: a blank option travels as "_x0020_", spaces inside a value as "_x0020_" too."""
    def read(row: dict) -> object:
        value = str(row.get(api_field) or " ")
        return value.replace(" ", "_x0020_")
    return read


@dataclass(frozen=True)
class PageSpec:
    """A card page published as an ODataV4 web service, backed by one API entity's table."""

    page_id: int
    entity_set: str                      # which table (API entity set) the page shows
    key: tuple[str, ...]                 # EDM key fields, in URL order
    fields: tuple[NavField, ...]         # (NAV property, API field or computed reader)
    lines_part: str | None = None        # navigation property name of the lines subpage
    line_fields: tuple[NavField, ...] = ()
    fixed: dict[str, str] = field(default_factory=dict)   # constant key values, e.g. Document_Type
    posted_only: bool = False            # posted-document pages show posted rows only
    last_date_modified: bool = True      # card pages show "Last Date Modified"; document pages do not

    def writable(self) -> dict[str, str]:
        """NAV property -> API field for the plain (non-computed) controls."""
        return {nav: api for nav, api in self.fields if isinstance(api, str) and api not in ("number",)}


_CARD_ADDRESS: tuple[NavField, ...] = (
    ("Address", "addressLine1"), ("Address_2", "addressLine2"), ("City", "city"), ("County", "state"),
    ("Post_Code", "postalCode"), ("Country_Region_Code", "country"), ("Phone_No", "phoneNumber"),
    ("E_Mail", "email"), ("Home_Page", "website"))
_SALES_LINE_FIELDS: tuple[NavField, ...] = (
    ("Type", "lineType"), ("No", "lineObjectNumber"), ("Description", "description"),
    ("Quantity", "quantity"), ("Unit_of_Measure_Code", "unitOfMeasureCode"), ("Unit_Price", "unitPrice"),
    ("Line_Discount_Amount", "discountAmount"), ("Line_Amount", "amountExcludingTax"))

DEFAULT_PAGES: dict[str, PageSpec] = {
    "Customer": PageSpec(21, "customers", ("No",), (
        ("No", "number"), ("Name", "displayName"), *_CARD_ADDRESS, ("Currency_Code", "currencyCode"),
        ("Salesperson_Code", "salespersonCode"), ("Credit_Limit_LCY", "creditLimit"),
        ("Balance_LCY", "balanceDue"), ("Blocked", _option("blocked")),
        ("Bill_to_Customer_No", "billToCustomerNumber"), ("Customer_Posting_Group", "customerPostingGroup"),
        ("Gen_Bus_Posting_Group", "genBusPostingGroup"), ("Customer_Price_Group", "customerPriceGroup"))),
    "Vendor": PageSpec(26, "vendors", ("No",), (
        ("No", "number"), ("Name", "displayName"), *_CARD_ADDRESS, ("Currency_Code", "currencyCode"),
        ("Balance_LCY", "balance"), ("Blocked", _option("blocked")))),
    "Item": PageSpec(30, "items", ("No",), (
        ("No", "number"), ("Description", "displayName"), ("Type", "type"),
        ("Base_Unit_of_Measure", "baseUnitOfMeasureCode"), ("Unit_Price", "unitPrice"),
        ("Unit_Cost", "unitCost"), ("Inventory", "inventory"), ("Blocked", "blocked"),
        ("Item_Category_Code", "itemCategoryCode"))),
    "Contact": PageSpec(5050, "contacts", ("No",), (
        ("No", "number"), ("Type", "type"), ("Name", "displayName"), ("Company_No", "companyNumber"),
        ("Company_Name", "companyName"), ("Job_Title", "jobTitle"), *_CARD_ADDRESS,
        ("Mobile_Phone_No", "mobilePhoneNumber"))),
    "SalesOrder": PageSpec(42, "salesOrders", ("Document_Type", "No"), (
        ("Document_Type", lambda row: "Order"), ("No", "number"), ("Sell_to_Customer_No", "customerNumber"),
        ("Sell_to_Customer_Name", "customerName"), ("External_Document_No", "externalDocumentNumber"),
        ("Order_Date", "orderDate"), ("Posting_Date", "postingDate"), ("Currency_Code", "currencyCode"),
        ("Status", lambda row: "Open" if row.get("status") == "Draft" else "Released")),
        lines_part="SalesOrderSalesLines", fixed={"Document_Type": "Order"},
        # the Sales Order Subform (page 46) also shows what was shipped and invoiced of each line
        line_fields=_SALES_LINE_FIELDS + (("Quantity_Shipped", "shippedQuantity"),
                                          ("Quantity_Invoiced", "invoicedQuantity")),
        last_date_modified=False),
    "PostedSalesInvoice": PageSpec(132, "salesInvoices", ("No",), (
        ("No", "number"), ("Sell_to_Customer_No", "customerNumber"), ("Sell_to_Customer_Name", "customerName"),
        ("External_Document_No", "externalDocumentNumber"), ("Posting_Date", "postingDate"),
        ("Due_Date", "dueDate"), ("Currency_Code", "currencyCode"), ("Order_No", "orderNumber"),
        ("Amount", "totalAmountExcludingTax"), ("Amount_Including_VAT", "totalAmountIncludingTax"),
        ("Remaining_Amount", "remainingAmount"), ("Closed", lambda row: row.get("status") == "Paid"),
        ("Cancelled", lambda row: row.get("status") == "Canceled")),
        lines_part="PostedSalesInvoiceSalesInvLines", line_fields=_SALES_LINE_FIELDS, posted_only=True,
        last_date_modified=False),
    "PurchaseOrder": PageSpec(50, "purchaseOrders", ("Document_Type", "No"), (
        ("Document_Type", lambda row: "Order"), ("No", "number"), ("Buy_from_Vendor_No", "vendorNumber"),
        ("Buy_from_Vendor_Name", "vendorName"), ("Order_Date", "orderDate"), ("Posting_Date", "postingDate"),
        ("Currency_Code", "currencyCode"),
        ("Status", lambda row: "Open" if row.get("status") == "Draft" else "Released")),
        fixed={"Document_Type": "Order"}, last_date_modified=False),
}

# Page 5054 "Contact Business Relations", published read-only under this service name (Contact No. +
# Business Relation Code key; "No." is the linked customer's/vendor's number).
RELATIONS_SERVICE = "ContactBusinessRelations"
RELATIONS_TYPES = {"Contact_No": "string", "Business_Relation_Code": "string", "Link_to_Table": "string",
                   "No": "string", "Business_Relation_Description": "string", "Contact_Name": "string"}

# Every NAV card page carries "Last Date Modified" (a Date, no time); the sandbox derives it from the row.
LAST_DATE_MODIFIED = "Last_Date_Modified"
