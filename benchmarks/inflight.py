"""What a client costs the process that runs it, measured from inside: loop stalls, objects.

Used by the scaling and ultra probes (each runs in a fresh interpreter).
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Awaitable, Callable

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


class GcPauses:
    """The longest and the total pause of the cyclic garbage collector while installed (s).

    A full collection walks every tracked object of the process: with tens of thousands of
    predictions in flight it is what the loop's worst stalls are made of, so the probes
    report both. Collections the harness asks for (:func:`census`) are not counted.
    """

    def __init__(self) -> None:
        self.worst = self.total = 0.0
        self.worst_generation = -1
        self.counting = True
        self._started = 0.0

    def install(self) -> GcPauses:
        """Start timing collections."""
        gc.callbacks.append(self._on_gc)
        return self

    def remove(self) -> None:
        """Stop timing collections."""
        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        if self.counting:
            self.total += pause
            if pause > self.worst:
                self.worst, self.worst_generation = pause, info["generation"]


def census() -> int:
    """How many objects the collector tracks, after a full collection."""
    gc.collect()
    return len(gc.get_objects())


async def timed_close(close: Callable[[], Awaitable[None]]) -> float:
    """Seconds ``close()`` takes, on the loop's clock."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await close()
    return loop.time() - started


def per(value: float, count: int) -> float:
    """``value / count``, or NaN for nothing counted."""
    return value / count if count else math.nan
