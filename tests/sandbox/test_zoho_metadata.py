"""The Zoho sandbox serves the org's metadata as Zoho documents it (modules, fields with custom/unique/types/lengths,
custom fields and modules created through the API, search), checked against Zoho's own v8 OpenAPI files, and the
org's actual fields decide which writes it takes."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from tests.sandbox.test_zoho_sandbox import Sandbox, make_sandbox
from tests.systems.openapi_check import Specs, json_schema

# (spec file, operation, where) -> why Zoho's spec is wrong there; the sandbox follows the documentation pages.
SPEC_ERRATA = {
    ("fields.json", "POST /crm/v8/settings/fields", "request"):
        "the request schema is the whole field-metadata object (every key required); the create-custom-field page "
        "and Zoho's own request example send field_label, data_type, length and unique only",
    ("fields.json", "PATCH /crm/v8/settings/fields/{field}", "request"):
        "the same: the update page sends only the properties that change",
    ("modules.json", "POST /crm/v8/settings/modules", "request"):
        "the same: the create-custom-module page sends plural_label, singular_label, profiles and api_name",
}


@pytest.fixture
def crm() -> Iterator[Sandbox]:
    for sandbox in make_sandbox():
        sandbox.login()
        yield sandbox


@pytest.fixture
def bare() -> Iterator[Sandbox]:
    for sandbox in make_sandbox(bare=True):
        sandbox.login()
        yield sandbox


def fields_of(crm: Sandbox, module: str) -> dict[str, dict[str, Any]]:
    answer = crm.http.get("/crm/v8/settings/fields", params={"module": module})
    assert answer.status_code == 200
    return {f["api_name"]: f for f in answer.json()["fields"]}


def conforms(specs: Specs, name: str, method: str, path: str, status: int, body: Any,
             request: Any = None) -> list[str]:
    found = specs.operation(name, method, path)
    assert found, f"{method} {path} is not an operation of {name}"
    template, operation = found
    label = f"{method} {template}"
    problems = []
    if request is not None and (name, label, "request") not in SPEC_ERRATA:
        schema = json_schema(operation.get("requestBody"))
        problems += [f"{label} request {e}" for e in specs.check(schema, request, name)]
    documented = operation["responses"]
    assert str(status) in documented, f"{label}: status {status} not documented ({sorted(documented)})"
    node = documented[str(status)]
    while "$ref" in node:
        node, name = specs.resolve(node["$ref"], name)
    problems += [f"{label} {status} {e}" for e in specs.check(json_schema(node), body, name)]
    return problems


def test_metadata_answers_fit_zohos_openapi_files(crm: Sandbox) -> None:
    specs = Specs()
    problems: list[str] = []
    calls = [("modules.json", "GET", "/crm/v8/settings/modules", None),
             ("modules.json", "GET", "/crm/v8/settings/modules/Accounts", None),
             ("fields.json", "GET", "/crm/v8/settings/fields?module=Accounts", None),
             ("fields.json", "GET", "/crm/v8/settings/fields?module=Sales_Orders", None),
             ("fields.json", "POST", "/crm/v8/settings/fields?module=Accounts",
              {"fields": [{"field_label": "ERP Id", "data_type": "text", "length": 40,
                           "unique": {"case_sensitive": False}}]}),
             ("modules.json", "POST", "/crm/v8/settings/modules",
              {"modules": [{"plural_label": "Projects", "singular_label": "Project", "api_name": "Projects",
                            "profiles": [{"id": "5725767000000026011"}]}]})]
    for name, method, url, request in calls:
        answer = crm.http.request(method, url, json=request)
        problems += conforms(specs, name, method, url.split("?")[0], answer.status_code, answer.json(), request)
    field_id = fields_of(crm, "Accounts")["Account_Number"]["id"]
    patch = {"fields": [{"unique": {"case_sensitive": False}}]}
    answer = crm.http.patch(f"/crm/v8/settings/fields/{field_id}", params={"module": "Accounts"}, json=patch)
    problems += conforms(specs, "fields.json", "PATCH", f"/crm/v8/settings/fields/{field_id}", answer.status_code,
                         answer.json(), patch)
    assert problems == [], "\n".join(problems)
    assert specs.unresolved <= {r for r in specs.unresolved if "custom_views" in r or "profiles" in r
                                or "related_lists" in r}


def test_modules_list_standard_and_custom_modules_with_their_labels(crm: Sandbox) -> None:
    modules = {m["api_name"]: m for m in crm.http.get("/crm/v8/settings/modules").json()["modules"]}
    assert {"Accounts", "Contacts", "Products", "Sales_Orders", "Invoices", "Vendors", "Deals"} <= set(modules)
    assert modules["Accounts"]["generated_type"] == "default" and modules["Accounts"]["api_supported"] is True
    assert modules["GL_Accounts"]["generated_type"] == "custom"  # the default org has gp-zoho's custom modules
    assert modules["GL_Accounts"]["plural_label"] == "GL Accounts"
    one = crm.http.get("/crm/v8/settings/modules/Sales_Orders").json()["modules"][0]
    assert one["api_name"] == "Sales_Orders" and "ERP_Number" in {f["api_name"] for f in one["fields"]}


def test_standard_editions_do_not_list_the_inventory_modules() -> None:
    for sandbox in make_sandbox(edition="standard"):
        sandbox.login()
        names = {m["api_name"] for m in sandbox.http.get("/crm/v8/settings/modules").json()["modules"]}
        assert "Accounts" in names and "Sales_Orders" not in names and "Invoices" not in names
        answer = sandbox.http.get("/crm/v8/settings/fields", params={"module": "Invoices"})
        assert answer.status_code == 400 and answer.json()["code"] == "INVALID_MODULE"


def test_fields_carry_data_types_lengths_custom_and_unique_flags(crm: Sandbox) -> None:
    crm.zoho.mark_unique("Accounts", "Account_Number")
    accounts = fields_of(crm, "Accounts")
    number = accounts["Account_Number"]
    assert (number["data_type"], number["json_type"], number["length"]) == ("text", "string", 40)
    assert number["custom_field"] is False and number["unique"] == {"casesensitive": "false"}
    assert accounts["Phone"]["data_type"] == "phone" and accounts["Website"]["data_type"] == "website"
    assert accounts["Account_Name"]["system_mandatory"] is True and accounts["Account_Name"]["length"] == 200
    assert accounts["Parent_Account"]["lookup"]["module"]["api_name"] == "Accounts"
    assert accounts["Credit_Limit"]["data_type"] == "currency" and accounts["Credit_Limit"]["custom_field"] is True
    assert accounts["ERP_Number"]["unique"] == {}  # custom, duplicates allowed until the admin says otherwise
    orders = fields_of(crm, "Sales_Orders")
    assert orders["Ordered_Items"]["data_type"] == "subform" and orders["ERP_Number"]["custom_field"] is True
    missing = crm.http.get("/crm/v8/settings/fields")
    assert missing.status_code == 400 and missing.json()["details"] == {"param_name": "module"}


def test_a_bare_org_lacks_the_pairs_custom_fields_and_refuses_writes_to_them(bare: Sandbox) -> None:
    assert "ERP_Number" not in fields_of(bare, "Sales_Orders")
    assert "GL_Accounts" not in {m["api_name"] for m in bare.http.get("/crm/v8/settings/modules").json()["modules"]}
    answer = bare.http.post("/crm/v8/Accounts", json={"data": [{"Account_Name": "Acme", "ERP_Number": "C1"}]})
    assert answer.status_code == 400
    assert answer.json()["data"][0] == {"code": "INVALID_DATA", "details": {
        "api_name": "ERP_Number", "json_path": "$.data[0].ERP_Number"}, "message": "invalid data", "status": "error"}
    upsert = bare.http.post("/crm/v8/Accounts/upsert", json={"data": [{"Account_Name": "Acme"}],
                                                              "duplicate_check_fields": ["Account_Number"]})
    assert upsert.status_code == 400 and upsert.json()["details"]["api_name"] == "duplicate_check_fields"
    custom_module = bare.http.post("/crm/v8/GL_Accounts", json={"data": [{"Name": "1000"}]})
    assert custom_module.status_code == 400 and custom_module.json()["code"] == "INVALID_MODULE"


def test_numbers_go_to_number_fields_only(crm: Sandbox) -> None:
    answer = crm.http.post("/crm/v8/Accounts", json={"data": [{"Account_Name": "A", "Credit_Limit": "lots"},
                                                              {"Account_Name": "B", "Credit_Limit": "1200.50"}]})
    assert answer.status_code == 207
    refused, added = answer.json()["data"]
    assert refused["details"] == {"expected_data_type": "double", "api_name": "Credit_Limit",
                                  "json_path": "$.data[0].Credit_Limit"}
    assert added["status"] == "success"


def test_custom_fields_created_through_the_api_take_writes_and_can_be_made_unique(bare: Sandbox) -> None:
    created = bare.http.post("/crm/v8/settings/fields", params={"module": "Sales_Orders"}, json={"fields": [
        {"field_label": "ERP Number", "data_type": "text", "length": 40, "unique": {"case_sensitive": False}},
        {"field_label": "Big", "data_type": "text", "length": 300}]})
    assert created.status_code == 207
    made, too_long = created.json()["fields"]
    assert made["code"] == "SUCCESS" and too_long["details"]["maximum_length"] == 255
    field = fields_of(bare, "Sales_Orders")["ERP_Number"]
    assert field["id"] == made["details"]["id"] and field["custom_field"] is True and field["length"] == 40
    assert field["unique"] == {"casesensitive": "false"}
    again = bare.http.post("/crm/v8/settings/fields", params={"module": "Sales_Orders"},
                           json={"fields": [{"field_label": "ERP Number", "data_type": "text"}]})
    assert again.status_code == 400 and again.json()["fields"][0]["code"] == "DUPLICATE_DATA"
    # A standard field offers "Do not allow duplicate values": PATCH switches it on, and upsert can key on it.
    number = fields_of(bare, "Accounts")["Account_Number"]
    assert "unique" in number["customizable_properties"]
    changed = bare.http.patch(f"/crm/v8/settings/fields/{number['id']}", params={"module": "Accounts"},
                              json={"fields": [{"unique": {"case_sensitive": False}}]})
    assert changed.status_code == 200 and changed.json()["fields"][0]["code"] == "SUCCESS"
    assert fields_of(bare, "Accounts")["Account_Number"]["unique"] == {"casesensitive": "false"}
    retyped = bare.http.patch(f"/crm/v8/settings/fields/{number['id']}", params={"module": "Accounts"},
                              json={"fields": [{"data_type": "integer"}]})
    assert retyped.status_code == 400 and fields_of(bare, "Accounts")["Account_Number"]["data_type"] == "text"
    for _ in range(2):
        upsert = bare.http.post("/crm/v8/Accounts/upsert", json={"data": [{"Account_Name": "Acme",
                                                                           "Account_Number": "C1"}],
                                                                 "duplicate_check_fields": ["Account_Number"]})
        assert upsert.status_code == 200
    assert len(bare.zoho.records("Accounts")) == 1


def test_uniqueness_is_refused_while_records_repeat_a_value(crm: Sandbox) -> None:
    crm.zoho.seed("Accounts", [{"Account_Name": "A", "ERP_Number": "X"}, {"Account_Name": "B", "ERP_Number": "x "}])
    field = fields_of(crm, "Accounts")["ERP_Number"]
    answer = crm.http.patch(f"/crm/v8/settings/fields/{field['id']}", params={"module": "Accounts"},
                            json={"fields": [{"unique": {"case_sensitive": False}}]})
    assert answer.status_code == 400 and answer.json()["fields"][0]["code"] == "DUPLICATE_DATA"
    assert fields_of(crm, "Accounts")["ERP_Number"]["unique"] == {}


def test_custom_modules_created_through_the_api_hold_records(bare: Sandbox) -> None:
    answer = bare.http.post("/crm/v8/settings/modules", json={"modules": [
        {"plural_label": "GL Accounts", "singular_label": "GL Account", "api_name": "GL_Accounts",
         "profiles": [{"id": "5725767000000026011"}]}]})
    assert answer.status_code == 200 and answer.json()["modules"][0]["message"] == "module created"
    fields = fields_of(bare, "GL_Accounts")
    assert fields["Name"]["system_mandatory"] is True and "GL_Account_Number" not in fields
    created = bare.http.post("/crm/v8/settings/fields", params={"module": "GL_Accounts"}, json={"fields": [
        {"field_label": "GL Account Number", "data_type": "text", "unique": {"case_sensitive": False}}]})
    assert created.status_code == 201
    insert = bare.http.post("/crm/v8/GL_Accounts", json={"data": [{"Name": "Cash", "GL_Account_Number": "1000"}]})
    assert insert.status_code == 201
    assert [r["GL_Account_Number"] for r in bare.zoho.records("GL_Accounts")] == ["1000"]
    twice = bare.http.post("/crm/v8/settings/modules", json={"modules": [
        {"plural_label": "GL Accounts", "singular_label": "GL Account", "profiles": [{"id": "1"}]}]})
    assert twice.status_code == 400 and twice.json()["modules"][0]["code"] == "DUPLICATE_DATA"


def test_search_by_criteria_email_phone_and_word(crm: Sandbox) -> None:
    acme, _ = crm.zoho.seed("Accounts", [{"Account_Name": "Acme Trading", "Account_Number": "C1", "Phone": "555-1"},
                                         {"Account_Name": "Beta (UK), Ltd", "Account_Number": "C2"}])
    crm.zoho.seed("Contacts", [{"Last_Name": "Ray", "Email": "ray@acme.example", "Account_Name": {"id": acme}}])

    def search(module: str, **params: str) -> Any:
        answer = crm.http.get(f"/crm/v8/{module}/search", params=params)
        return answer.status_code, (answer.json() if answer.status_code == 200 else None)

    status, body = search("Accounts", criteria="(Account_Number:equals:c1)")
    assert status == 200 and [r["Account_Name"] for r in body["data"]] == ["Acme Trading"]
    assert body["info"] == {"per_page": 200, "count": 1, "page": 1, "more_records": False}
    status, body = search("Accounts", criteria=r"((Account_Name:equals:Beta \(UK\)\, Ltd)or(Account_Number:equals:C1))")
    assert status == 200 and {r["Account_Number"] for r in body["data"]} == {"C1", "C2"}
    status, body = search("Accounts", criteria="(Account_Number:in:C2,C9)", fields="Account_Number")
    assert body["data"] == [{"Account_Number": "C2", "id": body["data"][0]["id"]}]
    assert search("Accounts", criteria="(Account_Number:equals:C3)") == (204, None)
    assert search("Contacts", email="RAY@acme.example")[1]["data"][0]["Last_Name"] == "Ray"
    assert search("Accounts", phone="555-1")[1]["data"][0]["Account_Number"] == "C1"
    assert [r["Account_Number"] for r in search("Accounts", word="trad")[1]["data"]] == ["C1"]
    bad = crm.http.get("/crm/v8/Accounts/search", params={"criteria": "(Nope:equals:1)"})
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_QUERY"
    none = crm.http.get("/crm/v8/Accounts/search")
    assert none.status_code == 400 and none.json()["code"] == "REQUIRED_PARAM_MISSING"
