"""Waiting on the emulated clock, for sync-mode submits.

A waiter sleeps for real only as long as the clock needs to reach the next interesting
instant (``remaining / speed``); ``advance()`` and forced statuses wake every waiter to
re-check, which is what makes waiting work on a frozen clock (speed 0).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable

import anyio

from ._clock import Clock

__all__ = ["SyncWaits"]


class SyncWaits:
    """The sync-mode waiters of one emulator; ``close()`` cancels them all."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._changed = asyncio.Event()
        self._scopes: set[anyio.CancelScope] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the event loop the server runs on (``notify`` may come from elsewhere)."""
        self._loop, self._loop_thread = loop, threading.get_ident()
        self._changed = asyncio.Event()  # an Event belongs to the first loop that waits on it
        self._closed = False

    def notify(self) -> None:
        """Wake every waiter to re-check its condition (time moved, a status changed)."""
        if self._loop is None or self._loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self._wake()
        else:  # a test driving a blocking client from a worker thread
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        # Swap in a fresh event: waiters hold the old one, which stays set for them.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_until(self, done: Callable[[], bool], next_change: Callable[[], float]) -> bool:
        """Wait until ``done()``; ``next_change()`` is the emulated time worth re-checking at.

        Returns ``False`` when the emulator closed first.
        """
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                while not self._closed and not done():
                    delay = self._clock.real_delay(next_change() - self._clock.now())
                    changed = self._changed
                    with anyio.move_on_after(math.inf if delay is None else delay):
                        await changed.wait()
            finally:
                self._scopes.discard(scope)
        return not scope.cancelled_caught and not self._closed

    def close(self) -> None:
        """Cancel every waiter; later waits return ``False`` at once."""
        self._closed = True
        for scope in list(self._scopes):
            scope.cancel()
