"""At most one task per idempotency key, however many callers, processes or retries.

The platform has no idempotency key, so the client keeps its own ledger in the coordinator
(in memory by default, in Redis across processes). The first caller records "submitting"
atomically before sending and the task id as soon as it is known; a concurrent or later caller
with the same key gets a future on that same task.

A submit that got no answer is looked up in the API's history (:mod:`.reconcile`): a task
found is adopted; a resend happens only when the history *proves* the submit created nothing
(it lists a later task of the account); anything less leaves the key **uncertain**. Then the
caller, and every later caller of the key, gets :class:`SubmissionUncertain` at once (nothing
is sent); one caller at a time re-reads the history, which settles the key once it can, and
:meth:`KeyedSubmits.resolve` lets the user settle it by hand. A claimant that died between
"submitting" and "submitted" leaves an orphan, settled the same way.

Once the platform answered with an id, the caller gets the future even if the ledger cannot
be written: the write is retried in the background, and this process remembers the id
meanwhile.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from .._coordination.local import IdempotencyRecord, fingerprint
from .._telemetry import about
from .._wire.protocol import check_prediction_id
from ..errors import (
    IdempotencyConflict,
    InvalidInput,
    PredictionTimeout,
    SubmissionUncertain,
    WaveSpeedError,
)
from .background import Background
from .future import PredictionFuture
from .polling import PollSchedule
from .ports import KeyedClient
from .reconcile import Pending, Verdict, reconcile
from .seeds import Deadline

__all__ = ["MAX_KEY_LENGTH", "KeyedSubmits", "check_idempotency_key"]

log = logging.getLogger(__name__)

#: The longest idempotency key accepted, in characters.
MAX_KEY_LENGTH = 256
#: How long a ledger write may hold up a caller whose task already exists (then background).
RECORD_BUDGET = 2.0
#: Claims taken again after a claimant dropped its claim or died, before giving up.
_ROUNDS = 4

Send = Callable[[float], Awaitable[PredictionFuture]]
#: A future on an existing task that holds a running slot: (prediction id, model, schedule).
Adopt = Callable[[str, str, "PollSchedule | None"], Awaitable[PredictionFuture]]


def check_idempotency_key(key: object) -> str:
    """``key`` if it is a usable idempotency key, else :class:`InvalidInput` (nothing sent).

    A key is a non-empty ``str`` of at most :data:`MAX_KEY_LENGTH` characters with no control
    characters (nor unpaired surrogates, which no ledger can store).
    """
    if (
        not isinstance(key, str)
        or not 0 < len(key) <= MAX_KEY_LENGTH
        or any(unicodedata.category(char) in ("Cc", "Cs") for char in key)
    ):
        raise InvalidInput(
            "idempotency_key",
            key,
            f"a non-empty str of at most {MAX_KEY_LENGTH} characters, without control characters",
        )
    return key


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class KeyedSubmits:
    """The keyed submits of one client: claim, send once, reconcile, record, resolve."""

    def __init__(
        self, client: KeyedClient, background: Background, adopt: Adopt | None = None
    ) -> None:
        self._client = client
        self._background = background
        self._adopt = adopt
        #: Keys whose task exists but whose ledger write has not landed: key -> (digest, id).
        self._unrecorded: dict[str, tuple[str, str]] = {}

    def __repr__(self) -> str:
        return f"KeyedSubmits(unrecorded={len(self._unrecorded)})"

    async def submit(
        self,
        key: str,
        model: str,
        body: Mapping[str, Any],
        send: Send,
        *,
        poll_schedule: PollSchedule | None,
        timeout: float,
    ) -> PredictionFuture:
        """Submit with ``send(seconds_left)`` only if no task exists for ``key``.

        Raises :class:`IdempotencyConflict` when ``key`` was used with another model or
        payload, :class:`CoordinatorUnavailable` when the ledger cannot be reached (nothing
        is sent), :class:`SubmissionUncertain` when the key is uncertain, and
        :class:`PredictionTimeout` when ``timeout`` passes while another caller submits.
        """
        deadline = Deadline(timeout)
        known = self._remembered(key, model, body)
        if known is not None:
            return await self._adopted(known, model, poll_schedule)
        coordinator = self._client.coordinator
        for _ in range(_ROUNDS):
            claim = await coordinator.claim(key, model=model, payload=body)
            record = claim.record
            if not claim.owned:
                if record.state == "submitting":
                    record = await self._wait(key, deadline, timeout)
                if record.state == "submitted" and record.prediction_id:
                    return await self._adopted(record.prediction_id, model, poll_schedule)
                if record.state == "uncertain":
                    raise _uncertain(record, record.reason or "another caller is checking")
                continue  # dropped or orphaned: claim again (one caller then owns the key)
            if record.state == "uncertain" or record.orphaned:
                found = await self._settle(record, deadline)
                if found is not None:
                    return await self._adopted(found, model, poll_schedule)
                if record.state == "uncertain":  # proven absent: free the key, claim again
                    await coordinator.record_absent(key)
                    continue
            return await self._submit_owned(key, model, body, send, poll_schedule, deadline)
        raise PredictionTimeout(
            None, timeout, reason=f"the claim on key {key!r} kept changing hands"
        )

    async def resolve(
        self, key: str, *, prediction_id: str | None, absent: bool
    ) -> PredictionFuture | None:
        """Settle an uncertain (or orphaned) key by hand: adopt ``prediction_id``, or ``absent``.

        The task is checked first: it must exist (else :class:`NotFound`), be of the key's
        model and, when the answer shows it, have the key's input.
        """
        check_idempotency_key(key)
        if (prediction_id is None) == (not absent):
            raise InvalidInput(
                "prediction_id", prediction_id, "the id of the key's task, or absent=True (one)"
            )
        coordinator = self._client.coordinator
        record = await coordinator.read_record(key)
        if record is None:
            raise InvalidInput("idempotency_key", key, "a key the ledger knows (this one is not)")
        if record.state == "submitted":
            if prediction_id is not None and prediction_id == record.prediction_id:
                return await self._adopted(prediction_id, record.model, None)
            raise InvalidInput(
                "idempotency_key", key, f"an uncertain key (it created {record.prediction_id})"
            )
        if record.state == "submitting" and not record.orphaned:
            raise InvalidInput("idempotency_key", key, "an uncertain key (a submit is under way)")
        if prediction_id is None:
            await coordinator.record_absent(key, by_hand=True)
            self._unrecorded.pop(key, None)
            log.info("idempotency key %r declared absent: the next call submits", key)
            return None
        await self._check_task(record, check_prediction_id(prediction_id))
        await coordinator.record_submitted(key, prediction_id)
        log.info(
            "idempotency key %r resolved to task %s",
            key,
            prediction_id,
            extra=about(prediction_id, record.model),
        )
        return await self._adopted(prediction_id, record.model, None)

    # --- the steps ----------------------------------------------------------------------------

    async def _wait(self, key: str, deadline: Deadline, timeout: float) -> IdempotencyRecord:
        try:
            return await self._client.coordinator.wait_submitted(key, deadline.left())
        except (TimeoutError, asyncio.TimeoutError):  # the latter on Python 3.10
            raise PredictionTimeout(
                None, timeout, reason=f"another submit with key {key!r} is under way"
            ) from None

    async def _submit_owned(
        self,
        key: str,
        model: str,
        body: Mapping[str, Any],
        send: Send,
        poll_schedule: PollSchedule | None,
        deadline: Deadline,
    ) -> PredictionFuture:
        """Submit for an owned claim; after no answer, resend only what is proven absent."""
        for attempt in range(2):
            try:
                future = await send(deadline.left())
            except asyncio.CancelledError:
                await self._abandon(key)  # cancelled mid-submit: the next caller reconciles
                raise
            except SubmissionUncertain as uncertain:
                pending = Pending(key, model, dict(body), uncertain.sent_at, _utc_now())
                verdict = await self._check(pending, deadline)
                if verdict.prediction_id is not None:
                    await self._record_task(key, verdict.prediction_id, model, body, deadline)
                    return await self._adopted(verdict.prediction_id, model, poll_schedule)
                if verdict.absent and attempt == 0:
                    continue  # the history proves the submit created nothing: send it again
                if verdict.absent:  # proven absent twice: let a later caller try
                    await self._write(f"dropping idempotency key {key!r}", deadline, key)
                    raise
                await self._record_uncertain(pending, verdict.reason, deadline)
                raise _uncertain(pending, verdict.reason) from uncertain
            except WaveSpeedError:  # refused before any task existed
                await self._write(f"dropping idempotency key {key!r}", deadline, key)
                raise
            await self._record_task(key, future.id, model, body, deadline)
            return future
        raise AssertionError("unreachable")

    async def _settle(self, record: IdempotencyRecord, deadline: Deadline) -> str | None:
        """Re-read the history for an owned uncertain or orphaned key: the task found, or None.

        ``None`` means proven absent; when the history cannot tell, the key is (again) marked
        uncertain and :class:`SubmissionUncertain` raised.
        """
        # An uncertain key, or a key claimed after Redis lost its data, says until when its
        # task could have been created; a dead claimant may have sent its submit until now.
        proof_after = record.proof_after or _utc_now()
        pending = Pending(
            record.key, record.model, dict(record.payload), record.sent_at, proof_after
        )
        verdict = await self._check(pending, deadline)
        if verdict.prediction_id is not None:
            log.info(
                "idempotency key %r: adopted task %s from the history",
                record.key,
                verdict.prediction_id,
                extra=about(verdict.prediction_id, record.model),
            )
            await self._record_task(
                record.key, verdict.prediction_id, record.model, record.payload, deadline
            )
            return verdict.prediction_id
        if verdict.absent:
            return None
        await self._record_uncertain(pending, verdict.reason, deadline)
        raise _uncertain(pending, verdict.reason)

    async def _check(self, pending: Pending, deadline: Deadline) -> Verdict:
        """The history's verdict on ``pending``, read within the caller's deadline."""
        with anyio.move_on_after(deadline.left()):
            verdicts = await reconcile(self._client, [pending], (), now=_utc_now())
            return verdicts[pending.key]
        return Verdict(reason="the deadline passed while reading the history")

    # --- ledger writes: the task exists, so they may fail without failing the caller ---------

    async def _record_task(
        self,
        key: str,
        prediction_id: str,
        model: str,
        body: Mapping[str, Any],
        deadline: Deadline,
    ) -> None:
        digest = fingerprint(model, body)
        self._unrecorded[key] = (digest, prediction_id)

        async def write() -> None:
            await self._client.coordinator.record_submitted(key, prediction_id)

        def landed() -> None:
            if self._unrecorded.get(key) == (digest, prediction_id):
                del self._unrecorded[key]

        what = f"recording task {prediction_id} for idempotency key {key!r}"
        await self._background.write(
            what, write, budget=_budget(deadline), landed=landed, fields=about(prediction_id, model)
        )

    async def _record_uncertain(self, pending: Pending, reason: str, deadline: Deadline) -> None:
        async def write() -> None:
            await self._client.coordinator.record_uncertain(
                pending.key,
                sent_at=pending.sent_at,
                proof_after=pending.proof_after or pending.sent_at,
                reason=reason,
            )

        what = f"marking idempotency key {pending.key!r} uncertain"
        await self._background.write(what, write, budget=_budget(deadline))

    async def _write(self, what: str, deadline: Deadline, key: str) -> None:
        async def write() -> None:
            await self._client.coordinator.record_absent(key)

        await self._background.write(what, write, budget=_budget(deadline))

    async def _abandon(self, key: str) -> None:
        """Give the claim up as an orphan; shielded, and never hiding the error being raised."""
        try:
            with anyio.CancelScope(shield=True), anyio.fail_after(RECORD_BUDGET):
                await self._client.coordinator.abandon(key)
        except (WaveSpeedError, TimeoutError) as exc:
            log.warning("idempotency key %r could not be released for reconciliation: %s", key, exc)

    # --- helpers ------------------------------------------------------------------------------

    def _remembered(self, key: str, model: str, body: Mapping[str, Any]) -> str | None:
        """The task of ``key`` this process created but could not record yet, if any."""
        known = self._unrecorded.get(key)
        if known is None:
            return None
        if known[0] != fingerprint(model, body):
            raise IdempotencyConflict(key)
        return known[1]

    async def _check_task(self, record: IdempotencyRecord, prediction_id: str) -> None:
        task = await self._client.get_prediction(prediction_id)
        if task.model and task.model != record.model:
            raise InvalidInput(
                "prediction_id", prediction_id, f"a task of {record.model}, not of {task.model}"
            )
        if task.input and task.input != dict(record.payload):
            raise InvalidInput("prediction_id", prediction_id, "a task with the key's input")

    async def _adopted(
        self, prediction_id: str, model: str, poll_schedule: PollSchedule | None
    ) -> PredictionFuture:
        """A future on the key's task; it holds a running slot until the task ends."""
        client = self._client
        if self._adopt is None:
            future = client.prediction(prediction_id, model=model, poll_schedule=poll_schedule)
        else:
            future = await self._adopt(prediction_id, model, poll_schedule)
        if client.webhooks is not None:
            client.webhooks.track(future)
        return future


def _budget(deadline: Deadline) -> float:
    """A ledger write's budget: short, within the caller's deadline, but never nothing."""
    return min(RECORD_BUDGET, max(deadline.left(), 0.25))


def _uncertain(known: IdempotencyRecord | Pending, reason: str) -> SubmissionUncertain:
    """The error of an uncertain key: what was sent, when, why nobody knows, what to do."""
    payload = known.payload if isinstance(known, IdempotencyRecord) else known.input
    return SubmissionUncertain(
        f"idempotency key {known.key!r}: a submit to {known.model} sent at"
        f" {known.sent_at:%Y-%m-%d %H:%M:%S}Z may have created a task, and the history cannot"
        f" tell yet ({reason}); nothing was resent. Call again later (a history that has caught"
        f" up settles it), or settle it with client.resolve_key({known.key!r},"
        " prediction_id=...) or absent=True",
        model=known.model,
        payload=payload,
        sent_at=known.sent_at,
        key=known.key,
        reason=reason,
    )
