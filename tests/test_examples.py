"""The example services, started for real and driven over HTTP against the emulator."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import anyio
import anyio.abc
import pytest
import redis.asyncio as aioredis

from examples.job_worker import AtLeastOnceQueue, Job, handle, work
from wavespeed_async.emulator import Emulator
from wavespeed_async.redis import RedisCoordinator

from .redis_server import RedisServer
from .support import client_for, free_port, wait_until_up

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # subprocesses or a soak

ROOT = Path(__file__).parent.parent
KEY = "sk-example"


@pytest.mark.parametrize("script", ["aiohttp_service.py", "fastapi_service.py"])
async def test_example_service_reports_a_generation_through_its_webhook(
    script: str, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "service.log"
    async with Emulator(api_key=KEY, speed=0) as emu:
        env = {
            **os.environ,
            "WAVESPEED_API_KEY": KEY,
            "WAVESPEED_BASE_URL": emu.base_url,
            "PORT": str(port),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        command = [sys.executable, str(ROOT / "examples" / script)]
        with log.open("wb") as output:
            process = await anyio.open_process(
                command, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        async with process, aiohttp.ClientSession() as session:
            try:
                await wait_until_up(session, base, process, log)
                async with session.post(f"{base}/generations", json={"prompt": "a fox"}) as answer:
                    assert answer.status == 202
                    started = await answer.json()
                assert started["status"] == "created"
                assert emu.tasks[started["id"]].webhook == f"{base}/webhooks/wavespeed"

                emu.advance(30)  # the video is done: the emulator POSTs it to the service
                with anyio.fail_after(10):
                    await emu.wait_for(lambda: any(d.ok for d in emu.webhooks.deliveries))
                for _ in range(2):  # reading it does not change it
                    async with session.get(f"{base}/generations/{started['id']}") as answer:
                        finished = await answer.json()
                    assert finished["status"] == "completed"
                assert finished["outputs"][0].endswith(".mp4")
                assert not [r for r in emu.requests if r.path.endswith("/result")]  # no polls

                async with session.post(f"{base}/generations", json={"prompt": ""}) as answer:
                    assert answer.status in (400, 422)
                async with session.get(f"{base}/generations/unknown") as answer:
                    assert answer.status == 404
            finally:
                process.terminate()
                with anyio.fail_after(15):
                    await process.wait()
        assert "completed" in log.read_text(), log.read_text()


# --- the FastAPI service under uvicorn --workers, sharing a real Redis ------------------------

WORKERS = 3
PER_WORKER = 4


async def sessions_per_worker(
    base: str, process: anyio.abc.Process, log: Path
) -> dict[str, list[aiohttp.ClientSession]]:
    """``PER_WORKER`` sessions served by each worker (one kept-alive connection each), by pid."""
    sessions: dict[str, list[aiohttp.ClientSession]] = {}
    with anyio.fail_after(60):
        while sum(len(group) for group in sessions.values()) < WORKERS * PER_WORKER:
            if process.returncode is not None:
                pytest.fail(f"uvicorn exited early:\n{log.read_text()}")
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
            try:
                async with session.get(f"{base}/health") as answer:
                    await answer.read()  # an unread answer would close the connection
                    worker = answer.headers["x-worker"] if answer.status == 200 else ""
            except aiohttp.ClientConnectionError:
                worker = ""
            if worker and len(sessions.setdefault(worker, [])) < PER_WORKER:
                sessions[worker].append(session)
            else:
                await session.close()
                await anyio.sleep(0.01)
    return sessions


async def test_every_worker_shows_every_generation_completed_within_a_second_of_its_delivery(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    namespace = f"service-{uuid.uuid4().hex}"
    log = tmp_path / "uvicorn.log"
    async with Emulator(api_key=KEY, speed=0) as emu:
        env = {
            **os.environ,
            "WAVESPEED_API_KEY": KEY,
            "WAVESPEED_BASE_URL": emu.base_url,
            "PUBLIC_URL": base,
            "REDIS_URL": redis_server.url,
            "REDIS_NAMESPACE": namespace,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        command = [
            sys.executable, "-m", "uvicorn", "examples.fastapi_service:app",
            "--workers", str(WORKERS), "--host", "127.0.0.1", "--port", str(port),
            "--timeout-keep-alive", "120", "--log-level", "warning",
        ]  # fmt: skip
        with log.open("wb") as output:
            process = await anyio.open_process(
                command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        redis = aioredis.Redis.from_url(redis_server.url)
        sessions: dict[str, list[aiohttp.ClientSession]] = {}
        async with process:
            try:
                sessions = await sessions_per_worker(base, process, log)
                with anyio.fail_after(30):  # every worker's coordinator hears deliveries
                    while (await redis.pubsub_numsub(f"{namespace}:deliveries"))[0][1] < WORKERS:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                submitted: dict[str, str] = {}  # generation -> the worker that submitted it
                for worker, (session, *_) in sessions.items():
                    for number in range(PER_WORKER):
                        async with session.post(
                            f"{base}/generations",
                            json={"prompt": f"a fox, take {number}"},
                            headers={"Idempotency-Key": f"job-{worker}-{number}"},
                        ) as answer:
                            assert answer.status == 202, await answer.text()
                            started = await answer.json()
                        assert started["status"] == "created"
                        submitted[started["id"]] = answer.headers["x-worker"]

                emu.advance(30)  # every video is done: the emulator POSTs them to the service
                seen: dict[tuple[str, str], float] = {}  # (worker, generation) -> completed at
                states: dict[str, dict[str, str]] = {}

                async def poll(
                    worker: str, session: aiohttp.ClientSession, share: list[str]
                ) -> None:
                    """Ask this worker, until it shows its share of the generations completed."""
                    while pending := [
                        g for g in share if (worker, g) not in seen or g not in states
                    ]:
                        for generation in pending:
                            async with session.get(f"{base}/generations/{generation}") as answer:
                                assert answer.status == 200
                                state = await answer.json()
                            assert answer.headers["x-worker"] == worker  # still the same one
                            if state["status"] == "completed":
                                seen.setdefault((worker, generation), time.monotonic())
                            # Its submitter's future is done, and the worker the delivery
                            # reached has noted it (the two happen in either order).
                            if "resolved_at" in state and "delivered_to" in state:
                                states[generation] = state

                with anyio.fail_after(15):
                    async with anyio.create_task_group() as group:
                        # Each worker's sessions split the generations: a short round each.
                        for worker, worker_sessions in sessions.items():
                            for index, session in enumerate(worker_sessions):
                                share = list(submitted)[index :: len(worker_sessions)]
                                group.start_soon(poll, worker, session, share)
                    await emu.wait_for(lambda: len(emu.webhooks.acknowledged()) >= len(submitted))
                polls = [r for r in emu.requests if r.path.endswith("/result")]

                # A client retrying a request with its key, through another worker: the same
                # generation, no new task.
                generation, first_worker = next(iter(submitted.items()))
                other = next(w for w in sessions if w != first_worker)
                async with sessions[other][0].post(
                    f"{base}/generations",
                    json={"prompt": "a fox, take 0"},
                    headers={"Idempotency-Key": f"job-{first_worker}-0"},
                ) as answer:
                    assert answer.status == 202, await answer.text()
                    assert (await answer.json())["id"] == generation
            finally:
                for session in [s for group in sessions.values() for s in group]:
                    await session.close()
                await redis.aclose()
                process.terminate()
                with anyio.fail_after(15):
                    await process.wait()

    wall_minus_monotonic = time.time() - time.monotonic()
    delivered = {record.prediction_id: record for record in emu.webhooks.acknowledged()}
    assert sorted(delivered) == sorted(submitted)  # one delivery each, none retried
    shown = [seen[w, g] - delivered[g].sent for w in sessions for g in submitted]
    resolved = [
        float(states[g]["resolved_at"]) - wall_minus_monotonic - delivered[g].sent
        for g in submitted
    ]
    print(f"shown on every worker: {percentiles(shown)}; futures: {percentiles(resolved)}")
    assert max(shown) < 1.0, percentiles(shown)
    assert max(resolved) < 1.0, percentiles(resolved)
    for generation, worker in submitted.items():
        assert states[generation]["submitted_by"] == worker
        assert states[generation]["resolved_by"] == worker  # its own future, by its delivery
    # Deliveries landed on other workers than the submitters: those futures were fanned out to.
    assert any(states[g]["delivered_to"] != w for g, w in submitted.items())
    assert not polls  # not one result check: every future was finished by its delivery
    assert len(emu.tasks) == len(submitted)
    assert set(submitted.values()) == set(sessions)  # submitted through every worker


def percentiles(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p50 = ordered[len(ordered) // 2]
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    worst = ordered[-1]
    return f"p50 {p50 * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms, max {worst * 1e3:.1f} ms"


# --- the job worker: a redelivered job is one task ------------------------------------------


async def test_a_job_redelivered_to_a_worker_in_another_process_creates_one_task(
    redis_server: RedisServer, emulator: Emulator
) -> None:
    namespace = f"jobs-{uuid.uuid4().hex}"
    job = Job(id="msg-42", prompt="a fox in the snow")
    async with (
        client_for(
            emulator, coordinator=RedisCoordinator(redis_server.url, namespace=namespace)
        ) as first,
        client_for(
            emulator, coordinator=RedisCoordinator(redis_server.url, namespace=namespace)
        ) as second,
    ):
        with anyio.fail_after(30):
            # Both workers hold the job at once (its visibility timeout ran out), then a third
            # delivery comes after it is done.
            together = await asyncio.gather(handle(first, job), handle(second, job))
            again = await handle(second, job)
    assert {prediction.id for prediction in [*together, again]} == {again.id}
    assert len(emulator.tasks) == 1  # one task created, one billed
    assert again.outputs


async def test_the_worker_loop_acknowledges_both_deliveries_of_a_job_with_one_task(
    emulator: Emulator,
) -> None:
    jobs = [Job(id="msg-1", prompt="a fox"), Job(id="msg-2", prompt="a cat")]
    queue = AtLeastOnceQueue(jobs, visibility_timeout=3600)
    queue.put(jobs[0])  # redelivered before anyone acknowledged it
    async with client_for(emulator) as client:
        with anyio.fail_after(30):
            results = await asyncio.gather(work(client, queue), work(client, queue))
    assert len(emulator.tasks) == 2
    done = {job_id: task for result in results for job_id, task in result.items()}
    assert sorted(done) == ["msg-1", "msg-2"]
    assert set(done.values()) == set(emulator.tasks)
