"""The :class:`Emulator`: a real aiohttp server on loopback, run as an async context manager."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import math
from collections.abc import Callable, Mapping
from types import TracebackType

import anyio
from aiohttp import web

from .._wire.limits import Limits
from ._account import DEFAULT_BALANCE
from ._app import build_app
from ._arguments import check_number, check_port
from ._clock import Clock
from ._faults import FaultPlan
from ._requests import DEFAULT_LOG_SIZE
from ._state import DEFAULT_RETENTION, EmulatorState, RequestRecord, TaskRecord
from ._waits import SyncWaits
from ._webhooks import WebhookDispatcher

__all__ = ["Emulator"]

# Sync-mode waiters are cancelled before shutdown, so in-flight handlers end at once; this
# only bounds a handler stuck elsewhere.
_SHUTDOWN_GRACE = 2.0


class Emulator:
    """A local WaveSpeed v3 API on an emulated clock, for tests, demos and benchmarks.

    ``speed`` is emulated seconds per real second (0 freezes time: only :meth:`advance`
    moves it). ``durations`` maps a model id to its emulated run time (default: the
    catalogue's, 3 s for a model it does not list). ``sync_timeout`` is how long, in emulated
    seconds, a sync-mode submit waits before answering "still processing" (code 5004).
    ``balance`` is the account's credit in USD: each task is debited its price at submit,
    and a submit it cannot pay is refused (402, "Insufficient balance ..."). ``limits``
    (:class:`wavespeed_async.Limits`, e.g. ``Limits.for_level("bronze")``) are enforced as
    the platform does: submits over the rate (per 60 emulated seconds) get 429 with
    ``Retry-After`` (whole real seconds at the clock's speed, at least 1; emulated seconds
    on a frozen clock), tasks over the concurrency limit wait ``created`` for a slot.
    ``clock`` and ``wall_clock`` replace the time sources entirely (``clock`` wins over
    ``speed``; ``Clock.wall_clock()`` makes a wall clock that follows the emulated one).
    ``output_retention`` is how long, in emulated seconds from the submit, outputs and
    uploads are served (the platform's 7 days); after it they answer 403 with S3's
    ``AccessDenied`` XML, as expired storage objects do, while the prediction itself still
    answers (a file that never existed answers 404). ``request_log_size`` is how many of the newest
    requests :attr:`requests` keeps.

    Every argument is checked here, before anything starts: a port outside 0..65535, a
    speed, balance, duration or timeout that is negative, NaN or infinite raises
    :class:`~wavespeed_async.errors.InvalidInput` naming it and the allowed range.

    >>> async with Emulator(speed=0) as emu:                            # doctest: +SKIP
    ...     client = AsyncWaveSpeed(api_key="any", base_url=emu.base_url)
    ...     future = await client.submit_text_to_video("a fox")
    ...     emu.advance(30)                                     # the video is done
    ...     video = await future
    """

    def __init__(
        self,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        durations: Mapping[str, float] | None = None,
        sync_timeout: float = 60.0,
        *,
        balance: float = DEFAULT_BALANCE,
        limits: Limits | None = None,
        clock: Clock | None = None,
        wall_clock: Callable[[], dt.datetime] | None = None,
        output_retention: float = DEFAULT_RETENTION,
        request_log_size: int = DEFAULT_LOG_SIZE,
    ) -> None:
        self._port = check_port(port)
        self._clock = clock or Clock(speed)
        self.state = EmulatorState(
            api_key=api_key,
            durations=durations,
            sync_timeout=sync_timeout,
            clock=self._clock,
            wall_clock=wall_clock,
            balance=balance,
            limits=limits,
            output_retention=output_retention,
            request_log_size=request_log_size,
        )
        self._host = host
        self._waits = SyncWaits(self._clock)
        #: Webhook deliveries: faults (``drop_next``, ...), secret, record of attempts.
        self.webhooks = WebhookDispatcher(self.state, self._waits)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start listening (``async with`` does this for you)."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        self._waits.bind(asyncio.get_running_loop())
        app = build_app(self.state, self._waits)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_GRACE)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()
            raise
        host, port = runner.addresses[0][:2]
        self._base_url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        self._runner = runner
        await self.webhooks.start(self._base_url)

    async def close(self) -> None:
        """Stop the server: cancel sync-mode waits, close the site and the runner."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._waits.close()
        with anyio.CancelScope(shield=True):  # a half-closed server would leak its socket
            await self.webhooks.close()
            await runner.cleanup()

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>`` of the running server."""
        if self._base_url is None or self._runner is None:
            raise RuntimeError("the emulator is not running: use 'async with Emulator()'")
        return self._base_url

    # --- time -------------------------------------------------------------------------------

    @property
    def speed(self) -> float:
        """Emulated seconds per real second; may be changed while running."""
        return self._clock.speed

    @speed.setter
    def speed(self, value: float) -> None:
        self._clock.speed = value
        self._waits.notify()

    def now(self) -> float:
        """The emulated clock's reading, in seconds since the emulator was made."""
        return self._clock.now()

    def advance(self, seconds: float) -> None:
        """Move emulated time forward by ``seconds``; waiting sync-mode submits re-check."""
        self._clock.advance(seconds)
        self._waits.notify()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Wait, in real time, until ``condition()`` holds.

        It is re-checked after every request the emulator answers (and when a submit creates
        its task), on ``advance()`` and ``set_status()``; it is not polled, so a condition on
        the running clock alone is not noticed. Bound it with ``anyio.fail_after``.

        >>> async with anyio.create_task_group() as group:              # doctest: +SKIP
        ...     group.start_soon(client.edit_image, "snow", image=url)  # sync mode
        ...     await emu.wait_for(lambda: emu.submit_count == 1)
        ...     emu.advance(3)
        """
        if not await self._waits.wait_until(condition, lambda: math.inf):
            raise RuntimeError("the emulator closed while waiting")

    # --- scripting --------------------------------------------------------------------------

    def set_duration(self, model: str, seconds: float) -> None:
        """Tasks of ``model`` submitted from now on take ``seconds`` emulated seconds."""
        self.state.set_duration(model, seconds)

    @property
    def faults(self) -> FaultPlan:
        """Scripted faults: ``emu.faults.add(Fault.RESET_AFTER, route="submit", on=[2])``."""
        return self.state.faults

    def fail_next(self, count: int = 1, error: str = "emulated failure") -> None:
        """The next ``count`` submitted tasks end ``failed`` with ``error`` when due."""
        self.state.fail_next(count, error)

    def set_status(self, task_id: str, raw_status: str, error: str = "") -> None:
        """Force any status string (even an unknown one) on a task from now on."""
        self.state.set_status(task_id, raw_status, error)
        self._waits.notify()

    # --- inspection -------------------------------------------------------------------------

    @property
    def tasks(self) -> dict[str, TaskRecord]:
        """Every live task by id (deleted ones are gone)."""
        return self.state.tasks

    @property
    def submit_count(self) -> int:
        """How many tasks were created (rejected submits do not count)."""
        return self.state.submit_count

    @property
    def tasks_created(self) -> int:
        """Every task ever created, deleted ones too; rejected submits create none.

        Per ``(model, input)``: :meth:`created_per_payload`.
        """
        return self.state.submit_count

    @property
    def output_retention(self) -> float:
        """Emulated seconds outputs and uploads are served after their submit (7 days)."""
        return self.state.output_retention

    @property
    def balance(self) -> float:
        """The account's balance in USD (settable, to script a top-up or an empty account)."""
        return self.state.account.balance

    @balance.setter
    def balance(self, value: float) -> None:
        self.state.account.balance = check_number("balance", value)

    @property
    def limits(self) -> Limits:
        """The account's limits; settable while running (e.g. to drop to bronze mid-test)."""
        return self.state.account.limits

    @limits.setter
    def limits(self, value: Limits) -> None:
        self.state.account.limits = value

    @property
    def rate_limited(self) -> int:
        """How many 429s were served: submits over the rate, and those scripted by faults."""
        return self.state.account.rate_limited

    @property
    def peak_running(self) -> int:
        """The most tasks that were running at once so far (emulated time)."""
        return self.state.account.peak_running(self._clock.now())

    @property
    def requests(self) -> list[RequestRecord]:
        """The requests received, oldest first: the newest ``request_log_size`` of them."""
        return list(self.state.requests)

    def created_per_payload(self) -> collections.Counter[str]:
        """Tasks created per canonical ``(model, input)`` JSON: any count above 1 is a resend."""
        return self.state.created_per_payload()

    def auth_leaks(self) -> list[RequestRecord]:
        """Requests to storage or output URLs that carried an ``Authorization`` header."""
        return self.state.auth_leaks()
