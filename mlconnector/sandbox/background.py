"""Work an emulator starts on its event loop and does not await (notification and callback POSTs): kept
referenced while it runs, and waited out by ``drain``."""

from __future__ import annotations

import asyncio
from typing import Any


class BackgroundTasks:
    """The tasks started on one event loop that have not finished yet."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Task[Any]] = set()

    def add(self, task: asyncio.Task[Any]) -> None:
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def __len__(self) -> int:
        return len(self._pending)

    async def drain(self) -> None:
        """Return once every task started so far, and every task those started, has finished (on the loop
        that runs them)."""
        # Each round waits for the tasks pending now and then drops them itself, so every round shrinks the set
        # and the loop ends once no new work is started. Leaving the dropping to the done-callbacks spins: since
        # Python 3.12 gathering tasks that are all done completes without yielding to the loop, so the callbacks
        # (scheduled on that loop) never run and the set never empties.
        while self._pending:
            batch = set(self._pending)
            await asyncio.wait(batch)
            self._pending -= batch
            for task in batch:  # a failure is the delivery's own record; retrieved, so the loop does not log it
                if not task.cancelled():
                    task.exception()
