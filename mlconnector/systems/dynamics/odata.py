"""OData as Business Central and NAV speak it, in both modes: times (DateTimeOffset literals, BC's blank date,
a page's date as the end of its day), key literals, BC's errors (and the 409s worth sending again), rows without
their ``@odata`` annotations, and every collection read page by page."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from functools import lru_cache, partial
from typing import Any

import httpx

from mlconnector.clock import parse_utc
from mlconnector.errors import MLConnectorError
from mlconnector.http import json_body
from mlconnector.systems.base import Record
from mlconnector.systems.odata_paging import NextLinkPaginator, ReadAhead, read_rows

BLANK_DATETIME = "0001-01-01T00:00:00Z"
DEFAULT_PAGE_SIZE = 1000
# A whole read with pages of at least this many rows starts with smaller pages (_pages).
RAMP_FROM = 5_000
# BC's 409s that mean "try again" (a lock or deadlock), unlike Request_EntityChanged.
_TRANSIENT_409 = re.compile(r"deadlock|locked by another user|lock(ing)? timeout|Internal_LockTimeout", re.I)


def odata_time(moment: datetime, *, up: bool = False) -> str:
    """A DateTimeOffset literal in UTC with milliseconds, BC's precision. Rounded down for a lower bound (``ge``
    keeps a row stamped in the same millisecond) and up for an upper bound (``lt`` keeps it too)."""
    moment = moment.astimezone(timezone.utc)
    micro = moment.microsecond
    moment = moment.replace(microsecond=micro // 1000 * 1000)
    if up and micro % 1000:
        moment += timedelta(milliseconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(value: Any) -> datetime | None:
    """lastModifiedDateTime (or a Date) as aware UTC; BC's blank 0001-01-01 means "never stamped": None."""
    if not isinstance(value, str) or value.startswith("0001-01-01"):
        return None
    return parse_utc(value)


def _quote_key(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _error(response: httpx.Response) -> tuple[str, str]:
    """BC's {"error": {"code", "message"}} without the trailing CorrelationId noise."""
    body = json_body(response)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    message = re.sub(r"\s*CorrelationId:\s*[0-9a-fA-F-]+\.?\s*$", "", str(error.get("message") or ""))
    return str(error.get("code") or ""), message


def _is_transient(response: httpx.Response) -> bool:
    """A 409 from a table lock or deadlock is worth sending again; a stale ETag (Request_EntityChanged) is not."""
    if response.status_code != 409:
        return False
    code, message = _error(response)
    return code != "Request_EntityChanged" and bool(_TRANSIENT_409.search(f"{code} {message}"))


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(row)
    for key in [k for k in data if k[:1] == "@"]:  # cheaper than testing every key's prefix
        if key.startswith("@odata."):
            del data[key]
    return data


def _nav_value(value: Any) -> Any:
    """Option values travel XML-encoded in page web services (" " -> "_x0020_")."""
    if isinstance(value, str) and "_x0020_" in value:
        return value.replace("_x0020_", " ")
    return value


@lru_cache(maxsize=4096)
def _day_end(day: str) -> datetime | None:
    """``_end_of_day``, once per date: a page of cards shares a few hundred dates among thousands of rows."""
    return _end_of_day(day)


@lru_cache(maxsize=4096)
def _isoformat(moment: datetime) -> str:
    return moment.isoformat()


# What a read fills in that the record itself does not hold: a page's stamp, capped at the read's end, and the
# relations a read of contacts joins in (a write's answer has neither).
NOT_STORED = frozenset({"lastModifiedDateTime", "relations", "businessRelation"})


def _business_relation(relations: list[dict[str, Any]]) -> dict[str, Any]:
    """A contact's first customer or vendor ({type, id}) as ``businessRelation``: what a write names to put a person
    contact under that customer's or vendor's company contact, so a contact read back holds what was written."""
    return {"businessRelation": {"type": relations[0]["type"], "id": str(relations[0]["id"])}} if relations else {}


def _as_stored(record: Record) -> Record:
    """The record a write's answer describes, as WriteResult.stored: its fields but those a read fills in."""
    return Record(record.system, record.entity, record.id, record.modified,
                  {k: v for k, v in record.data.items() if k not in NOT_STORED})


def _end_of_day(day: str) -> datetime | None:
    moment = parse_time(day)
    if moment is None:
        return None
    return moment.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1) - timedelta(milliseconds=1)


class Pager:
    """Every row of a collection, page by page, the next page asked for while this one's rows are taken; the
    engine turns reading ahead, small first pages and row counts on and off through the connector."""

    def __init__(self, call: Callable[..., httpx.Response],
                 read_failure: Callable[[httpx.Response, str], MLConnectorError],
                 reader: Callable[[], ThreadPoolExecutor], page_size: int) -> None:
        self._call = call
        self._read_failure = read_failure
        self._reader = reader
        self.page_size = page_size
        # Whether a read asks for its next page while this one's rows are taken (the engine turns it off for a
        # first load written in bulk jobs, which holds a whole job's records: one page less in memory).
        self.pages_ahead = True
        # Whether a read asks for its row count with its first page ($count=true, no call of its own): the engine
        # turns it on where a progress bar can show a total (see ``counted``).
        self.count_rows = False
        self._counts: dict[str, int] = {}
        self.small_first_pages = True

    def counted(self, entity: str) -> int | None:
        """How many rows the read of ``entity`` under way will give, as its first page said (``count_rows``)."""
        return self._counts.get(entity)

    def pages(self, url: str, params: dict[str, str] | None, page_size: int | None = None, *,
              ramp: bool = False, count_as: str | None = None) -> Iterator[dict[str, Any]]:
        """Every row of a collection, page by page (``odata_paging``). With ``ramp`` (a whole table read) the first
        pages are smaller (a tenth, then twice as many each time, up to the page size): the first rows come in a
        fraction of the time a full page takes the server to build and send, and each next page, asked for as the
        one before it comes, arrives before that one is written (a page four times larger left the writes waiting
        for it)."""
        full = page_size or self.page_size
        paginator = NextLinkPaginator(full, full // 10 if ramp and self.small_first_pages and full >= RAMP_FROM
                                      else full)
        count = None
        if count_as and self.count_rows:
            params = {**(params or {}), "$count": "true"}
            self._counts.pop(count_as, None)
            count = partial(self._counts.__setitem__, count_as)
        # The next page is asked for while this one's rows are taken: its round trip and the server's work overlap
        # ours instead of stalling the run at every page boundary. Not where smaller pages were asked for to save
        # memory (a first read of documents with their lines): two of those in memory took a first load over its
        # budget.
        ahead = ReadAhead(lambda: self.pages_ahead, self._reader) if page_size is None else None
        return read_rows(self._call, paginator.init_request(url, params), paginator,
                         lambda response: self._read_failure(response, url), ahead=ahead, count=count)
