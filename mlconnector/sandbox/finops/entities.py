"""The F&O data entities the sandbox serves: OData collection names, keys (with ``dataAreaId``), field types,
enum types, number sequences and what a write must carry. Field names are those of Microsoft's Common Data Model
definitions of the entities (shared/specs/dynamics/fo-cdm); each entity carries a representative subset."""

from __future__ import annotations

from dataclasses import dataclass, field

ENUM_NAMESPACE = "Microsoft.Dynamics.DataEntities"

# Enum type -> its values, as F&O spells them in JSON and in $filter literals.
ENUMS: dict[str, tuple[str, ...]] = {
    "NoYes": ("No", "Yes"),
    "DirPartyType": ("None", "Person", "Organization"),
    "CustVendorBlocked": ("No", "Invoice", "All", "Payment", "Requisition", "Never"),
    "EcoResProductType": ("Item", "Service"),
    "EcoResProductSubtype": ("Product", "ProductMaster"),
    "SalesStatus": ("None", "Backorder", "Delivered", "Invoiced", "Canceled"),
    "LedgerJournalACType": ("Ledger", "Cust", "Vend", "Project", "FixedAssets", "Bank"),
}

# Field types: "string", "decimal", "int", "datetime" (DateTimeOffset; dates travel at T12:00:00Z) or "enum:<Type>".
_CUSTOMER = {
    "CustomerAccount": "string", "PartyType": "enum:DirPartyType", "OrganizationName": "string",
    "PersonFirstName": "string", "PersonLastName": "string", "NameAlias": "string", "CustomerGroupId": "string",
    "SalesCurrencyCode": "string", "AddressStreet": "string", "AddressCity": "string", "AddressState": "string",
    "AddressZipCode": "string", "AddressCountryRegionId": "string", "PrimaryContactEmail": "string",
    "PrimaryContactPhone": "string", "PrimaryContactURL": "string", "CreditLimit": "decimal",
    "OnHoldStatus": "enum:CustVendorBlocked", "IsOneTimeCustomer": "enum:NoYes", "PaymentTerms": "string",
}
_PRODUCT = {
    "ItemNumber": "string", "ProductNumber": "string", "ProductSearchName": "string", "SearchName": "string",
    "ProductType": "enum:EcoResProductType", "ProductSubType": "enum:EcoResProductSubtype",
    "ProductGroupId": "string", "ItemModelGroupId": "string", "SalesPrice": "decimal", "SalesUnitSymbol": "string",
    "InventoryUnitSymbol": "string", "UnitCost": "decimal", "IsPOSRegistrationBlocked": "enum:NoYes",
}
_VENDOR = {
    "VendorAccountNumber": "string", "VendorOrganizationName": "string", "VendorPartyType": "enum:DirPartyType",
    "VendorGroupId": "string", "CurrencyCode": "string", "AddressStreet": "string", "AddressCity": "string",
    "AddressStateId": "string", "AddressZipCode": "string", "AddressCountryRegionId": "string",
    "PrimaryEmailAddress": "string", "PrimaryPhoneNumber": "string", "PrimaryURL": "string",
    "OnHoldStatus": "enum:CustVendorBlocked",
}
_ORDER = {
    "SalesOrderNumber": "string", "SalesOrderStatus": "enum:SalesStatus", "OrderingCustomerAccountNumber": "string",
    "InvoiceCustomerAccountNumber": "string", "CurrencyCode": "string", "CustomersOrderReference": "string",
    "CustomerRequisitionNumber": "string", "SalesOrderName": "string", "RequestedShippingDate": "datetime",
    "OrderTotalAmount": "decimal", "OrderCreationDateTime": "datetime",
}
_ORDER_LINE = {
    "InventoryLotId": "string", "SalesOrderNumber": "string", "ItemNumber": "string",
    "OrderedSalesQuantity": "decimal", "SalesPrice": "decimal", "LineDiscountAmount": "decimal",
    "LineAmount": "decimal", "LineDescription": "string", "SalesUnitSymbol": "string", "CurrencyCode": "string",
    "LineCreationSequenceNumber": "int",
}
_INVOICE = {
    "InvoiceIdentifier": "int", "CustomerAccount": "string", "InvoiceDate": "datetime", "DueDate": "datetime",
    "CurrencyCode": "string", "CustomerReference": "string", "CustomerRequisition": "string", "InvoiceId": "string",
    "IsPosted": "enum:NoYes", "InvoiceAccount": "string",
}
_INVOICE_LINE = {
    "ParentRecId": "int", "LineNumber": "decimal", "Description": "string", "Quantity": "decimal",
    "UnitPrice": "decimal", "TransactionCurrencyAmount": "decimal", "MainAccountDisplayValue": "string",
    "CurrencyCode": "string",
}
# Customer invoice journals (CustInvoiceJournalHeaderEntity / CustInvoiceJournalLineEntity): invoices booked as
# customer transactions once the journal is posted.
_INVOICE_JOURNAL = {"JournalBatchNumber": "string", "JournalName": "string", "Description": "string",
                    "IsPosted": "enum:NoYes"}
_INVOICE_JOURNAL_LINE = {
    "JournalBatchNumber": "string", "LineNumber": "decimal", "Voucher": "string", "InvoiceId": "string",
    "AccountType": "enum:LedgerJournalACType", "CustomerAccountDisplayValue": "string", "InvoiceDate": "datetime",
    "DueDate": "datetime", "DebitAmount": "decimal", "CreditAmount": "decimal", "Currency": "string",
    "TransactionText": "string", "DocumentNumber": "string", "OffsetAccountType": "enum:LedgerJournalACType",
    "OffsetAccountDisplayValue": "string",
}
_LEGAL_ENTITY = {"LegalEntityId": "string", "Name": "string"}


@dataclass(frozen=True)
class EntitySpec:
    """One OData entity set.

    keys       the entity key as the URL takes it (``dataAreaId`` first for company-specific entities)
    numbered   the key field F&O assigns from a number sequence (or RecId) when a create leaves it out
    required   fields a create must carry (besides the keys)
    read_only  fields F&O computes; a write that sets them is refused
    references field -> (entity set, its key field): must exist in the same company on write
    parent     for lines: (header entity set, the header key field, the line field holding it)
    lines_nav  for headers: the navigation property to their lines (``Header(key)/Lines``)
    aot        the AOT name used in F&O's write-error messages
    """

    name: str
    type_name: str
    aot: str
    fields: dict[str, str]
    keys: tuple[str, ...]
    numbered: str | None = None
    required: tuple[str, ...] = ()
    read_only: tuple[str, ...] = ()
    references: dict[str, tuple[str, str]] = field(default_factory=dict)
    parent: tuple[str, str, str] | None = None
    lines_nav: str | None = None
    defaults: dict[str, object] = field(default_factory=dict)

    @property
    def company_specific(self) -> bool:
        return self.keys[0] == "dataAreaId"

    def type_of(self, name: str) -> str | None:
        if name == "dataAreaId" and self.company_specific:
            return "string"
        return self.fields.get(name)


ENTITIES: dict[str, EntitySpec] = {spec.name: spec for spec in (
    EntitySpec("CustomersV3", "CustomerV3", "CustCustomerV3Entity", _CUSTOMER, ("dataAreaId", "CustomerAccount"),
               numbered="CustomerAccount", required=("CustomerGroupId", "SalesCurrencyCode", "PartyType"),
               defaults={"OnHoldStatus": "No", "IsOneTimeCustomer": "No", "CreditLimit": 0}),
    EntitySpec("ReleasedProductsV2", "ReleasedProductV2", "EcoResReleasedProductV2Entity", _PRODUCT,
               ("dataAreaId", "ItemNumber"), required=("ItemNumber", "ProductNumber"),
               defaults={"ProductType": "Item", "ProductSubType": "Product", "IsPOSRegistrationBlocked": "No",
                         "SalesPrice": 0, "UnitCost": 0}),
    EntitySpec("VendorsV2", "VendorV2", "VendVendorV2Entity", _VENDOR, ("dataAreaId", "VendorAccountNumber"),
               numbered="VendorAccountNumber", required=("VendorGroupId", "VendorOrganizationName"),
               defaults={"OnHoldStatus": "No", "VendorPartyType": "Organization"}),
    EntitySpec("SalesOrderHeadersV2", "SalesOrderHeaderV2", "SalesOrderHeaderV2Entity", _ORDER,
               ("dataAreaId", "SalesOrderNumber"), numbered="SalesOrderNumber",
               required=("OrderingCustomerAccountNumber",),
               read_only=("OrderTotalAmount", "OrderCreationDateTime", "SalesOrderStatus"),
               references={"OrderingCustomerAccountNumber": ("CustomersV3", "CustomerAccount"),
                           "InvoiceCustomerAccountNumber": ("CustomersV3", "CustomerAccount")},
               lines_nav="SalesOrderLines",
               defaults={"SalesOrderStatus": "Backorder", "OrderTotalAmount": 0}),
    EntitySpec("SalesOrderLines", "SalesOrderLine", "SalesOrderLineV2Entity", _ORDER_LINE,
               ("dataAreaId", "InventoryLotId"), numbered="InventoryLotId",
               required=("SalesOrderNumber", "ItemNumber", "OrderedSalesQuantity"), read_only=("LineAmount",),
               references={"SalesOrderNumber": ("SalesOrderHeadersV2", "SalesOrderNumber"),
                           "ItemNumber": ("ReleasedProductsV2", "ItemNumber")},
               parent=("SalesOrderHeadersV2", "SalesOrderNumber", "SalesOrderNumber"),
               defaults={"LineDiscountAmount": 0, "LineCreationSequenceNumber": 0}),
    EntitySpec("FreeTextInvoiceHeaders", "FreeTextInvoiceHeader", "FreeTextInvoiceHeaderEntity", _INVOICE,
               ("dataAreaId", "InvoiceIdentifier"), numbered="InvoiceIdentifier", required=("CustomerAccount",),
               read_only=("InvoiceId", "IsPosted"),
               references={"CustomerAccount": ("CustomersV3", "CustomerAccount")},
               lines_nav="FreeTextInvoiceLines",
               defaults={"IsPosted": "No", "InvoiceId": ""}),
    EntitySpec("FreeTextInvoiceLines", "FreeTextInvoiceLine", "FreeTextInvoiceLineEntity", _INVOICE_LINE,
               ("dataAreaId", "ParentRecId", "LineNumber"),
               required=("ParentRecId", "LineNumber", "MainAccountDisplayValue"),
               read_only=("TransactionCurrencyAmount",),
               references={"ParentRecId": ("FreeTextInvoiceHeaders", "InvoiceIdentifier")},
               parent=("FreeTextInvoiceHeaders", "InvoiceIdentifier", "ParentRecId")),
    EntitySpec("CustomerInvoiceJournalHeaders", "CustomerInvoiceJournalHeader", "CustInvoiceJournalHeaderEntity",
               _INVOICE_JOURNAL, ("dataAreaId", "JournalBatchNumber"), numbered="JournalBatchNumber",
               required=("JournalName",), read_only=("IsPosted",), lines_nav="CustomerInvoiceJournalLines",
               defaults={"IsPosted": "No"}),
    EntitySpec("CustomerInvoiceJournalLines", "CustomerInvoiceJournalLine", "CustInvoiceJournalLineEntity",
               _INVOICE_JOURNAL_LINE, ("dataAreaId", "JournalBatchNumber", "LineNumber"),
               required=("JournalBatchNumber", "LineNumber", "CustomerAccountDisplayValue", "InvoiceId"),
               references={"JournalBatchNumber": ("CustomerInvoiceJournalHeaders", "JournalBatchNumber"),
                           "CustomerAccountDisplayValue": ("CustomersV3", "CustomerAccount")},
               parent=("CustomerInvoiceJournalHeaders", "JournalBatchNumber", "JournalBatchNumber"),
               defaults={"AccountType": "Cust", "OffsetAccountType": "Ledger", "DebitAmount": 0,
                         "CreditAmount": 0}),
    EntitySpec("LegalEntities", "LegalEntity", "OMLegalEntity", _LEGAL_ENTITY, ("LegalEntityId",)),
)}
