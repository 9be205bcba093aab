"""Test doubles and small tools shared by the test modules."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping

import httpx
import keyring.backend
import keyring.errors


class MemoryKeyring(keyring.backend.KeyringBackend):
    """An OS keyring stand-in that keeps passwords in a dict and counts reads."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}
        self.reads = 0

    def get_password(self, service: str, username: str) -> str | None:
        self.reads += 1
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.passwords.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)


def run_in_threads(count: int, work: Callable[[int], object]) -> list[BaseException]:
    """Start ``count`` threads at the same moment; return what they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            start.wait(timeout=5)
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return errors


class Recording(httpx.BaseTransport):
    """Passes requests to the sandbox, keeps each one, and lets a test answer some itself (faults)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []
        self.intercept: Callable[[httpx.Request], httpx.Response | None] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.intercept is not None:
            answer = self.intercept(request)
            if answer is not None:
                return answer
        return self.inner.handle_request(request)

    def paths(self, prefix: str = "") -> list[str]:
        return [r.url.path for r in self.requests if r.url.path.startswith(prefix)]


def kill_on_progress(procs: Mapping[str, subprocess.Popen], reached: Mapping[str, Callable[[], bool]], *,
                     timeout: float = 60.0, step: float = 0.002) -> set[str]:
    """``kill -9`` each process as soon as its ``reached()`` holds (progress the test observes in the target,
    such as N writes landed), so kills land at the same points of a run on any machine and any interpreter.
    A process that ends first is left to end. Returns the names of those signalled; a run really cut short
    exits -9 (one that ended in the instant between the look and the signal exits as it would have). Bounded:
    after ``timeout`` every process still running is killed and the wait fails, naming those that got nowhere."""
    waiting = dict(procs)
    signalled: set[str] = set()
    deadline = time.monotonic() + timeout
    while waiting:
        for name, proc in list(waiting.items()):
            if proc.poll() is not None:
                del waiting[name]
            elif reached[name]():
                proc.send_signal(signal.SIGKILL)
                signalled.add(name)
                del waiting[name]
        if waiting and time.monotonic() > deadline:
            for proc in waiting.values():
                proc.kill()
            raise AssertionError(f"no kill point reached within {timeout:g} s by {', '.join(sorted(waiting))}")
        if waiting:
            time.sleep(step)
    return signalled


class RoundRobin:
    """A load balancer in front of `listen` replicas: each request goes to the next replica."""

    def __init__(self, apps: list) -> None:
        self.apps, self.sent = apps, 0

    async def __call__(self, scope, receive, send) -> None:
        app = self.apps[self.sent % len(self.apps)]
        self.sent += 1
        await app(scope, receive, send)
