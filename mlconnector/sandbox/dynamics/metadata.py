"""Business Central API v2.0 ``$metadata``: the service's CSDL (OData v4 EDMX) built from the entities the emulator
serves, as ``GET .../api/v2.0/$metadata`` answers it
(https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/api-reference/v2.0/ "the metadata document":
``$metadata`` lists entity types, their keys, properties and navigation properties). Namespace ``Microsoft.NAV``,
entity types by their singular names (``customer``), entity sets by their API names (``customers``), a company's
sets as navigation properties of ``company``. Property types: guid -> Edm.Guid, decimal -> Edm.Decimal, date ->
Edm.Date, datetime -> Edm.DateTimeOffset, integer -> Edm.Int32, boolean -> Edm.Boolean, else Edm.String.
Every set the emulator serves is here: ENTITIES, and the sets served beside them (schema.OTHER_SETS, subscriptions).
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from .schema import ENTITIES, OTHER_SETS, REFERENCES, SUBSCRIPTIONS, EntitySpec

EDM = {"guid": "Edm.Guid", "decimal": "Edm.Decimal", "date": "Edm.Date", "datetime": "Edm.DateTimeOffset",
       "integer": "Edm.Int32", "boolean": "Edm.Boolean", "string": "Edm.String"}
NAMESPACE = "Microsoft.NAV"
COMPANY = {"id": "guid", "systemVersion": "string", "timestamp": "integer", "name": "string",
           "displayName": "string", "businessProfileId": "string", "systemCreatedAt": "datetime",
           "systemCreatedBy": "guid", "systemModifiedAt": "datetime", "systemModifiedBy": "guid"}


def _entity_type(name: str, fields: dict[str, str], navigations: list[tuple[str, str, bool]], key: str = "id") -> str:
    parts = [f'<EntityType Name={quoteattr(name)}><Key><PropertyRef Name={quoteattr(key)}/></Key>']
    for field, kind in fields.items():
        nullable = ' Nullable="false"' if field == key else ""
        parts.append(f'<Property Name={quoteattr(field)} Type="{EDM.get(kind, "Edm.String")}"{nullable}/>')
    for nav, target, many in navigations:
        kind = f"Collection({NAMESPACE}.{target})" if many else f"{NAMESPACE}.{target}"
        parts.append(f'<NavigationProperty Name={quoteattr(nav)} Type="{kind}"/>')
    parts.append("</EntityType>")
    return "".join(parts)


def _line_entity(spec: EntitySpec) -> EntitySpec | None:
    return next((s for s in ENTITIES.values() if s.header == spec.set_name and spec.lines == s.set_name), None)


def _nested(set_name: str) -> list[tuple[str, str, bool]]:
    """The sets served beside ENTITIES that rows of ``set_name`` lead to (``customers({id})/defaultDimensions``)."""
    return [(s.set_name, s.entity_name, True) for s in OTHER_SETS.values() if s.under == set_name]


def csdl() -> str:
    """The EDMX document."""
    types = []
    company_navs = []
    for spec in ENTITIES.values():
        if spec.header is not None:
            continue  # line sets are reached through their header (and top level, below)
        navigations: list[tuple[str, str, bool]] = []
        if spec.lines:
            line = _line_entity(spec) or ENTITIES.get(spec.lines)
            if line is not None:
                navigations.append((spec.lines, line.entity_name, True))
        for expand in sorted(spec.expands - {spec.lines or ""}):
            target = ENTITIES.get(REFERENCES[expand][0]) if expand in REFERENCES else ENTITIES.get(expand)
            if target is not None:
                navigations.append((expand, target.entity_name, expand == target.set_name))
        types.append(_entity_type(spec.entity_name, spec.fields, navigations + _nested(spec.set_name)))
        company_navs.append((spec.set_name, spec.entity_name, True))
    for spec in ENTITIES.values():
        if spec.header is not None:
            types.append(_entity_type(spec.entity_name, spec.fields, []))
            company_navs.append((spec.set_name, spec.entity_name, True))
    for other in OTHER_SETS.values():
        types.append(_entity_type(other.entity_name, other.fields, _nested(other.set_name), other.key))
        if not other.nested_only:
            company_navs.append((other.set_name, other.entity_name, True))
    types.append(_entity_type(SUBSCRIPTIONS.entity_name, SUBSCRIPTIONS.fields, [], SUBSCRIPTIONS.key))
    types.append(_entity_type("company", COMPANY, company_navs))
    sets = [("companies", "company"), (SUBSCRIPTIONS.set_name, SUBSCRIPTIONS.entity_name)]
    sets += [(s.set_name, s.entity_name) for s in ENTITIES.values()]
    sets += [(s.set_name, s.entity_name) for s in OTHER_SETS.values() if not s.nested_only]
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">'
            '<edmx:DataServices>'
            f'<Schema Namespace="{NAMESPACE}" xmlns="http://docs.oasis-open.org/odata/ns/edm">'
            + "".join(types)
            + '<EntityContainer Name="default">'
            + "".join(f'<EntitySet Name={quoteattr(name)} EntityType="{NAMESPACE}.{entity}"/>'
                      for name, entity in sets)
            + "</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>")
