"""When to check a task again: the platform's polling etiquette as a pure schedule."""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

import attrs

from ..errors import InvalidInput

__all__ = [
    "IMAGE_SCHEDULE",
    "RECONCILE_SCHEDULE",
    "VIDEO_SCHEDULE",
    "LearnedSchedule",
    "PollSchedule",
    "PollStats",
    "Schedule",
    "schedule_for",
]


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
        checks = 0
        while True:
            yield self.next_delay(checks, 0.0, uniform)
            checks += 1

    def next_delay(
        self, checks: int, elapsed: float, uniform: Callable[[], float] = random.random
    ) -> float:
        """The delay before the next check, after ``checks`` checks (``elapsed`` is unused)."""
        if checks == 0:
            return self.first_delay * (1 + self.jitter * uniform())
        gap, steps = self.min_interval, checks - 1
        if self.growth > 1 and 0 < self.min_interval < self.max_interval:
            # Past this many steps the gap is max_interval: no power that overflows.
            reached = math.log(self.max_interval / self.min_interval) / math.log(self.growth)
            gap = self.max_interval if steps >= reached else gap * self.growth**steps
        return min(gap, self.max_interval) * (1 + self.jitter * uniform())

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


class Schedule(Protocol):
    """When to check a task next: :class:`PollSchedule`, or the learned default."""

    def next_delay(
        self, checks: int, elapsed: float, uniform: Callable[[], float] = random.random
    ) -> float:
        """Seconds until the next check, after ``checks`` checks, ``elapsed`` s after submit."""
        ...


class PollStats:
    """How long each model's tasks took, as this client saw them: what polling learns from.

    Per model it keeps the last ``window`` durations (seconds from the submit to the first
    sight of a terminal state), for at most ``max_models`` models (the least recently
    updated is forgotten first). :meth:`export` and :meth:`load` carry them from one process
    to the next, so a long-lived service or the CLI can start warm.

    >>> stats = PollStats()
    >>> stats.load({"bytedance/dreamina-v3.0-pro/text-to-video": [60.0] * 20})
    >>> stats.summary("bytedance/dreamina-v3.0-pro/text-to-video")
    (60.0, 60.0)
    """

    def __init__(
        self,
        *,
        window: int = 200,
        max_models: int = 256,
        min_samples: int = 20,
        quantile: float = 0.05,
    ) -> None:
        if window < 1 or max_models < 1 or min_samples < 1:
            raise ValueError("window, max_models and min_samples must be >= 1")
        if not 0 <= quantile <= 0.5:
            raise ValueError(f"quantile must be within [0, 0.5], got {quantile!r}")
        self.window = window
        self.max_models = max_models
        self.min_samples = min_samples
        self.quantile = quantile
        self._samples: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )
        self._summaries: dict[str, tuple[float, float] | None] = {}

    def record(self, model: str, seconds: float) -> None:
        """Add one observed duration of ``model``."""
        if not model or not seconds > 0 or seconds == float("inf"):
            return
        samples = self._samples.get(model)
        if samples is None:
            samples = self._samples[model] = collections.deque(maxlen=self.window)
            while len(self._samples) > self.max_models:
                forgotten, _ = self._samples.popitem(last=False)
                self._summaries.pop(forgotten, None)
        else:
            self._samples.move_to_end(model)
        samples.append(float(seconds))
        self._summaries.pop(model, None)

    def summary(self, model: str) -> tuple[float, float] | None:
        """``(low quantile, median)`` of the model's durations, or ``None`` with too few."""
        if model in self._summaries:
            return self._summaries[model]
        samples = self._samples.get(model)
        summary = None
        if samples is not None and len(samples) >= self.min_samples:
            ordered = sorted(samples)
            summary = (_quantile(ordered, self.quantile), _quantile(ordered, 0.5))
        self._summaries[model] = summary
        return summary

    def export(self) -> dict[str, list[float]]:
        """The durations kept, per model (JSON-ready)."""
        return {model: list(samples) for model, samples in self._samples.items()}

    def load(self, durations: Mapping[str, Iterable[float]]) -> None:
        """Add durations exported earlier (or known in advance), per model."""
        for model, seconds in durations.items():
            for value in seconds:
                self.record(model, value)


def _quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolated linearly."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@attrs.define(frozen=True)
class LearnedSchedule:
    """The default schedule: checks timed by the model's learned durations.

    With enough samples in ``stats`` the first check comes near a low quantile of the
    model's durations, and each next one ``gap_fraction`` (8%) of the task's age later (so a
    task is seen within about that fraction of its duration, however long it runs), never closer
    than ``fallback.min_interval`` (the platform's 2 s for images, 5 s for videos) nor further
    apart than ``fallback.max_interval``. Before that, it is ``fallback``.
    """

    model: str
    stats: PollStats
    fallback: PollSchedule
    gap_fraction: float = 0.08
    jitter: float = 0.1

    def next_delay(
        self, checks: int, elapsed: float, uniform: Callable[[], float] = random.random
    ) -> float:
        """Seconds until the next check (see the class docstring)."""
        summary = self.stats.summary(self.model)
        if summary is None:
            return self.fallback.next_delay(checks, elapsed, uniform)
        low = summary[0]
        floor, cap = self.fallback.min_interval, self.fallback.max_interval
        if checks == 0 and elapsed < low:
            return max(low - elapsed, self.fallback.first_delay)
        gap = min(cap, max(floor, self.gap_fraction * max(elapsed, low)))
        return gap * (1 + self.jitter * uniform())
