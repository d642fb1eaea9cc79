"""When to check a task again: the platform's polling etiquette as a pure schedule."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

import attrs

from .errors import InvalidInput

__all__ = ["IMAGE_SCHEDULE", "RECONCILE_SCHEDULE", "VIDEO_SCHEDULE", "PollSchedule", "schedule_for"]


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise InvalidInput(attribute.name, value, "a number of seconds >= 0")


def _at_least_one(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    _positive(instance, attribute, value)
    if value < 1:
        raise InvalidInput(attribute.name, value, "1 or more (gaps never shrink)")


def _not_below_min_interval(
    instance: PollSchedule, attribute: attrs.Attribute[float], value: float
) -> None:
    _positive(instance, attribute, value)
    if value < instance.min_interval:
        raise InvalidInput(
            attribute.name, value, f"at least min_interval ({instance.min_interval})"
        )


@attrs.define(frozen=True)
class PollSchedule:
    """Delays between result checks: one soon, then growing, never closer than a minimum.

    The first check comes after ``first_delay``; the n-th gap after it is
    ``min(max_interval, min_interval * growth ** n)`` stretched by up to ``jitter`` (a
    fraction), upwards only, so checks are never closer than ``min_interval``. The jitter keeps
    hundreds of tasks submitted together from polling in lockstep. ``growth`` below 1 and
    ``max_interval`` below ``min_interval`` are refused (:class:`InvalidInput`): gaps never
    shrink below the minimum.

    >>> fast = PollSchedule(first_delay=0.5, min_interval=1, max_interval=4, jitter=0)
    >>> [round(d, 2) for d, _ in zip(fast.delays(), range(6))]
    [0.5, 1.0, 1.3, 1.69, 2.2, 2.86]
    """

    first_delay: float = attrs.field(default=1.0, validator=_positive)
    min_interval: float = attrs.field(default=2.0, validator=_positive)
    max_interval: float = attrs.field(default=8.0, validator=_not_below_min_interval)
    growth: float = attrs.field(default=1.3, validator=_at_least_one)
    jitter: float = attrs.field(default=0.2, validator=_positive)

    def delays(self, uniform: Callable[[], float] = random.random) -> Iterator[float]:
        """Yield the delay before each check, forever; ``uniform`` draws from [0, 1)."""
        yield self.first_delay * (1 + self.jitter * uniform())
        gap = self.min_interval
        while True:
            yield min(gap, self.max_interval) * (1 + self.jitter * uniform())
            gap *= self.growth

    def scaled(self, factor: float) -> PollSchedule:
        """The same shape with every delay multiplied by ``factor`` (for a sped-up emulator)."""
        return attrs.evolve(
            self,
            first_delay=self.first_delay * factor,
            min_interval=self.min_interval * factor,
            max_interval=self.max_interval * factor,
        )


#: Images: first check after ~1 s, then at least 2 s apart, at most ~8 s.
IMAGE_SCHEDULE = PollSchedule()
#: Videos: first check after ~2 s, then at least 5 s apart, at most ~15 s.
VIDEO_SCHEDULE = PollSchedule(first_delay=2.0, min_interval=5.0, max_interval=15.0)
#: Webhook mode: the delivery is what finishes the future; these checks only reconcile.
#: Deliveries can be lost (a receiver down, a network fault), so a future that expects one
#: still checks, but rarely: first after ~60 s (most deliveries land before that), then every
#: 3 to 10 minutes. A lost delivery costs at most that much latency; a healthy one costs at
#: most a poll or two, not the dozens a plain 2-5 s schedule makes during a long video.
RECONCILE_SCHEDULE = PollSchedule(
    first_delay=60.0, min_interval=180.0, max_interval=600.0, growth=1.5, jitter=0.2
)


def schedule_for(model: str) -> PollSchedule:
    """The default schedule for a model id: video models poll more slowly."""
    return VIDEO_SCHEDULE if "video" in model.lower() else IMAGE_SCHEDULE
