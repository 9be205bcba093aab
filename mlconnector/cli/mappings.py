"""`mlconnector mappings PAIR [--flow F] [--json]`: the effective mapping table, so an operator sees exactly what
moves, and from where each line comes (the pair's own, or the configuration's)."""

from typing import Annotated, Optional

import typer
from rich.table import Table

from mlconnector import api
from mlconnector.cli.common import out, print_json, runtime


def mappings(
    ctx: typer.Context,
    pair: Annotated[str, typer.Argument(help="The pair, e.g. nav-zoho.")],
    flow: Annotated[Optional[str], typer.Option("--flow", help="Only this flow.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print what each flow writes, field by field: target field, where its value comes from, its transforms, and
    whether the line is the pair's own or from [pairs.PAIR.mappings.FLOW] in the configuration (checked as a run
    checks it: a wrong line exits 2). Calls no system."""
    lines = api.mappings(runtime(ctx), pair, flow=flow)
    if as_json:
        print_json([line.to_dict() for line in lines])
        return
    table = Table("flow", "target field", "source", "transforms", "from", box=None, pad_edge=False)
    for line in lines:
        origin = line.origin if not line.change or line.change == "key" else f"{line.origin} ({line.change})"
        table.add_row(line.flow, line.target, line.source, ", ".join(line.transforms), origin)
    out.print(table)
