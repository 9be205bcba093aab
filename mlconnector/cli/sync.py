"""`mlconnector sync PAIR` (one subcommand per registered pair) and `mlconnector replay`."""


from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Optional

import typer
from rich.progress import (BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TaskID, TextColumn,
                           TimeElapsedColumn)
from rich.table import Table
from rich.text import Text

from mlconnector import api, interrupt
from mlconnector.cli.common import err, out, parse_since, print_error, print_json, runtime
from mlconnector.sync import RunResult
from mlconnector.flows import PairSpec
from mlconnector.pairs import all_pairs

EXIT_HELP = """Exit codes: 0 done; 2 usage or config error (or a state file that cannot be written); 3 some
records failed and wait in the replay queue; 4 authentication failed; 5 a system unreachable; 75 another run of
this pair holds the lock; 130 / 143 stopped by Ctrl-C (SIGINT) / SIGTERM, the writes in flight recorded."""


def _stopped_at_once(signum: int) -> str:
    return (f"stopped at once by a second {interrupt.signal_name(signum)}; the next run continues "
            "(writes that were in flight are found again by their keys)")


def interrupted_line(results: list[RunResult]) -> str | None:
    """The one line a run stopped by a signal ends with."""
    stopped = [r for r in results if r.interrupted]
    if not stopped:
        return None
    records = sum(r.recorded for r in results)
    return (f"interrupted by {stopped[0].interrupted} after {records} record{'s' if records != 1 else ''}; "
            "the next run continues")


class RateColumn(ProgressColumn):
    """Records a second, once there is a rate to show."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")


class CountColumn(ProgressColumn):
    """``done/total`` where the source's API told the total, else just ``done`` (never ``done/?``)."""

    def render(self, task: Task) -> Text:
        done = int(task.completed)
        return Text(f"{done:,}/{int(task.total):,}" if task.total is not None else f"{done:,}",
                    style="progress.download")


class FlowProgress:
    """A progress bar per flow on stderr: records done, the total where known, the rate, the time taken."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._tasks: dict[str, TaskID] = {}

    def _task(self, flow: str) -> TaskID:
        if flow not in self._tasks:
            self._tasks[flow] = self._bar.add_task(flow, total=None)
        return self._tasks[flow]

    def __call__(self, flow: str, n: int) -> None:
        self._bar.advance(self._task(flow), n)

    def total(self, flow: str, total: int) -> None:
        task = self._task(flow)
        if self._bar.tasks[task].total != total:
            self._bar.update(task, total=total)


@contextmanager
def progress_reporter(enabled: bool) -> Iterator[FlowProgress | None]:
    """A progress bar per flow on stderr, only when stderr is a terminal and output is not JSON."""
    if not enabled or not err.is_terminal:
        yield None
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), CountColumn(), RateColumn(),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        yield FlowProgress(bar)


# What was done to the target of a record deleted in its source (see on_delete in docs/sync.md).
DELETION_WORDS = {"delete": "deleted in the target too", "flag": "marked deleted in the target",
                  "unlink": "unlinked (the target's record kept)", "failed": "not handled (tried again next run)"}


def render_run(result: RunResult) -> None:
    title = f"{result.pair} run {result.run_id}" + (" (dry run: nothing written)" if result.dry_run else "")
    table = Table(title=title)
    for column in ("flow", "read", "created", "updated", "unchanged", "skipped", "failed", "API calls"):
        table.add_column(column, justify="left" if column in ("flow", "API calls") else "right")
    for name, stats in result.flows.items():
        calls = ", ".join(f"{k} {v}" for k, v in sorted(stats.calls.items())) or "-"
        table.add_row(name, str(stats.read), str(stats.created), str(stats.updated), str(stats.unchanged),
                      str(stats.skipped), str(stats.failed), calls)
    out.print(table)
    for name, stats in result.flows.items():
        if stats.note:
            out.print(f"{name}: {stats.note}", highlight=False)
        if stats.fields_changed:  # what the updated column holds, field by field
            fields = sorted(stats.fields_changed.items(), key=lambda kv: (-kv[1], kv[0]))
            out.print(f"{name}: updated {stats.updated} (" + ", ".join(f"{f} {n}" for f, n in fields) + ")",
                      highlight=False, markup=False)
        if stats.deletions:  # records deleted in the source, by what was done to their targets
            total = sum(stats.deletions.values())
            done = ", ".join(f"{n} {DELETION_WORDS.get(what, what)}" for what, n in sorted(stats.deletions.items()))
            out.print(f"{name}: {total} record(s) deleted in the source"
                      + (" would be handled: " if result.dry_run else ": ") + done, highlight=False, markup=False)
        if stats.skip_reasons:  # what the skipped column holds, reason by reason
            reasons = sorted(stats.skip_reasons.items(), key=lambda kv: (-kv[1], kv[0]))
            out.print(f"{name}: skipped " + "; ".join(f"{n} {why}" for why, n in reasons), highlight=False,
                      markup=False)
    if result.dry_run:
        for item in result.planned[:50]:
            out.print(f"would {item.action} {item.flow} {item.source_id}"
                      + (f" -> {item.target_id}" if item.target_id else ""))
        if len(result.planned) > 50:
            out.print(f"... and {len(result.planned) - 50} more")
        calls = ", ".join(f"{k} {v}" for k, v in sorted(result.estimated_calls.items())) or "none"
        out.print(f"API calls the run would make: {calls} (reads as this dry run made them, writes estimated)",
                  highlight=False)
    for line in result.channels:
        out.print(f"push channel {line}")
    if result.notifications:
        out.print(f"{result.notifications} notification(s) processed before the poll")
    for problem in result.channel_problems:
        warn(f"push channel {problem}")
    for warning in result.warnings:
        warn(warning)
    if result.failed and result.dry_run:
        warn(f"{result.failed} record(s) would fail (nothing was written or queued): see the failed column above")
    elif result.failed:
        warn(f"{result.failed} record(s) failed and wait in the replay queue: "
             f"see `mlconnector audit --run {result.run_id} --status failed`, then `mlconnector replay`")
    if result.stopped and not result.interrupted:
        warn(f"stopped early: {result.stopped}")


def warn(line: str) -> None:
    """One yellow line on stderr, never wrapped (cron mail and log greps see it whole), no markup."""
    err.print(line, style="yellow", markup=False, highlight=False, soft_wrap=True)


def _sync_command(spec: PairSpec) -> Callable[..., None]:
    flow_names = ", ".join(f.name for f in spec.flows)

    def command(
        ctx: typer.Context,
        flow: Annotated[Optional[list[str]], typer.Option("--flow", help=f"Run only this flow (repeatable): {flow_names}.")] = None,
        full: Annotated[bool, typer.Option("--full", help="Ignore watermarks and read everything.")] = False,
        since: Annotated[Optional[str], typer.Option("--since", help="Read changes since this ISO time instead of the watermark.")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and map; write nothing; show what would change and its cost.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
        allow_deletes: Annotated[bool, typer.Option("--allow-deletes", help="Carry out deletions even when more records look deleted than max_delete_fraction allows.")] = False,
    ) -> None:
        start = parse_since(since)
        with interrupt.stop_on_signals(_stopped_at_once), progress_reporter(not as_json) as progress:
            result = api.sync(runtime(ctx), spec.name, flows=flow, full=full, since=start, dry_run=dry_run,
                              progress=progress, progress_total=progress.total if progress else None,
                              allow_deletes=allow_deletes)
        print_json(result.to_dict()) if as_json else render_run(result)
        _tell_interrupted([result])
        raise typer.Exit(result.exit_code)

    command.__doc__ = f"{spec.description or 'Sync ' + spec.name}.\n\nFlows: {flow_names}.\n\n{EXIT_HELP}"
    return command


def build_sync_app() -> typer.Typer:
    """One subcommand per registered pair; adding a pair needs no CLI code."""
    app = typer.Typer(help=f"Sync a pair of systems once (run it from cron).\n\n{EXIT_HELP}", no_args_is_help=True)
    for name, spec in sorted(all_pairs().items()):
        app.command(name)(_sync_command(spec))
    return app


def replay(
    ctx: typer.Context,
    pair: Annotated[Optional[str], typer.Option("--pair", help="Only this pair.")] = None,
    flow: Annotated[Optional[str], typer.Option("--flow", help="Only this flow.")] = None,
    error_class: Annotated[Optional[str], typer.Option("--error-class", help="Only records that failed with this error class.")] = None,
    ids: Annotated[Optional[list[str]], typer.Option("--id", help="Only this source record id (repeatable).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Everything in the queue (or matching the filters).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Fetch and map; write nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Retry failed records: each is fetched again from its source (its current version) and synced.

    Exit codes as for sync.
    """
    if not (all_ or pair or flow or error_class or ids):
        raise typer.BadParameter("say what to replay: --all, or --pair/--flow/--error-class/--id")
    with interrupt.stop_on_signals(_stopped_at_once), progress_reporter(not as_json) as progress:
        results = api.replay(runtime(ctx), pair=pair, flow=flow, error_class=error_class, ids=ids,
                             dry_run=dry_run, progress=progress)
    if as_json:
        print_json([r.to_dict() for r in results])
    elif not results:
        out.print("nothing to replay")
    for result in results if not as_json else []:
        render_run(result)
    _tell_interrupted(results)
    interrupted = [r.exit_code for r in results if r.interrupted]
    raise typer.Exit(interrupted[0] if interrupted else max((r.exit_code for r in results), default=0))


def _tell_interrupted(results: list[RunResult]) -> None:
    line = interrupted_line(results)
    if line:
        print_error(line, prefix="")
