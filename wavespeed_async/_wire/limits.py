"""Queueing submits locally, so the platform's limits are met instead of provoking 429s.

The platform limits submissions per minute and tasks running at once, per account level.
:class:`SubmitRate` is a token bucket over submits that adapts to 429s (additive increase,
multiplicative decrease); :class:`Limits` holds the configuration and the level presets.
"""

from __future__ import annotations

import collections
import math
import time
import types
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..errors import InvalidInput

__all__ = ["ACCOUNT_LEVELS", "Limits", "SubmitRate"]

#: However many 429s arrive, never throttle below this many submits per minute (or below the
#: configured rate, when that is lower): the retry policy's backoff handles the rest.
MIN_RATE = 60.0
#: 429s arriving together (one burst of rejections) cut the rate only once per this window.
DECREASE_COOLDOWN = 1.0


def _positive_or_none(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise InvalidInput(attribute.name, value, "a positive number or None")


def _positive_int_or_none(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not (type(value) is int and value > 0):
        raise InvalidInput(attribute.name, value, "a positive whole number or None")


@attrs.define(frozen=True)
class Limits:
    """How fast to submit and how many tasks to keep running; ``None`` means no local cap.

    >>> Limits.for_level("silver")
    Limits(submits_per_minute=500, max_concurrent_tasks=300)
    """

    submits_per_minute: float | None = attrs.field(default=None, validator=_positive_or_none)
    max_concurrent_tasks: int | None = attrs.field(default=None, validator=_positive_int_or_none)

    @classmethod
    def for_level(cls, level: str) -> Limits:
        """The published limits of an account level: bronze, silver, gold or ultra."""
        try:
            return ACCOUNT_LEVELS[level.strip().lower()]
        except KeyError:
            raise InvalidInput("level", level, f"one of {', '.join(ACCOUNT_LEVELS)}") from None


#: The platform's account levels (read-only).
ACCOUNT_LEVELS: Mapping[str, Limits] = types.MappingProxyType(
    {
        "bronze": Limits(submits_per_minute=2, max_concurrent_tasks=2),
        "silver": Limits(submits_per_minute=500, max_concurrent_tasks=300),
        "gold": Limits(submits_per_minute=3000, max_concurrent_tasks=3000),
        "ultra": Limits(submits_per_minute=5000, max_concurrent_tasks=10000),
    }
)


class SubmitRate:
    """A token bucket of submits per minute that halves on a 429 and creeps back up.

    With a ceiling, the bucket holds a minute's worth of submits (the platform counts per
    minute) and refills continuously. Without one, nothing waits until the first 429; the
    rate then becomes half of what was sent over the last minute (at least ``MIN_RATE``),
    and grows by one submit per minute with every accepted submit until it is four times
    that again, when the cap lifts. A decrease leaves one token: the retry that follows is
    timed by the retry policy (``Retry-After`` or backoff); the lower rate paces the rest.
    The clock is injected, so the arithmetic is tested without waiting.
    """

    def __init__(self, per_minute: float | None, clock: Callable[[], float] = time.monotonic):
        self.ceiling = per_minute
        self.rate = per_minute
        self._clock = clock
        self._tokens = per_minute or 0.0
        self._updated = clock()
        self._recent: collections.deque[float] = collections.deque()
        self._last_decrease = -math.inf
        self._lift_at: float | None = None

    def reserve(self) -> float:
        """Take the next submit's place; return how long to wait before sending it."""
        now = self._clock()
        self._recent.append(now)
        while self._recent and self._recent[0] < now - 60:
            self._recent.popleft()
        if self.rate is None:
            return 0.0
        self._refill(now)
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens * 60 / self.rate

    def on_rate_limited(self) -> None:
        """A 429 came back: halve the rate (once per burst of rejections)."""
        now = self._clock()
        if now - self._last_decrease < DECREASE_COOLDOWN:
            return
        if self.rate is not None:
            self._refill(now)
        self._updated = self._last_decrease = now
        current = self.rate if self.rate is not None else float(len(self._recent))
        self.rate = max(min(MIN_RATE, self.ceiling or MIN_RATE), current / 2)
        if self.ceiling is None:
            self._lift_at = self.rate * 4
        # Exactly one token, whatever was left: a full bucket must not burst at the old rate,
        # and an empty one must not make the retry wait on top of its own Retry-After.
        self._tokens = 1.0

    def on_accepted(self) -> None:
        """A submit went through: recover by one submit per minute."""
        if self.rate is None:
            return
        self._refill(self._clock())
        self.rate += 1
        if self.ceiling is not None and self.rate >= self.ceiling:
            self.rate = self.ceiling
        elif self._lift_at is not None and self.rate >= self._lift_at:
            self.rate, self._lift_at = None, None

    def _refill(self, now: float) -> None:
        assert self.rate is not None
        elapsed, self._updated = now - self._updated, now
        self._tokens = min(self.rate, self._tokens + elapsed * self.rate / 60)
