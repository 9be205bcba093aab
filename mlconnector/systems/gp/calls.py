"""The HTTP under both of GP's transports: Windows (or Basic) authentication, few calls at a time with a pause
between their starts (GP's web server also serves interactive users), a 401 explained, and what an unreachable
server most likely means."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from mlconnector.errors import AuthError, Unreachable
from mlconnector.http import ApiClient

DEFAULT_PORT = 48620


class PacedHttp:
    """Calls through the connector's ApiClient, at least ``delay_seconds`` apart."""

    def __init__(self, name: str, http: ApiClient, delay: float, auth_kind: str, user: str | None,
                 sleep: Callable[[float], None]) -> None:
        self.name = name
        self.http = http
        self.delay = delay
        self.auth_kind = auth_kind
        self.user = user
        self._sleep = sleep
        self._pace_lock = threading.Lock()
        self._next_start = 0.0

    def _pace(self) -> None:
        """At least ``delay_seconds`` between the starts of two calls, whichever thread makes them."""
        if self.delay <= 0:
            return
        with self._pace_lock:
            wait = self._next_start - time.monotonic()
            if wait > 0:
                self._sleep(wait)
            self._next_start = time.monotonic() + self.delay

    def request(self, method: str, url: str, *, idempotent: bool = False, **kwargs: Any) -> httpx.Response:
        self._pace()
        # Not idempotent for the retry policy: a SOAP fault is HTTP 500 and must not be sent again; 503
        # ("Server Too Busy") and refused connections still are. SBA reads (GET) are idempotent.
        response = self.http.request(method, url, idempotent=idempotent, **kwargs)
        if response.status_code == 401:
            raise AuthError(self.name, self._refusal())
        return response

    def _refusal(self) -> str:
        if self.auth_kind == "windows" and not self.user:
            return ("Windows authentication refused for the account running mlconnector; set user = "
                    f"\"DOMAIN\\\\name\" and `mlconnector secrets set {self.name} password`")
        return (f"Windows authentication refused for {self.user!r}: check the user (DOMAIN\\name) and its "
                f"password (`mlconnector secrets set {self.name} password`)")


def unreachable(exc: Unreachable, url: str, sba_url: str) -> str:
    setting = "sba_url" if url == sba_url else "base_url"
    for cause in _cause_chain(exc):
        if isinstance(cause, ssl.SSLError) or "CERTIFICATE" in str(cause).upper() or "SSL" in str(cause):
            return (f"{exc}; certificate problem: {cause}. The server's certificate must be trusted by this "
                    f"host (point SSL_CERT_FILE at a bundle with your CA) and name the host in {setting}")
    parts = urlsplit(url)
    if setting == "sba_url":
        port = parts.port or (443 if parts.scheme == "https" else 80)
        service = "the GP Service (Service Based Architecture) is not reachable"
        host_service = "the Microsoft Dynamics GP Service running"
    else:
        port = parts.port or DEFAULT_PORT
        service = "the GP web service is not reachable"
        host_service = "the Microsoft Dynamics GP Service Host running"
    return (f"{exc}; {service}: is port {port} on {parts.hostname} open through the "
            f"firewall from this host, and {host_service}?")


def _cause_chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
