"""`mlconnector alert test` and `mlconnector alert failed PAIR`: try the [alerts] set-up; report a failure seen from
outside (systemd's OnFailure=)."""

from typing import Annotated

import typer

from mlconnector import api
from mlconnector.cli.common import out, print_error, runtime

app = typer.Typer(help="Alerts ([alerts] in connections.toml): try them, or raise one from a systemd unit.",
                  no_args_is_help=True)


@app.command("test")
def test(ctx: typer.Context) -> None:
    """Send a test alert to the command and/or webhook [alerts] names. Exit 0 when every one took it, else 5."""
    problems = api.send_test_alert(runtime(ctx))
    for problem in problems:
        print_error(problem)
    if problems:
        raise typer.Exit(5)
    out.print("test alert sent", highlight=False)


@app.command("failed")
def failed(
    ctx: typer.Context,
    pair: Annotated[str, typer.Argument(help="The pair whose run failed.")],
    detail: Annotated[str, typer.Option("--detail", help="What failed, for the alert's text.")] = "its sync unit failed",
) -> None:
    """Alert that a pair's run failed (for a systemd OnFailure= unit: a run killed outright cannot say so itself).

    The pair's incident is the one its failed runs open: alerted once, and settled by its next good run.
    """
    sent = api.alert_failed(runtime(ctx), pair, detail)
    out.print("alert sent" if sent else "not sent: the incident was alerted already (or [alerts] is not set up)",
              highlight=False)
