"""The emulated clock: real time scaled by a speed, plus manual advances."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock"]


class Clock:
    """Emulated time: real monotonic time times ``speed``, plus whatever ``advance()`` added.

    ``speed`` is emulated seconds per real second; 0 freezes the clock so that only
    ``advance()`` moves it (what tests use: nothing ever sleeps for real).
    """

    def __init__(self, speed: float = 1.0, monotonic: Callable[[], float] = time.monotonic):
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        self._monotonic = monotonic
        self._speed = speed
        self._real_anchor = monotonic()
        self._emulated_anchor = 0.0

    @property
    def speed(self) -> float:
        """Emulated seconds per real second."""
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"speed must be >= 0, got {value}")
        # Re-anchor so that the time already elapsed keeps the old rate.
        self._emulated_anchor, self._real_anchor = self.now(), self._monotonic()
        self._speed = value

    def now(self) -> float:
        """Emulated seconds since the clock was made."""
        return self._emulated_anchor + (self._monotonic() - self._real_anchor) * self._speed

    def advance(self, seconds: float) -> None:
        """Move emulated time forward; the clock never goes back."""
        if seconds < 0:
            raise ValueError(f"cannot advance by a negative time ({seconds})")
        self._emulated_anchor += seconds

    def real_delay(self, emulated_seconds: float) -> float | None:
        """Real seconds until ``emulated_seconds`` pass, or ``None`` when the clock is frozen."""
        if self._speed == 0:
            return None
        return max(0.0, emulated_seconds) / self._speed
