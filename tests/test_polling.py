"""The poll schedule: soon first, then growing, never closer than the platform asks."""

from __future__ import annotations

import itertools

import pytest

from wavespeed_async import IMAGE_SCHEDULE, VIDEO_SCHEDULE, PollSchedule
from wavespeed_async._engine.polling import RECONCILE_SCHEDULE, schedule_for
from wavespeed_async.errors import InvalidInput


def first(schedule: PollSchedule, count: int, uniform: float) -> list[float]:
    return list(itertools.islice(schedule.delays(lambda: uniform), count))


@pytest.mark.parametrize(("schedule", "minimum"), [(IMAGE_SCHEDULE, 2.0), (VIDEO_SCHEDULE, 5.0)])
@pytest.mark.parametrize("uniform", [0.0, 0.5, 0.999])
def test_checks_after_the_first_respect_the_platform_minimum(
    schedule: PollSchedule, minimum: float, uniform: float
) -> None:
    delays = first(schedule, 50, uniform)
    assert delays[0] < minimum  # the first check comes soon
    assert all(delay >= minimum for delay in delays[1:])


def test_interval_grows_then_caps_with_bounded_jitter() -> None:
    schedule = PollSchedule(first_delay=1, min_interval=2, max_interval=8, growth=2, jitter=0.25)
    assert first(schedule, 6, 0.0) == [1, 2, 4, 8, 8, 8]
    assert first(schedule, 6, 1.0) == [1.25, 2.5, 5.0, 10.0, 10.0, 10.0]


def test_jitter_spreads_tasks_submitted_together() -> None:
    delays = {round(next(iter(IMAGE_SCHEDULE.delays())), 6) for _ in range(50)}
    assert len(delays) > 10


def test_scaled_schedule_keeps_the_shape() -> None:
    fast = VIDEO_SCHEDULE.scaled(0.1)
    assert first(fast, 5, 0.3) == pytest.approx([d * 0.1 for d in first(VIDEO_SCHEDULE, 5, 0.3)])


def test_video_models_poll_more_slowly_than_images() -> None:
    assert schedule_for("bytedance/dreamina-v3.0-pro/text-to-video") is VIDEO_SCHEDULE
    assert schedule_for("bytedance/dreamina-v3.0/edit") is IMAGE_SCHEDULE
    assert schedule_for("wavespeed-ai/flux-dev") is IMAGE_SCHEDULE


def test_negative_delays_are_refused() -> None:
    with pytest.raises(ValueError, match="min_interval"):
        PollSchedule(min_interval=-1)


@pytest.mark.parametrize("growth", [0.5, 0.99, 0, -1])
def test_a_growth_below_one_is_refused(growth: float) -> None:
    with pytest.raises(InvalidInput, match="growth"):
        PollSchedule(growth=growth)


def test_a_growth_of_one_keeps_the_gap_constant() -> None:
    schedule = PollSchedule(first_delay=0.5, min_interval=2, max_interval=8, growth=1, jitter=0)
    assert first(schedule, 4, 0.5) == [0.5, 2, 2, 2]


def test_a_max_interval_below_the_min_interval_is_refused() -> None:
    with pytest.raises(InvalidInput, match="max_interval"):
        PollSchedule(min_interval=5, max_interval=4)
    assert first(PollSchedule(min_interval=3, max_interval=3, jitter=0), 3, 0.0)[1:] == [3, 3]


@pytest.mark.parametrize("field", ["first_delay", "min_interval", "jitter"])
@pytest.mark.parametrize("value", [-0.001, float("nan"), float("inf"), True, "1"])
def test_delays_must_be_finite_numbers_from_zero(field: str, value: object) -> None:
    with pytest.raises(InvalidInput, match=field):
        PollSchedule(**{field: value})  # type: ignore[arg-type]
    assert PollSchedule(**{field: 0}).delays()


def test_jitter_stretches_the_first_delay_upwards_only() -> None:
    schedule = PollSchedule(first_delay=2, min_interval=2, max_interval=2, jitter=0.5)
    assert first(schedule, 2, 0.0) == [2, 2]
    assert first(schedule, 2, 0.5) == [2.5, 2.5]


def test_the_default_schedules_are_the_documented_ones() -> None:
    assert first(IMAGE_SCHEDULE, 4, 0.0) == pytest.approx([1.0, 2.0, 2.6, 3.38])
    assert first(IMAGE_SCHEDULE, 30, 0.0)[-1] == 8.0
    assert first(VIDEO_SCHEDULE, 3, 0.0) == pytest.approx([2.0, 5.0, 6.5])
    assert first(VIDEO_SCHEDULE, 30, 0.0)[-1] == 15.0
    assert first(IMAGE_SCHEDULE, 1, 1.0) == pytest.approx([1.2])
    assert first(RECONCILE_SCHEDULE, 3, 0.0) == pytest.approx([60.0, 180.0, 270.0])
    assert first(RECONCILE_SCHEDULE, 30, 0.0)[-1] == 600.0


def test_scaled_multiplies_every_delay_but_keeps_growth_and_jitter() -> None:
    schedule = PollSchedule(first_delay=1, min_interval=2, max_interval=8, growth=2, jitter=0.1)
    scaled = schedule.scaled(0.5)
    assert (scaled.first_delay, scaled.min_interval, scaled.max_interval) == (0.5, 1, 4)
    assert (scaled.growth, scaled.jitter) == (2, 0.1)


def test_model_ids_are_matched_case_insensitively_for_video() -> None:
    assert schedule_for("vendor/Some-VIDEO-model") is VIDEO_SCHEDULE


def test_schedule_errors_name_the_field_the_value_and_what_is_allowed() -> None:
    cases = [
        ({"first_delay": -1}, ("first_delay", -1, "a number of seconds >= 0")),
        ({"growth": 0.5}, ("growth", 0.5, "1 or more (gaps never shrink)")),
        ({"growth": -2}, ("growth", -2, "a number of seconds >= 0")),
        ({"min_interval": 5, "max_interval": 4}, ("max_interval", 4, "at least min_interval (5)")),
        ({"max_interval": -1}, ("max_interval", -1, "a number of seconds >= 0")),
    ]
    for kwargs, expected in cases:
        with pytest.raises(InvalidInput) as info:
            PollSchedule(**kwargs)  # type: ignore[arg-type]
        assert (info.value.field, info.value.value, info.value.allowed) == expected
