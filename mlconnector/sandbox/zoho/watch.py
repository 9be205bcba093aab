"""Notification channels (``/crm/v8/actions/watch``) and the POSTs Zoho makes to ``notify_url``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .errors import RecordError, ZohoError

DEFAULT_EXPIRY = timedelta(hours=1)   # "If it is not specified or set for more than a week ... one hour"
MAX_EXPIRY = timedelta(weeks=1)
MAX_TOKEN_LENGTH = 50
MAX_ITEMS = 50
_EVENT = re.compile(r"^(?P<module>[A-Za-z_]+)\.(?P<action>create|edit|delete|all)$")
OPERATION_ACTION = {"insert": "create", "update": "edit", "delete": "delete"}


@dataclass
class Channel:
    channel_id: str
    events: list[str]
    notify_url: str
    expiry: datetime
    token: str | None = None
    return_affected_field_values: bool = False
    notify_on_related_action: bool = True

    def modules(self) -> list[str]:
        return list(dict.fromkeys(e.split(".")[0] for e in self.events))

    def wants(self, module: str, operation: str) -> bool:
        return any(e in (f"{module}.all", f"{module}.{OPERATION_ACTION[operation]}") for e in self.events)


@dataclass
class Delivery:
    """One notification the sandbox POSTed (or dropped), kept for tests and benchmarks."""

    channel_id: str
    url: str
    payload: dict[str, Any]
    status: int | None = None       # HTTP status the receiver answered; None when dropped or failed
    dropped: bool = False
    error: str | None = None
    sent_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_expiry(raw: Any, now: datetime, path: str) -> datetime:
    if raw in (None, ""):
        return now + DEFAULT_EXPIRY
    try:
        expiry = datetime.fromisoformat(str(raw))
        if expiry.tzinfo is None:
            raise ValueError
    except ValueError:
        raise RecordError.invalid("channel_expiry", f"{path}.channel_expiry", expected_data_type="datetime") from None
    if expiry <= now:
        raise RecordError.invalid("channel_expiry", f"{path}.channel_expiry")
    if expiry - now > MAX_EXPIRY:
        return now + DEFAULT_EXPIRY   # Zoho falls back to one hour rather than failing
    return expiry


def validate_events(events: Any, path: str, known: set[str]) -> list[str]:
    if not isinstance(events, list) or not events:
        raise RecordError.mandatory("events", f"{path}.events")
    checked = []
    for index, event in enumerate(events):
        match = _EVENT.match(str(event))
        if not match or match.group("module") not in known:
            raise RecordError.invalid("events", f"{path}.events[{index}]")
        checked.append(str(event))
    return checked


def channel_from(item: Any, path: str, now: datetime, known: set[str], current: Channel | None,
                 replace: bool) -> Channel:
    """Build or update a channel from one ``watch[]`` item. ``replace`` (PUT) drops what is not given."""
    if not isinstance(item, dict):
        raise RecordError("INVALID_DATA", "invalid data", {"expected_data_type": "jsonobject", "json_path": path})
    channel_id = item.get("channel_id")
    if channel_id in (None, ""):
        raise RecordError.mandatory("channel_id", f"{path}.channel_id")
    if not str(channel_id).isdigit():
        raise RecordError.invalid("channel_id", f"{path}.channel_id", expected_data_type="long")
    base = None if replace else current
    if "events" in item or base is None:
        events = validate_events(item.get("events"), path, known)
    else:
        events = base.events
    notify_url = item.get("notify_url") or (base.notify_url if base else None)
    if not notify_url:
        raise RecordError.mandatory("notify_url", f"{path}.notify_url")
    if urlsplit(str(notify_url)).scheme not in ("http", "https"):
        raise RecordError.invalid("notify_url", f"{path}.notify_url")
    token = item.get("token", base.token if base else None)
    if token is not None and len(str(token)) > MAX_TOKEN_LENGTH:
        raise RecordError.invalid("token", f"{path}.token", maximum_length=MAX_TOKEN_LENGTH)
    expiry = (parse_expiry(item.get("channel_expiry"), now, path)
              if "channel_expiry" in item or base is None else base.expiry)
    return Channel(
        channel_id=str(channel_id), events=events, notify_url=str(notify_url), expiry=expiry,
        token=None if token is None else str(token),
        return_affected_field_values=bool(item.get("return_affected_field_values",
                                                   base.return_affected_field_values if base else False)),
        notify_on_related_action=bool(item.get("notify_on_related_action",
                                               base.notify_on_related_action if base else True)),
    )


def watch_items(body: Any) -> list[Any]:
    if not isinstance(body, dict) or "watch" not in body:
        raise ZohoError(400, "MANDATORY_NOT_FOUND", "required field not found",
                        {"api_name": "watch", "json_path": "$.watch"})
    items = body["watch"]
    if not isinstance(items, list) or not items:
        raise ZohoError(400, "INVALID_DATA", "invalid data",
                        {"expected_data_type": "jsonarray", "api_name": "watch", "json_path": "$.watch"})
    if len(items) > MAX_ITEMS:
        raise ZohoError(400, "LIMIT_EXCEEDED", "limit exceeded", {"limit": MAX_ITEMS, "api_name": "watch"})
    return items


def event_details(channel: Channel, api_domain: str, timestamp: str, ids: dict[str, str]) -> list[dict[str, Any]]:
    """The per-module ``events`` Zoho lists in a subscribe answer."""
    return [{"channel_expiry": timestamp, "resource_uri": f"{api_domain}/crm/v8/{module}",
             "resource_id": ids.get(module, ""), "resource_name": module, "channel_id": channel.channel_id}
            for module in channel.modules()]


def listing(channel: Channel, api_domain: str, expiry_text: str, ids: dict[str, str]) -> list[dict[str, Any]]:
    """GET answers one entry per (channel, module)."""
    return [{"notify_on_related_action": channel.notify_on_related_action, "channel_expiry": expiry_text,
             "resource_uri": f"{api_domain}/crm/v8/{module}", "resource_id": ids.get(module, ""),
             "resource_name": module, "channel_id": channel.channel_id, "notify_url": channel.notify_url,
             "token": channel.token, "return_affected_field_values": channel.return_affected_field_values,
             "events": [e for e in channel.events if e.startswith(module + ".")]}
            for module in channel.modules()]


def notification(channel: Channel, module: str, operation: str, ids: list[str], server_time: datetime,
                 api_domain: str, changed: dict[str, list[str]], values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The body Zoho POSTs to notify_url (Enable Notifications page sample; ``resource_uri`` says v2)."""
    body: dict[str, Any] = {
        "server_time": int(server_time.timestamp() * 1000),
        "query_params": dict(parse_qsl(urlsplit(channel.notify_url).query)),
        "module": module,
        "resource_uri": f"{api_domain}/crm/v2/{module}",
        "ids": ids,
        "affected_fields": [{i: changed[i]} for i in ids if changed.get(i)] if operation == "update" else [],
        "operation": operation,
        "channel_id": channel.channel_id,
        "token": channel.token,
    }
    if channel.return_affected_field_values:
        body["affected_values"] = [{"record_id": i, "values": values.get(i, {})} for i in ids]
    return body
