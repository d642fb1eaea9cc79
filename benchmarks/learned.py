"""Learned polling: tasks whose durations spread lognormally, after a warm-up of the client.

Per kind (video-like: median 60 s, image-like: median 20 s, both sigma 0.25) the emulator runs
on a scaled clock and every contender's cadence is scaled by the same factor:

- `wavespeed-async`: the default, learned schedule, warmed by ``learned_warmup`` tasks of the
  same model first, with the kind's fallback schedule scaled to the clock (its floors are the
  fallback's ``min_interval``: 5 s for videos, 2 s for images);
- `wavespeed-async fixed`: today's ``VIDEO_SCHEDULE`` / ``IMAGE_SCHEDULE``, scaled;
- `floor`: raw aiohttp on that same fixed schedule;
- `official`: the official SDK's fixed 1 s, scaled.

It reports result checks per task and the detection lag, in seconds and as % of the task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from wavespeed_async import IMAGE_SCHEDULE, VIDEO_SCHEDULE, PollSchedule

from .contenders import API_KEY, FLOOR, OFFICIAL, OURS, Batch
from .emulator_process import EmulatorProcess
from .scenarios import Plan, Result, Samples, correct, polling_figures, prompts, record, timed

OURS_FIXED = "wavespeed-async fixed"
#: The learned scenario's contenders, in table order.
LEARNED_NAMES = (OURS, OURS_FIXED, FLOOR, OFFICIAL)
KINDS = {
    "video": ("wavespeed-ai/bench-learned-video", VIDEO_SCHEDULE),
    "image": ("wavespeed-ai/bench-learned-image", IMAGE_SCHEDULE),
}


def learned(plan: Plan, log: Callable[[str], None]) -> Result:
    """Checks per task and lag for each kind, the learned schedule against fixed ones."""
    samples: Samples = {}
    learnt: dict[str, Any] = {}
    count = plan.learned_count
    for kind, (model, fallback) in KINDS.items():
        speed = plan.learned_speeds[kind]
        scaled = fallback.scaled(1 / speed)
        vary = {model: ("lognormal", plan.learned_sigma)}
        durations = {model: plan.learned_medians[kind]}
        with EmulatorProcess(speed, durations, vary=vary) as emu:
            for contender in LEARNED_NAMES:
                batch = Batch(
                    emu.base_url, model, prompts(f"l {kind} {contender}", count), count, scaled,
                    1 / speed,
                )  # fmt: skip
                if contender == OURS:
                    completed, stats, summary = _run_learned(emu, batch, plan.learned_warmup)
                    # the client's clock is real time: in emulated seconds, the learnt figures
                    learnt[kind] = [round(value * speed, 2) for value in summary or ()]
                else:
                    run = OURS if contender == OURS_FIXED else contender
                    completed, _, _, stats = timed(emu, run, batch)
                figures = polling_figures(kind, stats["models"][model])
                figures[f"{kind}_correct"] = correct(count, completed, stats)
                record(samples, contender, **figures)
                log(
                    f"learned {kind} {contender}: {figures[f'{kind}_checks_per_prediction']:.2f}"
                    f" checks, p95 lag {figures[f'{kind}_lag_p95_pct']:.1f}% of the task"
                )
    params = {
        "tasks_per_kind": count,
        "warmup": plan.learned_warmup,
        "medians_s": plan.learned_medians,
        "sigma": plan.learned_sigma,
        "speeds": plan.learned_speeds,
        "learnt_low_quantile_and_median_s": learnt,
    }
    return Result("learned", params, samples)


def _run_learned(
    emu: EmulatorProcess, batch: Batch, warmup: int
) -> tuple[int, dict[str, Any], tuple[float, float] | None]:
    """Warm a client up on ``warmup`` tasks, then run ``batch`` on what it learnt."""
    return asyncio.run(_learned(emu, batch, warmup))


async def _learned(
    emu: EmulatorProcess, batch: Batch, warmup: int
) -> tuple[int, dict[str, Any], tuple[float, float] | None]:
    from wavespeed_async import AsyncWaveSpeed, Status

    assert isinstance(batch.schedule, PollSchedule)
    # The default, learned schedule, with every delay (and so the platform's floors) scaled to
    # the emulator's clock; the emulator's run times are on that clock too.
    async with AsyncWaveSpeed(
        api_key=API_KEY, base_url=batch.base_url, time_scale=batch.poll_interval
    ) as client:

        async def run(prompt: str) -> bool:
            prediction = await client.run(batch.model, {"prompt": prompt})
            return prediction.status is Status.COMPLETED

        await asyncio.gather(*(run(prompt) for prompt in prompts(f"warm-up {batch.model}", warmup)))
        emu.reset()  # blocks the loop for a moment, with nothing in flight
        done = await asyncio.gather(
            *(run(prompt) for prompt in batch.prompts), return_exceptions=True
        )
        summary = client.poll_stats.summary(batch.model)
    return sum(outcome is True for outcome in done), emu.stats(), summary
