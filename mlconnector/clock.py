"""The one clock and the one time parser: now in UTC, and the times systems send (ISO 8601 / OData DateTimeOffset
text, or a driver's date and datetime objects) as aware UTC. A vendor's own blank dates and stamp forms are small
named functions over ``parse_utc`` in its package (BC's 0001-01-01, F&O's 1900-01-01, NAV's date-only page
stamps, Zoho's stamps that must carry their offset)."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_iso(value: Any) -> datetime | None:
    """ISO 8601 text (a trailing ``Z`` for UTC, any offset, ``T`` or a space between date and time) as it says,
    its offset kept, naive where it has none; None for an empty value or text that is no time."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_utc(value: Any) -> datetime | None:
    """A time as aware UTC: a datetime as it is, a date at its midnight, else ISO 8601 text (``parse_iso``). A time
    without a zone is taken as UTC (the zone every system here stamps in, or states). None for an empty value or
    text that is no time."""
    if isinstance(value, datetime):
        moment: datetime | None = value
    elif isinstance(value, date):
        moment = datetime.combine(value, datetime.min.time())
    else:
        moment = parse_iso(value)
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
