"""Reads from F&O: the legal entity's rows (incremental where a modified field is named), every key, a row by
its key, a document's lines."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from mlconnector.systems.base import Record
from mlconnector.systems.finops.client import FinOpsApi
from mlconnector.systems.finops.odata import LINES_FIELD, _clean, odata_time, parse_time, quote_string


class Reads:
    """Rows of one legal entity, as records."""

    def __init__(self, api: FinOpsApi, modified_fields: dict[str, str], read_filters: dict[str, str]) -> None:
        self.name = api.name
        self.modified_fields = modified_fields
        self.read_filters = read_filters
        self._info, self._company_filter, self._pages = api.info, api.company_filter, api.pages
        self._call, self._fail, self._key_url = api.call, api.fail, api.key_url

    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        """Rows of the legal entity; with a modified field, those modified in [since, until) in that order."""
        info = self._info(entity)
        modified = self.modified_fields.get(entity)
        terms = [self.read_filters.get(entity, "")]
        if modified and since is not None:
            terms.append(f"{modified} ge {odata_time(since)}")
        if modified and until is not None:
            terms.append(f"{modified} lt {odata_time(until)}")
        params = {"$filter": self._company_filter(*terms),
                  "$orderby": f"{modified},{info.key}" if modified else info.key}
        for row in self._pages(entity, params):
            yield self._record(entity, row)

    def record_ids(self, entity: str) -> Iterator[str]:
        """Every key of the legal entity's rows (a deletion is a key no longer here): ``$select`` of the key fields
        alone, at the connector's page size (10,000 at most, F&O's own limit), cross-company like every read.
        F&O's OData endpoint takes $select and $filter on data entities and pages by Prefer odata.maxpagesize
        (https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/odata)."""
        key = self._info(entity).key
        params = {"$filter": self._company_filter(self.read_filters.get(entity, "")),
                  "$select": f"dataAreaId,{key}"}
        for row in self._pages(entity, params):
            yield str(row[key])

    def _record(self, entity: str, row: Mapping[str, Any], lines: list[dict[str, Any]] | None = None) -> Record:
        data = _clean(row)
        if lines is not None:
            data[LINES_FIELD] = lines
        modified = self.modified_fields.get(entity)
        return Record(self.name, entity, str(data[self._info(entity).key]),
                      parse_time(data.get(modified)) if modified else None, data)

    def get(self, entity: str, id: str) -> Record | None:
        """The current row (documents with their lines); None when it is gone."""
        row = self._get_row(entity, id)
        if row is None:
            return None
        info = self._info(entity)
        lines = self.lines(entity, row) if info.lines else None
        return self._record(entity, row, lines)

    def _get_row(self, entity: str, id: Any) -> dict[str, Any] | None:
        response = self._call("GET", self._key_url(entity, id), params={"cross-company": "true"})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"GET {entity} {id}")
        return response.json()

    def lines(self, entity: str, header: Mapping[str, Any]) -> list[dict[str, Any]]:
        info = self._info(entity)
        assert info.lines and info.line_parent and info.line_sequence
        parent = header[info.key]
        literal = str(parent) if isinstance(parent, (int, float)) else quote_string(parent)
        rows = self._pages(info.lines, {"$filter": self._company_filter(f"{info.line_parent} eq {literal}"),
                                        "$orderby": info.line_sequence})
        return [_clean(r) for r in rows]
