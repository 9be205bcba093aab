"""What nav-zoho and bc-zoho need in Zoho before they run (`mlconnector setup`): the upsert keys as unique fields,
the document modules, the remaining-amount field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlconnector.pairs.dynamics_zoho import REMAINING_FIELD, key
from mlconnector.prerequisites import FIELD, MODULE, Requirement


def zoho_prerequisites(options: Mapping[str, Any], flows: Mapping[str, tuple[str, ...]]) -> tuple[Requirement, ...]:
    """The upsert keys as unique fields, ERP_Number on Sales_Orders and Invoices, and those modules (Professional
    edition and above). ``flows`` names, per kind of record, the pair's flows that need it."""
    needed: list[Requirement] = []
    for what, module in (("account", "Accounts"), ("product", "Products"), ("order", "Sales_Orders"),
                         ("invoice", "Invoices"), ("contact", "Contacts"), ("vendor", "Vendors"),
                         ("purchase_order", "Purchase_Orders")):
        if not flows.get(what):
            continue
        if module in ("Sales_Orders", "Invoices", "Purchase_Orders"):
            needed.append(Requirement("crm", MODULE, module, flows=flows[what]))
        name = key(options, what)
        # Contacts.Email is Zoho's own duplicate-check field: upserts key on it without "unique".
        unique = not (module == "Contacts" and name == "Email")
        data_type = "email" if name == "Email" else "text"
        needed.append(Requirement("crm", FIELD, module, name, data_type, unique=unique, flows=flows[what]))
    remaining = str(options.get(REMAINING_FIELD.name, REMAINING_FIELD.default) or "")
    if flows.get("invoice") and remaining:
        needed.append(Requirement("crm", FIELD, "Invoices", remaining, "currency", flows=flows["invoice"]))
    return tuple(needed)
