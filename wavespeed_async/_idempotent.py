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
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from ._coordination import IdempotencyRecord
from ._polling import PollSchedule
from ._reconcile import Pending, reconcile
from .errors import PredictionTimeout, SubmissionUncertain, WaveSpeedError

if TYPE_CHECKING:
    from .client import AsyncWaveSpeed
    from .future import PredictionFuture

__all__ = ["SETTLE", "submit_once"]

log = logging.getLogger("wavespeed_async")

#: How old an unanswered submit must be before the history is trusted to show its task.
SETTLE = 2.0
#: Claims taken again after a claimant dropped its claim or died, before giving up.
_ROUNDS = 4


async def submit_once(
    client: AsyncWaveSpeed,
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
    client: AsyncWaveSpeed,
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


async def _look_up(client: AsyncWaveSpeed, record: IdempotencyRecord) -> str | None:
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


async def _abandon(client: AsyncWaveSpeed, key: str) -> None:
    """Give the claim up as an orphan; shielded, and never hiding the error being raised."""
    try:
        with anyio.CancelScope(shield=True):
            await client.coordinator.abandon(key)
    except WaveSpeedError as exc:
        log.warning("idempotency key %r could not be released for reconciliation: %s", key, exc)


def _adopted(
    client: AsyncWaveSpeed, prediction_id: str, model: str, poll_schedule: PollSchedule | None
) -> PredictionFuture:
    future = client.prediction(prediction_id, model=model, poll_schedule=poll_schedule)
    if client.webhooks is not None:
        client.webhooks.track(future)
    return future
