"""The poll engine and the schedule that learns: what a user sees of both."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import anyio
import pytest

from wavespeed_async import NotFound, PollStats, Status
from wavespeed_async._engine.polling import IMAGE_SCHEDULE, VIDEO_SCHEDULE, LearnedSchedule
from wavespeed_async.emulator import Emulator

from .support import VIDEO, client_for

pytestmark = pytest.mark.anyio

MODEL = "test/learned-model"  # off the catalogue: free, an image, its duration set per test


def constant(value: float) -> Any:
    return lambda: value


# --- PollStats (pure) -----------------------------------------------------------------------


def test_stats_say_nothing_until_enough_samples() -> None:
    stats = PollStats(min_samples=3)
    stats.record("m", 10.0)
    stats.record("m", 20.0)
    assert stats.summary("m") is None
    stats.record("m", 30.0)
    assert stats.summary("m") == pytest.approx((11.0, 20.0))  # 5th percentile, median


def test_stats_keep_a_window_per_model_and_forget_the_stalest_model() -> None:
    stats = PollStats(window=3, max_models=2, min_samples=1)
    for seconds in (100.0, 1.0, 2.0, 3.0):
        stats.record("a", seconds)
    assert stats.export()["a"] == [1.0, 2.0, 3.0]  # the oldest sample left the window
    stats.record("b", 5.0)
    stats.record("a", 4.0)  # "a" is now the most recently updated
    stats.record("c", 6.0)
    assert set(stats.export()) == {"a", "c"}
    assert stats.summary("b") is None


def test_stats_ignore_durations_that_are_no_durations() -> None:
    stats = PollStats(min_samples=1)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        stats.record("m", bad)
    stats.record("", 5.0)
    assert stats.export() == {}


def test_exported_stats_load_into_a_new_process_and_give_the_same_summary() -> None:
    stats = PollStats()
    stats.load({VIDEO: [50.0 + i for i in range(30)]})
    again = PollStats()
    again.load(stats.export())
    assert again.summary(VIDEO) == stats.summary(VIDEO)
    with pytest.raises(ValueError, match="quantile"):
        PollStats(quantile=0.9)


# --- LearnedSchedule (pure) -----------------------------------------------------------------


def test_before_learning_the_schedule_is_the_platforms_etiquette() -> None:
    schedule = LearnedSchedule(VIDEO, PollStats(), VIDEO_SCHEDULE)
    for checks in range(6):
        assert schedule.next_delay(checks, 0.0, constant(0.5)) == VIDEO_SCHEDULE.next_delay(
            checks, 0.0, constant(0.5)
        )


def test_a_learned_video_is_checked_first_at_its_low_quantile_then_by_its_age() -> None:
    stats = PollStats()
    stats.load({VIDEO: [60.0] * 20})
    schedule = LearnedSchedule(VIDEO, stats, VIDEO_SCHEDULE)
    assert schedule.next_delay(0, 0.0, constant(0.0)) == 60.0
    assert schedule.next_delay(0, 45.0, constant(0.0)) == 15.0  # resumed late: what is left
    assert schedule.next_delay(1, 80.0, constant(0.0)) == pytest.approx(6.4)  # 8% of its age
    assert schedule.next_delay(5, 90.0, constant(0.99)) == pytest.approx(7.2 * 1.099)
    assert schedule.next_delay(1, 70.0, constant(0.0)) == pytest.approx(5.6)
    assert schedule.next_delay(1, 30.0, constant(0.0)) == 5.0  # never below the 5 s floor


def test_learned_gaps_never_break_the_platforms_floor_nor_exceed_the_cap() -> None:
    stats = PollStats()
    stats.load({"quick": [3.0] * 20, "slow": [3000.0] * 20})
    quick = LearnedSchedule("quick", stats, IMAGE_SCHEDULE)
    slow = LearnedSchedule("slow", stats, VIDEO_SCHEDULE)
    assert quick.next_delay(3, 10.0, constant(0.0)) == IMAGE_SCHEDULE.min_interval  # not 0.3 s
    assert slow.next_delay(3, 3000.0, constant(0.0)) == VIDEO_SCHEDULE.max_interval  # not 300 s


# --- the engine, against the emulator -------------------------------------------------------


def result_gets(emu: Emulator, prediction_id: str) -> int:
    return sum(1 for r in emu.requests if r.method == "GET" and prediction_id in r.path)


async def test_the_client_learns_a_models_duration_from_the_tasks_it_sees_finish() -> None:
    emu = Emulator(speed=100, durations={MODEL: 20.0})  # 0.2 s real per task
    async with emu, client_for(emu, poll_schedule=None, time_scale=0.01) as client:
        await asyncio.gather(*(client.run(MODEL, {"prompt": f"p{i}"}) for i in range(20)))
        summary = client.poll_stats.summary(MODEL)
    assert summary is not None
    low, median = summary
    assert 0.15 <= low <= median <= 1.0  # 0.2 s, seen by checks ~0.02-0.08 s apart


async def test_a_warm_client_checks_a_task_of_known_duration_once_or_twice() -> None:
    stats = PollStats()
    stats.load({MODEL: [0.2] * 20})  # real seconds: 20 emulated seconds at speed 100
    emu = Emulator(speed=100, durations={MODEL: 20.0})
    async with emu, client_for(emu, poll_schedule=None, time_scale=0.01, poll_stats=stats) as c:
        futures = [await c.submit(MODEL, {"prompt": f"p{i}"}) for i in range(10)]
        with anyio.fail_after(10):
            await asyncio.gather(*futures)
    checks = [result_gets(emu, f.id) for f in futures]
    assert max(checks) <= 2, checks  # the fallback schedule would need about six


async def test_a_failing_check_fails_only_the_waiters_of_that_future(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        good = await client.submit(MODEL, {"prompt": "exists"})
        ghost = client.prediction("no-such-task")
        results = await asyncio.gather(good.wait(5), ghost.wait(5), return_exceptions=True)
        assert not isinstance(results[0], BaseException)
        assert results[0].status is Status.COMPLETED
        assert isinstance(results[1], NotFound)
        assert results[1].prediction_id == "no-such-task"
        assert client.engine.watched == 0


async def test_thousands_of_waiting_futures_share_a_bounded_number_of_tasks() -> None:
    async with Emulator(speed=0) as emu, client_for(emu, max_connections=8) as client:
        futures = await asyncio.gather(
            *(client.submit(MODEL, {"prompt": f"p{i}"}) for i in range(2000))
        )
        waits = [asyncio.ensure_future(f.wait()) for f in futures]
        await anyio.sleep(0.05)  # several rounds of checks
        engine_tasks = [t for t in asyncio.all_tasks() if "_work" in repr(t.get_coro())]
        assert client.engine.watched == 2000
        assert 1 <= len(engine_tasks) <= 8
        emu.advance(60)
        with anyio.fail_after(20):
            done = await asyncio.gather(*waits)
    assert {p.status for p in done} == {Status.COMPLETED}


async def test_a_check_budget_is_never_exceeded() -> None:
    emu = Emulator(speed=0)
    async with emu, client_for(emu, max_checks_per_second=50) as client:
        futures = [await client.submit(MODEL, {"prompt": f"p{i}"}) for i in range(20)]
        waits = [asyncio.ensure_future(f.wait()) for f in futures]
        with anyio.fail_after(10):
            await emu.wait_for(lambda: sum(1 for r in emu.requests if r.method == "GET") >= 30)
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
    times = sorted(r.wall.timestamp() for r in emu.requests if r.method == "GET")
    # In any window of a second, at most the rate plus the one-token burst.
    worst = max(sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times))
    assert worst <= 51
    assert len(list(itertools.islice(times, 30))) == 30


async def test_a_task_done_by_its_first_check_is_learnt_from_its_run_time_not_the_check() -> None:
    # A 0.5 s task (emulated), finished by the clock before the first check (~10 ms in) can
    # be sent: the frozen clock moves only when the test says, so load cannot reorder them.
    emu = Emulator(speed=0, durations={MODEL: 0.5})
    async with emu, client_for(emu, poll_schedule=None, time_scale=0.01) as client:
        futures = [await client.submit(MODEL, {"prompt": f"p{i}"}) for i in range(5)]
        emu.advance(1)
        with anyio.fail_after(10):
            await asyncio.gather(*futures)
        learnt = client.poll_stats.export()[MODEL]
    assert len(learnt) == 5
    assert max(learnt) == pytest.approx(0.005)  # timings.inference, on the client's time scale
