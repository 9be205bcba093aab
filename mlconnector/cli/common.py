"""What every command shares: the runtime from global options, consoles, JSON output, date parsing."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import typer
from rich.console import Console

from mlconnector.api import Runtime
from mlconnector.clock import parse_iso, utcnow
from mlconnector.errors import ConfigError



def _columns() -> int:
    """COLUMNS when it is a usable width, else 160: piped output (cron mail, log files) gets wide tables rather than
    rows wrapped at 80 columns, and a COLUMNS that is not a width is not worth failing for."""
    try:
        width = int(os.environ.get("COLUMNS", "160"))
    except ValueError:
        return 160
    return width if 20 <= width <= 10_000 else 160


# Results go to stdout; progress, warnings and errors to stderr. Rich honours NO_COLOR and non-TTYs.
_PIPE_WIDTH = _columns()
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else _PIPE_WIDTH)
err = Console(stderr=True, width=None if sys.stderr.isatty() else _PIPE_WIDTH)

# Set for commands run with --json: their errors go to stdout as JSON too, for the program reading it.
json_errors = False


def print_error(message: object, prefix: str = "error: ") -> None:
    """One red line on stderr, never wrapped (cron mail and log greps see it whole); the message is plain text
    ([brackets] and `code` are not markup)."""
    err.print(f"{prefix}{message}", style="red", markup=False, highlight=False, soft_wrap=True)


def report_error(message: object, exit_code: int, prefix: str = "error: ") -> None:
    """An error that ends the command: one line on stderr and, with --json, ``{"error", "exit_code"}`` on stdout."""
    print_error(message, prefix)
    if json_errors:
        sys.stdout.write(json.dumps({"error": str(message), "exit_code": exit_code}) + "\n")
        sys.stdout.flush()


def runtime(ctx: typer.Context) -> Runtime:
    root = ctx.find_root()
    if not isinstance(root.obj, Runtime):
        root.obj = Runtime()
    return root.obj


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def parse_since(value: str | None, option: str = "--since") -> datetime | None:
    """An ISO date or date-time; without a zone it is taken as UTC."""
    if not value:
        return None
    parsed = parse_iso(value)
    if parsed is None:
        raise ConfigError(f"{option} {value!r} is not an ISO date or date-time (e.g. 2026-01-31 or "
                          "2026-01-31T08:00:00Z)")
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    # Reads go back from it (overlaps, whole days): a date near year 1 would overflow there.
    if not EARLIEST <= parsed <= utcnow() + timedelta(days=1):
        raise ConfigError(f"{option} {value!r}: give a time from {EARLIEST:%Y-%m-%d} to now (everything: --full)"
                          if option == "--since" else f"{option} {value!r}: give a time from "
                          f"{EARLIEST:%Y-%m-%d} to now")
    return parsed


EARLIEST = datetime(1900, 1, 1, tzinfo=timezone.utc)
