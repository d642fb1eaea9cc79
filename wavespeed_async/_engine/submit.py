"""Sending a submit and making its future: the running slot, sync mode, schedule, webhooks.

A submit is sent once: a failure after the request may have reached the server is
:class:`SubmissionUncertain`. Once the platform answered with an id, the caller gets the
future even if the coordinator cannot bind the slot to the task (the write is retried in the
background; the slot is released, by its lease, when the task ends). Keyed submits, which
send through here, live in :mod:`.keyed`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
from typing import Any

import anyio
import attrs

from .._http.retry import outcome_unknown
from .._http.session import ApiSession
from .._telemetry import PredictionTrace, about, telemetry
from .._wire.convert import structure_prediction
from .._wire.models import Prediction, Status
from .._wire.protocol import Request, is_sync_timeout
from ..errors import SubmissionUncertain, WaveSpeedError
from .background import Background
from .future import FutureOwner, PredictionFuture
from .polling import LearnedSchedule, PollSchedule, PollStats, Schedule, schedule_for
from .ports import FutureTracker

__all__ = ["Submitter"]

log = logging.getLogger(__name__)

#: How long holding a slot for an adopted task may take before it is given up (seconds).
HOLD_BUDGET = 2.0


class Submitter:
    """Sends a submit and makes its future: the running slot, sync mode, schedule, webhooks.

    One per client. ``owner`` is what the futures it makes call back (the client).
    """

    def __init__(
        self,
        api: ApiSession,
        owner: FutureOwner,
        *,
        poll_schedule: PollSchedule | None,
        poll_stats: PollStats,
        time_scale: float,
        webhooks: FutureTracker | None,
        background: Background,
    ) -> None:
        self._api = api
        self._background = background
        self._owner = owner
        self._poll_schedule = poll_schedule
        self._poll_stats = poll_stats
        self._time_scale = time_scale
        self._webhooks = webhooks
        self._schedules: dict[str, Schedule] = {}

    def schedule(self, model: str, given: PollSchedule | None = None) -> Schedule:
        """``given``, the client's ``poll_schedule``, or the learned schedule of ``model``."""
        fixed = given or self._poll_schedule
        if fixed is not None:
            return fixed
        schedule = self._schedules.get(model)
        if schedule is None:
            if len(self._schedules) >= self._poll_stats.max_models:
                self._schedules.clear()
            fallback = schedule_for(model)
            if self._time_scale != 1:
                fallback = fallback.scaled(self._time_scale)
            schedule = LearnedSchedule(model, self._poll_stats, fallback)
            self._schedules[model] = schedule
        return schedule

    async def adopt(
        self, prediction_id: str, model: str, poll_schedule: PollSchedule | None
    ) -> PredictionFuture:
        """A future for a running task this process adopts (by key): it holds a running slot.

        The slot counts against ``max_concurrent_tasks`` (above it if need be: the task runs
        anyway) until the task ends, so the crash of the process that submitted it never
        frees room for more. A coordinator that cannot hold one in time is logged, not fatal.
        """
        lease: str | None = None
        try:
            with anyio.fail_after(HOLD_BUDGET):
                lease = await self._api.coordinator.hold_slot(prediction_id)
        except (WaveSpeedError, TimeoutError) as exc:
            log.warning("task %s runs without a slot held for it: %s", prediction_id, exc)
        return PredictionFuture(
            self._owner,
            prediction_id,
            model=model,
            schedule=self.schedule(model, poll_schedule),
            on_finish=None if lease is None else functools.partial(self._api.release_slot, lease),
        )

    def future(
        self, prediction_id: str, *, model: str = "", poll_schedule: PollSchedule | None = None
    ) -> PredictionFuture:
        """A future for a task created earlier (resume by id)."""
        return PredictionFuture(
            self._owner, prediction_id, model=model, schedule=self.schedule(model, poll_schedule)
        )

    async def submit(
        self,
        model: str,
        request: Request,
        body: dict[str, Any],
        webhook: str | None,
        poll_schedule: PollSchedule | None,
        limit: float,
    ) -> PredictionFuture:
        """Take a running slot, send ``request`` once, and return the task's future."""
        loop = self._api.check_loop()
        deadline = None if math.isinf(limit) else loop.time() + limit
        trace = telemetry.prediction(model)  # a child of the caller's span, captured now
        try:
            with trace.current():  # the submit's retries and 429s are events on it
                lease, started, prediction = await self._send(model, request, body, deadline)
        except BaseException as error:
            _refused(trace, error)
            raise
        trace.submitted(prediction.id)
        if lease is not None:
            bind = functools.partial(self._api.coordinator.bind_slot, lease, prediction.id)
            await self._background.write(
                f"binding the slot of task {prediction.id}",
                bind,
                fields=about(prediction.id, model),
            )
        if is_sync_timeout(prediction) and prediction.status.is_terminal:
            # A sync wait that ran out says nothing of the task's fate: check, don't trust.
            prediction = attrs.evolve(prediction, status=Status.PROCESSING)
        # Webhook mode: the receiver finishes the future; polling only reconciles, rarely.
        receiver = self._webhooks if webhook is not None else None
        if poll_schedule is None and receiver is not None:
            poll_schedule = receiver.reconcile_schedule
        future = PredictionFuture(
            self._owner,
            prediction.id,
            model=model,
            schedule=self.schedule(model, poll_schedule),
            prediction=prediction,
            on_finish=None if lease is None else functools.partial(self._api.release_slot, lease),
            started=started,
            trace=trace,
        )
        if receiver is not None:
            receiver.track(future)
        return future

    async def _send(
        self, model: str, request: Request, body: dict[str, Any], deadline: float | None
    ) -> tuple[str | None, float, Prediction]:
        """Take a running slot (released on failure) and send; the lease, send time, answer."""
        loop = self._api.check_loop()
        lease = await self._api.acquire_slot(
            math.inf if deadline is None else deadline - loop.time()
        )
        try:
            started = loop.time()
            return lease, started, await self._create(model, request, body, deadline)
        except BaseException:
            if lease is not None:
                self._api.release_slot(lease)
            raise

    async def _create(
        self, model: str, request: Request, body: dict[str, Any], deadline: float | None
    ) -> Prediction:
        """Send a submit; a failure that may have created the task is SubmissionUncertain."""
        sent_at = dt.datetime.now(dt.timezone.utc)
        try:
            return await self._api.call(request, parse=structure_prediction, deadline=deadline)
        except WaveSpeedError as exc:
            if not outcome_unknown(exc):
                raise
            raise SubmissionUncertain(
                f"submitting to {model} failed after the request may have reached the server"
                f" ({exc}); the task may exist, so it was not resent",
                model=model,
                payload=body,
                sent_at=sent_at,
            ) from exc


def _refused(trace: PredictionTrace, error: BaseException) -> None:
    """End the trace of a submit that created no known task."""
    if isinstance(error, SubmissionUncertain):
        trace.event("wavespeed.submit.uncertain", {"error.type": type(error.__cause__).__name__})
        trace.finish("uncertain", error=error)
    else:
        trace.finish("rejected" if isinstance(error, Exception) else "cancelled", error=error)
