"""`mlconnector config show` and `mlconnector config validate`."""

import json
from typing import Annotated, Any

import typer

from mlconnector import api
from mlconnector.cli.common import out, print_error, print_json, runtime

app = typer.Typer(help="The configuration in effect: show it with where each value came from, or check it offline.",
                  no_args_is_help=True)


@app.command("show")
def show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
) -> None:
    """Print the effective configuration, each value with where it came from (file, default, environment);
    secrets only as set or unset, with the store holding them."""
    found = api.show_config(runtime(ctx))
    if as_json:
        print_json(found)
        return
    say = lambda line: out.print(line, highlight=False, markup=False)  # noqa: E731
    if found["tenant"]:
        say(f"tenant: {found['tenant']}")
    say(f"config: {found['config']['path']} ({found['config']['source']})")
    say(f"state: {found['state']['path']} ({found['state']['source']})")
    say(f"[state] audit_retention_days = {_shown(found['audit_retention_days'])}")
    say(f"[secrets] backend = {_shown(found['secrets_backend'])}")
    for name, system in found["systems"].items():
        say(f"[systems.{name}] kind = {system['kind']}")
        for key, value in system["settings"].items():
            say(f"  {key} = {_shown(value)}")
        for field, secret in system["secrets"].items():
            say(f"  secret {field}: " + (f"set ({secret['source']})" if secret["set"] else
                                         f"unset: run `mlconnector secrets set {name} {field}`"))
    for name, pair in found["pairs"].items():
        say(f"[pairs.{name}]")
        for key, value in pair.items():
            say(f"  {key} = {_shown(value)}")
    alerts = found["alerts"]
    webhook = alerts["webhook"]
    say("[alerts] webhook: " + (f"{webhook['host']}/... ({webhook['source']})" if webhook else "none"))
    for key in ("command", "repeat_hours", "timeout_seconds"):
        say(f"  {key} = {_shown(alerts[key])}")


def _shown(value: dict[str, Any]) -> str:
    return f"{json.dumps(value['value'], default=str)} ({value['source']})"


@app.command("validate")
def validate(ctx: typer.Context) -> None:
    """Check the configuration offline (no system is called): every value, and each pair's systems and flows.
    Exit 0 when it is sound, else 2 with one line per problem."""
    config, problems = api.validate_config(runtime(ctx))
    for problem in problems:
        print_error(problem)
    if problems:
        raise typer.Exit(2)
    out.print(f"ok: {config.path}: {len(config.systems)} system(s), {len(config.pairs)} pair(s)", highlight=False)
