"""Object Query reads (Zuora's recommended reads): cursor pages of at most 99 records, expansions in the same call.
Changes, lookups by id or key, and the rows the writes look for."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

from mlconnector.systems.base import Record
from mlconnector.systems.zuora.client import ZuoraClient
from mlconnector.systems.zuora.records import EXPANDS, Rows, oq_time

PAGE_SIZE = 99                   # Object Query's maximum


class ObjectQuery:
    """Reads through ``/object-query``: every row of a filter, a record by id, many by ids."""

    def __init__(self, client: ZuoraClient, rows: Rows, page_size: int) -> None:
        self.name = client.name
        self.page_size = page_size
        self._call, self._ok, self._note_clock = client.call, client.ok, client.note_clock
        self._record = rows.record

    def query(self, table: str, filters: list[str], *, sort: str | None = None,
               expand: tuple[str, ...] = (), clock: str | None = None) -> Iterator[dict[str, Any]]:
        """Every row through Object Query's cursor pages. ``clock``: the entity whose read this is, to note
        Zuora's clock as it began (the first page's call)."""
        cursor: str | None = None
        while True:
            params: list[tuple[str, Any]] = [("pageSize", self.page_size)]
            params += [("filter[]", f) for f in filters] + [("expand[]", e) for e in expand]
            if sort:
                params.append(("sort[]", sort))
            if cursor:
                params.append(("cursor", cursor))
            response = self._call("GET", f"/object-query/{table}", params=params)
            self._note_clock(clock, response)
            body = self._ok(response, f"query {table}")
            yield from body.get("data") or []
            cursor = body.get("nextPage")
            if not cursor:
                return

    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        """Records updated in [since, until), ascending by updatedDate, through Object Query's cursor paging."""
        filters = []
        if since is not None:
            filters.append(f"updateddate.GE:{oq_time(since)}")
        if until is not None:
            filters.append(f"updateddate.LT:{oq_time(until, up=True)}")
        if entity == "subscriptions":
            filters.append("isLatestVersion.EQ:true")
        for row in self.query(entity, filters, sort="updateddate.ASC", expand=EXPANDS.get(entity, ()),
                              clock=entity):
            yield self._record(entity, row)

    def get(self, entity: str, id: str) -> Record | None:
        params = [("expand[]", e) for e in EXPANDS.get(entity, ())]
        response = self._call("GET", f"/object-query/{entity}/{quote(id, safe='')}", params=params)
        if response.status_code == 404:
            return None
        return self._record(entity, self._ok(response, f"get {entity} {id}"))

    def get_many(self, entity: str, ids: list[str]) -> dict[str, Record]:
        """Many records in one query (``id.IN:[...]``), for callouts that name several."""
        found: dict[str, Record] = {}
        for start in range(0, len(ids), self.page_size):
            chunk = ids[start:start + self.page_size]
            for row in self.query(entity, [f"id.IN:[{','.join(chunk)}]"], expand=EXPANDS.get(entity, ())):
                record = self._record(entity, row)
                found[record.id] = record
        return found
