"""GP's Service Based Architecture (REST, GP 2015+): customers and vendors (with their contacts) read whole from
``Sales/Customers`` and ``Purchasing/Vendors`` under ``sba_url``, the body's property names mapped back to the
Web Services names (``sba_fields``), the list found under ``sba_list_key``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from mlconnector.config import SystemConfig
from mlconnector.errors import AuthError, ConfigError, RemoteError
from mlconnector.http import json_body
from mlconnector.systems.base import Record
from mlconnector.systems.gp.calls import PacedHttp
from mlconnector.systems.gp.records import Shapes

SBA_RESOURCES = {"customers": "Sales/Customers", "vendors": "Purchasing/Vendors",
                 "vendorContacts": "Purchasing/Vendors"}
SBA_EXAMPLE = "https://gpserver/GPService/Tenants(DefaultTenant)/Companies(Fabrikam%2C%20Inc.)/"
_SBA_COMPANY = re.compile(r"^(?P<root>.*?/Tenants\([^)/]*\))/Companies\((?P<company>[^/]*)\)/?$", re.I)


def sba_url_of(system: SystemConfig) -> str:
    """sba_url as the company's root, the company name inside ``Companies(...)`` URL-encoded once."""
    url = str(system.setting("sba_url", required=True, type_=str)).strip()
    match = _SBA_COMPANY.match(url)
    if not urlsplit(url).scheme or match is None:
        raise ConfigError(f"systems.{system.name}.sba_url must be the company's SBA address, e.g. {SBA_EXAMPLE} "
                          "(the company's name, not its database id)")
    company = quote(unquote(match.group("company")), safe="")
    return f"{match.group('root')}/Companies({company})/"


def company_of(sba_url: str) -> str:
    """The company's name in an sba_url."""
    match = _SBA_COMPANY.match(sba_url)
    return unquote(match.group("company")) if match else ""


class Sba:
    """Reads through SBA: a resource's every record in one GET, or one record by its key."""

    def __init__(self, name: str, http: PacedHttp, shapes: Shapes, *, sba_url: str, sba_list_key: str | None,
                 sba_names: dict[str, str], user: str | None) -> None:
        self.name = name
        self._http = http.request
        self.sba_url = sba_url
        self.sba_company = company_of(sba_url)
        self.sba_list_key = sba_list_key
        self._sba_names = sba_names
        self.user = user
        self._customer, self._vendor, self._vendor_contacts = shapes.customer, shapes.vendor, shapes.vendor_contacts

    def fetch(self, path: str) -> Any:
        """GET ``path`` under sba_url (or an absolute URL): the JSON answer, None for 404; errors by status."""
        url = path if "://" in path else self.sba_url + path
        response = self._http("GET", url, idempotent=True, headers={"Accept": "application/json"})
        if response.status_code == 404:
            return None
        if response.status_code == 403:
            raise AuthError(self.name, f"GET {path} refused (HTTP 403): the account "
                            f"{self.user or '(the current user)'} authenticated but GP refused it: map it to a GP "
                            f"user (User Setup, Windows Account) with access to company {self.sba_company!r} and "
                            "the windows it reads (Customer and Vendor Maintenance)")
        if response.status_code >= 400:
            text = " ".join(response.text.split())[:200]
            raise RemoteError(self.name, response.status_code, "", f"GET {path}: {text}",
                              retryable=response.status_code >= 500)
        if "://" in path:
            return response.text
        body = json_body(response)
        if body is None:
            raise RemoteError(self.name, response.status_code, "", f"GET {path} did not answer with JSON; is "
                              f"sba_url the company's SBA address ({SBA_EXAMPLE})?")
        return self.renamed(body)

    def renamed(self, value: Any) -> Any:
        """The body with its property names (at every level) mapped back to the Web Services names."""
        if isinstance(value, Mapping):
            return {self._sba_names.get(k, k): self.renamed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.renamed(v) for v in value]
        return value

    def rows(self, entity: str) -> list[Mapping[str, Any]]:
        """Every record of a resource, in one GET (SBA documents no filter or paging)."""
        path = SBA_RESOURCES[entity]
        body = self.fetch(path)
        if body is None:
            raise ConfigError(f"{self.name}: GET {path} answered 404; check sba_url (tenant, and the company's name "
                              f"URL-encoded, e.g. {SBA_EXAMPLE}), or use transport = \"webservices\"")
        rows = body.get(self.sba_list_key) if self.sba_list_key and isinstance(body, Mapping) else body
        if not isinstance(rows, list):
            found = f"an object with {', '.join(sorted(map(str, body)))}" if isinstance(body, Mapping) else "no list"
            raise ConfigError(f"{self.name}: GET {path} answered {found} where a list of records was expected: SBA's "
                              f"body is not documented; set sba_list_key in [systems.{self.name}] to the property "
                              "holding the records")
        return [row for row in rows if isinstance(row, Mapping)]

    def records(self, entity: str, stamp: datetime | None = None) -> list[Record]:
        if entity == "customers":
            return [self._customer(raw, stamp) for raw in self.rows(entity)]
        vendors = [self._vendor(raw, stamp) for raw in self.rows(entity)]
        return vendors if entity == "vendors" else [c for v in vendors for c in self._vendor_contacts(v)]

    def one(self, entity: str, record_id: str) -> Mapping[str, Any] | None:
        found = self.fetch(f"{SBA_RESOURCES[entity]}({quote(record_id, safe='')})")
        return found if isinstance(found, Mapping) else None

    def get(self, entity: str, id: str) -> Record | None:
        """The current record by its key; None when GP no longer has it."""
        owner_id, _, address_id = id.partition("/") if entity == "vendorContacts" else (id, "", "")
        raw = self.one(entity, owner_id)
        if raw is None:
            return None
        if entity == "customers":
            return self._customer(raw, None)
        vendor = self._vendor(raw, None)
        if entity == "vendors":
            return vendor
        return next((c for c in self._vendor_contacts(vendor) if c.get("addressId") == address_id), None)
