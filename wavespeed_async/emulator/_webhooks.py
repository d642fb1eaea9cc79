"""Webhook deliveries: a finished task is POSTed, signed, to the URL its submit named.

A task's status is derived from the clock when read, so there is no per-task work to hook
into. One dispatcher task, owned by the :class:`Emulator`, sleeps until the next emulated
instant when something is due (a webhook task ends, a retry or a delayed delivery comes up)
and is woken early by what wakes sync-mode waits: ``advance()``, ``set_status()`` and every
request. Deliveries are real HTTP. A non-2xx answer, or none, is retried after
``retry_delays`` emulated seconds; each attempt is signed anew, with the same ``webhook-id``.

Faults apply to the next ``count`` deliveries (one per finished task), each kind on its own:

- ``drop_next``: never sent, as if lost on the way;
- ``delay_next``: sent ``seconds`` emulated seconds late;
- ``duplicate_next``: sent twice at once, with the same ``webhook-id``;
- ``corrupt_next``: the first attempt's body is altered after signing (a receiver must refuse
  it); the retry is intact.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import time
import uuid

import aiohttp
import attrs

from .._wire.webhook import sign_webhook
from ._app import render_task
from ._arguments import check_seconds
from ._state import EmulatorState, TaskRecord
from ._waits import SyncWaits

__all__ = ["RETRY_DELAYS", "DeliveryRecord", "WebhookDispatcher"]

#: Emulated seconds before the 2nd, 3rd, ... attempt of a delivery that was not acknowledged.
RETRY_DELAYS = (5.0, 30.0, 120.0, 600.0, 1800.0)
_DELIVERED_STATUSES = frozenset({"completed", "failed"})  # as the platform: no others
_ATTEMPT_TIMEOUT = 10.0  # real seconds a receiver has to answer
_MAX_CONNECTIONS = 100


@attrs.frozen
class DeliveryRecord:
    """One delivery attempt, or a dropped delivery, as the emulator made it.

    ``status`` is the receiver's HTTP status, ``None`` when there was no answer (``error``
    says why) or nothing was sent (``dropped``). ``at`` is the emulated time; ``sent`` and
    ``answered`` are real ``time.monotonic()`` readings, for latency measurements.
    """

    webhook_id: str
    prediction_id: str
    url: str
    attempt: int
    status: int | None
    at: float
    sent: float
    answered: float
    dropped: bool = False
    duplicate: bool = False
    corrupted: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the receiver acknowledged it (2xx)."""
        return self.status is not None and 200 <= self.status < 300


@attrs.define
class _Message:
    webhook_id: str
    prediction_id: str
    url: str
    body: bytes
    due: float  # emulated
    attempt: int = 1
    duplicate: bool = False
    corrupt: bool = False


class WebhookDispatcher:
    """The emulator's webhook sender (``emu.webhooks``): faults, retries, a record of all.

    >>> emu.webhooks.drop_next()                                         # doctest: +SKIP
    >>> emu.webhooks.delay_next(2, seconds=30)                           # doctest: +SKIP
    >>> [d.status for d in emu.webhooks.deliveries]                      # doctest: +SKIP
    [200, 200]
    """

    def __init__(self, state: EmulatorState, waits: SyncWaits) -> None:
        #: Emulated seconds before each retry; a delivery makes ``len + 1`` attempts at most.
        self.retry_delays: tuple[float, ...] = RETRY_DELAYS
        #: Every attempt (and every drop), oldest first.
        self.deliveries: list[DeliveryRecord] = []
        self._state = state
        self._waits = waits
        self._queue: list[_Message] = []
        self._drops = self._duplicates = self._corruptions = 0
        self._delays: collections.deque[float] = collections.deque()
        self._origin = ""
        self._session: aiohttp.ClientSession | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._in_flight = 0  # not len(_sending): a task leaves that set only after notifying

    # --- controls ---------------------------------------------------------------------------

    @property
    def secret(self) -> str:
        """The signing secret (``whsec_...``), as ``GET /api/v3/webhook/secret`` serves it."""
        return self._state.webhook_secret

    @secret.setter
    def secret(self, value: str) -> None:
        self._state.webhook_secret = value

    def drop_next(self, count: int = 1) -> None:
        """Lose the next ``count`` deliveries: they are recorded, never sent."""
        self._drops += count

    def delay_next(self, count: int = 1, *, seconds: float) -> None:
        """Send the next ``count`` deliveries ``seconds`` emulated seconds late."""
        self._delays.extend([check_seconds("seconds", seconds)] * count)

    def duplicate_next(self, count: int = 1) -> None:
        """Send the next ``count`` deliveries twice, concurrently, with one ``webhook-id``."""
        self._duplicates += count

    def corrupt_next(self, count: int = 1) -> None:
        """Alter the body of the next ``count`` deliveries' first attempt, after signing."""
        self._corruptions += count

    @property
    def pending(self) -> int:
        """Deliveries still to come: webhook tasks running, messages queued or in flight."""
        return len(self._state.webhook_tasks) + len(self._queue) + self._in_flight

    def acknowledged(self) -> list[DeliveryRecord]:
        """The attempts a receiver answered with 2xx."""
        return [record for record in self.deliveries if record.ok]

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self, origin: str) -> None:
        """Start dispatching; ``origin`` is the emulator's base URL (for output URLs)."""
        self._origin = origin
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=_MAX_CONNECTIONS),
            timeout=aiohttp.ClientTimeout(total=_ATTEMPT_TIMEOUT),
            headers={"User-Agent": "wavespeed-emulator-webhooks"},
        )
        self._dispatcher = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop: cancel the dispatcher and the deliveries in flight, close the session."""
        tasks = [task for task in (self._dispatcher, *self._sending) if task is not None]
        self._dispatcher = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- dispatching ------------------------------------------------------------------------

    async def _run(self) -> None:
        while await self._waits.wait_until(self._due, self._next_due):
            now = self._state.clock.now()
            self._collect_finished(now)
            due = [message for message in self._queue if message.due <= now]
            self._queue = [message for message in self._queue if message.due > now]
            for message in due:
                self._in_flight += 1
                task = asyncio.get_running_loop().create_task(self._send(message))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
            self._waits.notify()  # Emulator.wait_for() conditions about deliveries

    def _due(self) -> bool:
        now = self._state.clock.now()
        return any(message.due <= now for message in self._queue) or any(
            task.id not in self._state.tasks or task.status_at(now).status.is_terminal
            for task in self._state.webhook_tasks.values()
        )

    def _next_due(self) -> float:
        # A forced status changes only through set_status(), which wakes the dispatcher.
        finishes = (
            math.inf if task.forced else task.finishes_at
            for task in self._state.webhook_tasks.values()
        )
        return min((*finishes, *(message.due for message in self._queue)), default=math.inf)

    def _collect_finished(self, now: float) -> None:
        for task in list(self._state.webhook_tasks.values()):
            current = task.status_at(now)
            if task.id in self._state.tasks and not current.status.is_terminal:
                continue
            del self._state.webhook_tasks[task.id]
            if task.id in self._state.tasks and current.raw in _DELIVERED_STATUSES:
                self._post(task, now)

    def _post(self, task: TaskRecord, now: float) -> None:
        assert task.webhook is not None
        # The body is fixed once, as on the platform: retries and duplicates repeat it.
        data = render_task(task, now, self._origin)
        body = json.dumps(data, separators=(",", ":")).encode()
        message = _Message(f"msg_{uuid.uuid4().hex}", task.id, task.webhook, body, due=now)
        if self._drops:
            self._drops -= 1
            moment = time.monotonic()
            self.deliveries.append(
                DeliveryRecord(
                    message.webhook_id, task.id, message.url, 1, None, now, moment, moment, True
                )
            )
            return
        if self._delays:
            message.due += self._delays.popleft()
        if self._corruptions:
            self._corruptions -= 1
            message.corrupt = True
        self._queue.append(message)
        if self._duplicates:
            self._duplicates -= 1
            self._queue.append(attrs.evolve(message, duplicate=True))

    async def _send(self, message: _Message) -> None:
        assert self._session is not None
        timestamp = int(self._state.wall_clock().timestamp())
        body = message.body
        signature = sign_webhook(self.secret, message.webhook_id, timestamp, body)
        corrupted = message.corrupt and message.attempt == 1
        if corrupted:  # still valid JSON, still a prediction: only the signature tells
            body = body[:-1] + b',"tampered":true}'
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
        at, sent = self._state.clock.now(), time.monotonic()
        status: int | None = None
        error = ""
        try:
            async with self._session.post(message.url, data=body, headers=headers) as answer:
                status = answer.status
                await answer.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        record = DeliveryRecord(
            message.webhook_id,
            message.prediction_id,
            message.url,
            message.attempt,
            status,
            at,
            sent,
            time.monotonic(),
            duplicate=message.duplicate,
            corrupted=corrupted,
            error=error,
        )
        self.deliveries.append(record)
        if not record.ok and message.attempt <= len(self.retry_delays):
            message.due = self._state.clock.now() + self.retry_delays[message.attempt - 1]
            message.attempt += 1
            self._queue.append(message)
        self._in_flight -= 1
        self._waits.notify()
