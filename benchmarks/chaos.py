"""Chaos: the money promises while Redis restarts, freezes and a worker is SIGKILLed.

``python -m benchmarks.chaos [--quick]`` (needs ``redis-server`` and the ``redis`` extra).
Four worker processes submit the *same* keys (each process in its own order, so they race on
every key) to an emulator that enforces the account's limits (600 submits a minute, 20 tasks
at once; each task runs 3 s, in real time), through one durable ``RedisCoordinator``.
Meanwhile the run restarts Redis once, freezes it once (SIGSTOP, 10 s; 3 s with ``--quick``)
and SIGKILLs one worker, whose keys a fresh worker then takes up. Each submit has a 5 s
deadline; a submit refused because Redis was down (``CoordinatorUnavailable``: nothing sent),
or that timed out waiting for another claimant of its key, is tried again, as a real worker
would; one left uncertain (``SubmissionUncertain``) is given up and counted.

Reported: tasks per key (target exactly 1.00; a key the killed worker left uncertain has
none until the history can prove it, see ``SubmissionUncertain``), keys paid twice (0), the
429s the account served (0), the peak of running tasks against the limit (<= 1.00x) and the
worst submit latency against its deadline (<= 1.0x plus 100 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from wavespeed_async import AsyncWaveSpeed, Limits, PollSchedule
from wavespeed_async.emulator import Emulator
from wavespeed_async.errors import CoordinatorUnavailable, PredictionTimeout, WaveSpeedError
from wavespeed_async.redis import RedisCoordinator

MODEL = "bench/chaos"  # off the catalogue: free
ACCOUNT = Limits(submits_per_minute=600, max_concurrent_tasks=20)
POLL = PollSchedule(first_delay=0.2, min_interval=0.2, max_interval=0.5, jitter=0.1)
DEADLINE = 5.0  # each submit's timeout, seconds
LEASE = 6.0  # how long a killed worker's claims and slots outlive it, seconds
LANES = 12  # concurrent submits per worker
SPAWN = multiprocessing.get_context("spawn")


async def _work(base_url: str, redis_url: str, namespace: str, keys: list[str]) -> dict[str, Any]:
    coordinator = RedisCoordinator(redis_url, namespace=namespace, lease_seconds=LEASE)
    worst, refused, waited = 0.0, 0, 0
    errors: dict[str, int] = {}
    pending = list(keys)
    random.shuffle(pending)
    async with AsyncWaveSpeed(
        api_key="bench",
        base_url=base_url,
        limits=ACCOUNT,
        poll_schedule=POLL,
        coordinator=coordinator,
    ) as client:

        async def lane() -> None:
            nonlocal worst, refused, waited
            while pending:
                key = pending.pop()
                while True:
                    started = time.monotonic()
                    try:
                        future = await client.submit(
                            MODEL, {"prompt": key}, idempotency_key=key, timeout=DEADLINE
                        )
                    except CoordinatorUnavailable:
                        refused += 1
                        await asyncio.sleep(0.2)
                        continue
                    except PredictionTimeout:  # another claimant's submit (a dead one's lease)
                        waited += 1
                        continue
                    except WaveSpeedError as exc:  # uncertain, or another claimant's deadline
                        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                        break
                    finally:
                        worst = max(worst, (time.monotonic() - started) / DEADLINE)
                    try:
                        await future
                    except WaveSpeedError as exc:
                        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    break

        await asyncio.gather(*(lane() for _ in range(LANES)))
    return {"worst": worst, "refused": refused, "waited": waited, "errors": errors}


def worker(base_url: str, redis_url: str, namespace: str, keys: list[str], out: Any) -> None:
    """One worker process: its figures go to ``out`` (a queue) when it ends."""
    out.put(asyncio.run(_work(base_url, redis_url, namespace, keys)))


class RedisProcess:
    """A durable redis-server on a free loopback port that can be restarted and frozen."""

    def __init__(self, directory: str) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            sys.exit("redis-server not installed (apt-get install -y redis-server)")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.command = [executable, "--port", str(self.port), "--dir", directory]
        self.command += ["--appendonly", "yes", "--save", ""]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
            self.process.wait(10)

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)


@contextmanager
def redis_process() -> Iterator[RedisProcess]:
    with tempfile.TemporaryDirectory() as directory:
        server = RedisProcess(directory)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextmanager
def emulator_thread() -> Iterator[Emulator]:
    """A real-time emulator enforcing ``ACCOUNT``, serving from a thread of its own."""
    ready, holder = threading.Event(), []
    stop: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def serve() -> None:
        stop.append((asyncio.get_running_loop(), asyncio.Event()))
        async with Emulator(speed=1.0, durations={MODEL: 3.0}, limits=ACCOUNT) as emu:
            holder.append(emu)
            ready.set()
            await stop[0][1].wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield holder[0]
    finally:
        loop, event = stop[0]
        loop.call_soon_threadsafe(event.set)
        thread.join(10)


def chaos(keys: int, freeze: float) -> dict[str, float]:
    with redis_process() as server, emulator_thread() as emu:
        url = server.url
        namespace, names = f"chaos-{uuid.uuid4().hex[:8]}", [f"key-{i}" for i in range(keys)]
        out = SPAWN.Queue()
        workers = [
            SPAWN.Process(target=worker, args=(emu.base_url, url, namespace, names, out))
            for _ in range(4)
        ]
        for process in workers:
            process.start()
        # The slots bind: 20 tasks of 3 s at once, under 7 new tasks a second.
        pace = keys / (20 / 3) / 6  # a sixth of the run
        time.sleep(pace)
        server.stop()  # a restart: the append-only file brings the ledger back
        server.start()
        time.sleep(pace)
        server.signal(signal.SIGSTOP)
        time.sleep(freeze)
        server.signal(signal.SIGCONT)
        time.sleep(pace / 2)
        workers[0].kill()  # mid-run: its claims and slots are left to their leases
        spare = SPAWN.Process(target=worker, args=(emu.base_url, url, namespace, names, out))
        spare.start()
        results = [out.get(timeout=600) for _ in range(4)]  # three survivors and the spare
        for process in [*workers, spare]:
            process.join(30)
        per_key = collections.Counter(task.input["prompt"] for task in emu.tasks.values())
        return {
            "tasks per key": len(emu.tasks) / keys,
            "keys paid twice": float(sum(n > 1 for n in per_key.values())),
            "keys without a task": float(keys - len(per_key)),
            "429s": float(emu.rate_limited),
            "peak running / limit": emu.peak_running / ACCOUNT.max_concurrent_tasks,  # type: ignore[operator]
            "worst submit / deadline": max(r["worst"] for r in results),
            "refused (retried)": float(sum(r["refused"] for r in results)),
            "timed out waiting (retried)": float(sum(r["waited"] for r in results)),
            **{
                f"{name} (given up)": float(sum(r["errors"].get(name, 0) for r in results))
                for name in sorted({name for r in results for name in r["errors"]})
            },
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="60 keys, a 3 s freeze")
    args = parser.parse_args()
    keys, freeze = (60, 3.0) if args.quick else (300, 10.0)
    row = chaos(keys, freeze)
    print(f"4 processes x {keys} keys; one Redis restart, one {freeze:g} s freeze, one SIGKILL")
    for name, value in row.items():
        print(f"{name:>26}: {value:.2f}")


if __name__ == "__main__":
    main()
