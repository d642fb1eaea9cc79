"""`python -m benchmarks [--quick]`: client overhead against the raw-aiohttp floor.

Both contenders run against one in-process emulator whose tasks complete instantly, in the
same run, alternating, and the ratios printed come from that one run. Timings never gate CI.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp

from wavespeed_async import AsyncWaveSpeed, PollSchedule
from wavespeed_async.emulator import Emulator

MODEL = "wavespeed-ai/flux-dev"
POLL = 0.002
SCHEDULE = PollSchedule(first_delay=POLL, min_interval=POLL, max_interval=POLL, jitter=0)
Contender = Callable[[str, int], Awaitable[None]]


async def ours(base_url: str, count: int) -> None:
    async with AsyncWaveSpeed(api_key="bench", base_url=base_url, poll_schedule=SCHEDULE) as c:
        await asyncio.gather(*(c.run(MODEL, {"prompt": f"p{i}"}) for i in range(count)))


async def floor(base_url: str, count: int) -> None:
    """The least code that does the job: one session, submit, poll, parse into dicts."""
    headers = {"Authorization": "Bearer bench"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(i: int) -> dict[str, object]:
            async with session.post(f"{base_url}/api/v3/{MODEL}", json={"prompt": f"p{i}"}) as r:
                task_id = (await r.json())["data"]["id"]
            while True:
                await asyncio.sleep(POLL)
                url = f"{base_url}/api/v3/predictions/{task_id}/result"
                async with session.get(url) as r:
                    data: dict[str, object] = (await r.json())["data"]
                if data["status"] in ("completed", "failed"):
                    return data

        await asyncio.gather(*(one(i) for i in range(count)))


async def measure(contender: Contender, base_url: str, count: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    await contender(base_url, count)
    return time.perf_counter() - wall, time.process_time() - cpu


async def main(count: int, rounds: int) -> None:
    contenders: dict[str, Contender] = {"wavespeed-async": ours, "floor": floor}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    async with Emulator(speed=0) as emu:
        emu.set_duration(MODEL, 0)
        for _ in range(rounds):
            for name, contender in contenders.items():
                results[name].append(await measure(contender, emu.base_url, count))
    print(f"{count} instant predictions x {rounds} rounds (process CPU includes the emulator)")
    print(f"{'contender':<16} {'wall s (median)':>16} {'CPU ms/prediction':>18}")
    medians = {}
    for name, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs) / count * 1000
        medians[name] = (wall, cpu)
        print(f"{name:<16} {wall:>16.3f} {cpu:>18.3f}")
    ratio_wall = medians["wavespeed-async"][0] / medians["floor"][0]
    ratio_cpu = medians["wavespeed-async"][1] / medians["floor"][1]
    print(f"ratio wavespeed-async/floor: wall {ratio_wall:.2f}x, CPU {ratio_cpu:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args()
    asyncio.run(main(count=50 if args.quick else 1000, rounds=1 if args.quick else 5))
