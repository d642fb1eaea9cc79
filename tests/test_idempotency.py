"""Idempotency keys: one task per key, in one process (memory) and across processes (Redis)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import multiprocessing
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from wavespeed_async import (
    AsyncWaveSpeed,
    CoordinatorUnavailable,
    IdempotencyConflict,
    InvalidRequest,
    Limits,
    PredictionTimeout,
    RetryPolicy,
    Status,
    SubmissionUncertain,
)
from wavespeed_async.emulator import Clock, Emulator, Fault
from wavespeed_async.redis import RedisCoordinator

from .redis_server import RedisServer
from .support import FAST, SECRET_KEY, client_for

pytestmark = pytest.mark.anyio

MODEL = "test/idempotent-model"  # off the catalogue: free, accepts any input
#: Reads retried without the real backoff (the history is down in some tests).
QUICK_RETRIES = RetryPolicy(base_delay=0.001, max_delay=0.01)


def created(emu: Emulator) -> int:
    return len(emu.tasks)


# --- in one process: the in-memory ledger ---------------------------------------------------


async def test_a_key_submitted_twice_creates_one_task(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        first = await client.submit(MODEL, {"prompt": "a fox"}, idempotency_key="order-42")
        again = await client.submit(MODEL, {"prompt": "a fox"}, idempotency_key="order-42")
        done = await again
    assert again.id == first.id
    assert done.status is Status.COMPLETED
    assert created(emulator) == 1


async def test_concurrent_callers_with_one_key_share_one_task(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        futures = await asyncio.gather(
            *(client.submit(MODEL, {"prompt": "a fox"}, idempotency_key="k") for _ in range(8))
        )
    assert len({f.id for f in futures}) == 1
    assert created(emulator) == 1


async def test_a_key_reused_with_another_payload_is_refused_before_sending(
    emulator: Emulator,
) -> None:
    async with client_for(emulator) as client:
        await client.submit(MODEL, {"prompt": "a fox"}, idempotency_key="k")
        sent = len(emulator.requests)
        with pytest.raises(IdempotencyConflict, match="idempotency_key"):
            await client.submit(MODEL, {"prompt": "an owl"}, idempotency_key="k")
    assert len(emulator.requests) == sent
    assert created(emulator) == 1


async def test_a_refused_submit_frees_its_key_for_a_corrected_retry(emulator: Emulator) -> None:
    emulator.faults.add(Fault.RATE_LIMITED, route="submit", times=1)
    async with client_for(emulator, retry=None) as client:
        future = await client.submit(MODEL, {"prompt": "a fox"}, idempotency_key="k")
    assert created(emulator) == 1  # the 429 created nothing; the retry did
    assert future.id in emulator.tasks


async def test_an_answer_lost_after_the_task_was_created_is_adopted_not_resent(
    emulator: Emulator,
) -> None:
    emulator.faults.add(Fault.RESET_AFTER, route="submit", times=1)  # created, answer lost
    async with client_for(emulator) as client:
        future = await client.submit(MODEL, {"prompt": "a fox"}, idempotency_key="k")
        done = await future
    assert created(emulator) == 1
    assert done.id in emulator.tasks


async def test_a_rejected_payload_releases_the_key(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        with pytest.raises(InvalidRequest):  # the catalogue's schema refuses it server-side
            await client.submit(
                "wavespeed-ai/flux-dev", {"prompt": "x", "num_images": 99}, idempotency_key="k"
            )
        with pytest.raises(InvalidRequest):  # sent again: the first created nothing
            await client.submit(
                "wavespeed-ai/flux-dev", {"prompt": "x", "num_images": 99}, idempotency_key="k"
            )
    submits = [r for r in emulator.requests if r.method == "POST" and "flux-dev" in r.path]
    assert len(submits) == 2


# --- across processes: the Redis ledger -----------------------------------------------------


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


async def _submit_with_key(base_url: str, redis_url: str, namespace: str, key: str) -> str:
    coordinator = RedisCoordinator(redis_url, namespace=namespace)
    async with AsyncWaveSpeed(
        api_key=SECRET_KEY, base_url=base_url, poll_schedule=FAST, coordinator=coordinator
    ) as client:
        future = await client.submit(MODEL, {"prompt": "a fox"}, idempotency_key=key)
        return future.id


def submit_in_process(base_url: str, redis_url: str, namespace: str, key: str) -> str:
    return asyncio.run(_submit_with_key(base_url, redis_url, namespace, key))


@pytest.fixture
def pool() -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(3, mp_context=context) as executor:
        yield executor


async def test_processes_racing_on_one_key_create_one_task(
    redis_server: RedisServer,
    namespace: str,
    pool: concurrent.futures.ProcessPoolExecutor,
) -> None:
    async with Emulator(speed=1000) as emu:
        loop = asyncio.get_running_loop()
        ids = await asyncio.gather(
            *(
                loop.run_in_executor(
                    pool, submit_in_process, emu.base_url, redis_server.url, namespace, "race"
                )
                for _ in range(3)
            )
        )
    assert len(set(ids)) == 1
    assert created(emu) == 1


@pytest.fixture
async def redis_client_of(redis_server: RedisServer, namespace: str) -> AsyncIterator[Any]:
    clients: list[AsyncWaveSpeed] = []

    def make(emu: Emulator, **kwargs: Any) -> AsyncWaveSpeed:
        coordinator = RedisCoordinator(redis_server.url, namespace=namespace, **kwargs)
        client = client_for(emu, coordinator=coordinator, retry=QUICK_RETRIES)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_a_claim_orphaned_by_a_dead_worker_is_reconciled_not_resent(
    redis_client_of: Any, redis_server: RedisServer, namespace: str
) -> None:
    async with Emulator(speed=1000) as emu:
        # A worker claims the key, sends the submit (the task exists), then dies before it can
        # record the id: its claim's lease runs out.
        dead = RedisCoordinator(redis_server.url, namespace=namespace, lease_seconds=0.2)
        await dead.start(Limits())
        claim = await dead.claim("job-7", model=MODEL, payload={"prompt": "a fox"})
        assert claim.owned
        async with client_for(emu) as other:
            sent = await other.submit(MODEL, {"prompt": "a fox"})
        await dead.aclose()  # no more renewals: the lease expires
        await anyio.sleep(0.3)
        async with redis_client_of(emu) as client:
            future = await client.submit(MODEL, {"prompt": "a fox"}, idempotency_key="job-7")
    assert future.id == sent.id
    assert created(emu) == 1


async def test_a_dead_workers_claim_with_no_task_behind_it_is_submitted_once_proven_absent(
    redis_client_of: Any, redis_server: RedisServer, namespace: str
) -> None:
    clock = Clock(0)  # the tasks' created_at moves with the emulator's frozen clock
    start = dt.datetime.now(dt.timezone.utc)
    wall = lambda: start + dt.timedelta(seconds=clock.now())  # noqa: E731
    async with Emulator(clock=clock, wall_clock=wall) as emu:
        dead = RedisCoordinator(redis_server.url, namespace=namespace, lease_seconds=0.2)
        await dead.start(Limits())
        await dead.claim("job-8", model=MODEL, payload={"prompt": "a fox"})  # died before sending
        await dead.aclose()
        await anyio.sleep(0.3)
        async with redis_client_of(emu) as client:
            with pytest.raises(SubmissionUncertain, match="later task"):  # no proof yet
                await client.submit(MODEL, {"prompt": "a fox"}, idempotency_key="job-8")
            emu.advance(150)  # past the clock-skew allowance: a later task proves absence
            async with client_for(emu) as other:
                await other.submit(MODEL, {"prompt": "another job"})
            future = await client.submit(MODEL, {"prompt": "a fox"}, idempotency_key="job-8")
            again = await client.submit(MODEL, {"prompt": "a fox"}, idempotency_key="job-8")
    assert future.id == again.id
    assert created(emu) == 2  # the other job's, and one for the key


async def test_a_key_fails_closed_when_redis_is_down_and_plain_submits_go_on(
    emulator: Emulator,
) -> None:
    nowhere = RedisCoordinator("redis://127.0.0.1:9/0", namespace="down")
    async with client_for(emulator, coordinator=nowhere) as client:
        with pytest.raises(CoordinatorUnavailable):
            await client.submit(MODEL, {"prompt": "a fox"}, idempotency_key="k")
        assert created(emulator) == 0
        future = await client.submit(MODEL, {"prompt": "a fox"})  # local limits, a warning
    assert created(emulator) == 1
    assert future.id in emulator.tasks


async def test_a_live_claimants_key_makes_others_wait_for_its_id_not_resend(
    redis_client_of: Any, redis_server: RedisServer, namespace: str
) -> None:
    async with Emulator(speed=1000) as emu:
        busy = RedisCoordinator(redis_server.url, namespace=namespace)
        await busy.start(Limits())
        await busy.claim("job-9", model=MODEL, payload={"prompt": "a fox"})
        async with redis_client_of(emu) as client:
            with pytest.raises(PredictionTimeout, match="under way"):
                await client.submit(
                    MODEL, {"prompt": "a fox"}, idempotency_key="job-9", timeout=0.3
                )
            waiting = asyncio.ensure_future(
                client.submit(MODEL, {"prompt": "a fox"}, idempotency_key="job-9")
            )
            async with client_for(emu) as other:
                sent = await other.submit(MODEL, {"prompt": "a fox"})
            await busy.record_submitted("job-9", sent.id)
            with anyio.fail_after(10):
                future = await waiting
        await busy.aclose()
    assert future.id == sent.id
    assert created(emu) == 1


async def test_an_unsettled_submit_stays_uncertain_and_the_next_caller_adopts_its_task(
    emulator: Emulator,
) -> None:
    emulator.faults.add(Fault.RESET_AFTER, route="submit", times=1)  # created, answer lost
    emulator.faults.add(Fault.SERVER_ERROR, route="history", times=100)  # the history is down
    async with client_for(emulator, retry=QUICK_RETRIES) as client:
        with pytest.raises(SubmissionUncertain, match="history cannot tell") as caught:
            await client.submit(MODEL, {"prompt": "a fox"}, idempotency_key="k")
        assert caught.value.payload == {"prompt": "a fox"}
        [task_id] = emulator.tasks
        emulator.faults.clear()  # the history is back
        with anyio.fail_after(5):  # not a wait for a claimant that gave up
            again = await client.submit(MODEL, {"prompt": "a fox"}, idempotency_key="k")
    assert again.id == task_id  # reconciled through the history again, then adopted
    assert created(emulator) == 1  # never resent


async def test_across_processes_an_unsettled_key_is_reconciled_by_the_next_caller_at_once(
    redis_client_of: Any,
) -> None:
    async with Emulator(speed=1000) as emu:
        emu.faults.add(Fault.RESET_AFTER, route="submit", times=1)
        emu.faults.add(Fault.SERVER_ERROR, route="history", times=100)
        async with redis_client_of(emu) as first, redis_client_of(emu) as second:
            with pytest.raises(SubmissionUncertain):
                await first.submit(MODEL, {"prompt": "a fox"}, idempotency_key="k")
            [task_id] = emu.tasks
            with pytest.raises(SubmissionUncertain):  # at once, in another process too
                await second.submit(MODEL, {"prompt": "a fox"}, idempotency_key="k")
            emu.faults.clear()  # the history is back
            with anyio.fail_after(5):  # not the 30 s lease of a live claimant
                again = await second.submit(MODEL, {"prompt": "a fox"}, idempotency_key="k")
    assert again.id == task_id
    assert created(emu) == 1


# --- account-wide limits across processes ---------------------------------------------------


async def _run_many(base_url: str, redis_url: str | None, namespace: str, count: int) -> int:
    coordinator = RedisCoordinator(redis_url, namespace=namespace) if redis_url else None
    async with AsyncWaveSpeed(
        api_key=SECRET_KEY,
        base_url=base_url,
        poll_schedule=FAST,
        limits=Limits(submits_per_minute=6000, max_concurrent_tasks=4),
        coordinator=coordinator,
    ) as client:
        done = await asyncio.gather(
            *(client.run(MODEL, {"prompt": f"{namespace} {i}"}) for i in range(count)),
            return_exceptions=True,
        )
    return sum(1 for d in done if not isinstance(d, BaseException))


def run_many_in_process(base_url: str, redis_url: str | None, namespace: str, count: int) -> int:
    return asyncio.run(_run_many(base_url, redis_url, namespace, count))


async def test_running_slots_hold_across_processes_with_the_coordinator(
    redis_server: RedisServer,
    namespace: str,
    pool: concurrent.futures.ProcessPoolExecutor,
) -> None:
    # The account runs 4 tasks at once; three processes with 12 tasks each share it.
    async with Emulator(speed=100, durations={MODEL: 2.0}) as emu:
        loop = asyncio.get_running_loop()
        finished = await asyncio.gather(
            *(
                loop.run_in_executor(
                    pool, run_many_in_process, emu.base_url, redis_server.url, namespace, 12
                )
                for _ in range(3)
            )
        )
    assert sum(finished) == 36
    assert created(emu) == 36
    assert 1 <= emu.peak_running <= 4  # per process, it would be up to 12


async def test_hundreds_of_concurrent_keyed_submits_share_the_redis_pool_without_degrading(
    redis_client_of: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A budget no loaded machine misses: the point is that the pool queues 300 callers
    # instead of refusing them, not how fast a shared CI machine runs them.
    async with Emulator(speed=1000) as emu, redis_client_of(emu, call_timeout=30) as client:
        with caplog.at_level(logging.WARNING, "wavespeed_async"):
            futures = await asyncio.gather(
                *(
                    client.submit(MODEL, {"prompt": f"p{i}"}, idempotency_key=f"k{i}")
                    for i in range(300)
                )
            )
    assert len({f.id for f in futures}) == 300
    assert created(emu) == 300
    assert "unreachable" not in caplog.text  # the pool waited; it did not refuse and degrade
