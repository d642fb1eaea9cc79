"""One batch worked on by many processes and machines, through a Redis queue.

Every worker started on the same items (and Redis namespace) joins the same batch, named by the
hash of its items (:func:`batch_id`): the first one enqueues the items, and each worker claims
them one at a time from a Redis Streams consumer group. Each item is submitted under its
idempotency key through a client whose coordinator is a ``RedisCoordinator`` on the same Redis,
so the account's limits are shared too and an item submitted once is never paid for again. A
worker renews the items in hand every third of ``reclaim_after``, however long they run; the
items of a worker that died go idle and are claimed by another after ``reclaim_after`` seconds,
then resumed through their keys (the task it had, or the API's history), never resent blindly.

A Redis blip (a restart, a failover, a freeze) is ridden out: the calls that need Redis are
tried again, with backoff, for up to ``redis_grace`` seconds, then the worker stops with a clear
:class:`CoordinatorUnavailable` (its items wait for another worker). A queue that Redis lost
(restarted without persistence) stops the worker at once: nothing more is claimed, so no item is
paid for again, and the batch is never reported done.

An item that ends without an answer (a wait's deadline, a network failure) is not acked: it is
claimed again after ``reclaim_after`` and resumed through its key. A worker ends when nothing is
pending or running. The command line (``wavespeed-async batch FILE --redis URL``) adds the
arguments, the signals and the display.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import anyio

from .._coordination.link import FAILURES
from .._coordination.queue import QueueItem, QueueStatus, RedisBatchQueue
from .._engine.polling import PollSchedule
from .._engine.ports import BatchClient
from ..errors import CoordinatorUnavailable, PredictionFailed, WaveSpeedError
from .items import BatchEvent, BatchItem, ItemResult, ProgressCallback
from .outcome import FATAL, outcome_of

__all__ = ["REDIS_GRACE", "SharedBatchWorker", "batch_id", "reachable"]

_T = TypeVar("_T")

#: Called with an item's result when it ends without an answer (it is claimed again later).
OnRequeue = Callable[[ItemResult], None]
#: How long a worker tries Redis again before it stops, in seconds.
REDIS_GRACE = 60.0
_MAX_PAUSE = 2.0


def batch_id(items: Sequence[BatchItem]) -> str:
    """The name of a shared batch: the sha256 of its items' canonical JSON (first 32 digits).

    Workers that read the same tasks, in the same order, join the same batch.
    """
    canonical = json.dumps(
        [[item.model, item.input] for item in items],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


@contextlib.contextmanager
def reachable() -> Iterator[None]:
    """Redis's own errors as the library's :class:`CoordinatorUnavailable`."""
    try:
        yield
    except FAILURES as exc:
        raise CoordinatorUnavailable(f"Redis cannot be reached: {exc}") from exc


class SharedBatchWorker:
    """One process's part of a shared batch: ``concurrency`` lanes claiming items.

    ``on_event`` gets the progress events of the items this worker runs; ``on_requeue`` the
    result of an item that ended without an answer (another claim resumes it). :meth:`stop`
    (from a signal handler, say) stops claiming; items in flight are then reclaimed by others.
    ``total`` (the number of items enqueued) lets the worker tell a lost queue from a finished
    batch; ``redis_grace`` is how long it rides out a Redis that fails (see the module doc).
    """

    def __init__(
        self,
        client: BatchClient,
        queue: RedisBatchQueue,
        name: str,
        *,
        concurrency: int,
        reclaim_after: float,
        timeout: float | None = None,
        out: str | Path | None = None,
        poll_schedule: PollSchedule | None = None,
        on_event: ProgressCallback | None = None,
        on_requeue: OnRequeue | None = None,
        total: int | None = None,
        redis_grace: float = REDIS_GRACE,
    ) -> None:
        self.client, self.queue, self.name = client, queue, name
        self.concurrency = concurrency
        self.reclaim_after = reclaim_after
        self.timeout = timeout
        self.out = out
        self.poll_schedule = poll_schedule
        self._on_event = on_event
        self._on_requeue = on_requeue
        self.total = total
        self.redis_grace = redis_grace
        self._down_since: float | None = None  # when Redis began failing (all lanes)
        #: The last attempt's result of each item this worker finished, by index.
        self.results: dict[int, ItemResult] = {}
        #: Items in hand: touched, so that no one reclaims them.
        self.held: dict[int, QueueItem] = {}
        #: Whether :meth:`stop` was called.
        self.stopping = False
        self._failure: WaveSpeedError | None = None
        self._scope: anyio.CancelScope | None = None
        # How often an idle lane looks again: another worker's item may come free.
        self._idle_poll = max(0.05, min(reclaim_after / 4, 1.0))

    def stop(self) -> None:
        """Claim nothing more and end :meth:`run`; the items in hand are reclaimed by others."""
        self.stopping = True
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> list[ItemResult]:
        """Claim and run items until none is pending or running; this worker's results.

        A :data:`~wavespeed_async.batch.outcome.FATAL` error (a wrong key, no balance, Redis
        gone) stops every lane and is raised; the items in hand wait for another worker.
        """
        async with anyio.create_task_group() as group:
            self._scope = group.cancel_scope
            if self.stopping:
                group.cancel_scope.cancel()
            group.start_soon(self._heartbeat)
            async with anyio.create_task_group() as lanes:
                for _ in range(self.concurrency):
                    lanes.start_soon(self._lane, lanes.cancel_scope)
            group.cancel_scope.cancel()
        if self._failure is not None:
            raise self._failure
        return sorted(self.results.values(), key=lambda result: result.index)

    async def status(self) -> QueueStatus | None:
        """The whole batch's counts, or ``None`` when Redis cannot tell now."""
        with contextlib.suppress(CoordinatorUnavailable), reachable():
            return await self.queue.status(self.name)
        return None

    def _emit(self, event: BatchEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    async def _heartbeat(self) -> None:
        """Touch the items in hand: only a dead worker's items go idle, however long they run."""
        while True:
            await anyio.sleep(self.reclaim_after / 3)
            with contextlib.suppress(CoordinatorUnavailable), reachable():
                await self.queue.touch(self.name, list(self.held.values()))

    async def _redis(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """``call()``, tried again while Redis fails, up to ``redis_grace`` seconds of failure."""
        pause = 0.1
        while True:
            try:
                with reachable():
                    result = await call()
            except CoordinatorUnavailable as exc:
                now = time.monotonic()
                if self._down_since is None:
                    self._down_since = now
                since = self._down_since  # another lane may see Redis back meanwhile
                if now - since >= self.redis_grace:
                    raise CoordinatorUnavailable(
                        f"Redis kept failing; this worker gave up after {self.redis_grace:g} s"
                        f" ({exc}). Its items go back to the queue for another worker."
                    ) from None
                await self._check_queue()
                await anyio.sleep(min(pause, max(0.0, since + self.redis_grace - now)))
                pause = min(_MAX_PAUSE, pause * 2)
                continue
            self._down_since = None
            return result

    async def _check_queue(self) -> None:
        """Stop at once if Redis answers but the batch's queue is gone (Redis lost its data)."""
        try:
            with reachable():
                status = await self.queue.status(self.name)
        except CoordinatorUnavailable:
            return  # Redis still fails: the grace decides
        if self.total and status.pending + status.running + status.done + status.failed == 0:
            raise CoordinatorUnavailable(
                f"the shared batch's queue is gone from Redis ({self.total} items were"
                " enqueued): Redis lost its data (restarted without persistence, or failed over"
                " to an empty replica). Nothing more is claimed, so nothing is paid twice;"
                " check the journal or the API's history before starting the batch again"
            )

    async def _lane(self, lanes: anyio.CancelScope) -> None:
        try:
            while not self.stopping:
                claimed = await self._redis(lambda: self.queue.claim(self.name))
                if not claimed:
                    await self._check_queue()
                    status = await self._redis(lambda: self.queue.status(self.name))
                    if status.finished:
                        return
                    await anyio.sleep(self._idle_poll)  # others hold the rest, for now
                    continue
                await self._work(claimed[0])
        except FATAL as exc:  # this worker cannot go on; its items wait for another
            self._failure = exc
            lanes.cancel()

    async def _work(self, queued: QueueItem) -> None:
        item = BatchItem(queued.data["model"], queued.data["input"])
        index = queued.index
        self.held[index] = queued  # until it ends here; if it does not, another worker's
        result = await self._attempt(queued, item)
        del self.held[index]
        self.results[index] = result
        if result.outcome not in ("completed", "failed"):  # not acked: claimed again later
            if self._on_requeue is not None:
                self._on_requeue(result)
            return
        self._emit(
            BatchEvent(
                "completed" if result.ok else "failed",
                index,
                item,
                prediction_id=result.prediction_id,
                error=result.error,
                files=result.files,
            )
        )
        await self._redis(lambda: self.queue.ack(self.name, queued, failed=not result.ok))

    async def _attempt(self, queued: QueueItem, item: BatchItem) -> ItemResult:
        index, task_id = queued.index, None
        try:
            with anyio.CancelScope(shield=True):  # a submit's answer is never abandoned
                # Fails closed while Redis is down (nothing sent): tried again, same key.
                future = await self._redis(
                    lambda: self.client.submit(
                        item.model,
                        item.input,
                        poll_schedule=self.poll_schedule,
                        idempotency_key=queued.idempotency_key,
                    )
                )
            task_id = future.id
            self._emit(BatchEvent("submitted", index, item, prediction_id=task_id))
            future.on_status(
                lambda p: self._emit(
                    BatchEvent("status", index, item, prediction_id=task_id, status=p.status)
                )
            )
            try:
                prediction = await future.wait(self.timeout)
            except BaseException:
                if not future.done():
                    future.cancel()  # frees the running slot; the task goes on, for the next claim
                raise
            out = self.out
            files: tuple[Path | str, ...] = ()
            if out:
                files = (*await self.client.download(prediction, out),)
        except PredictionFailed as exc:
            return ItemResult(index, item, "failed", task_id, exc.prediction, exc)
        except FATAL:
            raise
        except WaveSpeedError as exc:  # the next claim resolves it through the key
            return ItemResult(index, item, outcome_of(exc), task_id, error=exc)
        return ItemResult(index, item, "completed", task_id, prediction, files=files)
