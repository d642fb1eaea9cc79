"""What a client costs the process that runs it, measured from inside: loop stalls, objects.

Used by the scaling and ultra probes (each runs in a fresh interpreter).
"""

from __future__ import annotations

import asyncio
import gc
import math
from collections.abc import Awaitable, Callable
from typing import Any

#: The ticker's nap: a loop stall is how late it wakes from it.
TICK = 0.010


class Ticker:
    """A task that sleeps :data:`TICK` seconds, again and again, and keeps its worst lateness.

    :meth:`pause` and :meth:`resume` bracket what the harness itself blocks the loop for (an
    object census): the nap that spans it is not counted.
    """

    def __init__(self) -> None:
        self.worst = 0.0
        self.ticks = 0
        self._generation = 0
        self._paused = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start ticking on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    def pause(self) -> None:
        """Stop counting (the loop is about to be blocked on purpose)."""
        self._paused = True

    def resume(self) -> None:
        """Count again, from the next nap on."""
        self._paused = False
        self._generation += 1

    async def stop(self) -> float:
        """Stop ticking; return the worst lateness seen (seconds)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return self.worst

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            generation, slept_at = self._generation, loop.time()
            await asyncio.sleep(TICK)
            late = loop.time() - slept_at - TICK
            if not self._paused and generation == self._generation:
                self.worst = max(self.worst, late)
                self.ticks += 1


def census() -> int:
    """How many objects the collector tracks, after a full collection."""
    gc.collect()
    return len(gc.get_objects())


async def hold_until(
    done: Callable[[], bool], tasks: list[asyncio.Task[Any]], poll: float = 0.05
) -> None:
    """Wait until ``done()``; a task that ends on its way there is an error."""
    while not done():
        await asyncio.sleep(poll)
        ended = [task for task in tasks if task.done()]
        if ended:
            error = ended[0].exception() if not ended[0].cancelled() else "cancelled"
            raise RuntimeError(f"{len(ended)} predictions ended early: {error}")


async def timed_close(close: Callable[[], Awaitable[None]]) -> float:
    """Seconds ``close()`` takes, on the loop's clock."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await close()
    return loop.time() - started


def per(value: float, count: int) -> float:
    """``value / count``, or NaN for nothing counted."""
    return value / count if count else math.nan
