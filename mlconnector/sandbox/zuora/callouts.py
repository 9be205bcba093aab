"""Callout notifications: Invoice Posted and Payment Processed POSTed to a configured URL, as classic XML
parameters or a JSON callout template, with Basic auth (challenge first, unless preemptive) or a custom
header, retried, and - on request - repeated or delivered out of order."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import httpx

EVENTS = ("InvoicePosted", "PaymentProcessed")
# Callout parameters -> the merge field each carries (what an admin picks when defining the notification).
DEFAULT_PARAMS = {
    "InvoicePosted": {"EventType": "Event.Type", "InvoiceId": "Invoice.Id", "InvoiceNumber": "Invoice.InvoiceNumber",
                      "AccountId": "Account.Id"},
    "PaymentProcessed": {"EventType": "Event.Type", "PaymentId": "Payment.Id",
                         "PaymentNumber": "Payment.PaymentNumber", "AccountId": "Account.Id"},
}


@dataclass
class Callout:
    """One notification definition with its callout (Settings > Notifications in Zuora)."""

    event: str
    url: str
    format: str = "xml"                 # "xml": <callout><parameter name=..>; "json": a callout template body
    auth: str = "none"                  # "basic" | "header" | "none"
    username: str = ""
    password: str = ""
    preemptive: bool = False            # Basic sent on the first request instead of after the 401 challenge
    headers: dict[str, str] = field(default_factory=dict)   # custom callout headers (a shared secret ...)
    params: dict[str, str] = field(default_factory=dict)
    max_attempts: int = 3               # Zuora's default "Maximum Number of Delivery Attempts"
    retry_interval: float = 0.0         # real seconds here; Zuora's default is 30 minutes
    active: bool = True


@dataclass
class Delivery:
    """One event's callout and what became of it (every attempt, including the Basic challenge)."""

    event: str
    url: str
    body: bytes
    attempts: list[int] = field(default_factory=list)
    status: int | None = None
    error: str | None = None
    dropped: bool = False
    repeated: bool = False
    sent_at: datetime | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def render(callout: Callout, values: dict[str, Any]) -> tuple[bytes, str]:
    params = callout.params or DEFAULT_PARAMS[callout.event]
    resolved = {name: values.get(source, "") for name, source in params.items()}
    if callout.format == "json":
        return json.dumps(resolved).encode(), "application/json"
    parts = "".join(f"<parameter name={quoteattr(k)}>{escape(str(v))}</parameter>" for k, v in resolved.items())
    return f'<?xml version="1.0" encoding="UTF-8"?><callout>{parts}</callout>'.encode(), "application/xml"


class Dispatcher:
    """Delivers callouts on worker threads (each with its own event loop), so helpers called from tests and
    the routes alike can fire them; ``wait()`` joins the work in flight."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None, now: Any) -> None:
        self.transport = transport
        self.now = now
        self.deliveries: list[Delivery] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def send(self, batch: list[tuple[Callout, Delivery]]) -> None:
        thread = threading.Thread(target=lambda: asyncio.run(self._send_all(batch)), daemon=True,
                                  name="zuora-callouts")
        with self._lock:
            self.deliveries.extend(d for _, d in batch)
            self._threads.append(thread)
        thread.start()

    def wait(self, timeout: float = 10.0) -> bool:
        with self._lock:
            threads, self._threads = list(self._threads), []
        for thread in threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in threads)

    async def _send_all(self, batch: list[tuple[Callout, Delivery]]) -> None:
        async with httpx.AsyncClient(transport=self.transport, timeout=10.0) as client:
            for callout, delivery in batch:  # one after another: the order given is the order they arrive
                await self._deliver(client, callout, delivery)

    async def _deliver(self, client: httpx.AsyncClient, callout: Callout, delivery: Delivery) -> None:
        for attempt in range(max(1, callout.max_attempts)):
            if attempt and callout.retry_interval:
                await asyncio.sleep(callout.retry_interval)
            try:
                status = await self._attempt(client, callout, delivery)
            except httpx.HTTPError as error:
                delivery.error = repr(error)
                continue
            delivery.status = status
            delivery.sent_at = self.now()
            if 200 <= status < 300:
                return

    async def _attempt(self, client: httpx.AsyncClient, callout: Callout, delivery: Delivery) -> int:
        headers = {"Content-Type": render(callout, {})[1], **callout.headers}
        basic = "Basic " + base64.b64encode(f"{callout.username}:{callout.password}".encode()).decode()
        if callout.auth == "basic" and callout.preemptive:
            headers["Authorization"] = basic
        headers["Zuora-Request-Id"] = uuid.uuid4().hex  # a different one on every try, as Zuora does
        response = await client.post(delivery.url, content=delivery.body, headers=headers)
        delivery.attempts.append(response.status_code)
        if (response.status_code == 401 and callout.auth == "basic" and not callout.preemptive
                and "basic" in response.headers.get("www-authenticate", "").lower()):
            headers["Authorization"] = basic
            headers["Zuora-Request-Id"] = uuid.uuid4().hex
            response = await client.post(delivery.url, content=delivery.body, headers=headers)
            delivery.attempts.append(response.status_code)
        return response.status_code
