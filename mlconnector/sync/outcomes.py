"""What happens to a record, and what a run reports: outcomes as values, never as text to match later."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from mlconnector.errors import EXIT_OK, EXIT_RECORDS_FAILED


class Outcome(enum.Enum):
    """What became of one record in one run. ``value`` is the audit row's action (bookkeeping.audit_row: an unchanged
    record's is "skip")."""

    CREATED = "create"
    UPDATED = "update"
    UNCHANGED = "unchanged"  # the target holds what the record maps to already
    SKIPPED = "skip"         # deliberately not written: our own echo, a conflict the target won, a mapping's choice
    FAILED = "fail"          # waits in the replay queue
    SEEN = "seen"            # re-read through the overlap window, this very version done before: no audit row
    NOT_SENT = "not_sent"    # its write was not sent (the run was told to stop): not an attempt, not counted, no
                             # audit row; the next run reads it again
    # A record deleted in its source, by its flow's on_delete policy: the target record deleted, marked, or left
    # as it is with the link closed.
    DELETED = "delete"
    FLAGGED = "flag"
    UNLINKED = "unlink"


class NotSent(Exception):
    """A batch's write was not sent because the run was told to stop."""


@dataclass
class FlowStats:
    """Counts for one flow in one run, as the summary table shows them. Every record read is counted once, as it
    is recorded: read = created + updated + unchanged + skipped + failed (a record the run read but was stopped
    before settling is not counted: the next run reads it again)."""

    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    note: str = ""
    skip_reasons: dict[str, int] = field(default_factory=dict)  # why records were skipped, with their counts
    fields_changed: dict[str, int] = field(default_factory=dict)  # updates, by the fields they changed
    deletions: dict[str, int] = field(default_factory=dict)  # records deleted in the source, by what was done
    guarded: int = 0  # deletions the mass-delete guard stopped (nothing done about them)

    def count_batch(self, settled: list[tuple[Outcome, str | None]]) -> None:
        """A batch's records, each with its reason, counted as ``count`` counts one."""
        for outcome, reason in settled:
            self.count(outcome, reason)

    def count(self, outcome: Outcome, reason: str | None = None) -> None:
        """One record read and settled (a record seen before counts as unchanged); a skip with its reason."""
        self.read += 1
        if outcome is Outcome.SKIPPED:
            why = (reason or "no reason given").removeprefix("skipped: ")
            self.skip_reasons[why] = self.skip_reasons.get(why, 0) + 1
        if outcome in (Outcome.UNCHANGED, Outcome.SEEN):
            self.unchanged += 1
        elif outcome is Outcome.CREATED:
            self.created += 1
        elif outcome is Outcome.UPDATED:
            self.updated += 1
        elif outcome is Outcome.SKIPPED:
            self.skipped += 1
        elif outcome is Outcome.FAILED:
            self.failed += 1


@dataclass
class Planned:
    """What a dry run would do to one record."""

    flow: str
    source_id: str
    action: str
    target_id: str | None


@dataclass
class RunResult:
    run_id: str
    pair: str
    dry_run: bool = False
    flows: dict[str, FlowStats] = field(default_factory=dict)
    stopped: str | None = None
    exit_code: int = EXIT_OK
    # Push channels: what was subscribed or renewed, and what failed (then that entity is polled only).
    channels: list[str] = field(default_factory=list)
    channel_problems: list[str] = field(default_factory=list)
    notifications: int = 0
    planned: list[Planned] = field(default_factory=list)
    estimated_calls: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # told once per run (a system's clock ahead of ours)
    interrupted: str | None = None  # the signal that stopped the run (SIGTERM, SIGINT)
    credits: dict[str, int] = field(default_factory=dict)  # API credits spent, for systems that charge them

    def settle(self) -> None:
        """The exit code a run that went through ends with: 3 where records failed, deletions were held back or
        failed, or it stopped early."""
        if (self.failed or self.guarded or self.deletes_failed or self.stopped) and self.exit_code == EXIT_OK:
            self.exit_code = EXIT_RECORDS_FAILED

    @property
    def status(self) -> str:
        """As the runs table keeps it: ok, failed, stopped (early: a budget, a system down) or interrupted."""
        if self.interrupted:
            return "interrupted"
        return "ok" if self.exit_code == EXIT_OK else ("stopped" if self.stopped else "failed")

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.flows.values())

    @property
    def guarded(self) -> int:
        """Deletions the mass-delete guard held back (the run exits 3 until they are confirmed)."""
        return sum(s.guarded for s in self.flows.values())

    @property
    def deletes_failed(self) -> int:
        """Deletions that could not be carried out (found again next run)."""
        return sum(s.deletions.get("failed", 0) for s in self.flows.values())

    @property
    def recorded(self) -> int:
        """Records this run settled (written, found unchanged, skipped or failed) and recorded."""
        return sum(s.read for s in self.flows.values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"] = self.failed
        data["guarded"] = self.guarded
        if not self.dry_run:
            data.pop("planned")
            data.pop("estimated_calls")
        return data
