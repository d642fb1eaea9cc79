"""``wavespeed-async batch FILE --redis URL``: one batch, worked on by many machines.

The work is :class:`wavespeed_async.batch.shared.SharedBatchWorker`'s; this module checks the
options, opens Redis and the client, wires Ctrl-C and SIGTERM to the worker's ``stop``, shows
progress and prints the report. ``--status`` prints the whole batch's counts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs

from .._coordination.queue import QueueStatus, RedisBatchQueue
from .._coordination.redis import RedisCoordinator, connect
from .._engine.polling import PollSchedule
from .._wire.models import ImageEdit
from .._wire.settings import API_KEY_ENV, BASE_URL_ENV
from ..batch.items import BatchItem, ItemResult
from ..batch.shared import SharedBatchWorker, batch_id, reachable
from ..client import AsyncWaveSpeed
from ..errors import (
    InvalidInput,
)
from .batch import item_json, outcome_counts, read_batch_file
from .progress import make_display, print_summary, reason

__all__ = ["batch_id", "run_shared_batch"]


OpenClient = Callable[..., contextlib.AbstractAsyncContextManager[tuple[AsyncWaveSpeed, float]]]
MakeSchedule = Callable[[float], PollSchedule | None]


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
            with reachable():
                status = await queue.status(name)
            _print_status(args, name, len(items), status)
            return 0
        with reachable():  # whoever is first; before the API is touched
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
            await client.check_destination(args.out)  # before paying for any task
            display = make_display(lines)
            worker = SharedBatchWorker(
                client,
                queue,
                name,
                concurrency=args.concurrency,
                reclaim_after=args.reclaim_after,
                timeout=args.timeout,
                out=args.out,
                poll_schedule=make_schedule(scale),
                on_event=display.on_event,
                on_requeue=lambda result: _requeued(args, lines, result),
                total=len(items),  # a queue Redis lost is not a finished batch
            )
            started = time.monotonic()
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with anyio.create_task_group() as group:
                    group.start_soon(_stop_on_signal, signals, worker)
                    with display:
                        results = await worker.run()
                    group.cancel_scope.cancel()
            return await _report(args, worker, lines, results, time.monotonic() - started)
    finally:
        await redis_client.aclose()


async def _stop_on_signal(signals: AsyncIterator[int], worker: SharedBatchWorker) -> None:
    async for _ in signals:
        worker.stop()  # no more claims; items in flight are reclaimed by others
        return


def _requeued(args: argparse.Namespace, lines: list[int], result: ItemResult) -> None:
    print(
        f"line {lines[result.index]}: {reason(result.error)}; the item is claimed again"
        f" after {args.reclaim_after:g} s",
        file=sys.stderr,
        flush=True,
    )


async def _report(
    args: argparse.Namespace,
    worker: SharedBatchWorker,
    lines: list[int],
    results: list[ItemResult],
    elapsed: float,
) -> int:
    status = await worker.status()
    if args.json:
        print(json.dumps(_json(worker, lines, results, status, elapsed)))
    if worker.stopping:
        print(
            f"interrupted: {len(results)} items finished by this worker;"
            f" {len(worker.held)} in flight are claimed by another worker after"
            f" {args.reclaim_after:g} s (or by this command run again)",
            file=sys.stderr,
        )
        return 130
    if not args.json:
        print_summary(results, lines)
    if status is not None:
        counts = ", ".join(f"{n} {what}" for what, n in attrs.asdict(status).items())
        print(f"batch {worker.name}: {counts} (all workers)", file=sys.stderr)
    print(f"worker done in {elapsed:.1f}s", file=sys.stderr)
    return 0 if all(result.ok for result in results) else 1


def _json(
    worker: SharedBatchWorker,
    lines: list[int],
    results: list[ItemResult],
    status: QueueStatus | None,
    elapsed: float,
) -> dict[str, Any]:
    return {
        "batch": worker.name,
        "worker": worker.queue.consumer,
        "total": len(lines),
        "finished_here": len(results),
        **outcome_counts(results),
        "interrupted": worker.stopping,
        "seconds": round(elapsed, 3),
        "queue": attrs.asdict(status) if status is not None else None,
        "items": [item_json(result, lines[result.index]) for result in results],
    }


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
