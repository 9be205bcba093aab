"""Realistic, deterministic seed data for the sandboxes: one ERP company's customers, vendors, contacts, items,
open sales orders and posted sales invoices, with real-looking names, addresses, phones and amounts.

``seed_company(dynamics, company, style="nav"|"bc", size="small", seed=7)`` fills an existing company of a
``DynamicsSandbox`` through its helpers (so totals, number series and contact relations are the sandbox's own)
and returns what it made. The same seed and size always give the same records (ids are still fresh GUIDs).
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from mlconnector.sandbox.dynamics import DynamicsSandbox

SIZES = {"small": 24, "medium": 60}


@dataclass(frozen=True)
class SeedSize:
    """How many records of each kind one company gets; ``customers`` drives the rest."""

    customers: int
    vendors: int
    items: int
    orders: int
    invoices: int

    @classmethod
    def parse(cls, spec: str | int | None) -> "SeedSize":
        """``small`` (24 customers), ``medium`` (60) or a number of customers (1 to 5000)."""
        text = str(spec if spec is not None else "small").strip().lower()
        if text in SIZES:
            customers = SIZES[text]
        elif text.isdigit() and 1 <= int(text) <= 5000:
            customers = int(text)
        else:
            raise ValueError(f"seed size {spec!r}: use small, medium or a number of customers (1-5000)")
        return cls(customers=customers, vendors=max(2, customers // 6), items=max(6, min(200, customers // 2)),
                   orders=max(2, customers // 3), invoices=max(3, customers // 2))


@dataclass
class Seeded:
    """What ``seed_company`` created, by entity, as the API shows the rows."""

    company: str
    customers: list[dict[str, Any]] = field(default_factory=list)
    vendors: list[dict[str, Any]] = field(default_factory=list)
    contacts: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    sales_orders: list[dict[str, Any]] = field(default_factory=list)
    invoices: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"customers": len(self.customers), "vendors": len(self.vendors), "contacts": len(self.contacts),
                "items": len(self.items), "sales orders": len(self.sales_orders),
                "posted invoices": len(self.invoices)}

    def summary(self) -> str:
        return ", ".join(f"{n} {what}" for what, n in self.counts().items())


# -- where people and companies are ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Country:
    code: str
    tld: str
    suffixes: tuple[str, ...]
    phone: str                      # digits replace '#'
    postal: str                     # '#' digit, 'A' letter
    cities: tuple[tuple[str, str], ...]   # (city, state/county)
    streets: tuple[str, ...]
    street_first: bool              # "12 Main Street" (True) or "Hauptstraße 12" (False)
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]


COUNTRIES: tuple[Country, ...] = (
    Country("US", "com", ("Inc.", "LLC", "Corp."), "+1 4## 555 ####", "#####",
            (("Atlanta", "GA"), ("Chicago", "IL"), ("Seattle", "WA"), ("Austin", "TX"), ("Denver", "CO"),
             ("Boston", "MA"), ("Miami", "FL"), ("Portland", "OR")),
            ("Market Square", "Thomas Drive", "Oak Street", "Lake Shore Drive", "Pine Avenue", "Elm Road"),
            True, ("Robert", "Helen", "Meagan", "James", "Linda", "Jeffrey", "Susan", "Michael"),
            ("Townes", "Ray", "Bond", "Carter", "Hughes", "Nolan", "Porter", "Reyes")),
    Country("GB", "co.uk", ("Ltd", "plc"), "+44 20 7### ####", "A## #AA",
            (("London", ""), ("Manchester", ""), ("Bristol", ""), ("Leeds", ""), ("Edinburgh", ""),
             ("Birmingham", "")),
            ("High Street", "Church Lane", "Station Road", "Victoria Road", "Kings Road"),
            True, ("Oliver", "Amelia", "Harry", "Isla", "George", "Emily", "Jack", "Sophie"),
            ("Smith", "Taylor", "Brown", "Wilson", "Evans", "Walker", "Wright", "Hughes")),
    Country("DE", "de", ("GmbH", "AG", "KG"), "+49 ## #### ####", "#####",
            (("Berlin", "BE"), ("Hamburg", "HH"), ("München", "BY"), ("Köln", "NW"), ("Frankfurt am Main", "HE"),
             ("Stuttgart", "BW")),
            ("Hauptstraße", "Bahnhofstraße", "Gartenweg", "Schillerstraße", "Lindenallee"),
            False, ("Lukas", "Anna", "Jonas", "Lea", "Felix", "Marie", "Paul", "Sophie"),
            ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker")),
    Country("FR", "fr", ("SARL", "SA", "SAS"), "+33 1 ## ## ## ##", "#####",
            (("Paris", ""), ("Lyon", ""), ("Marseille", ""), ("Toulouse", ""), ("Lille", ""), ("Nantes", "")),
            ("rue de la République", "avenue Victor Hugo", "boulevard Voltaire", "rue Pasteur"),
            True, ("Camille", "Louis", "Chloé", "Hugo", "Manon", "Gabriel", "Léa", "Arthur"),
            ("Martin", "Bernard", "Dubois", "Laurent", "Lefebvre", "Moreau", "Girard", "Roux")),
    Country("NL", "nl", ("B.V.", "N.V."), "+31 20 ### ####", "#### AA",
            (("Amsterdam", "NH"), ("Rotterdam", "ZH"), ("Utrecht", "UT"), ("Eindhoven", "NB"), ("Den Haag", "ZH")),
            ("Keizersgracht", "Stationsweg", "Kerkstraat", "Dorpsstraat", "Molenweg"),
            False, ("Daan", "Emma", "Sem", "Julia", "Lucas", "Tess", "Milan", "Sara"),
            ("de Jong", "Jansen", "de Vries", "van Dijk", "Bakker", "Visser", "Smit", "Meijer")),
    Country("CA", "ca", ("Inc.", "Ltd."), "+1 416 555 ####", "A#A #A#",
            (("Toronto", "ON"), ("Vancouver", "BC"), ("Montréal", "QC"), ("Calgary", "AB"), ("Ottawa", "ON")),
            ("King Street West", "Yonge Street", "Granville Street", "Rue Sainte-Catherine"),
            True, ("Liam", "Olivia", "Noah", "Charlotte", "Ethan", "Chloé", "William", "Ava"),
            ("Tremblay", "Roy", "Gagnon", "MacDonald", "Campbell", "Wong", "Singh", "Leblanc")),
    Country("AU", "com.au", ("Pty Ltd",), "+61 2 #### ####", "####",
            (("Sydney", "NSW"), ("Melbourne", "VIC"), ("Brisbane", "QLD"), ("Perth", "WA"), ("Adelaide", "SA")),
            ("George Street", "Collins Street", "Queen Street", "Hay Street"),
            True, ("Jack", "Mia", "Oliver", "Isla", "Thomas", "Grace", "Lachlan", "Ruby"),
            ("Nguyen", "Kelly", "Murphy", "Mitchell", "Thompson", "Ryan", "Cooper", "Clarke")),
    Country("SE", "se", ("AB",), "+46 8 ### ### ##", "### ##",
            (("Stockholm", ""), ("Göteborg", ""), ("Malmö", ""), ("Uppsala", "")),
            ("Drottninggatan", "Storgatan", "Kungsgatan", "Sveavägen"),
            False, ("Erik", "Astrid", "Lars", "Ingrid", "Nils", "Elsa", "Oskar", "Maja"),
            ("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson", "Persson")),
)

_NAME_WORDS = ("Adatum", "Northwind", "Trey", "Fabrikam", "Contoso", "Litware", "Proseware", "Tailspin", "Alpine",
               "Coho", "Lucerne", "Wingtip", "Woodgrove", "Blue Yonder", "Humongous", "Margie's", "Relecloud",
               "Fourth Coffee", "Graphic", "Southridge", "Wide World", "Bellows", "Cronus", "Datum", "Fernwood",
               "Harbor", "Kestrel", "Lakeside", "Meridian", "Oakridge", "Pinnacle", "Riverbend", "Silverline",
               "Summit", "Westbrook", "Granite", "Aurora", "Beacon", "Cedar", "Evergreen")
_TRADES = ("Furniture", "Interiors", "Office Supplies", "Design", "Trading", "Hospitality", "Consulting",
           "Architects", "Workspace", "Retail", "Logistics", "Education", "Health Partners", "Hotels",
           "Property Services", "Facilities")
_VENDOR_TRADES = ("Wood Products", "Metalworks", "Upholstery", "Lighting", "Freight", "Packaging", "Textiles")

_MODELS = ("ATHENS", "PARIS", "LONDON", "BERLIN", "ROME", "MOSCOW", "SYDNEY", "TOKYO", "AMSTERDAM", "OSLO",
           "MADRID", "VIENNA", "LISBON", "PRAGUE", "DUBLIN", "HELSINKI", "MUNICH", "ANTWERP", "GENEVA", "SEOUL")
# (product, unit, price range, category)
_PRODUCTS = (("Desk", "PCS", (450, 1400), "TABLE"), ("Guest Chair", "PCS", (95, 260), "CHAIR"),
             ("Swivel Chair", "PCS", (140, 480), "CHAIR"), ("Conference Table", "PCS", (900, 2600), "TABLE"),
             ("Storage Unit", "PCS", (180, 650), "STORAGE"), ("Whiteboard", "PCS", (60, 240), "MISC"),
             ("Lamp", "PCS", (35, 120), "LIGHTING"), ("Mousepad", "BOX", (18, 45), "SUPPLIERS"),
             ("Filing Cabinet", "PCS", (160, 420), "STORAGE"), ("Bookcase", "PCS", (130, 390), "STORAGE"),
             ("Cable Tray", "SET", (25, 80), "MISC"), ("Paper Tray", "PACK", (12, 40), "SUPPLIERS"))
_COLOURS = ("black", "white", "blue", "red", "yellow", "green", "grey", "oak")


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", folded.lower())


def _pattern(rng: random.Random, pattern: str) -> str:
    return "".join(str(rng.randrange(10)) if c == "#" else rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") if c == "A" else c
                   for c in pattern)


class _Maker:
    """Draws names, addresses and amounts from one seeded random generator."""

    def __init__(self, seed: int, company: str) -> None:
        self.rng = random.Random(f"{seed}:{company}")
        self.used_names: set[str] = set()
        self.used_emails: set[str] = set()

    def country(self) -> Country:
        return self.rng.choice(COUNTRIES)

    def company_name(self, country: Country, trades: tuple[str, ...]) -> str:
        for _ in range(200):
            name = f"{self.rng.choice(_NAME_WORDS)} {self.rng.choice(trades)} {self.rng.choice(country.suffixes)}"
            if name not in self.used_names:
                self.used_names.add(name)
                return name
        name = f"{name} {len(self.used_names)}"
        self.used_names.add(name)
        return name

    def address(self, country: Country) -> dict[str, str]:
        city, state = self.rng.choice(country.cities)
        street, number = self.rng.choice(country.streets), self.rng.randint(1, 240)
        return {"addressLine1": f"{number} {street}" if country.street_first else f"{street} {number}",
                "city": city, "state": state, "country": country.code,
                "postalCode": _pattern(self.rng, country.postal)}

    def phone(self, country: Country) -> str:
        return _pattern(self.rng, country.phone)

    def domain(self, name: str, country: Country) -> str:
        words = name.split()
        return f"{_ascii(''.join(words[:2]))}.{country.tld}"

    def person(self, country: Country, domain: str) -> tuple[str, str]:
        for _ in range(50):
            first, last = self.rng.choice(country.first_names), self.rng.choice(country.last_names)
            email = f"{_ascii(first)}.{_ascii(last)}@{domain}"
            if email not in self.used_emails:
                self.used_emails.add(email)
                return f"{first} {last}", email
        email = f"contact{len(self.used_emails)}@{domain}"
        self.used_emails.add(email)
        return f"{first} {last}", email

    def price(self, low: float, high: float) -> float:
        """A list price as people set them: 129.9, 54.9, 1000.8 ..."""
        return round(self.rng.randint(int(low), int(high)) + self.rng.choice((0.0, 0.5, 0.8, 0.9)), 2)


# -- the company ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Numbering:
    """Number series of one ERP style: NAV's classic numeric ones, or Business Central's defaults (None: let the
    sandbox's number series assign)."""

    customer: str | None
    customer_step: int
    vendor: str | None
    item: str | None
    order: str | None
    invoice: str


NAV_NUMBERS = Numbering(customer="10000", customer_step=10000, vendor="10000", item="70000", order="101001",
                        invoice="103001")
BC_NUMBERS = Numbering(customer=None, customer_step=10, vendor=None, item=None, order=None, invoice="PS-INV103001")


def _series(start: str | None, index: int, step: int) -> str | None:
    if start is None:
        return None
    digits = len(start) - len(start.rstrip("0123456789"))
    prefix, value = start[:-digits], int(start[-digits:]) + index * step
    return f"{prefix}{value:0{digits}d}"


def seed_company(dynamics: DynamicsSandbox, company: str, *, style: str = "bc", size: str | int | SeedSize = "small",
                 seed: int = 7, today: date | None = None, home_country: str | None = None) -> Seeded:
    """Fill ``company`` (created already) with a sales company's master data and documents. About half the
    customers are in ``home_country`` (default GB for "nav", US for "bc"); foreign ones carry their currency."""
    if style not in ("nav", "bc"):
        raise ValueError("style must be 'nav' or 'bc'")
    sizes = size if isinstance(size, SeedSize) else SeedSize.parse(size)
    numbers = NAV_NUMBERS if style == "nav" else BC_NUMBERS
    make = _Maker(seed, dynamics.db.company(company).name)  # the name, not the id: ids are fresh GUIDs
    today = today or date.today()
    # NAV's CRONUS International Ltd. is a British company, Business Central's CRONUS USA an American one.
    home = next(c for c in COUNTRIES if c.code == (home_country or ("GB" if style == "nav" else "US")))
    out = Seeded(company)

    def without_none(values: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in values.items() if v is not None}

    def changed(low_days: int, high_days: int, day: date | None = None) -> datetime:
        """When a user last changed the row: master data weeks or months ago, documents on their date."""
        when = day or today - timedelta(days=make.rng.randint(low_days, high_days))
        stamp = datetime.combine(when, time(8), timezone.utc) + timedelta(seconds=make.rng.randint(0, 9 * 3600))
        return min(stamp, datetime.now(timezone.utc) - timedelta(minutes=5))  # never in the future

    # Customers: about half at home, the rest spread over the other countries.
    customers = []
    for index in range(sizes.customers):
        country = home if make.rng.random() < 0.5 else make.country()
        name = make.company_name(country, _TRADES)
        domain = make.domain(name, country)
        customers.append(without_none({
            "number": _series(numbers.customer, index, numbers.customer_step), "displayName": name,
            **make.address(country), "phoneNumber": make.phone(country),
            "email": f"{make.rng.choice(('info', 'office', 'orders', 'hello'))}@{domain}",
            "website": f"www.{domain}", "creditLimit": float(make.rng.choice((0, 5000, 10000, 25000, 50000))),
            "currencyCode": _currency(country.code, home.code),
            "salespersonCode": make.rng.choice(("JR", "PS", "BC", "RL")), "lastModifiedDateTime": changed(7, 400),
            "_domain": domain, "_country": country}))
    extras = [(c.pop("_domain"), c.pop("_country")) for c in customers]
    out.customers = dynamics.seed(company, "customers", customers)

    vendors = []
    for index in range(sizes.vendors):
        country = make.country()
        name = make.company_name(country, _VENDOR_TRADES)
        domain = make.domain(name, country)
        vendors.append(without_none({
            "number": _series(numbers.vendor, index, 10000 if style == "nav" else 10), "displayName": name,
            **make.address(country), "phoneNumber": make.phone(country), "email": f"sales@{domain}",
            "website": f"www.{domain}", "lastModifiedDateTime": changed(7, 400)}))
    out.vendors = dynamics.seed(company, "vendors", vendors)

    # Contacts: a company contact per customer (its Contact Business Relation makes it that customer) and one or
    # two people working there; vendors get one person each. Persons reach their customer through their company.
    contacts: list[dict[str, Any]] = []
    relations: list[tuple[str, str, str]] = []
    number = 10
    for party, kind, (domain, country) in [*((c, "Customer", e) for c, e in zip(out.customers, extras)),
                                           *((v, "Vendor", (v["website"].removeprefix("www."), _country_of(v)))
                                             for v in out.vendors)]:
        company_no = f"CT{number:06d}"
        number += 10
        contacts.append({"number": company_no, "type": "Company", "displayName": party["displayName"],
                         "companyNumber": company_no, "companyName": party["displayName"],
                         **_address_of(party), "phoneNumber": party["phoneNumber"], "email": party["email"],
                         "lastModifiedDateTime": changed(7, 400)})
        relations.append((company_no, kind, party["number"]))
        for _ in range(1 if kind == "Vendor" else make.rng.choice((1, 1, 2))):
            person, email = make.person(country, domain)
            contacts.append({"number": f"CT{number:06d}", "type": "Person", "displayName": person,
                             "companyNumber": company_no, "companyName": party["displayName"],
                             "jobTitle": make.rng.choice(("Purchasing Manager", "Office Manager", "CFO",
                                                          "Facilities Manager", "Buyer", "Managing Director")),
                             **_address_of(party), "phoneNumber": make.phone(country),
                             "mobilePhoneNumber": make.phone(country), "email": email,
                             "lastModifiedDateTime": changed(7, 400)})
            number += 10
    out.contacts = dynamics.seed(company, "contacts", contacts)
    for contact_no, kind, related in relations:
        dynamics.relate_contact(company, contact_no, kind, related)

    items = []
    combos = [(m, p) for m in _MODELS for p in _PRODUCTS]
    make.rng.shuffle(combos)
    for index, (model, (product, unit, (low, high), category)) in enumerate(combos[:sizes.items]):
        colour = f", {make.rng.choice(_COLOURS)}" if category in ("CHAIR", "STORAGE") else ""
        price = make.price(low, high)
        items.append(without_none({
            "number": _series(numbers.item, index, 10 if style == "nav" else 1),
            "displayName": f"{model} {product}{colour}", "baseUnitOfMeasureCode": unit, "unitPrice": price,
            "unitCost": round(price * make.rng.uniform(0.55, 0.8), 2), "inventory": float(make.rng.randint(0, 120)),
            "itemCategoryCode": category, "gtin": _pattern(make.rng, "#############"),
            "lastModifiedDateTime": changed(7, 200)}))
    out.items = dynamics.seed(company, "items", items)

    def lines(count: int) -> list[dict[str, Any]]:
        chosen = make.rng.sample(out.items, k=min(count, len(out.items)))
        result = []
        for item in chosen:
            line: dict[str, Any] = {"lineObjectNumber": item["number"], "quantity": float(make.rng.randint(1, 12))}
            if make.rng.random() < 0.2:
                line["discountPercent"] = float(make.rng.choice((5, 10, 15)))
            result.append(line)
        return result

    orders = []
    for index in range(sizes.orders):
        customer = make.rng.choice(out.customers)
        ordered = today - timedelta(days=make.rng.randint(0, 30))
        orders.append(without_none({
            "number": _series(numbers.order, index, 1), "customerNumber": customer["number"],
            "orderDate": ordered.isoformat(), "postingDate": ordered.isoformat(),
            "requestedDeliveryDate": (ordered + timedelta(days=make.rng.randint(7, 28))).isoformat(),
            "externalDocumentNumber": f"PO-{make.rng.randint(1000, 9999)}",
            "status": make.rng.choice(("Draft", "Open", "Open")),
            "salesOrderLines": lines(make.rng.randint(1, 4)), "lastModifiedDateTime": changed(0, 0, ordered)}))
    out.sales_orders = dynamics.seed(company, "salesOrders", orders)

    prices = {item["number"]: float(item.get("unitPrice") or 0) for item in out.items}
    invoices = []
    for index in range(sizes.invoices):
        customer = make.rng.choice(out.customers)
        posted = today - timedelta(days=make.rng.randint(1, 90))
        due = posted + timedelta(days=30)
        invoice_lines = lines(make.rng.randint(1, 5))
        invoice: dict[str, Any] = {
            "number": _series(numbers.invoice, index, 1), "customerNumber": customer["number"],
            "invoiceDate": posted.isoformat(), "postingDate": posted.isoformat(), "dueDate": due.isoformat(),
            "externalDocumentNumber": f"PO-{make.rng.randint(1000, 9999)}",
            "status": "Paid" if due < today and make.rng.random() < 0.7 else "Open",
            "salesInvoiceLines": invoice_lines, "lastModifiedDateTime": changed(0, 0, posted)}
        # Business Central's invoices carry sales tax (a third of them here) and some an invoice discount (every
        # fourth: 5 %), by position, so the rest of the seed stays as it was.
        if style == "bc" and index % 3 == 0:
            for line in invoice_lines:
                line["taxPercent"] = 8.25
        if style == "bc" and index % 4 == 1:
            gross = sum(line["quantity"] * prices.get(line["lineObjectNumber"], 0)
                        * (1 - line.get("discountPercent", 0) / 100) for line in invoice_lines)
            invoice["discountAmount"] = round(gross * 0.05, 2)
        invoices.append(invoice)
    out.invoices = dynamics.seed(company, "salesInvoices", invoices)
    return out


def _currency(country: str, home: str) -> str:
    currencies = {"US": "USD", "GB": "GBP", "DE": "EUR", "FR": "EUR", "NL": "EUR", "CA": "CAD", "AU": "AUD",
                  "SE": "SEK"}
    mine = currencies.get(country, "")
    return "" if mine == currencies.get(home) else mine


def _address_of(party: dict[str, Any]) -> dict[str, Any]:
    return {k: party.get(k, "") for k in ("addressLine1", "city", "state", "country", "postalCode")}


def _country_of(party: dict[str, Any]) -> Country:
    return next((c for c in COUNTRIES if c.code == party.get("country")), COUNTRIES[0])
