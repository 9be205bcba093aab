"""The standard CRM modules every org has: mandatory fields, duplicate-check fields, lookups and line items. An
org's own modules (these plus its custom modules) and fields are its ``OrgSchema`` (schema.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property


@dataclass(frozen=True)
class ModuleSpec:
    """What Zoho enforces for one module on write.

    mandatory      fields that must be present and non-empty on insert (``MANDATORY_NOT_FOUND`` otherwise)
    duplicate_check the system-defined duplicate-check fields upsert uses when none are given
    lookups        lookup field -> module it points to (the ``{"id": ...}`` must exist)
    line_items     the inventory subform key (Quoted_Items, ...) whose rows need an existing Product_Name
    name_field     the field shown as ``name`` in lookups pointing at this module
    bulk_write     whether Bulk Write accepts the module (Zoho lists no inventory modules)
    """

    api_name: str
    id: str
    singular: str
    mandatory: tuple[str, ...]
    duplicate_check: tuple[str, ...]
    name_field: str
    lookups: dict[str, str] = field(default_factory=dict)
    line_items: str | None = None
    bulk_write: bool = True
    editions: frozenset[str] | None = None  # None: every edition has the module
    plural_label: str = ""

    @property
    def label(self) -> str:
        """The module's plural label (Setup shows it): given for custom modules, else from the API name."""
        return self.plural_label or self.api_name.replace("_", " ")

    @cached_property
    def special_fields(self) -> frozenset[str]:
        """The fields a write does more with than store as given: lookups, line items and the owner."""
        return frozenset({*self.lookups, "Owner", *([self.line_items] if self.line_items else [])})


# Invoices, Sales Orders (and Purchase Orders) are not in the Free and Standard editions.
_INVENTORY_EDITIONS = frozenset({"professional", "enterprise", "ultimate", "crmplus", "zohoone"})

MODULES: dict[str, ModuleSpec] = {spec.api_name: spec for spec in (
    ModuleSpec("Accounts", "5725767000000002175", "Account", ("Account_Name",), ("Account_Name",), "Account_Name",
               {"Parent_Account": "Accounts"}),
    ModuleSpec("Contacts", "5725767000000002179", "Contact", ("Last_Name",), ("Email",), "Full_Name",
               {"Account_Name": "Accounts", "Vendor_Name": "Vendors", "Reporting_To": "Contacts"}),
    ModuleSpec("Products", "5725767000000002185", "Product", ("Product_Name",), ("Product_Name",), "Product_Name",
               {"Vendor_Name": "Vendors"}),
    ModuleSpec("Vendors", "5725767000000002189", "Vendor", ("Vendor_Name",), ("Vendor_Name",), "Vendor_Name"),
    ModuleSpec("Deals", "5725767000000002181", "Deal", ("Deal_Name", "Stage"), ("Deal_Name",), "Deal_Name",
               {"Account_Name": "Accounts", "Contact_Name": "Contacts"}),
    ModuleSpec("Quotes", "5725767000000002191", "Quote", ("Subject", "Quoted_Items"), ("Subject",), "Subject",
               {"Account_Name": "Accounts", "Contact_Name": "Contacts", "Deal_Name": "Deals"},
               line_items="Quoted_Items", bulk_write=False),
    ModuleSpec("Sales_Orders", "5725767000000002193", "Sales Order", ("Subject", "Ordered_Items"), ("Subject",),
               "Subject", {"Account_Name": "Accounts", "Contact_Name": "Contacts", "Deal_Name": "Deals",
                           "Quote_Name": "Quotes"},
               line_items="Ordered_Items", bulk_write=False, editions=_INVENTORY_EDITIONS),
    ModuleSpec("Invoices", "5725767000000002195", "Invoice", ("Subject", "Invoiced_Items"), ("Subject",), "Subject",
               {"Account_Name": "Accounts", "Contact_Name": "Contacts", "Sales_Order": "Sales_Orders",
                "Deal_Name": "Deals"},
               line_items="Invoiced_Items", bulk_write=False, editions=_INVENTORY_EDITIONS),
    # Purchase Orders: line items under Purchased_Items, the vendor a lookup (Insert Records API's module list,
    # https://www.zoho.com/crm/developer/docs/api/v8/insert-records.html)
    ModuleSpec("Purchase_Orders", "5725767000000002197", "Purchase Order", ("Subject", "Vendor_Name",
               "Purchased_Items"), ("Subject",), "Subject", {"Vendor_Name": "Vendors", "Contact_Name": "Contacts"},
               line_items="Purchased_Items", bulk_write=False, editions=_INVENTORY_EDITIONS),
)}

# Line-item keys Zoho has spelt both ways over the versions (v2 lower case, v4+ capitalised).
LINE_ITEM_ALIASES = {"quantity": "Quantity", "list_price": "List_Price", "discount": "Discount",
                     "product_name": "Product_Name", "description": "Description"}

# Fields Zoho computes or stamps itself; values clients send for them are ignored.
READ_ONLY_FIELDS = frozenset({"id", "Created_Time", "Modified_Time", "Created_By", "Modified_By", "Full_Name",
                              "Sub_Total", "Grand_Total", "$approval_state"})

EDITIONS = ("free", "standard", "professional", "enterprise", "ultimate", "crmplus", "zohoone")


