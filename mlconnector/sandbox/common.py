"""Pieces every emulator shares: an advanceable clock, fault injection, the Date header and an in-process
transport."""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import anyio.from_thread
import httpx
import orjson
from starlette.responses import JSONResponse as _StarletteJSONResponse


class SandboxClock:
    """Sandbox time: real UTC time plus an offset that tests advance to make tokens and channels expire."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def advance(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)


_FAULT_RE = re.compile(r"^\s*([a-z0-9_]+)\s*=\s*([0-9.]+)\s*(ms|s)?\s*$")


@dataclass
class Faults:
    """Fault injection, parsed from a spec such as ``"429=0.3,5xx=0.05,latency=150ms,drop=0.1"``.

    rate_limit   share of API calls answered 429 with Retry-After (``429=``)
    server_error share of API calls answered 500 or 503 (``5xx=``)
    latency      seconds added to every API call (``latency=``)
    drop         share of webhook notifications silently not sent (``drop=``)
    token_ttl    lifetime in seconds of newly minted access tokens, to force early expiry (``token_ttl=``)
    retry_after  seconds announced in Retry-After on injected 429s (``retry_after=``, default 1)
    """

    rate_limit: float = 0.0
    server_error: float = 0.0
    latency: float = 0.0
    drop: float = 0.0
    token_ttl: float | None = None
    retry_after: float = 1.0
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)

    _NAMES = {"429": "rate_limit", "5xx": "server_error", "latency": "latency", "drop": "drop",
              "token_ttl": "token_ttl", "retry_after": "retry_after", "seed": "seed"}
    # Shares are fractions of the calls (0.2 is one in five); times are seconds (or ms with the unit).
    _RANGES = {"429": (0.0, 1.0, "a share from 0 to 1 (e.g. 429=0.2)"),
               "5xx": (0.0, 1.0, "a share from 0 to 1 (e.g. 5xx=0.05)"),
               "drop": (0.0, 1.0, "a share from 0 to 1 (e.g. drop=0.1)"),
               "latency": (0.0, 60.0, "0 to 60 s (e.g. latency=150ms)"),
               "retry_after": (0.0, 3600.0, "0 to 3600 s"),
               "token_ttl": (0.0, 86400.0, "0 to 86400 s")}

    @classmethod
    def parse(cls, spec: str | None) -> "Faults":
        faults = cls()
        for part in filter(None, (spec or "").split(",")):
            match = _FAULT_RE.match(part)
            if not match or match.group(1) not in cls._NAMES:
                raise ValueError(
                    f"bad fault {part.strip()!r}: use name=value with name one of {', '.join(cls._NAMES)}"
                )
            name, value, unit = match.groups()
            number = float(value) / (1000 if unit == "ms" else 1)
            low, high, what = cls._RANGES.get(name, (0.0, float("inf"), "a number of 0 or more"))
            if not low <= number <= high:
                raise ValueError(f"bad fault {part.strip()!r}: {name} must be {what}")
            setattr(faults, cls._NAMES[name], int(number) if name == "seed" else number)
        if faults.seed is not None:
            faults.rng.seed(faults.seed)
        return faults

    def roll(self, share: float) -> bool:
        return share > 0 and self.rng.random() < share

    async def delay(self) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)


class ServerDate:
    """ASGI middleware: every answer carries one ``Date`` (RFC 9110 section 6.6.1: an origin server with a clock
    sends it) from ``now`` as the answer starts, as an HTTP date (whole seconds, rounded down). With
    ``keep=True`` a ``Date`` the app set itself stays (an emulator dating by a clock of its own)."""

    def __init__(self, app: Any, now: Callable[[], datetime], keep: bool = False) -> None:
        self.app = app
        self.now = now
        self.keep = keep

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                if not (self.keep and any(k.lower() == b"date" for k, _ in headers)):
                    stamp = email.utils.format_datetime(self.now().astimezone(timezone.utc), usegmt=True)
                    headers = [(k, v) for k, v in headers if k.lower() != b"date"]
                    headers.append((b"date", stamp.encode("latin-1")))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, dated)


def loads(raw: bytes | str) -> Any:
    """``json.loads``, by orjson where it can: the emulators parse every write's body, and a run's worth of them
    cost the emulator more than the writing cost the tool. What orjson refuses (NaN, Infinity) the standard
    parser decides, as before."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


class JSONResponse(_StarletteJSONResponse):
    """Starlette's JSONResponse (compact, UTF-8) rendered by orjson: a page of 10,000 rows in a tenth of the time."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # what orjson cannot write, the standard encoder reports as before
            return super().render(content)


class InProcessTransport(httpx.BaseTransport):
    """A synchronous httpx transport that serves requests from an ASGI app in this process.

    httpx's own ASGITransport is async only; the client side of mlconnector is synchronous, so this
    runs the app on one event loop in a background thread (the app's background tasks, such as
    webhook deliveries, keep running there) and hands each request to httpx.ASGITransport.
    """

    def __init__(self, app: Any) -> None:
        self._cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._cm.__enter__()
        self._asgi = httpx.ASGITransport(app=app)
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            inner = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            response = await self._asgi.handle_async_request(inner)
            content = await response.aread()
            return response.status_code, response.headers.raw, content

        status, headers, content = self._portal.call(call)
        return httpx.Response(status, headers=headers, content=content, request=request)

    def close(self) -> None:
        with self._lock:
            if self._cm is not None:
                self._cm.__exit__(None, None, None)
                self._cm = None

    def run(self, func: Any, *args: Any) -> Any:
        """Run ``await func(*args)`` on the app's event loop (for tests that poke the app's state)."""
        return self._portal.call(func, *args)


class HostRouter(httpx.BaseTransport):
    """A transport that hands each request to the transport of its host name, so one client context
    can talk to several in-process sandboxes (``{"zoho.sandbox": InProcessTransport(zoho_app), ...}``)."""

    def __init__(self, routes: dict[str, httpx.BaseTransport]) -> None:
        self.routes = routes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            transport = self.routes[request.url.host]
        except KeyError:
            raise httpx.ConnectError(f"no sandbox serves host {request.url.host}", request=request) from None
        return transport.handle_request(request)

    def close(self) -> None:
        for transport in self.routes.values():
            transport.close()
