"""The connector contract: what the engine needs from every external system, and the records it trades."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from mlconnector.http import ApiClient

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


@dataclass(frozen=True)
class Capabilities:
    """What a kind of system offers beyond the calls every connector answers, declared once on its class. The
    engine reads these, and calls the optional methods of ConnectorBase (whose defaults say "no such thing")."""

    push: bool = False          # change notifications: push_entities, subscribe, renew, unsubscribe, verify
    read_ahead: bool = False    # can ask for its next page while the current one is used (``pages_ahead``)
    fetches_many: bool = False  # get_many fetches many ids a call (else one call per record)
    counts: bool = False        # can tell, with a read's first page, how many records it gives (``counted``)
    deletion_feed: bool = False  # lists the records deleted since a time (``deleted_since``)
    deletes: bool = False       # may delete records it holds for a flow's on_delete = "delete" (``delete``)
    flags: bool = False         # may mark records deleted at the source for on_delete = "flag" (``flag_deleted``)
    # How it compares natural keys (an upsert's or a lookup's): every system here without surrounding spaces; these
    # also without case, so "Shared@Example.COM " and "shared@example.com" are one key there.
    keys_ignore_case: bool = False


class ConnectorBase:
    """The connector contract: what the engine calls. A connector for a kind of system subclasses this, sets
    ``name`` and ``capabilities``, implements the five calls every system answers (changes, get, write, ping,
    close) and overrides the optional ones where its system can do more; the defaults below are what the engine
    assumes of a system that cannot."""

    name: str = ""
    capabilities: Capabilities = Capabilities()
    # Where the system should send notifications (our `mlconnector listen` URL), or None: poll only.
    notify_url: str | None = None
    # Renew a push channel when it expires within this margin.
    renew_margin: timedelta = timedelta(hours=2)
    # Read-ahead connectors: whether to ask for the next page early now (the engine turns it off for a bulk load).
    pages_ahead: bool = False
    # Whole reads may start with smaller pages, so that a first load starts writing sooner; a reader that writes
    # nothing meanwhile (reconcile) turns it off: full pages from the first, the fewest calls.
    small_first_pages: bool = True
    http: ApiClient | None = None  # the system's HTTP client, where it has one
    # Counting connectors: whether to ask, with the next read's first page, how many records it gives.
    count_rows: bool = False
    # Systems that charge API credits per call (Zoho): the credits this connector has spent.
    credits_used: int = 0

    # -- every system --------------------------------------------------------------------------------------------
    def changes(self, entity: str, since: datetime | None, until: datetime | None = None) -> Iterator[Record]:
        """Records of ``entity`` modified in ``[since, until)`` in ascending (modified, id) order, streamed."""
        raise NotImplementedError

    def get(self, entity: str, id: str) -> Record | None:
        """The full current record, or None when it no longer exists."""
        raise NotImplementedError

    def write(self, entity: str, payloads: list[dict[str, Any]], key: str,
              ids: list[str | None] | None = None) -> list[WriteResult]:
        """Idempotent upsert of ``payloads`` by the natural key field ``key``; one result per payload.

        ``ids``, when given, holds for each payload the target id it is already linked to (or None):
        such a record is updated by id, even if its key is missing from the payload or has changed.
        """
        raise NotImplementedError

    def ping(self) -> PingResult:
        """Reachability, credentials, edition or permissions."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""

    # -- optional: reading ---------------------------------------------------------------------------------------
    def connect(self) -> None:
        """The calls a run makes first (a token, the company, the org), made ahead for all systems at once."""

    def get_many(self, entity: str, ids: list[str]) -> dict[str, Record]:
        """The current records of ``ids`` (those that exist), in as few calls as the system allows."""
        return {i: r for i in ids if (r := self.get(entity, i)) is not None}

    def find(self, entity: str, field: str, value: Any) -> list[Record]:
        """The records whose ``field`` equals ``value``; a system that cannot be asked answers []."""
        return []

    def coarse_stamps(self, entity: str) -> bool:
        """Whether two versions of a record of ``entity`` can share a stamp (a date, whole seconds): versions are
        then told apart by content."""
        return False

    def read_clock(self, entity: str) -> datetime | None:
        """Where the last ``changes`` read of ``entity`` lets a poll's window close (the system's own clock when
        the read began); None: at the newest record read."""
        return None

    def counted(self, entity: str) -> int | None:
        """How many records the read of ``entity`` under way gives, where its first page said (``count_rows``)."""
        return None

    def clock_ahead(self) -> timedelta | None:
        """How far the system's clock runs ahead of this host's (the Date of its last answer); None: not told."""
        return self.http.clock_ahead if self.http is not None else None

    # -- optional: writing ---------------------------------------------------------------------------------------
    def write_concurrency(self, entity: str, batch_size: int) -> int:
        """How many write calls of ``batch_size`` records may be in flight at once."""
        return self.http.max_concurrency if self.http is not None else DEFAULT_WRITE_CONCURRENCY

    def write_calls(self, entity: str, payloads: list[dict[str, Any]], key: str, ids: list[str | None]) -> int:
        """The API calls writing ``payloads`` would cost (a dry run's estimate): one, where a connector cannot say."""
        return 1

    def initial_load_batch(self, entity: str) -> int | None:
        """Records per write of a first load, where the system loads them in bulk jobs; None: as any write."""
        return None

    def home_currency(self, entity: str) -> str | None:
        """The ISO code of the currency that a record of ``entity`` naming no currency is in (the ERP company's local
        currency, the CRM org's home currency), where the system tells it; None where it does not."""
        return None

    def unavailable(self, entity: str) -> str | None:
        """Why ``entity`` cannot be read or written here at all (an edition without the module), or None."""
        return None

    # -- deletions -----------------------------------------------------------------------------------------------
    def record_ids(self, entity: str) -> Iterator[str]:
        """Every id of ``entity`` now: a whole read that finds deletions by absence. Connectors override it with a
        read of ids only at their largest page; this default reads whole records."""
        return (record.id for record in self.changes(entity, None))

    def deleted_since(self, entity: str, since: datetime | None) -> list[str]:
        """Ids of records of ``entity`` deleted at or after ``since`` (``capabilities.deletion_feed``)."""
        raise NotImplementedError(f"{self.name} lists no deleted records")

    def delete(self, entity: str, ids: list[str]) -> dict[str, str | None]:
        """Delete these records (``capabilities.deletes``): id -> None when done (or already gone), else why not."""
        raise NotImplementedError(f"{self.name} deletes no records")

    def flag_deleted(self, entity: str, ids: list[str], source: str) -> dict[str, str | None]:
        """Mark these records as deleted in ``source`` (``capabilities.flags``): id -> None when done, else why
        not. How the mark looks is the system's (a Zoho tag)."""
        raise NotImplementedError(f"{self.name} marks no records")

    def unflag_deleted(self, entity: str, ids: list[str], source: str) -> dict[str, str | None]:
        """Take ``flag_deleted``'s mark off these records (their source record was created again and linked to them):
        id -> None when done, else why not."""
        raise NotImplementedError(f"{self.name} marks no records")

    def link_id(self, entity: str, record: Record) -> str:
        """The id a write of this record answers with, which links keep, for a record as read (most systems: its
        id; a Zuora subscription is read as one version, written and linked by its number)."""
        return record.id

    def also_read(self, entity: str, fields: list[str]) -> None:
        """Fields of ``entity`` a caller needs from later reads besides those the system reads anyway (`reconcile`
        compares every field a flow writes); for systems whose reads name their fields."""

    def field_names(self, entity: str) -> frozenset[str] | None:
        """The fields ``entity``'s records carry, as its records name them, from the system's own metadata (one
        call, kept for the connector's life); None where the system publishes no field list. Configured mappings
        are checked against it (`setup`, and a run's start)."""
        return None

    def fixed_fields(self, entity: str) -> str | None:
        """Where ``entity``'s records cannot carry a field the customer adds to the system (a table extension, a
        custom field) however it is set up: why, and what to use instead (a run refuses a flow writing one, exit
        2); None where they can (the default: `setup` checks the field itself)."""
        return None

    def set_budget(self, credits: int) -> None:
        """A daily budget of API credits, for systems that charge them (a run stops before crossing it)."""

    # -- optional: push (``capabilities.push``) -------------------------------------------------------------------
    def push_entities(self) -> tuple[str, ...]:
        """The entities this system can push changes for (others are polled)."""
        return ()

    def subscribe(self, entity: str, notify_url: str) -> Channel:
        """Create a channel or subscription for ``entity``."""
        raise NotImplementedError

    def renew(self, channel: Channel) -> Channel:
        """Extend a channel before it expires; returns it with its new expiry."""
        raise NotImplementedError

    def unsubscribe(self, channel: Channel) -> None:
        """Remove a channel."""
        raise NotImplementedError

    def verify(self, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> list[Notification]:
        """Check a received notification (token, clientState) and reduce it to ids.

        Raises mlconnector.errors.NotificationRejected when it cannot be trusted or read.
        """
        raise NotImplementedError

    def handshake(self, query: Mapping[str, str]) -> str | None:
        """The answer to a subscription's validation handshake (Business Central), or None: not one."""
        return None


DEFAULT_WRITE_CONCURRENCY = 4
# The contract, by the name the rest of the code uses for a connector.
Connector = ConnectorBase
