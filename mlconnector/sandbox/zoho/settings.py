"""The metadata APIs: modules, fields, and the calls that add custom fields and custom modules.

- GET  /crm/v8/settings/modules, /settings/modules/{api_name}       https://www.zoho.com/crm/developer/docs/api/v8/modules-api.html
- GET  /crm/v8/settings/fields?module=, /settings/fields/{id}?module= https://www.zoho.com/crm/developer/docs/api/v8/field-meta.html
- POST /crm/v8/settings/fields?module=                               https://www.zoho.com/crm/developer/docs/api/v8/create-custom-field.html
- PATCH /crm/v8/settings/fields/{id}?module=                         https://www.zoho.com/crm/developer/docs/api/v8/update-custom-fields.html
- POST /crm/v8/settings/modules                                      https://www.zoho.com/crm/developer/docs/api/v8/create-custom-module-api.html

Where the documentation leaves the answer open, the sandbox chooses, and says so here:

- A field's ``unique`` is ``{}`` when duplicates are allowed (as in Zoho's field-meta example) and
  ``{"casesensitive": "false"}`` when they are not: the create request's ``unique: {"case_sensitive": false}``
  names the option, and Zoho's Python SDK for v8 reads ``unique.casesensitive`` as a string (its Unique class).
- Uniqueness can be switched on by PATCH for custom fields and for standard fields that list ``unique`` among their
  ``customizable_properties`` (Zoho's example lists it for the standard field Company): the "Do not allow duplicate
  values" box Setup shows for such fields. A field's data type never changes through PATCH (``data_type`` in a PATCH
  is refused: "Conversion of one field type to another is not allowed").
- Creating a field whose label (or API name) the module already has: ``DUPLICATE_DATA`` for that item.
- Custom modules: created with Zoho's default fields (Name, Owner, Email, ...) and ``generated_type`` "custom".
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mlconnector.sandbox.common import JSONResponse

from .errors import RecordError, ZohoError, required_param
from .fields import CREATABLE, TEXTUAL, Field, FieldJson, api_name_for
from .modules import ModuleSpec

MAX_FIELDS_PER_CALL = 5       # "A maximum of five fields can be created/updated in a single call"
UNIQUE_CAPABLE = frozenset({"text", "email", "phone", "website", "integer", "bigint", "double", "currency"})
_render = FieldJson()


def _module(call: Any, name: str | None) -> ModuleSpec:
    if not name:
        raise required_param("module")
    spec = call.sandbox.spec(name)
    if spec is None:
        raise ZohoError(400, "INVALID_MODULE", "the module name given seems to be invalid", {"api_name": name})
    return spec


def field_json(call: Any, spec: ModuleSpec, f: Field) -> dict[str, Any]:
    rendered = _render.render(f, spec.id, spec.api_name, call.sandbox.schema.ids())
    if not f.custom and f.data_type in UNIQUE_CAPABLE and not f.mandatory and not f.read_only:
        rendered["customizable_properties"] = ["mandatory", "unique", "removal"]
    return rendered


# -- fields ------------------------------------------------------------------------------------------------------

async def get_fields(request: Request, call: Any) -> Response:
    spec = _module(call, request.query_params.get("module"))
    kind = request.query_params.get("type")
    fields = list(call.sandbox.schema.fields[spec.api_name].values())
    if kind == "unused":
        return Response(status_code=204)  # every field of the sandbox's layout is in use
    return JSONResponse({"fields": [field_json(call, spec, f) for f in fields]})


async def get_field(request: Request, call: Any) -> Response:
    spec = _module(call, request.query_params.get("module"))
    found = call.sandbox.schema.field_by_id(spec.api_name, request.path_params["field_id"])
    if found is None:
        return Response(status_code=204)
    return JSONResponse({"fields": [field_json(call, spec, found)]})


def _items(body: Any) -> list[Any]:
    if not isinstance(body, dict) or "fields" not in body:
        raise ZohoError(400, "MANDATORY_NOT_FOUND", "required field not found",
                        {"api_name": "fields", "json_path": "$.fields"})
    items = body["fields"]
    if not isinstance(items, list) or not items:
        raise ZohoError(400, "INVALID_DATA", "invalid data",
                        {"api_name": "fields", "json_path": "$.fields", "expected_data_type": "jsonarray"})
    if len(items) > MAX_FIELDS_PER_CALL:
        raise ZohoError(400, "LIMIT_EXCEEDED", "limit exceeded",
                        {"limit": MAX_FIELDS_PER_CALL, "limit_due_to": [{"api_name": "fields",
                                                                         "json_path": "$.fields"}]})
    return items


def _unique_of(item: dict[str, Any], path: str) -> bool | None:
    """``unique: {"case_sensitive": false}`` switches "Do not allow duplicate values" on; ``unique: {}`` or null
    off; absent: unchanged (None)."""
    if "unique" not in item:
        return None
    value = item["unique"]
    if value is None or value == {} or (isinstance(value, dict) and value.get("disable") is True):
        return False
    if not isinstance(value, dict):
        raise RecordError.invalid("unique", f"{path}.unique", expected_data_type="jsonobject")
    return True


def _new_field(call: Any, spec: ModuleSpec, item: Any, path: str) -> Field:
    if not isinstance(item, dict):
        raise RecordError.invalid("fields", path, expected_data_type="jsonobject")
    label = item.get("field_label")
    if not isinstance(label, str) or not label.strip():
        raise RecordError.mandatory("field_label", f"{path}.field_label")
    data_type = item.get("data_type")
    if data_type is None:
        raise RecordError.mandatory("data_type", f"{path}.data_type")
    if data_type not in CREATABLE:
        raise RecordError("INVALID_DATA", "invalid data", {"api_name": "data_type", "json_path": f"{path}.data_type",
                                                           "supported_values": sorted(CREATABLE)[:25]})
    length = item.get("length", 0) or 0
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise RecordError.invalid("length", f"{path}.length", expected_data_type="integer")
    if length > CREATABLE[data_type]:
        raise RecordError.invalid("length", f"{path}.length", maximum_length=CREATABLE[data_type])
    api_name = str(item.get("api_name") or api_name_for(label))
    schema = call.sandbox.schema
    taken = schema.fields[spec.api_name]
    if api_name in taken or any(f.label.lower() == label.strip().lower() for f in taken.values()):
        raise RecordError("DUPLICATE_DATA", "duplicate data", {"api_name": "field_label",
                                                               "json_path": f"{path}.field_label"})
    lookup = None
    if data_type == "lookup":
        target = ((item.get("lookup") or {}).get("module") or {}).get("api_name")
        if not target or call.sandbox.spec(str(target)) is None:
            raise RecordError.mandatory("module", f"{path}.lookup.module")
        lookup = call.sandbox.spec(str(target)).api_name
    unique = bool(_unique_of(item, path))
    if unique and data_type not in UNIQUE_CAPABLE:
        raise RecordError("NOT_SUPPORTED", "unique is not supported for this data type",
                          {"api_name": "unique", "json_path": f"{path}.unique"})
    return schema.add_field(spec.api_name, Field(api_name, label.strip(), data_type, length, custom=True,
                                                 unique=unique, lookup=lookup))


def _answers(items: list[dict[str, Any]], success: int) -> JSONResponse:
    ok = sum(1 for a in items if a.get("status") == "success")
    status = success if ok == len(items) else 400 if ok == 0 else 207
    return JSONResponse({"fields": items}, status_code=status)


async def create_fields(request: Request, call: Any) -> Response:
    from .routes import json_body

    spec = _module(call, request.query_params.get("module"))
    answers = []
    for index, item in enumerate(_items(await json_body(request))):
        try:
            made = _new_field(call, spec, item, f"$.fields[{index}]")
        except RecordError as error:
            answers.append(error.body())
            continue
        answers.append({"code": "SUCCESS", "details": {"id": made.id}, "message": "field created",
                        "status": "success"})
    return _answers(answers, 201)


async def update_field(request: Request, call: Any) -> Response:
    from .routes import json_body

    spec = _module(call, request.query_params.get("module"))
    schema = call.sandbox.schema
    current = schema.field_by_id(spec.api_name, request.path_params["field_id"])
    if current is None:
        raise ZohoError(400, "INVALID_DATA", "the id given seems to be invalid",
                        {"resource_path_index": 3})
    answers = []
    for index, item in enumerate(_items(await json_body(request))):
        path = f"$.fields[{index}]"
        try:
            if not isinstance(item, dict):
                raise RecordError.invalid("fields", path, expected_data_type="jsonobject")
            if "data_type" in item and item["data_type"] != current.data_type:
                raise RecordError("NOT_SUPPORTED", "Conversion of one field type to another is not allowed",
                                  {"api_name": "data_type", "json_path": f"{path}.data_type"})
            unique = _unique_of(item, path)
            if unique is not None:
                capable = current.custom or (current.data_type in UNIQUE_CAPABLE and not current.mandatory
                                             and not current.read_only)
                if not capable or current.data_type not in UNIQUE_CAPABLE:
                    raise RecordError("NOT_SUPPORTED", "unique is not supported for this field",
                                      {"api_name": "unique", "json_path": f"{path}.unique"})
                if unique:
                    _check_no_duplicates(call, spec, current.api_name, path)
                current = schema.set_unique(spec.api_name, current.api_name, unique)
            if "length" in item and current.custom and current.data_type in TEXTUAL:
                length = item["length"]
                if not isinstance(length, int) or length <= 0 or length > CREATABLE.get(current.data_type, 255):
                    raise RecordError.invalid("length", f"{path}.length", maximum_length=CREATABLE.get(
                        current.data_type, 255))
                current = schema.add_field(spec.api_name, Field(
                    current.api_name, current.label, current.data_type, length, current.custom, current.unique,
                    current.mandatory, current.lookup, current.id))
        except RecordError as error:
            answers.append(error.body())
            continue
        answers.append({"code": "SUCCESS", "details": {"id": current.id}, "message": "field updated",
                        "status": "success"})
    return _answers(answers, 200)


def _check_no_duplicates(call: Any, spec: ModuleSpec, api_name: str, path: str) -> None:
    """Setup refuses "Do not allow duplicate values" on a field whose records already repeat a value."""
    seen: dict[Any, str] = {}
    for record in call.sandbox.store.all(spec.api_name):
        value = record.get(api_name)
        if value in (None, ""):
            continue
        key = value.strip().lower() if isinstance(value, str) else value
        if key in seen:
            raise RecordError("DUPLICATE_DATA", "the field has duplicate values in existing records",
                              {"api_name": "unique", "json_path": f"{path}.unique", "id": record["id"]})
        seen[key] = record["id"]


# -- modules -----------------------------------------------------------------------------------------------------

def module_json(call: Any, spec: ModuleSpec, sequence: int, *, with_fields: bool = False) -> dict[str, Any]:
    sandbox = call.sandbox
    custom = spec.api_name in sandbox.schema.custom_modules
    answer: dict[str, Any] = {
        "has_more_profiles": False, "sub_menu_available": False, "common.search_supported": True,
        "deletable": custom, "description": None, "creatable": True, "recycle_bin_on_delete": True,
        "inventory_template_supported": spec.line_items is not None, "modified_time": None,
        "plural_label": spec.label, "presence_sub_menu": False, "triggers_supported": True, "id": spec.id,
        "chart_view": False, "isBlueprintSupported": True, "visibility": 1, "visible": True,
        "convertable": False, "editable": True, "emailTemplate_support": True, "email_parser_supported": False,
        "filter_supported": True, "show_as_tab": True, "web_link": None, "sequence_number": sequence,
        "singular_label": spec.singular, "viewable": True, "api_supported": True, "api_name": spec.api_name,
        "quick_create": True, "generated_type": "custom" if custom else "default", "feeds_required": False,
        "scoring_supported": True, "webform_supported": True, "arguments": [], "module_name": spec.label,
        "chart_view_supported": True, "profile_count": 1, "business_card_field_limit": 5,
        "track_current_data": False,
        "modified_by": {"name": sandbox.user.name, "id": sandbox.user.id} if custom else None,
        "profiles": [{"name": "Administrator", "id": "5725767000000026011"}], "parent_module": None,
        "activity_badge": None, "$field_states": [], "business_card_fields": [], "per_page": None,
        "$properties": [], "$on_demand_properties": [], "search_layout_fields": [], "kanban_view_supported": False,
        "lookup_field_properties": None, "kanban_view": False, "related_lists": [], "filter_status": True,
        "related_list_properties": None, "display_field": {"api_name": spec.name_field, "id": None},
        # Zoho's OAS requires these in every module; the list answer gives them empty, the single-module one full.
        "layouts": [], "fields": None, "custom_view": None, "zia_view": False, "default_mapping_fields": None,
        "layout_associations": None,
    }
    if with_fields:
        answer["fields"] = [field_json(call, spec, f) for f in sandbox.schema.fields[spec.api_name].values()]
        answer["layouts"] = [{"id": spec.id, "name": "Standard", "api_name": "Standard__s"}]
    return answer


async def get_modules(request: Request, call: Any) -> Response:
    names = [n for n in call.sandbox.module_names() if call.sandbox.spec(n) is not None]
    return JSONResponse({"modules": [module_json(call, call.sandbox.spec(n), i + 1) for i, n in enumerate(names)]})


async def get_module(request: Request, call: Any) -> Response:
    wanted = request.path_params["module"]
    spec = call.sandbox.spec(wanted)
    if spec is None:  # an id is taken too (GET /settings/modules/{id})
        spec = next((call.sandbox.spec(n) for n, s in call.sandbox.schema.modules.items() if s.id == wanted), None)
    if spec is None:
        raise ZohoError(400, "INVALID_MODULE", "the module name given seems to be invalid", {"api_name": wanted})
    names = list(call.sandbox.schema.modules)
    return JSONResponse({"modules": [module_json(call, spec, names.index(spec.api_name) + 1, with_fields=True)]})


async def create_modules(request: Request, call: Any) -> Response:
    from .routes import json_body

    body = await json_body(request)
    items = body.get("modules") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise ZohoError(400, "MANDATORY_NOT_FOUND", "required field not found",
                        {"api_name": "modules", "json_path": "$.modules"})
    answers = []
    for index, item in enumerate(items):
        path = f"$.modules[{index}]"
        try:
            spec = _new_module(call, item, path)
        except RecordError as error:
            answers.append(error.body())
            continue
        answers.append({"code": "SUCCESS", "details": {"id": spec.id}, "message": "module created",
                        "status": "success"})
    ok = sum(1 for a in answers if a.get("status") == "success")
    return JSONResponse({"modules": answers}, status_code=200 if ok else 400)


def _new_module(call: Any, item: Any, path: str) -> ModuleSpec:
    if not isinstance(item, dict):
        raise RecordError.invalid("modules", path, expected_data_type="jsonobject")
    for key in ("plural_label", "singular_label"):
        value = item.get(key)
        if not isinstance(value, str) or not value.strip():
            raise RecordError.mandatory(key, f"{path}.{key}")
        if len(value) > 25:
            raise RecordError.invalid(key, f"{path}.{key}", maximum_length=25)
    if not item.get("profiles"):
        raise RecordError.mandatory("profiles", f"{path}.profiles")
    api_name = str(item.get("api_name") or api_name_for(item["plural_label"]))
    if len(api_name) > 50:
        raise RecordError.invalid("api_name", f"{path}.api_name", maximum_length=50)
    existing = call.sandbox.schema.modules
    if any(n.lower() == api_name.lower() for n in existing) or any(
            s.label.lower() == item["plural_label"].strip().lower() for s in existing.values()):
        raise RecordError("DUPLICATE_DATA", "duplicate data", {"api_name": "plural_label",
                                                               "json_path": f"{path}.plural_label"})
    return call.sandbox.add_custom_module(api_name, item["plural_label"].strip(), item["singular_label"].strip())
