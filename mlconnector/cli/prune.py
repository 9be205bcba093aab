"""`mlconnector prune`: old audit rows, processed notifications and runs deleted; the state file kept small."""

from dataclasses import asdict
from typing import Annotated, Optional

import typer

from mlconnector import api
from mlconnector.cli.common import out, print_json, runtime


def prune(
    ctx: typer.Context,
    older_than: Annotated[Optional[int], typer.Option("--older-than", min=1, max=36_600, help="Days to keep (default: [state] audit_retention_days, 90).")] = None,
    vacuum: Annotated[bool, typer.Option("--vacuum", help="Also give the freed space back to the disk (rewrites the file: run it when no sync runs).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was deleted as JSON.")] = False,
) -> None:
    """Delete audit rows, processed notifications and runs older than the retention (each pair's last sync stays).

    Every sync prunes a little as it goes; this does all of it at once.
    """
    result = api.prune(runtime(ctx), days=older_than, vacuum=vacuum)
    if as_json:
        print_json(asdict(result))
        return
    d = result.deleted
    out.print(f"deleted {d['audit']} audit row(s), {d['inbox']} processed notification(s) and {d['runs']} run(s) "
              f"from before {result.before:%Y-%m-%d %H:%M} UTC; state file {result.bytes / 1e6:.1f} MB"
              f" ({result.free_bytes / 1e6:.1f} MB free for new rows)", highlight=False)
