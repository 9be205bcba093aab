"""An OData v4 service's metadata document (CSDL, ``$metadata``) read for its field lists: each entity set's
properties, as Business Central's API v2.0, NAV's page web services and F&O's data entities publish them
(https://docs.oasis-open.org/odata/odata-csdl-xml/v4.01/odata-csdl-xml-v4.01.html: ``EntitySet`` names its
``EntityType``, whose ``Property`` and ``NavigationProperty`` elements are the fields a record carries)."""

from __future__ import annotations

from xml.etree import ElementTree

from mlconnector.errors import RemoteError

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


def entity_set_fields(system: str, document: str) -> dict[str, frozenset[str]]:
    """Entity set name -> the names of its entity type's properties and navigation properties."""
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError as exc:
        raise RemoteError(system, 200, message=f"its $metadata is not XML ({exc})") from None
    types: dict[str, frozenset[str]] = {}
    sets: dict[str, str] = {}
    for schema in root.iter(f"{EDM}Schema"):
        namespace = schema.get("Namespace", "")
        for entity_type in schema.iter(f"{EDM}EntityType"):
            names = [p.get("Name", "") for p in entity_type if p.tag in (f"{EDM}Property",
                                                                         f"{EDM}NavigationProperty")]
            types[f"{namespace}.{entity_type.get('Name')}"] = frozenset(filter(None, names))
        for entity_set in schema.iter(f"{EDM}EntitySet"):
            sets[entity_set.get("Name", "")] = entity_set.get("EntityType", "")
    return {name: types.get(kind, frozenset()) for name, kind in sets.items() if kind in types}
