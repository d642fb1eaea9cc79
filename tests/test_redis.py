"""RedisCoordinator and RedisBatchQueue across real processes sharing one real Redis.

The workers are spawned Python processes (a small pool, plus one process that is SIGKILLed);
they meet at a barrier in Redis, so the counts asserted do not hang on process start-up times.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import attrs
import pytest
import redis.asyncio as aioredis

import wavespeed_async._coordination.link
from wavespeed_async._coordination.local import Claim
from wavespeed_async._wire.limits import Limits
from wavespeed_async.errors import CoordinatorUnavailable
from wavespeed_async.redis import RedisBatchQueue, RedisCoordinator

from .redis_server import RedisServer

pytestmark = pytest.mark.anyio

MODEL = "wavespeed-ai/flux-dev"
PAYLOAD = {"prompt": "a cat"}
WORKERS = 3
SPAWN = multiprocessing.get_context("spawn")


# --- what the worker processes run ----------------------------------------------------------


async def _barrier(client: aioredis.Redis, namespace: str, parties: int) -> None:
    """Every worker arrives, then all go together (the test process counts as one)."""
    await client.incr(f"{namespace}:arrived")
    while int(await client.get(f"{namespace}:arrived") or 0) < parties:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def _reserve(url: str, namespace: str, per_minute: float, count: int) -> list[float]:
    coordinator = RedisCoordinator(url, namespace=namespace)
    await coordinator.start(Limits(submits_per_minute=per_minute))
    try:
        await _barrier(coordinator.redis, namespace, WORKERS)
        return [await coordinator.submit_delay() for _ in range(count)]
    finally:
        await coordinator.aclose()


async def _hold_slots(url: str, namespace: str, limit: int) -> list[int]:
    """Two tasks at once, each taking a slot three times; the live counts each one saw."""
    coordinator = RedisCoordinator(url, namespace=namespace)
    await coordinator.start(Limits(max_concurrent_tasks=limit))
    seen: list[int] = []

    async def task() -> None:
        for _ in range(3):
            lease = await coordinator.acquire_slot(10)
            seen.append(await coordinator.redis.incr(f"{namespace}:live"))
            await asyncio.sleep(0.01)
            await coordinator.redis.decr(f"{namespace}:live")
            await coordinator.release_slot(lease)

    try:
        await _barrier(coordinator.redis, namespace, WORKERS)
        await asyncio.gather(task(), task())
        return seen
    finally:
        await coordinator.aclose()


async def _claim(url: str, namespace: str, key: str) -> bool:
    coordinator = RedisCoordinator(url, namespace=namespace)
    await coordinator.start(Limits())
    try:
        await _barrier(coordinator.redis, namespace, WORKERS)
        return (await coordinator.claim(key, model=MODEL, payload=PAYLOAD)).owned
    finally:
        await coordinator.aclose()


async def _listen(url: str, namespace: str) -> str:
    coordinator = RedisCoordinator(url, namespace=namespace)
    got: asyncio.Queue[str] = asyncio.Queue()
    coordinator.on_delivery(lambda prediction: got.put_nowait(prediction.id))
    await coordinator.start(Limits())
    try:
        return await asyncio.wait_for(got.get(), 60)
    finally:
        await coordinator.aclose()


async def _hold_and_hang(url: str, namespace: str, batch_id: str) -> None:
    """Take both slots, a claim and a queue item, say so, then hang until killed."""
    coordinator = RedisCoordinator(url, namespace=namespace, lease_seconds=1.0)
    await coordinator.start(Limits(max_concurrent_tasks=2))
    lease = await coordinator.acquire_slot(5)
    await coordinator.bind_slot(lease, "pred-held")
    await coordinator.acquire_slot(5)
    await coordinator.claim("k-held", model=MODEL, payload=PAYLOAD)
    queue = RedisBatchQueue(coordinator.redis, namespace=namespace, consumer="doomed")
    [item] = await queue.claim(batch_id)
    await coordinator.redis.set(f"{namespace}:held", item.entry_id)
    await asyncio.sleep(3600)


def run_in_worker(name: str, *args: Any) -> Any:
    """The entry point of a worker process: run ``_<name>`` of this module."""
    return asyncio.run(globals()[f"_{name}"](*args))


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> Iterator[Executor]:
    """Worker processes, started once for the module."""
    with ProcessPoolExecutor(WORKERS, mp_context=SPAWN) as executor:
        yield executor


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.Redis.from_url(redis_server.url)
    yield connection
    await connection.aclose()


async def in_workers(pool: Executor, name: str, *args: Any) -> list[Any]:
    """Run ``name`` in every worker of the pool at once; their answers."""
    loop = asyncio.get_running_loop()
    calls = [loop.run_in_executor(pool, run_in_worker, name, *args) for _ in range(WORKERS)]
    return list(await asyncio.wait_for(asyncio.gather(*calls), 60))


# --- several processes, one account ---------------------------------------------------------


async def test_the_submit_rate_holds_across_processes(
    pool: Executor, redis_server: RedisServer, namespace: str
) -> None:
    answers = await in_workers(pool, "reserve", redis_server.url, namespace, 6, 4)
    delays = sorted(delay for answer in answers for delay in answer)
    # 6 a minute for the account: six submits at once, then one every 10 s, whoever asks.
    assert delays[:6] == [0.0] * 6
    assert delays[6:] == pytest.approx([10, 20, 30, 40, 50, 60], abs=3)


async def test_slots_never_exceed_the_limit_across_processes(
    pool: Executor, redis_server: RedisServer, namespace: str
) -> None:
    answers = await in_workers(pool, "hold_slots", redis_server.url, namespace, 2)
    seen = [count for answer in answers for count in answer]
    assert len(seen) == WORKERS * 2 * 3
    assert max(seen) <= 2


async def test_exactly_one_of_racing_processes_owns_a_key(
    pool: Executor, redis_server: RedisServer, namespace: str
) -> None:
    owned = await in_workers(pool, "claim", redis_server.url, namespace, "k-race")
    assert sorted(owned) == [False, False, True]


async def test_a_delivery_reaches_every_process(
    pool: Executor, redis_server: RedisServer, namespace: str, client: aioredis.Redis
) -> None:
    listening = asyncio.gather(
        *[
            asyncio.get_running_loop().run_in_executor(
                pool, run_in_worker, "listen", redis_server.url, namespace
            )
            for _ in range(WORKERS)
        ]
    )
    channel = f"{namespace}:deliveries"
    # Publish once every worker listens (other processes: no Event to wait on).
    for _ in range(3000):
        if dict(await client.pubsub_numsub(channel)).get(channel.encode(), 0) >= WORKERS:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail(f"the workers did not all subscribe: {await client.pubsub_numsub(channel)}")
    publisher = RedisCoordinator(redis_server.url, namespace=namespace)
    await publisher.start(Limits())
    body = {"id": "pred_fan", "model": MODEL, "status": "completed", "outputs": ["u"]}
    await publisher.publish_delivery(json.dumps(body).encode())
    await publisher.aclose()
    assert await asyncio.wait_for(listening, 60) == ["pred_fan"] * WORKERS


# --- a worker SIGKILLed while it holds slots, a claim and a queue item --------------------------


@attrs.define
class KilledWorker:
    namespace: str
    batch_id: str
    held_item: str
    slot_free_while_alive: bool
    claim_while_alive: Claim


async def _kill_a_busy_worker(url: str) -> KilledWorker:
    """Start a worker that holds things, note what it holds, SIGKILL it."""
    namespace, batch_id = f"test-{uuid.uuid4().hex}", "b1"
    coordinator = RedisCoordinator(url, namespace=namespace, lease_seconds=1.0)
    await coordinator.start(Limits(max_concurrent_tasks=2))
    queue = RedisBatchQueue(coordinator.redis, namespace=namespace)
    await queue.enqueue_once(batch_id, [{"prompt": "a"}, {"prompt": "b"}])
    process = SPAWN.Process(target=run_in_worker, args=("hold_and_hang", url, namespace, batch_id))
    process.start()
    try:
        held = None
        for _ in range(3000):
            held = await coordinator.redis.get(f"{namespace}:held")
            if held is not None or not process.is_alive():
                break
            await asyncio.sleep(0.01)
        assert held is not None, "the worker did not get ready"
        try:
            await coordinator.acquire_slot(0.05)
            slot_free = True
        except TimeoutError:
            slot_free = False
        claim = await coordinator.claim("k-held", model=MODEL, payload=PAYLOAD)
    finally:
        process.kill()
        process.join(10)
        await coordinator.aclose()
    held_item = held.decode() if isinstance(held, bytes) else held
    return KilledWorker(namespace, batch_id, held_item, slot_free, claim)


@pytest.fixture(scope="module")
def killed_worker(redis_server: RedisServer) -> KilledWorker:
    """A worker SIGKILLed while it held both slots, a claim and a queue item (lease: 1 s)."""
    return asyncio.run(_kill_a_busy_worker(redis_server.url))


async def test_a_killed_worker_s_slots_come_back_after_its_lease(
    killed_worker: KilledWorker, redis_server: RedisServer
) -> None:
    assert not killed_worker.slot_free_while_alive
    coordinator = RedisCoordinator(redis_server.url, namespace=killed_worker.namespace)
    await coordinator.start(Limits(max_concurrent_tasks=2))
    try:
        await coordinator.acquire_slot(10)
        await coordinator.acquire_slot(10)
    finally:
        await coordinator.aclose()


async def test_a_killed_claimant_s_key_is_orphaned_and_taken_over_once(
    killed_worker: KilledWorker, redis_server: RedisServer
) -> None:
    assert not killed_worker.claim_while_alive.owned
    assert not killed_worker.claim_while_alive.record.orphaned
    takers = [
        RedisCoordinator(redis_server.url, namespace=killed_worker.namespace) for _ in range(3)
    ]
    for taker in takers:
        await taker.start(Limits())
    try:
        record = await takers[0].wait_submitted("k-held", timeout=10)
        assert (record.state, record.orphaned) == ("submitting", True)
        claims = await asyncio.gather(
            *[taker.claim("k-held", model=MODEL, payload=PAYLOAD) for taker in takers]
        )
        assert [(claim.owned, claim.record.orphaned) for claim in claims if claim.owned] == [
            (True, True)
        ]
        assert sum(claim.owned for claim in claims) == 1
    finally:
        for taker in takers:
            await taker.aclose()


async def test_a_killed_worker_s_queue_item_goes_to_the_next_worker_after_the_idle_timeout(
    killed_worker: KilledWorker, client: aioredis.Redis
) -> None:
    patient = RedisBatchQueue(client, namespace=killed_worker.namespace, idle_timeout=3600)
    [other] = await patient.claim(killed_worker.batch_id, count=5)  # not the held one
    assert other.entry_id != killed_worker.held_item
    assert (await patient.status(killed_worker.batch_id)).running == 2
    reclaimer = RedisBatchQueue(client, namespace=killed_worker.namespace, idle_timeout=0.2)
    reclaimed: list[Any] = []
    for _ in range(500):
        reclaimed = await reclaimer.claim(killed_worker.batch_id)
        if reclaimed:
            break
        await asyncio.sleep(0.01)
    assert [item.entry_id for item in reclaimed] == [killed_worker.held_item]
    await reclaimer.ack(killed_worker.batch_id, reclaimed[0])
    await reclaimer.ack(killed_worker.batch_id, reclaimed[0])  # counted once
    await patient.ack(killed_worker.batch_id, other, failed=True)
    status = await patient.status(killed_worker.batch_id)
    assert (status.pending, status.running, status.done, status.failed) == (0, 0, 1, 1)
    assert status.finished


async def test_a_live_holder_keeps_renewing_its_slot_and_claim(
    redis_server: RedisServer, namespace: str, client: aioredis.Redis
) -> None:
    coordinator = RedisCoordinator(redis_server.url, namespace=namespace, lease_seconds=0.3)
    await coordinator.start(Limits(max_concurrent_tasks=1))
    try:
        lease = await coordinator.acquire_slot(1)
        await coordinator.claim("k", model=MODEL, payload=PAYLOAD)
        slot_expiry = await client.zscore(f"{{{namespace}}}:slots", lease)
        claim_expiry = await client.hget(f"{{{namespace}}}:idem:k", "lease_until")
        for _ in range(500):  # renewed every 0.1 s: slots and claims in two calls, so wait for both
            slot_now = await client.zscore(f"{{{namespace}}}:slots", lease)
            renewed = await client.hget(f"{{{namespace}}}:idem:k", "lease_until")
            if slot_now != slot_expiry and renewed != claim_expiry:
                break
            await asyncio.sleep(0.01)
        assert (slot_now or 0) > (slot_expiry or 0)
        assert int(renewed or 0) > int(claim_expiry or 0)
    finally:
        await coordinator.aclose()


# --- the queue, in one process ------------------------------------------------------------------


async def test_a_batch_is_enqueued_once_however_many_workers_start_it(
    client: aioredis.Redis, namespace: str
) -> None:
    queues = [RedisBatchQueue(client, namespace=namespace) for _ in range(4)]
    items = [{"prompt": f"p{i}"} for i in range(5)]
    added = await asyncio.gather(*[queue.enqueue_once("b", items) for queue in queues])
    assert sorted(added) == [False, False, False, True]
    assert (await queues[0].status("b")).pending == 5
    taken = [item for queue in queues for item in await queue.claim("b", count=2)]
    assert sorted(item.index for item in taken) == [0, 1, 2, 3, 4]
    assert taken[0].data == items[taken[0].index]
    assert taken[0].idempotency_key == f"batch:b:{taken[0].index}"
    assert (await queues[0].status("b")).running == 5


# --- Redis restarted mid-run --------------------------------------------------------------------


async def test_while_redis_is_down_limits_go_local_and_claims_fail_closed(
    redis_server: RedisServer,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        wavespeed_async._coordination.link, "PROBE_INTERVAL", 0.0
    )  # every call tries Redis
    coordinator = RedisCoordinator(redis_server.url, namespace=namespace)
    await coordinator.start(Limits(submits_per_minute=6, max_concurrent_tasks=1))
    try:
        assert await coordinator.submit_delay() == 0.0
        redis_server.stop()
        try:
            with caplog.at_level(logging.INFO, logger="wavespeed_async"):
                # The local bucket: a minute's worth at once, then a wait.
                delays = [await coordinator.submit_delay() for _ in range(7)]
                assert delays[:6] == [0.0] * 6
                assert delays[6] > 5
                lease = await coordinator.acquire_slot(1)
                await coordinator.release_slot(lease)
                with pytest.raises(CoordinatorUnavailable):
                    await coordinator.claim("k", model=MODEL, payload=PAYLOAD)
                with pytest.raises(CoordinatorUnavailable) as caught:
                    await coordinator.record_submitted("k", "pred_1")
                assert caught.value.prediction_id == "pred_1"  # the task is not lost
                heard: list[str] = []
                coordinator.on_delivery(lambda prediction: heard.append(prediction.id))
                await coordinator.publish_delivery(b'{"id": "pred_2", "status": "completed"}')
                assert heard == ["pred_2"]  # this process at least still hears its own
        finally:
            redis_server.start()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "Redis unreachable" in warnings[0].getMessage()
        # Back: once the background probe finds Redis again, the ledger and the shared
        # bucket are used again.
        for _ in range(1000):
            try:
                claim = await coordinator.claim("k", model=MODEL, payload=PAYLOAD)
                break
            except CoordinatorUnavailable:
                await asyncio.sleep(0.01)
        assert claim.owned
        await coordinator.redis.delete(f"{{{namespace}}}:rate")
        await coordinator.submit_delay()
        assert await coordinator.redis.exists(f"{{{namespace}}}:rate")
    finally:
        await coordinator.aclose()
