"""What one run knows of deletions, flow by flow: the records found gone while it fetched them, the deletion feeds
it has read (once a run per system and entity), and when it began; each flow's look after its records were synced
(``deletes`` finds and settles them)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from mlconnector.errors import EXIT_UNREACHABLE, BudgetExhausted, RemoteError, Unreachable
from mlconnector.flows import Flow
from mlconnector.http import CallCounter
from mlconnector.sync import deletes
from mlconnector.sync.context import FlowRun
from mlconnector.sync.pipeline import Stop
from mlconnector.systems.base import Connector


def _covers(read_since: datetime | None, since: datetime | None) -> bool:
    """Does a deletion feed read from ``read_since`` hold everything one from ``since`` would?"""
    return read_since is None or (since is not None and read_since <= since)


class DeletionLooks:
    """One engine's deletion looks; ``start`` at each run."""

    def __init__(self, policies: dict[str, str], allow: bool, counter: CallCounter,
                 now: Callable[[], datetime]) -> None:
        self.policies = policies  # flow -> on_delete (deletes.policies)
        self.allow = allow        # --allow-deletes: the mass-delete guard lets this run through
        self.counter = counter
        self.now = now
        self.gone: dict[str, set[str]] = {}  # flow -> notified or queued records found deleted in this run
        self.feeds: dict[tuple[str, str], tuple[datetime | None, set[str]]] = {}  # (system, entity) -> since, ids
        self.began = now()

    def start(self) -> None:
        self.gone.clear()
        self.feeds.clear()
        self.began = self.now()

    def gone_of(self, flow: Flow) -> set[str]:
        """Where the flow's fetches put the records they found gone."""
        return self.gone.setdefault(flow.name, set())

    def pending(self, flow: Flow) -> bool:
        return bool(self.gone.get(flow.name))

    def look(self, fr: FlowRun, *, look: bool = True, whole_read: bool = False) -> None:
        """The flow's source records deleted (see deletes): found, then handled by the flow's on_delete. A look the
        daily credit budget cannot pay for waits for the next run (where it got to is not recorded), and the run
        says so; the records it synced stand."""
        policy = self.policies[fr.flow.name]
        gone = self.gone.pop(fr.flow.name, set())
        before = self.counter.snapshot()
        try:
            marks = fr.state.deletion_marks(fr.pair.name, fr.flow.name)  # one read of what the look needs
            deletes.relinked(fr, marks.kept)
            found = deletes.detect(fr, policy, self.now(), gone, marks, look=look, feed=self._feed)
            # Looked at from the run's start: a record deleted while this run read is found by the next.
            deletes.settle(fr, policy, found, self.began, allow=self.allow, looked=look or whole_read)
        except BudgetExhausted as exc:
            fr.run.warnings.append(f"{fr.flow.name}: deletions not looked for ({exc}); the next run looks")
        except (Unreachable, RemoteError) as exc:
            raise Stop(str(exc), EXIT_UNREACHABLE) from None
        finally:  # the flow's calls, as its summary row counts them
            for system, n in self.counter.since(before).items():
                fr.stats.calls[system] = fr.stats.calls.get(system, 0) + n

    def _feed(self, source: Connector, entity: str, since: datetime | None) -> set[str]:
        """A source's deleted records since ``since``, read once a run per (system, entity) for every flow that
        reads them (nav-zoho's two flows from Zoho Accounts): a read from an earlier time serves a later one."""
        key = (source.name, entity)
        cached = self.feeds.get(key)
        if cached is None or not _covers(cached[0], since):
            cached = (since, set(source.deleted_since(entity, since)))
            self.feeds[key] = cached
        return cached[1]
