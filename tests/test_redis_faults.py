"""The money promises under Redis faults, on real redis-server processes.

Each test owns its Redis (:func:`redis_factory`: restarted without persistence, frozen with
SIGSTOP, behind a proxy that blackholes, full, ACL-restricted, evicting, or a 3-master
cluster) and counts the tasks created on its own emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import multiprocessing
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from wavespeed_async import (
    AsyncWaveSpeed,
    BatchEvent,
    ConfigurationError,
    CoordinatorUnavailable,
    Limits,
    SubmissionUncertain,
)
from wavespeed_async._coordination.redis import connect
from wavespeed_async._engine import keyed
from wavespeed_async.batch.items import BatchItem, ItemResult
from wavespeed_async.batch.shared import SharedBatchWorker, batch_id
from wavespeed_async.emulator import Clock, Emulator
from wavespeed_async.redis import RedisBatchQueue, RedisCoordinator

from .redis_server import VOLATILE, RedisFactory, RedisServer
from .support import client_for
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.anyio

MODEL = "test/idempotent-model"  # off the catalogue: free, accepts any input
PROMPT = {"prompt": "a fox"}
#: What a call may take beyond its deadline on a busy shared machine.
SLACK = 1.5
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def namespace() -> str:
    return f"faults-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def clients(namespace: str) -> AsyncIterator[Callable[..., AsyncWaveSpeed]]:
    """Clients of an emulator through a RedisCoordinator, closed after the test."""
    made: list[AsyncWaveSpeed] = []

    def make(emu: Emulator, url: str, *, limits: Limits | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("namespace", namespace)
        client = client_for(emu, coordinator=RedisCoordinator(url, **kwargs), limits=limits)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


async def timed(call: Any) -> tuple[float, BaseException | None]:
    """The seconds ``call`` (an awaitable) took, and what it raised."""
    started = time.monotonic()
    try:
        await call
    except Exception as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


# --- deadlines include Redis ---------------------------------------------------------------


async def test_a_keyed_submit_fails_closed_within_its_timeout_while_redis_is_frozen(
    redis_factory: RedisFactory, clients: Any, emulator: Emulator
) -> None:
    server = redis_factory()
    client = clients(emulator, server.url)
    await client.submit(MODEL, PROMPT, idempotency_key="warm")  # connected, verified
    server.freeze()
    elapsed, error = await timed(
        client.submit(MODEL, {"prompt": "b"}, idempotency_key="k-frozen", timeout=3)
    )
    server.thaw()
    assert isinstance(error, CoordinatorUnavailable)
    assert elapsed < 3 + SLACK
    assert len(emulator.tasks) == 1


async def test_a_submit_without_a_key_carries_on_while_redis_is_blackholed(
    redis_proxy: tuple[RedisServer, TcpProxy],
    clients: Any,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, proxy = redis_proxy
    client = clients(emulator, proxy.url(), limits=Limits(max_concurrent_tasks=4))
    await (await client.submit(MODEL, PROMPT))
    proxy.mode = "blackhole"
    with caplog.at_level(logging.WARNING, logger="wavespeed_async"):
        for _ in range(3):
            elapsed, error = await timed(client.submit(MODEL, PROMPT, timeout=3))
            assert error is None
            assert elapsed < 3 + SLACK
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert len(emulator.tasks) == 4


async def test_a_keyed_submit_fails_closed_within_its_timeout_behind_a_blackhole(
    redis_proxy: tuple[RedisServer, TcpProxy], clients: Any, emulator: Emulator
) -> None:
    _, proxy = redis_proxy
    client = clients(emulator, proxy.url())
    await client.submit(MODEL, PROMPT, idempotency_key="warm")
    proxy.mode = "blackhole"
    elapsed, error = await timed(client.submit(MODEL, PROMPT, idempotency_key="k2", timeout=3))
    assert isinstance(error, CoordinatorUnavailable)
    assert elapsed < 3 + SLACK
    assert len(emulator.tasks) == 1


# --- any Redis error is a library error ----------------------------------------------------


async def _fill(url: str) -> None:
    """Write until Redis answers OOM."""
    connection = aioredis.Redis.from_url(url)
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):  # noqa: PT012
            for index in range(10_000):
                await connection.set(f"ballast:{index}", b"x" * 100_000)
    finally:
        await connection.aclose()


async def test_a_full_redis_fails_keyed_submits_closed_and_lets_others_through(
    redis_factory: RedisFactory, clients: Any, emulator: Emulator
) -> None:
    server = redis_factory("--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
    client = clients(emulator, server.url, limits=Limits(max_concurrent_tasks=4))
    await _fill(server.url)
    with pytest.raises(CoordinatorUnavailable, match="maxmemory"):
        await client.submit(MODEL, PROMPT, idempotency_key="k-full")
    assert len(emulator.tasks) == 0
    await (await client.submit(MODEL, PROMPT))
    assert len(emulator.tasks) == 1


async def test_a_redis_user_without_script_rights_gets_library_errors(
    redis_factory: RedisFactory, clients: Any, emulator: Emulator
) -> None:
    server = redis_factory()
    admin = aioredis.Redis.from_url(server.url)
    await admin.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", "app", "on", ">pw-secret-123", "~*", "&*", "+@all", "-@scripting"
    )
    await admin.aclose()
    url = f"redis://app:pw-secret-123@127.0.0.1:{server.port}/0"
    client = clients(emulator, url, limits=Limits(max_concurrent_tasks=4))
    with pytest.raises(CoordinatorUnavailable) as caught:
        await client.submit(MODEL, PROMPT, idempotency_key="k-noperm")
    assert "pw-secret-123" not in f"{caught.value} {caught.value!r}"
    await (await client.submit(MODEL, PROMPT))
    assert len(emulator.tasks) == 1


async def test_a_read_only_replica_fails_keyed_submits_closed_and_lets_others_through(
    redis_factory: RedisFactory, clients: Any, emulator: Emulator
) -> None:
    primary = redis_factory()
    replica = redis_factory("--replicaof", "127.0.0.1", str(primary.port))
    client = clients(emulator, replica.url, limits=Limits(max_concurrent_tasks=4))
    with pytest.raises(CoordinatorUnavailable, match=r"READONLY|ReadOnly"):
        await client.submit(MODEL, PROMPT, idempotency_key="k-replica")
    assert len(emulator.tasks) == 0
    await (await client.submit(MODEL, PROMPT))
    assert len(emulator.tasks) == 1


# --- the ledger survives, or the library knows ---------------------------------------------


@pytest.mark.parametrize(
    ("args", "setting"),
    [
        (VOLATILE, "appendonly"),
        (("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"), "maxmemory-policy"),
        (("--rename-command", "CONFIG", ""), "durable_keys"),
    ],
    ids=["no-persistence", "allkeys-lru", "config-disabled"],
)
async def test_keyed_submits_are_refused_where_the_ledger_could_be_forgotten(
    redis_factory: RedisFactory,
    clients: Any,
    emulator: Emulator,
    args: tuple[str, ...],
    setting: str,
) -> None:
    server = redis_factory(*args)
    client = clients(emulator, server.url)
    with pytest.raises(ConfigurationError, match=setting):
        await client.submit(MODEL, PROMPT, idempotency_key="k")
    assert len(emulator.tasks) == 0
    await client.submit(MODEL, PROMPT)  # no key: nothing to forget
    knowing = clients(emulator, server.url, durable_keys="unchecked")
    await knowing.submit(MODEL, PROMPT, idempotency_key="k")
    assert len(emulator.tasks) == 2


async def test_a_key_submitted_before_redis_lost_its_data_is_adopted_not_paid_again(
    redis_factory: RedisFactory, clients: Any, emulator: Emulator
) -> None:
    server = redis_factory(*VOLATILE)
    client = clients(emulator, server.url, durable_keys="unchecked")
    first = [
        await client.submit(MODEL, {"prompt": f"p{i}"}, idempotency_key=f"k{i}") for i in range(3)
    ]
    server.restart()  # every key forgotten
    later = clients(emulator, server.url, durable_keys="unchecked")  # connects after the loss
    again = [
        await client.submit(MODEL, {"prompt": f"p{i}"}, idempotency_key=f"k{i}") for i in range(2)
    ]
    third = await later.submit(MODEL, {"prompt": "p2"}, idempotency_key="k2")
    assert [future.id for future in again] == [future.id for future in first[:2]]
    assert third.id == first[2].id
    assert len(emulator.tasks) == 3
    assert client.coordinator.data_lost_since is not None


async def test_a_new_key_after_redis_lost_its_data_is_sent_once_the_history_passed_the_loss(
    redis_factory: RedisFactory, clients: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(speed=0)  # the history's times follow the emulated clock
    async with Emulator(clock=clock, wall_clock=clock.wall_clock()) as emu:
        server = redis_factory(*VOLATILE)
        client = clients(emu, server.url, durable_keys="unchecked")
        first = await client.submit(MODEL, {"prompt": "before"}, idempotency_key="before")
        server.restart()  # every key forgotten
        again = await client.submit(MODEL, {"prompt": "before"}, idempotency_key="before")
        assert again.id == first.id  # the loss is seen; the old key's task is adopted
        emu.advance(180)  # other traffic: a task listed three minutes after the loss
        await client.submit(MODEL, {"prompt": "not keyed"})
        # An hour after the loss, a key the ledger never knew: the history has caught up past
        # the loss (not past this claim), which proves the key was not used before it.
        an_hour_later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
        monkeypatch.setattr(keyed, "_utc_now", lambda: an_hour_later)
        new = await client.submit(MODEL, {"prompt": "new"}, idempotency_key="new")
        assert new.id not in (first.id,)
        assert len(emu.tasks) == 3  # before, not keyed, new: each once


async def test_a_dead_claimant_after_the_loss_is_judged_from_its_death_not_from_the_loss(
    redis_factory: RedisFactory, clients: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(speed=0)
    async with Emulator(clock=clock, wall_clock=clock.wall_clock()) as emu:
        server = redis_factory(*VOLATILE)
        client = clients(emu, server.url, durable_keys="unchecked")
        await client.submit(MODEL, {"prompt": "before"}, idempotency_key="before")
        server.restart()
        await client.submit(MODEL, {"prompt": "before"}, idempotency_key="before")  # loss seen
        emu.advance(180)
        await client.submit(MODEL, {"prompt": "not keyed"})  # the history passed the loss
        dead = RedisCoordinator(
            server.url, namespace=namespace, lease_seconds=0.2, durable_keys="unchecked"
        )
        await dead.start(Limits())
        assert (await dead.claim("late", model=MODEL, payload={"prompt": "late"})).owned
        await dead.aclose()  # it may have sent its submit before it died: the lease runs out
        await anyio.sleep(0.3)
        an_hour_later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
        monkeypatch.setattr(keyed, "_utc_now", lambda: an_hour_later)
        with pytest.raises(SubmissionUncertain, match="later task"):
            await client.submit(MODEL, {"prompt": "late"}, idempotency_key="late")
        assert len(emu.tasks) == 2  # nothing resent on the strength of the older proof


async def test_a_late_drop_of_a_key_leaves_the_claim_another_caller_made_since(
    redis_factory: RedisFactory, namespace: str
) -> None:
    # A caller drops its claim (its submit was refused: nothing created), but the write is
    # retried in the background and lands again after another caller claimed the key afresh:
    # deleting that claim would let a third caller submit too, and pay twice.
    server = redis_factory()
    first, second, third = (RedisCoordinator(server.url, namespace=namespace) for _ in range(3))
    for coordinator in (first, second, third):
        await coordinator.start(Limits())
    try:
        payload = {"prompt": "p"}
        assert (await first.claim("k", model=MODEL, payload=payload)).owned
        held = dict(first._claims)  # as if the drop ran in Redis but its answer was lost
        await first.record_absent("k")
        assert (await second.claim("k", model=MODEL, payload=payload)).owned
        first._claims.update(held)
        await first.record_absent("k")  # the retry, landing late
        assert not (await third.claim("k", model=MODEL, payload=payload)).owned
        record = await third.read_record("k")
        assert record is not None
        assert record.state == "submitting"
    finally:
        for coordinator in (first, second, third):
            await coordinator.aclose()


async def test_slots_held_before_redis_lost_its_data_still_count_after_it(
    redis_factory: RedisFactory, namespace: str
) -> None:
    server = redis_factory(*VOLATILE)
    holder = RedisCoordinator(server.url, namespace=namespace, lease_seconds=0.6)
    other = RedisCoordinator(server.url, namespace=namespace, lease_seconds=0.6)
    for coordinator in (holder, other):
        await coordinator.start(Limits(max_concurrent_tasks=2))
    try:
        leases = [await holder.acquire_slot(1) for _ in range(2)]
        await other.submit_delay()  # the other has seen the epoch before the loss
        server.restart()
        with pytest.raises(TimeoutError):
            await other.acquire_slot(1.0)  # both slots are still busy in the holder
        await holder.release_slot(leases[0])
        assert await other.acquire_slot(2.0)
    finally:
        for coordinator in (holder, other):
            await coordinator.aclose()


async def test_the_rate_bucket_restarts_empty_after_redis_lost_its_data(
    redis_factory: RedisFactory, namespace: str
) -> None:
    server = redis_factory(*VOLATILE)
    coordinator = RedisCoordinator(server.url, namespace=namespace)
    await coordinator.start(Limits(submits_per_minute=6))
    try:
        assert [await coordinator.submit_delay() for _ in range(6)] == [0.0] * 6
        server.restart()  # the account's bucket is still spent
        assert await coordinator.submit_delay() > 5
    finally:
        await coordinator.aclose()


# --- adopted tasks hold slots -------------------------------------------------------------


def _submit_and_hang(base_url: str, redis_url: str, namespace: str, key: str) -> None:
    """A worker that submits under ``key``, says so in Redis, and hangs until SIGKILLed."""

    async def main() -> None:
        coordinator = RedisCoordinator(redis_url, namespace=namespace, lease_seconds=0.6)
        async with AsyncWaveSpeed(
            api_key="sk-worker",
            base_url=base_url,
            coordinator=coordinator,
            limits=Limits(max_concurrent_tasks=1),
        ) as client:
            future = await client.submit(MODEL, PROMPT, idempotency_key=key)
            await coordinator.redis.set(f"{namespace}:submitted", future.id)
            await asyncio.sleep(3600)

    asyncio.run(main())


async def test_a_task_adopted_from_a_killed_worker_holds_its_slot_until_it_ends(
    redis_server: RedisServer, clients: Any, frozen: Emulator, namespace: str
) -> None:
    worker = SPAWN.Process(
        target=_submit_and_hang, args=(frozen.base_url, redis_server.url, namespace, "k-adopt")
    )
    worker.start()
    watcher = aioredis.Redis.from_url(redis_server.url)
    try:
        for _ in range(3000):
            if await watcher.get(f"{namespace}:submitted") or not worker.is_alive():
                break
            await asyncio.sleep(0.01)
        worker.kill()  # its slot's lease runs out in 0.6 s; its task runs on
        worker.join(10)
    finally:
        await watcher.aclose()
    assert len(frozen.tasks) == 1
    limits = Limits(max_concurrent_tasks=1)
    adopter = clients(frozen, redis_server.url, limits=limits, lease_seconds=0.6)
    future = await adopter.submit(MODEL, PROMPT, idempotency_key="k-adopt")
    await asyncio.sleep(1.0)  # the dead worker's lease is gone by now
    newcomer = clients(frozen, redis_server.url, limits=limits, lease_seconds=0.6)
    _, error = await timed(newcomer.submit(MODEL, {"prompt": "new"}, timeout=1.0))
    assert error is not None  # the one slot is the adopted task's
    assert len(frozen.tasks) == 1
    frozen.advance(3600)
    await future
    await newcomer.submit(MODEL, {"prompt": "new"}, timeout=5)
    assert len(frozen.tasks) == 2


# --- Redis Cluster ---------------------------------------------------------------------------


async def test_keys_slots_and_the_queue_work_on_a_three_master_cluster(
    redis_factory: RedisFactory, clients: Any, emulator: Emulator, namespace: str
) -> None:
    cluster = redis_factory.cluster()
    limits = Limits(max_concurrent_tasks=30)  # futures are awaited after every submit
    client = clients(emulator, cluster.url, cluster=True, limits=limits)
    keys = [f"k{i}" for i in range(30)]
    first = [await client.submit(MODEL, {"prompt": key}, idempotency_key=key) for key in keys]
    again = [await client.submit(MODEL, {"prompt": key}, idempotency_key=key) for key in keys]
    assert [f.id for f in again] == [f.id for f in first]
    assert len(emulator.tasks) == 30
    for future in first:
        await future
    coordinator = client.coordinator
    assert isinstance(coordinator, RedisCoordinator)
    queue = RedisBatchQueue(coordinator.redis, namespace=namespace)
    assert await queue.enqueue_once("b", [{"prompt": "a"}, {"prompt": "b"}])
    items = await queue.claim("b", count=5)
    assert sorted(item.index for item in items) == [0, 1]


# --- shared batch workers ride out a blip --------------------------------------------------


@contextlib.asynccontextmanager
async def _shared_worker(
    emu: Emulator, url: str, namespace: str, items: int, **options: Any
) -> AsyncIterator[tuple[SharedBatchWorker, AsyncWaveSpeed]]:
    """A shared-batch worker on ``items`` fresh items, enqueued; its client closed after."""
    batch = [BatchItem(MODEL, {"prompt": f"item {n}"}) for n in range(items)]
    name = batch_id(batch)
    redis_client = connect(url)
    queue = RedisBatchQueue(redis_client, namespace=namespace, idle_timeout=5)
    await queue.enqueue_once(name, [{"model": i.model, "input": i.input} for i in batch])
    coordinator = RedisCoordinator(url, namespace=namespace, client=redis_client)
    client = client_for(emu, coordinator=coordinator)
    try:
        options.setdefault("concurrency", 2)
        options.setdefault("reclaim_after", 5)
        yield SharedBatchWorker(client, queue, name, total=items, **options), client
    finally:
        await client.aclose()
        await redis_client.aclose()


async def test_a_shared_batch_worker_rides_out_a_redis_freeze(
    redis_factory: RedisFactory, emulator: Emulator, namespace: str
) -> None:
    server = redis_factory()
    submitted = anyio.Event()
    frozen_for = 1.5  # > the coordinator's call budget: every Redis call fails meanwhile

    def on_event(event: BatchEvent) -> None:
        if event.kind == "submitted":
            submitted.set()

    async with _shared_worker(
        emulator, server.url, namespace, 6, on_event=on_event, redis_grace=20
    ) as (worker, _):
        async with anyio.create_task_group() as group:
            results: list[ItemResult] = []

            async def run() -> None:
                results.extend(await worker.run())

            group.start_soon(run)
            await submitted.wait()
            server.freeze()
            await anyio.sleep(frozen_for)
            server.thaw()
        assert sorted(r.index for r in results if r.ok) == list(range(6))
        assert len(emulator.tasks) == 6  # nothing paid twice


async def test_a_shared_batch_worker_gives_up_after_its_grace_with_a_clear_message(
    redis_factory: RedisFactory, emulator: Emulator, namespace: str
) -> None:
    server = redis_factory()
    async with _shared_worker(emulator, server.url, namespace, 2, redis_grace=1.0) as (worker, _):
        server.freeze()
        try:
            elapsed, error = await timed(worker.run())
        finally:
            server.thaw()
        assert isinstance(error, CoordinatorUnavailable)
        assert "gave up after 1 s" in str(error)
        assert elapsed < 1.0 + 1.0 + SLACK  # the grace, one call budget, slack
        assert len(emulator.tasks) == 0


async def test_a_shared_batch_worker_stops_when_its_queue_was_lost_instead_of_reporting_done(
    redis_factory: RedisFactory, emulator: Emulator, namespace: str
) -> None:
    server = redis_factory(*VOLATILE)
    async with _shared_worker(emulator, server.url, namespace, 3, redis_grace=5) as (worker, _):
        server.restart()  # the queue (and every key) is gone
        with pytest.raises(CoordinatorUnavailable, match="queue"):
            await worker.run()
        assert len(emulator.tasks) == 0
