"""At most one task per idempotency key, however many callers, processes or retries.

The platform has no idempotency key, so the client keeps its own ledger in the coordinator
(in memory by default, in Redis across processes). The first caller records "submitting"
atomically before sending and the task id as soon as it is known; a concurrent or later caller
with the same key gets a future on that same task. A key whose submit ended uncertain, or whose
claimant died before recording the outcome, is reconciled through the API's history exactly as
a batch journal is: a task found is adopted; a resend happens only when the history proves the
submit created nothing; anything less is :class:`SubmissionUncertain`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import attrs

from .._coordination.local import IdempotencyRecord
from .._http.retry import outcome_unknown
from .._http.session import ApiSession
from .._wire.convert import structure_prediction
from .._wire.models import Prediction, Status
from .._wire.protocol import Request, is_sync_timeout
from ..errors import PredictionTimeout, SubmissionUncertain, WaveSpeedError
from .future import FutureOwner, PredictionFuture
from .polling import LearnedSchedule, PollSchedule, PollStats, Schedule, schedule_for
from .ports import FutureTracker, KeyedClient
from .reconcile import Pending, reconcile

__all__ = ["SETTLE", "Submitter", "submit_once"]

log = logging.getLogger(__name__)

#: How old an unanswered submit must be before the history is trusted to show its task.
SETTLE = 2.0
#: Claims taken again after a claimant dropped its claim or died, before giving up.
_ROUNDS = 4


async def submit_once(
    client: KeyedClient,
    key: str,
    model: str,
    body: Mapping[str, Any],
    submit: Callable[[], Awaitable[PredictionFuture]],
    *,
    poll_schedule: PollSchedule | None,
    timeout: float,
) -> PredictionFuture:
    """Submit with ``submit()`` only if no task exists for ``key``; else a future on it.

    Raises :class:`IdempotencyConflict` when ``key`` was used with another model or payload,
    :class:`CoordinatorUnavailable` when the ledger cannot be reached (nothing is sent), and
    :class:`SubmissionUncertain` when a task may exist but the history cannot tell.
    """
    coordinator = client.coordinator
    for _ in range(_ROUNDS):
        claim = await coordinator.claim(key, model=model, payload=body)
        record = claim.record
        if not claim.owned:
            if record.state != "submitted":
                try:
                    record = await coordinator.wait_submitted(key, timeout)
                except (TimeoutError, asyncio.TimeoutError):  # the latter on Python 3.10
                    raise PredictionTimeout(
                        None, timeout, reason=f"another submit with key {key!r} is under way"
                    ) from None
            if record.state == "submitted" and record.prediction_id:
                return _adopted(client, record.prediction_id, model, poll_schedule)
            continue  # dropped or orphaned: claim again (one caller then owns the key)
        if record.orphaned:  # its claimant died between "submitting" and "submitted"
            found = await _look_up(client, record)
            if found is not None:
                await coordinator.record_submitted(key, found)
                return _adopted(client, found, model, poll_schedule)
        return await _submit_owned(client, key, model, body, submit, poll_schedule)
    raise PredictionTimeout(None, timeout, reason=f"the claim on key {key!r} kept changing hands")


async def _submit_owned(
    client: KeyedClient,
    key: str,
    model: str,
    body: Mapping[str, Any],
    submit: Callable[[], Awaitable[PredictionFuture]],
    poll_schedule: PollSchedule | None,
) -> PredictionFuture:
    """Submit for an owned claim; after an uncertain answer, resend only what is proven absent."""
    coordinator = client.coordinator
    for attempt in range(2):
        try:
            future = await submit()
        except asyncio.CancelledError:
            await _abandon(client, key)  # cancelled mid-submit: the next caller reconciles
            raise
        except SubmissionUncertain as uncertain:
            record = IdempotencyRecord(
                key=key,
                fingerprint="",
                model=model,
                payload=dict(body),
                state="submitting",
                sent_at=uncertain.sent_at,
            )
            try:
                found = await _look_up(client, record)
            except SubmissionUncertain:  # the history cannot tell: leave it to the next caller
                await _abandon(client, key)
                raise
            if found is not None:
                await coordinator.record_submitted(key, found)
                return _adopted(client, found, model, poll_schedule)
            if attempt == 1:
                await coordinator.record_absent(key)  # proven absent twice: let a caller retry
                raise
            continue  # the history proves the submit created nothing: it may be sent again
        except WaveSpeedError:
            await coordinator.record_absent(key)  # refused before any task existed
            raise
        await coordinator.record_submitted(key, future.id)
        return future
    raise AssertionError("unreachable")


async def _look_up(client: KeyedClient, record: IdempotencyRecord) -> str | None:
    """The task an unanswered submit created, from the history; ``None`` if none is found.

    A history that proves the submit created nothing returns ``None`` too (the caller may then
    send it); one that cannot tell raises :class:`SubmissionUncertain`.
    """
    age = (dt.datetime.now(dt.timezone.utc) - record.sent_at).total_seconds()
    if age < SETTLE:  # a submit still in transit would be missed by the history: wait it out
        await asyncio.sleep(SETTLE - age)
    pending = Pending(record.key, record.model, dict(record.payload), record.sent_at)
    verdict = (await reconcile(client, [pending], (), now=dt.datetime.now(dt.timezone.utc)))[
        record.key
    ]
    if verdict.prediction_id is not None:
        log.info(
            "idempotency key %r: adopted task %s from the history",
            record.key,
            verdict.prediction_id,
        )
        return verdict.prediction_id
    if verdict.absent:
        return None
    raise SubmissionUncertain(
        f"a submit with idempotency key {record.key!r} may have created a task, and the"
        f" history cannot tell ({verdict.reason}); nothing was resent",
        model=record.model,
        payload=record.payload,
        sent_at=record.sent_at,
    )


async def _abandon(client: KeyedClient, key: str) -> None:
    """Give the claim up as an orphan; shielded, and never hiding the error being raised."""
    try:
        with anyio.CancelScope(shield=True):
            await client.coordinator.abandon(key)
    except WaveSpeedError as exc:
        log.warning("idempotency key %r could not be released for reconciliation: %s", key, exc)


def _adopted(
    client: KeyedClient, prediction_id: str, model: str, poll_schedule: PollSchedule | None
) -> PredictionFuture:
    future = client.prediction(prediction_id, model=model, poll_schedule=poll_schedule)
    if client.webhooks is not None:
        client.webhooks.track(future)
    return future


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
    ) -> None:
        self._api = api
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
        lease = await self._api.acquire_slot(limit)
        try:
            started = loop.time()
            prediction = await self._create(model, request, body, deadline)
        except BaseException:
            if lease is not None:
                self._api.release_slot(lease)
            raise
        if lease is not None:
            await self._api.coordinator.bind_slot(lease, prediction.id)
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
        )
        if receiver is not None:
            receiver.track(future)
        return future

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
