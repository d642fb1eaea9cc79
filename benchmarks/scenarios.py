"""The five scenarios. Each returns, per contender, a list of per-round values for each metric.

The emulator always runs in its own process (:class:`EmulatorProcess`), so the harness's CPU
time and the probes' memory are the client's alone. Contenders alternate within a round, in an
order rotated every round, and every round checks correctness on the server's side: exactly one
task per prediction, none resent, all completed.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wavespeed_async import IMAGE_SCHEDULE, VIDEO_SCHEDULE, PollSchedule

from .contenders import CONTENDERS, NAMES, OFFICIAL, OURS, Batch, Fixed, Schedule
from .emulator_process import EmulatorProcess
from .probes import SUBMIT_GATE, import_seconds, run_probe

INSTANT = "wavespeed-ai/bench-instant"  # done 1 ms after submit: one check sees it
COLD = "wavespeed-ai/bench-cold"  # done at submit
BATCH = "wavespeed-ai/bench-batch"
IMAGE = "wavespeed-ai/bench-image"
VIDEO = "wavespeed-ai/bench-video"  # "video" in the id: the client picks its video schedule
LONG = "wavespeed-ai/bench-long-video"
#: What the client picks by itself for each model id (video ids poll more slowly).
SCHEDULES = {BATCH: IMAGE_SCHEDULE, IMAGE: IMAGE_SCHEDULE, VIDEO: VIDEO_SCHEDULE}
#: Overhead pacing: every contender checks 5 ms after submitting, then every 5 ms.
FAST = Fixed(0.005, 0.005)

Samples = dict[str, dict[str, list[float]]]  # contender -> metric -> one value per round


@dataclass(frozen=True)
class Plan:
    """Sizes of every scenario: the full run, or a ``--quick`` smoke run."""

    rounds: int = 5
    official_pool: int = 64
    overhead_count: int = 2000
    batch_count: int = 1000
    batch_cap: int = 256
    batch_duration: float = 2.0
    batch_speed: float = 1.0
    batch_rounds: int = 3
    memory_count: int = 10_000
    memory_settle: float = 3.0
    polling_count: int = 64
    #: Emulated seconds per real second: images in real time, videos 10x faster.
    polling_speeds: dict[str, float] = field(default_factory=lambda: {"image": 1.0, "video": 10.0})
    polling_rounds: int = 3
    #: Each task lasts its nominal duration +- this fraction (see ``vary_durations``).
    polling_spread: float = 1 / 6
    polling_durations: dict[str, float] = field(
        default_factory=lambda: {"image": 3.0, "video": 60.0}
    )

    #: In flight at once in the scaling scenario; polling this long before measuring.
    scaling_counts: tuple[int, ...] = (1_000, 10_000, 30_000)
    scaling_settle: float = 6.0
    #: Learned polling: durations lognormal around each kind's median, on a scaled clock.
    learned_medians: dict[str, float] = field(
        default_factory=lambda: {"video": 60.0, "image": 20.0}
    )
    learned_speeds: dict[str, float] = field(default_factory=lambda: {"video": 10.0, "image": 5.0})
    learned_sigma: float = 0.25
    learned_warmup: int = 50
    learned_count: int = 100
    #: Ultra: submits per second, task duration (s, +- spread), ramp-up then measured window.
    ultra_rate: float = 42.0
    ultra_duration: float = 119.0
    ultra_spread: float = 0.05
    ultra_window: float = 40.0

    @classmethod
    def quick(cls) -> Plan:
        """Tens of predictions, one round, a faster clock: well under a minute on 2 cores."""
        return cls(
            rounds=1,
            official_pool=16,
            overhead_count=40,
            batch_count=40,
            batch_cap=16,
            batch_speed=4.0,
            batch_rounds=1,
            memory_count=200,
            memory_settle=2.5,
            polling_count=8,
            polling_speeds={"image": 4.0, "video": 20.0},
            polling_rounds=1,
            scaling_counts=(1_000,),
            scaling_settle=2.5,
            learned_speeds={"video": 40.0, "image": 20.0},
            learned_warmup=30,
            learned_count=20,
            ultra_duration=4.0,
            ultra_window=2.0,
        )


@dataclass
class Result:
    """One scenario's figures and the parameters that produced them."""

    name: str
    params: dict[str, Any]
    samples: Samples


def orders(names: Sequence[str], rounds: int) -> Iterator[tuple[int, list[str]]]:
    """Each round's running order, rotated so no contender always goes first."""
    for index in range(rounds):
        shift = index % len(names)
        yield index, [*names[shift:], *names[:shift]]


def prompts(tag: str, count: int) -> tuple[str, ...]:
    """Unique prompts, so a resent submit shows in ``created_per_payload``."""
    return tuple(f"{tag} {index}" for index in range(count))


def record(samples: Samples, contender: str, **values: float) -> None:
    for metric, value in values.items():
        samples.setdefault(contender, {}).setdefault(metric, []).append(value)


def timed(
    emu: EmulatorProcess, contender: str, batch: Batch
) -> tuple[int, float, float, dict[str, Any]]:
    """Run a contender: (completed, wall seconds, client CPU seconds, the server's stats)."""
    emu.reset()
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    completed = CONTENDERS[contender](batch)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return completed, wall, cpu, emu.stats()


def correct(count: int, completed: int, stats: dict[str, Any]) -> float:
    return float(completed == count and stats["tasks"] == count and stats["resent"] == 0)


def _batch(
    emu: EmulatorProcess, model: str, tag: str, count: int, concurrency: int, speed: float
) -> Callable[[str, Schedule], Batch]:
    return lambda contender, schedule: Batch(
        emu.base_url, model, prompts(f"{tag} {contender}", count), concurrency, schedule, 1 / speed
    )


# --- scenarios -------------------------------------------------------------------------------


def overhead(plan: Plan, log: Callable[[str], None]) -> Result:
    """Instant predictions: client CPU per prediction and wall time."""
    count = plan.overhead_count
    samples: Samples = {}
    with EmulatorProcess(1.0, {INSTANT: 0.001}) as emu:
        for contender in NAMES:  # untimed: imports, connection set-up, generated converters
            warm_up = min(count, 100)
            timed(emu, contender, Batch(
                emu.base_url, INSTANT, prompts(f"warm-up {contender}", warm_up), warm_up, FAST,
                FAST.interval,
            ))  # fmt: skip
        for round_index, order in orders(NAMES, plan.rounds):
            for contender in order:
                pool = plan.official_pool if contender == OFFICIAL else count
                batch = Batch(
                    emu.base_url, INSTANT, prompts(f"o{round_index} {contender}", count), pool,
                    FAST, FAST.interval,
                )  # fmt: skip
                completed, wall, cpu, stats = timed(emu, contender, batch)
                record(
                    samples,
                    contender,
                    cpu_ms_per_prediction=cpu / count * 1000,
                    wall_s=wall,
                    requests_per_prediction=(stats["submits"] + stats["results"]) / count,
                    correct=correct(count, completed, stats),
                )
                log(f"overhead round {round_index + 1} {contender}: {wall:.2f} s, CPU {cpu:.2f} s")
    params = {"predictions": count, "official_pool": plan.official_pool, "poll_s": 0.005}
    return Result("overhead", params, samples)


def batch(plan: Plan, log: Callable[[str], None]) -> Result:
    """Predictions of 2 s each, at most ``batch_cap`` at a time: wall time and requests."""
    count, cap, speed = plan.batch_count, plan.batch_cap, plan.batch_speed
    samples: Samples = {}
    schedule = SCHEDULES[BATCH].scaled(1 / speed)
    with EmulatorProcess(speed, {BATCH: plan.batch_duration}) as emu:
        for round_index, order in orders(NAMES, plan.batch_rounds):
            make = _batch(emu, BATCH, f"b{round_index}", count, cap, speed)
            for contender in order:
                completed, wall, cpu, stats = timed(emu, contender, make(contender, schedule))
                requests = stats["submits"] + stats["results"]
                record(
                    samples,
                    contender,
                    wall_s=wall,
                    requests=requests,
                    requests_per_prediction=requests / count,
                    cpu_s=cpu,
                    correct=correct(count, completed, stats),
                )
                log(f"batch round {round_index + 1} {contender}: {wall:.2f} s, {requests} requests")
    params = {
        "predictions": count,
        "concurrency": cap,
        "official_pool": cap,
        "duration_s": plan.batch_duration,
        "speed": speed,
    }
    return Result("batch", params, samples)


def polling(plan: Plan, log: Callable[[str], None]) -> Result:
    """Image-like and video-like tasks: result checks per prediction and detection lag.

    Each kind runs on its own clock (``polling_speeds``): every contender's cadence is scaled
    by the same factor, so it polls as it would in real time relative to the task.
    """
    count = plan.polling_count
    samples: Samples = {}
    for kind, model in (("image", IMAGE), ("video", VIDEO)):
        speed, duration = plan.polling_speeds[kind], plan.polling_durations[kind]
        schedule = SCHEDULES[model].scaled(1 / speed)
        with EmulatorProcess(speed, {model: duration}, plan.polling_spread) as emu:
            for round_index, order in orders(NAMES, plan.polling_rounds):
                make = _batch(emu, model, f"p{round_index} {kind}", count, count, speed)
                for contender in order:
                    completed, _, _, stats = timed(emu, contender, make(contender, schedule))
                    figures = polling_figures(kind, stats["models"][model])
                    figures[f"{kind}_correct"] = correct(count, completed, stats)
                    record(samples, contender, **figures)
                    checks, p95 = (
                        figures[f"{kind}_checks_per_prediction"],
                        figures[f"{kind}_lag_p95_s"],
                    )
                    log(
                        f"polling round {round_index + 1} {kind} {contender}: "
                        f"{checks:.1f} checks, p95 lag {p95:.2f} s"
                    )
    params = {
        "predictions_per_kind": count,
        "official_pool": count,
        "speeds": plan.polling_speeds,
        "durations_s": plan.polling_durations,
        "duration_spread": plan.polling_spread,
        "schedules": {
            "image": _describe(SCHEDULES[IMAGE]),
            "video": _describe(SCHEDULES[VIDEO]),
            "official": "every 1 s",
        },
    }
    return Result("polling", params, samples)


def polling_figures(kind: str, figures: dict[str, list[Any]]) -> dict[str, float]:
    """Checks per task and detection lag (s, and % of the task) from the emulator's stats."""
    seen = [
        (lag, 100 * lag / task)
        for lag, task in zip(figures["lags"], figures["duration"], strict=True)
        if lag is not None
    ]
    lags, shares = sorted(lag for lag, _ in seen), sorted(pct for _, pct in seen)
    return {
        f"{kind}_checks_per_prediction": statistics.fmean(figures["checks"]),
        f"{kind}_lag_median_s": percentile(lags, 50),
        f"{kind}_lag_p95_s": percentile(lags, 95),
        f"{kind}_lag_median_pct": percentile(shares, 50),
        f"{kind}_lag_p95_pct": percentile(shares, 95),
    }


def memory(plan: Plan, log: Callable[[str], None]) -> Result:
    """Many long predictions in flight at once: RSS of a fresh client process."""
    samples: Samples = {}
    with EmulatorProcess(1.0, {LONG: 36_000.0, COLD: 0.0}) as emu:
        for contender in NAMES:
            emu.reset()
            count = plan.official_pool if contender == OFFICIAL else plan.memory_count
            answer = run_probe(
                "memory", contender, emu.base_url, LONG, COLD, str(count),
                "--settle", str(plan.memory_settle),
            )  # fmt: skip
            above_idle = answer["in_flight_rss"] - answer["idle_rss"]
            record(
                samples,
                contender,
                in_flight=answer["in_flight"],
                idle_rss_mb=answer["idle_rss"] / 2**20,
                in_flight_rss_mb=answer["in_flight_rss"] / 2**20,
                peak_rss_mb=answer["peak_rss"] / 2**20,
                bytes_per_in_flight=above_idle / answer["in_flight"],
            )
            log(f"memory {contender}: {answer['in_flight']} in flight, {answer}")
    params = {
        "in_flight": plan.memory_count,
        "official_pool": plan.official_pool,
        "submit_gate": SUBMIT_GATE,
        "settle_s": plan.memory_settle,
    }
    return Result("memory", params, samples)


def startup(plan: Plan, log: Callable[[str], None]) -> Result:
    """``import`` time, and a cold process's time to its first completed prediction."""
    samples: Samples = {}
    with EmulatorProcess(1.0, {COLD: 0.0}) as emu:
        for round_index, order in orders(NAMES, plan.rounds):
            for contender in order:
                imported = import_seconds(contender)
                answer = run_probe("cold", contender, emu.base_url, COLD)
                record(
                    samples,
                    contender,
                    import_ms=imported * 1000,
                    cold_first_prediction_ms=answer["process_s"] * 1000,
                    correct=float(answer["completed"] == 1),
                )
            log(f"startup round {round_index + 1} done")
    return Result("startup", {"model_duration_s": 0.0}, samples)


def profile_overhead(plan: Plan, path: Path) -> Path:
    """Profile `wavespeed-async` in the overhead scenario (pyinstrument, text, our frames)."""
    from pyinstrument import Profiler

    count = plan.overhead_count
    with EmulatorProcess(1.0, {INSTANT: 0.001}) as emu:
        make = _batch(emu, INSTANT, "profile", count, count, 1.0)
        CONTENDERS[OURS](make(OURS + " warm-up", FAST))
        emu.reset()
        profiler = Profiler(interval=0.0005)
        with profiler:
            CONTENDERS[OURS](make(OURS, FAST))
    path.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    return path


SCENARIOS: dict[str, Callable[[Plan, Callable[[str], None]], Result]] = {
    "overhead": overhead,
    "batch": batch,
    "polling": polling,
    "memory": memory,
    "startup": startup,
}


def percentile(ordered: Sequence[float], percent: float) -> float:
    """Linear interpolation between closest ranks (what numpy does by default)."""
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * percent / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _describe(schedule: PollSchedule) -> str:
    return (
        f"first {schedule.first_delay:g} s, then {schedule.min_interval:g} s growing x"
        f"{schedule.growth:g} to {schedule.max_interval:g} s, +{schedule.jitter:.0%} jitter"
    )
