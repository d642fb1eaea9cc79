"""What clients share: account-wide limits, the idempotency ledger and webhook fan-out.

A :class:`Coordinator` is the one place a client asks "may I submit now?", "may another task
run?", "was this idempotency key submitted already?" and "did any process see this webhook?".
:class:`LocalCoordinator` answers for one process, in memory (the default);
``wavespeed_async.redis.RedisCoordinator`` answers for every process sharing a Redis.

The idempotency ledger protects money: ``claim`` records "submitting" atomically, so exactly one
caller submits for a key; the others wait for its prediction id with ``wait_submitted``. A
submit whose outcome nobody could prove leaves its key "uncertain": every caller is told so at
once, one at a time re-reads the history, and the user may settle it by hand.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Generic, Literal, Protocol, TypeVar

import anyio
import attrs

from .._telemetry import about
from .._wire.convert import structure_prediction
from .._wire.limits import Limits, SubmitRate
from .._wire.models import Prediction
from ..errors import IdempotencyConflict, InvalidInput, WaveSpeedError

__all__ = [
    "LEDGER_TTL",
    "Claim",
    "Coordinator",
    "IdempotencyRecord",
    "LocalCoordinator",
    "TTLCache",
    "absent_record",
    "call_delivery_callbacks",
    "fingerprint",
    "parse_delivery",
]

log = logging.getLogger(__name__)

#: How long the ledger remembers an idempotency key, in seconds (7 days).
LEDGER_TTL = 7 * 24 * 3600.0

RecordState = Literal["submitting", "submitted", "absent", "uncertain"]


def fingerprint(model: str, payload: Mapping[str, Any]) -> str:
    """The sha256 of the canonical JSON of ``model`` and ``payload``: what a key was used for.

    >>> fingerprint("m", {"b": 1, "a": 2}) == fingerprint("m", {"a": 2, "b": 1})
    True
    """
    try:
        canonical = json.dumps(
            {"model": model, "payload": payload},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
    except (TypeError, ValueError):
        raise InvalidInput("payload", payload, "JSON values (the unstructured payload)") from None
    return hashlib.sha256(canonical.encode()).hexdigest()


@attrs.define(frozen=True)
class IdempotencyRecord:
    """What the ledger knows of one idempotency key.

    ``state`` is ``"submitting"`` (a caller claimed the key and is sending the submit),
    ``"submitted"`` (``prediction_id`` is the task it created), ``"uncertain"`` (a submit was
    sent and nobody could prove whether it created a task: ``reason`` says why) or, only as
    the answer of ``wait_submitted``, ``"absent"`` (the claimant dropped its claim: nothing was
    created, so claim again). ``sent_at`` is when the key was claimed, or for an uncertain key
    when its submit was sent (UTC); ``proof_after`` (uncertain keys) is the latest its task
    could have been created. ``orphaned`` marks a "submitting" record whose claimant died
    before recording the outcome: the task may exist, so the new owner reconciles through the
    API's history before it submits again.
    """

    key: str
    fingerprint: str
    model: str
    payload: Mapping[str, Any]
    state: RecordState
    sent_at: dt.datetime
    prediction_id: str | None = None
    orphaned: bool = False
    proof_after: dt.datetime | None = None
    reason: str = ""


@attrs.define(frozen=True)
class Claim:
    """The answer to ``claim``: ``owned`` means this caller recorded "submitting" and submits.

    With ``owned`` and ``record.orphaned``, this caller took over a dead claimant's key: it
    reconciles through the API's history first. With ``owned`` and an "uncertain" record, this
    caller is the one that re-reads the history now (it then records the outcome, or
    ``record_uncertain`` again). Without ``owned``, ``record`` is someone else's: its
    ``prediction_id`` once "submitted"; "uncertain" (another caller is re-reading the
    history); else wait with ``wait_submitted``.
    """

    owned: bool
    record: IdempotencyRecord


class Coordinator(Protocol):
    """What clients share: account-wide limits, the idempotency ledger, webhook fan-out."""

    async def start(self, limits: Limits) -> None:
        """Get ready in the running loop (connect, load scripts, start background tasks)."""

    async def aclose(self) -> None:
        """Stop background tasks; leases this process holds expire on their own."""

    async def submit_delay(self) -> float:
        """Take one submit's place; return the seconds to wait before sending it."""

    async def rate_limited(self) -> None:
        """A 429 came back: halve the submit rate (once per burst), for every process."""

    async def accepted(self) -> None:
        """A submit went through: the rate recovers by one per minute, up to the ceiling."""

    async def acquire_slot(self, timeout: float | None) -> str:
        """Wait for a running-task slot; return its lease id. Raises ``TimeoutError``."""

    async def bind_slot(self, lease: str, prediction_id: str) -> None:
        """The slot of ``lease`` now belongs to the task ``prediction_id``."""

    async def hold_slot(self, prediction_id: str) -> str:
        """A slot for the running task ``prediction_id`` (adopted by key, or resumed).

        Never waits, and may go over the limit (the task runs anyway). Release it when the
        task ends.
        """

    async def release_slot(self, lease_or_prediction_id: str) -> None:
        """Free a slot, by its lease id or its task's id (from any process)."""

    async def first_delivery(self, webhook_id: str, ttl: float) -> bool:
        """True the first time any process sees ``webhook_id`` (for ``ttl`` seconds)."""

    async def publish_delivery(self, prediction_json: bytes) -> None:
        """Hand a verified delivery's body (the prediction object) to every process."""

    def on_delivery(self, callback: Callable[[Prediction], None]) -> None:
        """Call ``callback`` with every published delivery, whichever process published it."""

    async def claim(self, key: str, *, model: str, payload: Mapping[str, Any]) -> Claim:
        """Claim ``key`` for a submit of ``model`` with ``payload`` (see :class:`Claim`)."""

    async def record_submitted(self, key: str, prediction_id: str) -> None:
        """The owned claim on ``key`` created the task ``prediction_id``."""

    async def record_absent(self, key: str, *, by_hand: bool = False) -> None:
        """The owned submit on ``key`` provably created nothing: drop the claim.

        Only the caller's own claim (a late call leaves a fresh claim alone); ``by_hand`` drops
        an uncertain or orphaned key that nobody here claimed (``resolve_key(absent=True)``).
        """

    async def record_uncertain(
        self, key: str, *, sent_at: dt.datetime, proof_after: dt.datetime, reason: str
    ) -> None:
        """The owned claim on ``key`` sent a submit whose outcome nobody could prove.

        The key becomes "uncertain" and unowned: each later ``claim`` gets it (one caller at a
        time, owned, to re-read the history), and waiters wake. ``sent_at`` and
        ``proof_after`` bound when its task could have been created; ``reason`` says why the
        history could not tell.
        """

    async def read_record(self, key: str) -> IdempotencyRecord | None:
        """What the ledger knows of ``key`` now (``None``: nothing), without claiming it."""

    async def abandon(self, key: str) -> None:
        """Give up the owned claim on ``key`` without an outcome (the task may exist).

        A "submitting" claim becomes an orphan at once: the next caller takes it over and
        reconciles through the API's history, instead of waiting for this claimant. An
        "uncertain" key stays uncertain, free for the next caller to check.
        """

    async def wait_submitted(self, key: str, timeout: float) -> IdempotencyRecord:
        """Wait until another caller's claim on ``key`` settles. Raises ``TimeoutError``.

        The answer is "submitted" (use its ``prediction_id``), "uncertain" (the submit's
        outcome is unknown), "absent" (the claim was dropped) or an ``orphaned`` "submitting"
        record (its claimant died); after the last two, ``claim`` again: one caller then owns
        the key.
        """


def parse_delivery(prediction_json: bytes) -> Prediction | None:
    """The prediction of a published delivery, or ``None`` (logged) when it is unreadable."""
    try:
        return structure_prediction(json.loads(prediction_json))
    except (ValueError, WaveSpeedError) as exc:
        log.warning("dropped an unreadable webhook delivery: %s", exc)
        return None


def call_delivery_callbacks(
    callbacks: list[Callable[[Prediction], None]], prediction: Prediction
) -> None:
    """Call every callback; one that raises is logged and does not stop the others."""
    for callback in callbacks:
        try:
            callback(prediction)
        except Exception:
            log.exception(
                "a webhook delivery callback failed for %s",
                prediction.id,
                extra=about(prediction.id, prediction.model),
            )


V = TypeVar("V")


class TTLCache(Generic[V]):
    """A dict whose entries expire after a time to live, holding at most ``max_entries``."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: collections.OrderedDict[str, tuple[float, V]] = collections.OrderedDict()
        self._max_entries = max_entries
        self._clock = clock

    def get(self, key: str) -> V | None:
        """The live value of ``key``, or ``None``."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def set(self, key: str, value: V, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds, evicting the expired or oldest."""
        now = self._clock()
        self._entries.pop(key, None)
        self._entries[key] = (now + ttl, value)
        while self._entries:
            oldest_key, (expires_at, _) = next(iter(self._entries.items()))
            if expires_at > now and len(self._entries) <= self._max_entries:
                break
            del self._entries[oldest_key]

    def pop(self, key: str) -> None:
        """Forget ``key``."""
        self._entries.pop(key, None)


class LocalCoordinator:
    """The :class:`Coordinator` of one process, in memory; what a client uses by default.

    The rate is a :class:`SubmitRate`, slots a counting pool, the ledger and the webhook dedup
    bounded dicts with a time to live. A claim becomes an orphan only when its claimant
    abandons it (an outcome the history could not settle); a crash takes the ledger with it.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._rate = SubmitRate(None, clock)
        self._slots: anyio.CapacityLimiter | None = None
        self._lease_of_task: dict[str, str] = {}
        self._task_of_lease: dict[str, str] = {}
        self._held: set[str] = set()
        self._ledger: TTLCache[IdempotencyRecord] = TTLCache(max_entries, clock)
        self._seen: TTLCache[bool] = TTLCache(max_entries, clock)
        self._settled: dict[str, asyncio.Event] = {}
        self._checking: set[str] = set()  # uncertain keys a caller is re-checking now
        self._callbacks: list[Callable[[Prediction], None]] = []

    def __repr__(self) -> str:
        return f"LocalCoordinator(slots_held={len(self._held)})"

    async def start(self, limits: Limits) -> None:
        """Take the limits: ``submits_per_minute`` for the rate, ``max_concurrent_tasks``."""
        self._rate = SubmitRate(limits.submits_per_minute, self._clock)
        if limits.max_concurrent_tasks is not None:
            self._slots = anyio.CapacityLimiter(limits.max_concurrent_tasks)

    async def aclose(self) -> None:
        """Nothing to stop: there are no background tasks."""

    async def submit_delay(self) -> float:
        """Take one submit's place; return the seconds to wait before sending it."""
        return self._rate.reserve()

    async def rate_limited(self) -> None:
        """A 429 came back: halve the rate (once per burst)."""
        self._rate.on_rate_limited()

    async def accepted(self) -> None:
        """A submit went through: recover by one submit per minute."""
        self._rate.on_accepted()

    async def acquire_slot(self, timeout: float | None) -> str:
        """Wait for a free slot (at most ``timeout`` seconds); return its lease id."""
        lease = f"local-{uuid.uuid4().hex}"
        if self._slots is not None:
            with anyio.fail_after(timeout):
                await self._slots.acquire_on_behalf_of(lease)
        self._held.add(lease)
        return lease

    async def bind_slot(self, lease: str, prediction_id: str) -> None:
        """The slot of ``lease`` now belongs to ``prediction_id``."""
        if lease in self._held:
            self._lease_of_task[prediction_id] = lease
            self._task_of_lease[lease] = prediction_id

    async def hold_slot(self, prediction_id: str) -> str:
        """The slot of ``prediction_id`` if this process holds one, else one taken if free.

        With none free, the lease holds nothing: in one process, a full pool means the task
        that filled it is running here.
        """
        lease = self._lease_of_task.get(prediction_id)
        if lease is not None:
            return lease
        lease = f"local-{uuid.uuid4().hex}"
        if self._slots is not None:
            try:
                self._slots.acquire_on_behalf_of_nowait(lease)
            except anyio.WouldBlock:
                return lease  # held by nobody: releasing it is a no-op
        self._held.add(lease)
        await self.bind_slot(lease, prediction_id)
        return lease

    async def release_slot(self, lease_or_prediction_id: str) -> None:
        """Free a slot by lease id or task id; an unknown or released one is ignored."""
        lease = self._lease_of_task.pop(lease_or_prediction_id, lease_or_prediction_id)
        if lease not in self._held:
            return
        self._held.discard(lease)
        self._lease_of_task.pop(self._task_of_lease.pop(lease, ""), None)
        if self._slots is not None:
            self._slots.release_on_behalf_of(lease)

    async def first_delivery(self, webhook_id: str, ttl: float) -> bool:
        """True the first time this process sees ``webhook_id`` within ``ttl`` seconds."""
        if self._seen.get(webhook_id):
            return False
        self._seen.set(webhook_id, True, ttl)
        return True

    async def publish_delivery(self, prediction_json: bytes) -> None:
        """Call this process's delivery callbacks with the prediction of the body."""
        prediction = parse_delivery(prediction_json)
        if prediction is not None:
            call_delivery_callbacks(self._callbacks, prediction)

    def on_delivery(self, callback: Callable[[Prediction], None]) -> None:
        """Call ``callback`` with every published delivery."""
        self._callbacks.append(callback)

    async def claim(self, key: str, *, model: str, payload: Mapping[str, Any]) -> Claim:
        """Claim ``key``: owned by the first caller; raises ``IdempotencyConflict`` on reuse."""
        known = self._ledger.get(key)
        digest = fingerprint(model, payload)
        if known is not None:
            if known.fingerprint != digest:
                raise IdempotencyConflict(key)
            if known.orphaned:  # abandoned: this caller takes it over (and reconciles)
                self._ledger.set(key, attrs.evolve(known, orphaned=False), LEDGER_TTL)
                return Claim(owned=True, record=known)
            if known.state == "uncertain" and key not in self._checking:
                self._checking.add(key)  # this caller re-reads the history; others are told
                return Claim(owned=True, record=known)
            return Claim(owned=False, record=known)
        record = IdempotencyRecord(
            key=key,
            fingerprint=digest,
            model=model,
            payload=dict(payload),
            state="submitting",
            sent_at=dt.datetime.now(dt.timezone.utc),
        )
        self._ledger.set(key, record, LEDGER_TTL)
        return Claim(owned=True, record=record)

    async def record_submitted(self, key: str, prediction_id: str) -> None:
        """Record that the claim on ``key`` created ``prediction_id``."""
        self._checking.discard(key)
        known = self._ledger.get(key)
        if known is not None:
            submitted = attrs.evolve(
                known, state="submitted", prediction_id=prediction_id, orphaned=False
            )
            self._ledger.set(key, submitted, LEDGER_TTL)
        self._settle(key)

    async def record_absent(self, key: str, *, by_hand: bool = False) -> None:
        """Drop the claim on ``key``: its submit created nothing."""
        self._checking.discard(key)
        self._ledger.pop(key)
        self._settle(key)

    async def record_uncertain(
        self, key: str, *, sent_at: dt.datetime, proof_after: dt.datetime, reason: str
    ) -> None:
        """``key``'s submit may have created a task and nobody can tell yet."""
        self._checking.discard(key)
        known = self._ledger.get(key)
        if known is not None:
            uncertain = attrs.evolve(
                known,
                state="uncertain",
                sent_at=sent_at,
                proof_after=proof_after,
                reason=reason,
                orphaned=False,
            )
            self._ledger.set(key, uncertain, LEDGER_TTL)
        self._settle(key)

    async def read_record(self, key: str) -> IdempotencyRecord | None:
        """What the ledger knows of ``key``."""
        return self._ledger.get(key)

    async def abandon(self, key: str) -> None:
        """Give up the claim on ``key`` without an outcome: the next caller reconciles it."""
        self._checking.discard(key)
        known = self._ledger.get(key)
        if known is not None and known.state == "submitting":
            self._ledger.set(key, attrs.evolve(known, orphaned=True), LEDGER_TTL)
        self._settle(key)

    async def wait_submitted(self, key: str, timeout: float) -> IdempotencyRecord:
        """Wait until the claim on ``key`` is submitted, uncertain, dropped or abandoned."""
        with anyio.fail_after(timeout):
            while True:
                known = self._ledger.get(key)
                if known is None or known.state != "submitting" or known.orphaned:
                    return known or absent_record(key)
                await self._settled.setdefault(key, asyncio.Event()).wait()

    def _settle(self, key: str) -> None:
        event = self._settled.pop(key, None)
        if event is not None:
            event.set()


def absent_record(key: str) -> IdempotencyRecord:
    """The answer of ``wait_submitted`` when the claim on ``key`` was dropped."""
    return IdempotencyRecord(
        key=key,
        fingerprint="",
        model="",
        payload={},
        state="absent",
        sent_at=dt.datetime.now(dt.timezone.utc),
    )
