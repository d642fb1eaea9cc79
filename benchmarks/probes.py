"""Measurements that need a fresh process: memory in flight, import time, cold start.

Each runs as `python -m benchmarks.probes KIND CONTENDER ...` and prints one JSON line. Only
the standard library is imported up front, so a cold process pays for its contender alone.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .contenders import (
    API_KEY,
    CONTENDERS,
    FLOOR,
    OFFICIAL,
    OURS,
    Batch,
    Fixed,
    floor_prediction,
    floor_session,
    floor_wait,
)

ROOT = Path(__file__).resolve().parent.parent
#: Submits go out at most this many at a time (as in the batch scenario); then all wait.
SUBMIT_GATE = 256
#: The module each contender's users import.
IMPORTS = {OURS: "wavespeed_async", FLOOR: "aiohttp", OFFICIAL: "wavespeed"}


# --- run in the parent ------------------------------------------------------------------------


def run_probe(
    *argv: str, timeout: float = 600, module: str = "benchmarks.probes"
) -> dict[str, Any]:
    """Run one probe in a fresh interpreter; returns its JSON and the spawn-to-answer time."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"probe {argv} failed ({done.returncode}): {done.stderr[-2000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    answer.setdefault("process_s", elapsed)
    return answer


def import_seconds(contender: str) -> float:
    """``import <the contender's module>`` in a fresh interpreter, timed inside it."""
    code = (
        "import time; started = time.perf_counter(); "
        f"import {IMPORTS[contender]}; print(time.perf_counter() - started)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(done.stdout)


# --- run in the child -------------------------------------------------------------------------


def rss_bytes() -> int:
    """The resident set size of this process now."""
    import psutil  # type: ignore[import-untyped,unused-ignore]

    gc.collect()
    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    """The largest resident set size this process has had.

    Linux's ``ru_maxrss`` survives ``exec``, so a child would report its parent's peak: read
    the high-water mark of this process's own memory map instead.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def cold(contender: str, base_url: str, model: str) -> dict[str, Any]:
    """One instant prediction from a cold process (the parent times spawn to answer)."""
    batch = Batch(base_url, model, ("cold start",), 1, Fixed(0.005, 0.005), 0.005)
    return {"completed": CONTENDERS[contender](batch)}


def memory(
    contender: str, base_url: str, model: str, warm_model: str, count: int, settle: float
) -> dict[str, Any]:
    """RSS of an idle (warmed-up) client, then with ``count`` long predictions in flight."""
    if contender == OFFICIAL:
        return _memory_official(base_url, model, warm_model, count, settle)
    return asyncio.run(_memory_async(contender, base_url, model, warm_model, count, settle))


async def _memory_async(
    contender: str, base_url: str, model: str, warm_model: str, count: int, settle: float
) -> dict[str, Any]:
    submitted, gate = 0, asyncio.Semaphore(SUBMIT_GATE)
    if contender == OURS:
        from wavespeed_async import AsyncWaveSpeed

        async with AsyncWaveSpeed(api_key=API_KEY, base_url=base_url) as client:
            await client.run(warm_model, {"prompt": "warm-up"})
            idle = rss_bytes()

            async def ours(index: int) -> None:
                nonlocal submitted
                async with gate:
                    future = await client.submit(model, {"prompt": f"in flight {index}"})
                submitted += 1
                await future.wait(math.inf)

            return await _hold(ours, count, settle, idle, lambda: submitted)

    # The video schedule's first two checks, without importing this project into the floor.
    schedule = Fixed(2.0, 5.0)
    async with floor_session() as session:
        await floor_wait(
            session, await floor_prediction(session, base_url, warm_model, "w"), schedule
        )
        idle = rss_bytes()

        async def floor(index: int) -> None:
            nonlocal submitted
            async with gate:
                data = await floor_prediction(session, base_url, model, f"in flight {index}")
            submitted += 1
            await floor_wait(session, data, schedule)

        return await _hold(floor, count, settle, idle, lambda: submitted)


async def _hold(one: Any, count: int, settle: float, idle: int, submitted: Any) -> dict[str, Any]:
    tasks = [asyncio.ensure_future(one(index)) for index in range(count)]
    while submitted() < count:
        await asyncio.sleep(0.05)
        failed = [task for task in tasks if task.done()]
        if failed:
            raise RuntimeError(f"{len(failed)} predictions ended early: {failed[0].exception()}")
    await asyncio.sleep(settle)  # every prediction is now polling, or between two checks
    in_flight = sum(not task.done() for task in tasks)
    answer = {"idle_rss": idle, "in_flight_rss": rss_bytes(), "in_flight": in_flight}
    answer["peak_rss"] = peak_rss_bytes()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return answer


def _memory_official(
    base_url: str, model: str, warm_model: str, count: int, settle: float
) -> dict[str, Any]:
    import contextlib
    import io

    import wavespeed

    client = wavespeed.Client(api_key=API_KEY, base_url=base_url)
    with contextlib.redirect_stdout(io.StringIO()):
        client.run(warm_model, {"prompt": "warm-up"})
        idle = rss_bytes()
        pool = concurrent.futures.ThreadPoolExecutor(count)
        for index in range(count):
            pool.submit(client.run, model, {"prompt": f"in flight {index}"}, timeout=3600)
        time.sleep(settle)  # the submits are done well before: the pool is all blocked polling
        answer = {"idle_rss": idle, "in_flight_rss": rss_bytes(), "in_flight": count}
        answer["peak_rss"] = peak_rss_bytes()
    # Blocked threads cannot be cancelled: print, then leave without joining them.
    print(json.dumps(answer), flush=True)
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the probe processes."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probes")
    kinds = parser.add_subparsers(dest="kind", required=True)
    cold_parser = kinds.add_parser("cold")
    cold_parser.add_argument("contender", choices=CONTENDERS)
    cold_parser.add_argument("base_url")
    cold_parser.add_argument("model")
    memory_parser = kinds.add_parser("memory")
    memory_parser.add_argument("contender", choices=CONTENDERS)
    memory_parser.add_argument("base_url")
    memory_parser.add_argument("model")
    memory_parser.add_argument("warm_model")
    memory_parser.add_argument("count", type=int)
    memory_parser.add_argument("--settle", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.kind == "cold":
        answer = cold(args.contender, args.base_url, args.model)
    else:
        answer = memory(
            args.contender, args.base_url, args.model, args.warm_model, args.count, args.settle
        )
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
