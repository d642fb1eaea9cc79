"""The emulated clock: real time scaled by a speed, plus manual advances."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from ._arguments import check_number, check_seconds

__all__ = ["Clock"]


class Clock:
    """Emulated time: real monotonic time times ``speed``, plus whatever ``advance()`` added.

    ``speed`` is emulated seconds per real second; 0 freezes the clock so that only
    ``advance()`` moves it (what tests use: nothing ever sleeps for real).
    """

    def __init__(self, speed: float = 1.0, monotonic: Callable[[], float] = time.monotonic):
        self._monotonic = monotonic
        self._speed = check_number("speed", speed)
        self._real_anchor = monotonic()
        self._emulated_anchor = 0.0

    @property
    def speed(self) -> float:
        """Emulated seconds per real second."""
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        value = check_number("speed", value)
        # Re-anchor so that the time already elapsed keeps the old rate.
        self._emulated_anchor, self._real_anchor = self.now(), self._monotonic()
        self._speed = value

    def now(self) -> float:
        """Emulated seconds since the clock was made."""
        return self._emulated_anchor + (self._monotonic() - self._real_anchor) * self._speed

    def advance(self, seconds: float) -> None:
        """Move emulated time forward; the clock never goes back."""
        self._emulated_anchor += check_seconds("seconds", seconds)

    def real_delay(self, emulated_seconds: float) -> float | None:
        """Real seconds until ``emulated_seconds`` pass, or ``None`` when the clock is frozen."""
        if self._speed == 0:
            return None
        return max(0.0, emulated_seconds) / self._speed

    def wall_clock(self, start: dt.datetime | None = None) -> Callable[[], dt.datetime]:
        """A wall clock that follows this one: ``start`` (default: now, UTC) plus ``now()``.

        Pass it as ``Emulator(clock=clock, wall_clock=clock.wall_clock())`` to make the
        emulator's ``created_at``, history windows and ``Date`` headers move with
        ``advance()``, e.g. to see how old an expired output is. (Webhook timestamps follow
        it too, so a receiver checking them against real time refuses them once it drifts.)
        """
        origin = (start or dt.datetime.now(dt.timezone.utc)) - dt.timedelta(seconds=self.now())
        return lambda: origin + dt.timedelta(seconds=self.now())
