"""Business Central's API v2.0 (``/api/v2.0/companies({id})/...``): records read by lastModifiedDateTime (the
documents with their lines expanded), every id, a record by id, rows looked up and sent for writes (POST, or
PATCH with If-Match)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Literal

import httpx

from mlconnector.errors import ConfigError
from mlconnector.systems.base import Record, WriteResult
from mlconnector.systems.dynamics.client import DynamicsApi
from mlconnector.systems.dynamics.odata import (Pager, _as_stored, _business_relation, _clean, _quote_key, odata_time,
                                                parse_time)

# Customer and vendor numbers kept for friendlier messages about contacts (see _number_of): enough for those,
# without holding 100,000 of them through a first load.
MAX_NUMBERS_KEPT = 10_000

# The entities the pairs use -> (API v2.0 entity set, its lines navigation, extra filter).
API_ENTITIES: dict[str, tuple[str, str | None, str | None]] = {
    "customers": ("customers", None, None),
    "vendors": ("vendors", None, None),
    "contacts": ("contacts", None, None),
    "items": ("items", None, None),
    "salesOrders": ("salesOrders", "salesOrderLines", None),
    "salesInvoices": ("salesInvoices", "salesInvoiceLines", None),
    # Posted invoices are salesInvoices past Draft / In Review (BC shows posted ones as Open, Paid ...).
    "postedSalesInvoices": ("salesInvoices", "salesInvoiceLines", "status ne 'Draft' and status ne 'In Review'"),
    "purchaseOrders": ("purchaseOrders", "purchaseOrderLines", None),
}


class ApiV2:
    """Reads and the rows writes need, through API v2.0."""

    def __init__(self, api: DynamicsApi, pager: Pager, *, page_size: int, document_page_size: int) -> None:
        self.name = api.name
        self.page_size = page_size
        self.document_page_size = document_page_size
        self.company_name = api.company_name
        self._call, self._fail, self.company_url = api.call, api.fail, api.company_url
        self._read_failure, self._api_unavailable = api.read_failure, api.api_unavailable
        self._company_id = api.company_id
        self._pages = pager.pages
        self._numbers: dict[tuple[str, str], str] = {}
        self._home_currency: str | None = None

    def spec(self, entity: str) -> tuple[str, str | None, str | None]:
        try:
            return API_ENTITIES[entity]
        except KeyError:
            raise ConfigError(f"{self.name}: unknown entity {entity!r}; known: {', '.join(API_ENTITIES)}") from None

    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        """Records modified in [since, until), ascending by (lastModifiedDateTime, id); with ``since`` None, rows
        never stamped (0001-01-01) come too, first, with modified None."""
        set_name, lines, extra = self.spec(entity)
        terms = [f"({extra})"] if extra else []
        if since is not None:
            terms.append(f"lastModifiedDateTime ge {odata_time(since)}")
        if until is not None:
            terms.append(f"lastModifiedDateTime lt {odata_time(until, up=True)}")
        params = {"$orderby": "lastModifiedDateTime,id"}
        if terms:
            params["$filter"] = " and ".join(terms)
        expand = self._expand(entity, lines)
        if expand:
            params["$expand"] = expand
        # A first read of documents with their lines (every one of them) asks for smaller pages: such a page is
        # several times wider than a customer's, and each page's text is held while its rows are taken.
        size = min(self.page_size, self.document_page_size) if lines and since is None else None
        for row in self._pages(f"{self.company_url()}/{set_name}", params, size, ramp=since is None and size is None,
                               count_as=entity):
            yield self._api_record(entity, row)

    def record_ids(self, entity: str) -> Iterator[str]:
        """Every id, ``$select=id`` at the connector's page size."""
        set_name, _, extra = self.spec(entity)
        params = {"$select": "id"} | ({"$filter": extra} if extra else {})
        for row in self._pages(f"{self.company_url()}/{set_name}", params):
            yield str(row["id"])

    @staticmethod
    def _expand(entity: str, lines: str | None) -> str | None:
        return "contactInformation" if entity == "contacts" else lines

    def _api_record(self, entity: str, row: Mapping[str, Any]) -> Record:
        data = _clean(row)
        if entity in ("customers", "vendors") and data.get("number") and len(self._numbers) < MAX_NUMBERS_KEPT:
            self._numbers[("Customer" if entity == "customers" else "Vendor", str(data["id"]))] = str(data["number"])
        if entity == "contacts":
            info = data.pop("contactInformation", None) or []
            data["relations"] = [{"type": i.get("relatedType"), "id": i.get("relatedId"),
                                  "number": self._number_of(str(i.get("relatedType")), str(i.get("relatedId")))}
                                 for i in info if i.get("relatedType") in ("Customer", "Vendor")]
            data.update(_business_relation(data["relations"]))
        lines = API_ENTITIES[entity][1] if entity in API_ENTITIES else None
        if lines and isinstance(data.get(lines), list):  # the only list a row carries: its lines, when expanded
            data[lines] = [_clean(v) if isinstance(v, Mapping) else v for v in data[lines]]
        return Record(self.name, entity, str(data["id"]), parse_time(data.get("lastModifiedDateTime")), data)

    def _number_of(self, related_type: str, related_id: str) -> str | None:
        """The number of a contact's customer or vendor, when this connector has read that record (the
        customers flow runs first). contactInformation carries only the id, which is what links use; the
        number only makes messages friendlier, so it is never worth an API call per contact."""
        return self._numbers.get((related_type, related_id))

    def get(self, entity: str, id: str) -> Record | None:
        """The full current record with its lines (contacts: with relations); None when it is gone."""
        set_name, lines, extra = self.spec(entity)
        expand = self._expand(entity, lines)
        response = self._call("GET", f"{self.company_url()}/{set_name}({id})",
                              params={"$expand": expand} if expand else None)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"GET {set_name}({id})")
        record = self._api_record(entity, response.json())
        if extra and record.get("status") in ("Draft", "In Review"):
            return None  # a draft is not (or no longer) a posted invoice
        return record

    def find(self, entity: str, field: str, value: Any) -> list[Record]:
        """The records whose ``field`` equals ``value`` (compared as the server's collation does)."""
        set_name = self.spec(entity)[0]
        params = {"$filter": f"{field} eq {_quote_key(str(value))}"}
        return [self._api_record(entity, row) for row in self._pages(f"{self.company_url()}/{set_name}", params)]

    def collection_url(self, entity: str) -> str:
        return f"{self.company_url()}/{self.spec(entity)[0]}"

    def home_currency(self) -> str | None:
        """The company's currency, companyInformation's currencyCode ("the default currency code for the company",
        https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/resources/
        dynamics_companyinformation), read once."""
        if self._home_currency is None:
            url = f"{self.company_url()}/companyInformation"
            response = self._call("GET", url)
            if response.status_code != 200:
                raise self._read_failure(response, url)
            rows = response.json().get("value") or [{}]
            self._home_currency = str(rows[0].get("currencyCode") or "")
        return self._home_currency or None

    def fixed_fields(self, entity: str) -> str | None:
        """Every entity is one of Microsoft's API v2.0 pages, and "a page of type API page can't be extended by
        creating a page extension object. Instead, create a new API page"
        (https://learn.microsoft.com/dynamics365/business-central/dev-itpro/developer/devenv-page-ext-object): a
        table extension's field shows on the card page and its page web service, never on API v2.0's entity."""
        return (f"BC's standard API v2.0 {entity} cannot carry a table extension's field (API pages cannot be "
                f"extended; a custom API page would); use page web services (systems.{self.name}.api = \"odata\", "
                "the card page published with a page extension)")

    # -- what ping asks ----------------------------------------------------------------------------------------
    def confirm_company(self) -> str:
        """The company's id, looked up by its name (a ConfigError names the companies there when none matches)."""
        return f"company {self.company_name!r} ({self._company_id()})"

    def probe(self, entity: str) -> None:
        """One row of ``entity`` at most, to prove it is readable (maxpagesize=1; the nextLink is not followed)."""
        response = self._call("GET", self.collection_url(entity), headers={"Prefer": "odata.maxpagesize=1"})
        if response.status_code != 200:
            raise self._api_unavailable(response, entity)

    # -- what writes need ------------------------------------------------------------------------------------------
    def row_by_id(self, entity: str, id: str) -> dict[str, Any] | None:
        set_name = self.spec(entity)[0]
        response = self._call("GET", f"{self.company_url()}/{set_name}({id})")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"read {entity} {id}")
        return response.json()

    def row_by_key(self, entity: str, key: str, value: str) -> dict[str, Any] | None:
        set_name = self.spec(entity)[0]
        response = self._call("GET", f"{self.company_url()}/{set_name}",
                              params={"$filter": f"{key} eq {_quote_key(value)}"})
        if response.status_code != 200:
            raise self._fail(response, f"look up {entity} {key} = {value}")
        rows = response.json().get("value") or []
        return rows[0] if rows else None

    def send(self, entity: str, found: Mapping[str, Any] | None, body: dict[str, Any]) -> httpx.Response:
        set_name = self.spec(entity)[0]
        if found is None:
            return self._call("POST", f"{self.company_url()}/{set_name}", json=body, idempotent=False)
        return self._call("PATCH", f"{self.company_url()}/{set_name}({found['id']})", json=body, idempotent=True,
                          headers={"If-Match": str(found.get("@odata.etag") or "*")})

    def written(self, entity: str, row: Mapping[str, Any], action: Literal["create", "update"]) -> WriteResult:
        """The record as the write's answer tells it, for WriteResult.stored."""
        record = self._api_record(entity, row)
        return WriteResult(action, record.id, record.modified, stored=_as_stored(record))

    def customer_dimensions(self, number: str | None = None) -> Iterator[Record]:
        """Customers' default dimensions, one record per customer and dimension code (id "C00010/CUSTOMERGROUP", as
        page 540 gives them): the customers read with their defaultDimensions navigation expanded, one read for all
        (https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/resources/
        dynamics_customer lists it; its rows: .../resources/dynamics_defaultdimension). A value that is a
        customer's number names that customer's id too (``valueCustomerId``: records are linked by id here), so
        the rows are handed on once the read has seen every customer."""
        params = {"$select": "id,number", "$expand": "defaultDimensions"}
        if number:
            params["$filter"] = f"number eq {_quote_key(number)}"
        ids: dict[str, str] = {}
        found: list[tuple[str, str, dict[str, Any]]] = []
        for row in self._pages(f"{self.company_url()}/customers", params):
            customer = str(row.get("number") or "")
            if not number:
                ids[customer.casefold()] = str(row.get("id"))
            found += [(customer, str(row.get("id")), d) for d in row.get("defaultDimensions") or []]
        for customer, customer_id, dimension in found:
            code, value = str(dimension.get("dimensionCode") or ""), str(dimension.get("dimensionValueCode") or "")
            value_customer = ids.get(value.casefold()) if not number else self._customer_id(value)
            yield Record(self.name, "customerDimensions", f"{customer}/{code}", None, {
                "id": f"{customer}/{code}", "customerNumber": customer, "customerId": customer_id,
                "dimensionCode": code, "dimensionValue": value or None, "valueCustomerId": value_customer})

    def _customer_id(self, number: str) -> str | None:
        if not number:
            return None
        rows = self._pages(f"{self.company_url()}/customers",
                           {"$select": "id,number", "$filter": f"number eq {_quote_key(number)}"})
        return next((str(row["id"]) for row in rows), None)

    def company_contact(self, kind: str, related: str) -> str | None:
        """The number of the company contact whose business relation is this customer or vendor (by id): company
        contacts' contactInformation."""
        rows = self._pages(f"{self.company_url()}/contacts",
                           {"$filter": "type eq 'Company'", "$expand": "contactInformation"})
        for row in rows:
            for info in row.get("contactInformation") or []:
                if info.get("relatedType") == kind and str(info.get("relatedId")) == related:
                    return str(row.get("number"))
        return None
