"""One emulated GP server: its companies and their records, the domain accounts mapped to GP users, policies,
the exception log, and what the service does with each operation."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, AsyncIterator

from mlconnector.sandbox.common import Faults, SandboxClock

from .auth import WindowsAuth
from .schema import CUSTOMER_POSTING, VENDOR_POSTING

SAMPLE_COMPANY = -1  # the sample company's id in Microsoft's examples (Fabrikam, Inc.)
SYSTEM_MESSAGE = "An unexpected error has occurred. Contact your system administrator."


class SoapFault(Exception):
    """A fault the service answers with (HTTP 500): ``kind`` is validation, system or access."""

    def __init__(self, kind: str, message: str, log_id: str | None = None, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.log_id = log_id
        self.errors = errors or []


class Busy(Exception):
    """More calls in flight than the server takes (IIS answers 503)."""


@dataclass
class Call:
    """One request as the sandbox saw it."""

    operation: str
    principal: str = ""
    status: int = 0
    company: int | None = None


@dataclass
class GPUser:
    account: str                    # DOMAIN\user as IIS authenticated it (upper case)
    gp_user: str | None             # the GP user it maps to; None: authenticated but not set up in GP
    companies: set[int] | None = None  # None: every company


@dataclass
class Company:
    id: int
    name: str
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    vendors: dict[str, dict[str, Any]] = field(default_factory=dict)
    gl_accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    gl_transactions: dict[int, dict[str, Any]] = field(default_factory=dict)
    sales_orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    sales_quotes: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    payables: dict[str, dict[str, Any]] = field(default_factory=dict)  # posted and work payables documents


def parse_datetime(value: Any, what: str) -> datetime:
    """A criteria date-time; GP wants date and time, taken as UTC."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value or "").strip()
        if "T" not in text:
            raise SoapFault("validation", f"{what}: both the date and time portions must be specified",
                            errors=[f"{what} must carry a date and a time (UTC)"])
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise SoapFault("validation", f"{what}: {text!r} is not a date-time", errors=[f"bad {what}"]) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _like(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("%")).replace("_", ".") + "$", re.I)


class GPSandbox:
    """State and behaviour of one GP Web Services server."""

    def __init__(self, clock: SandboxClock | None = None, faults: Faults | None = None, *,
                 delay: float = 0.0, max_concurrent: int | None = 4, overflow: str = "reject",
                 modified_precision: str = "date", schemes: tuple[str, ...] = ("Negotiate", "NTLM"),
                 allow_basic: bool = False, server_zone: tzinfo = timezone.utc) -> None:
        if overflow not in ("reject", "queue"):
            raise ValueError("overflow must be 'reject' or 'queue'")
        if modified_precision not in ("date", "datetime"):
            raise ValueError("modified_precision must be 'date' or 'datetime'")
        self.clock = clock or SandboxClock()
        self.faults = faults or Faults()
        self.delay = delay
        self.max_concurrent = max_concurrent
        self.overflow = overflow
        self.modified_precision = modified_precision
        self.server_zone = server_zone
        self.auth = WindowsAuth(schemes, allow_basic)
        self.users: dict[str, GPUser] = {}
        self.companies: dict[int, Company] = {}
        self.policies: dict[str, str] = {}
        self.exception_log: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.counts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.rejected = 0
        self._slots: asyncio.Semaphore | None = None

    # -- set-up helpers ------------------------------------------------------------------------------------------
    def add_user(self, account: str, password: str, gp_user: str | None = "sa",
                 companies: set[int] | None = None) -> None:
        """A domain account (``DOMAIN\\user``) IIS accepts, mapped to a GP user (None: not mapped)."""
        self.auth.set_account(account, password)
        self.users[account.upper()] = GPUser(account.upper(), gp_user, companies)

    def add_company(self, company_id: int = SAMPLE_COMPANY, name: str = "Fabrikam, Inc.") -> Company:
        self.companies.setdefault(company_id, Company(company_id, name))
        return self.companies[company_id]

    def company(self, company_id: int = SAMPLE_COMPANY) -> Company:
        return self.companies[company_id]

    def stamp(self, moment: datetime | None = None) -> datetime:
        """ModifiedDate as the service reports it: GP keeps a date for card changes, the server's local day (its
        midnight, written without a zone: read as UTC), unless the sandbox is set to full date-times."""
        moment = (moment or self.clock.now()).astimezone(timezone.utc)
        if self.modified_precision == "date":
            return datetime.combine(moment.astimezone(self.server_zone).date(), time(0), tzinfo=timezone.utc)
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    @staticmethod
    def _address(key_name: str, owner_key: str, owner_id: str, code: str, values: dict[str, Any]) -> dict[str, Any]:
        phone = values.get("phone")
        return {"Key": {"Id": code, key_name: {"Id": owner_id}}, "ContactPerson": values.get("contact"),
                "Line1": values.get("line1"), "Line2": values.get("line2"), "Line3": values.get("line3"),
                "City": values.get("city"), "State": values.get("state"), "PostalCode": values.get("postal_code"),
                "CountryRegion": values.get("country"), "Phone1": {"Value": phone} if phone else None}

    def add_customer(self, customer_id: str, name: str, *, company_id: int = SAMPLE_COMPANY,
                     addresses: dict[str, dict[str, Any]] | None = None, credit_limit: float | None = None,
                     balance: float | None = None, currency: str = "Z-US$", active: bool = True,
                     bill_to: str | None = None, ship_to: str | None = None, class_id: str | None = None,
                     posting: dict[str, str] | None = None, modified: datetime | None = None) -> dict[str, Any]:
        """``posting``: the card's posting accounts by name (Cash, AccountsReceivable, Sales)."""
        addresses = addresses or {"PRIMARY": {}}
        default = next(iter(addresses))
        stamp = self.stamp(modified)
        record = {
            "Key": {"Id": customer_id}, "Name": name, "ShortName": name[:15], "StatementName": name,
            "IsActive": active, "IsOnHold": False, "ClassKey": {"Id": class_id} if class_id else None,
            "CurrencyKey": currency,
            "CreditLimit": {"Item": "Amount" if credit_limit is not None else "NoCredit",
                            "Amount": {"Currency": currency, "Value": credit_limit or 0, "DecimalDigits": 2}},
            "Balance": {"Currency": currency, "Value": balance or 0, "DecimalDigits": 2},
            "Addresses": [self._address("CustomerKey", "CustomerKey", customer_id, code, values)
                          for code, values in addresses.items()],
            "DefaultAddressKey": {"Id": default, "CustomerKey": {"Id": customer_id}},
            "BillToAddressKey": {"Id": bill_to or default, "CustomerKey": {"Id": customer_id}},
            "ShipToAddressKey": {"Id": ship_to or default, "CustomerKey": {"Id": customer_id}},
            **self._posting(CUSTOMER_POSTING, posting), "CreatedDate": stamp, "ModifiedDate": stamp,
        }
        self.add_company(company_id).customers[customer_id] = record
        return record

    def add_vendor(self, vendor_id: str, name: str, *, company_id: int = SAMPLE_COMPANY,
                   addresses: dict[str, dict[str, Any]] | None = None, currency: str = "Z-US$",
                   active: bool = True, posting: dict[str, str] | None = None,
                   modified: datetime | None = None) -> dict[str, Any]:
        """``posting``: the card's posting accounts by name (Cash, AccountsPayable, Purchases)."""
        addresses = addresses or {"PRIMARY": {}}
        default = next(iter(addresses))
        stamp = self.stamp(modified)
        record = {
            "Key": {"Id": vendor_id}, "Name": name, "ShortName": name[:15], "CheckName": name, "IsActive": active,
            "IsOnHold": False, "CurrencyKey": currency,
            "Addresses": [self._address("VendorKey", "VendorKey", vendor_id, code, values)
                          for code, values in addresses.items()],
            "DefaultAddressKey": {"Id": default, "VendorKey": {"Id": vendor_id}},
            "PurchaseAddressKey": {"Id": default, "VendorKey": {"Id": vendor_id}},
            "RemitToAddressKey": {"Id": default, "VendorKey": {"Id": vendor_id}},
            **self._posting(VENDOR_POSTING, posting), "CreatedDate": stamp, "ModifiedDate": stamp,
        }
        self.add_company(company_id).vendors[vendor_id] = record
        return record

    @staticmethod
    def _posting(names: tuple[str, ...], accounts: dict[str, str] | None) -> dict[str, Any]:
        unknown = set(accounts or {}) - set(names)
        if unknown:
            raise ValueError(f"posting accounts are {', '.join(names)}, not {', '.join(sorted(unknown))}")
        return {f"{name}GLAccountKey": {"Id": (accounts or {})[name]} for name in names if (accounts or {}).get(name)}

    def add_payables_document(self, number: str, vendor_id: str, kind: str, amount: float, *,
                              company_id: int = SAMPLE_COMPANY, state: str = "Open", batch: str = "PMTRX",
                              modified: datetime | None = None) -> dict[str, Any]:
        """A payables document of ``kind`` (PayablesDocumentType: Invoice, FinanceCharge, MiscellaneousCharge,
        Return, CreditMemo, Payment) in ``state`` (PayablesTransactionState: Work, Open, History)."""
        company = self.add_company(company_id)
        stamp = self.stamp(modified)
        record = {"Key": {"Id": number}, "VendorKey": {"Id": vendor_id},
                  "VendorName": company.vendors[vendor_id]["Name"], "Date": stamp, "BatchKey": {"Id": batch},
                  "CurrencyKey": {"ISOCode": "USD"}, "DocumentAmount": {"Value": amount, "DecimalDigits": 2},
                  "ModifiedDate": stamp, "TransactionState": state, "Type": kind}
        company.payables[number] = record
        return record

    def settle_payables_document(self, number: str, *, company_id: int = SAMPLE_COMPANY) -> None:
        """A document fully applied and moved to history, as posting a payment that pays it off does."""
        record = self.company(company_id).payables[number]
        record.update(TransactionState="History", ModifiedDate=self.stamp())

    def modify(self, kind: str, record_id: str, *, company_id: int = SAMPLE_COMPANY, address: str | None = None,
               **values: Any) -> dict[str, Any]:
        """Change a customer, vendor or GL account as a GP user would (ModifiedDate moves)."""
        table = {"customers": "customers", "vendors": "vendors", "gl_accounts": "gl_accounts"}[kind]
        record = getattr(self.company(company_id), table)[record_id]
        if address is not None:
            [target] = [a for a in record["Addresses"] if a["Key"]["Id"] == address]
            target.update(values)
        else:
            record.update(values)
        record["ModifiedDate"] = self.stamp()
        return record

    def remove(self, kind: str, record_id: str, *, company_id: int = SAMPLE_COMPANY) -> None:
        """Delete a customer, vendor or GL account as a GP user would (Customer Maintenance, Delete): it is gone
        from every list and read by key."""
        table = {"customers": "customers", "vendors": "vendors", "gl_accounts": "gl_accounts"}[kind]
        del getattr(self.company(company_id), table)[record_id]

    def add_gl_account(self, number: str, description: str, *, company_id: int = SAMPLE_COMPANY,
                       account_type: str = "Posting", alias: str | None = None, active: bool = True,
                       modified: datetime | None = None) -> dict[str, Any]:
        stamp = self.stamp(modified)
        record = {"Key": {"Id": number}, "Alias": alias, "IsActive": active, "Description": description,
                  "AccountType": account_type, "CreatedDate": stamp, "ModifiedDate": stamp}
        self.add_company(company_id).gl_accounts[number] = record
        return record

    def add_gl_transaction(self, journal_id: int, reference: str, lines: list[tuple[str, float, float, str]], *,
                           company_id: int = SAMPLE_COMPANY, batch: str = "GLTRX", state: str = "Open",
                           transaction_date: date | None = None, modified: datetime | None = None) -> dict[str, Any]:
        """A journal entry; ``lines`` are (account number, debit, credit, description)."""
        day = transaction_date or self.clock.now().astimezone(self.server_zone).date()
        stamp = self.stamp(modified)
        record = {"Key": {"JournalId": journal_id, "Date": datetime.combine(day, time(0))},
                  "BatchKey": {"Id": batch}, "Reference": reference,
                  "TransactionDate": datetime.combine(day, time(0)), "TransactionState": state,
                  "ModifiedDate": stamp,
                  "Lines": [{"SequenceNumber": 16384 * (i + 1), "GLAccountKey": {"Id": account},
                             "DebitAmount": {"Value": debit, "DecimalDigits": 2},
                             "CreditAmount": {"Value": credit, "DecimalDigits": 2}, "Description": text}
                            for i, (account, debit, credit, text) in enumerate(lines)]}
        self.add_company(company_id).gl_transactions[journal_id] = record
        return record

    def add_item(self, number: str, description: str, price: float, *, company_id: int = SAMPLE_COMPANY) -> None:
        self.add_company(company_id).items[number] = {"Id": number, "Description": description, "Price": price}

    def seed_demo(self, company_id: int = SAMPLE_COMPANY, name: str = "Fabrikam, Inc.") -> Company:
        """A small, recognisable data set: three customers, two vendors, a chart of accounts, two journal
        entries and a few items."""
        company = self.add_company(company_id, name)
        self.add_customer("AARONFIT0001", "Aaron Fitz Electrical", company_id=company_id, credit_limit=15000,
                          balance=2318.4, posting={"Cash": "000-1100-00", "AccountsReceivable": "000-1200-00",
                                                   "Sales": "000-4100-00"}, addresses={
                              "PRIMARY": {"contact": "Kathy Langer", "line1": "One Microsoft Way", "city": "Redmond",
                                          "state": "WA", "postal_code": "98052", "country": "USA",
                                          "phone": "42555501010000"},
                              "WAREHOUSE": {"line1": "11 Dock Road", "city": "Tacoma", "state": "WA",
                                            "postal_code": "98401", "country": "USA"}}, ship_to="WAREHOUSE")
        self.add_customer("ADAMPARK0001", "Adam Park Resort", company_id=company_id, credit_limit=5000, balance=0,
                          addresses={"PRIMARY": {"line1": "Park Avenue 3", "city": "Chicago", "state": "IL",
                                                 "postal_code": "60601", "country": "USA"}})
        self.add_customer("ALTONMAN0001", "Alton Manufacturing", company_id=company_id, balance=812.0,
                          addresses={"PRIMARY": {"line1": "500 Industrial Pkwy", "city": "Detroit", "state": "MI",
                                                 "postal_code": "48201", "country": "USA"}})
        self.add_vendor("ACETRAVE0001", "A Travel Company", company_id=company_id,
                        posting={"Cash": "000-1100-00", "AccountsPayable": "000-2100-00",
                                 "Purchases": "000-5100-00"}, addresses={
            "PRIMARY": {"contact": "Greg Martin", "line1": "123 Riverside Dr.", "city": "Fargo", "state": "ND",
                        "postal_code": "58103", "country": "USA", "phone": "70155501230000"}})
        self.add_vendor("ADVANCED0001", "Advanced Office Systems", company_id=company_id, addresses={
            "PRIMARY": {"contact": "Dana Birkby", "line1": "7 Commerce Way", "city": "Boston", "state": "MA",
                        "postal_code": "02110", "country": "USA"}})
        for number, text, kind in (("000-1100-00", "Cash - Operating Account", "Posting"),
                                   ("000-1200-00", "Accounts Receivable", "Posting"),
                                   ("000-2100-00", "Accounts Payable", "Posting"),
                                   ("000-4100-00", "Sales - Hardware", "Posting"),
                                   ("000-4110-00", "Sales - Services", "Posting"),
                                   ("000-5100-00", "Purchases", "Posting"),
                                   ("000-9000-00", "Headcount", "Unit")):
            self.add_gl_account(number, text, company_id=company_id, account_type=kind)
        self.add_gl_transaction(2301, "Monthly hardware sales", [("000-1200-00", 1200.0, 0, "AR"),
                                                                 ("000-4100-00", 0, 1200.0, "Hardware")],
                                company_id=company_id)
        self.add_gl_transaction(2302, "Service revenue accrual", [("000-1200-00", 800.0, 0, "AR"),
                                                                  ("000-4110-00", 0, 800.0, "Services")],
                                company_id=company_id)
        # A Travel Company: two open invoices less an open credit memo (1,350.00 owed), one invoice paid off
        for number, kind, amount, state in (("PM-INV-1001", "Invoice", 1200.0, "Open"),
                                            ("PM-INV-1002", "Invoice", 300.0, "Open"),
                                            ("PM-CM-0007", "CreditMemo", 150.0, "Open"),
                                            ("PM-INV-0990", "Invoice", 480.0, "History")):
            self.add_payables_document(number, "ACETRAVE0001", kind, amount, state=state, company_id=company_id)
        for number, text, price in (("100XLG", "Green Phone", 79.99), ("ACCS-CRD-12WH", "Phone Cord - 12' White",
                                                                        9.95), ("SERVICES", "Services", 1.0)):
            self.add_item(number, text, price, company_id=company_id)
        return company

    # -- the request pipeline ------------------------------------------------------------------------------------
    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the server's request slots: excess calls are refused (503) or wait, as configured."""
        if self.max_concurrent is None:
            await self._enter()
            try:
                yield
            finally:
                self.in_flight -= 1
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        if self.overflow == "reject" and self._slots.locked():
            self.rejected += 1
            raise Busy()
        async with self._slots:
            await self._enter()
            try:
                yield
            finally:
                self.in_flight -= 1

    async def _enter(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.delay:
            await asyncio.sleep(self.delay)
        await self.faults.delay()

    def log(self, kind: str, errors: list[str], operation: str, principal: str) -> str:
        log_id = str(uuid.uuid4())
        self.exception_log[log_id] = {"ExceptionType": "ValidationException" if kind == "validation"
                                      else "SystemException", "Errors": errors, "Operation": operation,
                                      "User": principal, "LoggedDate": self.clock.now()}
        return log_id

    def authorise(self, principal: str, operation: str, params: dict[str, Any]) -> int:
        """The Dynamics Security Service: a mapped GP user with access to the context's company."""
        user = self.users.get(principal)
        if user is None or user.gp_user is None:
            raise SoapFault("access", f"Access denied. The Windows account {principal} is not set up as a "
                                      f"Dynamics GP user for web services and cannot run {operation}.")
        context = params.get("context") if isinstance(params.get("context"), dict) else {}
        organization = (context or {}).get("OrganizationKey")
        raw = organization.get("Id") if isinstance(organization, dict) else None
        try:
            company_id = int(str(raw))
        except ValueError:
            raise SoapFault("validation", "The context has no company (OrganizationKey).",
                            errors=["Context.OrganizationKey must name a company"]) from None
        if company_id not in self.companies:
            raise SoapFault("validation", f"Company {company_id} does not exist.",
                            errors=[f"no company with id {company_id}"])
        if user.companies is not None and company_id not in user.companies:
            raise SoapFault("access", f"Access denied. {principal} has no access to company {company_id}.")
        return company_id

    # -- operations ----------------------------------------------------------------------------------------------
    def run(self, operation: str, params: dict[str, Any], company_id: int) -> Any:
        handler = getattr(self, f"op_{operation}", None)
        if handler is None:
            raise SoapFault("system", f"Server did not recognize the value of HTTP Header SOAPAction or the "
                                      f"operation {operation}.")
        return handler(params, self.companies[company_id])

    def _dated(self, criteria: Any, field_name: str, stamp: datetime | None) -> bool:
        restriction = criteria.get(field_name) if isinstance(criteria, dict) else None
        if not isinstance(restriction, dict):
            return True
        if stamp is None:
            return False
        what = f"{field_name} criteria"
        checks = {"EqualValue": lambda v: stamp == v, "NotEqualValue": lambda v: stamp != v,
                  "From": lambda v: stamp >= v, "To": lambda v: stamp <= v,
                  "GreaterThan": lambda v: stamp > v, "LessThan": lambda v: stamp < v}
        for name, check in checks.items():
            if restriction.get(name) not in (None, ""):
                if not check(parse_datetime(restriction[name], what)):
                    return False
        return True

    @staticmethod
    def _texted(criteria: Any, field_name: str, value: str | None) -> bool:
        restriction = criteria.get(field_name) if isinstance(criteria, dict) else None
        if not isinstance(restriction, dict):
            return True
        value = value or ""
        if restriction.get("EqualValue") is not None and value.upper() != str(restriction["EqualValue"]).upper():
            return False
        if restriction.get("From") not in (None, "") and value.upper() < str(restriction["From"]).upper():
            return False
        if restriction.get("To") not in (None, "") and value.upper() > str(restriction["To"]).upper():
            return False
        if restriction.get("Like") not in (None, "") and not _like(str(restriction["Like"])).match(value):
            return False
        return True

    @staticmethod
    def _active(criteria: Any, value: bool) -> bool:
        restriction = criteria.get("IsActive") if isinstance(criteria, dict) else None
        if not isinstance(restriction, dict) or restriction.get("EqualValue") in (None, ""):
            return True
        return (str(restriction["EqualValue"]).lower() == "true") == value

    def _party_list(self, records: dict[str, dict[str, Any]], criteria: Any, class_key: str) -> list[dict[str, Any]]:
        out = []
        for record in sorted(records.values(), key=lambda r: r["Key"]["Id"]):
            if not (self._texted(criteria, "Id", record["Key"]["Id"]) and self._texted(criteria, "Name", record["Name"])
                    and self._active(criteria, record["IsActive"])
                    and self._dated(criteria, "ModifiedDate", record["ModifiedDate"])
                    and self._dated(criteria, "CreatedDate", record["CreatedDate"])):
                continue
            addresses = record.get("Addresses") or []
            default = next((a for a in addresses if a["Key"]["Id"] == record["DefaultAddressKey"]["Id"]), {})
            out.append({"Key": record["Key"], "Name": record["Name"], "IsActive": record["IsActive"],
                        "IsOnHold": record["IsOnHold"], class_key: record.get("ClassKey"),
                        "State": default.get("State"), "CreatedDate": record["CreatedDate"],
                        "ModifiedDate": record["ModifiedDate"]})
        return out

    def op_GetPayablesDocumentList(self, params: dict[str, Any], company: Company) -> dict[str, Any]:
        """Summaries of payables documents; the criteria restrict by document, vendor, batch, state, type and
        dates (https://learn.microsoft.com/previous-versions/dynamicsgp/developer/cc508580(v=msdn.10))."""
        criteria = params.get("criteria") if isinstance(params.get("criteria"), dict) else {}
        rows = []
        for record in sorted(company.payables.values(), key=lambda r: r["Key"]["Id"]):
            if (self._texted(criteria, "DocumentId", record["Key"]["Id"])
                    and self._texted(criteria, "VendorId", record["VendorKey"]["Id"])
                    and self._texted(criteria, "BatchId", record["BatchKey"]["Id"])
                    and self._listed(criteria, "TransactionState", "PayablesTransactionState",
                                     record["TransactionState"])
                    and self._listed(criteria, "Type", "PayablesDocumentType", record["Type"])
                    and self._dated(criteria, "ModifiedDate", record["ModifiedDate"])
                    and self._dated(criteria, "Date", record["Date"])):
                rows.append(record)
        return {"PayablesDocumentSummary": rows}

    @staticmethod
    def _listed(criteria: Any, field_name: str, item: str, value: str) -> bool:
        """A ListRestriction: EqualValue, or one of Items."""
        restriction = criteria.get(field_name) if isinstance(criteria, dict) else None
        if not isinstance(restriction, dict):
            return True
        items = restriction.get("Items")
        wanted = items.get(item) if isinstance(items, dict) else None
        allowed = set(wanted if isinstance(wanted, list) else [wanted] if wanted else [])
        if restriction.get("EqualValue"):
            allowed.add(str(restriction["EqualValue"]))
        return not allowed or value in allowed

    def op_GetCustomerList(self, params: dict[str, Any], company: Company) -> dict[str, Any]:
        return {"CustomerSummary": self._party_list(company.customers, params.get("criteria"), "CustomerClassKey")}

    def op_GetVendorList(self, params: dict[str, Any], company: Company) -> dict[str, Any]:
        return {"VendorSummary": self._party_list(company.vendors, params.get("criteria"), "VendorClassKey")}

    @staticmethod
    def _key_id(params: dict[str, Any]) -> str:
        key = params.get("key")
        return str(key.get("Id") if isinstance(key, dict) else key or "")

    def op_GetCustomerByKey(self, params: dict[str, Any], company: Company) -> dict[str, Any]:
        found = company.customers.get(self._key_id(params))
        if found is None:
            raise SoapFault("validation", "The customer could not be found.",
                            errors=[f"Customer {self._key_id(params)} does not exist"])
        return found

    def op_GetVendorByKey(self, params: dict[str, Any], company: Company) -> dict[str, Any]:
        found = company.vendors.get(self._key_id(params))
        if found is None:
            raise SoapFault("validation", "The vendor could not be found.",
                            errors=[f"Vendor {self._key_id(params)} does not exist"])
        return found

    def op_GetGLAccountList(self, params: dict[str, Any], company: Company) -> dict[str, Any]:
        criteria = params.get("criteria") if isinstance(params.get("criteria"), dict) else {}
        restriction = (criteria or {}).get("AccountType")
        wanted: set[str] | None = None
        if isinstance(restriction, dict):
            items = restriction.get("Items")
            values = items.get("string") if isinstance(items, dict) else None
            wanted = set(values if isinstance(values, list) else [values] if values else [])
            if restriction.get("EqualValue"):
                wanted.add(str(restriction["EqualValue"]))
            wanted = wanted or None
        rows = [r for r in sorted(company.gl_accounts.values(), key=lambda r: r["Key"]["Id"])
                if wanted is None or r["AccountType"] in wanted]
        return {"GLAccountSummary": rows}

    def op_GetGLTransactionList(self, params: dict[str, Any], company: Company) -> dict[str, Any]:
        criteria = params.get("criteria")
        rows = []
        for record in sorted(company.gl_transactions.values(), key=lambda r: r["Key"]["JournalId"]):
            if self._dated(criteria, "ModifiedDate", record["ModifiedDate"]) and \
                    self._dated(criteria, "TransactionDate", record["TransactionDate"].replace(tzinfo=timezone.utc)):
                rows.append({k: v for k, v in record.items() if k != "Lines"})
        return {"GLTransactionSummary": rows}

    def op_GetGLTransactionByKey(self, params: dict[str, Any], company: Company) -> dict[str, Any]:
        key = params.get("key") if isinstance(params.get("key"), dict) else {}
        try:
            journal = int(str((key or {}).get("JournalId")))
        except ValueError:
            journal = -1
        found = company.gl_transactions.get(journal)
        if found is None:
            raise SoapFault("validation", "The GL transaction could not be found.",
                            errors=[f"Journal entry {journal} does not exist"])
        return found

    def op_GetSalesOrderByKey(self, params: dict[str, Any], company: Company) -> dict[str, Any]:
        found = company.sales_orders.get(self._key_id(params))
        if found is None:
            raise SoapFault("validation", "The sales order could not be found.",
                            errors=[f"Sales order {self._key_id(params)} does not exist"])
        return found

    def op_GetPolicyByOperation(self, params: dict[str, Any], company: Company) -> dict[str, Any]:
        operation = str(params.get("operation") or "")
        if operation not in ("CreateSalesOrder", "CreateSalesQuote"):
            raise SoapFault("validation", f"No policy exists for operation {operation!r}.",
                            errors=[f"unknown operation {operation}"])
        policy_id = self.policies.setdefault(operation, str(uuid.uuid4()))
        return {"Key": {"Id": policy_id}, "Name": f"{operation} Policy"}

    def op_GetLoggedValidationResultByKey(self, params: dict[str, Any], company: Company) -> dict[str, Any]:
        entry = self.exception_log.get(str(params.get("logId") or ""))
        if entry is None:
            raise SoapFault("validation", "The exception log entry could not be found.", errors=["no such log id"])
        return {"Errors": {"ValidationError": [{"Id": str(i + 1), "Message": m}
                                               for i, m in enumerate(entry["Errors"])]}}

    def op_GetSalesQuoteByKey(self, params: dict[str, Any], company: Company) -> dict[str, Any]:
        found = company.sales_quotes.get(self._key_id(params))
        if found is None:
            raise SoapFault("validation", "The sales quote could not be found.",
                            errors=[f"Sales quote {self._key_id(params)} does not exist"])
        return found

    def op_CreateSalesQuote(self, params: dict[str, Any], company: Company) -> None:
        self._create_sales_document(params, company, "Quote")

    def op_CreateSalesOrder(self, params: dict[str, Any], company: Company) -> None:
        self._create_sales_document(params, company, "Order")

    def _create_sales_document(self, params: dict[str, Any], company: Company, kind: str) -> None:
        """CreateSalesOrder / CreateSalesQuote: the operation's policy, a document type, customer and batch, lines
        of known items (a quote's lines also say how much to invoice and to order)."""
        operation, parameter, line_type = {"Order": ("CreateSalesOrder", "salesOrder", "SalesOrderLine"),
                                           "Quote": ("CreateSalesQuote", "salesQuote", "SalesQuoteLine")}[kind]
        documents = company.sales_orders if kind == "Order" else company.sales_quotes
        policy = params.get("policy") if isinstance(params.get("policy"), dict) else {}
        policy_key = (policy or {}).get("Key")
        given = policy_key.get("Id") if isinstance(policy_key, dict) else None
        if not given or given != self.policies.get(operation):
            raise SoapFault("validation", f"The policy is not valid for {operation}.",
                            errors=[f"Policy is required: get it with GetPolicyByOperation(\"{operation}\")"])
        order = params.get(parameter) if isinstance(params.get(parameter), dict) else {}
        order = order or {}
        errors = []
        doc_type = order.get("DocumentTypeKey") if isinstance(order.get("DocumentTypeKey"), dict) else {}
        if not (doc_type or {}).get("Id"):
            errors.append("DocumentTypeKey is required")
        customer = (order.get("CustomerKey") or {}).get("Id") if isinstance(order.get("CustomerKey"), dict) else None
        if not customer:
            errors.append("CustomerKey is required")
        elif customer not in company.customers:
            errors.append(f"Customer {customer} does not exist")
        batch = (order.get("BatchKey") or {}).get("Id") if isinstance(order.get("BatchKey"), dict) else None
        if not batch:
            errors.append("BatchKey is required")
        lines_holder = order.get("Lines") if isinstance(order.get("Lines"), dict) else {}
        lines = (lines_holder or {}).get(line_type) or []
        lines = lines if isinstance(lines, list) else [lines]
        if not lines:
            errors.append(f"A sales {kind.lower()} needs at least one line")
        stored_lines = []
        for index, line in enumerate(lines, start=1):
            item = (line.get("ItemKey") or {}).get("Id") if isinstance(line.get("ItemKey"), dict) else None
            quantity = (line.get("Quantity") or {}).get("Value") if isinstance(line.get("Quantity"), dict) else None
            if not item:
                errors.append(f"Line {index}: ItemKey is required")
                continue
            if item not in company.items:
                errors.append(f"Line {index}: item {item} does not exist")
                continue
            if quantity in (None, ""):
                errors.append(f"Line {index}: Quantity is required")
                continue
            if kind == "Quote" and any(not isinstance(line.get(n), dict) or line[n].get("Value") in (None, "")
                                       for n in ("QuantityToInvoice", "QuantityToOrder")):
                errors.append(f"Line {index}: QuantityToInvoice and QuantityToOrder are required on a quote line")
                continue
            price_node = line.get("UnitPrice") if isinstance(line.get("UnitPrice"), dict) else None
            price = float(price_node["Value"]) if price_node and price_node.get("Value") not in (None, "") \
                else company.items[item]["Price"]
            stored_lines.append({"ItemKey": {"Id": item}, "ItemDescription": line.get("ItemDescription")
                                 or company.items[item]["Description"],
                                 "Quantity": {"Value": float(quantity), "DecimalDigits": 2},
                                 "UnitPrice": {"Value": price, "DecimalDigits": 2},
                                 "TotalAmount": {"Value": round(price * float(quantity), 2), "DecimalDigits": 2},
                                 **({n: {"Value": float(line[n]["Value"]), "DecimalDigits": 2}
                                     for n in ("QuantityToInvoice", "QuantityToOrder")} if kind == "Quote" else {})})
        currency_key = order.get("CurrencyKey") if isinstance(order.get("CurrencyKey"), dict) else None
        iso = str((currency_key or {}).get("ISOCode") or "")
        if currency_key is not None and len(iso) != 3:
            errors.append(f"An ISO 4217 currency code must have three characters; your value is {iso}.")
        key = order.get("Key") if isinstance(order.get("Key"), dict) else {}
        number = str((key or {}).get("Id") or "")
        if number and len(number) > 21:
            errors.append(f"SOP number {number} is longer than 21 characters")
        if number and number in documents:
            errors.append(f"Sales {kind.lower()} {number} already exists")
        if errors:
            raise SoapFault("validation", f"The sales {kind.lower()} failed validation.", errors=errors)
        if not number:
            number = f"{'ORDST' if kind == 'Order' else 'QTEST'}{2230 + len(documents):04d}"
        stamp = self.stamp()
        documents[number] = {
            "Key": {"Id": number}, "DocumentTypeKey": {"Type": kind, "Id": doc_type["Id"]},
            "CustomerKey": {"Id": customer}, "BatchKey": {"Id": batch}, "Date": order.get("Date") or stamp,
            "CustomerPONumber": order.get("CustomerPONumber"), "Comment": order.get("Comment"),
            **({"CurrencyKey": {"ISOCode": iso.upper()}} if iso else {}),
            "Lines": {line_type: stored_lines},
            "TotalAmount": {"Value": round(sum(l["TotalAmount"]["Value"] for l in stored_lines), 2),
                            "DecimalDigits": 2},
            "CreatedDate": stamp, "ModifiedDate": stamp}
        return None

    # -- reading the sandbox in tests ----------------------------------------------------------------------------
    def sales_orders(self, company_id: int = SAMPLE_COMPANY) -> list[dict[str, Any]]:
        return list(self.company(company_id).sales_orders.values())

    def sales_quotes(self, company_id: int = SAMPLE_COMPANY) -> list[dict[str, Any]]:
        return list(self.company(company_id).sales_quotes.values())

    def reset_counters(self) -> None:
        self.calls.clear()
        self.counts.clear()
        self.max_in_flight = 0
        self.rejected = 0


def new_password() -> str:
    return secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")
