"""The emulators' background work (notification POSTs): ``drain`` waits all of it out, and cannot spin."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from mlconnector.sandbox.background import BackgroundTasks


def run_bounded(scenario: Callable[[], Coroutine[Any, Any, Any]], seconds: float = 10.0) -> Any:
    """Run ``scenario`` on a loop of its own in a thread: a loop that never yields cannot be interrupted from
    inside, so the bound is kept from outside."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = asyncio.run(scenario())
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: the loop spins"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_drain_returns_when_the_tasks_are_done_before_their_callbacks_have_run():
    async def scenario() -> int:
        tasks = BackgroundTasks()
        finished = asyncio.get_running_loop().create_task(asyncio.sleep(0))
        await finished
        tasks.add(finished)  # done already: the callback that would drop it is only scheduled
        await tasks.drain()
        return len(tasks)

    assert run_bounded(scenario) == 0


def test_drain_waits_for_the_tasks_and_for_what_they_start():
    async def scenario() -> list[str]:
        tasks = BackgroundTasks()
        loop = asyncio.get_running_loop()
        done: list[str] = []

        async def second() -> None:
            await asyncio.sleep(0.02)
            done.append("second")

        async def first() -> None:
            await asyncio.sleep(0.01)
            tasks.add(loop.create_task(second()))
            done.append("first")

        async def fails() -> None:
            raise RuntimeError("delivery failed")

        tasks.add(loop.create_task(first()))
        tasks.add(loop.create_task(fails()))
        await tasks.drain()
        assert len(tasks) == 0
        return done

    assert run_bounded(scenario) == ["first", "second"]
