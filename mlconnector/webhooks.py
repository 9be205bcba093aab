"""The webhook receiver (`mlconnector listen`): one route per system; verify each notification, store
it in the inbox durably, and only then answer 2xx, fast. Processing happens later (the next sync, or
at once with `--process`)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mlconnector.clock import utcnow
from mlconnector.errors import MLConnectorError, NotificationRejected
from mlconnector.health import Limits
from mlconnector.health import check as health_check
from mlconnector.state import StateLocation, database_errors
from mlconnector.systems.base import ConnectorBase, Notification

log = logging.getLogger("mlconnector.listen")

MAX_BODY = 1_000_000  # bytes; larger bodies are refused (413) before any parsing
# Seconds a client may take to send its body: a slow (or stalled) sender is answered 408 and its connection closed,
# so a few dozen of them cannot hold the receiver's connections for good.
BODY_TIMEOUT = 10.0
HEALTH_EVERY = 1.0  # seconds: /health proves the state file writable at most this often


class _TooLarge(Exception):
    pass


class Inbox:
    """The durable inbox, written from the receiver's threads one at a time."""

    def __init__(self, location: StateLocation | Path, consumers: Mapping[tuple[str, str], list[str]]) -> None:
        location = location if isinstance(location, StateLocation) else StateLocation(path=Path(location))
        self._location = location
        with location.errors():
            self._state = location.open()
        self._lock = threading.Lock()
        self.consumers = consumers

    def store(self, notifications: list[Notification]) -> set[str]:
        """Store one copy per consuming pair (none where the same notification already waits: a sender's retry);
        returns the pairs that have something new to do."""
        pairs: set[str] = set()
        with self._lock, self._state.transaction():
            for note in notifications:
                for pair in self.consumers.get((note.system, note.entity), []):
                    if self._state.add_to_inbox(pair=pair, system=note.system, entity=note.entity,
                                                ids=list(note.ids), operation=note.operation,
                                                channel_id=note.channel_id, since=note.since):
                        pairs.add(pair)
        return pairs

    def writable(self) -> str | None:
        """None when a notification could be stored now, else why not."""
        try:
            with self._lock:
                self._state.prove_writable("listen")
        except (*database_errors(), OSError, MLConnectorError) as exc:
            return f"{self._location.label} cannot be written: {exc}"
        return None

    def health(self, pairs: Iterable[str], limits: Limits, run_alive: Callable[[str], bool]) -> dict[str, Any]:
        """What `status --check` finds, and the notifications waiting (how many, the oldest's age in seconds)."""
        now = utcnow()
        with self._lock:
            problems = health_check(self._state, pairs, limits, now, run_alive)
            waiting, oldest = self._state.inbox_backlog()
        return {"problems": [p.to_dict() for p in problems],
                "inbox": {"waiting": waiting, "oldest_seconds": round((now - oldest).total_seconds()) if oldest else None}}

    def close(self) -> None:
        self._state.close()


async def _read_body(request: Request) -> bytes:
    size = int(request.headers.get("content-length") or 0)
    if size > MAX_BODY:
        raise _TooLarge
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_receiver(connectors: Mapping[str, ConnectorBase], inbox: Inbox,
                    on_stored: Callable[[set[str]], None] | None = None, *,
                    body_timeout: float = BODY_TIMEOUT,
                    checks: Callable[[], dict[str, Any]] | None = None) -> Starlette:
    """``connectors``: system name -> its connector (for verification); the route is /hooks/{system}. ``checks``:
    what /health reports besides whether notifications can be stored (``Inbox.health``)."""

    async def receive(request: Request) -> Response:
        system = request.path_params["system"]
        connector = connectors.get(system)
        if connector is None:
            return JSONResponse({"error": f"no push-capable system named {system!r} here"}, status_code=404)
        query = dict(request.query_params)
        try:
            body = await asyncio.wait_for(_read_body(request), body_timeout)
        except _TooLarge:
            return JSONResponse({"error": f"body larger than {MAX_BODY} bytes"}, status_code=413)
        except asyncio.TimeoutError:
            log.warning("%s: body not received within %g s; connection closed", system, body_timeout)
            return JSONResponse({"error": f"body not received within {body_timeout:g} s"}, status_code=408,
                                headers={"Connection": "close"})
        except ClientDisconnect:
            log.info("%s: the client went away before sending its whole body", system)  # one line, no traceback
            return Response(status_code=400)
        if request.method == "POST" and not body:
            answer = connector.handshake(query)
            if answer is not None:
                # Validation handshakes (Business Central: a POST without a body) want the token back as plain
                # text, at once. Anything else with a validationToken is a notification, and verified as one.
                return PlainTextResponse(answer)
        try:
            notifications = connector.verify(body, dict(request.headers), query)
        except NotificationRejected as exc:
            log.warning("%s: notification rejected (%s)", system, exc)
            return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers or None)
        except (ValueError, RecursionError, UnicodeError) as exc:
            # A body built to break a parser (nested thousands deep, bad encodings): malformed, not a bug here.
            log.warning("%s: notification rejected (malformed body: %s)", system, type(exc).__name__)
            return JSONResponse({"error": "malformed notification body"}, status_code=400)
        try:
            pairs = await run_in_threadpool(inbox.store, notifications)
        except Exception:  # the sender must retry: nothing was stored
            log.exception("%s: cannot store a notification", system)
            return JSONResponse({"error": "cannot store the notification now; retry"}, status_code=503,
                                headers={"Retry-After": "5"})
        if pairs and on_stored:
            on_stored(pairs)
        return Response(status_code=202)

    # When /health last looked, whether the state file could be written, and what the checks found.
    checked: list[Any] = [0.0, None, {}]

    def look() -> None:
        checked[1] = inbox.writable()
        if not checked[1] and checks is not None:
            checked[2] = checks()

    async def health(request: Request) -> Response:
        if time.monotonic() - checked[0] >= HEALTH_EVERY:
            await run_in_threadpool(look)
            checked[0] = time.monotonic()
        if checked[1]:
            return JSONResponse({"ok": False, "receiving": False, "error": checked[1], "systems": sorted(connectors)},
                                status_code=503)
        found = checked[2]
        ok = not found.get("problems")
        # 503 only when notifications cannot be stored: a failed sync must not take the receiver out of a load
        # balancer. ?check=1 answers 503 for any problem, for monitors.
        strict = request.query_params.get("check") not in (None, "", "0", "false")
        return JSONResponse({"ok": ok, "receiving": True, "systems": sorted(connectors), **found},
                            status_code=503 if strict and not ok else 200)

    return Starlette(routes=[Route("/hooks/{system}", receive, methods=["POST", "GET"]),
                             Route("/health", health, methods=["GET"])])
