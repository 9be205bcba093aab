"""The `mlconnector` command: global options, command groups, and errors turned into exit codes."""


import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from mlconnector import __version__, logs, tenants
from mlconnector.api import Runtime, load_plugins
from mlconnector.cli import alert as alert_cli
from mlconnector.cli import auth as auth_cli
from mlconnector.cli import config_cmd as config_cli
from mlconnector.cli import demo as demo_cmd
from mlconnector.cli import init as init_cmd
from mlconnector.cli import listen as listen_cmd
from mlconnector.cli import mappings as mappings_cmd
from mlconnector.cli import ping as ping_cmd
from mlconnector.cli import prune as prune_cmd
from mlconnector.cli import reconcile as reconcile_cmd
from mlconnector.cli import report
from mlconnector.cli import sandbox as sandbox_cli
from mlconnector.cli import secrets as secrets_cli
from mlconnector.cli import common
from mlconnector.cli import setup as setup_cmd
from mlconnector.cli import sync as sync_cmd
from mlconnector.cli.common import print_error, report_error
from mlconnector.config import load_config
from mlconnector.errors import EXIT_BUG, EXIT_CONFIG, ConfigError, MLConnectorError

EXIT_INTERRUPTED = 130  # Ctrl-C at a prompt or in a command that is not a run

HELP = f"""Keep ERP systems and sales/billing systems in agreement.

{sync_cmd.EXIT_HELP} 1 only for a bug. `status --check` exits 10-14 when something needs a look (see its help)."""


class ErrorsAsExitCodes(TyperGroup):
    """Expected errors become one line on stderr and their exit code; nothing a user does shows a traceback. With
    --json, the error goes to stdout as JSON too."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        common.json_errors = "--json" in argv
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort as exc:
            if isinstance(exc.__context__, EOFError) or isinstance(exc.__cause__, EOFError):
                report_error("no input: standard input ended where a value was asked for; run it in a terminal, "
                             "or give the value as the command's help says", EXIT_CONFIG)
                code = EXIT_CONFIG
            else:
                report_error("aborted", EXIT_INTERRUPTED, prefix="")
                code = EXIT_INTERRUPTED
        except Exception as exc:
            if not _is_click_error(exc):
                raise
            code = exc.exit_code  # type: ignore[attr-defined]
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # type: ignore[attr-defined]  # the help itself, as asked for
            else:
                # Click's usage errors (a bad flag, a value out of range) as one line naming where help is.
                ctx = getattr(exc, "ctx", None)
                where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
                report_error(f"{exc.format_message()}{where}", code)  # type: ignore[attr-defined]
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except MLConnectorError as exc:
            report_error(exc, exc.exit_code)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            # Usage errors (Click's own, exit 2) show themselves; so does anything under MLCONNECTOR_DEBUG.
            if _is_click_error(exc) or os.environ.get("MLCONNECTOR_DEBUG"):
                raise
            report_error(f"internal error (a bug, please report it): {type(exc).__name__}: {exc}. "
                         "Set MLCONNECTOR_DEBUG=1 for the traceback.", EXIT_BUG, prefix="")
            raise typer.Exit(EXIT_BUG) from None


class _ErrorsToStderr(logging.Handler):
    """Errors logged during a command, one line each on the stderr of the moment (not the one a handler found when
    it was made: an embedding program or a test may have swapped it since)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.setFormatter(logging.Formatter("error: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - a closed stream must not turn a log line into a failure
            pass


def _log_format(given: str | None) -> str:
    """--log-format, else $MLCONNECTOR_LOG_FORMAT, else text; the listener's log follows it too."""
    chosen = (given or os.environ.get(logs.LOG_FORMAT_ENV) or "text").strip().lower()
    if chosen not in logs.FORMATS:
        where = "--log-format" if given else logs.LOG_FORMAT_ENV
        raise ConfigError(f"{where} {chosen!r}: use text or json")
    logs.chosen = chosen
    return chosen


def _is_click_error(exc: BaseException) -> bool:
    """Click's own errors (its UsageError and kin), whichever click typer carries (its own copy since 0.17)."""
    return hasattr(exc, "format_message") and hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mlconnector {__version__}")
        raise typer.Exit()


def _kind_from_config(system: str) -> str | None:
    """The kind of a configured system. With a configuration, a system it does not name is refused (a secret
    stored under a misspelt name is never read); without one yet, a name that is itself a kind ("zoho") is that
    kind."""
    try:
        config = load_config(required=False)
    except MLConnectorError:
        return system
    found = config.systems.get(system)
    if found is None and system == "state":
        return "state"  # the state database's password, not a system's
    if found is None and config.systems:
        known = ", ".join(sorted(config.systems))
        raise ConfigError(f"{config.path} has no [systems.{system}] (configured: {known}); check the name, or add "
                          "the system to the file first")
    return found.kind if found else system


def build_app() -> typer.Typer:
    """Build the command tree; `sync` gets one subcommand per registered pair."""
    load_plugins()
    # Locals in tracebacks would print secrets (a token, a client secret) held by some frame: never.
    app = typer.Typer(cls=ErrorsAsExitCodes, help=HELP, no_args_is_help=True, rich_markup_mode=None,
                      pretty_exceptions_show_locals=False)

    @app.callback()
    def main(
        ctx: typer.Context,
        tenant: Annotated[Optional[str], typer.Option("--tenant", help="Work for this tenant: its own config (tenants/NAME/connections.toml), secrets and state (default: $MLCONNECTOR_TENANT; none). See docs/operations.md.")] = None,
        config: Annotated[Optional[Path], typer.Option("--config", help="connections.toml to use (default: $MLCONNECTOR_CONFIG, else ./connections.toml).")] = None,
        state: Annotated[Optional[Path], typer.Option("--state", help="SQLite state file (default: $MLCONNECTOR_STATE_URL, a PostgreSQL database; else [state] url or path in the config; else $MLCONNECTOR_STATE; else the user state dir).")] = None,
        version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
        verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="Log to stderr: -v what happens, -vv every API call.")] = 0,
        log_format: Annotated[Optional[str], typer.Option("--log-format", help="Log lines as text or json (one object a line, with run_id, pair, flow and level); default $MLCONNECTOR_LOG_FORMAT, else text.")] = None,
    ) -> None:
        columns = os.environ.get("COLUMNS")
        if columns is not None and not (columns.strip().isdigit() and int(columns) > 0):
            raise ConfigError(f"COLUMNS={columns!r} is not a width: set it to a whole number of columns "
                              "(e.g. COLUMNS=160) or unset it")
        if tenant is not None:
            # Process-wide, as --config: every default location (config, secrets, state) asks mlconnector.tenants.
            os.environ[tenants.TENANT_ENV] = tenants.check(tenant)
        else:
            tenants.current()  # a bad $MLCONNECTOR_TENANT is one line before anything else
        fmt = _log_format(log_format)
        if not verbose and fmt == "text":
            # The run's own lines tell what went wrong: its log is for -v. Without a handler, Python would print
            # every warning to stderr as well (a stopped run said so twice); errors still show, one line each.
            logging.getLogger("mlconnector").handlers[:] = [_ErrorsToStderr()]
        else:
            # JSON is for a log shipper: warnings and errors even without -v, each a JSON line.
            logging.getLogger("mlconnector").handlers.clear()
            level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
            logging.basicConfig(handlers=[logs.handler(fmt, sys.stderr)], level=level, force=True)
            # httpx logs one line per request at INFO: only with -vv.
            logging.getLogger("httpx").setLevel(logging.INFO if verbose > 1 else logging.WARNING)
        if config:
            os.environ["MLCONNECTOR_CONFIG"] = str(config)
        # Tests (and embedding code) may hand in a Runtime of their own, e.g. with an in-process transport.
        given = ctx.obj if isinstance(ctx.obj, Runtime) else None
        ctx.obj = given or Runtime()
        ctx.obj.config_path, ctx.obj.state_path = config or ctx.obj.config_path, state or ctx.obj.state_path

    secrets_cli.kind_of = _kind_from_config
    app.command("init")(init_cmd.init)
    app.add_typer(config_cli.app, name="config")
    app.add_typer(secrets_cli.app, name="secrets")
    app.command("ping")(ping_cmd.ping)
    app.command("setup")(setup_cmd.setup)
    app.command("mappings")(mappings_cmd.mappings)
    app.add_typer(auth_cli.app, name="auth")
    app.add_typer(sync_cmd.build_sync_app(), name="sync")
    app.command("replay")(sync_cmd.replay)
    app.command("reconcile")(reconcile_cmd.reconcile)
    app.command("audit")(report.audit)
    app.command("status")(report.status)
    app.command("prune")(prune_cmd.prune)
    app.command("listen")(listen_cmd.listen)
    app.add_typer(alert_cli.app, name="alert")
    app.command("demo")(demo_cmd.demo)
    app.add_typer(sandbox_cli.app, name="sandbox")
    return app


def run() -> None:
    """Console-script entry point."""
    try:
        app = build_app()
    except MLConnectorError as exc:
        print_error(exc)
        sys.exit(exc.exit_code if exc.exit_code else EXIT_CONFIG)
    app(prog_name="mlconnector")
