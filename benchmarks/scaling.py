"""Scaling: 1,000 to 30,000 predictions in flight, in a fresh client process each.

Per size and contender (this project and the raw-aiohttp floor) a probe process submits every
prediction (at most ``SUBMIT_GATE`` submits at a time), waits on all of them, lets them poll
for ``settle`` seconds, then measures, with everything still in flight:

- client CPU per request (submits and result checks, counted by the emulator in the window),
  and per result check in the settle window alone (all submitted: checks only);
- collectable objects per prediction (a ``gc.get_objects()`` census minus the idle baseline);
- RSS per prediction (minus the idle baseline);
- the worst lateness of a 10 ms ticker over the submits and the polling (the census excluded);
- how long closing takes until every waiting task has ended (``aclose()`` for this project;
  cancelling the tasks and closing the session for the floor).

`python -m benchmarks.scaling CONTENDER BASE_URL MODEL WARM_MODEL COUNT` is the probe.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from .contenders import API_KEY, FLOOR, OURS, floor_prediction, floor_session, floor_wait
from .emulator_process import EmulatorProcess
from .inflight import GcPauses, Ticker, census, per, timed_close
from .probes import SUBMIT_GATE, rss_bytes, run_probe
from .scenarios import COLD, LONG, Plan, Result, Samples, record

CONTENDERS = (OURS, FLOOR)
Submit = Callable[[int], Awaitable[Any]]
Wait = Callable[[Any], Awaitable[Any]]
Close = Callable[[list["asyncio.Task[None]"]], Awaitable[None]]


# --- the scenario (parent) --------------------------------------------------------------------


def scaling(plan: Plan, log: Callable[[str], None]) -> Result:
    """Every size in ``plan.scaling_counts``, this project then the floor, one probe each."""
    samples: Samples = {}
    with EmulatorProcess(1.0, {LONG: 36_000.0, COLD: 0.0}) as emu:
        for count in plan.scaling_counts:
            for contender in CONTENDERS:
                emu.reset()
                answer = run_probe(
                    contender, emu.base_url, LONG, COLD, str(count),
                    "--settle", str(plan.scaling_settle), module="benchmarks.scaling",
                )  # fmt: skip
                window = emu.count(answer["wall_start"], answer["wall_end"])
                requests = window["submits"] + window["results"]
                hold = emu.count(answer["hold_start"], answer["wall_end"])
                in_flight = answer["in_flight"]
                figures = {
                    "in_flight": in_flight,
                    "requests": requests,
                    "cpu_us_per_request": per(answer["cpu_s"] * 1e6, requests),
                    "cpu_us_per_check_held": per(answer["hold_cpu_s"] * 1e6, hold["results"]),
                    "checks_held": hold["results"],
                    "objects_per_prediction": per(answer["objects"], in_flight),
                    "bytes_per_prediction": per(answer["rss"], in_flight),
                    "worst_stall_ms": answer["worst_stall_s"] * 1000,
                    "worst_gc_pause_ms": answer["worst_gc_pause_s"] * 1000,
                    "gc_share_of_cpu": answer["gc_s"] / answer["cpu_s"],
                    "aclose_s": answer["close_s"],
                }
                record(samples, contender, **{f"{k}_{count}": v for k, v in figures.items()})
                log(f"scaling {count} {contender}: {figures}")
    params = {
        "counts": list(plan.scaling_counts),
        "settle_s": plan.scaling_settle,
        "submit_gate": SUBMIT_GATE,
    }
    return Result("scaling", params, samples)


# --- the probe (child) ------------------------------------------------------------------------


async def _measure(
    submit: Submit, wait: Wait, close: Close, count: int, settle: float
) -> dict[str, Any]:
    objects_idle, rss_idle = census(), rss_bytes()
    ticker, gate, submitted = Ticker(), asyncio.Semaphore(SUBMIT_GATE), 0
    all_submitted, one_ended = asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def one(index: int) -> None:
        nonlocal submitted
        try:
            handle = await submit(index)
        finally:
            gate.release()
        submitted += 1
        if submitted == count:
            all_submitted.set()
        await wait(handle)

    ticker.start()
    pauses = GcPauses().install()
    wall_start, cpu_start = time.time(), time.process_time()
    for index in range(count):  # a task once the gate admits it: no 30,000 waking at once
        await gate.acquire()
        tasks.append(asyncio.ensure_future(one(index)))
        tasks[-1].add_done_callback(lambda _: one_ended.set())
    await _first(all_submitted, one_ended)
    hold_start, hold_cpu = time.time(), time.process_time()
    await _first(_timer(settle), one_ended)  # every prediction is checked at least once
    cpu_s, wall_end = time.process_time() - cpu_start, time.time()
    hold_cpu_s = time.process_time() - hold_cpu
    if one_ended.is_set():
        ended = next(task for task in tasks if task.done())
        raise RuntimeError(f"a prediction ended while in flight: {ended!r}")
    in_flight = sum(not task.done() for task in tasks)
    ticker.pause()
    pauses.counting = False
    objects, rss = census() - objects_idle, rss_bytes() - rss_idle
    pauses.remove()
    ticker.resume()
    worst = ticker.worst
    close_s = await timed_close(lambda: close(tasks))
    await ticker.stop()
    return {
        "in_flight": in_flight,
        "wall_start": wall_start,
        "wall_end": wall_end,
        "cpu_s": cpu_s,
        "hold_start": hold_start,
        "hold_cpu_s": hold_cpu_s,
        "objects": objects,
        "rss": rss,
        "worst_stall_s": worst,
        "worst_gc_pause_s": pauses.worst,
        "gc_s": pauses.total,
        "close_s": close_s,
    }


def _timer(seconds: float) -> asyncio.Event:
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, event.set)
    return event


async def _first(*events: asyncio.Event) -> None:
    """Wait until one of ``events`` is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()


async def _ours(base_url: str, model: str, warm_model: str, count: int, settle: float) -> Any:
    from wavespeed_async import AsyncWaveSpeed

    client = await AsyncWaveSpeed(api_key=API_KEY, base_url=base_url).__aenter__()
    await client.run(warm_model, {"prompt": "warm-up"})

    async def submit(index: int) -> Any:
        return await client.submit(model, {"prompt": f"in flight {index}"})

    async def wait(future: Any) -> None:
        await future.wait(math.inf)

    async def close(tasks: list[asyncio.Task[None]]) -> None:
        await client.aclose()  # wakes every waiter with ClientClosed
        await asyncio.gather(*tasks, return_exceptions=True)

    return await _measure(submit, wait, close, count, settle)


async def _floor(base_url: str, model: str, warm_model: str, count: int, settle: float) -> Any:
    # The schedule ours falls back to (video: 2 s, then 5 s growing to 15 s): a fixed 5 s gap
    # would need 6,000 checks/s at 30,000 in flight, more than one core can send.
    from wavespeed_async import VIDEO_SCHEDULE as schedule

    session = floor_session()
    await floor_wait(session, await floor_prediction(session, base_url, warm_model, "w"), schedule)

    async def submit(index: int) -> Any:
        return await floor_prediction(session, base_url, model, f"in flight {index}")

    async def wait(data: Any) -> None:
        await floor_wait(session, data, schedule)

    async def close(tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()

    return await _measure(submit, wait, close, count, settle)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the probe process: prints one JSON line."""
    import json

    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling")
    parser.add_argument("contender", choices=CONTENDERS)
    parser.add_argument("base_url")
    parser.add_argument("model")
    parser.add_argument("warm_model")
    parser.add_argument("count", type=int)
    parser.add_argument("--settle", type=float, default=6.0)
    parser.add_argument("--profile", type=Path, help="write a pyinstrument profile here")
    args = parser.parse_args(argv)
    probe = _ours if args.contender == OURS else _floor
    run = probe(args.base_url, args.model, args.warm_model, args.count, args.settle)
    if args.profile is None:
        answer = asyncio.run(run)
    else:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        with profiler:
            answer = asyncio.run(run)
        args.profile.write_text(profiler.output_text(unicode=True, color=False))
    print(json.dumps(answer), flush=True)


def profile_scaling(count: int, path: Path) -> Path:
    """Profile this project's probe at ``count`` in flight (pyinstrument, text)."""
    with EmulatorProcess(1.0, {LONG: 36_000.0, COLD: 0.0}) as emu:
        run_probe(
            OURS, emu.base_url, LONG, COLD, str(count), "--profile", str(path.resolve()),
            module="benchmarks.scaling",
        )  # fmt: skip
    return path


if __name__ == "__main__":
    main()
