"""Local rate and concurrency limits: the token bucket's arithmetic and the running cap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from wavespeed_async import ACCOUNT_LEVELS, AsyncWaveSpeed, Limits, PollSchedule, Status
from wavespeed_async._wire.limits import SubmitRate
from wavespeed_async.emulator import Emulator
from wavespeed_async.errors import InvalidInput


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_ceiling_lets_a_minute_of_submits_through_then_queues_them() -> None:
    clock = FakeClock()
    rate = SubmitRate(120, clock)
    assert [rate.reserve() for _ in range(120)] == [0.0] * 120
    assert [rate.reserve() for _ in range(3)] == pytest.approx([0.5, 1.0, 1.5])
    clock.now += 60  # a minute refills the bucket (less the three queued)
    assert rate.reserve() == 0.0


def test_a_429_halves_the_rate_and_accepted_submits_bring_it_back() -> None:
    clock = FakeClock()
    rate = SubmitRate(500, clock)
    rate.on_rate_limited()
    assert rate.rate == 250
    assert rate.reserve() == 0.0  # the retry itself is timed by the retry policy
    assert rate.reserve() == pytest.approx(60 / 250)
    for _ in range(249):
        rate.on_accepted()
    assert rate.rate == 499
    rate.on_accepted()
    rate.on_accepted()
    assert rate.rate == 500  # never above the configured ceiling


def test_a_burst_of_429s_halves_the_rate_once() -> None:
    clock = FakeClock()
    rate = SubmitRate(400, clock)
    for _ in range(10):
        rate.on_rate_limited()
    assert rate.rate == 200
    clock.now += 2
    rate.on_rate_limited()
    assert rate.rate == 100


def test_without_a_ceiling_a_429_throttles_to_half_the_recent_rate_then_lifts() -> None:
    clock = FakeClock()
    rate = SubmitRate(None, clock)
    assert [rate.reserve() for _ in range(400)] == [0.0] * 400
    rate.on_rate_limited()
    assert rate.rate == 200
    for _ in range(599):
        rate.on_accepted()
    assert rate.rate == 799
    rate.on_accepted()
    assert rate.rate is None  # four times the throttled rate: the cap lifts
    assert rate.reserve() == 0.0


def test_the_rate_never_falls_below_the_floor_or_a_lower_ceiling() -> None:
    clock = FakeClock()
    lone = SubmitRate(None, clock)
    lone.reserve()
    lone.on_rate_limited()
    assert lone.rate == 60  # one submit and a 429 must not mean one a minute
    bronze = SubmitRate(2, clock)
    for _ in range(5):
        bronze.on_rate_limited()
        clock.now += 2
    assert bronze.rate == 2


def test_account_level_presets() -> None:
    assert Limits.for_level("Bronze") == Limits(submits_per_minute=2, max_concurrent_tasks=2)
    assert ACCOUNT_LEVELS["ultra"].max_concurrent_tasks == 10000
    with pytest.raises(ValueError, match="bronze, silver, gold, ultra"):
        Limits.for_level("platinum")
    with pytest.raises(ValueError, match="max_concurrent_tasks"):
        Limits(max_concurrent_tasks=0)


def test_the_bucket_refills_a_minutes_worth_per_minute() -> None:
    clock = FakeClock()
    rate = SubmitRate(60, clock)
    for _ in range(60):
        rate.reserve()
    clock.now += 1  # one second refills one submit at 60 a minute, not 3,600
    assert rate.reserve() == 0.0
    assert rate.reserve() == pytest.approx(1.0)
    clock.now += 3600  # a long pause refills the bucket to a minute's worth, no more
    assert [rate.reserve() for _ in range(60)] == [0.0] * 60
    assert rate.reserve() == pytest.approx(1.0)


def test_queued_submits_wait_one_interval_each_at_the_current_rate() -> None:
    clock = FakeClock()
    rate = SubmitRate(30, clock)
    for _ in range(30):
        rate.reserve()
    assert [rate.reserve() for _ in range(2)] == pytest.approx([2.0, 4.0])


def test_a_429_with_an_empty_bucket_does_not_delay_the_retry() -> None:
    clock = FakeClock()
    rate = SubmitRate(None, clock)
    for _ in range(100):
        assert rate.reserve() == 0.0
    rate.on_rate_limited()  # Retry-After: 0, say: the retry must go at once
    assert rate.reserve() == 0.0
    assert rate.reserve() == pytest.approx(60 / 60)  # the submits after it are paced
    ceiling = SubmitRate(120, clock)
    for _ in range(125):
        ceiling.reserve()
    clock.now += 2.5  # enough for the five queued ones: the bucket is empty again
    ceiling.on_rate_limited()
    assert ceiling.reserve() == 0.0


def test_a_429_leaves_one_token_even_when_the_bucket_was_full() -> None:
    clock = FakeClock()
    rate = SubmitRate(600, clock)
    rate.on_rate_limited()
    assert rate.rate == 300
    assert rate.reserve() == 0.0
    assert rate.reserve() == pytest.approx(60 / 300)


def test_429s_more_than_a_second_apart_each_halve_the_rate() -> None:
    clock = FakeClock()
    rate = SubmitRate(1000, clock)
    rate.on_rate_limited()
    clock.now += 0.99
    rate.on_rate_limited()
    assert rate.rate == 500
    clock.now += 0.02
    rate.on_rate_limited()
    assert rate.rate == 250


def test_without_a_ceiling_nothing_waits_and_accepted_submits_change_nothing() -> None:
    clock = FakeClock()
    rate = SubmitRate(None, clock)
    rate.on_accepted()
    assert rate.rate is None
    assert [rate.reserve() for _ in range(10_000)] == [0.0] * 10_000


def test_without_a_ceiling_only_the_last_minute_of_submits_counts() -> None:
    clock = FakeClock()
    rate = SubmitRate(None, clock)
    for _ in range(300):
        rate.reserve()
    clock.now += 61
    for _ in range(200):
        rate.reserve()
    rate.on_rate_limited()
    assert rate.rate == 100  # half of the 200 sent in the last minute


@pytest.mark.parametrize("value", [2.5, True, False, 0, -1, "3", 1e9 + 0.5])
def test_max_concurrent_tasks_must_be_a_positive_whole_number(value: object) -> None:
    with pytest.raises(InvalidInput, match="max_concurrent_tasks"):
        Limits(max_concurrent_tasks=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -0.5, True, "60", float("inf"), float("nan")])
def test_submits_per_minute_must_be_a_positive_number(value: object) -> None:
    with pytest.raises(InvalidInput, match="submits_per_minute"):
        Limits(submits_per_minute=value)  # type: ignore[arg-type]


def test_limits_accept_positive_numbers_and_none() -> None:
    assert Limits(submits_per_minute=0.5, max_concurrent_tasks=1).max_concurrent_tasks == 1
    assert Limits() == Limits(submits_per_minute=None, max_concurrent_tasks=None)
    assert Limits.for_level(" GOLD ") == Limits(submits_per_minute=3000, max_concurrent_tasks=3000)
    assert Limits.for_level("silver") == Limits(500, 300)
    assert Limits.for_level("ultra") == Limits(5000, 10000)


@pytest.mark.anyio
async def test_max_concurrent_tasks_caps_tasks_running_on_the_platform() -> None:
    fast = PollSchedule(first_delay=0.001, min_interval=0.002, max_interval=0.005)
    async with Emulator(speed=1000) as emu:
        async with AsyncWaveSpeed(
            api_key="k",
            base_url=emu.base_url,
            poll_schedule=fast,
            limits=Limits(max_concurrent_tasks=3),
        ) as client:
            results = [
                await f for f in [await client.submit("m/x", {"prompt": f"{i}"}) for i in range(3)]
            ]
            results += await asyncio.gather(
                *(client.run("m/x", {"prompt": f"more {i}"}) for i in range(20))
            )
        tasks = sorted(emu.tasks.values(), key=lambda t: t.submitted_at)
    assert {r.status for r in results} == {Status.COMPLETED}
    for task in tasks:
        running = [
            other for other in tasks if other.submitted_at < task.submitted_at < other.finishes_at
        ]
        assert len(running) <= 2, "a fourth task started while three were running"


def invalid(call: Callable[[], object]) -> tuple[str, object, str]:
    with pytest.raises(InvalidInput) as info:
        call()
    return info.value.field, info.value.value, info.value.allowed


def test_limit_errors_name_the_field_the_value_and_what_is_allowed() -> None:
    assert invalid(lambda: Limits(submits_per_minute=-1)) == (
        "submits_per_minute",
        -1,
        "a positive number or None",
    )
    assert invalid(lambda: Limits(max_concurrent_tasks=2.5)) == (  # type: ignore[arg-type]
        "max_concurrent_tasks",
        2.5,
        "a positive whole number or None",
    )
    assert invalid(lambda: Limits.for_level("platinum")) == (
        "level",
        "platinum",
        "one of bronze, silver, gold, ultra",
    )


def test_a_429_exactly_one_second_after_the_last_decrease_halves_again() -> None:
    clock = FakeClock()
    rate = SubmitRate(1000, clock)
    rate.on_rate_limited()
    clock.now += 1.0
    rate.on_rate_limited()
    assert rate.rate == 250


def test_a_submit_exactly_a_minute_old_still_counts_as_recent() -> None:
    clock = FakeClock()
    rate = SubmitRate(None, clock)
    for _ in range(300):
        rate.reserve()
    clock.now += 60
    rate.reserve()
    rate.on_rate_limited()
    assert rate.rate == 150.5


def test_a_partly_refilled_bucket_sends_at_once() -> None:
    clock = FakeClock()
    rate = SubmitRate(60, clock)
    for _ in range(60):
        rate.reserve()
    clock.now += 1.5
    assert rate.reserve() == 0.0  # half a token is left over, not a negative wait
    assert rate.reserve() == pytest.approx(0.5)
