"""Webhooks: verify the platform's signed deliveries, and finish futures with them.

With ``submit(..., webhook=url)`` the platform POSTs the finished prediction (``completed``
or ``failed``; the prediction object, not the envelope) to ``url``, signed with the account's
secret (``GET /api/v3/webhook/secret``): the scheme is in ``_webhook_scheme``, whose pure
:func:`sign_webhook` and :func:`verify_webhook` are re-exported here.
:class:`WebhookReceiver` puts them behind a server route (aiohttp, or any ASGI framework) and
hands each verified prediction to the :class:`PredictionFuture` waiting for it, in this
process or, through a shared coordinator, in every process.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import inspect
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from ._coordination.local import Coordinator, LocalCoordinator
from ._engine.polling import RECONCILE_SCHEDULE, PollSchedule
from ._http import asgi
from ._telemetry import about
from ._wire.models import Prediction
from ._wire.webhook import (
    DEFAULT_TOLERANCE,
    SECRET_PREFIX,
    Delivery,
    check_secret,
    parse_webhook_secret,
    sign_webhook,
    verify_delivery,
    verify_webhook,
    webhook_secret_request,
)
from .errors import ConfigurationError, WebhookVerificationError

if TYPE_CHECKING:
    from aiohttp import web

    from .future import PredictionFuture

__all__ = [
    "DEFAULT_TOLERANCE",
    "SECRET_PREFIX",
    "WebhookReceiver",
    "WebhookVerificationError",
    "parse_webhook_secret",
    "sign_webhook",
    "verify_webhook",
    "webhook_secret_request",
]

log = logging.getLogger(__name__)

#: Deliveries carry the task's input, which may hold a base64 image: allow as much as a submit.
MAX_BODY_SIZE = 64 * 1024 * 1024
#: Deliveries kept for a future not tracked yet (its task ended before submit() returned).
_UNCLAIMED_KEPT = 1024

OnPrediction = Callable[[Prediction], Awaitable[None] | None]


def _local(coordinator: Coordinator) -> bool:
    return isinstance(coordinator, LocalCoordinator)


# --- the receiver ---------------------------------------------------------------------------


class WebhookReceiver:
    """A webhook endpoint: verifies deliveries, drops repeats, finishes futures, calls back.

    Give it to the client (``AsyncWaveSpeed(webhooks=receiver)``): every future submitted
    with ``webhook=`` is then finished by its delivery the moment it arrives, and meanwhile
    polls only on ``reconcile_schedule`` (:data:`RECONCILE_SCHEDULE`: first after ~60 s,
    then every few minutes), so a lost delivery still completes it.

    >>> receiver = WebhookReceiver(on_prediction=save)                 # doctest: +SKIP
    >>> async with AsyncWaveSpeed(webhooks=receiver) as client:        # doctest: +SKIP
    ...     receiver.set_secret(await client.webhook_secret())
    ...     fut = await client.submit_text_to_video("a fox", webhook="https://me.example/hook")
    ...     video = await fut

    Serve it with aiohttp (``app.router.add_post("/hook", receiver.aiohttp_handler)``, or
    ``app.add_subapp("/hook", receiver.aiohttp_app())``), or as an ASGI app: it is one
    (``fastapi_app.add_route("/hook", receiver, methods=["POST"])``, ``uvicorn.run(receiver)``).
    It answers at once: 200 for a verified delivery (and for a repeat of one), 400 naming the
    failed check, 503 while no secret is set or while it cannot remember one more delivery,
    so that the platform retries later.

    ``on_prediction`` gets each verified prediction once: repeats of a ``webhook-id`` are
    dropped for as long as its timestamp passes verification (``tolerance`` after it was
    signed), so a replay is never processed twice. At most ``remember`` ids are kept; past
    that, new deliveries get 503 until old ids expire, rather than an id being forgotten
    early. ``clock`` (Unix seconds) replaces the system clock.

    A coroutine function runs as a task after the answer; :meth:`aclose` waits for those. A
    plain function runs before it, so keep it short. Its errors are logged, never answered:
    the delivery was valid (it is acknowledged with 200).
    The receiver must run on the event loop of the clients whose futures it finishes.

    Behind several worker processes, give every client a shared coordinator
    (``AsyncWaveSpeed(webhooks=receiver, coordinator=RedisCoordinator(url))``): a delivery
    landing on any worker is then a repeat for all of them and finishes the futures of all of
    them (see :meth:`use_coordinator`).
    """

    def __init__(
        self,
        secret: str | None = None,
        on_prediction: OnPrediction | None = None,
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        reconcile_schedule: PollSchedule = RECONCILE_SCHEDULE,
        max_body_size: int = MAX_BODY_SIZE,
        remember: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.on_prediction = on_prediction
        self.tolerance = tolerance
        self.reconcile_schedule = reconcile_schedule
        self.max_body_size = max_body_size
        #: Deliveries accepted, repeats dropped, and deliveries refused, since creation.
        self.accepted = self.duplicates = self.rejected = 0
        self._secret: str | None = None
        if secret is not None:
            self.set_secret(secret)
        self._remember = remember
        self._clock = clock
        # Ids of accepted deliveries, and when each stops passing verification (a heap).
        self._seen: set[str] = set()
        self._expiries: list[tuple[float, str]] = []
        self._futures: weakref.WeakValueDictionary[str, PredictionFuture] = (
            weakref.WeakValueDictionary()
        )
        # Deliveries that beat their future (the task ended before submit() returned).
        self._unclaimed: collections.OrderedDict[str, Prediction] = collections.OrderedDict()
        self._callbacks: set[asyncio.Task[None]] = set()
        self._coordinator: Coordinator | None = None

    def __repr__(self) -> str:
        secret = "'***'" if self._secret else "None"
        return f"WebhookReceiver(secret={secret}, tracking={len(self._futures)})"

    def set_secret(self, secret: str) -> None:
        """Set (or rotate) the signing secret, e.g. ``await client.webhook_secret()``."""
        check_secret(secret)  # refuse an empty one now rather than at the first delivery
        self._secret = secret

    def track(self, future: PredictionFuture) -> None:
        """Finish ``future`` when its delivery arrives (the client does this on submit).

        For a task resumed by id: ``receiver.track(client.prediction(task_id,
        poll_schedule=receiver.reconcile_schedule))``.
        """
        if future.done():
            return
        early = self._unclaimed.pop(future.id, None)
        if early is not None:
            future.deliver(early)
        if not future.done():
            self._futures[future.id] = future

    def use_coordinator(self, coordinator: Coordinator) -> None:
        """Share repeats and deliveries with every process using ``coordinator``.

        The client calls this with its own coordinator. A delivery is then dropped as a repeat
        if *any* process saw its ``webhook-id``, and finishes the futures of every process
        (its ``on_prediction`` runs once, where the HTTP request came in). Each process still
        remembers the ids it saw itself, up to ``remember``. A receiver has one owner: a shared
        coordinator replaces an in-process one, and a second shared one is a
        :class:`ConfigurationError` (give each coordinator its own receiver).
        """
        current = self._coordinator
        if current is coordinator or (current is not None and _local(coordinator)):
            return
        if current is not None and not _local(current):
            raise ConfigurationError(
                f"{self!r} already shares deliveries through {current!r}: a receiver belongs to"
                " one coordinator; give each coordinator its own WebhookReceiver"
            )
        self._coordinator = coordinator
        coordinator.on_delivery(self._resolve)

    # --- the framework-free core ------------------------------------------------------------

    def handle(self, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        """Process one delivery in this process; returns the HTTP status and text to answer.

        The core of every server integration, usable from any other framework. It shares
        nothing with other processes: behind several workers, use :meth:`handle_async`.
        """
        checked = self._check(headers, body)
        if isinstance(checked, tuple):
            return checked
        return self._accept_here(checked)

    async def handle_async(self, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        """:meth:`handle`, sharing repeats and deliveries through the coordinator, if any.

        When the coordinator fails, the delivery is handled in this process only (other
        processes' futures then finish by their reconciliation poll) and still answered 200;
        503 (the platform retries) only when it could not be handled at all.
        """
        checked = self._check(headers, body)
        if isinstance(checked, tuple):
            return checked
        if self._coordinator is not None:
            try:
                return await self._share(checked, self._coordinator)
            except Exception as exc:  # any coordinator's failure: handle the delivery here
                log.warning("webhook %s handled in this process only: %r", checked.webhook_id, exc)
        return self._accept_here(checked)

    def _check(self, headers: Mapping[str, str], body: bytes) -> Delivery | tuple[int, str]:
        """The delivery if it verifies and is new to this process, else the answer to give."""
        if self._secret is None:
            return 503, "webhook secret not configured yet"
        try:
            delivery = verify_delivery(
                headers, body, self._secret, self.tolerance, now=self._clock()
            )
        except WebhookVerificationError as exc:
            self.rejected += 1
            log.warning("webhook delivery refused: %s", exc)
            return 400, f"refused: {exc.check} check failed"
        if delivery.webhook_id in self._seen:
            self.duplicates += 1
            return 200, "duplicate"
        if not self._remember_id(delivery.webhook_id, delivery.signed_at):
            log.warning("webhook delivery deferred: %d deliveries remembered", len(self._seen))
            return 503, "too many recent deliveries; retry later"
        return delivery

    def _accept_here(self, delivery: Delivery) -> tuple[int, str]:
        self._resolve(delivery.prediction)
        self._accepted(delivery)
        return 200, "ok"

    async def _share(self, delivery: Delivery, coordinator: Coordinator) -> tuple[int, str]:
        # Remembered while a replay would still pass verification: until signed_at + tolerance.
        ttl = max(1.0, delivery.signed_at + self.tolerance - self._clock())
        if not await coordinator.first_delivery(delivery.webhook_id, ttl=ttl):
            self.duplicates += 1  # another process took it
            return 200, "duplicate"
        await coordinator.publish_delivery(delivery.prediction_json)  # reaches us too
        self._accepted(delivery)
        prediction = delivery.prediction
        if prediction.status.is_terminal:  # its submitter may be gone: free the slot here
            try:
                await coordinator.release_slot(prediction.id)
            except Exception as exc:  # the lease expires on its own
                log.warning(
                    "could not free the slot of %s: %r",
                    prediction.id,
                    exc,
                    extra=about(prediction.id, prediction.model),
                )
        return 200, "ok"

    def _accepted(self, delivery: Delivery) -> None:
        prediction = delivery.prediction
        self.accepted += 1
        log.debug(
            "webhook %s: prediction %s %s",
            delivery.webhook_id,
            prediction.id,
            prediction.raw_status,
            extra=about(prediction.id, prediction.model),
        )
        self._call_back(prediction)

    def _remember_id(self, webhook_id: str, signed_at: int) -> bool:
        """Remember an id until a replay of it would fail verification; False when full."""
        now = self._clock()
        while self._expiries and self._expiries[0][0] < now:
            self._seen.discard(heapq.heappop(self._expiries)[1])
        if len(self._seen) >= self._remember:
            return False
        self._seen.add(webhook_id)
        heapq.heappush(self._expiries, (signed_at + self.tolerance, webhook_id))
        return True

    def _resolve(self, prediction: Prediction) -> None:
        future = self._futures.get(prediction.id)
        if future is not None:
            future.deliver(prediction)
            if future.done():
                self._futures.pop(prediction.id, None)
        elif prediction.status.is_terminal:
            self._unclaimed[prediction.id] = prediction
            while len(self._unclaimed) > _UNCLAIMED_KEPT:
                self._unclaimed.popitem(last=False)

    def _call_back(self, prediction: Prediction) -> None:
        if self.on_prediction is None:
            return
        try:
            result = self.on_prediction(prediction)
        except Exception:
            log.exception(
                "on_prediction failed for prediction %s",
                prediction.id,
                extra=about(prediction.id, prediction.model),
            )
            return
        if inspect.isawaitable(result):
            task = asyncio.get_running_loop().create_task(self._await_callback(result, prediction))
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)

    @staticmethod
    async def _await_callback(result: Awaitable[None], prediction: Prediction) -> None:
        try:
            await result
        except Exception:
            log.exception(
                "on_prediction failed for prediction %s",
                prediction.id,
                extra=about(prediction.id, prediction.model),
            )

    async def aclose(self, grace: float = 10.0) -> None:
        """Wait up to ``grace`` seconds for running callbacks, then cancel the rest."""
        pending = set(self._callbacks)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=grace)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)

    async def __aenter__(self) -> WebhookReceiver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- aiohttp ----------------------------------------------------------------------------

    async def aiohttp_handler(self, request: web.Request) -> web.Response:
        """An aiohttp handler: ``app.router.add_post("/hook", receiver.aiohttp_handler)``."""
        from aiohttp import web

        if request.content_length is not None and request.content_length > self.max_body_size:
            return web.Response(status=413, text="too large")
        status, text = await self.handle_async(request.headers, await request.read())
        return web.Response(status=status, text=text)

    def aiohttp_app(self, path: str = "/") -> web.Application:
        """An aiohttp sub-application answering ``POST path``; closes with its parent.

        >>> app.add_subapp("/webhooks", receiver.aiohttp_app())        # doctest: +SKIP
        """
        from aiohttp import web

        app = web.Application(client_max_size=self.max_body_size)
        app.router.add_post(path, self.aiohttp_handler)
        app.on_cleanup.append(self._aiohttp_cleanup)
        return app

    async def _aiohttp_cleanup(self, app: web.Application) -> None:
        await self.aclose()

    # --- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        """The ASGI application: ``POST`` deliveries at whatever path it is routed to."""
        if scope["type"] == "lifespan":  # served alone: uvicorn.run(receiver)
            await asgi.serve_lifespan(receive, send, self.aclose)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # refused before accepting
            return
        if scope["method"] != "POST":
            await asgi.answer(send, 405, "use POST", [(b"allow", b"POST")])
            return
        headers = asgi.request_headers(scope)
        try:
            body = await asgi.read_body(receive, headers, self.max_body_size)
        except asgi.BodyTooLarge:
            await asgi.answer(send, 413, "too large")
            return
        if body is not None:  # None: the sender hung up
            status, text = await self.handle_async(headers, body)
            await asgi.answer(send, status, text)
