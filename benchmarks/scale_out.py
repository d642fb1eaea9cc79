"""Scale-out: several processes sharing one emulated account, with and without Redis.

``python -m benchmarks.scale_out [--quick]`` (needs ``redis-server`` and the ``redis`` extra).
Four worker processes submit 200 tasks each to an emulator that enforces the account's limits
(600 submits per emulated minute, 40 tasks at once), every worker configured with those same
limits. Without a coordinator each worker counts alone; with a ``RedisCoordinator`` they
count together. Reported: 429s the emulator served, the peak of tasks the account held at once
(running or queued), and the coordinator's cost per submit (sequential submits, no limits).
The emulator runs 10x faster than real time, so the workers' limits are scaled to match.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from wavespeed_async import AsyncWaveSpeed, Limits, PollSchedule
from wavespeed_async.emulator import Emulator
from wavespeed_async.redis import RedisCoordinator

SPEED = 10.0  # emulated seconds per real second
MODEL = "bench/scale-out"  # off the catalogue: free
ACCOUNT = Limits(submits_per_minute=600, max_concurrent_tasks=40)
POLL = PollSchedule(first_delay=0.05, min_interval=0.05, max_interval=0.2, jitter=0.1)


@contextmanager
def redis_server() -> Iterator[str]:
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("redis-server not installed (apt-get install -y redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [
                executable,
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "yes",  # idempotency keys need a Redis that keeps them
                "--dir",
                directory,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(5)


@contextmanager
def emulator_thread(**options: object) -> Iterator[Emulator]:
    """An emulator serving from a thread of its own (the workers are other processes)."""
    ready = threading.Event()
    stop: asyncio.Event | None = None
    holder: list[Emulator] = []
    loop: asyncio.AbstractEventLoop | None = None

    async def serve() -> None:
        nonlocal stop, loop
        stop, loop = asyncio.Event(), asyncio.get_running_loop()
        async with Emulator(speed=SPEED, durations={MODEL: 3.0}, **options) as emu:  # type: ignore[arg-type]
            holder.append(emu)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield holder[0]
    finally:
        assert loop is not None
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


async def _worker(base_url: str, redis_url: str | None, namespace: str, count: int) -> float:
    coordinator = RedisCoordinator(redis_url, namespace=namespace) if redis_url else None
    scaled = Limits(
        submits_per_minute=ACCOUNT.submits_per_minute * SPEED,  # type: ignore[operator]
        max_concurrent_tasks=ACCOUNT.max_concurrent_tasks,
    )
    started = time.monotonic()
    async with AsyncWaveSpeed(
        api_key="bench",
        base_url=base_url,
        limits=scaled,
        poll_schedule=POLL,
        coordinator=coordinator,
    ) as client:
        await asyncio.gather(
            *(client.run(MODEL, {"prompt": f"{namespace} {i}"}) for i in range(count)),
            return_exceptions=True,
        )
    return time.monotonic() - started


def worker(base_url: str, redis_url: str | None, namespace: str, count: int) -> float:
    return asyncio.run(_worker(base_url, redis_url, namespace, count))


def held_at_once(emu: Emulator) -> int:
    """The most tasks the account held at once: submitted and not yet finished."""
    events = []
    for task in emu.tasks.values():
        events += [(task.submitted_at, 1), (task.finishes_at, -1)]
    peak = held = 0
    for _, step in sorted(events):
        held += step
        peak = max(peak, held)
    return peak


def shared_account(redis_url: str | None, processes: int, count: int) -> dict[str, float]:
    with emulator_thread(limits=ACCOUNT) as emu:
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
            jobs = [
                pool.submit(worker, emu.base_url, redis_url, f"{namespace}-{i}", count)
                if redis_url is None
                else pool.submit(worker, emu.base_url, redis_url, namespace, count)
                for i in range(processes)
            ]
            walls = [job.result() for job in jobs]
        return {
            "429s": float(emu.rate_limited),
            "peak held": float(held_at_once(emu)),
            "peak running": float(emu.peak_running),
            "tasks": float(len(emu.tasks)),
            "wall s": max(walls),
        }


async def _submit_cost(redis_url: str | None, count: int) -> float:
    async with Emulator(speed=SPEED) as emu:
        coordinator = RedisCoordinator(redis_url, namespace=uuid.uuid4().hex) if redis_url else None
        async with AsyncWaveSpeed(
            api_key="bench", base_url=emu.base_url, coordinator=coordinator
        ) as client:
            for i in range(20):  # warm the pool and the scripts
                await client.submit(MODEL, {"prompt": f"warm {i}"}, idempotency_key=f"w{i}")
            started = time.perf_counter()
            for i in range(count):
                await client.submit(MODEL, {"prompt": f"cost {i}"}, idempotency_key=f"k{i}")
            return (time.perf_counter() - started) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="50 submits per worker")
    args = parser.parse_args()
    count = 50 if args.quick else 200
    with redis_server() as url:
        rows = {
            "per process": shared_account(None, 4, count),
            "RedisCoordinator": shared_account(url, 4, count),
        }
        costs = [asyncio.run(_submit_cost(None, count)), asyncio.run(_submit_cost(url, count))]
    print(f"4 processes x {count} submits; account: 600/min, 40 at once (emulator {SPEED:g}x)")
    metrics = list(next(iter(rows.values())))
    print(f"{'':18}" + "".join(f"{m:>14}" for m in metrics))
    for name, row in rows.items():
        print(f"{name:18}" + "".join(f"{row[m]:>14.0f}" for m in metrics))
    local, redis = costs
    print(
        f"keyed submit: {local:.2f} ms in memory, {redis:.2f} ms on Redis"
        f" (+{redis - local:.2f} ms, {redis / local:.2f}x)"
    )


if __name__ == "__main__":
    main()
