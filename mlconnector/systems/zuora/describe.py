"""The fields of Zuora's objects as records name them, from the Describe operation (``GET /v1/describe/{object}``,
https://developer.zuora.com/v1-api-reference/api/operation/GET_Describe/): an XML document of ``<field>`` elements,
each with its API ``<name>``, custom fields (``Region__c``) among them. Describe names a field as the SOAP and export
APIs do (``AccountNumber``); Object Query, which records come from, names it with a lower-case first letter
(``accountNumber``), custom fields alike in both. Object names: "API object names for Describe"
(https://developer.zuora.com/v1-api-reference/api-object-names/)."""

from __future__ import annotations

from xml.etree import ElementTree

from mlconnector.errors import RemoteError
from mlconnector.systems.zuora.client import ZuoraClient

OBJECTS = {"accounts": "Account", "products": "Product", "subscriptions": "Subscription", "invoices": "Invoice",
           "payments": "Payment"}
# Fields the connector's records carry beyond the object's own (expansions, and what records.py adds).
ADDED = {"accounts": ("billTo", "billToContact"), "products": ("sku", "price", "currency", "productRatePlans"),
         "subscriptions": ("ratePlans",), "invoices": ("invoiceItems", "subscriptionNumbers"),
         "payments": ("paymentApplications", "invoiceIds")}


def record_name(name: str) -> str:
    return name if name.endswith("__c") else name[:1].lower() + name[1:]


class Describe:
    """Each object described once per connector."""

    def __init__(self, client: ZuoraClient) -> None:
        self.client = client
        self._names: dict[str, frozenset[str]] = {}

    def field_names(self, entity: str) -> frozenset[str]:
        if entity not in self._names:
            name = OBJECTS[entity]
            response = self.client.call("GET", f"/v1/describe/{name}", headers={"Accept": "text/xml"})
            if response.status_code != 200:
                raise RemoteError(self.client.name, response.status_code, message=f"describing {name}")
            try:
                root = ElementTree.fromstring(response.text)
            except ElementTree.ParseError as exc:
                raise RemoteError(self.client.name, 200, message=f"describing {name}: not XML ({exc})") from None
            fields = [record_name(text) for field in root.iter("field")
                      if (text := (field.findtext("name") or "").strip())]
            self._names[entity] = frozenset([*fields, *ADDED.get(entity, ())])
        return self._names[entity]
