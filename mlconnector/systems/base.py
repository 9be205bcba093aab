"""The connector contract: what the engine needs from every external system, and the records it trades."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

Action = Literal["create", "update", "skip", "fail"]
T = TypeVar("T")


def utc(value: datetime) -> datetime:
    """Return ``value`` as a timezone-aware UTC datetime; naive values are refused, not guessed."""
    if value.tzinfo is timezone.utc:  # most are already: the same value, not a copy
        return value
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: every timestamp must carry its zone")
    return value.astimezone(timezone.utc)


@dataclass(frozen=True)
class Record:
    """One record read from a system: its fields plus where it lives and when it last changed."""

    system: str
    entity: str
    id: str
    modified: datetime | None
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.modified is not None:
            object.__setattr__(self, "modified", utc(self.modified))

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


@dataclass(frozen=True)
class WriteResult:
    """The outcome of writing one payload; results come back in the order the payloads went in.

    ``version`` is the target's modified time after our write when the system tells it; the engine
    keeps it so that the same record read back in a two-way flow is known as our own echo.

    ``stored`` is the record as the target holds it after the write, in the shape its reads return, where the
    write's answer carries it (or the connector reads it back anyway): only the fields it holds are compared
    when the record is read back, so a connector leaves out what a read fills in differently (a stamp that
    a read caps, relations a read joins in). With it, our own write is told from a later edit by content
    alone, however coarse the target's stamps.
    """

    action: Action
    target_id: str | None = None
    version: datetime | None = None
    error: str | None = None
    error_class: str | None = None
    stored: Record | None = None

    @property
    def ok(self) -> bool:
        return self.action != "fail"

    @property
    def not_sent(self) -> bool:
        return self.error_class == NOT_SENT


# A record a connector did not send because the run was told to stop (SIGTERM, Ctrl-C): not an attempt, so the
# engine records nothing for it and the next run reads it again.
NOT_SENT = "not_sent"


def write_each(items: Iterable[T], write_one: Callable[[T], WriteResult]) -> list[WriteResult]:
    """For connectors that send a call per record: once the run is told to stop, the records not yet sent come
    back as not sent instead of holding the stop up for the rest of the batch."""
    from mlconnector import interrupt

    return [write_one(item) if interrupt.requested() is None
            else WriteResult("fail", error="not sent: the run was told to stop", error_class=NOT_SENT)
            for item in items]


@dataclass(frozen=True)
class PingResult:
    """What `mlconnector ping` shows for one system. ``exit_code`` says why it failed (4 credentials
    refused, 5 unreachable), as the CLI's exit codes do."""

    system: str
    ok: bool
    base_url: str = ""
    details: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    error: str | None = None
    exit_code: int = 0


@dataclass(frozen=True)
class Notification:
    """A verified push notification, reduced to what the engine needs: which records changed."""

    system: str
    entity: str
    ids: tuple[str, ...]
    operation: str = "update"
    channel_id: str | None = None
    # Some systems (BC `collection`) announce only that "something changed": then ids is empty and
    # the engine re-reads from the watermark instead.
    since: datetime | None = None


@dataclass(frozen=True)
class Channel:
    """A push channel or subscription as the system reports it."""

    system: str
    entity: str
    channel_id: str
    expires: datetime
    notify_url: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Connector(Protocol):
    """What the engine calls. Push methods are optional: see ``supports_push``."""

    name: str

    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        """Records of ``entity`` modified in ``[since, until)`` in ascending (modified, id) order, streamed."""

    def get(self, entity: str, id: str) -> Record | None:
        """The full current record, or None when it no longer exists."""

    def write(self, entity: str, payloads: list[dict[str, Any]], key: str,
              ids: list[str | None] | None = None) -> list[WriteResult]:
        """Idempotent upsert of ``payloads`` by the natural key field ``key``; one result per payload.

        ``ids``, when given, holds for each payload the target id it is already linked to (or None):
        such a record is updated by id, even if its key is missing from the payload or has changed.
        """

    def ping(self) -> PingResult:
        """Reachability, credentials, edition or permissions."""

    def close(self) -> None:
        """Release connections."""


@runtime_checkable
class PushConnector(Protocol):
    """A connector whose system can push change notifications (Zoho channels, BC subscriptions)."""

    name: str
    # Where the system should send notifications (our `mlconnector listen` URL), or None: poll only.
    notify_url: str | None

    def push_entities(self) -> tuple[str, ...]:
        """The entities this system can push changes for (others are polled)."""

    def subscribe(self, entity: str, notify_url: str) -> Channel:
        """Create a channel or subscription for ``entity``."""

    def renew(self, channel: Channel) -> Channel:
        """Extend a channel before it expires; returns it with its new expiry."""

    def unsubscribe(self, channel: Channel) -> None:
        """Remove a channel."""

    def verify(self, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> list[Notification]:
        """Check a received notification (token, clientState) and reduce it to ids.

        Raises mlconnector.errors.NotificationRejected when it cannot be trusted or read.
        """


def supports_push(connector: object) -> bool:
    """True when the connector can subscribe to change notifications and has somewhere to send them."""
    methods = ("push_entities", "subscribe", "renew", "unsubscribe", "verify")
    return all(callable(getattr(connector, name, None)) for name in methods)
