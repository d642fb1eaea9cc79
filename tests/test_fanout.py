"""Webhooks across processes: one delivery, wherever it lands, finishes every process's futures.

Each "process" here is a receiver with its own :class:`RedisCoordinator` on one real Redis
(the namespace is the test's own): what they share goes through Redis exactly as between
worker processes. ``tests/test_examples.py`` runs the real thing, under ``uvicorn --workers``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from aiohttp import web

from wavespeed_async import ConfigurationError, Prediction, Status, WebhookReceiver
from wavespeed_async._coordination.local import Coordinator, LocalCoordinator
from wavespeed_async._wire.limits import Limits
from wavespeed_async.emulator import Emulator
from wavespeed_async.errors import CoordinatorUnavailable
from wavespeed_async.redis import RedisCoordinator

from .redis_server import RedisServer
from .support import (
    BODY,
    NO_RECONCILIATION,
    SECRET,
    SIGNED_AT,
    client_for,
    new_future,
    serve,
    signed_headers,
)

pytestmark = pytest.mark.anyio

PREDICTION_ID = json.loads(BODY)["id"]
Start = Callable[..., Awaitable[RedisCoordinator]]


@pytest.fixture
async def coordinators(redis_server: RedisServer) -> AsyncIterator[Start]:
    """Start coordinators on one namespace of the session's Redis; all closed at the end."""
    namespace = f"fanout-{uuid.uuid4().hex}"
    started: list[RedisCoordinator] = []

    async def start(**limits: int) -> RedisCoordinator:
        coordinator = RedisCoordinator(redis_server.url, namespace=namespace)
        await coordinator.start(Limits(**limits))
        started.append(coordinator)
        await subscribed(coordinator, len(started))
        return coordinator

    try:
        yield start
    finally:
        for coordinator in started:
            await coordinator.aclose()


async def subscribed(coordinator: RedisCoordinator, count: int) -> None:
    """Wait until ``count`` coordinators of the namespace listen for deliveries."""
    channel = f"{coordinator.namespace}:deliveries"
    with anyio.fail_after(10):
        while (await coordinator.redis.pubsub_numsub(channel))[0][1] < count:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def worker(
    coordinator: Coordinator, seen: list[Prediction] | None = None, **kwargs: Any
) -> WebhookReceiver:
    """A receiver sharing through ``coordinator``, as the client wires it."""
    kwargs.setdefault("clock", lambda: SIGNED_AT)
    receiver = WebhookReceiver(
        SECRET, on_prediction=None if seen is None else seen.append, **kwargs
    )
    receiver.use_coordinator(coordinator)
    return receiver


async def test_a_delivery_to_one_process_finishes_the_future_of_another(
    coordinators: Start,
) -> None:
    submitter_seen: list[Prediction] = []
    handler_seen: list[Prediction] = []
    submitter = worker(await coordinators(), submitter_seen)
    handler = worker(await coordinators(), handler_seen)
    future = new_future()  # polling it would fail the test
    submitter.track(future)

    assert await handler.handle_async(signed_headers(), BODY) == (200, "ok")
    with anyio.fail_after(5):
        prediction = await future
    assert prediction.status is Status.COMPLETED
    assert prediction.outputs == ("https://cdn.wavespeed.ai/generated/image123.png",)
    # on_prediction runs once, in the process the delivery reached
    assert [p.id for p in handler_seen] == [PREDICTION_ID]
    assert submitter_seen == []


async def test_a_repeat_landing_on_another_process_is_dropped_there(
    coordinators: Start,
) -> None:
    seen: list[Prediction] = []
    first = worker(await coordinators(), seen)
    second = worker(await coordinators(), seen)
    assert await first.handle_async(signed_headers(), BODY) == (200, "ok")
    assert await second.handle_async(signed_headers(), BODY) == (200, "duplicate")
    assert await second.handle_async(signed_headers(webhook_id="msg_2"), BODY) == (200, "ok")
    assert len(seen) == 2
    assert (second.accepted, second.duplicates) == (1, 1)


async def test_a_terminal_delivery_frees_the_slot_of_a_task_submitted_elsewhere(
    coordinators: Start,
) -> None:
    holder = await coordinators(max_concurrent_tasks=1)
    handler = worker(await coordinators(max_concurrent_tasks=1))
    waiter = await coordinators(max_concurrent_tasks=1)
    lease = await holder.acquire_slot(5)
    await holder.bind_slot(lease, PREDICTION_ID)  # the submitter never releases it (died)
    with pytest.raises(TimeoutError):
        await waiter.acquire_slot(0.05)

    assert await handler.handle_async(signed_headers(), BODY) == (200, "ok")
    with anyio.fail_after(5):
        await waiter.acquire_slot(5)


class BrokenCoordinator(LocalCoordinator):
    """A coordinator whose shared store is down: every shared call raises."""

    async def first_delivery(self, webhook_id: str, ttl: float) -> bool:
        raise CoordinatorUnavailable("Redis unreachable: connection refused")


async def test_an_unreachable_coordinator_falls_back_to_this_process_only() -> None:
    seen: list[Prediction] = []
    receiver = worker(BrokenCoordinator(), seen)
    future = new_future()
    receiver.track(future)
    assert await receiver.handle_async(signed_headers(), BODY) == (200, "ok")
    assert future.done()
    # local dedup still holds while the coordinator is down
    assert await receiver.handle_async(signed_headers(), BODY) == (200, "duplicate")
    assert [p.id for p in seen] == [PREDICTION_ID]


async def test_a_delivery_neither_shared_nor_remembered_is_answered_503_for_a_retry() -> None:
    receiver = worker(BrokenCoordinator(), remember=0)
    future = new_future()
    receiver.track(future)
    status, _ = await receiver.handle_async(signed_headers(), BODY)
    assert status == 503
    assert not future.done()


async def test_the_sync_handle_still_works_beside_a_coordinator() -> None:
    coordinator = LocalCoordinator()
    receiver = worker(coordinator)
    future = new_future()
    receiver.track(future)
    assert receiver.handle(signed_headers(), BODY) == (200, "ok")
    assert future.done()
    assert await coordinator.first_delivery("msg_1", ttl=60)  # handle() shares nothing


async def test_a_replay_is_remembered_across_processes_until_it_would_fail_verification(
    coordinators: Start,
) -> None:
    coordinator = await coordinators()
    receiver = worker(coordinator, tolerance=300, clock=lambda: SIGNED_AT + 100)
    assert await receiver.handle_async(signed_headers(), BODY) == (200, "ok")
    ttl_ms = await coordinator.redis.pttl(f"{{{coordinator.namespace}}}:seen:msg_1")
    assert 190_000 < ttl_ms <= 200_000  # signed 100 s ago: verifiable 200 s more


async def test_each_process_still_answers_503_past_its_own_memory_of_ids() -> None:
    receiver = worker(LocalCoordinator(), remember=1)
    assert await receiver.handle_async(signed_headers(), BODY) == (200, "ok")
    status, _ = await receiver.handle_async(signed_headers(webhook_id="msg_2"), BODY)
    assert status == 503  # rather than forgetting msg_1 early


async def test_a_shared_coordinator_replaces_the_in_process_one_and_a_second_owner_is_refused(
    coordinators: Start,
) -> None:
    shared, other = await coordinators(), await coordinators()
    receiver = worker(LocalCoordinator())  # the client's default, say
    receiver.use_coordinator(shared)
    receiver.use_coordinator(LocalCoordinator())  # ignored
    with pytest.raises(ConfigurationError, match="already shares deliveries"):
        receiver.use_coordinator(other)  # one owner: a second shared coordinator is an error
    assert await receiver.handle_async(signed_headers(), BODY) == (200, "ok")
    assert await shared.redis.exists(f"{{{shared.namespace}}}:seen:msg_1")


# --- through the client ---------------------------------------------------------------------


async def test_the_client_shares_its_coordinator_with_its_receiver(
    redis_server: RedisServer, frozen: Emulator
) -> None:
    """Two "processes": A submits with B's webhook URL; B's delivery finishes A's future."""
    namespace = f"fanout-{uuid.uuid4().hex}"
    receivers = [WebhookReceiver(reconcile_schedule=NO_RECONCILIATION) for _ in range(2)]
    coordinators = [RedisCoordinator(redis_server.url, namespace=namespace) for _ in range(2)]
    app = web.Application()
    app.router.add_post("/hook", receivers[1].aiohttp_handler)
    runner, origin = await serve(app)
    try:
        async with (
            client_for(frozen, webhooks=receivers[0], coordinator=coordinators[0]) as submitter,
            client_for(frozen, webhooks=receivers[1], coordinator=coordinators[1]) as handler,
        ):
            for receiver in receivers:
                receiver.set_secret(await handler.webhook_secret())
            await subscribed(coordinators[0], 2)
            future = await submitter.submit_text_to_video("a fox", webhook=f"{origin}/hook")
            frozen.advance(30)
            with anyio.fail_after(10):
                video = await future
    finally:
        await runner.cleanup()
    assert video.status is Status.COMPLETED
    assert (receivers[0].accepted, receivers[1].accepted) == (0, 1)
    assert not [r for r in frozen.requests if r.path.endswith("/result")]  # not one poll


async def test_a_delivery_in_the_api_envelope_reaches_other_processes_unwrapped(
    coordinators: Start,
) -> None:
    submitter = worker(await coordinators())
    handler = worker(await coordinators())
    future = new_future()
    submitter.track(future)
    enveloped = json.dumps({"code": 200, "message": "success", "data": json.loads(BODY)}).encode()
    assert await handler.handle_async(signed_headers(enveloped), enveloped) == (200, "ok")
    with anyio.fail_after(5):
        assert (await future).status is Status.COMPLETED
