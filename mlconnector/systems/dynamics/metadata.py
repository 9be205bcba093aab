"""The fields each entity's records carry, from the service's own metadata document, read once: API v2.0's
``/api/v2.0/$metadata`` (https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/api-reference/v2.0/,
"the metadata document") or NAV's ``/ODataV4/$metadata``, which describes every published page web service and so
the controls a page extension adds (https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/
webservices/return-obtain-service-metadata-edmx-document). Page controls are named as records name them: API v2.0
names where the pages map them (``PAGE_FIELDS``), the page's own otherwise; and the fields the connector adds to
every record of an entity (its id, its stamp, a document's lines, a contact's relations)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlconnector.systems.csdl import entity_set_fields
from mlconnector.systems.dynamics.api import API_ENTITIES
from mlconnector.systems.dynamics.client import DynamicsApi
from mlconnector.systems.dynamics.pages import PAGE_FIELDS

# Fields the connector sets on records read through pages, beyond the page's controls.
ADDED = ("id", "lastModifiedDateTime")
ADDED_BY_ENTITY = {"salesOrders": ("customerId", "totalAmountExcludingTax", "salesOrderLines"),
                   "postedSalesInvoices": ("customerId", "invoiceDate", "status", "salesInvoiceLines"),
                   "purchaseOrders": ("vendorId", "purchaseOrderLines"),
                   "contacts": ("relations", "businessRelation")}


class FieldLists:
    """One metadata document per connector, read at the first question."""

    def __init__(self, client: DynamicsApi, mode: str, services: Mapping[str, Any]) -> None:
        self.client = client
        self.mode = mode
        self.services = services
        self._sets: dict[str, frozenset[str]] | None = None

    def _document(self) -> dict[str, frozenset[str]]:
        if self._sets is None:
            endpoint = self.client.endpoint
            url = f"{endpoint.api if self.mode == 'api' else endpoint.odata}/$metadata"
            response = self.client.call("GET", url)
            if response.status_code != 200:
                raise self.client.fail(response, "reading $metadata")
            self._sets = entity_set_fields(self.client.name, response.text)
        return self._sets

    def field_names(self, entity: str) -> frozenset[str] | None:
        """None for what records are not read from one entity set or page as they are (journal lines, dimensions):
        their fields are the connector's own."""
        if entity not in (API_ENTITIES if self.mode == "api" else PAGE_FIELDS):
            return None
        sets = self._document()
        if self.mode == "api":
            names = set(sets.get(API_ENTITIES[entity][0], ()))
            if entity == "contacts":
                names |= {"relations", "businessRelation"}
            return frozenset(names)
        controls = sets.get(str(self.services.get(entity, entity)))
        if controls is None:
            return frozenset()  # the page is not published: none of its fields can be read or written
        renamed = PAGE_FIELDS.get(entity, {})
        return frozenset({renamed.get(c, c) for c in controls} | set(ADDED) | set(ADDED_BY_ENTITY.get(entity, ())))
