"""The poll schedule: soon first, then growing, never closer than the platform asks."""

from __future__ import annotations

import itertools

import pytest

from wavespeed_async import IMAGE_SCHEDULE, VIDEO_SCHEDULE, PollSchedule
from wavespeed_async._polling import schedule_for


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
