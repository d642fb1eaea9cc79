"""Ultra: a sustained 42 submits/s with ~5,000 in flight, as an ultra-level account runs.

Tasks last ``ultra_duration`` s (+- ``ultra_spread``) on a real-time emulator; the probe
submits at ``ultra_rate`` per second, paced from a fixed start, for a ramp (until the first
tasks finish and as many finish as start: rate x duration in flight), then for a measured
window. In the window: the client's CPU as a share of one core, submits achieved against
intended, requests per second, and the worst lateness of a 10 ms ticker; over the run, each
task's detection lag. This project runs with ``Limits.for_level("ultra")`` and its learned
schedule, warm (``poll_stats.load``, as a long-lived service would); the floor polls on the
fixed first delay and gap that same learned schedule picks.

`python -m benchmarks.ultra CONTENDER BASE_URL MODEL WARM_MODEL ...` is the probe.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from .contenders import API_KEY, FLOOR, OURS, Fixed, floor_prediction, floor_session, floor_wait
from .emulator_process import EmulatorProcess
from .inflight import GcPauses, Ticker
from .probes import run_probe
from .scenarios import COLD, Plan, Result, Samples, percentile, record

CONTENDERS = (OURS, FLOOR)
MODEL = "wavespeed-ai/bench-ultra-video"


# --- the scenario (parent) --------------------------------------------------------------------


def ultra(plan: Plan, log: Callable[[str], None]) -> Result:
    """Both contenders, one fresh probe process each, against one real-time emulator."""
    samples: Samples = {}
    rng = random.Random(42)
    spread, duration = plan.ultra_spread, plan.ultra_duration
    known = [duration * (1 + spread * (2 * rng.random() - 1)) for _ in range(200)]
    ramp = duration * (1 + spread)
    first, gap = _learned_cadence(known)
    vary = {MODEL: ("uniform", spread)}
    with EmulatorProcess(1.0, {MODEL: duration, COLD: 0.0}, vary=vary) as emu:
        for contender in CONTENDERS:
            emu.reset()
            answer = run_probe(
                contender, emu.base_url, MODEL, COLD, "--rate", str(plan.ultra_rate),
                "--ramp", str(ramp), "--window", str(plan.ultra_window),
                "--known", json.dumps(known), "--first", str(first), "--gap", str(gap),
                module="benchmarks.ultra", timeout=ramp + plan.ultra_window + 300,
            )  # fmt: skip
            window = emu.count(answer["wall_start"], answer["wall_end"])
            lags = sorted(lag for lag in emu.stats()["models"][MODEL]["lags"] if lag is not None)
            seconds = answer["window_s"]
            figures = {
                "cpu_share_of_core": answer["cpu_s"] / seconds,
                "submits_achieved_over_intended": answer["submits"] / answer["intended"],
                "requests_per_s": (window["submits"] + window["results"]) / seconds,
                "checks_per_s": window["results"] / seconds,
                "in_flight": answer["in_flight"],
                "lag_p50_s": percentile(lags, 50),
                "lag_p95_s": percentile(lags, 95),
                "worst_stall_ms": answer["worst_stall_s"] * 1000,
                "worst_gc_pause_ms": answer["worst_gc_pause_s"] * 1000,
                "failed": answer["failed"],
            }
            record(samples, contender, **figures)
            log(f"ultra {contender}: {figures}")
    params = {
        "rate_per_s": plan.ultra_rate,
        "duration_s": duration,
        "spread": spread,
        "ramp_s": ramp,
        "window_s": plan.ultra_window,
        "floor_cadence_s": [round(first, 2), round(gap, 2)],
    }
    return Result("ultra", params, samples)


def _learned_cadence(known: list[float]) -> tuple[float, float]:
    """The first delay and the gap this project's learned schedule picks (without jitter)."""
    from wavespeed_async import VIDEO_SCHEDULE
    from wavespeed_async._engine.polling import LearnedSchedule, PollStats

    stats = PollStats()
    stats.load({MODEL: known})
    schedule = LearnedSchedule(MODEL, stats, VIDEO_SCHEDULE)
    return schedule.next_delay(0, 0.0, lambda: 0.0), schedule.next_delay(1, 1e9, lambda: 0.0)


# --- the probe (child) ------------------------------------------------------------------------


async def _paced(
    one: Callable[[int], Coroutine[Any, Any, None]],
    submitted: list[float],
    close: Callable[[], Awaitable[None]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Start ``one(i)`` at ``args.rate`` per second; measure the window after the ramp.

    ``one`` appends the loop time of each submit's answer to ``submitted``.
    """
    rate, ramp, window = args.rate, args.ramp, args.window
    loop, ticker = asyncio.get_running_loop(), Ticker()
    ticker.start()
    pauses = GcPauses().install()
    tasks: list[asyncio.Task[None]] = []
    first_measured, total = int(rate * ramp), int(rate * (ramp + window))
    start = loop.time()
    marks: dict[str, float] = {}
    for index in range(total + 1):
        delay = start + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if index == first_measured:  # the window opens
            ticker.worst = pauses.worst = 0.0
            marks.update(at=loop.time(), wall=time.time(), cpu=time.process_time())
            marks["started"] = len(tasks)
        if index < total:
            tasks.append(loop.create_task(one(index)))
    cpu_s, wall_end = time.process_time() - marks["cpu"], time.time()
    window_s = loop.time() - marks["at"]
    ended = [task for task in tasks if task.done()]
    answer = {
        "wall_start": marks["wall"],
        "wall_end": wall_end,
        "window_s": window_s,
        "cpu_s": cpu_s,
        "intended": total - first_measured,
        "submits": sum(at >= marks["at"] for at in submitted),
        "in_flight": len(tasks) - len(ended),
        "worst_stall_s": ticker.worst,
        "worst_gc_pause_s": pauses.worst,
        "failed": sum(not task.cancelled() and task.exception() is not None for task in ended),
    }
    pauses.remove()
    await ticker.stop()
    await close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return answer


async def _probe(args: argparse.Namespace) -> dict[str, Any]:
    submitted: list[float] = []  # loop times of the submits' answers
    loop = asyncio.get_running_loop()
    if args.contender == OURS:
        from wavespeed_async import AsyncWaveSpeed, Limits

        client = await AsyncWaveSpeed(
            api_key=API_KEY, base_url=args.base_url, limits=Limits.for_level("ultra")
        ).__aenter__()
        client.poll_stats.load({args.model: json.loads(args.known)})
        await client.run(args.warm_model, {"prompt": "warm-up"})

        async def one(index: int) -> None:
            future = await client.submit(args.model, {"prompt": f"ultra {index}"})
            submitted.append(loop.time())
            await future.wait(math.inf)

        close: Callable[[], Awaitable[None]] = client.aclose
    else:
        session, schedule = floor_session(), Fixed(args.first, args.gap)
        await floor_wait(
            session, await floor_prediction(session, args.base_url, args.warm_model, "w"), schedule
        )

        async def one(index: int) -> None:
            data = await floor_prediction(session, args.base_url, args.model, f"ultra {index}")
            submitted.append(loop.time())
            await floor_wait(session, data, schedule)

        close = session.close
    return await _paced(one, submitted, close, args)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the probe process: prints one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ultra")
    parser.add_argument("contender", choices=CONTENDERS)
    parser.add_argument("base_url")
    parser.add_argument("model")
    parser.add_argument("warm_model")
    parser.add_argument("--rate", type=float, required=True, help="submits per second")
    parser.add_argument("--ramp", type=float, required=True, help="seconds before the window")
    parser.add_argument("--window", type=float, required=True, help="seconds measured")
    parser.add_argument("--known", default="[]", help="JSON list of durations to learn from")
    parser.add_argument("--first", type=float, default=1.0, help="the floor's first delay")
    parser.add_argument("--gap", type=float, default=1.0, help="the floor's gap after it")
    print(json.dumps(asyncio.run(_probe(parser.parse_args(argv)))), flush=True)


if __name__ == "__main__":
    main()
