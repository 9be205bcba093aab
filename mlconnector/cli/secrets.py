"""`mlconnector secrets ...`: store, list and delete credentials; create the encrypted-file key."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from mlconnector import tenants
from mlconnector.cli.common import report_error
from mlconnector.errors import ConfigError, MLConnectorError
from mlconnector.secrets import (
    KNOWN_FIELDS,
    SETTABLE_FIELDS,
    BACKENDS,
    GENERATE_KEY_COMMAND,
    MASTER_KEY_ENV,
    SECRETS_FILE_NAME,
    SecretStore,
    default_directory,
    env_var_names,
    BACKEND_ENV,
    DIRECTORY_ENV,
    init_secret_file,
    store_from_environment,
)

app = typer.Typer(help="Store and inspect credentials (kept in the OS keyring, never in config).",
                  no_args_is_help=True)

def _kind_from_name(system: str) -> str | None:
    return system


# system name -> kind ("zoho", "bc", ...). The default treats the name as the kind; the main CLI
# replaces this with a lookup in connections.toml.
kind_of: Callable[[str], str | None] = _kind_from_name


console = Console()

F = TypeVar("F", bound=Callable[..., Any])


def _say(text: str) -> None:
    # Plain text: no markup (paths and names may hold [brackets]) and no wrapping mid-path.
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _directory() -> Path | None:
    value = os.environ.get(DIRECTORY_ENV)
    return Path(value).expanduser() if value else None


def get_store() -> SecretStore:
    """The store the commands use: MLCONNECTOR_SECRETS_BACKEND and MLCONNECTOR_SECRETS_DIR, else the
    [secrets] table of connections.toml, else the OS keyring."""
    from mlconnector.config import load_config

    config = load_config(required=False)
    return store_from_environment(backend=config.secrets_backend, directory=config.secrets_dir)


def _exit_on_error(command: F) -> F:
    """Turn an expected error into one red line on stderr and its exit code, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MLConnectorError as err:
            report_error(err, err.exit_code)  # one line; with --json, JSON on stdout too
            raise typer.Exit(err.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _fields_for(system: str) -> tuple[str, ...]:
    kind = kind_of(system)
    fields = KNOWN_FIELDS.get(kind) if kind else None
    if not fields:
        raise ConfigError(
            f"cannot tell which secrets {system} needs (kind {kind or 'unknown'}): name the field, "
            f"e.g. `mlconnector secrets set {system} client_secret`"
        )
    return fields


@app.command("set")
@_exit_on_error
def set_secret(
    system: Annotated[str, typer.Argument(help="System name, as in connections.toml.")],
    field: Annotated[Optional[str], typer.Argument(
        help="Secret field, e.g. client_secret. Omit it to be asked for every field the system needs.")] = None,
    value_stdin: Annotated[bool, typer.Option(
        "--value-stdin", help="Read the value from stdin (one line per field) instead of prompting.")] = False,
) -> None:
    """Store a secret; the value is asked for without echo (or read from stdin), never shown."""
    kind = kind_of(system)  # a system the configuration does not have is refused here
    allowed = SETTABLE_FIELDS.get(kind or "")
    if field and allowed and field not in allowed:
        raise ConfigError(f"{system} is a {kind} system, which uses {' and '.join(allowed)}, not {field!r}: "
                          f"`mlconnector secrets set {system} {allowed[0]}`")
    store = get_store()
    fields = [field] if field else _fields_for(system)
    location = store.location  # fail before asking for values there is no place to keep
    # Not a terminal (a pipe, cron, /dev/null): the value comes from standard input, with no prompt to echo.
    piped = value_stdin or not sys.stdin.isatty()
    for name in fields:
        if piped:
            if not value_stdin:
                typer.echo(f"{name} for {system}: ", nl=False)  # the prompt, as in a terminal
            value = sys.stdin.readline().rstrip("\r\n")
            if not value_stdin:
                typer.echo()
        else:
            value = typer.prompt(f"{name} for {system}", hide_input=True)
        if not value and piped:
            raise ConfigError(f"no value for {name} of {system} on standard input; nothing stored: pipe it in "
                              f"(printf '%s' \"$VALUE\" | mlconnector secrets set {system} {name}) or run the "
                              "command in a terminal")
        if not value:
            raise ConfigError(f"no value given for {name} of {system}; nothing stored")
        store.set(system, name, value)
        _say(f"stored {name} for {system} in {location}")
        for var in _set_variables(system, name)[:1]:
            _say(f"note: {var} is set and takes precedence over it")


def _set_variables(system: str, field: str) -> list[str]:
    """The environment variables set that provide this secret (the tenant's own first)."""
    return [var for var in env_var_names(system, field, tenants.env_prefix()) if os.environ.get(var)]


@app.command("list")
@_exit_on_error
def list_secrets(
    system: Annotated[Optional[str], typer.Argument(help="Only this system.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show which secrets are set per system and where each comes from (never the values)."""
    store = get_store()
    entries = store.list(system)
    if as_json:
        typer.echo(json.dumps([{"system": e.system, "field": e.field, "source": e.source}
                               for e in entries], indent=2))
        return
    if not entries:
        _say(f"no secrets set{' for ' + system if system else ''} in {store.location}")
        return
    _say(f"secrets in {store.location}:")
    table = Table("system", "field", "source")
    for entry in entries:
        table.add_row(entry.system, entry.field, entry.source)
    console.print(table)


@app.command("delete")
@_exit_on_error
def delete_secrets(
    system: Annotated[str, typer.Argument(help="System name.")],
    field: Annotated[Optional[str], typer.Argument(
        help="Only this field; omit it to delete all of the system's.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete one secret, or all secrets of a system, from the store."""
    store = get_store()
    what = f"{field} of {system}" if field else f"all secrets of {system}"
    if not yes:
        typer.confirm(f"delete {what} from {store.location}?", abort=True)
    deleted = store.delete(system, field)
    if deleted:
        _say(f"deleted {', '.join(deleted)} of {system} from {store.location}")
    else:
        _say(f"nothing to delete: no {what} in {store.location}")
    for name in [field] if field else []:
        for var in _set_variables(system, name)[:1]:
            _say(f"note: {var} is still set and still provides it")


@app.command("init-file")
@_exit_on_error
def init_file(
    directory: Annotated[Optional[Path], typer.Option(
        "--dir", help=f"Directory for the key and encrypted file (default: ${DIRECTORY_ENV} or "
                      "the user config dir; for a tenant, its tenants/NAME folder there).")] = None,
) -> None:
    """Create the key for the encrypted secrets file, for hosts without an OS keyring (e.g. cron)."""
    directory = directory or tenants.below(_directory() or default_directory())  # a tenant's key in its folder
    key_file = init_secret_file(directory)
    lines = [
        f"created key file {key_file} (mode 0600)",
        f"where no OS keyring is available, secrets now go to {directory / SECRETS_FILE_NAME}, "
        "encrypted with this key; back the key up, the file cannot be read without it",
        f"to use the file even where a keyring exists, set {BACKEND_ENV}=file",
        f"alternative to a key file: set {MASTER_KEY_ENV} to a key made with `{GENERATE_KEY_COMMAND}` "
        "(it takes precedence over the key file)",
    ]
    for line in lines:
        _say(line)
