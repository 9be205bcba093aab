"""The ERP emulators' metadata documents, as metadata-driven clients read them, checked against Microsoft's own
descriptions: Business Central API v2.0 ``$metadata`` against the v2.0 resource reference
(tests/specs/dynamics/bc), F&O ``/data/$metadata`` and the metadata service against the Common Data Model entity
definitions (tests/specs/dynamics/fo-cdm)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx

from mlconnector.sandbox.common import InProcessTransport
from mlconnector.sandbox.dynamics import create_app as create_dynamics
from mlconnector.sandbox.finops import create_app as create_finops

SPECS = Path(__file__).resolve().parents[1] / "specs" / "dynamics"
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
TENANT, CLIENT, SECRET = "0f9c5c1e-2f52-4d7b-9b0e-3e1f3f0a7a11", "7d1e8a52-4c3b-4f4e-9a57-5b0bf2d3c0d2", "s3cret"
BC_SCOPE = "https://api.businesscentral.dynamics.com/.default"
FO = "https://usmf-test.operations.dynamics.com"


def documented_bc(resource: str) -> set[str]:
    resources = json.loads((SPECS / "bc" / "api-v2.0-resources.from-docs.json").read_text(encoding="utf-8"))
    return {p["name"] for p in resources["resources"][resource]["properties"]}


def cdm_attributes(aot: str) -> set[str] | None:
    path = SPECS / "fo-cdm" / f"{aot}.cdm.json"
    if not path.exists():
        return None
    definition = json.loads(path.read_text(encoding="utf-8"))["definitions"][0]
    return {a["name"] for a in definition.get("hasAttributes", []) if isinstance(a, dict) and "name" in a}


def entity_types(xml: str) -> dict[str, dict[str, list[str]]]:
    root = ET.fromstring(xml)
    types = {}
    for entity in root.iter(f"{EDM}EntityType"):
        types[entity.get("Name")] = {
            "keys": [r.get("Name") for r in entity.iter(f"{EDM}PropertyRef")],
            "properties": [p.get("Name") for p in entity.findall(f"{EDM}Property")],
            "navigation": [n.get("Name") for n in entity.findall(f"{EDM}NavigationProperty")]}
    return types


def bc_client(*, demo: bool = False) -> httpx.Client:
    app = create_dynamics()
    app.state.dynamics.register_app(TENANT, CLIENT, SECRET)
    if demo:
        app.state.dynamics.seed_demo()
    client = httpx.Client(transport=InProcessTransport(app), base_url="https://api.businesscentral.dynamics.com")
    token = client.post(f"/{TENANT}/oauth2/v2.0/token", data={"grant_type": "client_credentials",
                                                              "client_id": CLIENT, "client_secret": SECRET,
                                                              "scope": BC_SCOPE}).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_business_central_metadata_describes_the_documented_resources() -> None:
    client = bc_client()
    try:
        answer = client.get(f"/v2.0/{TENANT}/production/api/v2.0/$metadata")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/xml")
        types = entity_types(answer.text)
        root = ET.fromstring(answer.text)
        sets = {s.get("Name"): s.get("EntityType") for s in root.iter(f"{EDM}EntitySet")}
        assert sets["customers"] == "Microsoft.NAV.customer" and sets["companies"] == "Microsoft.NAV.company"
        for name in ("customer", "vendor", "item", "contact", "salesOrder", "salesOrderLine", "salesInvoice"):
            resource = name.lower()
            assert types[name]["keys"] == ["id"]
            assert set(types[name]["properties"]) <= documented_bc(resource), name
            assert {"id", "number" if "Line" not in name else "sequence"} <= set(types[name]["properties"])
        assert "salesOrderLines" in types["salesOrder"]["navigation"]
        assert "customers" in types["company"]["navigation"]
        unauthenticated = httpx.Client(transport=client._transport, base_url=str(client.base_url))
        assert unauthenticated.get(f"/v2.0/{TENANT}/production/api/v2.0/$metadata").status_code == 401
    finally:
        client.close()


def test_business_central_expands_a_customers_setup_references_as_microsofts_samples_do() -> None:
    """GET customers?$expand=currency,paymentTerm,paymentMethod,shipmentMethod: each a nested entity (null where
    the customer names none), with the documented properties, and declared in $metadata as single-valued
    navigations (the resources' own sets are served too)."""
    client = bc_client(demo=True)
    try:
        api = f"/v2.0/{TENANT}/production/api/v2.0"
        types = entity_types(client.get(f"{api}/$metadata").text)
        for name in ("currency", "paymentTerm", "paymentMethod", "shipmentMethod"):
            assert set(types[name]["properties"]) == documented_bc(name)
            assert name in types["customer"]["navigation"]
        [company] = client.get(f"{api}/companies").json()["value"]
        base = f"{api}/companies({company['id']})"
        answer = client.get(f"{base}/customers", params={
            "$expand": "currency,paymentTerm,paymentMethod,shipmentMethod", "$filter": "number eq 'C00010'"})
        assert answer.status_code == 200, answer.text
        [adatum] = answer.json()["value"]
        assert adatum["paymentTerm"]["code"] == "30 DAYS" and adatum["paymentTerm"]["id"] == adatum["paymentTermsId"]
        assert adatum["paymentMethod"]["code"] == "BANK" and adatum["shipmentMethod"]["code"] == "EXW"
        assert adatum["currency"] is None  # the local currency: no currency row
        codes = {t["code"] for t in client.get(f"{base}/paymentTerms").json()["value"]}
        assert codes == {"30 DAYS", "14 DAYS"}
        unknown = client.get(f"{base}/customers", params={"$expand": "salesperson"})
        assert unknown.status_code == 400
    finally:
        client.close()


def test_nav_page_metadata_describes_every_published_page_as_its_rows_show_it() -> None:
    """ODataV4/$metadata: an entity type per published service, keyed as its URLs are, with every control a row of
    it carries (and nothing it does not); a page unpublished is gone from it."""
    app = create_dynamics()
    sandbox = app.state.dynamics
    sandbox.set_web_service_user("ADMIN", "web-service-key")
    company = sandbox.seed_demo()
    client = httpx.Client(transport=InProcessTransport(app), base_url="http://nav:7048/DynamicsNAV110/ODataV4",
                          auth=("ADMIN", "web-service-key"))
    try:
        answer = client.get("/$metadata")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/xml")
        types = entity_types(answer.text)
        sets = {s.get("Name") for s in ET.fromstring(answer.text).iter(f"{EDM}EntitySet")}
        assert sets == {"Company", "ContactBusinessRelations", *sandbox.nav_services}
        assert types["Customer"]["keys"] == ["No"] and types["SalesOrder"]["keys"] == ["Document_Type", "No"]
        assert "SalesOrderSalesLines" in types["SalesOrder"]["navigation"]
        for service in ("Customer", "Vendor", "Item", "Contact", "SalesOrder", "PostedSalesInvoice"):
            [row] = client.get(f"/Company('{company}')/{service}", params={"$top": 1}).json()["value"]
            shown = {k for k in row if not k.startswith("@odata")}
            assert set(types[service]["properties"]) == shown, service
        sandbox.unpublish_page("Item")
        assert "Item" not in entity_types(client.get("/$metadata").text)
        assert client.get("/$metadata", auth=("ADMIN", "wrong")).status_code == 401
    finally:
        client.close()


def fo_client() -> httpx.Client:
    app = create_finops(resource=FO)
    app.state.finops.register_app(TENANT, CLIENT, SECRET)
    client = httpx.Client(transport=InProcessTransport(app), base_url=FO)
    token = client.post(f"/{TENANT}/oauth2/v2.0/token", data={"grant_type": "client_credentials",
                                                              "client_id": CLIENT, "client_secret": SECRET,
                                                              "scope": f"{FO}/.default"}).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_finance_and_operations_metadata_matches_the_common_data_model_entities() -> None:
    client = fo_client()
    try:
        answer = client.get("/data/$metadata")
        assert answer.status_code == 200
        types = entity_types(answer.text)
        assert types["CustomerV3"]["keys"] == ["dataAreaId", "CustomerAccount"]
        entities = client.get("/Metadata/DataEntities").json()["value"]
        by_collection = {e["PublicCollectionName"]: e for e in entities}
        customers = by_collection["CustomersV3"]
        assert (customers["Name"], customers["PublicEntityName"], customers["DataServiceEnabled"]) == (
            "CustCustomerV3Entity", "CustomerV3", True)
        checked = 0
        for entity in entities:
            attributes = cdm_attributes(entity["Name"])
            if attributes is None:
                continue
            properties = set(types[entity["PublicEntityName"]]["properties"]) - {"dataAreaId"}
            assert properties <= attributes, (entity["Name"], properties - attributes)
            checked += 1
        assert checked >= 6
        public = client.get("/Metadata/PublicEntities('CustomerV3')").json()
        assert public["EntitySetName"] == "CustomersV3"
        keys = [p["Name"] for p in public["Properties"] if p["IsKey"]]
        assert keys == ["dataAreaId", "CustomerAccount"]
        party = next(p for p in public["Properties"] if p["Name"] == "PartyType")
        assert (party["DataType"], party["TypeName"]) == ("Enum", "DirPartyType")
        enums = {e["Name"]: e for e in client.get("/Metadata/PublicEnumerations").json()["value"]}
        assert [m["Name"] for m in enums["NoYes"]["Members"]] == ["No", "Yes"]
        assert client.get("/Metadata/PublicEntities('Nope')").status_code == 404
        client.headers.pop("Authorization")
        assert client.get("/Metadata/DataEntities").status_code == 401
    finally:
        client.close()


# Every entity set the BC emulator serves below companies({id}), by its documented resource name.
SERVED_BC_SETS = {
    "customers": "customer", "vendors": "vendor", "contacts": "contact", "items": "item",
    "salesOrders": "salesOrder", "salesOrderLines": "salesOrderLine", "salesInvoices": "salesInvoice",
    "salesInvoiceLines": "salesInvoiceLine", "purchaseOrders": "purchaseOrder", "purchaseOrderLines": "purchaseOrderLine",
    "currencies": "currency", "paymentTerms": "paymentTerm", "paymentMethods": "paymentMethod",
    "shipmentMethods": "shipmentMethod", "companyInformation": "companyInformation",
    "customerPaymentJournals": "customerPaymentJournal", "customerPayments": "customerPayment",
    "generalLedgerEntries": "generalLedgerEntry", "defaultDimensions": "defaultDimension"}


def test_business_central_metadata_lists_every_entity_set_the_emulator_serves_with_documented_properties() -> None:
    client = bc_client(demo=True)
    resources = json.loads((SPECS / "bc" / "api-v2.0-resources.from-docs.json").read_text(encoding="utf-8"))
    documented = {name.lower(): {p["name"] for p in r["properties"]} for name, r in resources["resources"].items()}
    try:
        api = f"/v2.0/{TENANT}/production/api/v2.0"
        answer = client.get(f"{api}/$metadata")
        types = entity_types(answer.text)
        sets = {s.get("Name"): s.get("EntityType") for s in ET.fromstring(answer.text).iter(f"{EDM}EntitySet")}
        [company] = client.get(f"{api}/companies").json()["value"]
        for set_name, entity in SERVED_BC_SETS.items():
            assert client.get(f"{api}/companies({company['id']})/{set_name}").status_code == 200, set_name
            assert sets.get(set_name) == f"Microsoft.NAV.{entity}", set_name
            assert set_name in types["company"]["navigation"], set_name
            assert types[entity]["properties"] and set(types[entity]["properties"]) <= documented[entity.lower()]
        # and nothing is listed that is not served (subscriptions live outside companies)
        assert set(sets) - set(SERVED_BC_SETS) == {"companies", "subscriptions"}
        assert client.get(f"{api}/subscriptions").status_code == 200
        assert set(types["subscription"]["properties"]) <= documented["subscriptions"]
        assert set(types["defaultDimension"]["properties"]) == documented["defaultdimension"] - {"lastModifiedDateTime"}
        for parent, nested in (("customer", "defaultDimensions"), ("customerPaymentJournal", "customerPayments"),
                               ("contact", "contactInformation")):
            assert nested in types[parent]["navigation"], (parent, nested)
        assert client.get(f"{api}/companies({company['id']})/journals").status_code == 404   # not served, not listed
        assert "journals" not in sets
    finally:
        client.close()
