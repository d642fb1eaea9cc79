"""The emulated account: its balance and the limits the platform enforces on it.

All times are on the emulated clock. Submits over ``submits_per_minute`` (a sliding window
of 60 emulated seconds over accepted submits) are refused with 429; tasks over
``max_concurrent_tasks`` are accepted but wait, ``created``, until a slot frees (first in,
first out), so they start and finish later. Every accepted task is debited its price at
submit; a submit the balance cannot pay creates nothing. Neither a failed task nor a
deleted one is refunded; deleting frees the task's slot. Each debit is written in the
``ledger`` (``_ledger.py``), which the billing and usage endpoints read.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Sequence

import attrs

from .._wire.limits import Limits
from ._ledger import Ledger

__all__ = [
    "DEFAULT_BALANCE",
    "Account",
    "InsufficientFunds",
    "RateLimited",
    "Slot",
]

#: The balance of a new emulated account, in USD.
DEFAULT_BALANCE = 100.0
_WINDOW = 60.0  # the platform counts submits per minute


class RateLimited(Exception):
    """A submit over the account's rate: answered 429, ``retry_after`` emulated seconds."""

    def __init__(self, retry_after: float, per_minute: float) -> None:
        super().__init__(f"Rate limit exceeded: at most {per_minute:g} submits per minute")
        self.retry_after = retry_after


class InsufficientFunds(Exception):
    """A submit the balance cannot pay for."""

    def __init__(self, price: float, balance: float) -> None:
        super().__init__(
            f"Insufficient balance: the task costs ${price:.4f} and the balance is ${balance:.4f}"
        )


@attrs.define
class Slot:
    """When one task holds a running slot: from ``start`` until ``end`` (emulated seconds)."""

    start: float
    end: float


class Account:
    """Balance, rate window and concurrency slots of the one emulated account."""

    def __init__(self, balance: float = DEFAULT_BALANCE, limits: Limits | None = None) -> None:
        self.balance = balance
        self.limits = limits or Limits()
        #: How many 429s were served (over the rate, or scripted by a fault).
        self.rate_limited = 0
        #: What each task debited (the billing and usage endpoints' only source).
        self.ledger = Ledger()
        self._accepted: collections.deque[float] = collections.deque()
        self._slots: list[Slot] = []  # every task's, deleted ones too (for peak_running)

    # --- admission --------------------------------------------------------------------------

    def check_rate(self, now: float) -> None:
        """Raise :class:`RateLimited` when a submit now would be over the rate."""
        per_minute = self.limits.submits_per_minute
        while self._accepted and self._accepted[0] <= now - _WINDOW:
            self._accepted.popleft()
        if per_minute is not None and len(self._accepted) >= per_minute:
            raise RateLimited(self._accepted[0] + _WINDOW - now, per_minute)

    def charge(self, price: float) -> None:
        """Debit ``price``, or raise :class:`InsufficientFunds` and debit nothing."""
        if price > self.balance + 1e-9:
            raise InsufficientFunds(price, self.balance)
        self.balance = round(self.balance - price, 6)

    def accept(self, now: float, duration: float, live: Sequence[Slot]) -> Slot:
        """Count an accepted submit and give its task a slot after the ``live`` ones."""
        self._accepted.append(now)
        slot = Slot(0.0, 0.0)
        self._place(slot, now, duration, live)
        self._slots.append(slot)
        return slot

    # --- slots ------------------------------------------------------------------------------

    def release(self, slot: Slot, now: float, queued: Iterable[tuple[Slot, float, float]]) -> None:
        """A task was deleted at ``now``: end its slot, move ``queued`` tasks up.

        ``queued`` holds ``(slot, submitted_at, duration)`` of the live tasks that have not
        started, in submit order; each is placed again behind the ones before it.
        """
        slot.end = min(slot.end, now) if slot.start <= now else slot.start
        placed: list[Slot] = [other for other in self._slots if other.start <= now]
        for other, submitted_at, duration in queued:
            self._place(other, max(now, submitted_at), duration, placed)
            placed.append(other)

    def _place(self, slot: Slot, now: float, duration: float, live: Sequence[Slot]) -> None:
        limit = self.limits.max_concurrent_tasks
        start = now
        if limit is not None:
            # Slots are handed out first come, first served: never before an earlier task.
            start = max([now, *(other.start for other in live)])
            busy = sorted(other.end for other in live if other.start <= start < other.end)
            if len(busy) >= limit:
                start = busy[len(busy) - limit]
        slot.start, slot.end = start, start + duration

    def peak_running(self, now: float) -> int:
        """The most tasks that held a running slot at once, up to ``now``."""
        events = sorted(
            [(slot.start, 1) for slot in self._slots if slot.start <= now]
            + [(slot.end, -1) for slot in self._slots if slot.end <= now]
        )  # at one instant, ends (-1) sort before starts: a freed slot is reused, not doubled
        peak = running = 0
        for _, change in events:
            running += change
            peak = max(peak, running)
        return peak


def retry_after_header(emulated_seconds: float, real_delay: float | None) -> str:
    """``Retry-After`` in whole seconds: real ones at the clock's speed, else emulated ones."""
    seconds = emulated_seconds if real_delay is None else real_delay
    return str(max(1, math.ceil(seconds)))
