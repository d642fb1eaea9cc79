"""One poll engine per client: a timer heap and a few workers check every future's task.

A future that someone awaits is *watched*: it has a due time in one heap. One timer (a
``loop.call_at`` handle, re-armed for the earliest due time) moves due futures to a ready
heap, and at most ``workers`` tasks take them from there and send the checks through the
client's shared pool. There is no task, timer or sleep per future: a future in flight costs
a heap entry and its waiters' own futures.

With a request budget (``max_checks_per_second``) the ready heap is ordered by how likely each
task is to be finished (time since submit over its model's expected duration), so that the
checks the budget allows go where they are most likely to find a result.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import attrs

from ..errors import ClientClosed, WaveSpeedError

if TYPE_CHECKING:
    from .._telemetry import PredictionTrace
    from .._wire.models import Prediction

__all__ = ["PollEngine", "Pollable", "TokenBucket"]

log = logging.getLogger(__name__)

#: Due times closer than this are served by one timer tick (fewer wake-ups at 10,000 futures).
_TICK = 0.005


class TokenBucket:
    """At most ``rate`` events per second, in bursts of at most ``burst`` (pure arithmetic)."""

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        if not rate > 0:
            raise ValueError(f"max_checks_per_second must be > 0, got {rate!r}")
        self.rate = rate
        self.burst = max(1.0, burst)
        self._tokens = self.burst
        self._updated: float | None = None

    def take(self, now: float) -> float:
        """Take one token at time ``now``; return how long to wait before using it."""
        if self._updated is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class Pollable(Protocol):
    """What the engine needs of a watched future (the future's side of the polling)."""

    @property
    def id(self) -> str:
        """The task id to check."""
        ...

    def done(self) -> bool:
        """Whether the task is terminal (the engine stops polling it)."""
        ...

    def next_due(self) -> float:
        """Loop time of the next check, after a check."""
        ...

    def likelihood(self, now: float) -> float:
        """How likely the task is finished by ``now`` (orders checks under a budget)."""
        ...

    def checked(self, prediction: Prediction) -> None:
        """A check's answer."""
        ...

    def fail(self, error: BaseException) -> None:
        """A check failed for good: wake the waiters with ``error``."""
        ...

    @property
    def trace(self) -> PredictionTrace:
        """The prediction's trace: current while its check is sent (retries land on it)."""
        ...


@attrs.define
class _Entry:
    """The engine's own bookkeeping of one watched future."""

    due: float = 0.0
    checking: bool = False


class PollEngine:
    """Schedules and sends the result checks of every watched future of one client."""

    def __init__(
        self,
        check: Callable[[str], Awaitable[Prediction]],
        *,
        workers: int,
        max_checks_per_second: float | None = None,
    ) -> None:
        self._check = check
        self._max_workers = max(1, workers)
        self._bucket = TokenBucket(max_checks_per_second) if max_checks_per_second else None
        self._due: list[tuple[float, int, Pollable]] = []
        self._ready: list[tuple[float, int, Pollable]] = []
        self._seq = itertools.count()
        self._watched: dict[Pollable, _Entry] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._idle: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._in_flight = 0

    @property
    def watched(self) -> int:
        """How many futures are being polled (someone awaits them)."""
        return len(self._watched)

    @property
    def in_flight(self) -> int:
        """How many checks are queued or under way."""
        return self._in_flight

    def watch(self, future: Pollable, due: float) -> None:
        """Poll ``future`` from loop time ``due`` on, until it is done or :meth:`unwatch`."""
        if self._closed:
            raise ClientClosed("the client is closed", prediction_id=future.id)
        self._loop = self._loop or asyncio.get_running_loop()
        self._watched.setdefault(future, _Entry())
        self.schedule(future, due)

    def unwatch(self, future: Pollable) -> None:
        """Stop polling ``future`` (its heap entries go stale and are dropped when due)."""
        self._watched.pop(future, None)
        if not self._watched:  # let idle workers end: nothing lingers while nothing is polled
            while self._idle:
                idle = self._idle.pop()
                if not idle.done():
                    idle.set_result(None)

    def schedule(self, future: Pollable, due: float) -> None:
        """Set the next check of a watched future."""
        entry = self._watched.get(future)
        if entry is None:
            return
        entry.due = due
        heapq.heappush(self._due, (due, next(self._seq), future))
        if self._timer is None or due < self._timer_at - _TICK:
            self._arm(due)

    def _arm(self, due: float) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = self._loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        assert self._loop is not None
        self._timer = None
        now = self._loop.time() + _TICK
        due, ready = self._due, self._ready
        while due and due[0][0] <= now:
            at, seq, future = heapq.heappop(due)
            entry = self._watched.get(future)
            if entry is None or at != entry.due or entry.checking:
                continue  # stale: rescheduled, unwatched, or its check is under way
            entry.checking = True
            self._in_flight += 1
            heapq.heappush(ready, (self._priority(future, at), seq, future))
        if due:
            self._arm(due[0][0])
        self._dispatch()

    def _priority(self, future: Pollable, at: float) -> float:
        if self._bucket is None:
            return at  # first due, first checked
        return -future.likelihood(at)  # most likely finished first

    def _dispatch(self) -> None:
        """Wake an idle worker per ready check, and start workers up to the limit."""
        waiting = len(self._ready)
        while waiting and self._idle:
            idle = self._idle.pop()
            if not idle.done():
                idle.set_result(None)
                waiting -= 1
        assert self._loop is not None
        while waiting > 0 and len(self._workers) < self._max_workers:
            worker = self._loop.create_task(self._work())
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
            waiting -= 1

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not self._ready:
                if not self._watched:
                    return  # nothing left to poll: no task lingers
                idle = loop.create_future()
                self._idle.append(idle)
                await idle
                continue
            _, _, future = heapq.heappop(self._ready)
            if future not in self._watched:
                self._in_flight -= 1
                continue
            if self._bucket is not None:
                delay = self._bucket.take(loop.time())
                if delay > 0:
                    await asyncio.sleep(delay)
            await self._check_one(future)

    async def _check_one(self, future: Pollable) -> None:
        try:
            with future.trace.current():
                prediction = await self._check(future.id)
        except WaveSpeedError as error:
            self._in_flight -= 1
            self._done_checking(future)
            error.prediction_id = error.prediction_id or future.id
            self.unwatch(future)
            future.fail(error)  # this future's waiters only
            return
        self._in_flight -= 1
        self._done_checking(future)
        future.checked(prediction)
        if future.done():
            self.unwatch(future)
        elif future in self._watched:
            self.schedule(future, future.next_due())

    def _done_checking(self, future: Pollable) -> None:
        entry = self._watched.get(future)
        if entry is not None:
            entry.checking = False

    async def aclose(self) -> None:
        """Stop every worker and timer; wake every waiter with :class:`ClientClosed`."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        watched, self._watched = self._watched, {}
        for future in watched:
            future.fail(
                ClientClosed("the client was closed while waiting", prediction_id=future.id)
            )
        workers = list(self._workers)
        for worker in workers:
            worker.cancel()
        if workers:
            await asyncio.wait(workers)
        self._due.clear()
        self._ready.clear()
