"""Records from both modes (API v2.0 and NAV page web services) use only the property names Microsoft documents for
the API v2.0 resources (tests/specs/dynamics/bc/api-v2.0-resources.from-docs.json), plus ``relations`` on contacts
(and ``businessRelation``, the first of them), and the page controls API v2.0 has no property for, under their page names (``PAGE_ONLY_FIELDS``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlconnector.systems.dynamics import API_ENTITIES, LINE_FIELDS, PAGE_FIELDS, PAGE_ONLY_FIELDS

from tests.systems.dynamics_env import DynamicsEnv, make_env

SPEC = Path(__file__).parents[1] / "specs" / "dynamics" / "bc" / "api-v2.0-resources.from-docs.json"
RESOURCE = {"customers": "customer", "vendors": "vendor", "contacts": "contact", "items": "item",
            "salesOrders": "salesorder", "postedSalesInvoices": "salesinvoice", "purchaseOrders": "purchaseorder"}
LINES = {"salesOrderLines": "salesorderline", "salesInvoiceLines": "salesinvoiceline",
         "purchaseOrderLines": "purchaseorderline"}


def documented(resource: str) -> set[str]:
    resources = json.loads(SPEC.read_text(encoding="utf-8"))["resources"]
    return {p["name"] for p in resources[resource]["properties"]}


@pytest.fixture(params=["bc-onprem", "nav"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DynamicsEnv]:
    made = make_env(request.param, tmp_path)
    yield made
    made.close()


@pytest.mark.parametrize("entity", list(RESOURCE))
def test_record_fields_are_documented_api_v2_properties(env: DynamicsEnv, entity: str) -> None:
    connector = env.connector()
    records = list(connector.changes(entity, None))
    assert records
    allowed = documented(RESOURCE[entity]) | {"relations", "businessRelation"} | set(LINES) | set(PAGE_ONLY_FIELDS.get(entity, ()))
    for record in records:
        assert set(record.data) - allowed == set(), entity
        for lines_name, line_resource in LINES.items():
            for line in record.get(lines_name) or []:
                assert set(line) - documented(line_resource) == set(), lines_name


def test_page_field_maps_name_documented_properties() -> None:
    for entity, names in PAGE_FIELDS.items():
        assert set(names.values()) - documented(RESOURCE[entity]) - {"documentType"} == set(), entity
    lines = documented("salesorderline") | documented("purchaseorderline")
    assert set(LINE_FIELDS.values()) - lines == set()
    assert {API_ENTITIES[e][1] for e in RESOURCE if API_ENTITIES[e][1]} == set(LINES)


def test_sandbox_contact_information_has_the_documented_shape(tmp_path: Path) -> None:
    env = make_env("bc-onprem", tmp_path)
    try:
        connector = env.connector()
        person = next(r for r in connector.changes("contacts", None) if r["type"] == "Person")
        response = connector.http.request("GET", f"{connector.company_url()}/contacts({person.id})/contactInformation")
        assert response.status_code == 200
        [info] = response.json()["value"]
        assert set(info) == documented("contactinformation")
    finally:
        env.close()
