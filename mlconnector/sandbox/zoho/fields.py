"""Field metadata of the org's modules: the standard fields Zoho ships, the custom fields an admin adds, and the
JSON the Fields Metadata API answers with.

Data types, JSON types and lengths follow Zoho's "Field Types: Data Types and Length Limits" and the Fields
Metadata API (https://www.zoho.com/crm/developer/docs/api/v8/field-meta.html); the standard fields of each module
are the ones Zoho's v8 field-meta examples and the module pages list, as far as the pairs and tests use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

# data_type -> (json_type, default length, ui_type) as the Fields Metadata API reports them.
DATA_TYPES: dict[str, tuple[str, int, int]] = {
    "text": ("string", 255, 1), "textarea": ("string", 32000, 3), "email": ("string", 100, 25),
    "phone": ("string", 30, 33), "website": ("string", 255, 21), "integer": ("integer", 9, 32),
    "bigint": ("string", 18, 36), "double": ("double", 16, 38), "currency": ("double", 16, 36),
    "boolean": ("boolean", 5, 301), "date": ("string", 20, 24), "datetime": ("string", 120, 333),
    "picklist": ("string", 120, 2), "multiselectpicklist": ("jsonarray", 2000, 100), "lookup": ("jsonobject", 120, 4),
    "ownerlookup": ("jsonobject", 120, 8), "subform": ("jsonarray", 120, 2002), "autonumber": ("string", 255, 1),
}
# The data types the Create Custom Field API takes (v8 create-custom-field page), with their maximum lengths.
CREATABLE = {"text": 255, "textarea": 32000, "email": 100, "phone": 30, "website": 255, "integer": 9,
             "bigint": 18, "double": 16, "currency": 16, "boolean": 5, "date": 20, "datetime": 120,
             "picklist": 120, "lookup": 120}
NUMERIC = frozenset({"integer", "double", "currency"})
TEXTUAL = frozenset({"text", "email", "phone", "website", "textarea", "picklist", "autonumber", "bigint"})

# Standard fields every module has; Zoho stamps them itself.
SYSTEM = (("Owner", "Owner", "ownerlookup", 0), ("Created_By", "Created By", "ownerlookup", 0),
          ("Modified_By", "Modified By", "ownerlookup", 0), ("Created_Time", "Created Time", "datetime", 0),
          ("Modified_Time", "Modified Time", "datetime", 0), ("Tag", "Tag", "text", 0))
READ_ONLY = frozenset({"Created_By", "Modified_By", "Created_Time", "Modified_Time", "Full_Name", "Sub_Total",
                       "Grand_Total"})


@dataclass(frozen=True)
class Field:
    """One field of a module as Zoho describes it (``length`` 0: the data type's default)."""

    api_name: str
    label: str
    data_type: str
    length: int = 0
    custom: bool = False
    unique: bool = False
    mandatory: bool = False
    lookup: str | None = None        # the module a lookup points to
    id: str = ""

    @property
    def max_length(self) -> int:
        return self.length or DATA_TYPES[self.data_type][1]

    @property
    def json_type(self) -> str:
        return DATA_TYPES[self.data_type][0]

    @property
    def read_only(self) -> bool:
        return self.api_name in READ_ONLY

    def with_id(self, field_id: str) -> "Field":
        return replace(self, id=field_id)


def _fields(rows: tuple[tuple[Any, ...], ...]) -> tuple[Field, ...]:
    """Rows of (api_name, label, data_type, length[, lookup module]) -> Fields."""
    made = []
    for row in rows:
        api_name, label, data_type, length = row[:4]
        made.append(Field(api_name, label, data_type, length, lookup=row[4] if len(row) > 4 else None))
    return tuple(made)


_ADDRESS = lambda prefix, zip_name="Code": (  # noqa: E731 - a table helper
    (f"{prefix}_Street", f"{prefix} Street", "text", 250), (f"{prefix}_City", f"{prefix} City", "text", 30),
    (f"{prefix}_State", f"{prefix} State", "text", 30), (f"{prefix}_{zip_name}", f"{prefix} {zip_name}", "text", 30),
    (f"{prefix}_Country", f"{prefix} Country", "text", 30))

_DOCUMENT = (("Subject", "Subject", "text", 250), ("Account_Name", "Account Name", "lookup", 0, "Accounts"),
             ("Contact_Name", "Contact Name", "lookup", 0, "Contacts"), ("Deal_Name", "Deal Name", "lookup", 0, "Deals"),
             ("Status", "Status", "picklist", 0), ("Due_Date", "Due Date", "date", 0),
             ("Sub_Total", "Sub Total", "currency", 0), ("Discount", "Discount", "currency", 0),
             ("Tax", "Tax", "currency", 0), ("Adjustment", "Adjustment", "currency", 0),
             ("Grand_Total", "Grand Total", "currency", 0), ("Description", "Description", "textarea", 0),
             ("Terms_and_Conditions", "Terms and Conditions", "textarea", 0),
             *_ADDRESS("Billing"), *_ADDRESS("Shipping"))

STANDARD_FIELDS: dict[str, tuple[Field, ...]] = {
    "Accounts": _fields((
        ("Account_Name", "Account Name", "text", 200), ("Account_Number", "Account Number", "text", 40),
        ("Account_Site", "Account Site", "text", 30), ("Parent_Account", "Parent Account", "lookup", 0, "Accounts"),
        ("Account_Type", "Account Type", "picklist", 0), ("Industry", "Industry", "picklist", 0),
        ("Annual_Revenue", "Annual Revenue", "currency", 0), ("Rating", "Rating", "picklist", 0),
        ("Phone", "Phone", "phone", 30), ("Fax", "Fax", "phone", 30), ("Website", "Website", "website", 255),
        ("Ticker_Symbol", "Ticker Symbol", "text", 30), ("Ownership", "Ownership", "picklist", 0),
        ("Employees", "Employees", "integer", 9), ("SIC_Code", "SIC Code", "integer", 9),
        ("Description", "Description", "textarea", 0), *_ADDRESS("Billing"), *_ADDRESS("Shipping"))),
    "Contacts": _fields((
        ("Salutation", "Salutation", "picklist", 0), ("First_Name", "First Name", "text", 40),
        ("Last_Name", "Last Name", "text", 80), ("Full_Name", "Contact Name", "text", 120),
        ("Email", "Email", "email", 100), ("Secondary_Email", "Secondary Email", "email", 100),
        ("Phone", "Phone", "phone", 30), ("Mobile", "Mobile", "phone", 30), ("Home_Phone", "Home Phone", "phone", 30),
        ("Other_Phone", "Other Phone", "phone", 30), ("Fax", "Fax", "phone", 30), ("Title", "Title", "text", 100),
        ("Department", "Department", "text", 30), ("Account_Name", "Account Name", "lookup", 0, "Accounts"),
        ("Vendor_Name", "Vendor Name", "lookup", 0, "Vendors"),
        ("Reporting_To", "Reporting To", "lookup", 0, "Contacts"), ("Lead_Source", "Lead Source", "picklist", 0),
        ("Date_of_Birth", "Date of Birth", "date", 0), ("Email_Opt_Out", "Email Opt Out", "boolean", 0),
        ("Description", "Description", "textarea", 0), *_ADDRESS("Mailing", "Zip"), *_ADDRESS("Other", "Zip"))),
    "Products": _fields((
        ("Product_Name", "Product Name", "text", 120), ("Product_Code", "Product Code", "text", 40),
        ("Product_Active", "Product Active", "boolean", 0), ("Product_Category", "Product Category", "picklist", 0),
        ("Manufacturer", "Manufacturer", "picklist", 0), ("Vendor_Name", "Vendor Name", "lookup", 0, "Vendors"),
        ("Unit_Price", "Unit Price", "currency", 0), ("Commission_Rate", "Commission Rate", "currency", 0),
        ("Taxable", "Taxable", "boolean", 0), ("Usage_Unit", "Usage Unit", "picklist", 0),
        ("Qty_Ordered", "Qty Ordered", "double", 0), ("Qty_in_Stock", "Qty in Stock", "double", 0),
        ("Reorder_Level", "Reorder Level", "double", 0), ("Qty_in_Demand", "Qty in Demand", "double", 0),
        ("Sales_Start_Date", "Sales Start Date", "date", 0), ("Sales_End_Date", "Sales End Date", "date", 0),
        ("Description", "Description", "textarea", 0))),
    "Vendors": _fields((
        ("Vendor_Name", "Vendor Name", "text", 120), ("Phone", "Phone", "phone", 30), ("Email", "Email", "email", 100),
        ("Website", "Website", "website", 255), ("GL_Account", "GL Account", "picklist", 0),
        ("Category", "Category", "text", 120), ("Street", "Street", "text", 250), ("City", "City", "text", 30),
        ("State", "State", "text", 30), ("Zip_Code", "Zip Code", "text", 30), ("Country", "Country", "text", 30),
        ("Description", "Description", "textarea", 0))),
    "Deals": _fields((
        ("Deal_Name", "Deal Name", "text", 120), ("Amount", "Amount", "currency", 0),
        ("Closing_Date", "Closing Date", "date", 0), ("Account_Name", "Account Name", "lookup", 0, "Accounts"),
        ("Contact_Name", "Contact Name", "lookup", 0, "Contacts"), ("Stage", "Stage", "picklist", 0),
        ("Type", "Type", "picklist", 0), ("Probability", "Probability (%)", "integer", 3),
        ("Expected_Revenue", "Expected Revenue", "currency", 0), ("Next_Step", "Next Step", "text", 100),
        ("Lead_Source", "Lead Source", "picklist", 0), ("Pipeline", "Pipeline", "picklist", 0),
        ("Description", "Description", "textarea", 0))),
    "Quotes": _fields((*_DOCUMENT, ("Quote_Stage", "Quote Stage", "picklist", 0),
                       ("Valid_Till", "Valid Till", "date", 0), ("Quoted_Items", "Quoted Items", "subform", 0))),
    "Sales_Orders": _fields((*_DOCUMENT, ("SO_Number", "SO Number", "text", 40),
                             ("Customer_No", "Customer No.", "text", 40),
                             ("Quote_Name", "Quote Name", "lookup", 0, "Quotes"),
                             ("Ordered_Items", "Ordered Items", "subform", 0))),
    "Invoices": _fields((*_DOCUMENT, ("Invoice_Number", "Invoice Number", "text", 40),
                         ("Invoice_Date", "Invoice Date", "date", 0),
                         ("Sales_Order", "Sales Order", "lookup", 0, "Sales_Orders"),
                         ("Invoiced_Items", "Invoiced Items", "subform", 0))),
    "Purchase_Orders": _fields((
        ("Subject", "Subject", "text", 250), ("Vendor_Name", "Vendor Name", "lookup", 0, "Vendors"),
        ("Contact_Name", "Contact Name", "lookup", 0, "Contacts"), ("PO_Number", "PO Number", "text", 40),
        ("PO_Date", "PO Date", "date", 0), ("Due_Date", "Due Date", "date", 0), ("Status", "Status", "picklist", 0),
        ("Sub_Total", "Sub Total", "currency", 0), ("Discount", "Discount", "currency", 0),
        ("Tax", "Tax", "currency", 0), ("Adjustment", "Adjustment", "currency", 0),
        ("Grand_Total", "Grand Total", "currency", 0), ("Description", "Description", "textarea", 0),
        ("Purchased_Items", "Purchased Items", "subform", 0))),
}

# Custom modules get a Name field (mandatory, the record's name) and the system fields.
CUSTOM_MODULE_FIELDS = (Field("Name", "Name", "text", 120, mandatory=True), Field("Email", "Email", "email", 100),
                        Field("Secondary_Email", "Secondary Email", "email", 100),
                        Field("Email_Opt_Out", "Email Opt Out", "boolean"))


@dataclass(frozen=True)
class CustomField:
    """A custom field an admin adds for the pairs (README's set-up), as the default org has it."""

    module: str
    api_name: str
    data_type: str = "text"
    length: int = 0
    lookup: str | None = None


# The custom fields the pairs use, by module: the default (not --bare) org has them all. Uniqueness is set by the
# sandbox's starters (``mark_unique``), as an admin would tick "Do not allow duplicate values".
PAIR_CUSTOM_FIELDS = (
    CustomField("Accounts", "ERP_Number"), CustomField("Accounts", "Credit_Limit", "currency"),
    CustomField("Accounts", "Balance", "currency"), CustomField("Accounts", "Outstanding_Payables", "currency"),
    *(CustomField("Accounts", name) for name in ("GL_Cash_Account", "GL_Receivables_Account", "GL_Sales_Account",
                                                 "GL_Payables_Account", "GL_Purchases_Account")),
    CustomField("Contacts", "GP_Contact_Id"), CustomField("Vendors", "ERP_Number"),
    CustomField("Vendors", "GP_Vendor_Id"),
    CustomField("Sales_Orders", "ERP_Number"), CustomField("Invoices", "ERP_Number"),
    CustomField("Invoices", "Remaining_Amount", "currency"), CustomField("Purchase_Orders", "ERP_Number"),
    CustomField("GL_Accounts", "GL_Account_Number"), CustomField("GL_Accounts", "Description", "textarea"),
    CustomField("GL_Accounts", "Account_Type"), CustomField("GL_Accounts", "Active", "boolean"),
    CustomField("GL_Accounts", "Alias"),
    CustomField("GL_Journal_Entries", "GL_Journal_Id"), CustomField("GL_Journal_Entries", "Reference"),
    CustomField("GL_Journal_Entries", "Transaction_Date", "date"), CustomField("GL_Journal_Entries", "Batch"),
    CustomField("GL_Journal_Entries", "State"), CustomField("GL_Journal_Entries", "Total", "currency"),
    CustomField("GL_Journal_Entries", "GL_Accounts"), CustomField("GL_Journal_Entries", "Lines", "textarea"),
    CustomField("Deals", "GL_Account", "lookup", lookup="GL_Accounts"),
)
# The custom modules gp-zoho uses: (api name, plural label, singular label).
PAIR_CUSTOM_MODULES = (("GL_Accounts", "GL Accounts", "GL Account"),
                       ("GL_Journal_Entries", "GL Journal Entries", "GL Journal Entry"))


def api_name_for(label: str) -> str:
    """The API name Zoho derives from a new field's label: words joined by underscores, other characters dropped."""
    words = ["".join(ch for ch in word if ch.isalnum()) for word in label.replace("_", " ").split()]
    return "_".join(w for w in words if w)


def label_for(api_name: str) -> str:
    return api_name.replace("_", " ")


@dataclass
class FieldJson:
    """Renders a Field as one item of the Fields Metadata API's ``fields`` array (every key the v8 OAS requires;
    Zoho answers null or {} for the properties a field does not use, as its examples do)."""

    profiles: list[dict[str, Any]] = field(default_factory=lambda: [
        {"permission_type": "read_write", "name": "Administrator", "id": "5725767000000026011"}])

    def render(self, f: Field, module_id: str, module_name: str, lookup_ids: dict[str, str]) -> dict[str, Any]:
        json_type, _, ui_type = DATA_TYPES[f.data_type]
        lookup: dict[str, Any] = {}
        if f.lookup:
            lookup = {"display_label": label_for(f.lookup), "api_name": f.api_name,
                      "module": {"api_name": f.lookup, "id": lookup_ids.get(f.lookup, "")}, "id": f.id}
        associated = None
        if f.data_type == "subform":
            associated = {"api_name": f.api_name, "id": f.id, "module": f.api_name}
        editable = not f.read_only and f.data_type != "autonumber"
        return {
            "associated_module": associated, "webhook": True,
            "operation_type": {"web_update": editable, "api_create": editable, "web_create": editable,
                               "api_update": editable},
            "colour_code_enabled_by_system": False, "field_label": f.label, "tooltip": None,
            "type": "used", "field_read_only": f.read_only,
            "customizable_properties": ["mandatory", "unique", "removal"] if f.custom else [],
            "display_label": f.label, "read_only": f.read_only, "association_details": None,
            "businesscard_supported": False, "multi_module_lookup": {}, "id": f.id, "created_time": None,
            "filterable": f.data_type not in ("subform", "textarea"), "visible": True,
            "profiles": self.profiles, "view_type": {"view": True, "edit": editable, "quick_create": False,
                                                    "create": editable},
            "separator": False, "searchable": f.data_type in TEXTUAL, "external": None,
            "api_name": f.api_name, "unique": {"casesensitive": "false"} if f.unique else {},
            "enable_colour_code": False, "pick_list_values": [], "system_mandatory": f.mandatory,
            "private": None, "virtual_field": False, "json_type": json_type, "crypt": None,
            "created_source": "crm_ui" if f.custom else "default", "display_type": -1, "ui_type": ui_type,
            "modified_time": None, "email_parser": {"fields_update_supported": False,
                                                    "record_operations_supported": False},
            "currency": {}, "custom_field": f.custom, "lookup": lookup, "hipaa_compliance": None,
            "convert_mapping": {"Contacts": None, "Deals": None, "Accounts": None}, "rollup_summary": {},
            "length": f.max_length, "column_name": f.api_name.upper(), "display_field": f.api_name == "Name",
            "pick_list_values_sorted_lexically": False, "sortable": f.data_type not in ("subform", "textarea"),
            "layout_associations": [{"api_name": "Standard__s", "name": "Standard", "id": module_id}],
            "history_tracking": None, "data_type": f.data_type, "formula": {}, "additional_column": None,
            "hipaa_compliance_enabled": False,
            "decimal_place": 2 if f.data_type in ("currency", "double") else None,
            "mass_update": False, "multiselectlookup": {}, "auto_number": {},
            "quick_sequence_number": "0", "refer_from_field": None, "show_type": 7, "category": 0,
            "sharing_properties": None, "file_upolad_optionlist": [], "multiuserlookup": None, "autonumber": None,
            "sub_module": None, "subform": None, "allowed_modules": [], "static_field": False,
            "_update_existing_records": False, "number_separator": False, "textarea": None,
            "blueprint_supported": False, "available_in_user_layout": True, "mass_update_supported": False,
            "common.picklist": None, "hipaa_compliance_supported": False, "field_module": module_name,
        } | ({"parent_field": None} if f.data_type != "subform" else {})
