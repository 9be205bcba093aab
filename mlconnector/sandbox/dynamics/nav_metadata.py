"""``ODataV4/$metadata`` of the page web services: one entity type per published service, named after it, with
the page's controls under their EDM names, keyed by the table's primary key, and the Company set; a document page's
lines subpage as a collection navigation. A client reads it to learn which pages are published and what each
shows (return-obtain-service-metadata-edmx-document.md: "The metadata document ... describes the entity types,
entity sets ... for all published web services").
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from collections.abc import Callable

from .schema import ENTITIES, LAST_DATE_MODIFIED, RELATIONS_TYPES, EntitySpec, PageSpec

NAMESPACE = "NAV"
# API field types -> EDM types (the page controls over those fields are typed alike).
EDM_TYPES = {"string": "Edm.String", "decimal": "Edm.Decimal", "boolean": "Edm.Boolean", "guid": "Edm.Guid",
             "date": "Edm.Date", "datetime": "Edm.DateTimeOffset", "integer": "Edm.Int32"}
# Controls computed from the row (options, flags): their EDM type.
COMPUTED_TYPES = {"Closed": "Edm.Boolean", "Cancelled": "Edm.Boolean"}
COMPANY = (("Name", "Edm.String"), ("Evaluating_Company", "Edm.Boolean"), ("Display_Name", "Edm.String"),
           ("Id", "Edm.Guid"), ("Business_Profile_Id", "Edm.String"))


def _control_type(page: PageSpec, api: object, name: str, line: bool = False,
                  table: Callable[[str], EntitySpec] = ENTITIES.__getitem__) -> str:
    if not isinstance(api, str):
        return COMPUTED_TYPES.get(name, "Edm.String")
    spec = table(page.entity_set)  # with its table extensions' fields, which a page extension may show
    if line and spec.lines:
        spec = ENTITIES[spec.lines]
    return EDM_TYPES.get(spec.fields.get(api, "string"), "Edm.String")


def _entity_type(name: str, keys: tuple[str, ...], properties: list[tuple[str, str]],
                 navigations: list[tuple[str, str]] | None = None) -> str:
    parts = [f"<EntityType Name={quoteattr(name)}><Key>"]
    parts += [f"<PropertyRef Name={quoteattr(k)}/>" for k in keys]
    parts.append("</Key>")
    for prop, edm in properties:
        nullable = ' Nullable="false"' if prop in keys else ""
        parts.append(f"<Property Name={quoteattr(prop)} Type={quoteattr(edm)}{nullable}/>")
    parts += [f'<NavigationProperty Name={quoteattr(nav)} Type="Collection({NAMESPACE}.{target})" '
              'ContainsTarget="true"/>' for nav, target in navigations or ()]
    parts.append("</EntityType>")
    return "".join(parts)


def csdl(services: dict[str, PageSpec], relations_service: str | None,
         table: Callable[[str], EntitySpec] = ENTITIES.__getitem__) -> str:
    """The EDMX document for the published services (``table``: an entity's table, extensions included)."""
    types = [_entity_type("Company", ("Name",), list(COMPANY))]
    sets = ['<EntitySet Name="Company" EntityType="NAV.Company"/>']
    for service, page in services.items():
        properties = [(name, _control_type(page, api, name, table=table)) for name, api in page.fields]
        if page.last_date_modified:
            properties.append((LAST_DATE_MODIFIED, "Edm.Date"))
        navigations = []
        if page.lines_part:
            line_type = f"{service}{page.lines_part}"
            keys = ("Document_Type",) * bool(page.fixed.get("Document_Type")) + ("Document_No", "Line_No")
            line_props = [(k, "Edm.Int32" if k == "Line_No" else "Edm.String") for k in keys] + [
                (name, _control_type(page, api, name, line=True)) for name, api in page.line_fields]
            types.append(_entity_type(line_type, keys, line_props))
            navigations.append((page.lines_part, line_type))
        types.append(_entity_type(service, page.key, properties, navigations))
        sets.append(f'<EntitySet Name={quoteattr(service)} EntityType={quoteattr(f"{NAMESPACE}.{service}")}/>')
    if relations_service:
        types.append(_entity_type(relations_service, ("Contact_No", "Business_Relation_Code"),
                                  [(name, "Edm.String") for name in RELATIONS_TYPES]))
        sets.append(f'<EntitySet Name={quoteattr(relations_service)} '
                    f'EntityType={quoteattr(f"{NAMESPACE}.{relations_service}")}/>')
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>'
            f'<Schema Namespace="{NAMESPACE}" xmlns="http://docs.oasis-open.org/odata/ns/edm">'
            + "".join(types) + '<EntityContainer Name="NAV">' + "".join(sets)
            + "</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>")
