"""What every part of the state file shares: time as stored, where the file lives, the errors it raises, and
the lock its threads take turns on."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timezone
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import platformdirs

from mlconnector import tenants
from mlconnector.errors import ConfigError

STATE_ENV = "MLCONNECTOR_STATE"
MAX_ROWS_PER_STATEMENT = 500


class StateFileReplaced(ConfigError):
    """The state file a run opened was deleted or replaced while it ran."""


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:  # most values are UTC already: no conversion then
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored")
        value = value.astimezone(timezone.utc)
    return value.isoformat(timespec="microseconds")


def parse_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def default_state_path() -> Path:
    """$MLCONNECTOR_STATE, else the platform's user state dir; for a tenant, its own file in that folder
    (``tenants/NAME/state.db``), so tenants sharing a host and its environment never share a state."""
    if os.environ.get(STATE_ENV):
        return tenants.file_below(Path(os.environ[STATE_ENV]))
    return tenants.file_below(Path(platformdirs.user_state_dir("mlconnector")) / "state.db")


def host_state_dir() -> Path:
    """The state file's folder as it is without a tenant ($MLCONNECTOR_STATE's, else the user state dir): where
    what every tenant on this host shares is kept (Zoho's mints per refresh token)."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV]).parent
    return Path(platformdirs.user_state_dir("mlconnector"))



_F = TypeVar("_F", bound=Callable[..., Any])


def _serialized(method: _F) -> _F:
    """Runs the method holding the state's lock: a run records batches on one thread while it prepares the next
    on another, and a read must not land inside the other thread's transaction half done."""
    @wraps(method)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)
    return locked  # type: ignore[return-value]
