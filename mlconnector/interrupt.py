"""Stopping a run on SIGTERM or SIGINT: the first signal asks it to stop reading and sending, lets the writes in
flight end and records them; a second one ends the process at once.

One request per process (signals are per process): the engine checks it between batches and before each write
goes out, and the HTTP layer stops retrying once it is set, so a run told to stop ends within one HTTP timeout.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_requested = threading.Event()
_signal: int | None = None


def requested() -> int | None:
    """The number of the signal that asked the run to stop, or None."""
    return _signal if _requested.is_set() else None


def request(signum: int) -> None:
    """Ask the run to stop (what the first signal does; tests call it directly)."""
    global _signal
    if not _requested.is_set():
        _signal = signum
        _requested.set()


def reset() -> None:
    global _signal
    _signal = None
    _requested.clear()


def pause(seconds: float) -> None:
    """Sleep, waking at once when a stop is requested (a retry's wait must not hold the stop up)."""
    _requested.wait(max(0.0, seconds))


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code(signum: int) -> int:
    """128 + the signal's number, as shells report a process a signal ended: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


@contextmanager
def stop_on_signals(at_once: Callable[[int], str] | None = None) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT ask the run to stop (``request``) instead of killing the process; a second
    signal prints ``at_once(signum)`` (one line) to stderr and ends the process at once with 128 + its number.
    Outside the main thread (signals cannot be caught there) nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reset()

    def handle(signum: int, _frame: Any) -> None:
        if _requested.is_set():
            if at_once is not None:
                try:
                    sys.stderr.write(at_once(signum) + "\n")
                    sys.stderr.flush()
                except Exception:  # noqa: BLE001 - nothing may keep a second Ctrl-C from ending the process
                    pass
            os._exit(exit_code(signum))
        request(signum)

    # A signal the process was started ignoring (SIGINT for a shell's background job, nohup) stays ignored.
    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGTERM, signal.SIGINT)
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
