"""Zuora's callouts (Invoice Posted, Payment Processed), defined in Zuora's settings: the channel recorded, a
callout authenticated as configured (Basic, a shared header, or none) and reduced to the invoice or payment it
names."""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from xml.etree import ElementTree

from mlconnector.auth import utcnow
from mlconnector.errors import NotificationRejected
from mlconnector.systems.base import Channel, Notification

PUSH_ENTITIES = ("invoices", "payments")


class Callouts:
    """The push side of the connector: channels that need no subscribing, and callouts verified."""

    def __init__(self, name: str, context: Any, notify_url: str | None, callout_auth: str, callout_user: str,
                 callout_header: str) -> None:
        self.name = name
        self.context = context
        self.notify_url = notify_url
        self.callout_auth = callout_auth
        self.callout_user = callout_user
        self.callout_header = callout_header

    def push_entities(self) -> tuple[str, ...]:
        return PUSH_ENTITIES if self.notify_url else ()

    def subscribe(self, entity: str, notify_url: str | None = None) -> Channel:
        """Callouts are defined in Zuora's settings, not through this API: the channel only records that this
        entity is pushed, and never needs renewing before ten years are up."""
        url = notify_url or self.notify_url or ""
        return Channel(self.name, entity, f"callout-{entity}", utcnow() + timedelta(days=3650), url,
                       {"static": True})

    def renew(self, channel: Channel) -> Channel:
        return Channel(channel.system, channel.entity, channel.channel_id, utcnow() + timedelta(days=3650),
                       channel.notify_url, dict(channel.extra))

    def unsubscribe(self, channel: Channel) -> None:
        """Nothing to undo here: deactivate the notification in Zuora's settings."""

    def handshake(self, query: Mapping[str, str]) -> str | None:
        return None

    def verify(self, body: bytes | str, headers: Mapping[str, str] | None = None,
               query: Mapping[str, str] | None = None) -> list[Notification]:
        """Authenticate a callout as configured and reduce it to the invoice or payment it names."""
        self._authenticate({k.lower(): v for k, v in (headers or {}).items()})
        params = {k.lower(): v for k, v in (query or {}).items()}
        params.update(_callout_params(body))
        for entity, names in (("invoices", ("invoiceid", "invoice.id")), ("payments", ("paymentid", "payment.id"))):
            ids = [params[n] for n in names if params.get(n)]
            if ids:
                return [Notification(self.name, entity, (str(ids[0]),), "update")]
        raise NotificationRejected(f"{self.name}: the callout names no InvoiceId or PaymentId parameter", 400)

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        if self.callout_auth == "none":
            return
        if self.callout_auth == "header":
            expected = self.context.secrets.get(self.name, "callout_secret")
            given = headers.get(self.callout_header.lower(), "")
            if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
                raise NotificationRejected(f"{self.name}: callout header {self.callout_header} missing or wrong", 403)
            return
        challenge = {"WWW-Authenticate": f'Basic realm="mlconnector {self.name}"'}
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            # Zuora sends Basic credentials only after this challenge (unless preemptive is on).
            raise NotificationRejected(f"{self.name}: callout without credentials; challenge sent", 401, challenge)
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise NotificationRejected(f"{self.name}: malformed Basic credentials", 401, challenge) from None
        expected = self.context.secrets.get(self.name, "callout_password")
        if not expected or not (hmac.compare_digest(user.encode(), self.callout_user.encode())
                                and hmac.compare_digest(password.encode(), expected.encode())):
            raise NotificationRejected(f"{self.name}: callout credentials refused", 401, challenge)


def _callout_params(body: bytes | str) -> dict[str, str]:
    """A classic callout's ``<callout><parameter name="...">`` pairs, or a callout template's JSON object."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    text = text.strip()
    if not text:
        return {}
    if text.startswith("<"):
        try:
            root = ElementTree.fromstring(text)
        except ElementTree.ParseError:
            raise NotificationRejected("callout body is not well-formed XML", 400) from None
        return {str(p.get("name", "")).lower(): (p.text or "").strip() for p in root.iter("parameter")}
    try:
        data = json.loads(text)
    except ValueError:
        raise NotificationRejected("callout body is neither XML nor JSON", 400) from None
    if not isinstance(data, dict):
        raise NotificationRejected("callout body must be a JSON object", 400)
    return {str(k).lower(): str(v) for k, v in data.items() if not isinstance(v, (dict, list))}
