"""What every command shares: the runtime from global options, consoles, JSON output, date parsing."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from typing import Any

import typer
from rich.console import Console

from mlconnector.api import Runtime
from mlconnector.errors import ConfigError

# Results go to stdout; progress, warnings and errors to stderr. Rich honours NO_COLOR and non-TTYs.
# Piped output (cron mail, log files) gets wide tables rather than rows wrapped at 80 columns.
_PIPE_WIDTH = int(os.environ.get("COLUMNS", 160))
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else _PIPE_WIDTH)
err = Console(stderr=True, width=None if sys.stderr.isatty() else _PIPE_WIDTH)


def print_error(message: object, prefix: str = "error: ") -> None:
    """One red line on stderr, never wrapped (cron mail and log greps see it whole); the message is plain text
    ([brackets] and `code` are not markup)."""
    err.print(f"{prefix}{message}", style="red", markup=False, highlight=False, soft_wrap=True)


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
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{option} {value!r} is not an ISO date or date-time (e.g. 2026-01-31 or "
                          "2026-01-31T08:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
