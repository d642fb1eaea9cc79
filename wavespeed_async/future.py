"""PredictionFuture: an awaitable handle on a task running on the platform."""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Protocol

import anyio

from ._files import MAX_DOWNLOAD
from ._models import Prediction, Status
from ._polling import PollSchedule
from .errors import PredictionFailed, PredictionTimeout, WaveSpeedError

__all__ = ["PredictionFuture"]

log = logging.getLogger("wavespeed_async")


class _Owner(Protocol):
    """What a future needs from its client."""

    wait_timeout: float

    async def get_prediction(self, prediction_id: str) -> Prediction: ...

    def _spawn(self, coro: Any) -> asyncio.Task[Prediction]: ...

    async def download(
        self, prediction: Prediction, directory: str | os.PathLike[str], *, max_bytes: int = ...
    ) -> list[Path]: ...


class PredictionFuture:
    """A task submitted to the platform: ``await`` it for the finished :class:`Prediction`.

    Awaiting polls ``GET /api/v3/predictions/{id}/result`` on a :class:`PollSchedule` until
    the status is terminal, and may be done any number of times, from any number of tasks:
    they share one poller, and a finished future answers at once.

    - ``completed`` returns the prediction;
    - ``failed``, ``cancelled``, ``timeout`` or ``deleted`` raise :class:`PredictionFailed`;
    - a deadline (``wait(timeout=...)``, or the client's ``wait_timeout``) raises
      :class:`PredictionTimeout`. The remote task keeps running; await again to resume.

    :meth:`cancel` stops *local* polling only. The platform has no cancel endpoint: the
    remote task keeps running (and is billed) whatever the client does.

    >>> fut = await client.submit_text_to_video("a fox")  # doctest: +SKIP
    >>> fut.id, fut.status                                # doctest: +SKIP
    ('9c1d...', <Status.CREATED: 'created'>)
    >>> video = await fut                                 # doctest: +SKIP
    """

    def __init__(
        self,
        owner: _Owner,
        prediction_id: str,
        *,
        model: str = "",
        schedule: PollSchedule,
        prediction: Prediction | None = None,
        on_finish: Callable[[], None] | None = None,
    ) -> None:
        self._owner = owner
        self._id = prediction_id
        self._model = model or (prediction.model if prediction else "")
        self._schedule = schedule
        self._prediction = prediction
        self._poller: asyncio.Task[Prediction] | None = None
        self._waiters = 0
        self._cancelled = False
        self._napping: asyncio.Future[None] | None = None  # the poller's sleep, if asleep
        self._on_finish = on_finish  # frees the client's running-task slot, once
        self._status_callbacks: list[Callable[[Prediction], None]] = []
        self._settle()

    def __repr__(self) -> str:
        status = self.status.value if self.status else "unseen"
        return f"<PredictionFuture {self._id} model={self._model!r} status={status}>"

    @property
    def id(self) -> str:
        """The task id on the platform: keep it to resume with ``client.prediction(id)``."""
        return self._id

    @property
    def model(self) -> str:
        """The model id the task runs, when known."""
        return self._model

    @property
    def prediction(self) -> Prediction | None:
        """The last state seen, or ``None`` before the first check of a resumed id."""
        return self._prediction

    @property
    def status(self) -> Status | None:
        """The last status seen."""
        return self._prediction.status if self._prediction else None

    def done(self) -> bool:
        """Whether the task has reached a terminal status (as last seen)."""
        return self._prediction is not None and self._prediction.status.is_terminal

    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    def cancel(self) -> None:
        """Stop polling; waiters get ``asyncio.CancelledError``. The remote task keeps running."""
        self._cancelled = True
        self._settle()
        if self._poller is not None:
            self._poller.cancel()

    def deliver(self, prediction: Prediction) -> None:
        """Hand the future a state learnt elsewhere, such as a webhook delivery.

        A terminal state finishes the future at once: waiters return without another check.
        A delivery for another id raises ``ValueError``; one arriving after the future is done
        is ignored (deliveries may repeat).
        """
        if prediction.id != self._id:
            raise ValueError(f"delivery for {prediction.id} given to the future of {self._id}")
        self._observe(prediction)
        if self.done() and self._napping is not None:
            _wake(self._napping)

    def on_status(self, callback: Callable[[Prediction], None]) -> None:
        """Call ``callback(prediction)`` whenever a check or a delivery shows a new status."""
        self._status_callbacks.append(callback)

    async def refresh(self) -> Prediction:
        """Fetch the task's current state once (one GET), and remember it."""
        try:
            prediction = await self._owner.get_prediction(self._id)
        except WaveSpeedError as exc:
            exc.prediction_id = exc.prediction_id or self._id
            raise
        self._observe(prediction)
        return prediction

    def _observe(self, prediction: Prediction) -> None:
        """Remember a state seen; a finished future keeps its outcome (deliveries repeat)."""
        if self.done():
            return
        previous, self._prediction = self.status, prediction
        if prediction.model:
            self._model = prediction.model
        self._settle()
        if prediction.status is not previous:
            for callback in self._status_callbacks:
                callback(prediction)

    async def download(
        self, directory: str | os.PathLike[str], *, max_bytes: int = MAX_DOWNLOAD
    ) -> list[Path]:
        """Save the finished task's outputs under ``directory``; returns the paths.

        It does not wait: await the future first. An unfinished task raises
        :class:`WaveSpeedError`, a failed one :class:`PredictionFailed`. Files are named
        ``{id}-{index}{suffix}`` and written as :meth:`AsyncWaveSpeed.download` writes them.

        >>> video = await fut                                 # doctest: +SKIP
        >>> await fut.download("videos/")                     # doctest: +SKIP
        [PosixPath('videos/9c1d...-0.mp4')]
        """
        prediction = self._prediction
        if prediction is None or not prediction.status.is_terminal:
            status = prediction.raw_status if prediction else "not checked yet"
            raise WaveSpeedError(
                f"prediction {self._id} is not finished ({status}): await it before downloading",
                prediction_id=self._id,
            )
        return await self._owner.download(prediction, directory, max_bytes=max_bytes)

    def _settle(self) -> None:
        if self._on_finish is not None and (self.done() or self._cancelled):
            release, self._on_finish = self._on_finish, None
            release()

    def __await__(self) -> Generator[Any, None, Prediction]:
        return self.wait().__await__()

    async def wait(self, timeout: float | None = None) -> Prediction:
        """Wait until the task is terminal, at most ``timeout`` seconds.

        ``None`` means the client's ``wait_timeout``; pass ``math.inf`` to wait without a
        deadline. A timeout raises :class:`PredictionTimeout` and leaves the task running.
        """
        if self._cancelled:
            raise asyncio.CancelledError(f"polling of prediction {self._id} was cancelled")
        if not self.done():
            limit = self._owner.wait_timeout if timeout is None else timeout
            await self._wait_for_poller(limit)
        return self._outcome()

    async def _wait_for_poller(self, limit: float) -> None:
        if self._poller is None or self._poller.done():
            self._poller = self._owner._spawn(self._poll())
        poller = self._poller
        self._waiters += 1
        try:
            # asyncio.wait, not the task itself: a waiter leaving must not cancel a poller
            # that other waiters still share.
            finished, _ = await asyncio.wait({poller}, timeout=None if math.isinf(limit) else limit)
            if not finished:
                raise PredictionTimeout(self._id, limit, self._prediction)
        finally:
            self._waiters -= 1
            if self._waiters == 0 and not poller.done():
                poller.cancel()  # nobody is listening: stop the requests at once
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({poller})
        if poller.cancelled():
            if self._cancelled:
                raise asyncio.CancelledError(f"polling of prediction {self._id} was cancelled")
            raise WaveSpeedError("the client was closed while waiting", prediction_id=self._id)
        exc = poller.exception()
        if exc is not None:
            raise exc

    async def _poll(self) -> Prediction:
        delays = self._schedule.delays()
        if self._prediction is not None:
            await self._nap(next(delays))
        while not self.done():
            # Transient failures were already retried under the client's policy.
            prediction = await self.refresh()
            if prediction.status.is_terminal:
                return prediction
            if prediction.status is Status.UNKNOWN:
                log.warning(
                    "prediction %s has unknown status %r; polling until the deadline",
                    self._id,
                    prediction.raw_status,
                )
            await self._nap(next(delays))
        assert self._prediction is not None
        return self._prediction

    async def _nap(self, seconds: float) -> None:
        # Sleep until the next check, or until a delivery finishes the future. A bare timer
        # and future: a quarter of the cost of a cancel scope, and thousands of these run.
        loop = asyncio.get_running_loop()
        self._napping = wake = loop.create_future()
        timer = loop.call_later(seconds, _wake, wake)
        try:
            await wake
        finally:
            timer.cancel()
            self._napping = None

    def _outcome(self) -> Prediction:
        prediction = self._prediction
        assert prediction is not None
        assert prediction.status.is_terminal
        if prediction.status.is_failure:
            raise PredictionFailed(prediction)
        return prediction


def _wake(sleeper: asyncio.Future[None]) -> None:
    if not sleeper.done():
        sleeper.set_result(None)
