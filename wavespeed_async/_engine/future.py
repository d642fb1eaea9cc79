"""PredictionFuture: an awaitable handle on a task running on the platform."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import weakref
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, overload

from .._telemetry import PredictionTrace, about
from .._telemetry._base import NOTHING
from .._wire.models import Prediction, Status
from ..errors import NotFinished, PredictionFailed, PredictionTimeout, WaveSpeedError
from .polling import Schedule

if TYPE_CHECKING:
    from .engine import PollEngine
    from .polling import PollStats

__all__ = ["FutureOwner", "PredictionFuture"]

log = logging.getLogger(__name__)


class FutureOwner(Protocol):
    """What a future needs from its client."""

    wait_timeout: float
    engine: PollEngine
    poll_stats: PollStats
    time_scale: float

    async def get_prediction(self, prediction_id: str) -> Prediction: ...

    async def cancel(self, prediction_id: str) -> bool: ...

    async def download(
        self, prediction: Prediction, directory: str | os.PathLike[str], *, max_bytes: int = ...
    ) -> list[Path] | list[str]: ...


class PredictionFuture:
    """A task submitted to the platform: ``await`` it for the finished :class:`Prediction`.

    Awaiting polls ``GET /api/v3/predictions/{id}/result`` until the status is terminal, and
    may be done any number of times, from any number of tasks; a finished future answers at
    once. The checks are sent by the client's one poll engine, timed by the model's learned
    durations (or a :class:`PollSchedule` given), only while someone awaits.

    - ``completed`` returns the prediction;
    - ``failed``, ``cancelled``, ``timeout`` or ``deleted`` raise :class:`PredictionFailed`;
    - a deadline (``wait(timeout=...)``, or the client's ``wait_timeout``) raises
      :class:`PredictionTimeout`. The remote task keeps running; await again to resume.

    :meth:`cancel` stops *local* polling only: the remote task keeps running (and is billed).
    :meth:`cancel_remote` deletes the task on the platform, then stops polling.

    >>> fut = await client.submit_text_to_video("a fox")  # doctest: +SKIP
    >>> fut.id, fut.status                                # doctest: +SKIP
    ('9c1d...', <Status.CREATED: 'created'>)
    >>> video = await fut                                 # doctest: +SKIP
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_cancelled",
        "_checks",
        "_id",
        "_last_check",
        "_model",
        "_on_finish",
        "_owner",
        "_polled",
        "_prediction",
        "_schedule",
        "_started",
        "_trace",
        "_waiters",
        "_warned",
    )

    def __init__(
        self,
        owner: FutureOwner,
        prediction_id: str,
        *,
        model: str = "",
        schedule: Schedule,
        prediction: Prediction | None = None,
        on_finish: Callable[[], None] | None = None,
        started: float | None = None,
        trace: PredictionTrace = NOTHING,
    ) -> None:
        self._owner = owner
        self._id = prediction_id
        self._model = model or (prediction.model if prediction else "")
        self._schedule = schedule
        self._prediction = prediction
        self._waiters: list[asyncio.Future[None]] | None = None
        self._cancelled = False
        self._on_finish = on_finish  # frees the client's running-task slot, once
        self._callbacks: list[Callable[[Prediction], None]] | None = None
        # Loop time of the submit (None for a task resumed by id: its age is unknown).
        self._started = started
        self._checks = 0
        self._last_check: float | None = None
        self._warned = False
        self._polled = _Polled(self)  # what the engine sees of this future
        self._trace = trace  # the prediction's span, ended at the last status seen
        self._settle()
        if self.done():  # a sync-mode submit: finished on arrival
            self._finish_trace(None)
        elif trace.active:  # dropped unfinished: the span ends where the last wait did
            weakref.finalize(self, trace.abandon).atexit = False

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
        self._owner.engine.unwatch(self._polled)
        for waiter in self._take_waiters():
            waiter.cancel(f"polling of prediction {self._id} was cancelled")

    async def cancel_remote(self) -> bool:
        """Cancel the task on the platform by deleting it, then stop polling as :meth:`cancel`.

        Returns whether a task was deleted: ``False`` when it had already finished (its
        outputs are kept; nothing changes here). Deleting is the only cancellation the
        platform documents; whether it bills a task deleted while running is the platform's
        call. A coroutine, not ``cancel(remote=True)``: the delete is a request that can fail,
        and its caller must learn whether the task (and its bill) was stopped.
        """
        if self.done():
            return False
        try:
            deleted = await self._owner.cancel(self._id)
        except WaveSpeedError as exc:
            exc.prediction_id = exc.prediction_id or self._id
            raise
        if deleted:
            self.cancel()
        return deleted

    def deliver(self, prediction: Prediction) -> None:
        """Hand the future a state learnt elsewhere, such as a webhook delivery.

        A terminal state finishes the future at once: waiters return without another check.
        A delivery for another id raises ``ValueError``; one arriving after the future is done
        is ignored (deliveries may repeat).
        """
        if prediction.id != self._id:
            raise ValueError(f"delivery for {prediction.id} given to the future of {self._id}")
        try:  # a delivery is seen the moment it arrives: an exact duration to learn from
            now: float | None = asyncio.get_running_loop().time()
        except RuntimeError:
            now = None
        self._observe(prediction, previous_check=now)
        if self.done():
            self._owner.engine.unwatch(self._polled)

    def on_status(self, callback: Callable[[Prediction], None]) -> None:
        """Call ``callback(prediction)`` whenever a check or a delivery shows a new status.

        A callback that raises is logged and does not stop the polling.
        """
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(callback)

    async def refresh(self) -> Prediction:
        """Fetch the task's current state once (one GET), and remember it."""
        try:
            prediction = await self._owner.get_prediction(self._id)
        except WaveSpeedError as exc:
            exc.prediction_id = exc.prediction_id or self._id
            raise
        self._observe(prediction)
        return prediction

    @overload
    async def download(
        self, directory: os.PathLike[str], *, max_bytes: int | None = ...
    ) -> list[Path]: ...

    @overload
    async def download(
        self, directory: str | os.PathLike[str], *, max_bytes: int | None = ...
    ) -> list[Path] | list[str]: ...

    async def download(
        self, directory: str | os.PathLike[str], *, max_bytes: int | None = None
    ) -> list[Path] | list[str]:
        """Save the finished task's outputs under ``directory``; returns the paths.

        It does not wait: await the future first. An unfinished task raises
        :class:`NotFinished`, a failed one :class:`PredictionFailed`. Files are named
        ``{id}-{index}{suffix}`` and written as :meth:`AsyncWaveSpeed.download` writes them.

        >>> video = await fut                                 # doctest: +SKIP
        >>> await fut.download("videos/")                     # doctest: +SKIP
        [PosixPath('videos/9c1d...-0.mp4')]
        """
        prediction = self._prediction
        if prediction is None or not prediction.status.is_terminal:
            status = prediction.raw_status if prediction else "not checked yet"
            raise NotFinished(
                f"prediction {self._id} is not finished ({status}): await it before downloading",
                prediction_id=self._id,
            )
        if max_bytes is None:
            return await self._owner.download(prediction, directory)
        return await self._owner.download(prediction, directory, max_bytes=max_bytes)

    def __await__(self) -> Generator[Any, None, Prediction]:
        return self.wait().__await__()

    async def wait(self, timeout: float | None = None) -> Prediction:
        """Wait until the task is terminal, at most ``timeout`` seconds.

        ``None`` means the client's ``wait_timeout``; pass ``math.inf`` to wait without a
        deadline. A timeout raises :class:`PredictionTimeout` and leaves the task running.
        """
        if self._cancelled:
            raise asyncio.CancelledError(f"polling of prediction {self._id} was cancelled")
        if self.done():
            return self._outcome()
        limit = self._owner.wait_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        if not self._waiters:  # the first waiter starts the polling (ClientClosed if closed)
            self._owner.engine.watch(self._polled, self._first_due(loop.time()))
        waiter: asyncio.Future[None] = loop.create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        timer = None if math.isinf(limit) else loop.call_later(limit, self._expire, waiter, limit)
        try:
            await waiter
        except BaseException as error:
            if not self.done():
                self._trace.waited(error)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._leave(waiter)
        return self._outcome()

    # --- driven by the engine -----------------------------------------------------------------

    def _first_due(self, now: float) -> float:
        if self._prediction is None:
            return now  # a resumed id: look at once
        if self._last_check is not None:
            return max(now, self._next_due())
        if self._started is None:
            return now
        return self._started + self._schedule.next_delay(0, 0.0)

    def _next_due(self) -> float:
        assert self._last_check is not None
        elapsed = self._last_check - self._started if self._started is not None else math.inf
        return self._last_check + self._schedule.next_delay(self._checks, elapsed)

    def _likelihood(self, now: float) -> float:
        """How likely the task is finished by ``now``: its age over the expected duration."""
        if self._started is None:
            return 1.0
        summary = self._owner.poll_stats.summary(self._model)
        expected = summary[1] if summary else 60.0
        return (now - self._started) / expected

    def _checked(self, prediction: Prediction) -> None:
        """A check's answer (sent by the engine)."""
        loop = asyncio.get_running_loop()
        previous, self._last_check = self._last_check, loop.time()
        self._checks += 1
        self._trace.checked()
        self._observe(prediction, previous_check=previous)
        if prediction.status is Status.UNKNOWN and not self._warned:
            self._warned = True
            log.warning(
                "prediction %s has unknown status %r; polling until the deadline",
                self._id,
                prediction.raw_status,
                extra=about(self._id, self._model),
            )

    def _fail_waiters(self, error: BaseException) -> None:
        for waiter in self._take_waiters():
            if not waiter.done():
                waiter.set_exception(error)

    def _expire(self, waiter: asyncio.Future[None], limit: float) -> None:
        if not waiter.done():
            waiter.set_exception(PredictionTimeout(self._id, limit, self._prediction))

    def _leave(self, waiter: asyncio.Future[None]) -> None:
        if self._waiters is not None and waiter in self._waiters:
            self._waiters.remove(waiter)
            if not self._waiters:
                self._waiters = None
                self._owner.engine.unwatch(self._polled)  # nobody is listening: stop the requests

    def _take_waiters(self) -> list[asyncio.Future[None]]:
        waiters, self._waiters = self._waiters or [], None
        return waiters

    def _observe(self, prediction: Prediction, *, previous_check: float | None = None) -> None:
        """Remember a state seen; a finished future keeps its outcome (deliveries repeat)."""
        if self.done():
            return
        previous, self._prediction = self.status, prediction
        if prediction.model:
            self._model = prediction.model
        if prediction.status is not previous and self._callbacks:
            for callback in self._callbacks:
                try:
                    callback(prediction)
                except Exception:
                    log.exception(
                        "an on_status callback of prediction %s raised",
                        self._id,
                        extra=about(self._id, self._model),
                    )
        if self.done():
            self._finish_trace(self._learn(prediction, previous_check))
            self._settle()
            for waiter in self._take_waiters():
                if not waiter.done():
                    waiter.set_result(None)

    def _learn(self, prediction: Prediction, previous_check: float | None) -> float | None:
        """Record how long the task took: it ended between the last two sights of it.

        Returns the detection lag this implies (from the estimated end to now), if known.
        """
        if self._started is None or prediction.status is not Status.COMPLETED:
            return None
        high = asyncio.get_running_loop().time() - self._started
        inference = 0.0  # the server's own run time: a lower bound (queueing is not in it)
        if prediction.timings is not None and prediction.timings.inference:
            inference = prediction.timings.inference / 1000 * self._owner.time_scale
        if previous_check is None:
            # Done by its first check: only "by now" is known; the run time, when given,
            # keeps the fastest tasks from all being learnt as the first check's time.
            estimate = inference if 0 < inference < high else high
        else:  # it ended between the last check that saw it running and this one
            low = previous_check - self._started
            estimate = min(high, max(low, (low + high) / 2, inference))
        self._owner.poll_stats.record(self._model, estimate)
        return high - estimate

    def _finish_trace(self, detection_lag: float | None) -> None:
        prediction = self._prediction
        if prediction is None or not self._trace.active:
            return
        timings = prediction.timings
        self._trace.finish(
            prediction.raw_status or prediction.status.value,
            error=PredictionFailed(prediction) if prediction.status.is_failure else None,
            inference=timings.inference / 1000 if timings and timings.inference else None,
            detection_lag=detection_lag,
        )

    def _settle(self) -> None:
        if self._on_finish is not None and (self.done() or self._cancelled):
            release, self._on_finish = self._on_finish, None
            release()

    def _outcome(self) -> Prediction:
        prediction = self._prediction
        assert prediction is not None
        assert prediction.status.is_terminal
        if prediction.status.is_failure:
            raise PredictionFailed(prediction)
        return prediction


class _Polled:
    """The engine's view of one future (:class:`Pollable`): its answers go to the future."""

    __slots__ = ("_future",)

    def __init__(self, future: PredictionFuture) -> None:
        self._future = future

    @property
    def id(self) -> str:
        return self._future.id

    def done(self) -> bool:
        return self._future.done()

    def next_due(self) -> float:
        return self._future._next_due()

    def likelihood(self, now: float) -> float:
        return self._future._likelihood(now)

    def checked(self, prediction: Prediction) -> None:
        self._future._checked(prediction)

    def fail(self, error: BaseException) -> None:
        self._future._fail_waiters(error)

    @property
    def trace(self) -> PredictionTrace:
        return self._future._trace
