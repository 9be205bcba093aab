"""Business Central's webhook subscriptions (API mode; page web services have none): subscribed per entity,
renewed with If-Match, the validation handshake answered, a notification verified by the clientState it carries."""

from __future__ import annotations

import hmac
import json
import re
import secrets as secrets_module
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import httpx

from mlconnector.auth import utcnow
from mlconnector.errors import ConfigError, NotificationRejected
from mlconnector.systems import ConnectorContext
from mlconnector.systems.base import Channel, Notification
from mlconnector.systems.dynamics.client import DynamicsApi
from mlconnector.systems.dynamics.odata import _quote_key, parse_time

SUBSCRIPTION_DAYS = 3
# Entities BC can push (contacts and purchaseOrders are not webhook-enabled: they are polled).
PUSH_ENTITIES = ("customers", "vendors", "items", "salesOrders", "postedSalesInvoices")
# What a validation token may hold: printable ASCII, no spaces or markup, as BC's (a GUID or base64) are.
_VALIDATION_TOKEN = re.compile(r"[A-Za-z0-9._~+/=:-]{1,1024}")
_RESOURCE_RE = re.compile(r"companies\(([0-9a-fA-F-]{36})\)/(\w+)(?:\(([^)]*)\))?")
_FILTER_TIME_RE = re.compile(r"lastModifiedDateTime\s+(?:gt|ge)\s+([0-9T:.\-+Z]+)", re.I)


class Subscriptions:
    """The push side of one system."""

    def __init__(self, api: DynamicsApi, context: ConnectorContext,
                 spec: Callable[[str], tuple[str, str | None, str | None]], *, notify_url: str | None) -> None:
        self.name = api.name
        self.context = context
        self.endpoint = api.endpoint
        self.notify_url = notify_url
        self._call, self._fail, self.company_id = api.call, api.fail, api.company_id
        self._spec = spec

    def push_entities(self) -> tuple[str, ...]:
        """API mode only (page web services have no webhooks); contacts and purchaseOrders are polled."""
        if not self.notify_url or self.endpoint.mode != "api":
            return ()
        return PUSH_ENTITIES

    def client_state(self) -> str:
        state = self.context.secrets.get(self.name, "client_state")
        if not state:
            state = secrets_module.token_urlsafe(32)  # BC keeps up to 2048 characters
            self.context.secrets.set(self.name, "client_state", state)
        return state

    def _resource(self, entity: str) -> str:
        return f"/api/v2.0/companies({self.company_id()})/{self._spec(entity)[0]}"

    def subscribe(self, entity: str, notify_url: str | None = None) -> Channel:
        """POST /subscriptions; BC first calls notify_url?validationToken=..., which `listen` answers (handshake)."""
        url = notify_url or self.notify_url
        if not url:
            raise ConfigError(f"systems.{self.name}.notify_url is not set: where should Business Central send "
                              "notifications?")
        if entity not in PUSH_ENTITIES:
            raise ConfigError(f"{self.name}: {entity} has no webhooks in Business Central; it is polled")
        response = self._call("POST", f"{self.endpoint.api}/subscriptions", idempotent=False, json={
            "notificationUrl": url, "resource": self._resource(entity), "clientState": self.client_state()})
        if response.status_code != 201:
            raise self._fail(response, f"subscribe to {entity} (BC calls {url} for the handshake: is "
                                       "`mlconnector listen` reachable there?)")
        return self._channel(entity, response)

    def _channel(self, entity: str, response: httpx.Response) -> Channel:
        sub = response.json()
        expires = parse_time(sub.get("expirationDateTime")) or utcnow() + timedelta(days=SUBSCRIPTION_DAYS)
        etag = str(sub.get("@odata.etag") or response.headers.get("ETag") or "*")
        return Channel(self.name, entity, str(sub["subscriptionId"]), expires, str(sub.get("notificationUrl")),
                       {"etag": etag, "resource": str(sub.get("resource") or "")})

    def _subscription_url(self, channel: Channel) -> str:
        return f"{self.endpoint.api}/subscriptions({_quote_key(channel.channel_id)})"

    def renew(self, channel: Channel) -> Channel:
        """PATCH with If-Match (BC handshakes again and moves the expiry three days out); a stale ETag is
        refreshed once. A subscription BC no longer has raises RemoteError 404: the engine re-subscribes."""
        etag = str(channel.extra.get("etag") or "*")
        body = {"notificationUrl": channel.notify_url, "resource": channel.extra.get("resource")
                or self._resource(channel.entity), "clientState": self.client_state()}
        for attempt in (1, 2):
            response = self._call("PATCH", self._subscription_url(channel), json=body, idempotent=True,
                                  headers={"If-Match": etag})
            if response.status_code == 200:
                return self._channel(channel.entity, response)
            if response.status_code in (409, 412) and attempt == 1:
                current = self._call("GET", self._subscription_url(channel))
                if current.status_code == 200:
                    etag = str(current.json().get("@odata.etag") or "*")
                    continue
                response = current
            raise self._fail(response, f"renew subscription {channel.channel_id} for {channel.entity}")
        raise AssertionError("unreachable")  # pragma: no cover

    def unsubscribe(self, channel: Channel) -> None:
        response = self._call("DELETE", self._subscription_url(channel),
                              headers={"If-Match": str(channel.extra.get("etag") or "*")})
        if response.status_code in (409, 412):
            response = self._call("DELETE", self._subscription_url(channel), headers={"If-Match": "*"})
        if response.status_code not in (200, 204, 404):
            raise self._fail(response, f"delete subscription {channel.channel_id}")
        state = self.context.state
        if state is not None:
            state.delete_channel(self.name, channel.channel_id)

    def handshake(self, query: Mapping[str, str]) -> str | None:
        """BC validates a notificationUrl by calling it with ?validationToken=... (a POST without a body, which the
        receiver checks): echo it as plain text. Only a token of a sane shape, and only once a sync of ours has set
        up subscriptions (their clientState exists): the receiver is no echo service for anyone who asks."""
        token = query.get("validationToken")
        if not token or not _VALIDATION_TOKEN.fullmatch(str(token)):
            return None
        return str(token) if self.context.secrets.get(self.name, "client_state") else None

    def verify(self, body: bytes | str | Mapping[str, Any], headers: Mapping[str, str] | None = None,
               query: Mapping[str, str] | None = None) -> list[Notification]:
        """A BC notification ``{"value": [...]}`` whose every item carries our clientState -> Notifications.

        Business Central deletes a subscription whose endpoint answers a non-retryable 4xx, so the statuses are
        chosen with care: 400 only for a body that cannot be a BC notification (not JSON, no ``value`` list);
        503 (retryable) when our own client_state is not available in this process, since that is our fault and
        a genuine notification must survive it; 403 for a clientState that differs from ours, which a genuine
        notification of a live subscription of ours never carries (and a stale subscription BC then drops is
        one the next sync replaces). Items for resources we do not handle are ignored, not refused.
        """
        if isinstance(body, Mapping):
            payload: Any = body
        else:
            try:
                payload = json.loads(body or b"")
            except ValueError:
                raise NotificationRejected(f"{self.name}: notification body is not JSON", 400) from None
        items = payload.get("value") if isinstance(payload, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise NotificationRejected(f"{self.name}: not a Business Central notification (no value list)", 400)
        expected = self.context.secrets.get(self.name, "client_state")
        if not expected:
            raise NotificationRejected(f"{self.name}: client_state is not available to this process; cannot "
                                       "verify now (BC will retry)", 503)
        for item in items:
            given = item.get("clientState")
            if not isinstance(given, str) or not hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                                                                     expected.encode()):
                raise NotificationRejected(f"{self.name}: notification clientState does not match ours", 403)
        out = []
        sets = {"customers": "customers", "vendors": "vendors", "items": "items", "salesOrders": "salesOrders",
                "salesInvoices": "postedSalesInvoices"}
        for item in items:
            resource = unquote(str(item.get("resource") or ""))
            match = _RESOURCE_RE.search(resource)
            if not match or match.group(2) not in sets:
                continue
            entity, key = sets[match.group(2)], match.group(3)
            change = str(item.get("changeType") or "updated")
            channel_id = str(item.get("subscriptionId")) if item.get("subscriptionId") else None
            if change == "collection" or key is None:
                since = _FILTER_TIME_RE.search(resource)
                out.append(Notification(self.name, entity, (), "update", channel_id,
                                        parse_time(since.group(1)) if since else None))
                continue
            operation = {"created": "create", "updated": "update", "deleted": "delete"}.get(change, "update")
            out.append(Notification(self.name, entity, (key.strip("'").lower(),), operation, channel_id))
        return out
