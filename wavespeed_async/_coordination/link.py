"""The coordinator's link to Redis: bounded calls, library errors, health and the epoch.

Every call is bounded by a short budget of its own (``call_timeout``) and by the caller's
remaining time; a Redis that does not answer within it counts as down, as does any Redis
error (OOM, NOPERM, MOVED, READONLY, ...). While down, calls do not wait for Redis at all: a
background probe pings it and brings it back. Raw ``redis.exceptions`` never leave this
module: :class:`RedisDown` carries a message safe to show (never the URL, which may hold a
password).

The epoch: a marker hash in the namespace (``{namespace}:epoch``) names the current "life"
of the data. Each script checks the caller's epoch first; a marker that is gone or changed
means Redis lost its data (restarted without persistence, failed over to an empty replica),
and :meth:`RedisLink.recover` then records the loss in the marker (see ``scripts.EPOCH``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import anyio
import attrs

try:
    import redis.asyncio as aioredis
    import redis.exceptions
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "wavespeed_async.redis needs redis-py: pip install redis (the redis extra)"
    ) from exc

from ..errors import ConfigurationError, CoordinatorUnavailable
from . import scripts

__all__ = [
    "CALL_TIMEOUT",
    "BudgetSpent",
    "DurableKeys",
    "Epoch",
    "RedisDown",
    "RedisLink",
    "connect",
]

log = logging.getLogger(__name__)

DurableKeys = Literal["checked", "unchecked"]

#: Each Redis call's own budget (seconds) unless the coordinator is told otherwise.
CALL_TIMEOUT = 1.0
_STILL_DOWN = "Redis is unreachable (it failed a recent call; retried in the background)"
#: While Redis is down, the probe pings it this often (seconds).
PROBE_INTERVAL = 0.5
#: Connections one coordinator opens at most; callers beyond wait for one (never an error:
#: redis-py's default pool refuses the 101st concurrent call with "Too many connections").
MAX_CONNECTIONS = 50
#: Everything redis-py raises (RedisClusterException is not a RedisError), and the socket's.
FAILURES: tuple[type[BaseException], ...] = (
    redis.exceptions.RedisError,
    redis.exceptions.RedisClusterException,
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
)


class RedisDown(Exception):
    """Redis did not answer in time, or answered an error; ``str()`` is safe to show."""


class BudgetSpent(TimeoutError):
    """The caller's deadline passed before Redis answered (Redis is not deemed down for it)."""


@attrs.frozen
class Epoch:
    """The life of a namespace's data, as this process knows it.

    Its ``id``, when it started (ms), and since when (ms) data may have been lost (``None``:
    no loss known).
    """

    id: str = ""
    started_ms: int = 0
    lost_since_ms: int | None = None


def connect(url: str, *, cluster: bool = False, call_timeout: float = CALL_TIMEOUT) -> Any:
    """A client of ``url`` (a cluster's seed node if ``cluster``) that gives up quickly.

    It gives up after ``call_timeout`` seconds instead of hanging on a Redis that is down.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": call_timeout,
        "socket_timeout": call_timeout,
    }
    if cluster:
        return RedisCluster.from_url(url, max_connections=MAX_CONNECTIONS, **options)
    # No retries inside redis-py (its default retries a timeout 3 times, with backoff):
    # callers bound each call and try a dead pooled connection once more themselves.
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=None, retry=Retry(NoBackoff(), 0), **options
    )
    return aioredis.Redis.from_pool(pool)


def describe(exc: BaseException) -> str:
    """What went wrong, for a message: the error's kind and Redis's own words."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | redis.exceptions.TimeoutError):
        return "Redis did not answer in time"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _reraise_cancel(exc: BaseException) -> None:
    """redis-py can turn the cancel of a pending read into a ConnectionError: undo that."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    if cancelling is not None and cancelling():
        raise asyncio.CancelledError from exc


class RedisLink:
    """One Redis (or Redis Cluster) client, its health and the namespace's epoch."""

    def __init__(
        self,
        client: Any,
        *,
        epoch_key: str,
        call_timeout: float,
        durable_keys: DurableKeys,
        recovery_ms: int,
        loss_memory_ms: int,
    ) -> None:
        self.client = client
        self.call_timeout = call_timeout
        self.durable_keys = durable_keys
        self.epoch = Epoch()
        self.down = False
        self._epoch_key = epoch_key
        self._recovery_ms = recovery_ms
        self._loss_memory_ms = loss_memory_ms
        self._scripts = scripts.register(client)
        self._durability: str | None = None  # "" once verified, else the refusal
        self._probe: asyncio.Task[None] | None = None
        self._on_loss: list[Callable[[float | None], Awaitable[None]]] = []
        #: Awaited after each call that went through: puts back what a loss took, if due.
        self.repair: Callable[[float | None], Awaitable[None]] | None = None

    def on_loss(self, callback: Callable[[float | None], Awaitable[None]]) -> None:
        """Await ``callback(budget)`` when a loss of data is detected, before the call runs again.

        It puts back what this process holds (its slots, its claims in flight).
        """
        self._on_loss.append(callback)

    async def aclose(self) -> None:
        """Stop the probe."""
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(BaseException):
                await self._probe
            self._probe = None

    # --- bounded calls -----------------------------------------------------------------------

    async def _bounded(self, call: Callable[[], Awaitable[Any]], budget: float | None) -> Any:
        """``call()`` within the budget; once more at once if its pooled connection was dead.

        A connection that Redis closed (it restarted, or dropped idle clients) fails on first
        use, before the command ran: a fresh one is tried within the same budget.
        """
        limit = self.call_timeout if budget is None else max(0.0, min(budget, self.call_timeout))
        callers = limit < self.call_timeout  # the caller's deadline, not Redis, sets the limit
        try:
            with anyio.fail_after(limit):
                try:
                    return await call()
                except redis.exceptions.ConnectionError as exc:
                    _reraise_cancel(exc)
                    return await call()
        except FAILURES as exc:
            _reraise_cancel(exc)
            if callers and isinstance(exc, TimeoutError):
                raise BudgetSpent("the deadline passed while waiting for Redis") from None
            raise RedisDown(describe(exc)) from None

    async def command(self, *args: Any, budget: float | None = None) -> Any:
        """A plain command (``PING``, ``CONFIG GET``...), bounded; raises :class:`RedisDown`."""
        return await self._bounded(lambda: self.client.execute_command(*args), budget)

    async def script(
        self, name: str, keys: list[str], args: list[Any], *, budget: float | None = None
    ) -> Any:
        """Run a script of the namespace under the epoch; recover once if the data was lost."""
        for _ in range(2):
            if not self.epoch.id:
                await self.recover(budget)
            call = functools.partial(
                self._scripts[name], keys=[self._epoch_key, *keys], args=[self.epoch.id, *args]
            )
            result = await self._bounded(call, budget)
            if not (isinstance(result, list) and result in ([b"epoch"], ["epoch"])):
                return result
            await self.recover(budget)
        raise RedisDown("the namespace's epoch marker keeps changing")

    async def shared(
        self, name: str, keys: list[str], args: list[Any], budget: float | None = None
    ) -> Any | None:
        """Run a script whose work has a local fallback: ``None`` while Redis is down."""
        if self.down:
            return None
        try:
            return await self._through(name, keys, args, budget)
        except RedisDown as exc:
            self.went_down(exc)
            return None

    async def required(
        self,
        name: str,
        keys: list[str],
        args: list[Any],
        *,
        prediction_id: str | None = None,
        budget: float | None = None,
    ) -> Any:
        """Run a ledger script, which has no fallback: :class:`CoordinatorUnavailable`."""
        if self.down:
            raise CoordinatorUnavailable(_STILL_DOWN, prediction_id=prediction_id)
        try:
            return await self._through(name, keys, args, budget)
        except RedisDown as exc:
            self.went_down(exc)
            raise CoordinatorUnavailable(
                f"Redis unreachable: {exc}", prediction_id=prediction_id
            ) from None

    async def require_durable(self) -> None:
        """:meth:`check_durable`, failing closed while Redis is down."""
        if self.down:
            raise CoordinatorUnavailable(_STILL_DOWN)
        try:
            await self.check_durable()
        except RedisDown as exc:
            self.went_down(exc)
            raise CoordinatorUnavailable(f"Redis unreachable: {exc}") from None

    async def _through(
        self, name: str, keys: list[str], args: list[Any], budget: float | None
    ) -> Any:
        result = await self.script(name, keys, args, budget=budget)
        if self.repair is not None:
            await self.repair(budget)
        return result

    async def recover(self, budget: float | None = None) -> None:
        """Learn the namespace's epoch; record a loss if the one this process knew is gone."""
        previous = self.epoch
        args = [previous.id, previous.started_ms, uuid.uuid4().hex, self._recovery_ms]
        args.append(self._loss_memory_ms)
        epoch = self._scripts["epoch"]
        answer = await self._bounded(lambda: epoch(keys=[self._epoch_key], args=args), budget)
        epoch_id, started, lost_since = (_text(value) for value in answer[:3])
        self.epoch = Epoch(epoch_id, int(started), int(lost_since) if lost_since else None)
        if previous.id and previous.id != epoch_id:
            log.error(
                "Redis lost the coordinator's data (restart without persistence, or failover"
                " to an empty replica): idempotency keys are reconciled through the history,"
                " running tasks take their slots again, the submit rate starts empty"
            )
            self._durability = None  # check the configuration again
            for callback in self._on_loss:
                await callback(budget)

    # --- health ------------------------------------------------------------------------------

    def went_down(self, reason: RedisDown) -> None:
        """Redis failed a call: stop using it until the probe brings it back (one warning)."""
        if self.down:
            return
        self.down = True
        log.warning(
            "Redis unreachable (%s): submit rate and slots are limited per process until it"
            " is back; submits with an idempotency key fail closed",
            reason,
        )
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_back())

    async def _probe_until_back(self) -> None:
        while self.down:
            await asyncio.sleep(max(PROBE_INTERVAL, 0.01))
            try:
                await self.command("PING")
                await self.recover()
            except RedisDown:
                continue
            self.down = False
            log.info("Redis reachable again: submit rate and slots are account-wide again")

    # --- durability of the ledger ------------------------------------------------------------

    async def check_durable(self, budget: float | None = None) -> None:
        """Raise :class:`ConfigurationError` unless Redis keeps idempotency keys (see docs)."""
        if self.durable_keys == "unchecked" or self._durability == "":
            return
        if self._durability is None:
            self._durability = await self._durability_problem(budget)
        if self._durability:
            raise ConfigurationError(self._durability)

    async def _durability_problem(self, budget: float | None) -> str:
        settings: dict[str, str] = {}
        try:
            for name in ("appendonly", "maxmemory-policy"):
                settings.update(_config(await self.command("CONFIG GET", name, budget=budget)))
        except RedisDown as exc:
            if "unknown command" not in str(exc) and "NoPermission" not in str(exc):
                raise
            return (
                f"cannot read Redis's configuration to check that idempotency keys survive"
                f" ({exc}); make sure appendonly is yes and maxmemory-policy is noeviction, then"
                " pass RedisCoordinator(durable_keys='unchecked')"
            )
        problems = []
        if settings.get("appendonly") != "yes":
            problems.append(
                f"appendonly is {settings.get('appendonly')!r} (a restart forgets every key;"
                " snapshots alone lose the keys written since the last one): set appendonly yes"
            )
        if settings.get("maxmemory-policy") != "noeviction":
            problems.append(
                f"maxmemory-policy is {settings.get('maxmemory-policy')!r} (a full Redis evicts"
                " keys): set maxmemory-policy noeviction"
            )
        if not problems:
            return ""
        return (
            "this Redis could forget idempotency keys, and a forgotten key is paid twice: "
            + "; ".join(problems)
            + ". To use it anyway, pass RedisCoordinator(durable_keys='unchecked')"
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _config(answer: Any) -> dict[str, str]:
    """``CONFIG GET``'s answer (a flat list, a dict, or a dict per cluster node)."""
    if isinstance(answer, dict) and all(isinstance(v, dict | list) for v in answer.values()):
        merged: dict[str, str] = {}
        for per_node in answer.values():  # the strictest node wins: any bad value shows
            for name, value in _config(per_node).items():
                if merged.get(name) in (None, "yes", "noeviction"):
                    merged[name] = value
        return merged
    if isinstance(answer, dict):
        return {_text(k): _text(v) for k, v in answer.items()}
    flat = list(answer)
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def remaining(deadline: float | None) -> float | None:
    """Seconds left until a ``time.monotonic()`` deadline (``None``: no deadline)."""
    if deadline is None or math.isinf(deadline):
        return None
    return max(0.0, deadline - time.monotonic())
