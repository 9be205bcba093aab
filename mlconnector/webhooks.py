"""The webhook receiver (`mlconnector listen`): one route per system; verify each notification, store
it in the inbox durably, and only then answer 2xx, fast. Processing happens later (the next sync, or
at once with `--process`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mlconnector.errors import NotificationRejected
from mlconnector.state import State
from mlconnector.systems.base import ConnectorBase, Notification

log = logging.getLogger("mlconnector.listen")

MAX_BODY = 1_000_000  # bytes; larger bodies are refused (413) before any parsing


class _TooLarge(Exception):
    pass


class Inbox:
    """The durable inbox, written from the receiver's threads one at a time."""

    def __init__(self, state_path: Path, consumers: Mapping[tuple[str, str], list[str]]) -> None:
        self._state = State(state_path)
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
                    on_stored: Callable[[set[str]], None] | None = None) -> Starlette:
    """``connectors``: system name -> its connector (for verification); the route is /hooks/{system}."""

    async def receive(request: Request) -> Response:
        system = request.path_params["system"]
        connector = connectors.get(system)
        if connector is None:
            return JSONResponse({"error": f"no push-capable system named {system!r} here"}, status_code=404)
        query = dict(request.query_params)
        answer = connector.handshake(query)
        if answer is not None:
            # Validation handshakes (Business Central) want the token back as plain text, at once.
            return PlainTextResponse(answer)
        try:
            body = await _read_body(request)
        except _TooLarge:
            return JSONResponse({"error": f"body larger than {MAX_BODY} bytes"}, status_code=413)
        try:
            notifications = connector.verify(body, dict(request.headers), query)
        except NotificationRejected as exc:
            log.warning("%s: notification rejected (%s)", system, exc)
            return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers or None)
        try:
            pairs = await run_in_threadpool(inbox.store, notifications)
        except Exception:  # the sender must retry: nothing was stored
            log.exception("%s: cannot store a notification", system)
            return JSONResponse({"error": "cannot store the notification now; retry"}, status_code=503,
                                headers={"Retry-After": "5"})
        if pairs and on_stored:
            on_stored(pairs)
        return Response(status_code=202)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "systems": sorted(connectors)})

    return Starlette(routes=[Route("/hooks/{system}", receive, methods=["POST", "GET"]),
                             Route("/health", health, methods=["GET"])])
