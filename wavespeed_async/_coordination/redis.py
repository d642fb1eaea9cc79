"""Account-wide limits, the idempotency ledger and webhook fan-out on a shared Redis.

Many worker processes on many machines share one account: with a :class:`RedisCoordinator`
on the same Redis (and namespace), they share one submit rate, one pool of running-task slots,
one idempotency ledger, and every webhook delivery reaches every process.

>>> coordinator = RedisCoordinator("redis://redis.internal:6379/0", namespace="prod")

Every decision is one Lua script, timed by Redis ``TIME`` (machines with skewed clocks agree).
When Redis cannot be reached the rate and slots fall back to this process's own limits (one
warning; they return when Redis does), and the ledger fails closed: ``claim`` and
``record_*`` raise :class:`CoordinatorUnavailable`, so nothing is sent twice. Needs the
``redis`` extra (``pip install redis``).
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

try:
    import redis.asyncio as aioredis
    import redis.exceptions
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "wavespeed_async.redis needs redis-py: pip install redis (the redis extra)"
    ) from exc

from .._wire.limits import DECREASE_COOLDOWN, MIN_RATE, Limits
from .._wire.models import Prediction
from ..errors import CoordinatorUnavailable, IdempotencyConflict, InvalidInput
from . import scripts
from .local import (
    LEDGER_TTL,
    Claim,
    IdempotencyRecord,
    LocalCoordinator,
    RecordState,
    absent_record,
    call_delivery_callbacks,
    fingerprint,
    parse_delivery,
)
from .queue import QueueItem, QueueStatus, RedisBatchQueue

__all__ = ["QueueItem", "QueueStatus", "RedisBatchQueue", "RedisCoordinator"]

log = logging.getLogger(__name__)

#: Failures that mean "Redis cannot be reached", as opposed to a bug in a command.
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
#: While Redis is down, try it again at most this often (seconds); local limits meanwhile.
PROBE_INTERVAL = 0.5


#: Connections one coordinator opens at most; callers beyond wait for one (never an error:
#: redis-py's default pool refuses the 101st concurrent call with "Too many connections").
MAX_CONNECTIONS = 50


def connect(url: str) -> aioredis.Redis:
    """A client of ``url`` that fails fast (one quick retry) instead of hanging when down."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=10.0,  # waiting for a free pooled connection
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 1),
    )
    return aioredis.Redis.from_pool(pool)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _reraise_cancel(exc: BaseException) -> None:
    """redis-py can turn the cancel of a pending read into a ConnectionError: undo that."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    if cancelling is not None and cancelling():
        raise asyncio.CancelledError from exc


def _uncertain_or_submitting(state: str) -> RecordState:
    return "uncertain" if state == "uncertain" else "submitting"


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _time(milliseconds: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(float(milliseconds)) / 1000, dt.timezone.utc)


def _fields(flat: list[Any]) -> dict[str, str]:
    """A hash from a script's flat ``HGETALL`` answer."""
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


class RedisCoordinator:
    """The coordinator of every process sharing a Redis ``namespace`` (see the module doc).

    ``lease_seconds`` is how long a crashed process's slots and claims outlive it: its
    background task renews them every third of that while it runs. Pass ``client`` to share
    a connection pool (it is then not closed by :meth:`aclose`).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "wavespeed",
        client: aioredis.Redis | None = None,
        lease_seconds: float = 30.0,
    ) -> None:
        if not lease_seconds > 0:
            raise InvalidInput("lease_seconds", lease_seconds, "a positive number of seconds")
        self._url = url
        self._client = client
        self._owns_client = client is None
        self.namespace = namespace
        self.lease_seconds = lease_seconds
        self._instance = uuid.uuid4().hex
        self._limits = Limits()
        self._local = LocalCoordinator()
        self._scripts: dict[str, Any] = {}
        self._callbacks: list[Callable[[Prediction], None]] = []
        self._slots: set[str] = set()
        self._claims: dict[str, str] = {}  # key -> this caller's claimant token
        self._wakeups: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._degraded = False
        self._closing = False
        self._probe_at = 0.0
        self._channel = {
            "deliveries": f"{namespace}:deliveries",
            "slots": f"{namespace}:slots:released",
            "ledger": f"{namespace}:ledger:settled",
        }

    def __repr__(self) -> str:  # never the URL: it may carry a password
        return f"RedisCoordinator(namespace={self.namespace!r}, slots_held={len(self._slots)})"

    @property
    def redis(self) -> aioredis.Redis:
        """The Redis client (created by :meth:`start` from the URL unless one was given)."""
        if self._client is None:
            raise RuntimeError("RedisCoordinator.start() has not run")
        return self._client

    async def start(self, limits: Limits) -> None:
        """Connect, and start the lease renewal and the subscription tasks."""
        self._limits = limits
        await self._local.start(limits)
        if self._client is None:
            self._client = connect(self._url)
        self._scripts = scripts.register(self._client)
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
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def _key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    # --- reaching Redis, or degrading ----------------------------------------------------

    def _use_redis(self) -> bool:
        return not self._degraded or time.monotonic() >= self._probe_at

    def _went_down(self, exc: BaseException) -> None:
        self._probe_at = time.monotonic() + PROBE_INTERVAL
        if not self._degraded:
            self._degraded = True
            log.warning(
                "Redis unreachable (%s): submit rate and slots are limited per process until"
                " it is back",
                exc,
            )

    def _came_back(self) -> None:
        if self._degraded:
            self._degraded = False
            log.info("Redis reachable again: submit rate and slots are account-wide again")

    async def _shared(self, script: str, keys: list[str], args: list[Any]) -> Any | None:
        """Run a script whose work has a local fallback: ``None`` while Redis is down."""
        if not self._use_redis():
            return None
        try:
            result = await self._scripts[script](keys=keys, args=args)
        except UNREACHABLE as exc:
            _reraise_cancel(exc)
            self._went_down(exc)
            return None
        self._came_back()
        return result

    async def _required(
        self, script: str, keys: list[str], args: list[Any], prediction_id: str | None = None
    ) -> Any:
        """Run a ledger script, which has no fallback: fail closed."""
        try:
            result = await self._scripts[script](keys=keys, args=args)
        except UNREACHABLE as exc:
            _reraise_cancel(exc)
            raise CoordinatorUnavailable(
                f"Redis unreachable: {exc}", prediction_id=prediction_id
            ) from exc
        return result

    # --- the account-wide submit rate ----------------------------------------------------

    async def _rate(self, operation: str) -> float | None:
        ceiling = self._limits.submits_per_minute
        args = [operation, "" if ceiling is None else ceiling, MIN_RATE, DECREASE_COOLDOWN]
        result = await self._shared("rate", [self._key("rate")], args)
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
            taken = await self._shared("acquire", self._slot_keys(), [lease, limit, lease_ms])
            if taken is None:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                return await self._local.acquire_slot(remaining)
            if taken:
                self._slots.add(lease)
                return lease
            await self._nap(woken, deadline)

    async def bind_slot(self, lease: str, prediction_id: str) -> None:
        """The slot of ``lease`` now belongs to ``prediction_id`` (releasable by that id)."""
        if lease.startswith("local-"):
            await self._local.bind_slot(lease, prediction_id)
        elif lease in self._slots:
            await self._shared("bind", self._slot_keys(), [lease, prediction_id])

    async def release_slot(self, lease_or_prediction_id: str) -> None:
        """Free a slot by its lease id or its task's id, whichever process holds it."""
        await self._local.release_slot(lease_or_prediction_id)
        if self._limits.max_concurrent_tasks is None:
            return
        self._slots.discard(lease_or_prediction_id)
        args = [lease_or_prediction_id, self._channel["slots"]]
        await self._shared("release", self._slot_keys(), args)

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
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no slot came free in time")
            nap = min(nap, remaining)
        with contextlib.suppress(asyncio.TimeoutError):  # not TimeoutError on Python 3.10
            await asyncio.wait_for(woken.wait(), nap)

    # --- webhook fan-out and dedup --------------------------------------------------------

    async def first_delivery(self, webhook_id: str, ttl: float) -> bool:
        """True the first time any process sees ``webhook_id`` within ``ttl`` seconds."""
        args = [int(ttl * 1000)]
        first = await self._shared("first", [self._key("seen", webhook_id)], args)
        if first is None:
            return await self._local.first_delivery(webhook_id, ttl)
        return bool(first)

    async def publish_delivery(self, prediction_json: bytes) -> None:
        """Send a verified delivery's body to every process (this one too)."""
        sent = await self._shared("publish", [], [self._channel["deliveries"], prediction_json])
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
        token = f"{self._instance}:{uuid.uuid4().hex}"
        lease_ms = int(self.lease_seconds * 1000)
        args = [digest, model, json.dumps(payload), token, lease_ms, int(LEDGER_TTL)]
        answer = await self._required("claim", [self._key("idem", key)], args)
        if _text(answer[0]) == "conflict":
            raise IdempotencyConflict(key)
        owned, now_ms, fields = bool(int(answer[0])), int(answer[1]), _fields(answer[2])
        record = self._record(key, fields, now_ms)
        if owned:  # orphaned then means: this claim took the key over from a dead claimant
            self._claims[key] = token
            record = attrs.evolve(record, orphaned=fields.get("orphaned") == "1")
        return Claim(owned=owned, record=record)

    async def record_submitted(self, key: str, prediction_id: str) -> None:
        """Record the task the claim on ``key`` created, and wake every waiter."""
        self._claims.pop(key, None)
        args = [prediction_id, self._channel["ledger"], key]
        await self._required("submitted", [self._key("idem", key)], args, prediction_id)

    async def record_absent(self, key: str) -> None:
        """Drop the claim on ``key`` (its submit created nothing), and wake every waiter."""
        self._claims.pop(key, None)
        await self._required("absent", [self._key("idem", key)], [self._channel["ledger"], key])

    async def record_uncertain(
        self, key: str, *, sent_at: dt.datetime, proof_after: dt.datetime, reason: str
    ) -> None:
        """``key``'s submit may have created a task and nobody can tell yet; wake waiters."""
        self._claims.pop(key, None)
        args = [_ms(sent_at), _ms(proof_after), reason[:500], self._channel["ledger"], key]
        await self._required("uncertain", [self._key("idem", key)], args)

    async def read_record(self, key: str) -> IdempotencyRecord | None:
        """What the ledger knows of ``key`` now, without claiming it."""
        answer = await self._required("read", [self._key("idem", key)], [])
        fields = _fields(answer[1])
        return self._record(key, fields, int(answer[0])) if fields else None

    async def abandon(self, key: str) -> None:
        """Give up the claim on ``key`` without an outcome: it is an orphan at once."""
        token = self._claims.pop(key, None)
        if token is not None:
            args = [token, self._channel["ledger"], key]
            await self._required("abandon", [self._key("idem", key)], args)

    async def wait_submitted(self, key: str, timeout: float) -> IdempotencyRecord:
        """Wait until the claim on ``key`` is submitted, dropped (``"absent"``) or orphaned."""
        deadline = time.monotonic() + timeout
        while True:
            woken = self._wakeup("ledger")
            answer = await self._required("read", [self._key("idem", key)], [])
            now_ms, fields = int(answer[0]), _fields(answer[1])
            if not fields:
                return absent_record(key)
            record = self._record(key, fields, now_ms)
            if record.state != "submitting" or record.orphaned:
                return record
            try:
                await self._nap(woken, deadline)
            except TimeoutError:
                raise TimeoutError(f"idempotency key {key!r} still being submitted") from None

    @staticmethod
    def _record(key: str, fields: dict[str, str], now_ms: int) -> IdempotencyRecord:
        state = fields["state"]
        proof_after = fields.get("proof_after")
        return IdempotencyRecord(
            key=key,
            fingerprint=fields["fingerprint"],
            model=fields["model"],
            payload=json.loads(fields["payload"]),
            state="submitted" if state == "submitted" else _uncertain_or_submitting(state),
            sent_at=_time(fields["sent_at"]),
            prediction_id=fields.get("prediction_id") or None,
            orphaned=state == "submitting" and int(fields["lease_until"]) < now_ms,
            proof_after=_time(proof_after) if proof_after else None,
            reason=fields.get("reason", ""),
        )

    # --- background tasks -----------------------------------------------------------------

    async def _renew(self) -> None:
        """Extend this process's slot leases and claims, every third of a lease."""
        while not self._closing:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self._renew_once()
            except redis.exceptions.RedisError as exc:  # a failed renewal must not end them all
                log.warning("renewing leases on Redis failed: %s", exc)

    async def _renew_once(self) -> None:
        lease_ms = int(self.lease_seconds * 1000)
        if self._slots:
            args: list[Any] = [lease_ms, *self._slots]
            gone = await self._shared("renew", [self._key("slots")], args)
            self._slots.difference_update(_text(lease) for lease in gone or [])
        keys = list(self._claims)
        if keys:
            args = [lease_ms, *(self._claims[key] for key in keys)]
            records = [self._key("idem", key) for key in keys]
            for position in await self._shared("renew_claims", records, args) or []:
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
                            self._dispatch(_text(message["channel"]), message["data"])
            except (redis.exceptions.RedisError, OSError) as exc:
                _reraise_cancel(exc)
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
            with contextlib.suppress(*UNREACHABLE):
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
