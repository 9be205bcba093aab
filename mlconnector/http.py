"""The shared HTTP layer: httpx clients with timeouts, retries honouring Retry-After, per-system
concurrency limits and a count of API calls per system."""

from __future__ import annotations

import email.utils
import json
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any

import httpx
import orjson
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from mlconnector import interrupt
from mlconnector.clock import utcnow
from mlconnector.errors import RateLimited, RemoteError, Unreachable

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# 429 and 503 mean the server did not do the work, so any method may be sent again.
ALWAYS_RETRY_STATUSES = frozenset({429, 503})


class CallCounter:
    """API calls per system, shared by every client of a run (thread-safe)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, system: str, n: int = 1) -> None:
        with self._lock:
            self._counts[system] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def since(self, earlier: dict[str, int]) -> dict[str, int]:
        now = self.snapshot()
        return {k: v - earlier.get(k, 0) for k, v in now.items() if v - earlier.get(k, 0)}


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts in all, the longest single wait, and the backoff base."""

    attempts: int = 6
    max_wait: float = 120.0
    backoff: float = 0.5


def retry_policy(system: Any) -> RetryPolicy:
    """A system's retry policy: ``retry_attempts``, ``retry_backoff_seconds`` and ``retry_max_wait_seconds``
    in its [systems.NAME] table, else the defaults (a sandbox or a test wants to give up within seconds)."""
    default = RetryPolicy()
    return RetryPolicy(
        attempts=max(1, int(system.setting("retry_attempts", default.attempts, type_=int))),
        max_wait=float(system.setting("retry_max_wait_seconds", default.max_wait, type_=(int, float))),
        backoff=float(system.setting("retry_backoff_seconds", default.backoff, type_=(int, float))))


class _Retryable(Exception):
    """Internal: a response worth sending again; carries it so the last one can be reported."""

    def __init__(self, response: httpx.Response | None, wait: float | None, error: Exception | None = None):
        super().__init__("retryable")
        self.response = response
        self.wait = wait
        self.error = error


def json_body(response: httpx.Response) -> Any:
    """The response's JSON, or None when it has no body or the body is not JSON (an HTML error page)."""
    if not response.content:
        return None
    try:
        return orjson.loads(response.content)  # several times faster on a write's 100 results
    except orjson.JSONDecodeError:
        pass
    try:
        return response.json()  # another encoding, NaN: as httpx reads it
    except ValueError:
        return None


def json_with_decimals(value: Any) -> bytes:
    """JSON text (compact, UTF-8) with Decimal values written as JSON numbers, digit for digit: the json module
    cannot write a Decimal, and a float on the way could change an amount."""
    marks: dict[str, str] = {}

    def swap(item: Any) -> Any:
        if isinstance(item, Decimal):
            mark = f"\u0000{len(marks)}\u0000"
            marks[json.dumps(mark)] = format(item, "f")
            return mark
        if isinstance(item, Mapping):
            return {k: swap(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [swap(v) for v in item]
        return item

    text = json.dumps(swap(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for mark, digits in marks.items():
        text = text.replace(mark, digits)
    return text.encode("utf-8")


def json_content(value: Any) -> bytes:
    """A request's JSON body as httpx's ``json=`` writes it (compact, UTF-8), by orjson where it can."""
    try:
        return orjson.dumps(value)
    except TypeError:  # a Decimal (exact money) among the values, or what the standard encoder reports
        return json_with_decimals(value)


def retry_after_seconds(response: httpx.Response, now: Callable[[], datetime] | None = None) -> float | None:
    """Seconds from a Retry-After header, which is either delta-seconds or an HTTP date."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = (now or utcnow)()
    return max(0.0, (when - current).total_seconds())


_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """The TLS context every client shares, as httpx makes its default (the CA bundle, or SSL_CERT_FILE /
    SSL_CERT_DIR): loading the bundle took about 40 ms for each client, and a run opens several."""
    return httpx.create_ssl_context()


def stream_array(text: str, key: str, rest: dict[str, Any]) -> Iterator[Any]:
    """The items of the array under ``key`` of the JSON object ``text``, parsed one at a time as they are taken
    (a page of 10,000 rows parsed whole costs several times its text in memory); the object's other members go
    into ``rest``. Anything that is not such an object is parsed whole, and its ``key`` items are yielded."""
    end = _SPACE.match(text, 0).end()
    if text[end:end + 1] != "{":
        whole = json.loads(text)
        if isinstance(whole, dict):
            rest.update({k: v for k, v in whole.items() if k != key})
            yield from whole.get(key) or []
        return
    pos = _SPACE.match(text, end + 1).end()
    if text[pos:pos + 1] == "}":
        return
    while True:
        if text[pos:pos + 1] != '"':
            raise ValueError(f"JSON: a member name expected at {pos}")
        name, pos = json.decoder.scanstring(text, pos + 1)
        pos = _SPACE.match(text, pos).end()
        if text[pos:pos + 1] != ":":
            raise ValueError(f"JSON: ':' expected at {pos}")
        pos = _SPACE.match(text, pos + 1).end()
        if name == key and text[pos:pos + 1] == "[":
            pos = _SPACE.match(text, pos + 1).end()
            if text[pos:pos + 1] == "]":
                pos += 1
            else:
                while True:
                    item, pos = _DECODER.raw_decode(text, pos)
                    yield item
                    pos = _SPACE.match(text, pos).end()
                    if text[pos:pos + 1] == ",":
                        pos = _SPACE.match(text, pos + 1).end()
                        continue
                    if text[pos:pos + 1] != "]":
                        raise ValueError(f"JSON: ',' or ']' expected at {pos}")
                    pos += 1
                    break
        else:
            rest[name], pos = _DECODER.raw_decode(text, pos)
        pos = _SPACE.match(text, pos).end()
        if text[pos:pos + 1] == ",":
            pos = _SPACE.match(text, pos + 1).end()
            continue
        if text[pos:pos + 1] != "}":
            raise ValueError(f"JSON: ',' or '}}' expected at {pos}")
        return


def last_member(text: str, name: str) -> str | None:
    """The string value of ``name`` when it is the last member of the JSON object ``text`` (as OData servers put
    ``@odata.nextLink`` after the rows), found from the end without parsing the rest; None otherwise. A hint
    to act on early: the full parse still has the final say."""
    at = text.rfind(f'"{name}"')
    if at < 0:
        return None
    pos = _SPACE.match(text, at + len(name) + 2).end()
    if text[pos:pos + 1] != ":":
        return None
    pos = _SPACE.match(text, pos + 1).end()
    if text[pos:pos + 1] != '"':
        return None
    try:
        value, pos = json.decoder.scanstring(text, pos + 1)
    except ValueError:
        return None
    return value if text[_SPACE.match(text, pos).end():].strip() == "}" else None


def server_time(response: httpx.Response) -> datetime | None:
    """The server's clock as it answered: its ``Date`` header (whole seconds, rounded down). With several (a
    proxy adding its own), the earliest, so that a read window ending there is never ahead of the server."""
    times = []
    for value in response.headers.get_list("date"):
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        if when.tzinfo is not None:
            times.append(when.astimezone(timezone.utc))
    return min(times) if times else None


class ApiClient:
    """One system's HTTP client. Every request is counted, limited and retried by the same rules.

    ``is_retryable`` lets a connector add vendor-specific transient answers (BC's 409 deadlock,
    Zoho's TOO_MANY_REQUESTS inside a 200) on top of the defaults.
    """

    def __init__(
        self,
        system: str,
        base_url: str = "",
        *,
        auth: httpx.Auth | None = None,
        transport: httpx.BaseTransport | None = None,
        counter: CallCounter | None = None,
        max_concurrency: int = 4,
        timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
        headers: dict[str, str] | None = None,
        is_retryable: Callable[[httpx.Response], bool] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.system = system
        self.counter = counter or CallCounter()
        self.retry = retry
        self.max_concurrency = max(1, max_concurrency)  # requests in flight at once (the engine sizes to it)
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self._is_retryable = is_retryable
        self._sleep = sleep
        # How far the server's clock is ahead of this host's, by the Date of its last answer (None: not told).
        self.clock_ahead: timedelta | None = None
        self.client = httpx.Client(
            base_url=base_url, auth=auth, transport=transport, timeout=timeout,
            headers=headers, follow_redirects=False, verify=tls_context() if transport is None else True,
            # Counted per request sent, so an auth flow's resend after a refused token counts too.
            event_hooks={"request": [self._count], "response": [self._clock]},
        )

    @property
    def base_url(self) -> str:
        return str(self.client.base_url)

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, url: str, *, idempotent: bool | None = None, **kwargs: Any) -> httpx.Response:
        """Send a request; retry what is safe to retry; return the final response, whatever its status.

        Raises Unreachable when the system cannot be reached and RateLimited when 429s outlast the
        retries. Error statuses the caller must interpret (400, 404, 412 ...) are returned, not raised.
        """
        method = method.upper()
        safe = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        if "json" in kwargs:  # encoded once, not again for each retry
            headers = dict(kwargs.get("headers") or {})
            if not any(name.lower() == "content-type" for name in headers):
                headers["Content-Type"] = "application/json"
            kwargs["content"], kwargs["headers"] = json_content(kwargs.pop("json")), headers

        def attempt() -> httpx.Response:
            with self._slots:
                try:
                    response = self.client.request(method, url, **kwargs)
                except (httpx.TransportError,) as exc:
                    if safe or isinstance(exc, httpx.ConnectError):
                        # A refused connection never reached the server, so even a POST may be resent.
                        raise _Retryable(None, None, exc) from exc
                    raise Unreachable(self.system, f"{type(exc).__name__} on {method} {url}; "
                                      "the request may or may not have been applied") from exc
            if self._should_retry(response, safe):
                response.read()
                raise _Retryable(response, retry_after_seconds(response))
            return response

        try:
            for try_ in Retrying(
                # A run told to stop (SIGTERM, Ctrl-C) lets the call in flight end but sends it no more.
                stop=stop_after_attempt(self.retry.attempts) | (lambda _state: interrupt.requested() is not None),
                wait=self._wait,
                retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
                sleep=self._pause,
                reraise=True,
            ):
                with try_:
                    return attempt()
        except _Retryable as last:
            raise self._give_up(last, method, url) from last.error
        raise AssertionError("unreachable")  # pragma: no cover

    def _pause(self, seconds: float) -> None:
        if self._sleep is time.sleep:
            interrupt.pause(seconds)  # the same wait, cut short when the run is told to stop
        else:
            self._sleep(seconds)

    def _count(self, request: httpx.Request) -> None:
        self.counter.add(self.system)

    def _clock(self, response: httpx.Response) -> None:
        """The server's Date against this host's clock as the answer arrives. The Date is rounded down to the
        second and stamped before the answer travels, so this never overstates how far ahead the server is."""
        answered = server_time(response)
        if answered is not None:
            self.clock_ahead = answered - utcnow()

    def _should_retry(self, response: httpx.Response, safe: bool) -> bool:
        if response.status_code in ALWAYS_RETRY_STATUSES:
            return True
        if safe and response.status_code >= 500:
            return True
        return bool(self._is_retryable and self._is_retryable(response))

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        announced = exc.wait if isinstance(exc, _Retryable) else None
        if announced is not None:
            return min(announced, self.retry.max_wait)
        return min(self.retry.backoff * 2 ** (state.attempt_number - 1), self.retry.max_wait)

    def _give_up(self, last: _Retryable, method: str, url: str) -> Exception:
        tries = self.retry.attempts
        if interrupt.requested() is not None:
            return Unreachable(self.system, f"{method} {url} not tried again: the run was told to stop")
        if last.response is None:
            reason = type(last.error).__name__ if last.error else "no answer"
            return Unreachable(self.system, f"{reason} on {method} {url} after {tries} tries; "
                               f"check the URL ({self.base_url or url}) and that the service is up")
        status = last.response.status_code
        if status == 429:
            return RateLimited(self.system, last.wait,
                               message=f"still rate limited after {tries} tries; try again later")
        return RemoteError(self.system, status, message=f"{method} {url} failed {tries} times",
                           retryable=True)
