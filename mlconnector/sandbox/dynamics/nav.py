"""NAV / BC ODataV4 page web services: ``ODataV4/Company('<name>')/<ServiceName>`` over the same tables as the API.

Company names are case-sensitive and matched exactly (publish-web-service.md). Service names are the ones
"published" on the sandbox's Web Services list (``DynamicsSandbox.nav_services``); pages show EDM-mangled
control names (``No``, ``E_Mail``, ``Phone_No``, ``Last_Date_Modified``) and are keyed by their table's primary
key, e.g. ``Customer('C00010')`` or ``SalesOrder('Order','S-ORD101001')``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from . import errors, nav_metadata
from .api import check_if_match, read_json
from .errors import ODataError, json_response
from .odata import apply_select, next_link, parse_query, requested_page_size, select_page
from .schema import (BLANK_DATE, ENTITIES, LAST_DATE_MODIFIED, POSTED_INVOICE_STATUSES, RELATIONS_TYPES,
                     EntitySpec, PageSpec)
from .store import Company, OrderIndex, RowViews, StoredRow, field_default

if TYPE_CHECKING:
    from .sandbox import DynamicsSandbox

_COMPANY_RE = re.compile(r"^Company\((?:'((?:[^']|'')*)'|Id=([0-9a-fA-F-]{36}))\)$")
_SERVICE_RE = re.compile(r"^([A-Za-z_][\w]*)(?:\((.*)\))?$")
_KEY_PART_RE = re.compile(r"\s*(?:(\w+)\s*=\s*)?'((?:[^']|'')*)'\s*(?:,|$)")


def _split_company(rest: str) -> tuple[str | None, str]:
    """'Company('X')/Customer(...)' -> ("Company('X')", "Customer(...)"); quotes may hide slashes."""
    if not rest.startswith("Company("):
        return None, rest
    depth, quoted = 0, False
    for index, char in enumerate(rest):
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0:
                return rest[:index + 1], rest[index + 2:]
    raise errors.query_syntax()


def _parse_key(text: str, key_fields: tuple[str, ...]) -> dict[str, str]:
    parts = _KEY_PART_RE.findall(text)
    if not parts or len(parts) != len(key_fields):
        raise errors.query_syntax()
    if all(name for name, _ in parts):
        values = {name: value.replace("''", "'") for name, value in parts}
        if set(values) != set(key_fields):
            raise errors.query_syntax()
        return values
    return {name: value.replace("''", "'") for name, (_, value) in zip(key_fields, parts)}


class ODataV4Pages:
    """Serves the published pages; one instance per sandbox."""

    # Card tables whose page row depends on the stored row alone: their page rows are kept per row version, so a
    # read of a large table in pages does not convert every row again for each page (the emulator's cost, not
    # NAV's; a server's SQL reads its key in order).
    CACHED_VIEWS = ("customers", "vendors", "items")

    def __init__(self, sandbox: "DynamicsSandbox") -> None:
        self.sandbox = sandbox
        self.db = sandbox.db
        self._views = RowViews()
        self._orders = OrderIndex()

    async def handle(self, request: Request, rest: str, root: str) -> Response:
        rest = rest.strip("/")
        if rest == "$metadata":
            if request.method != "GET":
                raise errors.method_not_allowed(request.method, "$metadata")
            return Response(nav_metadata.csdl(self.sandbox.nav_services, self.sandbox.relations_service,
                                              self.db.table_spec),
                            media_type="application/xml")
        company_part, remainder = _split_company(rest)
        if company_part is None and remainder in ("Company", ""):
            return self._list_companies(root)
        if company_part is not None:
            company = self._company_from_segment(company_part)
        else:
            company = self._company_from_query(request)
        if not remainder:
            return json_response({"@odata.context": f"{root}/$metadata#Company/$entity",
                                  **_company_row(company)})
        segments = remainder.split("/")
        if segments == [self.sandbox.relations_service]:
            return self._relations(request, company, root)
        match = _SERVICE_RE.match(segments[0])
        if match and match.group(1) == self.sandbox.dimensions_service and len(segments) == 1 and not match.group(2):
            # page 540 Default Dimensions (dimensions.py)
            return await self.sandbox.dimensions.handle(
                request, company.id, f"{root}/$metadata#Company('{company.name}')/{match.group(1)}")
        if match and match.group(1) in self.sandbox.journal_services and len(segments) == 1:
            # journals and ledger entries (journals.py): tables of their own, not card or document rows
            return await self.sandbox.journals.handle(request, company.id, match.group(1), match.group(2),
                                                      f"{root}/$metadata#Company('{company.name}')/{match.group(1)}")
        if not match or match.group(1) not in self.sandbox.nav_services:
            raise errors.segment_not_found(segments[0].split("(")[0])
        service, key = match.group(1), match.group(2)
        page = self.sandbox.nav_services[service]
        context = f"{root}/$metadata#Company('{company.name}')/{service}"
        if key is None:
            if len(segments) > 1:
                raise errors.segment_not_found(segments[1])
            return await self._collection(request, company, service, page, context)
        row = self._find(company, page, _parse_key(key, page.key))
        if len(segments) == 2 and page.lines_part and segments[1] == page.lines_part:
            if request.method != "GET":
                raise errors.method_not_allowed(request.method, page.lines_part)
            return json_response({"@odata.context": f"{context}/{page.lines_part}",
                                  "value": self._lines(company, page, row)})
        if len(segments) > 1:
            raise errors.segment_not_found(segments[1])
        return await self._single(request, company, page, row, context)

    def _relations(self, request: Request, company: Company, root: str) -> Response:
        """Page 5054 "Contact Business Relations", read-only: one row per contact and linked customer/vendor."""
        if request.method != "GET":
            raise errors.method_not_allowed(request.method, "Contact Business Relation")
        contacts = company.table("contacts")
        views = []
        for relation in company.relations:
            contact = contacts.get(relation.contact_id)
            related = company.table("customers" if relation.link_to_table == "Customer" else "vendors").get(
                relation.related_id)
            if contact is None or related is None:
                continue
            views.append({"Contact_No": contact.values.get("number", ""), "Business_Relation_Code": relation.code,
                          "Link_to_Table": relation.link_to_table, "No": related.values.get("number", ""),
                          "Business_Relation_Description": relation.link_to_table,
                          "Contact_Name": contact.values.get("displayName", "")})
        query = parse_query(dict(request.query_params), RELATIONS_TYPES, "Contact Business Relation")
        page_size, _ = requested_page_size(request.headers.get("prefer"), self.sandbox.max_page_size)
        result = select_page(views, query, RELATIONS_TYPES, ["Contact_No", "Business_Relation_Code"], page_size)
        body: dict[str, Any] = {
            "@odata.context": f"{root}/$metadata#Company('{company.name}')/{self.sandbox.relations_service}",
            "value": [apply_select(v, query.select) for v in result.rows]}
        if result.next_token:
            body["@odata.nextLink"] = next_link(str(request.url).split("?")[0], query, result.next_token)
        return json_response(body)

    # -- companies --------------------------------------------------------------------------------------------

    def _list_companies(self, root: str) -> Response:
        return json_response({"@odata.context": f"{root}/$metadata#Company",
                              "value": [_company_row(c) for c in self.db.companies.values()]})

    def _company_from_segment(self, segment: str) -> Company:
        match = _COMPANY_RE.match(segment)
        if not match:
            raise errors.query_syntax()
        name, company_id = match.group(1), match.group(2)
        ref = company_id.lower() if company_id else unquote(name or "").replace("''", "'")
        try:
            return self.db.company(ref)
        except KeyError:
            raise _no_company(ref) from None

    def _company_from_query(self, request: Request) -> Company:
        name = request.query_params.get("company")
        if name is None:
            if len(self.db.companies) == 1:   # the only company is the default (use-odata-to-modify-data.md)
                return next(iter(self.db.companies.values()))
            raise ODataError(400, "Internal_CompanyNotFound",
                             "Cannot process the request because the default company cannot be found. You can "
                             "specify a default company in the service configuration file, or specify one for "
                             "each tenant, or you can add a query string in the form of \"company=[name]\". You "
                             "can see the available companies by accessing the default OData web service, "
                             "Company. For more information, see \"OData Web Services\" in Help.")
        try:
            return self.db.company(name)
        except KeyError:
            raise _no_company(name) from None

    # -- rows -------------------------------------------------------------------------------------------------

    def _visible(self, page: PageSpec, row: StoredRow) -> bool:
        return not page.posted_only or row.values.get("status") in POSTED_INVOICE_STATUSES

    def nav_row(self, page: PageSpec, row: StoredRow) -> dict[str, Any]:
        api = self.db.to_api(page.entity_set, row, extended=True)  # a page extension may show extension fields
        only = ENTITIES[page.entity_set].page_only   # fields the API does not show: the stored row has them
        out: dict[str, Any] = {"@odata.etag": row.etag}
        for nav_name, source in page.fields:
            if isinstance(source, str) and source in only:
                out[nav_name] = row.values.get(source, "")
                continue
            out[nav_name] = api.get(source) if isinstance(source, str) else source(api)
        if page.last_date_modified:
            out[LAST_DATE_MODIFIED] = row.modified.date().isoformat() if row.modified else BLANK_DATE
        return out

    def _view(self, company: Company, page: PageSpec, row: StoredRow) -> dict[str, Any]:
        """``nav_row``, kept per (row version, modified) for card tables: a write bumps the version."""
        if page.entity_set not in self.CACHED_VIEWS or page.lines_part:
            return self.nav_row(page, row)
        return self._views.get((company.id, id(page), row.id), row, lambda: self.nav_row(page, row))

    def _types(self, page: PageSpec) -> dict[str, str]:
        spec = self.db.table_spec(page.entity_set)
        types: dict[str, str] = {}
        for nav_name, source in page.fields:
            types[nav_name] = spec.fields.get(source, "string") if isinstance(source, str) else "string"
        for nav_name in ("Closed", "Cancelled"):
            if nav_name in types:
                types[nav_name] = "boolean"
        if page.last_date_modified:
            types[LAST_DATE_MODIFIED] = "date"
        return types

    def _find(self, company: Company, page: PageSpec, key: dict[str, str]) -> StoredRow:
        for name, value in page.fixed.items():
            if key.get(name) != value:
                raise _row_missing(page, key)
        for row in company.table(page.entity_set).values():
            if row.values.get("number") == key.get("No") and self._visible(page, row):
                return row
        raise _row_missing(page, key)

    def _lines(self, company: Company, page: PageSpec, header: StoredRow) -> list[dict[str, Any]]:
        out = []
        for line in self.db.lines_of(company, page.entity_set, header.id):
            api = self.db.to_api(ENTITIES[page.entity_set].lines or "", line)
            nav: dict[str, Any] = {"@odata.etag": line.etag}
            if page.fixed.get("Document_Type"):
                nav["Document_Type"] = page.fixed["Document_Type"]
            nav.update({"Document_No": header.values["number"], "Line_No": api["sequence"]})
            for nav_name, source in page.line_fields:
                nav[nav_name] = api.get(source) if isinstance(source, str) else source(api)
            out.append(nav)
        return out

    async def _collection(self, request: Request, company: Company, service: str, page: PageSpec,
                          context: str) -> Response:
        if request.method == "POST":
            return await self._create(request, company, page, context)
        if request.method != "GET":
            raise errors.method_not_allowed(request.method, service)
        types = self._types(page)
        navigations = [page.lines_part] if page.lines_part else []
        query = parse_query(dict(request.query_params), types, service, navigations)
        since = query.lower_bounds.get(LAST_DATE_MODIFIED) if LAST_DATE_MODIFIED in types else None
        # A lower bound on Last Date Modified or on a stored date field (Posting Date) is answered from the
        # stored values first (a key on the field, as the server's SQL would use), so only rows that can match
        # are converted; the filter below stays exact.
        stored = {nav: api for nav, api in page.fields if isinstance(api, str)}
        dates = [(stored[name], str(bound)) for name, bound in query.lower_bounds.items()
                 if name in stored and types.get(name) == "date"]
        table = company.table(page.entity_set)
        if page.posted_only or since is not None or dates:
            rows = {r.id: r for r in table.values() if self._visible(page, r)
                    and (since is None or (r.modified is not None and r.modified.date().isoformat() >= since))
                    and all(str(r.values.get(api) or "") >= bound for api, bound in dates)}
        else:
            rows = table  # every row (a whole read, page after page): the table itself, not a copy per page
        page_size, applied = requested_page_size(request.headers.get("prefer"), self.sandbox.max_page_size)
        table = self.db.table_spec(page.entity_set)
        # Ordered by the stored values where the order's fields are stored ones, viewed and filtered only as far
        # as the page goes (as the server's SQL reads a key).
        result = select_page(list(rows.values()), query, types, list(page.key), page_size,
                             view=lambda r: {**self._view(company, page, r), "_rowid": r.id},
                             field_of=lambda name: _stored_field(page, table, name),
                             index=lambda order, build: self._orders.get(
                                 (company.id, id(page), order, since, tuple(dates)),
                                 len(company.table(page.entity_set)), build))
        value = []
        for view in result.rows:
            row = rows[view.pop("_rowid")]
            item = apply_select(view, query.select, page.key)
            if page.lines_part in query.expand:
                item[page.lines_part] = self._lines(company, page, row)
            value.append(item)
        body: dict[str, Any] = {"@odata.context": context}
        if query.count:  # $count=true: the number of rows the filter selects, before the first page's rows
            body["@odata.count"] = result.count
        body["value"] = value
        if result.next_token:
            body["@odata.nextLink"] = next_link(str(request.url).split("?")[0], query, result.next_token)
        headers = {"Preference-Applied": f"odata.maxpagesize={page_size}"} if applied else {}
        return json_response(body, headers=headers)

    async def _single(self, request: Request, company: Company, page: PageSpec, row: StoredRow,
                      context: str) -> Response:
        if request.method == "GET":
            types = self._types(page)
            query = parse_query(dict(request.query_params), types, "page",
                                [page.lines_part] if page.lines_part else [])
            item = apply_select(self.nav_row(page, row), query.select, page.key)
            if page.lines_part and page.lines_part in query.expand:
                item[page.lines_part] = self._lines(company, page, row)
            return json_response({"@odata.context": f"{context}/$entity", **item})
        if page.fixed or page.posted_only:
            raise errors.method_not_allowed(request.method, page.entity_set)
        if request.method == "PATCH":
            check_if_match(request, row.etag)   # use-odata-to-modify-data.md: If-Match required on PATCH
            changes = self._to_api(page, await read_json(request))
            self.db.update(company, page.entity_set, row, changes, extended=True, page=True)
            return json_response({"@odata.context": f"{context}/$entity", **self.nav_row(page, row)})
        if request.method == "DELETE":
            check_if_match(request, row.etag)
            self.db.delete(company, page.entity_set, row)
            return Response(status_code=204, headers={"OData-Version": "4.0"})
        raise errors.method_not_allowed(request.method, page.entity_set)

    async def _create(self, request: Request, company: Company, page: PageSpec, context: str) -> Response:
        if page.fixed or page.posted_only:
            # Document pages are read-only in this sandbox; write documents through the API.
            raise errors.method_not_allowed("POST", page.entity_set)
        body = await read_json(request)
        values = self._to_api(page, body)
        if body.get("No"):
            values["number"] = str(body["No"])
        row = self.db.create(company, page.entity_set, values, extended=True, page=True)
        return json_response({"@odata.context": f"{context}/$entity", **self.nav_row(page, row)}, status=201)

    def _to_api(self, page: PageSpec, body: dict[str, Any]) -> dict[str, Any]:
        writable = page.writable()
        out: dict[str, Any] = {}
        for name, value in body.items():
            if name.startswith("@odata.") or name == "No":
                continue
            if name == LAST_DATE_MODIFIED:
                raise ODataError(400, "BadRequest_InvalidOperation", "Control 'Last Date Modified' is read-only")
            source = dict(page.fields).get(name)
            if source is None:
                raise ODataError(400, "BadRequest",
                                 f"The property '{name}' does not exist on type 'NAV.{page.entity_set}'. Make sure "
                                 "to only use property names that are defined by the type.")
            if name not in writable:
                raise ODataError(400, "BadRequest_InvalidOperation", f"Control '{name}' is read-only")
            if name == "Blocked" and isinstance(value, str):
                value = value.replace("_x0020_", " ")
            out[writable[name]] = value
        return out


def _company_row(company: Company) -> dict[str, Any]:
    return {"Name": company.name, "Evaluating_Company": False, "Display_Name": company.display_name,
            "Id": company.id, "Business_Profile_Id": ""}


def _no_company(name: str) -> ODataError:
    return ODataError(404, "Internal_CompanyNotFound", f"The company '{name}' does not exist.")


def _row_missing(page: PageSpec, key: dict[str, str]) -> ODataError:
    fields = ",".join(f"{k}='{v}'" for k, v in key.items())
    return ODataError(404, "Internal_RecordNotFound",
                      f"The {page.entity_set} does not exist. Identification fields and values: {fields}")


def _stored_field(page: PageSpec, spec: EntitySpec, name: str) -> Callable[[StoredRow], Any] | None:
    """Reads a page field from a stored row as ``nav_row`` shows it, where the field is a stored one (None for a
    computed field: the rows are then viewed to be ordered)."""
    if name == LAST_DATE_MODIFIED and page.last_date_modified:
        return lambda row: row.modified.date().isoformat() if row.modified else BLANK_DATE
    source = dict(page.fields).get(name)
    if not isinstance(source, str) or source == "lastModifiedDateTime":
        return None
    if source in ENTITIES[page.entity_set].page_only:
        return lambda row: row.values.get(source, "")
    if source not in spec.fields:
        return lambda row: None
    default = field_default(spec, source)
    return lambda row: row.values.get(source, default)
