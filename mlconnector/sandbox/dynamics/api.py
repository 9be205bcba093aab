"""The BC API v2.0 surface: companies, entity sets with GUID keys, document lines, bound actions, subscriptions.

Paths below ``.../api/v2.0/`` are parsed segment by segment (``companies({id})/salesOrders({id})/salesOrderLines``)
because OData keys in parentheses do not fit a route table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timezone
from typing import TYPE_CHECKING, Any, Callable

from starlette.requests import Request
from starlette.responses import Response

from ..common import loads
from . import batch, errors, metadata
from .errors import ODataError, json_response
from .metadata import COMPANY as COMPANY_TYPES
from .odata import Query, apply_select, next_link, parse_query, requested_page_size, select_page
from .schema import BLANK_DATETIME, ENTITIES, REFERENCES, SUBSCRIPTION_TYPES, EntitySpec
from .store import Company, OrderIndex, RowViews, StoredRow, field_default, format_datetime

if TYPE_CHECKING:
    from .sandbox import DynamicsSandbox

_SEGMENT_RE = re.compile(r"^([A-Za-z$][\w.]*)(?:\((.*)\))?$")
_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Segment:
    name: str
    key: str | None


def parse_segments(rest: str) -> list[Segment]:
    segments = []
    for part in filter(None, rest.split("/")):
        match = _SEGMENT_RE.match(part)
        if not match:
            raise errors.query_syntax()
        segments.append(Segment(match.group(1), match.group(2)))
    return segments


def guid_key(key: str) -> str:
    """API v2.0 keys are unquoted GUIDs; anything else is a query syntax error, as in BC."""
    if not _GUID_RE.match(key or ""):
        raise errors.query_syntax()
    return key.lower()


async def read_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = loads(raw or b"{}")
    except ValueError:
        raise errors.bad_body() from None
    if not isinstance(body, dict):
        raise errors.bad_body()
    return body


def check_if_match(request: Request, current: str) -> None:
    """PATCH/DELETE need If-Match: the row's etag or '*'. Missing -> 400, stale -> 409 (Request_EntityChanged)."""
    supplied = request.headers.get("if-match")
    if not supplied:
        raise errors.missing_etag()
    if supplied.strip() != "*" and supplied.strip() != current:
        raise errors.entity_changed()


class ApiV2:
    """Handles one request below ``api/v2.0/`` once the caller is authenticated."""

    # Tables whose API row depends on the stored row alone: kept per row version, so a read of a large table in
    # pages does not convert every row again for each page (the emulator's cost, not BC's).
    CACHED_ROWS = ("customers", "vendors", "items", "contacts")

    def __init__(self, sandbox: "DynamicsSandbox") -> None:
        self.sandbox = sandbox
        self.db = sandbox.db
        self._rows = RowViews()
        self._orders = OrderIndex()

    def _api_row(self, company: Company, set_name: str, row: StoredRow) -> dict[str, Any]:
        if set_name not in self.CACHED_ROWS:
            return self.db.to_api(set_name, row)
        return self._rows.get((company.id, set_name, row.id), row, lambda: self.db.to_api(set_name, row))

    async def handle(self, request: Request, rest: str, root: str, principal: str) -> Response:
        if rest.strip("/") == "$metadata":
            if request.method != "GET":
                raise errors.method_not_allowed(request.method, "$metadata")
            return Response(metadata.csdl(), media_type="application/xml")
        if rest.strip("/") == "$batch":
            return await batch.run(self, request, root, principal)
        segments = parse_segments(rest)
        if not segments:
            return json_response({"@odata.context": f"{root}/$metadata",
                                  "value": [{"name": "companies", "kind": "EntitySet", "url": "companies"}]})
        head = segments[0]
        if head.name == "subscriptions":
            return await self._subscriptions(request, head, segments[1:], root, principal)
        if head.name == "companies":
            if head.key is None:
                return self._list_companies(request, root, segments[1:])
            company = self._company(guid_key(head.key))
            if len(segments) == 1:
                return self._get_company(request, company, root)
            return await self._entity(request, company, segments[1:], root)
        if head.name in ENTITIES and "company" in request.query_params:
            # .../api/v2.0/customers?company={id or name}
            ref = request.query_params["company"]
            try:
                company = self.db.company(ref.lower() if _GUID_RE.match(ref) else ref)
            except KeyError:
                raise _company_not_found(ref) from None
            return await self._entity(request, company, segments, root)
        if head.name in ENTITIES:
            raise ODataError(400, "Internal_CompanyNotFound",
                             "Cannot process the request because the default company cannot be found. You can "
                             "specify a default company in the service configuration file, or specify one for "
                             "each tenant, or you can add a query string in the form of \"company=[name]\". You "
                             "can see the available companies by accessing the default OData web service, "
                             "Company. For more information, see \"OData Web Services\" in Help.")
        raise errors.segment_not_found(head.name)

    # -- companies --------------------------------------------------------------------------------------------

    def _company(self, company_id: str) -> Company:
        try:
            return self.db.company(company_id)
        except KeyError:
            raise _company_not_found(company_id) from None

    def _list_companies(self, request: Request, root: str, more: list[Segment]) -> Response:
        if more:
            raise errors.segment_not_found(more[0].name)
        if request.method != "GET":
            raise errors.method_not_allowed(request.method, "companies")
        query = parse_query(dict(request.query_params), COMPANY_TYPES, "company")
        rows = [c.to_api() for c in self.db.companies.values()]
        page = select_page(rows, query, COMPANY_TYPES, ["name"], self.sandbox.max_page_size)
        return json_response({"@odata.context": f"{root}/$metadata#companies",
                              "value": [apply_select(r, query.select) for r in page.rows]})

    def _get_company(self, request: Request, company: Company, root: str) -> Response:
        if request.method != "GET":
            raise errors.method_not_allowed(request.method, "companies")
        return json_response({"@odata.context": f"{root}/$metadata#companies/$entity", **company.to_api()})

    def _company_information(self, request: Request, company: Company, root: str) -> Response:
        """The company's one companyInformation row; ``currencyCode`` is "the default currency code for the company"
        (its local currency: https://learn.microsoft.com/dynamics365/business-central/dev-itpro/api-reference/v2.0/
        resources/dynamics_companyinformation). Read only here (BC also takes a PATCH)."""
        if request.method != "GET":
            raise errors.method_not_allowed(request.method, "companyInformation")
        row = {"@odata.etag": f'W/"JzQ0O{company.id[:8]}MDsn"', "id": company.id, "displayName": company.display_name,
               "addressLine1": "", "addressLine2": "", "city": "", "state": "", "country": "", "postalCode": "",
               "phoneNumber": "", "faxNumber": "", "email": "", "website": "", "taxRegistrationNumber": "",
               "currencyCode": company.currency_code,
               "currentFiscalYearStartDate": f"{self.sandbox.clock.now().year}-01-01",
               "industry": "", "picture@odata.mediaReadLink": None,
               "lastModifiedDateTime": format_datetime(company.created)}
        return json_response({"@odata.context": f"{root}/$metadata#companies({company.id})/companyInformation",
                              "value": [row]})

    # -- entity sets ------------------------------------------------------------------------------------------

    async def _entity(self, request: Request, company: Company, segments: list[Segment], root: str) -> Response:
        first = segments[0]
        if first.name == "companyInformation" and len(segments) == 1:
            return self._company_information(request, company, root)
        if first.name in ("customerPaymentJournals", "customerPayments", "generalLedgerEntries"):
            return await self.sandbox.payment_journals.handle(request, company.id, segments, root)
        if first.name == "defaultDimensions" and len(segments) == 1:
            return self.sandbox.dimensions.api_collection(
                request, self._default_dimensions(company), first.key and guid_key(first.key),
                f"{root}/$metadata#companies({company.id})/defaultDimensions")
        spec = ENTITIES.get(first.name)
        if spec is None:
            raise errors.segment_not_found(first.name)
        context = f"{root}/$metadata#companies({company.id})/{spec.set_name}"
        if len(segments) == 1:
            if first.key is None:
                return await self._collection(request, company, spec, None, context)
            row = self._row(company, spec, guid_key(first.key))
            return await self._single(request, company, spec, row, context)
        if len(segments) in (2, 3) and first.key is not None:
            header = self._row(company, spec, guid_key(first.key))
            nested = segments[1]
            if nested.name.startswith("Microsoft.NAV."):
                return self._bound_action(request, company, spec, header, nested.name)
            if spec.set_name == "customers" and nested.name == "defaultDimensions" and len(segments) == 2:
                return self.sandbox.dimensions.api_collection(
                    request, self._default_dimensions(company, header), nested.key and guid_key(nested.key),
                    f"{context}({header.id})/defaultDimensions")
            if spec.set_name == "contacts" and nested.name == "contactInformation" and len(segments) == 2:
                if request.method != "GET":
                    raise errors.method_not_allowed(request.method, "contactInformation")
                return json_response({"@odata.context": f"{context}({header.id})/contactInformation",
                                      "value": self.db.contact_information(company, header)})
            if spec.lines and nested.name == spec.lines:
                line_spec = ENTITIES[spec.lines]
                line_context = f"{root}/$metadata#companies({company.id})/{spec.set_name}({header.id})/{spec.lines}"
                if nested.key is None and len(segments) == 2:
                    return await self._collection(request, company, line_spec, header, line_context)
                if nested.key is not None and len(segments) == 2:
                    line = self._row(company, line_spec, guid_key(nested.key))
                    if line.values.get("documentId") != header.id:
                        raise errors.not_found(line_spec.entity_name, nested.key)
                    return await self._single(request, company, line_spec, line, line_context)
        raise errors.segment_not_found(segments[-1].name)

    def _default_dimensions(self, company: Company, customer: StoredRow | None = None) -> list[dict[str, Any]]:
        """The company's default dimensions (dimensions.py), or one customer's."""
        ids = {str(r.values.get("number")): r.id for r in company.table("customers").values()}
        number = None if customer is None else str(customer.values.get("number"))
        return self.sandbox.dimensions.api_rows(company.id, ids.get, number)

    def _row(self, company: Company, spec: EntitySpec, key: str) -> StoredRow:
        row = company.table(spec.set_name).get(key)
        if row is None:
            raise errors.not_found(spec.entity_name, key)
        return row

    async def _collection(self, request: Request, company: Company, spec: EntitySpec, header: StoredRow | None,
                          context: str) -> Response:
        if request.method == "POST":
            body = await read_json(request)
            if spec.header is not None:
                if header is None:
                    header_ref = body.get("documentId")
                    if not header_ref:
                        raise errors.ODataError(400, "BadRequest_RequiredParamNotProvided",
                                                "Field 'documentId' must not be blank or empty.")
                    header = self._row(company, ENTITIES[spec.header], guid_key(str(header_ref)))
                row = self.db.insert_line(company, spec.header, header, body)
            else:
                row = self.db.create(company, spec.set_name, body)
            entity = self._expanded(company, spec, row, Query(), request)
            location = f"{str(request.url).split('?')[0]}({row.id})"
            return json_response({"@odata.context": f"{context}/$entity", **entity}, status=201,
                                 headers={"Location": location, "ETag": row.etag})
        if request.method != "GET":
            raise errors.method_not_allowed(request.method, spec.set_name)
        query = parse_query(dict(request.query_params), spec.fields, spec.entity_name, spec.expands)
        since = query.lower_bounds.get("lastModifiedDateTime") if "lastModifiedDateTime" in spec.fields else None
        # A filter on the modification time is answered from the stored stamp first (BC's SystemModifiedAt is
        # indexed), so only rows that can match are converted and filtered; the filter below stays exact.
        table = company.table(spec.set_name)
        rows = (list(table.values()) if header is None and since is None  # a whole read, page after page
                else [r for r in table.values() if (header is None or r.values.get("documentId") == header.id)
                      and (since is None or (r.modified is not None and r.modified >= since))])
        page_size, applied = requested_page_size(request.headers.get("prefer"), self.sandbox.max_page_size)
        key_fields = ["documentId", "sequence"] if spec.header else (["number", "id"] if "number" in spec.fields
                                                                      else ["id"])
        # Ordered by the stored values, viewed and filtered only as far as the page goes (an index, as BC's SQL
        # has): the rows a client has paged past are not converted again for each page.
        page = select_page(rows, query, spec.fields, key_fields, page_size,
                           view=lambda r: self._api_row(company, spec.set_name, r),
                           field_of=lambda name: _stored_field(spec, name),
                           index=lambda order, build: self._orders.get(
                               (company.id, spec.set_name, order, header.id if header else None, since),
                               len(company.table(spec.set_name)), build))
        by_id = company.table(spec.set_name)
        body: dict[str, Any] = {"@odata.context": context}
        if query.count:
            body["@odata.count"] = page.count
        body["value"] = [self._expanded(company, spec, by_id[r["id"]], query, request) for r in page.rows]
        if page.next_token:
            body["@odata.nextLink"] = next_link(str(request.url).split("?")[0], query, page.next_token)
        headers = {"Preference-Applied": f"odata.maxpagesize={page_size}"} if applied else {}
        return json_response(body, headers=headers)

    async def _single(self, request: Request, company: Company, spec: EntitySpec, row: StoredRow,
                      context: str) -> Response:
        if request.method == "GET":
            query = parse_query(dict(request.query_params), spec.fields, spec.entity_name, spec.expands)
            return json_response({"@odata.context": f"{context}/$entity",
                                  **self._expanded(company, spec, row, query, request)},
                                 headers={"ETag": row.etag})
        if request.method == "PATCH":
            check_if_match(request, row.etag)
            body = await read_json(request)
            if spec.header is not None:
                self.db.update_line(company, spec.set_name, row, body)
            else:
                self.db.update(company, spec.set_name, row, body)
            return json_response({"@odata.context": f"{context}/$entity",
                                  **self._expanded(company, spec, row, Query(), request)},
                                 headers={"ETag": row.etag})
        if request.method == "DELETE":
            check_if_match(request, row.etag)
            if spec.header is not None:
                self.db.delete_line(company, spec.set_name, row)
            else:
                self.db.delete(company, spec.set_name, row)
            return Response(status_code=204, headers={"OData-Version": "4.0"})
        raise errors.method_not_allowed(request.method, spec.set_name)

    def _expanded(self, company: Company, spec: EntitySpec, row: StoredRow, query: Query,
                  request: Request) -> dict[str, Any]:
        entity = apply_select(self._api_row(company, spec.set_name, row), query.select)
        if query.expand and entity is not None:
            entity = dict(entity)  # the kept view itself is never changed
        for name, nested_select in query.expand.items():
            if name == spec.lines:
                lines = self.db.lines_of(company, spec.set_name, row.id)
                entity[name] = [apply_select(self.db.to_api(name, line), nested_select) for line in lines]
            elif name == "defaultDimensions" and spec.set_name == "customers":
                entity[name] = [apply_select(d, nested_select) for d in self._default_dimensions(company, row)]
            elif name == "contactInformation" and spec.set_name == "contacts":
                entity[name] = [apply_select(info, nested_select)
                                for info in self.db.contact_information(company, row)]
            elif name in REFERENCES:
                set_name, key = REFERENCES[name]
                found = company.table(set_name).get(str(row.values.get(key) or "").lower())
                entity[name] = (apply_select(self.db.to_api(set_name, found), nested_select)
                                if found else None)
        return entity

    def _bound_action(self, request: Request, company: Company, spec: EntitySpec, row: StoredRow,
                      action: str) -> Response:
        if request.method != "POST":
            raise errors.method_not_allowed(request.method, action)
        if spec.set_name == "salesInvoices" and action == "Microsoft.NAV.post":
            self.db.post_invoice(company, row)
            self.sandbox.journals.invoice_posted(company.id, row.values)
            return Response(status_code=204, headers={"OData-Version": "4.0"})
        raise ODataError(400, "BadRequest_MethodNotImplemented", "Entity does not support bound actions")

    # -- subscriptions ----------------------------------------------------------------------------------------

    async def _subscriptions(self, request: Request, head: Segment, more: list[Segment], root: str,
                             principal: str) -> Response:
        hooks = self.sandbox.webhooks
        context = f"{root}/$metadata#subscriptions"
        if more:
            raise errors.segment_not_found(more[0].name)
        if head.key is None:
            if request.method == "POST":
                sub = await hooks.create(await read_json(request), principal)
                return json_response({"@odata.context": f"{context}/$entity", **sub.to_api()}, status=201,
                                     headers={"ETag": sub.etag})
            if request.method != "GET":
                raise errors.method_not_allowed(request.method, "subscriptions")
            query = parse_query(dict(request.query_params), SUBSCRIPTION_TYPES, "subscription")
            rows = [sub.to_api() for sub in hooks.all_live()]
            page = select_page(rows, query, SUBSCRIPTION_TYPES, ["subscriptionId"], self.sandbox.max_page_size)
            return json_response({"@odata.context": context,
                                  "value": [apply_select(r, query.select) for r in page.rows]})
        key = head.key
        if not (len(key) >= 2 and key[0] == key[-1] == "'"):
            raise errors.query_syntax()   # subscriptionId is a string key: subscriptions('<id>')
        sub = hooks.live(key[1:-1])
        if request.method == "GET":
            return json_response({"@odata.context": f"{context}/$entity", **sub.to_api()})
        if request.method == "PATCH":
            check_if_match(request, sub.etag)
            sub = await hooks.renew(sub, await read_json(request))
            return json_response({"@odata.context": f"{context}/$entity", **sub.to_api()},
                                 headers={"ETag": sub.etag})
        if request.method == "DELETE":
            check_if_match(request, sub.etag)
            hooks.subscriptions.pop(sub.subscription_id, None)
            return Response(status_code=204, headers={"OData-Version": "4.0"})
        raise errors.method_not_allowed(request.method, "subscriptions")


def _company_not_found(ref: str) -> ODataError:
    return ODataError(404, "Internal_CompanyNotFound", f"The company '{ref}' does not exist.")


def _stored_field(spec: EntitySpec, name: str) -> Callable[[StoredRow], Any]:
    """Reads a field of a stored row as its API view shows it (Database.to_api), for ordering without the view."""
    if name == "lastModifiedDateTime":
        return _shown_modified
    default = field_default(spec, name)
    return lambda row: row.values.get(name, default)


def _shown_modified(row: StoredRow) -> Any:
    moment = row.modified
    if moment is None:
        return BLANK_DATETIME
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)  # shown to the millisecond
