"""``wavespeed-async batch FILE --redis URL``: one batch, worked on by many machines.

Every worker started on the same file (and Redis namespace) joins the same batch, named by
the hash of its items: the first one enqueues the items, and each worker claims them one at
a time from a Redis Streams consumer group. Each item is submitted under its idempotency key
through a client whose coordinator is a ``RedisCoordinator`` on the same Redis, so the
account's limits are shared too and an item submitted once is never paid for again. A worker
renews the items in hand every third of ``--reclaim-after``, however long they run; the items
of a worker that died go idle and are claimed by another after ``--reclaim-after`` seconds,
then resumed through their keys (the task it had, or the API's history), never resent blindly.

An item that ends without an answer (a wait's deadline, a network failure) is not acked: it
is claimed again after ``--reclaim-after`` and resumed through its key. A worker exits when
nothing is pending or running; ``--status`` prints the whole batch's counts.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs

from .._coordination.queue import QueueItem, QueueStatus, RedisBatchQueue
from .._coordination.redis import UNREACHABLE, RedisCoordinator, connect
from .._engine.polling import PollSchedule
from .._wire.models import ImageEdit
from ..batch.items import BatchEvent, BatchItem, ItemResult
from ..client import API_KEY_ENV, BASE_URL_ENV, AsyncWaveSpeed
from ..errors import (
    AuthenticationError,
    ConfigurationError,
    CoordinatorUnavailable,
    InsufficientBalance,
    InvalidInput,
    InvalidRequest,
    NotFound,
    PredictionFailed,
    SubmissionUncertain,
    WaveSpeedError,
)
from .batch import item_json, outcome_counts, read_batch_file
from .progress import Display, make_display, print_summary, reason

__all__ = ["batch_id", "run_shared_batch"]

#: Errors about the whole run, not one item: the worker stops (its items are reclaimed).
FATAL = (AuthenticationError, InsufficientBalance, ConfigurationError, CoordinatorUnavailable)
#: A submit refused outright: sending it again changes nothing, so the item failed.
REJECTED = (InvalidInput, InvalidRequest, NotFound)

OpenClient = Callable[..., contextlib.AbstractAsyncContextManager[tuple[AsyncWaveSpeed, float]]]
MakeSchedule = Callable[[float], PollSchedule | None]


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


def _check(args: argparse.Namespace, items: Sequence[BatchItem]) -> None:
    """The options and items a shared batch cannot take, refused before anything starts."""
    if args.redis is None:
        raise InvalidInput("--status", True, "given with --redis URL (the shared batch's Redis)")
    if not args.reclaim_after > 0:
        raise InvalidInput("--reclaim-after", args.reclaim_after, "a number of seconds above 0")
    for option, given in (
        ("--journal", args.journal and str(args.journal)),
        ("--retry-failed", args.retry_failed or None),
        ("--max-cost", args.max_cost),
    ):
        if given is not None:
            raise InvalidInput(option, given, "left out with --redis (Redis keeps the progress)")
    if args.status:
        return
    if not (
        os.environ.get(API_KEY_ENV, "").strip() or args.base_url or os.environ.get(BASE_URL_ENV)
    ):
        raise InvalidInput(
            "--redis",
            "the embedded emulator",
            f"used with a shared API: set {API_KEY_ENV} or --base-url (an embedded emulator"
            " belongs to one process)",
        )
    for item in items:
        image = item.input.get("image")
        if item.model == ImageEdit.model_id and isinstance(image, str) and Path(image).is_file():
            # Each upload gets a new URL: a reclaimed item would not match its first submit.
            raise InvalidInput("image", image, "a URL or a data URI with --redis, not a local file")


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    """Redis's own errors as the library's."""
    try:
        yield
    except UNREACHABLE as exc:
        raise CoordinatorUnavailable(f"Redis cannot be reached: {exc}") from exc


async def run_shared_batch(
    args: argparse.Namespace, open_client: OpenClient, make_schedule: MakeSchedule
) -> int:
    """Work on the shared batch of ``args.file`` (or print its counts with ``--status``).

    ``open_client(args, coordinator=...)`` opens the client; ``make_schedule(scale)`` gives
    the poll schedule. Exit status: 0 if every item this worker finished completed, 1 if
    not, 130 on Ctrl-C.
    """
    items, lines = read_batch_file(args.file)
    _check(args, items)
    name = batch_id(items)
    redis_client = connect(args.redis)
    try:
        queue = RedisBatchQueue(
            redis_client, namespace=args.namespace, idle_timeout=args.reclaim_after
        )
        if args.status:
            with _reachable():
                status = await queue.status(name)
            _print_status(args, name, len(items), status)
            return 0
        with _reachable():  # whoever is first; before the API is touched
            added = await queue.enqueue_once(
                name, [{"model": i.model, "input": i.input} for i in items]
            )
        print(
            f"batch {name}: {len(items)} tasks from {args.file}"
            f" ({'enqueued now' if added else 'joined'}), worker {queue.consumer},"
            f" at most {args.concurrency} at once",
            file=sys.stderr,
        )
        coordinator = RedisCoordinator(args.redis, namespace=args.namespace, client=redis_client)
        async with open_client(args, coordinator=coordinator) as (client, scale):
            return await _Worker(args, client, queue, name, lines, make_schedule(scale)).run()
    finally:
        await redis_client.aclose()


def _print_status(args: argparse.Namespace, name: str, total: int, status: QueueStatus) -> None:
    enqueued = status.pending + status.running + status.done + status.failed > 0
    counts = attrs.asdict(status) if enqueued else {"pending": total, "running": 0, "done": 0}
    counts.setdefault("failed", 0)
    if args.json:
        print(json.dumps({"batch": name, "total": total, "enqueued": enqueued, **counts}))
        return
    state = "" if enqueued else " (no worker has started it yet)"
    listed = ", ".join(f"{count} {what}" for what, count in counts.items())
    print(f"batch {name} of {args.file}: {total} items: {listed}{state}")


class _Worker:
    """One process's part of a shared batch: ``--concurrency`` lanes claiming items."""

    def __init__(
        self,
        args: argparse.Namespace,
        client: AsyncWaveSpeed,
        queue: RedisBatchQueue,
        name: str,
        lines: list[int],
        schedule: PollSchedule | None,
    ) -> None:
        self.args, self.client, self.queue, self.name = args, client, queue, name
        self.lines = lines
        self.schedule = schedule
        self.results: dict[int, ItemResult] = {}  # by index: the last attempt's result
        self.held: dict[int, QueueItem] = {}  # in hand: touched, so no one reclaims them
        self.stopping = False
        self.failure: WaveSpeedError | None = None
        self.display: Display = make_display(lines)
        # How often an idle lane looks again: another worker's item may come free.
        self.idle_poll = max(0.05, min(args.reclaim_after / 4, 1.0))

    async def run(self) -> int:
        """Claim and run items until none is pending or running; the exit status."""
        started = time.monotonic()
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as group:
                group.start_soon(self._stop_on_signal, signals, group.cancel_scope)
                group.start_soon(self._heartbeat)
                with self.display:
                    async with anyio.create_task_group() as lanes:
                        for _ in range(self.args.concurrency):
                            lanes.start_soon(self._lane, lanes.cancel_scope)
                group.cancel_scope.cancel()
        if self.failure is not None:
            raise self.failure
        return await self._report(time.monotonic() - started)

    async def _stop_on_signal(self, signals: AsyncIterator[int], scope: anyio.CancelScope) -> None:
        async for _ in signals:
            self.stopping = True  # no more claims; items in flight are reclaimed by others
            scope.cancel()
            return

    async def _heartbeat(self) -> None:
        """Touch the items in hand: only a dead worker's items go idle, however long they run."""
        while True:
            await anyio.sleep(self.args.reclaim_after / 3)
            with contextlib.suppress(CoordinatorUnavailable), _reachable():
                await self.queue.touch(self.name, list(self.held.values()))

    async def _lane(self, lanes: anyio.CancelScope) -> None:
        try:
            while not self.stopping:
                with _reachable():
                    claimed = await self.queue.claim(self.name)
                    if not claimed:
                        if (await self.queue.status(self.name)).finished:
                            return
                        await anyio.sleep(self.idle_poll)  # others hold the rest, for now
                        continue
                await self._work(claimed[0])
        except FATAL as exc:  # this worker cannot go on; its items wait for another
            self.failure = exc
            lanes.cancel()

    async def _work(self, queued: QueueItem) -> None:
        item = BatchItem(queued.data["model"], queued.data["input"])
        index = queued.index
        self.held[index] = queued  # until it ends here; if it does not, another worker's
        result = await self._attempt(queued, item)
        del self.held[index]
        self.results[index] = result
        if result.outcome not in ("completed", "failed"):  # not acked: claimed again later
            print(
                f"line {self.lines[index]}: {reason(result.error)}; the item is claimed again"
                f" after {self.args.reclaim_after:g} s",
                file=sys.stderr,
                flush=True,
            )
            return
        self.display.on_event(
            BatchEvent(
                "completed" if result.ok else "failed",
                index,
                item,
                prediction_id=result.prediction_id,
                error=result.error,
                files=result.files,
            )
        )
        with _reachable():
            await self.queue.ack(self.name, queued, failed=not result.ok)

    async def _attempt(self, queued: QueueItem, item: BatchItem) -> ItemResult:
        index, task_id = queued.index, None
        try:
            with anyio.CancelScope(shield=True):  # a submit's answer is never abandoned
                future = await self.client.submit(
                    item.model,
                    item.input,
                    poll_schedule=self.schedule,
                    idempotency_key=queued.idempotency_key,
                )
            task_id = future.id
            self.display.on_event(BatchEvent("submitted", index, item, prediction_id=task_id))
            future.on_status(
                lambda p: self.display.on_event(
                    BatchEvent("status", index, item, prediction_id=task_id, status=p.status)
                )
            )
            try:
                prediction = await future.wait(self.args.timeout)
            except BaseException:
                if not future.done():
                    future.cancel()  # frees the running slot; the task goes on, for the next claim
                raise
            out = self.args.out
            files = tuple(await self.client.download(prediction, out)) if out else ()
        except PredictionFailed as exc:
            return ItemResult(index, item, "failed", task_id, exc.prediction, exc)
        except FATAL:
            raise
        except REJECTED as exc:  # IdempotencyConflict too: the key was used for other input
            return ItemResult(index, item, "failed", task_id, error=exc)
        except SubmissionUncertain as exc:  # the next claim resolves it through the key
            return ItemResult(index, item, "uncertain", task_id, error=exc)
        except WaveSpeedError as exc:  # no answer yet: not acked, resumed when reclaimed
            return ItemResult(index, item, "unfinished", task_id, error=exc)
        return ItemResult(index, item, "completed", task_id, prediction, files=files)

    async def _report(self, elapsed: float) -> int:
        results = sorted(self.results.values(), key=lambda result: result.index)
        status: QueueStatus | None = None
        with contextlib.suppress(CoordinatorUnavailable), _reachable():
            status = await self.queue.status(self.name)
        if self.args.json:
            print(json.dumps(self._json(results, status, elapsed)))
        if self.stopping:
            print(
                f"interrupted: {len(results)} items finished by this worker;"
                f" {len(self.held)} in flight are claimed by another worker after"
                f" {self.args.reclaim_after:g} s (or by this command run again)",
                file=sys.stderr,
            )
            return 130
        if not self.args.json:
            print_summary(results, self.lines)
        if status is not None:
            counts = ", ".join(f"{n} {what}" for what, n in attrs.asdict(status).items())
            print(f"batch {self.name}: {counts} (all workers)", file=sys.stderr)
        print(f"worker done in {elapsed:.1f}s", file=sys.stderr)
        return 0 if all(result.ok for result in results) else 1

    def _json(
        self, results: list[ItemResult], status: QueueStatus | None, elapsed: float
    ) -> dict[str, Any]:
        return {
            "batch": self.name,
            "worker": self.queue.consumer,
            "total": len(self.lines),
            "finished_here": len(results),
            **outcome_counts(results),
            "interrupted": self.stopping,
            "seconds": round(elapsed, 3),
            "queue": attrs.asdict(status) if status is not None else None,
            "items": [item_json(result, self.lines[result.index]) for result in results],
        }
