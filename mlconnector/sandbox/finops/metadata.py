"""Finance & Operations metadata: the OData service's ``/data/$metadata`` (CSDL) and the metadata service
(``/Metadata/DataEntities``, ``/Metadata/PublicEntities``, ``/Metadata/PublicEnumerations``), built from the entities
the emulator serves.

The metadata service is described at
https://learn.microsoft.com/en-us/dynamics365/fin-ops-core/dev-itpro/data-entities/metadata-service: read-only
OData (JSON) at ``https://{environment}/Metadata``, one entry per data entity with its AOT name, public entity name,
public collection name, whether OData and data management are enabled, its category and whether it is read-only;
``PublicEntities`` gives each public entity's properties (name, type, key, mandatory, edit rules) and navigation
properties; ``PublicEnumerations`` the enums and their members. Labels are given as the label ids F&O would
resolve; the emulator's are of the form ``@SYS{entity}``.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr

from .entities import ENTITIES, ENUM_NAMESPACE, ENUMS, EntitySpec

EDM = {"string": "Edm.String", "decimal": "Edm.Decimal", "int": "Edm.Int32", "datetime": "Edm.DateTimeOffset"}
CATEGORY = {"CustomersV3": "Master", "ReleasedProductsV2": "Master", "VendorsV2": "Master",
            "LegalEntities": "Reference"}


def _edm(kind: str) -> str:
    return f"{ENUM_NAMESPACE}.{kind[5:]}" if kind.startswith("enum:") else EDM.get(kind, "Edm.String")


def _data_type(kind: str) -> str:
    """The metadata service's DataType: Enum, String, Real, Int, DateTime."""
    if kind.startswith("enum:"):
        return "Enum"
    return {"decimal": "Real", "int": "Int", "datetime": "DateTime"}.get(kind, "String")


def _properties(spec: EntitySpec) -> list[tuple[str, str]]:
    names = list(spec.keys) + [n for n in spec.fields if n not in spec.keys]
    return [(n, spec.type_of(n) or "string") for n in names]


def csdl() -> str:
    enums = "".join(
        f'<EnumType Name={quoteattr(name)}>'
        + "".join(f'<Member Name={quoteattr(v)} Value="{i}"/>' for i, v in enumerate(values)) + "</EnumType>"
        for name, values in ENUMS.items())
    types = []
    for spec in ENTITIES.values():
        parts = [f'<EntityType Name={quoteattr(spec.type_name)}><Key>'
                 + "".join(f'<PropertyRef Name={quoteattr(k)}/>' for k in spec.keys) + "</Key>"]
        for name, kind in _properties(spec):
            nullable = ' Nullable="false"' if name in spec.keys or name in spec.required else ""
            parts.append(f'<Property Name={quoteattr(name)} Type="{_edm(kind)}"{nullable}/>')
        if spec.lines_nav:
            line = next((s for s in ENTITIES.values() if s.parent and s.parent[0] == spec.name), None)
            if line is not None:
                parts.append(f'<NavigationProperty Name={quoteattr(spec.lines_nav)} '
                             f'Type="Collection({ENUM_NAMESPACE}.{line.type_name})"/>')
        parts.append("</EntityType>")
        types.append("".join(parts))
    sets = "".join(f'<EntitySet Name={quoteattr(s.name)} EntityType="{ENUM_NAMESPACE}.{s.type_name}"/>'
                   for s in ENTITIES.values())
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>'
            f'<Schema Namespace="{ENUM_NAMESPACE}" xmlns="http://docs.oasis-open.org/odata/ns/edm">'
            + enums + "".join(types) + f'<EntityContainer Name="Resources">{sets}</EntityContainer>'
            "</Schema></edmx:DataServices></edmx:Edmx>")


def data_entity(spec: EntitySpec) -> dict[str, Any]:
    return {"Name": spec.aot, "PublicEntityName": spec.type_name, "PublicCollectionName": spec.name,
            "LabelId": f"@SYS{spec.type_name}", "DataServiceEnabled": True, "DataManagementEnabled": True,
            "EntityCategory": CATEGORY.get(spec.name, "Document"), "IsReadOnly": spec.name == "LegalEntities"}


def public_entity(spec: EntitySpec) -> dict[str, Any]:
    properties = [{"Name": name, "TypeName": kind[5:] if kind.startswith("enum:") else kind.capitalize(),
                   "DataType": _data_type(kind), "LabelId": f"@SYS{name}", "IsKey": name in spec.keys,
                   "IsMandatory": name in spec.keys or name in spec.required, "ConfigurationEnabled": True,
                   "AllowEdit": name not in spec.keys and name not in spec.read_only,
                   "AllowEditOnCreate": name not in spec.read_only, "IsDimension": False,
                   "DimensionRelation": "", "IsDynamicDimension": False, "DimensionLegalEntityProperty": "",
                   "DimensionTypeProperty": ""} for name, kind in _properties(spec)]
    navigations = []
    if spec.lines_nav:
        line = next((s for s in ENTITIES.values() if s.parent and s.parent[0] == spec.name), None)
        if line is not None:
            navigations.append({"Name": spec.lines_nav, "RelatedEntity": line.type_name, "RelatedRelationName": "",
                                "Cardinality": "ZeroMore", "Constraints": []})
    return {"Name": spec.type_name, "EntitySetName": spec.name, "LabelId": f"@SYS{spec.type_name}",
            "IsReadOnly": spec.name == "LegalEntities", "ConfigurationEnabled": True, "Properties": properties,
            "NavigationProperties": navigations, "PropertyGroups": [], "Actions": []}


def public_enumeration(name: str) -> dict[str, Any]:
    return {"Name": name, "LabelId": f"@SYS{name}",
            "Members": [{"Name": v, "LabelId": f"@SYS{v}", "Value": i, "ConfigurationEnabled": True}
                        for i, v in enumerate(ENUMS[name])]}
