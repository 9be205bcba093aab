"""BC API webhooks: subscriptions with a validation handshake, 3-day expiry, and batched change notifications.

As documented (api-reference/v2.0/dynamics-subscriptions.md, codeunit 6154 "API Webhook Notification Send"):
creating or renewing a subscription first calls ``notificationUrl?validationToken=...``, which must answer 200
with the token as the plain-text body within the timeout (on-prem ApiSubscriptionNotificationUrlTimeout,
5,000 ms). Changes are collected for a while after the first one (BC: 30 s, ``debounce`` here), then POSTed
as ``{"value": [...]}``, one POST per notification URL; more than ``collection_threshold`` changes of one
subscription (BC: 1,000) collapse into one ``collection`` notification whose resource is a filtered collection
URL. An answer of 408, 429, 5xx or no answer is retried later; any other non-2xx deletes the subscription.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from mlconnector.sandbox.background import BackgroundTasks
from mlconnector.sandbox.common import Faults, SandboxClock

from . import errors
from .schema import EMPTY_GUID, ENTITIES
from .store import Database, format_datetime, make_etag

_RESOURCE_RE = re.compile(r"companies\(([0-9a-fA-F-]{36})\)/(\w+)/?$")
RETRYABLE = {408, 429}


def _short_datetime(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Subscription:
    subscription_id: str
    notification_url: str
    resource: str
    client_state: str
    company_id: str
    entity: str
    user_id: str
    created: datetime
    modified: datetime
    expires: datetime
    version: int = 1

    @property
    def etag(self) -> str:
        return make_etag(self.subscription_id, self.version)

    def to_api(self) -> dict[str, Any]:
        return {"@odata.etag": self.etag, "subscriptionId": self.subscription_id,
                "notificationUrl": self.notification_url, "resource": self.resource,
                "timestamp": self.version, "userId": self.user_id,
                "lastModifiedDateTime": format_datetime(self.modified), "clientState": self.client_state,
                "expirationDateTime": _short_datetime(self.expires),
                "systemCreatedAt": format_datetime(self.created), "systemCreatedBy": self.user_id,
                "systemModifiedAt": format_datetime(self.modified), "systemModifiedBy": self.user_id}


@dataclass
class Change:
    subscription_id: str
    company_id: str
    entity: str
    row_id: str
    change_type: str
    when: datetime


@dataclass
class Delivery:
    """One notification POST as the sandbox saw it (for tests and the demo)."""

    url: str
    value: list[dict[str, Any]]
    status: int | None
    attempt: int
    error: str | None = None


@dataclass
class WebhookSettings:
    debounce: float = 0.2                 # BC online: 30 s after the first change
    handshake_timeout: float = 5.0        # ApiSubscriptionNotificationUrlTimeout, 5,000 ms
    sending_timeout: float = 30.0         # ApiSubscriptionSendingNotificationTimeout, 30,000 ms
    expiry_days: float = 3.0              # ApiSubscriptionExpiration
    collection_threshold: int = 1000
    max_subscriptions: int = 200          # per environment, online
    retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0, 300.0, 3600.0)


class Webhooks:
    """The subscriptions table and the notification sender."""

    def __init__(self, clock: SandboxClock, faults: Faults, db: Database,
                 transport: httpx.AsyncBaseTransport | None, settings: WebhookSettings) -> None:
        self.clock = clock
        self.faults = faults
        self.db = db
        self.transport = transport
        self.settings = settings
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: list[Delivery] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[Change] = []
        self._lock = threading.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._busy = 0          # deliveries in flight or scheduled for retry
        self._background = BackgroundTasks()   # referenced while they run
        db.listeners.append(self.on_change)

    # -- subscriptions ----------------------------------------------------------------------------------------

    def live(self, subscription_id: str) -> Subscription:
        """A subscription that has not expired; expired ones are gone, as after BC's cleanup."""
        sub = self.subscriptions.get(subscription_id)
        if sub is not None and sub.expires <= self.clock.now():
            del self.subscriptions[subscription_id]
            sub = None
        if sub is None:
            raise errors.ODataError(404, "BadRequest_NotFound",
                                    f"The subscription does not exist. Identification fields and values: "
                                    f"Subscription Id='{subscription_id}'")
        return sub

    def all_live(self) -> list[Subscription]:
        for sub_id in list(self.subscriptions):
            try:
                self.live(sub_id)
            except errors.ODataError:
                pass
        return list(self.subscriptions.values())

    def _parse_resource(self, resource: str) -> tuple[str, str]:
        match = _RESOURCE_RE.search(resource.split("?")[0])
        if not match:
            raise errors.ODataError(400, "BadRequest",
                                    f"The resource '{resource}' is not valid. Use a path such as "
                                    "/api/v2.0/companies({id})/customers.")
        company_id, entity = match.group(1).lower(), match.group(2)
        if company_id not in self.db.companies:
            raise errors.ODataError(404, "Internal_CompanyNotFound",
                                    f"The company '{company_id}' does not exist.")
        spec = ENTITIES.get(entity)
        if spec is None:
            raise errors.segment_not_found(entity)
        if not spec.webhooks:
            raise errors.ODataError(400, "BadRequest",
                                    f"The entity '{entity}' does not support webhooks. Only entities listed in "
                                    "webhookSupportedResources can be subscribed to.")
        return company_id, entity

    async def create(self, body: dict[str, Any], principal: str) -> Subscription:
        url, resource = _required(body, "notificationUrl"), _required(body, "resource")
        company_id, entity = self._parse_resource(resource)
        if len(self.all_live()) >= self.settings.max_subscriptions:
            raise errors.dialog("The maximum number of webhook subscriptions has been reached.")
        await self.handshake(url)
        now = self.clock.now()
        sub = Subscription(uuid.uuid4().hex, url, resource, str(body.get("clientState") or ""), company_id,
                           entity, _user_id(principal), now, now,
                           now + timedelta(days=self.settings.expiry_days))
        self.subscriptions[sub.subscription_id] = sub
        return sub

    async def renew(self, sub: Subscription, body: dict[str, Any]) -> Subscription:
        """PATCH: the handshake runs again, then the expiry moves to three days from now."""
        url = str(body.get("notificationUrl") or sub.notification_url)
        resource = str(body.get("resource") or sub.resource)
        company_id, entity = self._parse_resource(resource)
        await self.handshake(url)
        now = self.clock.now()
        sub.notification_url, sub.resource, sub.company_id, sub.entity = url, resource, company_id, entity
        if "clientState" in body:
            sub.client_state = str(body["clientState"] or "")
        sub.modified, sub.expires = now, now + timedelta(days=self.settings.expiry_days)
        sub.version += 1
        return sub

    async def handshake(self, url: str) -> None:
        token = secrets.token_urlsafe(24)
        target = f"{url}{'&' if '?' in url else '?'}validationToken={token}"
        try:
            async with httpx.AsyncClient(transport=self.transport, timeout=self.settings.handshake_timeout) as client:
                response = await client.post(target, content=b"")
        except httpx.HTTPError as exc:
            raise _handshake_failed(url, f"the endpoint could not be reached ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise _handshake_failed(url, f"the endpoint answered HTTP {response.status_code}")
        if response.text.strip() != token:
            raise _handshake_failed(url, "the response body was not the validationToken")

    # -- change collection ------------------------------------------------------------------------------------

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remembers the app's event loop (from the first request) so changes made elsewhere can be sent."""
        if self.loop is not loop:
            self.loop = loop
            if self._pending:
                loop.call_soon_threadsafe(self._arm)

    def on_change(self, company_id: str, entity: str, row_id: str, change_type: str, when: datetime) -> None:
        now = self.clock.now()
        subs = [s for s in self.subscriptions.values()
                if s.company_id == company_id and s.entity == entity and s.expires > now]
        if not subs:
            return
        with self._lock:
            self._pending.extend(Change(s.subscription_id, company_id, entity, row_id, change_type, when)
                                 for s in subs)
        if self.loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self._arm()
        else:
            self.loop.call_soon_threadsafe(self._arm)

    def _arm(self) -> None:
        # The first change starts the timer; later ones ride along, as BC delays from the first change.
        if self._timer is None and self.loop is not None:
            self._timer = self.loop.call_later(self.settings.debounce, self._flush_now)

    def _flush_now(self) -> None:
        self._timer = None
        self._spawn(self.flush())

    def _spawn(self, coro: Any) -> None:
        assert self.loop is not None
        self._background.add(self.loop.create_task(coro))

    async def flush(self) -> None:
        with self._lock:
            changes, self._pending = self._pending, []
        by_url: dict[str, list[dict[str, Any]]] = {}
        by_url_subs: dict[str, set[str]] = {}
        now = self.clock.now()
        for sub_id, sub_changes in _group(changes).items():
            sub = self.subscriptions.get(sub_id)
            if sub is None or sub.expires <= now:
                continue   # expired subscriptions get nothing
            by_url.setdefault(sub.notification_url, []).extend(self._items(sub, sub_changes))
            by_url_subs.setdefault(sub.notification_url, set()).add(sub_id)
        for url, items in by_url.items():
            self._busy += 1
            self._spawn(self._deliver(url, items, by_url_subs[url], 0))

    def _items(self, sub: Subscription, changes: list[Change]) -> list[dict[str, Any]]:
        base = {"subscriptionId": sub.subscription_id, "clientState": sub.client_state,
                "expirationDateTime": _short_datetime(sub.expires)}
        if len(changes) > self.settings.collection_threshold:
            # BC points at the changed collection, filtered from 50 ms before the first change.
            first = min(c.when for c in changes) - timedelta(milliseconds=50)
            resource = (f"/api/v2.0/companies({sub.company_id})/{sub.entity}?$filter=lastModifiedDateTime"
                        f"%20gt%20{format_datetime(first)}")
            return [{**base, "resource": resource, "changeType": "collection",
                     "lastModifiedDateTime": format_datetime(max(c.when for c in changes))}]
        items = []
        for change in _merge_per_row(changes):
            items.append({**base, "resource": f"api/v2.0/companies({sub.company_id})/{sub.entity}({change.row_id})",
                          "changeType": change.change_type, "lastModifiedDateTime": format_datetime(change.when)})
        return items

    async def _deliver(self, url: str, items: list[dict[str, Any]], sub_ids: set[str], attempt: int) -> None:
        try:
            if self.faults.roll(self.faults.drop):
                self.deliveries.append(Delivery(url, items, None, attempt, "dropped (fault injection)"))
                return
            correlation = str(uuid.uuid4())
            headers = {"clientRequestId": correlation, "x-ms-correlation-id": correlation}
            try:
                async with httpx.AsyncClient(transport=self.transport,
                                             timeout=self.settings.sending_timeout) as client:
                    response = await client.post(url, json={"value": items}, headers=headers)
                status: int | None = response.status_code
                self.deliveries.append(Delivery(url, items, status, attempt))
            except httpx.HTTPError as exc:
                status = None
                self.deliveries.append(Delivery(url, items, None, attempt, type(exc).__name__))
            if status is not None and 200 <= status < 300:
                return
            if status is None or status in RETRYABLE or status >= 500:
                self._retry_later(url, items, sub_ids, attempt)
                return
            for sub_id in sub_ids:   # any other answer: BC deletes the subscription
                self.subscriptions.pop(sub_id, None)
        finally:
            self._busy -= 1

    def _retry_later(self, url: str, items: list[dict[str, Any]], sub_ids: set[str], attempt: int) -> None:
        if attempt >= len(self.settings.retry_delays):
            for sub_id in sub_ids:   # too many failures: BC deletes the subscription
                self.subscriptions.pop(sub_id, None)
            return
        assert self.loop is not None
        self._busy += 1
        live_ids = {s for s in sub_ids if s in self.subscriptions}
        self.loop.call_later(self.settings.retry_delays[attempt],
                             lambda: self._spawn(self._deliver(url, items, live_ids, attempt + 1)))

    # -- helpers for tests ------------------------------------------------------------------------------------

    def idle(self) -> bool:
        return not self._pending and self._timer is None and self._busy == 0

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Blocks (from a thread other than the app's loop) until nothing is pending, queued or in flight."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.idle():
                return True
            time.sleep(0.01)
        return self.idle()


def _required(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not value:
        raise errors.ODataError(400, "BadRequest_RequiredParamNotProvided",
                                f"Field '{name}' must not be blank or empty.")
    return str(value)


def _user_id(principal: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, principal)) if principal else EMPTY_GUID


def _handshake_failed(url: str, reason: str) -> errors.ODataError:
    return errors.ODataError(400, "BadRequest",
                             f"The subscription could not be created: the handshake with the notification URL "
                             f"'{url}' failed, {reason}.")


def _group(changes: list[Change]) -> dict[str, list[Change]]:
    grouped: dict[str, list[Change]] = {}
    for change in changes:
        grouped.setdefault(change.subscription_id, []).append(change)
    return grouped


def _merge_per_row(changes: list[Change]) -> list[Change]:
    """One notification per row: deleted wins, a row created in the window stays 'created'."""
    merged: dict[str, Change] = {}
    for change in changes:
        earlier = merged.get(change.row_id)
        if earlier is None:
            merged[change.row_id] = change
            continue
        kind = change.change_type
        if change.change_type != "deleted" and earlier.change_type == "created":
            kind = "created"
        merged[change.row_id] = Change(change.subscription_id, change.company_id, change.entity, change.row_id,
                                       kind, max(change.when, earlier.when))
    return list(merged.values())
