"""OData's server-driven paging, written once for Business Central (API v2.0), NAV's page web services and F&O.

A read asks for a page size with ``Prefer: odata.maxpagesize`` and follows each page's ``@odata.nextLink``
verbatim until a page has none (never ``$top``/``$skip``, which drops the link, is capped by F&O and shifts while
rows change). Business Central documents both:
https://learn.microsoft.com/dynamics365/business-central/dev-itpro/webservices/server-driven-paging-in-odata-web-services
https://learn.microsoft.com/dynamics365/business-central/dev-itpro/webservices/use-odata-with-queries-set-with-top-number-of-rows
429s and 503s with their Retry-After are the HTTP layer's (``mlconnector.http.ApiClient``), under every call here.

``NextLinkPaginator`` holds where a read is (the request to send next); ``read_rows`` is the loop, the same for
every system: send, fail on anything but 200, hand out the page's rows, ask the paginator for the next request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from mlconnector.errors import MLConnectorError
from mlconnector.http import last_member, stream_array

NEXT_LINK = "@odata.nextLink"
COUNT = "@odata.count"


@dataclass(frozen=True)
class PageRequest:
    """One page's GET: the collection's URL and query on the first, the server's next link (which carries the
    query) after it; the page size asked for in ``Prefer``."""

    url: str
    params: dict[str, str] | None
    size: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Prefer": f"odata.maxpagesize={self.size}"}


class NextLinkPaginator:
    """Where a read of one collection is: the first request, then each page's next link. Pages may start smaller
    than ``full`` (``first``) and double up to it."""

    def __init__(self, full: int, first: int | None = None) -> None:
        self.full = full
        self.first = first or full
        self.next_link: str | None = None

    def init_request(self, url: str, params: dict[str, str] | None) -> PageRequest:
        return PageRequest(url, params, self.first)

    def update_state(self, members: dict[str, Any]) -> None:
        """A page read: the members beside its rows."""
        link = members.get(NEXT_LINK)
        self.next_link = self.follow(link) if link else None

    def update_request(self, request: PageRequest) -> PageRequest | None:
        """The next page's request, or None after the last page."""
        return self.request_for(self.next_link, request) if self.next_link else None

    def request_for(self, link: str, request: PageRequest) -> PageRequest:
        """The request that follows ``request`` to ``link``: the link as given (its query is in it), twice the
        page size up to ``full``."""
        return PageRequest(link, None, min(self.full, request.size * 2))

    def follow(self, link: str) -> str:
        """The URL a next link is read at: as the server gave it (a system may insist on a parameter)."""
        return link


@dataclass(frozen=True)
class ReadAhead:
    """Asking for the next page while this one's rows are taken, so its round trip overlaps their use: whether
    now (a read may turn it off and on as it goes), and the pool to ask in (made where first needed)."""

    wanted: Callable[[], bool]
    pool: Callable[[], ThreadPoolExecutor]


def read_rows(call: Callable[..., httpx.Response], request: PageRequest, paginator: NextLinkPaginator,
              failure: Callable[[httpx.Response], MLConnectorError], *, ahead: ReadAhead | None = None,
              count: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    """Every row of a collection, page by page. ``count`` is given the ``@odata.count`` a page carries before its
    rows (asked for with ``$count=true``), as its first row is handed out."""
    early: tuple[str, Future[httpx.Response]] | None = None
    next_request: PageRequest | None = request
    while next_request is not None:
        request = next_request
        if early is not None and early[0] == request.url:
            response = early[1].result()
        else:
            response = call("GET", request.url, params=request.params, headers=request.headers)
        early = None
        if response.status_code != 200:
            raise failure(response)
        # A page is parsed row by row as the rows are taken, from its text (the raw body goes at once): parsed
        # whole, a page of 10,000 wide rows took several times its size in memory.
        text = response.content.decode("utf-8-sig")
        del response
        hint = last_member(text, NEXT_LINK) if ahead is not None and ahead.wanted() else None
        if hint:
            coming = paginator.request_for(hint, request)
            early = (coming.url, ahead.pool().submit(call, "GET", coming.url, headers=coming.headers))
        members: dict[str, Any] = {}
        for row in stream_array(text, "value", members):
            if count is not None and isinstance(members.get(COUNT), int):  # it comes before the rows
                count(members.pop(COUNT))
            yield row
        del text
        paginator.update_state(members)
        next_request = paginator.update_request(request)
