"""`mlconnector ping`: is each system reachable, and do our credentials work there?"""


from dataclasses import asdict
from typing import Annotated, Optional

import typer

from mlconnector import api
from mlconnector.cli.common import out, print_json, runtime
from mlconnector.errors import EXIT_AUTH, EXIT_OK, EXIT_UNREACHABLE


def ping(
    ctx: typer.Context,
    system: Annotated[Optional[str], typer.Argument(help="A system name from connections.toml (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Check reachability, credentials and edition/permissions, one line per system.

    Exit 0 when all are fine, 4 when credentials were refused, 5 when a system could not be reached.
    """
    results = api.ping(runtime(ctx), system)
    if as_json:
        print_json([asdict(r) for r in results])
    for result in results if not as_json else []:
        mark = "[green]ok[/]" if result.ok else "[red]FAILED[/]"
        line = f"{mark} {result.system} {result.base_url}".rstrip()
        if result.details:
            line += " — " + "; ".join(result.details)
        out.print(line)
        for warning in result.warnings:
            out.print(f"   [yellow]warning:[/] {warning}")
        if result.error:
            out.print(f"   [red]{result.error}")
    codes = [r.exit_code or EXIT_UNREACHABLE for r in results if not r.ok]
    # Credentials refused anywhere is the more actionable news, so it wins over unreachable.
    raise typer.Exit(EXIT_AUTH if EXIT_AUTH in codes else max(codes, default=EXIT_OK))
