"""The shared batch as a library: two workers on one Redis queue, each item paid for once."""

from __future__ import annotations

import datetime as dt
import uuid

import anyio
import pytest

from wavespeed_async import AsyncWaveSpeed, BatchEvent, InvalidInput
from wavespeed_async._coordination.redis import connect
from wavespeed_async.batch.items import BatchItem
from wavespeed_async.batch.outcome import outcome_of
from wavespeed_async.batch.shared import SharedBatchWorker, batch_id
from wavespeed_async.emulator import Emulator
from wavespeed_async.errors import PredictionTimeout, SubmissionUncertain
from wavespeed_async.redis import RedisBatchQueue, RedisCoordinator

from .redis_server import RedisServer
from .support import FAST, FLUX, SECRET_KEY

pytestmark = pytest.mark.anyio


async def test_two_workers_share_a_batch_and_each_item_is_one_task(
    emulator: Emulator, redis_server: RedisServer
) -> None:
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    items = [BatchItem(FLUX, {"prompt": f"fox {n}"}) for n in range(8)]
    name = batch_id(items)
    events: list[BatchEvent] = []

    async def work() -> list[int]:
        redis = connect(redis_server.url)
        try:
            queue = RedisBatchQueue(redis, namespace=namespace, idle_timeout=5)
            await queue.enqueue_once(name, [{"model": i.model, "input": i.input} for i in items])
            coordinator = RedisCoordinator(redis_server.url, namespace=namespace, client=redis)
            async with AsyncWaveSpeed(
                api_key=SECRET_KEY,
                base_url=emulator.base_url,
                poll_schedule=FAST,
                coordinator=coordinator,
            ) as client:
                worker = SharedBatchWorker(
                    client, queue, name, concurrency=2, reclaim_after=5, on_event=events.append
                )
                return [result.index for result in await worker.run() if result.ok]
        finally:
            await redis.aclose()

    done: list[list[int]] = []

    async def run_one() -> None:
        done.append(await work())

    async with anyio.create_task_group() as group:
        group.start_soon(run_one)
        group.start_soon(run_one)
    assert sorted(done[0] + done[1]) == list(range(8))  # every item done, by one worker each
    assert emulator.submit_count == 8  # one task per item, however the work was split
    assert {e.kind for e in events} >= {"submitted", "completed"}


def test_one_classifier_gives_every_error_its_outcome() -> None:
    assert outcome_of(InvalidInput("prompt", "", "non-empty")) == "failed"
    lost = SubmissionUncertain(
        "lost", model=FLUX, payload={}, sent_at=dt.datetime.now(dt.timezone.utc)
    )
    assert outcome_of(lost) == "uncertain"
    assert outcome_of(PredictionTimeout("id", 1.0, None)) == "unfinished"


def test_workers_on_the_same_items_join_the_same_batch() -> None:
    items = [BatchItem(FLUX, {"prompt": "a"}), BatchItem(FLUX, {"prompt": "b"})]
    assert batch_id(items) == batch_id(list(items))
    assert batch_id(items) != batch_id(items[::-1])  # the order is part of the batch
