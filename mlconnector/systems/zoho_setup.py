"""What a pair needs in a Zoho CRM org, checked from the org's own metadata and created where the API allows.

Reads: Modules API (``GET /crm/v8/settings/modules``, https://www.zoho.com/crm/developer/docs/api/v8/modules-api.html)
and Fields Metadata (``GET /crm/v8/settings/fields?module=``, .../v8/field-meta.html): a field's ``data_type`` and its
``unique`` (``{}`` when duplicates are allowed). Writes, with ``setup --apply`` only: Create Custom Fields
(``POST /settings/fields?module=``, .../v8/create-custom-field.html, ``unique: {"case_sensitive": false}``), Update
Custom Fields (``PATCH /settings/fields/{id}?module=``, .../v8/update-custom-fields.html) to switch uniqueness on
(standard fields too, where their ``customizable_properties`` list ``unique``), and Create Custom Module
(``POST /settings/modules``, .../v8/create-custom-module-api.html). A field's type is never changed: a field of
another type is reported "wrong" with the manual fix.
"""

from __future__ import annotations

from typing import Any

from mlconnector.errors import ConfigError
from mlconnector.http import json_body
from mlconnector.prerequisites import (CUSTOM_MODULE, FIELD, MANUAL, MISSING, MODULE, OK, UNCHECKED, WRONG, Finding,
                                       Requirement, close_match)

# Types a requirement accepts as its own: a key kept in a single-line field may also sit in an email field.
COMPATIBLE = {"text": {"text", "email", "phone", "website", "autonumber"}, "email": {"email", "text"},
              "currency": {"currency", "double"}, "textarea": {"textarea", "text"},
              "double": {"double", "currency", "integer", "bigint", "decimal"}}
ADMIN_PROFILE = "Administrator"


def _label(api_name: str) -> str:
    return api_name.replace("_", " ")


class ZohoSetup:
    """One org's metadata, read once per check (modules, then the fields of the modules asked about)."""

    def __init__(self, connector: Any) -> None:
        self.connector = connector
        self._modules: dict[str, dict[str, Any]] | None = None
        self._fields: dict[str, dict[str, dict[str, Any]]] = {}

    # -- metadata ---------------------------------------------------------------------------------------------
    def modules(self) -> dict[str, dict[str, Any]]:
        if self._modules is None:
            response = self.connector._call("GET", "/crm/v8/settings/modules", idempotent=True)
            if response.status_code != 200:
                raise self.connector._fail(response, "reading the org's modules")
            body = json_body(response) or {}
            self._modules = {m["api_name"]: m for m in body.get("modules", []) if m.get("api_name")}
        return self._modules

    def fields(self, module: str) -> dict[str, dict[str, Any]]:
        if module not in self._fields:
            response = self.connector._call("GET", "/crm/v8/settings/fields", params={"module": module},
                                            idempotent=True)
            if response.status_code == 204:
                self._fields[module] = {}
            elif response.status_code != 200:
                raise self.connector._fail(response, f"reading the fields of {module}")
            else:
                body = json_body(response) or {}
                self._fields[module] = {f["api_name"]: f for f in body.get("fields", []) if f.get("api_name")}
        return self._fields[module]

    def _forget(self, module: str | None = None) -> None:
        if module is None:
            self._modules = None
        else:
            self._fields.pop(module, None)

    # -- checks -----------------------------------------------------------------------------------------------
    def check(self, requirement: Requirement) -> Finding:
        system = self.connector.name
        if requirement.kind == MANUAL:
            return Finding(system, requirement, UNCHECKED, fix=requirement.fix)
        modules = self.modules()
        if requirement.kind in (MODULE, CUSTOM_MODULE):
            if requirement.target in modules:
                return Finding(system, requirement, OK)
            if requirement.kind == MODULE:
                return Finding(system, requirement, MISSING, "not in this org's edition",
                               f"upgrade the Zoho edition to one with {requirement.target} (Professional or above), "
                               "or leave the flow out of pairs.*.flows")
            return Finding(system, requirement, MISSING, "no such custom module",
                           f"create the custom module {requirement.target} (plural label "
                           f"{requirement.label!r}): `mlconnector setup --apply` does it through the API",
                           can_apply=True)
        if requirement.target not in modules:
            return Finding(system, requirement, MISSING, f"the module {requirement.target} is missing first",
                           "create the module first (listed above)", can_apply=requirement.target not in (
                               "Sales_Orders", "Invoices", "Quotes", "Purchase_Orders"))
        found = self.fields(requirement.target).get(requirement.name)
        wanted = requirement.data_type or "text"  # "" takes any type; a missing one is made a text field
        if found is None and requirement.read:
            near = close_match(requirement.name, self.fields(requirement.target))
            return Finding(system, requirement, MISSING, "no such field" + (f"; did you mean {near}?" if near else ""),
                           requirement.fix)
        if found is None:
            unique = ", unique" if requirement.unique else ""
            return Finding(system, requirement, MISSING, "",
                           f"create a {wanted} field {requirement.name}{unique} on {requirement.target} "
                           "(Setup > Modules and Fields; `mlconnector setup --apply` does it through the API)",
                           can_apply=True)
        data_type = found.get("data_type")
        if requirement.data_type and data_type != wanted and data_type not in COMPATIBLE.get(wanted, {wanted}):
            return Finding(system, requirement, WRONG, f"exists as {data_type}, not {wanted}",
                           requirement.fix or  # a configured mapping's field: change the mapping, or the field
                           f"the field's type cannot be changed: rename {requirement.name} in Zoho and run setup "
                           f"again to create a {wanted} field, or name another field in the pair's options")
        limit = found.get("length")
        if requirement.max_length and isinstance(limit, int) and 0 < limit < requirement.max_length:
            return Finding(system, requirement, WRONG, f"holds {limit} characters, the mapping truncates to "
                           f"{requirement.max_length}", f"set truncate = {limit} in the mapping (or lengthen the "
                           f"field in Zoho)")
        if requirement.unique and not found.get("unique"):
            capable = found.get("custom_field") or "unique" in (found.get("customizable_properties") or [])
            return Finding(system, requirement, WRONG, "exists but is not unique",
                           f"tick \"Do not allow duplicate values\" on {requirement.target}.{requirement.name} "
                           "(Setup > Modules and Fields)" + ("; `mlconnector setup --apply` does it" if capable
                                                              else ""),
                           can_apply=bool(capable))
        return Finding(system, requirement, OK)

    # -- changes ------------------------------------------------------------------------------------------------
    def apply(self, finding: Finding) -> Finding:
        """Make what the finding lacks; returns the finding checked again."""
        requirement = finding.requirement
        if requirement.kind == CUSTOM_MODULE:
            self._create_module(requirement)
            self._forget()
        elif requirement.kind == FIELD and finding.status == MISSING:
            self._create_field(requirement)
            self._forget(requirement.target)
        elif requirement.kind == FIELD and finding.status == WRONG and requirement.unique:
            self._make_unique(requirement)
            self._forget(requirement.target)
        again = self.check(requirement)
        again.applied = again.status == OK
        return again

    def _create_module(self, requirement: Requirement) -> None:
        profiles = self._admin_profiles()
        body = {"modules": [{"plural_label": requirement.label or _label(requirement.target),
                             "singular_label": requirement.singular or _label(requirement.target),
                             "api_name": requirement.target, "profiles": profiles}]}
        response = self.connector._call("POST", "/crm/v8/settings/modules", json=body)
        self._expect(response, "modules", f"creating the custom module {requirement.target}")

    def _admin_profiles(self) -> list[dict[str, str]]:
        """The profiles a new module is given: the Administrator profile the org's modules list."""
        for module in self.modules().values():
            for profile in module.get("profiles") or []:
                if profile.get("name") == ADMIN_PROFILE and profile.get("id"):
                    return [{"id": str(profile["id"])}]
        raise ConfigError(f"{self.connector.name}: no Administrator profile in the org's module metadata; create the "
                          "custom module in Setup > Modules and Fields")

    def _create_field(self, requirement: Requirement) -> None:
        item: dict[str, Any] = {"field_label": _label(requirement.name), "data_type": requirement.data_type or "text"}
        if requirement.length or requirement.max_length:
            item["length"] = requirement.length or requirement.max_length
        if requirement.unique:
            item["unique"] = {"case_sensitive": False}
        response = self.connector._call("POST", "/crm/v8/settings/fields", params={"module": requirement.target},
                                        json={"fields": [item]})
        self._expect(response, "fields", f"creating the field {requirement.target}.{requirement.name}")

    def _make_unique(self, requirement: Requirement) -> None:
        field_id = self.fields(requirement.target)[requirement.name]["id"]
        response = self.connector._call("PATCH", f"/crm/v8/settings/fields/{field_id}",
                                        params={"module": requirement.target},
                                        json={"fields": [{"unique": {"case_sensitive": False}}]})
        self._expect(response, "fields", f"making {requirement.target}.{requirement.name} unique")

    def _expect(self, response: Any, key: str, what: str) -> None:
        body = json_body(response) or {}
        items = body.get(key) if isinstance(body, dict) else None
        if response.status_code in (200, 201) and items and all(i.get("status") == "success" for i in items):
            return
        if items:
            failed = next(i for i in items if i.get("status") != "success")
            raise ConfigError(f"{self.connector.name}: {what}: Zoho answered {failed.get('code')} "
                              f"{failed.get('message', '')} {failed.get('details', '')}".strip())
        raise self.connector._fail(response, what)


def check(connector: Any, requirements: list[Requirement]) -> tuple[ZohoSetup, list[Finding]]:
    setup = ZohoSetup(connector)
    return setup, [setup.check(r) for r in requirements]
