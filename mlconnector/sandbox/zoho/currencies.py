"""The org's currencies: its home currency and, once an admin activates multi-currency, the others it trades in.

As Zoho documents it:
- An org always has a home currency (``GET /crm/v8/org``: ``iso_code``, ``currency``, ``currency_symbol``;
  ``mc_status`` says whether multi-currency is on: https://www.zoho.com/crm/developer/docs/api/v8/get-org-data.html).
- "The Currency field will be available in the records only after the multi-currency is activated"; on activation
  the home currency becomes every existing record's Currency and their exchange rates are set to 1; multi-currency
  cannot be turned off again; "only active currencies can be entered" in records
  (https://www.zoho.com/crm/help/administration/implement-multiple-currencies.html,
  https://help.zoho.com/portal/kb/articles/how-can-i-activate-multiple-currency-for-my-organization).
- A record's Exchange_Rate converts its amounts to the home currency; a record written without one takes its
  currency's rate at the time.
- ``GET /crm/v8/org/currencies`` lists the org's currencies (``iso_code``, ``name``, ``symbol``, ``exchange_rate``,
  ``is_active``, ``is_base``, ``format`` ...: https://www.zoho.com/crm/developer/docs/api/v8/get-currencies-data.html).

Which modules get the two fields: those with currency fields (Zoho adds Currency where amounts are kept). An admin's
activation and added currencies are the sandbox's ``enable_multi_currency`` and ``add_currency`` (Setup > Company
Details > Currencies); the API's enable and add calls are not served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

NAMES = {"USD": ("US Dollar", "$"), "EUR": ("Euro", "€"), "GBP": ("Pound Sterling", "£"),
         "CAD": ("Canadian Dollar", "$"), "INR": ("Indian Rupee", "₹"), "JPY": ("Japanese Yen", "¥"),
         "AUD": ("Australian Dollar", "$"), "DKK": ("Danish Krone", "kr")}
# The record fields multi-currency adds to each module holding amounts.
FIELDS = ("Currency", "Exchange_Rate")
_ID_BASE = 5725767 * 10**12 + 800001


@dataclass
class Currency:
    iso_code: str
    exchange_rate: Decimal  # units of this currency per unit of the home currency
    id: str
    is_base: bool = False
    is_active: bool = True

    def json(self) -> dict[str, Any]:
        name, symbol = NAMES.get(self.iso_code, (self.iso_code, self.iso_code))
        return {"id": self.id, "iso_code": self.iso_code, "name": f"{name} - {self.iso_code}", "symbol": symbol,
                "exchange_rate": str(self.exchange_rate), "is_active": self.is_active, "is_base": self.is_base,
                "prefix_symbol": True, "created_time": None, "modified_time": None,
                "format": {"decimal_separator": "Period", "thousand_separator": "Comma", "decimal_places": "2"}}


@dataclass
class Currencies:
    home: str = "USD"
    enabled: bool = False  # mc_status
    known: dict[str, Currency] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.known.setdefault(self.home, Currency(self.home, Decimal("1"), str(_ID_BASE), is_base=True))

    def enable(self, home: str) -> None:
        if self.enabled:
            raise ValueError("multi-currency is on already, and its home currency cannot be changed")
        self.known = {}
        self.home = home.upper()
        self.__post_init__()
        self.enabled = True

    def add(self, iso_code: str, exchange_rate: Any, *, active: bool = True) -> Currency:
        if not self.enabled:
            raise ValueError("activate multi-currency first (enable_multi_currency)")
        code = iso_code.upper()
        made = self.known[code] = Currency(code, Decimal(str(exchange_rate)), str(_ID_BASE + len(self.known)),
                                           is_active=active)
        return made

    def active(self, iso_code: Any) -> Currency | None:
        found = self.known.get(str(iso_code or "").upper())
        return found if found is not None and found.is_active else None

    def json(self) -> list[dict[str, Any]]:
        return [c.json() for c in self.known.values()]
