"""`mlconnector setup PAIR [--apply]`: what the pair needs in its systems, line by line, and the exact fix."""

from typing import Annotated

import typer

from mlconnector import api
from mlconnector.cli.common import out, runtime
from mlconnector.errors import EXIT_CONFIG, EXIT_OK
from mlconnector.prerequisites import MISSING, OK, UNCHECKED, WRONG, SetupReport

MARKS = {OK: "[green]ok[/]     ", MISSING: "[red]missing[/]", WRONG: "[red]wrong[/]  ", UNCHECKED: "[yellow]manual[/] "}


def _print(report: SetupReport) -> None:
    for finding in report.findings:
        flows = f" [dim]({', '.join(finding.flows)})[/]" if finding.flows and finding.status != OK else ""
        text = finding.line().split(None, 1)[1]
        if finding.applied:
            text += " — done by setup"
        out.print(f"{MARKS[finding.status]} {text}{flows}", highlight=False)


def setup(
    ctx: typer.Context,
    pair: Annotated[str, typer.Argument(help="The pair to check, e.g. nav-zoho.")],
    apply: Annotated[bool, typer.Option("--apply", help="Create what the vendors' APIs allow (custom fields and "
                                                        "their uniqueness, custom modules), after showing the "
                                                        "plan; print the manual steps for the rest.")] = False,
) -> None:
    """Check every prerequisite of the pair's flows in its systems (modules and edition, custom fields with their
    type and uniqueness, custom modules, manual steps, notify_url), one line each: ok / missing / wrong / manual,
    with the exact fix. `sync` refuses a flow this finds missing, until setup finds it done.

    Exit 0 when nothing is missing or wrong, 2 otherwise (4 credentials refused, 5 a system unreachable).
    """
    def plan(report: SetupReport) -> None:
        todo = [f for f in report.missing if f.can_apply]
        if todo:
            out.print(f"Plan: {len(todo)} change(s) through the vendors' APIs:", highlight=False)
            for finding in todo:
                out.print(f"  {finding.line()}", highlight=False)

    report = api.setup(runtime(ctx), pair, apply=apply, plan=plan)
    _print(report)
    missing = report.missing
    manual = [f for f in report.findings if f.status == UNCHECKED]
    if report.applied:
        out.print(f"{len(report.applied)} change(s) made.", highlight=False)
    if missing:
        can = sum(1 for f in missing if f.can_apply)
        hint = f"; `mlconnector setup {pair} --apply` makes {can} of them" if can and not apply else ""
        out.print(f"{len(missing)} missing or wrong{hint}. `sync {pair}` refuses the flows that need them.",
                  highlight=False)
    else:
        out.print(f"All checked prerequisites of {pair} are in place"
                  + (f"; {len(manual)} manual step(s) above cannot be checked through an API." if manual else "."),
                  highlight=False)
    raise typer.Exit(EXIT_CONFIG if missing else EXIT_OK)
