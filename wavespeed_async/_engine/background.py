"""Coordinator writes that must land even while the coordinator is down: retried in the back.

Once the platform has created a task, the caller gets its future whatever the ledger says: a
write that records it (the key's task id, the slot's owner) gets a short budget, and when it
fails it is retried here, with backoff, for a bounded time (logged when it starts, lands, or
is given up). :meth:`Background.aclose` cancels what is left and logs each write it drops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import anyio

__all__ = ["ATTEMPT_BUDGET", "RETRY_FOR", "Background"]

log = logging.getLogger(__name__)

#: How long one write may take before it counts as failed, in seconds.
ATTEMPT_BUDGET = 2.0
#: How long a failed write is retried before it is given up (and logged as an error).
RETRY_FOR = 600.0
_FIRST_PAUSE = 0.1
_MAX_PAUSE = 5.0

Write = Callable[[], Awaitable[None]]


class Background:
    """The writes of one client that are retried until they land; each owned, cancelled on close."""

    def __init__(self, *, retry_for: float = RETRY_FOR) -> None:
        self.retry_for = retry_for
        self._tasks: dict[asyncio.Task[None], str] = {}
        self._fields: dict[asyncio.Task[None], Mapping[str, str] | None] = {}

    def __repr__(self) -> str:
        return f"Background(pending={len(self._tasks)})"

    @property
    def pending(self) -> list[str]:
        """What each write still being retried is for."""
        return list(self._tasks.values())

    async def write(
        self,
        what: str,
        write: Write,
        *,
        budget: float = ATTEMPT_BUDGET,
        landed: Callable[[], None] | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> bool:
        """Run ``write`` within ``budget`` seconds; on failure, retry it here and return False.

        ``landed`` is called once the write has succeeded, now or later; ``fields`` are the
        structured fields (``extra``) of its log lines, such as the prediction it is about.
        """
        try:
            with anyio.fail_after(budget):
                await write()
        except Exception as exc:  # whatever went wrong, the write must still land
            log.warning(
                "%s failed (%s); retrying in the background for up to %g s",
                what,
                exc or type(exc).__name__,
                self.retry_for,
                extra=fields,
            )
            retry = self._retry(what, write, landed, fields)
            task = asyncio.get_running_loop().create_task(retry)
            self._tasks[task] = what
            self._fields[task] = fields
            task.add_done_callback(self._forget)
            return False
        if landed is not None:
            landed()
        return True

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._fields.pop(task, None)

    async def _retry(
        self,
        what: str,
        write: Write,
        landed: Callable[[], None] | None,
        fields: Mapping[str, str] | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.retry_for
        pause = _FIRST_PAUSE
        while True:
            await asyncio.sleep(min(pause, max(0.0, give_up_at - loop.time())))
            try:
                with anyio.fail_after(ATTEMPT_BUDGET):
                    await write()
            except Exception as exc:
                if loop.time() >= give_up_at:
                    log.error(
                        "%s: given up after %g s (%s)", what, self.retry_for, exc, extra=fields
                    )
                    return
                pause = min(_MAX_PAUSE, pause * 2)
                continue
            log.info("%s: done, in the background", what, extra=fields)
            if landed is not None:
                landed()
            return

    async def aclose(self) -> None:
        """Cancel the writes still being retried, logging each one that never landed."""
        tasks = list(self._tasks.items())
        for task, what in tasks:
            log.error("%s: never landed (the client closed)", what, extra=self._fields.get(task))
            task.cancel()
        if tasks:
            await asyncio.gather(*(task for task, _ in tasks), return_exceptions=True)
