"""`mlconnector audit` and `mlconnector status`: what happened, and where things stand."""


import sys
from dataclasses import asdict
from typing import Annotated, Optional

import typer
from rich.table import Table

from mlconnector import api
from mlconnector.cli.common import out, parse_since, print_json, runtime
from mlconnector.errors import ConfigError
from mlconnector.health import Limits, exit_code, parse_duration

MAX_AUDIT_ROWS = 10_000_000


def audit(
    ctx: typer.Context,
    pair: Annotated[Optional[str], typer.Option("--pair", help="Only this pair.")] = None,
    flow: Annotated[Optional[str], typer.Option("--flow", help="Only this flow.")] = None,
    status: Annotated[Optional[str], typer.Option("--status", help="ok or failed (or an action: create, update, skip, fail).")] = None,
    record: Annotated[Optional[str], typer.Option("--record", help="A source or target record id.")] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="Rows at or after this ISO time.")] = None,
    run: Annotated[Optional[str], typer.Option("--run", help="Only this run id.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_AUDIT_ROWS, help="At most this many rows (newest).")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Show the audit trail: one row per record per attempt."""
    rows = api.audit(runtime(ctx), pair=pair, flow=flow, status=status, record=record,
                     since=parse_since(since), run=run, limit=limit)
    if as_json:
        print_json(rows)
        return
    out.print(audit_table(rows))
    if record:
        history = field_history(rows)
        if history.row_count:
            out.print(history)


def audit_table(rows: list[dict], title: str | None = None) -> Table:
    """The audit rows as a table: one line per record per attempt, readable in 80 columns: the record by its
    business key (a customer number) where it has one, what an update changed, why a record failed or was
    skipped (`--record KEY` adds the record's history field by field; `--json` has every column)."""
    table = Table(title=title or f"audit ({len(rows)} rows)")
    for column in ("time", "flow", "record", "action", "what"):
        table.add_column(column, overflow="fold")
    for row in rows:
        record = row.get("record_key") or row["source_id"]
        if row["error"]:
            detail = f"{row['error_class']}: {row['error']}"
        else:
            changed = row.get("changes") or []
            detail = ", ".join(c["field"] for c in changed) if changed else row["note"] or ""
        style = "red" if row["status"] == "failed" else None
        table.add_row(row["time"][5:16].replace("T", " "), f"{row['pair']}/{row['flow']}", str(record),
                      row["action"], detail, style=style)
    return table


def field_history(rows: list[dict]) -> Table:
    """A record's updates, field by field: what each changed from and to."""
    table = Table(title="field by field")
    for column in ("time", "flow", "field", "from", "to"):
        table.add_column(column, overflow="fold")
    for row in rows:
        for change in row.get("changes") or []:
            table.add_row(row["time"][5:16].replace("T", " "), row["flow"], change["field"],
                          _shown(change["old"]), _shown(change["new"]))
    return table


def _shown(value: object) -> str:
    return "-" if value is None else str(value)


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Only look for problems: one line each, and a non-zero exit code (10-14, see README) when there is one.")] = False,
    max_age: Annotated[Optional[str], typer.Option("--max-age", help="With --check: a pair whose last run started longer ago than this (e.g. 1h, 30m, 2d) is a problem (exit 11).")] = None,
    replay_age: Annotated[str, typer.Option("--replay-age", help="With --check: records waiting in the replay queue longer than this are a problem (exit 12).")] = "24h",
    prometheus: Annotated[bool, typer.Option("--prometheus", help="Print the figures as Prometheus metrics (node_exporter's textfile format).")] = False,
) -> None:
    """Show watermarks, the replay queue, pending notifications, channel expiry and the last runs.

    With --check, exit 0 when all is well, else the lowest of: 10 a pair's last run failed or was interrupted;
    11 a pair has not run within --max-age; 12 records waited in the replay queue longer than --replay-age;
    13 a push channel failed to renew or expires within the hour; 14 the last reconcile found disagreement.
    """
    limits = Limits(max_age=parse_duration(max_age, "--max-age") if max_age is not None else None,
                    replay_age=parse_duration(replay_age, "--replay-age"))
    if prometheus:
        if check or as_json:
            raise ConfigError("--prometheus prints metrics only: leave out --check and --json")
        sys.stdout.write(api.prometheus(runtime(ctx), limits))
        return
    if check or max_age is not None:
        problems = api.check(runtime(ctx), limits)
        if as_json:
            print_json({"ok": not problems, "exit_code": exit_code(problems),
                        "problems": [p.to_dict() for p in problems]})
        else:
            for problem in problems:
                out.print(problem.line, highlight=False, markup=False)
            if not problems:
                out.print("ok: no problems found", highlight=False)
        raise typer.Exit(exit_code(problems))
    result = api.status(runtime(ctx))
    if as_json:
        print_json(asdict(result))
        return
    where = "state database" if result.state_file.startswith(("postgresql://", "postgres://")) else "state file"
    if result.tenant:
        out.print(f"tenant: {result.tenant}", markup=False, highlight=False)
    out.print(f"{where}: {result.state_file}", markup=False, highlight=False)
    marks = Table(title="watermarks")
    for column in ("pair", "flow", "watermark", "waiting in replay"):
        marks.add_column(column)
    for mark in result.watermarks:
        marks.add_row(mark["pair"], mark["flow"], mark["watermark"],
                      str(result.replay_queue.get(f"{mark['pair']}/{mark['flow']}", 0)))
    out.print(marks)
    out.print(f"replay queue: {sum(result.replay_queue.values())} record(s); "
              f"notifications waiting: {result.inbox_pending}")
    if result.channels:
        channels = Table(title="push channels")
        for column in ("system", "entity", "channel", "expires"):
            channels.add_column(column)
        for channel in result.channels:
            channels.add_row(channel["system"], channel["entity"], channel["channel_id"], channel["expires"])
        out.print(channels)
    if any(a["by_push"] for a in result.arrivals):
        arrivals = Table(title="changes in the last 24 h: by notification / found only by the poll")
        for column in ("pair", "flow", "by notification", "by poll only"):
            arrivals.add_column(column)
        for row in result.arrivals:
            arrivals.add_row(row["pair"], row["flow"], str(row["by_push"]), str(row["by_poll_only"]))
        out.print(arrivals)
    if result.deletions:
        deleted = Table(title="deleted in their source, last 30 days: what was done to their targets")
        for column in ("pair", "flow", "deleted", "flagged", "unlinked", "failed"):
            deleted.add_column(column, justify="left" if column in ("pair", "flow") else "right")
        for row in result.deletions:
            deleted.add_row(row["pair"], row["flow"], *(str(row[k]) for k in ("deleted", "flagged", "unlinked",
                                                                               "failed")))
        out.print(deleted)
    runs = Table(title="last runs")
    for column in ("run", "pair", "started", "finished", "status", "exit"):
        runs.add_column(column)
    for run in result.last_runs:
        runs.add_row(run["id"], run["pair"], run["started"], run["finished"] or "-", run["status"],
                     "" if run["exit_code"] is None else str(run["exit_code"]))
    out.print(runs)
