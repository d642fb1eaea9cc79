"""Account-wide limits, the idempotency ledger and webhook fan-out on a shared Redis.

Many worker processes on many machines share one account: with a :class:`RedisCoordinator`
on the same Redis (and namespace), they share one submit rate, one pool of running-task slots,
one idempotency ledger, and every webhook delivery reaches every process.

>>> coordinator = RedisCoordinator("redis://redis.internal:6379/0", namespace="prod")

Every decision is one Lua script, timed by Redis ``TIME`` (machines with skewed clocks agree),
on keys of one hash slot (``{namespace}``), so a Redis Cluster works too (``cluster=True``).
Each call waits at most ``call_timeout`` (and never past the caller's deadline). When Redis
does not answer in time, or answers an error, the rate and slots fall back to this process's
own limits (one warning; they return when Redis does), and the ledger fails closed: ``claim``
and ``record_*`` raise :class:`CoordinatorUnavailable`. Idempotency keys need a Redis that
keeps them (``appendonly yes``, ``maxmemory-policy noeviction``): checked before the first
key, see ``durable_keys``. Needs the ``redis`` extra (``pip install redis``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import attrs

from .._wire.limits import DECREASE_COOLDOWN, MIN_RATE, Limits
from .._wire.models import Prediction
from ..errors import IdempotencyConflict, InvalidInput
from . import records
from .link import (
    CALL_TIMEOUT,
    FAILURES,
    DurableKeys,
    Epoch,
    RedisDown,
    RedisLink,
    connect,
    remaining,
)
from .local import (
    LEDGER_TTL,
    Claim,
    IdempotencyRecord,
    LocalCoordinator,
    absent_record,
    call_delivery_callbacks,
    fingerprint,
    parse_delivery,
)
from .queue import QueueItem, QueueStatus, RedisBatchQueue

__all__ = ["QueueItem", "QueueStatus", "RedisBatchQueue", "RedisCoordinator", "connect"]

log = logging.getLogger(__name__)


class RedisCoordinator:
    """The coordinator of every process sharing a Redis ``namespace`` (see the module doc).

    ``lease_seconds`` is how long a crashed process's slots and claims outlive it: its
    background task renews them every third of that while it runs. ``call_timeout`` bounds
    each Redis call: a Redis slower than that counts as down. ``cluster=True`` reads ``url``
    as a seed node of a Redis Cluster. Pass ``client`` (a ``redis.asyncio.Redis`` or
    ``RedisCluster``) to share a connection pool (it is then not closed by :meth:`aclose`).

    ``durable_keys="checked"`` (the default) refuses idempotency keys, with a
    :class:`ConfigurationError` naming the setting, on a Redis that could forget them: without
    ``appendonly yes``, with a ``maxmemory-policy`` other than ``noeviction``, or whose
    ``CONFIG`` cannot be read. ``"unchecked"`` accepts any Redis: a loss of all its data is
    still detected (the keys are then reconciled through the API's history), a partial one
    (eviction, a snapshot older than the last writes) is not.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "wavespeed",
        client: Any | None = None,
        lease_seconds: float = 30.0,
        call_timeout: float = CALL_TIMEOUT,
        cluster: bool = False,
        durable_keys: DurableKeys = "checked",
    ) -> None:
        if not lease_seconds > 0:
            raise InvalidInput("lease_seconds", lease_seconds, "a positive number of seconds")
        if not call_timeout > 0:
            raise InvalidInput("call_timeout", call_timeout, "a positive number of seconds")
        if durable_keys not in ("checked", "unchecked"):
            raise InvalidInput("durable_keys", durable_keys, "'checked' or 'unchecked'")
        self._url = url
        self._client = client
        self._owns_client = client is None
        self._cluster = cluster
        self.namespace = namespace
        self.lease_seconds = lease_seconds
        self.call_timeout = call_timeout
        self.durable_keys: DurableKeys = durable_keys
        self._instance = uuid.uuid4().hex
        self._limits = Limits()
        self._local = LocalCoordinator()
        self._link: RedisLink | None = None
        self._callbacks: list[Callable[[Prediction], None]] = []
        self._slots: dict[str, str] = {}  # lease -> the task it is bound to ("" if none yet)
        self._claims: dict[str, records.OwnedClaim] = {}  # key -> this caller's claim
        self._wakeups: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._reregister_due = False
        self._closing = False
        self._channel = {
            "deliveries": f"{namespace}:deliveries",
            "slots": f"{namespace}:slots:released",
            "ledger": f"{namespace}:ledger:settled",
        }

    def __repr__(self) -> str:  # never the URL: it may carry a password
        return f"RedisCoordinator(namespace={self.namespace!r}, slots_held={len(self._slots)})"

    @property
    def redis(self) -> Any:
        """The Redis client (created by :meth:`start` from the URL unless one was given)."""
        if self._client is None:
            raise RuntimeError("RedisCoordinator.start() has not run")
        return self._client

    @property
    def epoch(self) -> Epoch:
        """The life of the namespace's data as this process knows it (see ``data_lost_since``)."""
        return Epoch() if self._link is None else self._link.epoch

    @property
    def data_lost_since(self) -> dt.datetime | None:
        """Since when (UTC) keys may have been forgotten by a Redis that lost its data, or None.

        Until a week after a loss, a key the ledger does not know is reconciled through the
        API's history before it is submitted.
        """
        lost = self.epoch.lost_since_ms
        return None if lost is None else dt.datetime.fromtimestamp(lost / 1000, dt.timezone.utc)

    async def start(self, limits: Limits) -> None:
        """Make the client, and start the lease renewal and the subscription tasks.

        Redis is not contacted yet: a Redis down at start only degrades the limits.
        """
        self._limits = limits
        await self._local.start(limits)
        if self._client is None:
            self._client = connect(self._url, cluster=self._cluster, call_timeout=self.call_timeout)
        self._link = RedisLink(
            self._client,
            epoch_key=self._key("epoch"),
            call_timeout=self.call_timeout,
            durable_keys=self.durable_keys,
            recovery_ms=int(self.lease_seconds * 1000),
            loss_memory_ms=int(LEDGER_TTL * 1000),
        )
        self._link.on_loss(self._lost)
        self._link.repair = self._reregister_if_due
        self._closing = False
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._renew()), loop.create_task(self._subscribe())]

    async def aclose(self) -> None:
        """Stop the background tasks (held leases expire); close a client made from the URL."""
        self._closing = True  # redis-py may turn the cancel of a read into a ConnectionError
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        self._tasks = []
        if self._link is not None:
            await self._link.aclose()
        if self._owns_client and self._client is not None:
            with contextlib.suppress(*FAILURES):
                await self._client.aclose()
            self._client = None

    def _key(self, *parts: str) -> str:
        # The hash tag keeps every key of the namespace in one Redis Cluster slot.
        return ":".join((f"{{{self.namespace}}}", *parts))

    # --- reaching Redis, or degrading ----------------------------------------------------

    @property
    def _redis_link(self) -> RedisLink:
        if self._link is None:
            raise RuntimeError("RedisCoordinator.start() has not run")
        return self._link

    async def _lost(self, budget: float | None) -> None:
        """Redis lost its data: this process's slots and claims go back now (or next call)."""
        self._reregister_due = True
        await self._reregister_if_due(budget)

    async def _reregister_if_due(self, budget: float | None) -> None:
        """After a loss: this process's running tasks and claims in flight are back in Redis.

        So that nobody over-admits, or resubmits a key this process is submitting.
        """
        if not self._reregister_due:
            return
        self._reregister_due = False
        link = self._redis_link
        lease_ms = int(self.lease_seconds * 1000)
        try:
            if self._slots:
                pairs = [value for lease, task in self._slots.items() for value in (lease, task)]
                await link.script(
                    "reregister", self._slot_keys(), [lease_ms, *pairs], budget=budget
                )
            for key, owned in list(self._claims.items()):
                args = [owned.fingerprint, owned.model, owned.payload, owned.token, lease_ms]
                await link.script(
                    "reclaim", [self._key("idem", key)], [*args, int(LEDGER_TTL)], budget=budget
                )
        except RedisDown:
            self._reregister_due = True
            raise

    # --- the account-wide submit rate ----------------------------------------------------

    async def _rate(self, operation: str) -> float | None:
        ceiling = self._limits.submits_per_minute
        args = [operation, "" if ceiling is None else ceiling, MIN_RATE, DECREASE_COOLDOWN]
        result = await self._redis_link.shared("rate", [self._key("rate")], args)
        return None if result is None else float(result)

    async def submit_delay(self) -> float:
        """Take one submit's place in the shared bucket; return the seconds to wait."""
        delay = await self._rate("reserve")
        return await self._local.submit_delay() if delay is None else delay

    async def rate_limited(self) -> None:
        """A 429 came back: halve the shared rate (once per burst, whoever saw it)."""
        if await self._rate("limited") is None:
            await self._local.rate_limited()

    async def accepted(self) -> None:
        """A submit went through: the shared rate recovers by one per minute."""
        if await self._rate("accepted") is None:
            await self._local.accepted()

    # --- running-task slots ----------------------------------------------------------------

    def _slot_keys(self) -> list[str]:
        return [self._key("slots"), self._key("slots", "task-of"), self._key("slots", "lease-of")]

    async def acquire_slot(self, timeout: float | None) -> str:
        """Wait for a slot under ``max_concurrent_tasks`` across every process."""
        limit = self._limits.max_concurrent_tasks
        if limit is None:
            return f"free-{uuid.uuid4().hex}"
        lease = uuid.uuid4().hex
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            woken = self._wakeup("slots")
            lease_ms = int(self.lease_seconds * 1000)
            taken = await self._redis_link.shared(
                "acquire", self._slot_keys(), [lease, limit, lease_ms], remaining(deadline)
            )
            if taken is None:
                return await self._local.acquire_slot(remaining(deadline))
            if taken:
                self._slots[lease] = ""
                return lease
            await self._nap(woken, deadline)

    async def bind_slot(self, lease: str, prediction_id: str) -> None:
        """The slot of ``lease`` now belongs to ``prediction_id`` (releasable by that id)."""
        if lease.startswith("local-"):
            await self._local.bind_slot(lease, prediction_id)
        elif lease in self._slots:
            self._slots[lease] = prediction_id
            await self._redis_link.shared("bind", self._slot_keys(), [lease, prediction_id])

    async def hold_slot(self, prediction_id: str) -> str:
        """A slot for a task that runs already (adopted by key, or resumed); never waits.

        The task counts against ``max_concurrent_tasks`` until it is released, even above the
        limit (it runs anyway): a crashed submitter's tasks never free room for more.
        """
        if self._limits.max_concurrent_tasks is None:
            return f"free-{uuid.uuid4().hex}"
        lease_ms = int(self.lease_seconds * 1000)
        args = [uuid.uuid4().hex, prediction_id, lease_ms]
        held = await self._redis_link.shared("hold", self._slot_keys(), args)
        if held is None:
            return await self._local.hold_slot(prediction_id)
        lease = records.text(held)
        self._slots[lease] = prediction_id
        return lease

    async def release_slot(self, lease_or_prediction_id: str) -> None:
        """Free a slot by its lease id or its task's id, whichever process holds it."""
        await self._local.release_slot(lease_or_prediction_id)
        if self._limits.max_concurrent_tasks is None:
            return
        self._slots.pop(lease_or_prediction_id, None)
        for lease, task in list(self._slots.items()):
            if task == lease_or_prediction_id:
                del self._slots[lease]
        args = [lease_or_prediction_id, self._channel["slots"]]
        await self._redis_link.shared("release", self._slot_keys(), args)

    def _wakeup(self, topic: str) -> asyncio.Event:
        return self._wakeups.setdefault(topic, asyncio.Event())

    def _wake(self, topic: str) -> None:
        event = self._wakeups.pop(topic, None)
        if event is not None:
            event.set()

    async def _nap(self, woken: asyncio.Event, deadline: float | None) -> None:
        """Wait for a wake-up message, at most a fallback interval (a message may be lost)."""
        nap = min(1.0, self.lease_seconds / 4)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no slot came free in time")
            nap = min(nap, left)
        with contextlib.suppress(asyncio.TimeoutError):  # not TimeoutError on Python 3.10
            await asyncio.wait_for(woken.wait(), nap)

    # --- webhook fan-out and dedup --------------------------------------------------------

    async def first_delivery(self, webhook_id: str, ttl: float) -> bool:
        """True the first time any process sees ``webhook_id`` within ``ttl`` seconds."""
        args = [int(ttl * 1000)]
        first = await self._redis_link.shared("first", [self._key("seen", webhook_id)], args)
        if first is None:
            return await self._local.first_delivery(webhook_id, ttl)
        return bool(first)

    async def publish_delivery(self, prediction_json: bytes) -> None:
        """Send a verified delivery's body to every process (this one too)."""
        sent = await self._redis_link.shared(
            "publish", [], [self._channel["deliveries"], prediction_json]
        )
        if sent is None:  # only this process can hear it now
            prediction = parse_delivery(prediction_json)
            if prediction is not None:
                call_delivery_callbacks(self._callbacks, prediction)

    def on_delivery(self, callback: Callable[[Prediction], None]) -> None:
        """Call ``callback`` with every delivery published by any process."""
        self._callbacks.append(callback)

    # --- the idempotency ledger ---------------------------------------------------------

    async def claim(self, key: str, *, model: str, payload: Mapping[str, Any]) -> Claim:
        """Claim ``key`` atomically across processes (see :class:`Claim`)."""
        digest = fingerprint(model, payload)
        await self._redis_link.require_durable()
        owned_claim = records.OwnedClaim(
            f"{self._instance}:{uuid.uuid4().hex}", digest, model, json.dumps(payload)
        )
        lease_ms = int(self.lease_seconds * 1000)
        args = [digest, model, owned_claim.payload, owned_claim.token, lease_ms, int(LEDGER_TTL)]
        answer = await self._redis_link.required("claim", [self._key("idem", key)], args)
        if records.text(answer[0]) == "conflict":
            raise IdempotencyConflict(key)
        owned, now_ms, hashed = bool(int(answer[0])), int(answer[1]), records.fields(answer[2])
        record = records.record(key, hashed, now_ms)
        if owned:  # orphaned then means: this claim took the key over from a dead claimant
            self._claims[key] = owned_claim
            record = attrs.evolve(record, orphaned=hashed.get("orphaned") == "1")
        return Claim(owned=owned, record=record)

    async def record_submitted(self, key: str, prediction_id: str) -> None:
        """Record the task the claim on ``key`` created, and wake every waiter."""
        owned = self._claims.pop(key, None) or records.OwnedClaim("", "", "", "{}")
        args: list[Any] = [prediction_id, self._channel["ledger"], key, owned.fingerprint]
        args += [owned.model, owned.payload, int(LEDGER_TTL)]
        await self._redis_link.required(
            "submitted", [self._key("idem", key)], args, prediction_id=prediction_id
        )

    async def record_absent(self, key: str, *, by_hand: bool = False) -> None:
        """Drop this process's own claim on ``key`` (a late call leaves others'); wake waiters."""
        if (owned := self._claims.get(key)) is None and not by_hand:  # by hand: see Coordinator
            return
        args = [self._channel["ledger"], key, owned.token if owned else ""]
        await self._redis_link.required("absent", [self._key("idem", key)], args)
        self._claims.pop(key, None)

    async def record_uncertain(
        self, key: str, *, sent_at: dt.datetime, proof_after: dt.datetime, reason: str
    ) -> None:
        """``key``'s submit may have created a task and nobody can tell yet; wake waiters."""
        self._claims.pop(key, None)
        window = [records.milliseconds(sent_at), records.milliseconds(proof_after)]
        args = [*window, reason[:500], self._channel["ledger"], key]
        await self._redis_link.required("uncertain", [self._key("idem", key)], args)

    async def read_record(self, key: str) -> IdempotencyRecord | None:
        """What the ledger knows of ``key`` now, without claiming it."""
        answer = await self._redis_link.required("read", [self._key("idem", key)], [])
        hashed = records.fields(answer[1])
        return records.record(key, hashed, int(answer[0])) if hashed else None

    async def abandon(self, key: str) -> None:
        """Give up the claim on ``key`` without an outcome: it is an orphan at once."""
        owned = self._claims.pop(key, None)
        if owned is not None:
            args = [owned.token, self._channel["ledger"], key]
            await self._redis_link.required("abandon", [self._key("idem", key)], args)

    async def wait_submitted(self, key: str, timeout: float) -> IdempotencyRecord:
        """Wait until the claim on ``key`` is submitted, dropped (``"absent"``) or orphaned."""
        deadline = time.monotonic() + timeout
        while True:
            woken = self._wakeup("ledger")
            budget = remaining(deadline)
            answer = await self._redis_link.required(
                "read", [self._key("idem", key)], [], budget=budget
            )
            now_ms, hashed = int(answer[0]), records.fields(answer[1])
            if not hashed:
                return absent_record(key)
            record = records.record(key, hashed, now_ms)
            if record.state != "submitting" or record.orphaned:
                return record
            try:
                await self._nap(woken, deadline)
            except TimeoutError:
                raise TimeoutError(f"idempotency key {key!r} still being submitted") from None

    # --- background tasks -----------------------------------------------------------------

    async def _renew(self) -> None:
        """Extend this process's slot leases and claims, every third of a lease."""
        while not self._closing:
            await asyncio.sleep(self.lease_seconds / 3)
            await self._renew_once()

    async def _renew_once(self) -> None:
        lease_ms = int(self.lease_seconds * 1000)
        if self._slots or self._reregister_due:
            args: list[Any] = [lease_ms, *self._slots]
            gone = await self._redis_link.shared("renew", [self._key("slots")], args)
            for lease in gone or []:
                self._slots.pop(records.text(lease), None)
        keys = list(self._claims)
        if keys:
            args = [lease_ms, *(self._claims[key].token for key in keys)]
            hashes = [self._key("idem", key) for key in keys]
            for position in await self._redis_link.shared("renew_claims", hashes, args) or []:
                self._claims.pop(keys[int(position) - 1], None)

    async def _subscribe(self) -> None:
        """Listen on the namespace's channels; resubscribe (waking every waiter) after a loss."""
        pause = 0.1
        while not self._closing:
            try:
                async with self._pubsub() as pubsub:
                    pause = 0.1
                    self._wake("slots")
                    self._wake("ledger")
                    while not self._closing:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=1.0
                        )
                        if message is not None:
                            self._dispatch(records.text(message["channel"]), message["data"])
            except FAILURES as exc:
                if self._closing:
                    return
                log.debug("Redis subscription lost (%s); resubscribing", exc)
                await asyncio.sleep(pause)
                pause = min(1.0, pause * 2)

    @contextlib.asynccontextmanager
    async def _pubsub(self) -> AsyncIterator[Any]:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(*self._channel.values())
            yield pubsub
        finally:
            with contextlib.suppress(*FAILURES):
                await pubsub.aclose()

    def _dispatch(self, channel: str, data: Any) -> None:
        if channel == self._channel["deliveries"]:
            prediction = parse_delivery(data)
            if prediction is not None:
                call_delivery_callbacks(self._callbacks, prediction)
        elif channel == self._channel["slots"]:
            self._wake("slots")
        else:
            self._wake("ledger")
