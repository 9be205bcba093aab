"""`mlconnector reconcile PAIR`: do both systems agree? Counts per flow, examples, totals by month; --fix."""

from typing import Annotated, Optional

import typer
from rich.table import Table

from mlconnector import api, interrupt
from mlconnector.cli.common import out, print_json, runtime
from mlconnector.cli.sync import _stopped_at_once, render_run, warn
from mlconnector.errors import EXIT_DISAGREE

EXAMPLES = 5  # records shown per kind of difference; --json lists them all


def reconcile(
    ctx: typer.Context,
    pair: Annotated[str, typer.Argument(help="The pair to compare, e.g. nav-zoho.")],
    flow: Annotated[Optional[list[str]], typer.Option("--flow", help="Only this flow (repeatable).")] = None,
    fix: Annotated[bool, typer.Option("--fix", help="Queue each record that writing again would fix for the next run (replay).")] = False,
    now: Annotated[bool, typer.Option("--now", help="With --fix: write them now instead of at the next run.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Compare both systems of a pair, record by record and (for documents) as totals per month; write nothing.

    Exit codes: 0 both sides agree (or, with --fix --now, agree now); 6 they do not; 2 usage or config error;
    4 authentication failed; 5 a system unreachable; 75 a run of this pair holds the lock.
    """
    if now and not fix:
        raise typer.BadParameter("--now writes what --fix queues: pass --fix --now")
    with interrupt.stop_on_signals(_stopped_at_once):
        result = api.reconcile(runtime(ctx), pair, flows=flow, fix=fix, now=now)
    report = result.report
    if as_json:
        data = report.to_dict()
        data["run"] = result.run.to_dict() if result.run else None
        print_json(data)
    else:
        _render(report)
        if fix:
            out.print(f"queued {result.queued} record(s) to be written again"
                      + ("" if now or not result.queued else ": the next run writes them (or `mlconnector replay "
                                                             "--error-class reconcile`)"), highlight=False)
        if result.run:
            render_run(result.run)
    fixed = result.run is not None and result.run.exit_code == 0 and report.fixable
    raise typer.Exit(0 if report.agrees or fixed else (result.run.exit_code if result.run and result.run.exit_code
                                                        else EXIT_DISAGREE))


def _render(report: api.ReconcileReport) -> None:
    table = Table(title=f"{report.pair}: do both sides agree?")
    for column in ("flow", "source", "target", "agree", "differences"):
        table.add_column(column, justify="left" if column in ("flow", "differences") else "right")
    for name, flow in report.flows.items():
        counts = ", ".join(f"{kind} {n}" for kind, n in flow.counts.items())
        if flow.not_compared:
            table.add_row(name, "-", "-", "-", "not compared (see below)")
            continue
        kept = f" ({flow.kept_after_delete} kept after a deletion)" if flow.kept_after_delete else ""
        table.add_row(name, str(flow.source_records), str(flow.target_records), str(flow.agreeing),
                      (counts or "none") + kept)
    out.print(table)
    for name, flow in report.flows.items():
        if flow.not_compared:
            out.print(f"{name}: not compared: {flow.not_compared}", highlight=False, markup=False)
        shown: dict[str, int] = {}
        for d in flow.differences:
            shown[d.kind] = shown.get(d.kind, 0) + 1
            if shown[d.kind] > EXAMPLES:
                continue
            where = ", ".join(p for p in (f"source {d.source_id}" if d.source_id else "",
                                           f"target {d.target_id}" if d.target_id else "") if p)
            fields = "; ".join(f"{f}: {s!r} here, {t!r} there" for f, s, t in d.fields[:4])
            out.print(f"{name}: {d.kind} {d.key or '(no key)'} ({where})" + (f": {fields}" if fields else "")
                      + (f": {d.note}" if d.note else ""),
                      highlight=False, markup=False)
        for kind, n in shown.items():
            if n > EXAMPLES:
                out.print(f"{name}: ... and {n - EXAMPLES} more {kind} (--json lists them all)", highlight=False)
    totals = [(name, t) for name, flow in report.flows.items() for t in flow.totals]
    if totals:
        table = Table(title="documents per month")
        for column in ("flow", "month", "currency", "source", "source total", "target", "target total", ""):
            table.add_column(column, justify="left" if column in ("flow", "month", "currency", "") else "right")
        for name, t in totals:
            table.add_row(name, t.month, t.currency or "-", str(t.source_count), f"{t.source_sum:,.2f}",
                          str(t.target_count), f"{t.target_sum:,.2f}", "" if t.agrees else "differs")
        out.print(table)
    calls = ", ".join(f"{k} {v}" for k, v in sorted(report.calls.items())) or "none"
    credits = "".join(f"; {name} credits {n}" for name, n in sorted(report.credits.items()))
    out.print(f"API calls: {calls}{credits}", highlight=False)
    skipped = [name for name, flow in report.flows.items() if flow.not_compared]
    if report.agrees:
        out.print("both sides agree" + (f" (not compared: {', '.join(skipped)})" if skipped else ""),
                  highlight=False)
    else:
        warn("the two sides do not agree: see above; `mlconnector reconcile "
             f"{report.pair} --fix` queues what writing again would fix")
