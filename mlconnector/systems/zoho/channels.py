"""Zoho's watch channels: subscribed per module (create, edit, delete), renewed before they expire, kept in the
state file; a notification verified by the token our channel carries."""

from __future__ import annotations

import hmac
import json
import secrets as secrets_module
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from mlconnector.auth import utcnow
from mlconnector.config import SystemConfig
from mlconnector.errors import ConfigError, NotificationRejected, RemoteError
from mlconnector.http import json_body
from mlconnector.systems import ConnectorContext
from mlconnector.systems.base import Channel, Notification
from mlconnector.systems.zoho.client import ZohoApi
from mlconnector.systems.zoho.reads import parse_zoho_time

NOTIFY_MODULES = ("Accounts", "Contacts", "Products", "Sales_Orders", "Invoices", "Deals", "Quotes")


class Channels:
    """The push side of one org: its channels, and the notifications they bring."""

    def __init__(self, api: ZohoApi, system: SystemConfig, context: ConnectorContext, *, notify_url: str | None,
                 channel_hours: float, renew_margin: timedelta) -> None:
        self.name = system.name
        self.system = system
        self.context = context
        self._call, self._fail = api.call, api.fail
        self.notify_url = notify_url
        self.channel_hours = channel_hours
        self.renew_margin = renew_margin

    def push_entities(self) -> tuple[str, ...]:
        if not self.notify_url:
            return ()
        # Channels are opened only for the modules a pair's flows read (sync/push.py): a module listed here that no
        # flow reads costs nothing. Deals and Quotes are watched by default, as the CRM side's sales events.
        return tuple(self.system.setting("notify_modules", list(NOTIFY_MODULES), type_=list))

    def _notify_token(self) -> str:
        token = self.context.secrets.get(self.name, "notify_token")
        if not token:
            token = secrets_module.token_urlsafe(30)[:40]  # Zoho caps the token at 50 characters
            self.context.secrets.set(self.name, "notify_token", token)
        return token

    def subscribe(self, entity: str, notify_url: str | None = None) -> Channel:
        """Enable a watch channel for every create/edit/delete of ``entity``."""
        url = notify_url or self.notify_url
        if not url:
            raise ConfigError(f"systems.{self.name}.notify_url is not set: where should Zoho send notifications?")
        channel_id = str(int(time.time() * 1000) * 1000 + secrets_module.randbelow(1000))
        item = {"channel_id": channel_id, "events": [f"{entity}.all"], "notify_url": url,
                "channel_expiry": self._expiry_text(), "token": self._notify_token()}
        return self._channel_call("POST", entity, item, "enable channel")

    def renew(self, channel: Channel) -> Channel:
        """Push the channel's expiry out again (PATCH changes only the expiry)."""
        item = {"channel_id": channel.channel_id, "channel_expiry": self._expiry_text(),
                "token": self._notify_token()}
        return self._channel_call("PATCH", channel.entity, item, "renew channel", channel.notify_url)

    def needs_renewal(self, channel: Channel, now: datetime | None = None) -> bool:
        return channel.expires - (now or utcnow()) < self.renew_margin

    def renew_expiring_channels(self, channels: list[Channel], now: datetime | None = None) -> list[Channel]:
        """Renew the channels with less than channel_margin_minutes left; returns them all, renewed or not."""
        return [self.renew(c) if self.needs_renewal(c, now) else c for c in channels]

    def unsubscribe(self, channel: Channel | str) -> None:
        channel_id = channel.channel_id if isinstance(channel, Channel) else str(channel)
        response = self._call("DELETE", "/crm/v8/actions/watch", params={"channel_ids": channel_id})
        body = json_body(response)
        item = ((body or {}).get("watch") or [{}])[0] if isinstance(body, dict) else {}
        if response.status_code not in (200, 204) and item.get("code") != "NOT_SUBSCRIBED":
            raise self._fail(response, f"disable channel {channel_id}")
        state = self.context.state
        if state is not None:
            state.delete_channel(self.name, channel_id)

    def _expiry_text(self) -> str:
        expiry = utcnow() + timedelta(hours=min(self.channel_hours, 24 * 7))
        return expiry.replace(microsecond=0).isoformat()

    def _channel_call(self, method: str, entity: str, item: dict[str, Any], what: str,
                      notify_url: str | None = None) -> Channel:
        response = self._call(method, "/crm/v8/actions/watch", json={"watch": [item]})
        body = json_body(response)
        answer = ((body or {}).get("watch") or [{}])[0] if isinstance(body, dict) else {}
        if response.status_code not in (200, 201) or answer.get("status") != "success":
            code = answer.get("code") or (body or {}).get("code", "") if isinstance(body, dict) else ""
            raise RemoteError(self.name, response.status_code, str(code),
                              f"{what} {item['channel_id']} for {entity}: {answer.get('message', '')} "
                              f"{json.dumps(answer.get('details') or {}, sort_keys=True)}".strip())
        events = answer.get("details", {}).get("events") or [{}]
        expires = parse_zoho_time(events[0].get("channel_expiry")) or datetime.fromisoformat(item["channel_expiry"])
        channel = Channel(self.name, entity, str(item["channel_id"]), expires.astimezone(timezone.utc),
                          str(item.get("notify_url") or notify_url or self.notify_url or ""))
        state = self.context.state
        if state is not None:
            state.save_channel(system=self.name, entity=entity, channel_id=channel.channel_id,
                               expires=channel.expires, notify_url=channel.notify_url)
        return channel

    def verify(self, body: bytes | str | Mapping[str, Any], headers: Mapping[str, str] | None = None,
               query: Mapping[str, str] | None = None) -> list[Notification]:
        """Accept a notification only if it echoes our channel token; Zoho signs nothing else."""
        if isinstance(body, Mapping):
            payload: Any = body
        else:
            try:
                payload = json.loads(body)
            except ValueError:
                raise NotificationRejected(f"{self.name}: notification body is not JSON", 400) from None
        if not isinstance(payload, dict) or not isinstance(payload.get("ids"), list) or not payload.get("module"):
            raise NotificationRejected(f"{self.name}: notification lacks module or ids", 400)
        expected = self.context.secrets.get(self.name, "notify_token")
        given = payload.get("token")
        # Compared as bytes: compare_digest refuses str with characters outside ASCII (a forged token may hold any).
        if not expected or not isinstance(given, str) or not hmac.compare_digest(
                given.encode("utf-8", "surrogatepass"), expected.encode()):
            raise NotificationRejected(f"{self.name}: notification token does not match our channel's", 403)
        operation = {"insert": "create", "update": "update", "delete": "delete"}.get(
            str(payload.get("operation")), str(payload.get("operation") or "update"))
        channel_id = payload.get("channel_id")
        return [Notification(self.name, str(payload["module"]), tuple(str(i) for i in payload["ids"]), operation,
                             str(channel_id) if channel_id is not None else None)]
