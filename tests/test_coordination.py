"""The coordinator contract, held by LocalCoordinator and by RedisCoordinator on a real Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from wavespeed_async._coordination.local import (
    Coordinator,
    LocalCoordinator,
    TTLCache,
    fingerprint,
)
from wavespeed_async._wire.limits import Limits
from wavespeed_async._wire.models import Prediction
from wavespeed_async.errors import IdempotencyConflict, InvalidInput

from .redis_server import RedisServer

pytestmark = pytest.mark.anyio

MODEL = "wavespeed-ai/flux-dev"
PAYLOAD = {"prompt": "a cat", "seed": 7}

Start = Callable[[Limits], Awaitable[Coordinator]]


@pytest.fixture(params=["local", "redis"])
async def start(request: pytest.FixtureRequest) -> AsyncIterator[Start]:
    """Starts coordinators of one kind, each test on a namespace of its own; closes them."""
    started: list[Coordinator] = []
    namespace = f"test-{uuid.uuid4().hex}"

    async def make(limits: Limits) -> Coordinator:
        coordinator: Coordinator
        if request.param == "local":
            coordinator = LocalCoordinator()
        else:
            from wavespeed_async.redis import RedisCoordinator

            server: RedisServer = request.getfixturevalue("redis_server")
            coordinator = RedisCoordinator(server.url, namespace=namespace, lease_seconds=2)
        await coordinator.start(limits)
        started.append(coordinator)
        return coordinator

    yield make
    for coordinator in started:
        await coordinator.aclose()


async def seconds_per_submit(coordinator: Coordinator, submits: int = 10) -> float:
    """The pace once the bucket is empty: the wait added by each further submit.

    The time the calls themselves take is subtracted from each wait (the bucket refills
    meanwhile), so the answer is the true pace minus the calls' own latency.
    """
    first = 0.0
    for _ in range(1000):
        first = await coordinator.submit_delay()
        if first > 0:
            break
    for _ in range(submits):
        last = await coordinator.submit_delay()
    return (last - first) / submits


async def test_a_minute_of_submits_goes_at_once_then_each_waits_its_turn(start: Start) -> None:
    coordinator = await start(Limits(submits_per_minute=6))
    delays = [await coordinator.submit_delay() for _ in range(8)]
    assert delays[:6] == [0.0] * 6
    # 6 a minute: the seventh waits (up to) 10 s, the eighth 10 s more.
    assert 5 < delays[6] <= 10
    assert delays[7] - delays[6] == pytest.approx(10, abs=1)


async def test_a_burst_of_429s_halves_the_rate_once(start: Start) -> None:
    coordinator = await start(Limits(submits_per_minute=480))
    await coordinator.rate_limited()
    await coordinator.rate_limited()  # the same burst: no second halving
    # Halved once: 240/min, 0.25 s a submit (halved twice it would be 0.5 s).
    assert 0.15 < await seconds_per_submit(coordinator) <= 0.25


async def test_accepted_submits_bring_the_rate_back_up_to_the_ceiling(start: Start) -> None:
    coordinator = await start(Limits(submits_per_minute=240))
    await coordinator.rate_limited()  # 120/min: 0.5 s a submit
    for _ in range(200):
        await coordinator.accepted()  # +1 each, capped at 240
    assert 0.15 < await seconds_per_submit(coordinator) <= 0.25


async def test_without_a_ceiling_nothing_waits(start: Start) -> None:
    coordinator = await start(Limits())
    assert [await coordinator.submit_delay() for _ in range(50)] == [0.0] * 50


async def test_slots_stop_at_the_limit_until_one_is_released_by_task_id(start: Start) -> None:
    coordinator = await start(Limits(max_concurrent_tasks=2))
    first = await coordinator.acquire_slot(None)
    await coordinator.acquire_slot(None)
    with pytest.raises(TimeoutError):
        await coordinator.acquire_slot(0.05)
    await coordinator.bind_slot(first, "pred-1")
    waiter = asyncio.create_task(coordinator.acquire_slot(None))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await coordinator.release_slot("pred-1")
    await asyncio.wait_for(waiter, 5)
    await coordinator.release_slot("pred-1")  # a second release frees nothing more
    with pytest.raises(TimeoutError):
        await coordinator.acquire_slot(0.05)


async def test_a_slot_is_released_by_its_lease_id_too(start: Start) -> None:
    coordinator = await start(Limits(max_concurrent_tasks=1))
    lease = await coordinator.acquire_slot(None)
    await coordinator.release_slot(lease)
    await coordinator.acquire_slot(1)


async def test_a_webhook_id_is_first_only_once(start: Start) -> None:
    coordinator = await start(Limits())
    assert await coordinator.first_delivery("msg_1", ttl=60)
    assert not await coordinator.first_delivery("msg_1", ttl=60)
    assert await coordinator.first_delivery("msg_2", ttl=60)


async def test_a_published_delivery_reaches_the_callbacks(start: Start) -> None:
    coordinator = await start(Limits())
    got: asyncio.Queue[Prediction] = asyncio.Queue()
    coordinator.on_delivery(got.put_nowait)
    body = {"id": "pred_1", "model": MODEL, "status": "completed", "outputs": ["https://x/1"]}
    await coordinator.publish_delivery(json.dumps(body).encode())
    prediction = await asyncio.wait_for(got.get(), 5)
    assert (prediction.id, prediction.outputs) == ("pred_1", ("https://x/1",))


async def test_the_first_claim_owns_the_key_and_the_next_sees_it(start: Start) -> None:
    coordinator = await start(Limits())
    first = await coordinator.claim("k1", model=MODEL, payload=PAYLOAD)
    second = await coordinator.claim("k1", model=MODEL, payload=dict(reversed(PAYLOAD.items())))
    assert first.owned
    assert not second.owned
    assert second.record.state == "submitting"
    assert not second.record.orphaned
    assert second.record.fingerprint == fingerprint(MODEL, PAYLOAD)
    assert (second.record.model, second.record.payload) == (MODEL, PAYLOAD)
    await coordinator.record_submitted("k1", "pred_9")
    third = await coordinator.claim("k1", model=MODEL, payload=PAYLOAD)
    assert not third.owned
    assert (third.record.state, third.record.prediction_id) == ("submitted", "pred_9")


async def test_a_key_reused_with_another_payload_is_a_conflict(start: Start) -> None:
    coordinator = await start(Limits())
    await coordinator.claim("k1", model=MODEL, payload=PAYLOAD)
    with pytest.raises(IdempotencyConflict) as caught:
        await coordinator.claim("k1", model=MODEL, payload={**PAYLOAD, "seed": 8})
    assert caught.value.field == "idempotency_key"


async def test_a_dropped_claim_can_be_claimed_again(start: Start) -> None:
    coordinator = await start(Limits())
    await coordinator.claim("k1", model=MODEL, payload=PAYLOAD)
    await coordinator.record_absent("k1")
    assert (await coordinator.claim("k1", model=MODEL, payload=PAYLOAD)).owned


async def test_a_waiter_gets_the_prediction_id_the_owner_records(start: Start) -> None:
    coordinator = await start(Limits())
    await coordinator.claim("k1", model=MODEL, payload=PAYLOAD)
    waiter = asyncio.create_task(coordinator.wait_submitted("k1", timeout=5))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await coordinator.record_submitted("k1", "pred_9")
    record = await waiter
    assert (record.state, record.prediction_id) == ("submitted", "pred_9")


async def test_a_waiter_learns_that_the_claim_was_dropped(start: Start) -> None:
    coordinator = await start(Limits())
    await coordinator.claim("k1", model=MODEL, payload=PAYLOAD)
    waiter = asyncio.create_task(coordinator.wait_submitted("k1", timeout=5))
    await asyncio.sleep(0.01)
    await coordinator.record_absent("k1")
    assert (await waiter).state == "absent"


async def test_waiting_on_a_claim_nobody_settles_times_out(start: Start) -> None:
    coordinator = await start(Limits())
    await coordinator.claim("k1", model=MODEL, payload=PAYLOAD)
    with pytest.raises(TimeoutError):
        await coordinator.wait_submitted("k1", timeout=0.05)


def test_the_local_ledger_forgets_expired_and_oldest_entries() -> None:
    now = [0.0]
    cache: TTLCache[int] = TTLCache(max_entries=2, clock=lambda: now[0])
    cache.set("a", 1, ttl=10)
    cache.set("b", 2, ttl=10)
    cache.set("c", 3, ttl=10)  # over the bound: the oldest goes
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, 2, 3)
    now[0] = 11
    assert cache.get("b") is None


async def test_a_payload_that_is_not_json_is_invalid_input(start: Start) -> None:
    coordinator = await start(Limits())
    with pytest.raises(InvalidInput) as caught:
        await coordinator.claim("k1", model=MODEL, payload={"image": object()})
    assert caught.value.field == "payload"
