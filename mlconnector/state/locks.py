"""The run lock of a pair beside a SQLite state file: a lock file (``state.db.PAIR.lock``), for runs on this host."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from mlconnector.errors import ConfigError, LockHeld


def pair_lock_file(state_path: Path, pair: str) -> Path:
    return state_path.with_name(f"{state_path.name}.{pair}.lock")


@contextmanager
def file_pair_lock(state_path: Path, pair: str) -> Iterator[None]:
    """A second run fails at once (within a fraction of a second: `status` takes the lock for an instant to see
    whether a run is alive)."""
    _check_lock_can_be_taken(state_path, pair)
    lock = FileLock(str(pair_lock_file(state_path, pair)))
    try:
        lock.acquire(timeout=0.2)
    except Timeout:
        raise LockHeld(f"another run of {pair} is in progress (lock {lock.lock_file}); "
                       "this run exits without doing anything") from None
    try:
        yield
    finally:
        lock.release()


def _check_lock_can_be_taken(path: Path, pair: str) -> None:
    """The pair's lock file goes next to the state file: a directory that cannot be written is the operator's to
    fix (exit 2), not another run holding the lock (75) nor a bug."""
    lock = pair_lock_file(path, pair)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(lock, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as exc:
        raise ConfigError(f"state file {path}: its directory {lock.parent} cannot be written ({exc.strerror or exc}); "
                          "fix its permissions, or pass --state PATH to use another") from None


def file_lock_held(state_path: Path, pair: str) -> bool:
    lock = FileLock(str(pair_lock_file(state_path, pair)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return False  # no lock can be taken there (a read-only directory): no run is writing either
    lock.release()
    return False
