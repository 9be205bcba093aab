"""GP's values and records: dates, amounts, keys and texts as zeep and SBA give them, and the records the reads
hand out (customers, vendors and their contacts, journal entries, sales orders), whichever transport read them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from mlconnector.clock import parse_utc
from mlconnector.systems.base import Record


def _money(value: Any) -> float | None:
    if isinstance(value, Mapping):
        value = value.get("Value")
    if value is None or value == "":
        return None
    return float(value)


def _id(value: Any, name: str = "Id") -> str | None:
    if isinstance(value, Mapping):
        found = value.get(name)
        return str(found) if found not in (None, "") else None
    if name == "Id" and isinstance(value, (str, int)) and value != "":
        return str(value)  # a key given as its bare value (an SBA body mapped to a plain "CustomerId")
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _address(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    raw = raw or {}
    phone = raw.get("Phone1")
    return {"id": _id(raw.get("Key")), "contact": _text(raw.get("ContactPerson")), "line1": _text(raw.get("Line1")),
            "line2": _text(raw.get("Line2")), "line3": _text(raw.get("Line3")), "city": _text(raw.get("City")),
            "state": _text(raw.get("State")), "postalCode": _text(raw.get("PostalCode")),
            "country": _text(raw.get("CountryRegion")),
            "phone": _text(phone.get("Value") if isinstance(phone, Mapping) else phone)}


def _items(holder: Any, name: str) -> list[Any]:
    """An array property as zeep gives it: a list, or a wrapper with the item name, or None."""
    if holder is None:
        return []
    if isinstance(holder, list):
        return holder
    if isinstance(holder, Mapping):
        inner = holder.get(name)
        return inner if isinstance(inner, list) else [inner] if inner is not None else []
    return []


# The fields of each entity's records. They are made here from GP's fixed objects (those of the Web Services and
# of the SBA alike), so a mapping can read these and no others: the list needs no call. (GP's user-defined fields
# are not read.)
_PARTY = ("id", "number", "name", "shortName", "isActive", "isOnHold", "classId", "currency", "comment", "phone",
          "addresses", "defaultAddress", "createdDate", "modifiedDate")
_ADDRESS_FIELDS = ("id", "contact", "line1", "line2", "line3", "city", "state", "postalCode", "country", "phone")
RECORD_FIELDS: dict[str, frozenset[str]] = {
    "customers": frozenset(_PARTY + ("statementName", "billingAddress", "shippingAddress", "creditLimitType",
                                     "creditLimit", "balance", "postingAccounts")),
    "vendors": frozenset(_PARTY + ("checkName", "purchaseAddress", "remitToAddress", "postingAccounts",
                                   "outstandingPayables")),
    "vendorContacts": frozenset(_ADDRESS_FIELDS + ("addressId", "vendorId", "vendorName", "name")),
    "glTransactions": frozenset(("id", "journalId", "reference", "batch", "state", "transactionDate", "lines",
                                 "total", "modifiedDate")),
    "salesOrders": frozenset(("id", "Id", "customerId", "customerPONumber", "lines", "total")),
    "salesQuotes": frozenset(("id", "Id", "customerId", "customerPONumber", "lines", "total")),
}

# entity -> (create operation, its parameter, read operation, line type, document type): sales orders and quotes
# (https://learn.microsoft.com/previous-versions/dynamicsgp/developer/cc508629(v=msdn.10): CreateSalesQuote)
DOCUMENTS = {"salesOrders": ("CreateSalesOrder", "salesOrder", "GetSalesOrderByKey", "SalesOrderLine", "Order"),
             "salesQuotes": ("CreateSalesQuote", "salesQuote", "GetSalesQuoteByKey", "SalesQuoteLine", "Quote")}


# A card's posting accounts (``<name>GLAccountKey`` on GP's Customer and Vendor) -> the key in our records
# (https://learn.microsoft.com/previous-versions/dynamicsgp/developer/cc533830(v=msdn.10): Vendor)
CUSTOMER_POSTING = {"Cash": "cash", "AccountsReceivable": "receivables", "Sales": "sales"}
VENDOR_POSTING = {"Cash": "cash", "AccountsPayable": "payables", "Purchases": "purchases"}
# Payables document types that lower what is owed to the vendor (PayablesDocumentType); the others raise it.
PAYABLES_CREDIT_TYPES = ("Return", "CreditMemo", "Payment")


def posting_accounts(raw: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, str | None]:
    return {ours: _id(raw.get(f"{name}GLAccountKey")) for name, ours in names.items()}


def outstanding_payables(summaries: list[Any]) -> float:
    """What the company owes a vendor: its posted, open payables documents (PayablesTransactionState Open: posted,
    not yet moved to history), debit documents less credit documents, at their document amounts."""
    total = 0.0
    for row in summaries:
        if isinstance(row, Mapping) and _text(row.get("TransactionState")) == "Open":
            amount = _money(row.get("DocumentAmount")) or 0.0
            total += -amount if _text(row.get("Type")) in PAYABLES_CREDIT_TYPES else amount
    return round(total, 2)


class Shapes:
    """The records of one GP system, made from GP's objects (Web Services) or SBA's bodies renamed to them."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _party(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        held = raw.get("Addresses")
        found = held if isinstance(held, list) else _items(held, "CustomerAddress") + _items(held, "VendorAddress")
        addresses = [_address(a) for a in found if isinstance(a, Mapping)]
        by_id = {a["id"]: a for a in addresses}

        def pick(key: str) -> dict[str, Any] | None:
            return by_id.get(_id(raw.get(key)) or "")

        default = pick("DefaultAddressKey") or (addresses[0] if addresses else {})
        number = str(_id(raw.get("Key")))
        return {"id": number, "number": number, "name": _text(raw.get("Name")), "shortName": _text(raw.get("ShortName")),
                "isActive": bool(raw.get("IsActive", True)), "isOnHold": bool(raw.get("IsOnHold", False)),
                "classId": _id(raw.get("ClassKey")), "currency": _text(raw.get("CurrencyKey")),
                "comment": _text(raw.get("Comment1")), "phone": default.get("phone") if default else None,
                "addresses": addresses, "defaultAddress": default or None,
                "createdDate": parse_utc(raw.get("CreatedDate")), "modifiedDate": parse_utc(raw.get("ModifiedDate"))}

    def customer(self, raw: Mapping[str, Any], stamp: datetime | None) -> Record:
        data = self._party(raw)
        by_id = {a["id"]: a for a in data["addresses"]}
        credit = raw.get("CreditLimit") if isinstance(raw.get("CreditLimit"), Mapping) else {}
        data.update({"statementName": _text(raw.get("StatementName")),
                     "billingAddress": by_id.get(_id(raw.get("BillToAddressKey")) or "") or data["defaultAddress"],
                     "shippingAddress": by_id.get(_id(raw.get("ShipToAddressKey")) or "") or data["defaultAddress"],
                     "creditLimitType": _text((credit or {}).get("Item")),
                     "creditLimit": _money((credit or {}).get("Amount")), "balance": _money(raw.get("Balance")),
                     "postingAccounts": posting_accounts(raw, CUSTOMER_POSTING)})
        return Record(self.name, "customers", data["id"], stamp, data)

    def vendor(self, raw: Mapping[str, Any], stamp: datetime | None) -> Record:
        data = self._party(raw)
        by_id = {a["id"]: a for a in data["addresses"]}
        data.update({"checkName": _text(raw.get("CheckName")),
                     "purchaseAddress": by_id.get(_id(raw.get("PurchaseAddressKey")) or "") or data["defaultAddress"],
                     "remitToAddress": by_id.get(_id(raw.get("RemitToAddressKey")) or "") or data["defaultAddress"],
                     "postingAccounts": posting_accounts(raw, VENDOR_POSTING)})
        return Record(self.name, "vendors", data["id"], stamp, data)

    def vendor_contacts(self, vendor: Record) -> Iterator[Record]:
        for address in vendor.get("addresses") or []:
            if address.get("contact"):
                contact_id = f"{vendor.id}/{address['id']}"
                yield Record(self.name, "vendorContacts", contact_id, vendor.modified,
                             {**address, "id": contact_id, "addressId": address["id"], "vendorId": vendor.id,
                              "vendorName": vendor.get("name"), "name": address["contact"]})

    def gl_transaction(self, raw: Mapping[str, Any], stamp: datetime | None) -> Record:
        lines = []
        for line in _items(raw.get("Lines"), "GLTransactionLine"):
            if isinstance(line, Mapping):
                lines.append({"sequence": line.get("SequenceNumber"), "account": _id(line.get("GLAccountKey")),
                              "debit": _money(line.get("DebitAmount")) or 0.0,
                              "credit": _money(line.get("CreditAmount")) or 0.0,
                              "description": _text(line.get("Description"))})
        journal = str(_id(raw.get("Key"), "JournalId"))
        transaction_date = parse_utc(raw.get("TransactionDate"))
        data = {"id": journal, "journalId": journal, "reference": _text(raw.get("Reference")),
                "batch": _id(raw.get("BatchKey")), "state": _text(raw.get("TransactionState")),
                "transactionDate": transaction_date.date().isoformat() if transaction_date else None,
                "lines": lines, "total": round(sum(l["debit"] for l in lines), 2),
                "modifiedDate": parse_utc(raw.get("ModifiedDate"))}
        return Record(self.name, "glTransactions", journal, stamp, data)

    def sales_order(self, raw: Mapping[str, Any], entity: str = "salesOrders") -> Record:
        number = str(_id(raw.get("Key")))
        lines = [{"item": _id(l.get("ItemKey")), "description": _text(l.get("ItemDescription")),
                  "quantity": _money(l.get("Quantity")), "unitPrice": _money(l.get("UnitPrice"))}
                 for l in _items(raw.get("Lines"), DOCUMENTS[entity][3]) if isinstance(l, Mapping)]
        data = {"id": number, "Id": number, "customerId": _id(raw.get("CustomerKey")),
                "customerPONumber": _text(raw.get("CustomerPONumber")), "lines": lines,
                "total": _money(raw.get("TotalAmount"))}
        return Record(self.name, entity, number, parse_utc(raw.get("ModifiedDate")), data)
