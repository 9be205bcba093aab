"""Where a poll reads: from the watermark less the overlap, to this host's clock when the run began, or to the
source's own clock where that runs ahead; and where the watermark moves once the whole window is recorded."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from mlconnector.sync.context import FlowRun
from mlconnector.systems.base import Record

log = logging.getLogger("mlconnector.sync")

# A source whose clock runs ahead of this host's by at least this much (its Date) is read to its own clock.
CLOCK_TOLERANCE = timedelta(seconds=2)


@dataclass
class Window:
    """Where a poll's read window ends (this host's clock when the run began; later where the source's runs
    ahead)."""

    end: datetime


def read_start(fr: FlowRun, full: bool, since: datetime | None, mark: datetime | None) -> datetime | None:
    """``since``, else (unless ``full``) the flow's watermark ``mark`` less the overlap."""
    if since is not None:
        return since
    if full:
        return None
    return mark - timedelta(seconds=fr.config.overlap_seconds) if mark else None


def changes_to_source_clock(fr: FlowRun, start: datetime | None, window: Window) -> Iterator[Record]:
    """The source's changes in [start, window.end), then, where the source's clock runs ahead of this host's (the
    Date of its answers says so), those it stamped past window.end up to its own clock: read now, not once this
    host's clock has caught up. The window then ends there, and the run warns once per system."""
    source, entity = fr.source, fr.flow.source_entity
    yield from source.changes(entity, start, window.end)
    ahead = source.clock_ahead()
    if ahead is None or ahead < CLOCK_TOLERANCE:
        return
    end = window.end + ahead + CLOCK_TOLERANCE  # a Date is rounded down to the second
    warn_clock(fr, ahead)
    yield from source.changes(entity, window.end, end)
    window.end = end


def warn_clock(fr: FlowRun, ahead: timedelta) -> None:
    system = fr.source_name
    line = (f"{system}: its clock is {duration(ahead)} ahead of this host's (the Date of its answers); its "
            "changes are read to its own clock. Set both clocks right (NTP)")
    if system not in {w.split(":")[0] for w in fr.run.warnings}:
        fr.run.warnings.append(line)
        log.info("%s", line)  # the CLI prints run.warnings


def close_window(fr: FlowRun, until: datetime) -> None:
    """After a poll that read its whole window and recorded every record in it, move the watermark to where the
    window provably ends, not just to the newest record read: the next run's overlap then re-reads only the last
    few seconds, not a cluster of records sharing an old stamp (a Bulk Write job's).

    The end is the earlier of ``until`` (this host's clock) and the source's own clock when the read began
    (connectors that know it offer ``read_clock``): under clock skew either may be the earlier. A source that
    dates changes by day (GP) offers the end of the earliest day that may still change instead. A source that
    does not tell its clock keeps the watermark at the newest record read. Records that land late with an older
    stamp are what the overlap is for, as before."""
    seen = fr.source.read_clock(fr.flow.source_entity)
    if seen is not None and seen.tzinfo is not None:
        fr.state.set_watermark(fr.pair.name, fr.flow.name, min(until, seen))


def duration(span: timedelta) -> str:
    """``span`` for a person: to the minute from an hour up (a clock read off a Date is a second short at most)."""
    seconds = round(span.total_seconds())
    if seconds >= 3600:
        seconds = round(seconds / 60) * 60
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return " ".join(f"{n} {unit}" for n, unit in ((hours, "h"), (minutes, "min"), (seconds, "s")) if n) or "0 s"
