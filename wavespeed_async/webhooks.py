"""Webhooks: verify the platform's signed deliveries, and finish futures with them.

With ``submit(..., webhook=url)`` the platform POSTs the finished prediction (``completed``
or ``failed``; the prediction object, not the envelope) to ``url``, with three headers:

- ``webhook-id``: the delivery's id, the same on every retry of it;
- ``webhook-timestamp``: when it was signed, in Unix seconds;
- ``webhook-signature``: ``v3,<hex>``, the HMAC-SHA256 of ``{id}.{timestamp}.{raw body}``
  keyed with the account's secret (``GET /api/v3/webhook/secret``) minus its ``whsec_``
  prefix, taken as UTF-8 text.

:func:`sign_webhook` and :func:`verify_webhook` are pure functions. :class:`WebhookReceiver`
puts them behind a server route (aiohttp, or any ASGI framework) and hands each verified
prediction to the :class:`PredictionFuture` waiting for it.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import heapq
import hmac
import inspect
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import _webhook_asgi as asgi
from ._convert import structure_prediction
from ._models import Prediction
from ._polling import RECONCILE_SCHEDULE, PollSchedule
from ._protocol import Request
from .errors import (
    ConfigurationError,
    ProtocolError,
    WebhookCheck,
    WebhookVerificationError,
)

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

log = logging.getLogger("wavespeed_async")

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v3"
#: Seconds a delivery's timestamp may be from now, either way, before it is refused.
DEFAULT_TOLERANCE = 300.0
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
#: Deliveries carry the task's input, which may hold a base64 image: allow as much as a submit.
MAX_BODY_SIZE = 64 * 1024 * 1024

Check = WebhookCheck
#: Deliveries kept for a future not tracked yet (its task ended before submit() returned).
_UNCLAIMED_KEPT = 1024

OnPrediction = Callable[[Prediction], Awaitable[None] | None]


# --- the scheme (pure) ----------------------------------------------------------------------


def _key(secret: str) -> bytes:
    key = secret.strip().removeprefix(SECRET_PREFIX)
    if not key:
        raise ConfigurationError("the webhook secret is empty")
    return key.encode("utf-8")  # the text itself, not base64-decoded: the platform's reading


def sign_webhook(secret: str, webhook_id: str, timestamp: int | str, body: bytes | str) -> str:
    """The ``webhook-signature`` value of a delivery: ``v3,<hex HMAC-SHA256>``.

    ``secret`` may keep its ``whsec_`` prefix; ``body`` is the exact bytes sent. Useful to
    test your own receiver:

    >>> sign_webhook("whsec_abc", "msg_1", 1700000000, b'{"id":"p1"}')  # doctest: +ELLIPSIS
    'v3,...'
    """
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    message = f"{webhook_id}.{timestamp}.".encode() + raw
    return f"{SIGNATURE_VERSION},{hmac.new(_key(secret), message, hashlib.sha256).hexdigest()}"


def verify_webhook(
    headers: Mapping[str, str],
    raw_body: bytes | str,
    secret: str,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> Prediction:
    """Check a delivery and return its :class:`Prediction`.

    ``headers`` is any mapping (names are matched case-insensitively), ``raw_body`` the body
    exactly as received (parse it *after* verifying), ``secret`` the account's ``whsec_...``
    secret. Raises :class:`WebhookVerificationError` whose ``check`` says what failed. The
    signature is checked before the timestamp, so ``"timestamp"`` always means a genuine but
    stale (or future) delivery. ``now`` (Unix seconds) replaces the system clock.

    >>> prediction = verify_webhook(request.headers, await request.read(), secret)  # doctest: +SKIP
    """
    webhook_id = _header(headers, ID_HEADER)
    timestamp = _header(headers, TIMESTAMP_HEADER)
    offered = _header(headers, SIGNATURE_HEADER)
    expected = sign_webhook(secret, webhook_id, timestamp, raw_body).encode()
    # Several space-separated signatures are allowed (as during a secret rotation).
    if not any(
        hmac.compare_digest(expected, candidate.lower().encode("utf-8"))
        for candidate in offered.split()
    ):
        raise WebhookVerificationError("signature", f"no {SIGNATURE_VERSION} signature matches")
    try:
        signed_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError("timestamp", "not Unix seconds") from None
    skew = (time.time() if now is None else now) - signed_at
    if abs(skew) > tolerance:
        when = "old" if skew > 0 else "in the future"
        raise WebhookVerificationError(
            "timestamp", f"signed {abs(skew):.0f} s {when}; tolerance is {tolerance:g} s"
        )
    return _parse_body(raw_body)


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:  # a plain dict: look for any capitalisation
        value = next((v for key, v in headers.items() if key.lower() == name), None)
    if value is None or not value.strip():
        raise WebhookVerificationError("headers", f"no {name} header")
    return value.strip()


def _parse_body(raw_body: bytes | str) -> Prediction:
    try:
        data = json.loads(raw_body)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to read
        raise WebhookVerificationError("payload", "the body is not readable JSON") from None
    if isinstance(data, Mapping) and "id" not in data and isinstance(data.get("data"), Mapping):
        data = data["data"]  # the API's envelope: not what the platform sends, but harmless
    try:
        prediction = structure_prediction(data)
    except ProtocolError as exc:
        raise WebhookVerificationError("payload", exc.message) from None
    if not prediction.id:
        raise WebhookVerificationError("payload", "the prediction has no id")
    return prediction


def webhook_secret_request(base_url: str) -> Request:
    """``GET /api/v3/webhook/secret``."""
    return Request("GET", f"{base_url}/api/v3/webhook/secret")


def parse_webhook_secret(data: Any) -> str:
    """The secret in the ``data`` of a ``/webhook/secret`` answer."""
    secret = data.get("secret") if isinstance(data, Mapping) else None
    if not isinstance(secret, str) or not secret.strip():
        raise ProtocolError("webhook secret answer without a secret")
    return secret.strip()


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

    def __repr__(self) -> str:
        secret = "'***'" if self._secret else "None"
        return f"WebhookReceiver(secret={secret}, tracking={len(self._futures)})"

    def set_secret(self, secret: str) -> None:
        """Set (or rotate) the signing secret, e.g. ``await client.webhook_secret()``."""
        _key(secret)  # refuse an empty one now rather than at the first delivery
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

    # --- the framework-free core ------------------------------------------------------------

    def handle(self, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        """Process one delivery; returns the HTTP status and text to answer with.

        The core of every server integration, usable from any other framework.
        """
        if self._secret is None:
            return 503, "webhook secret not configured yet"
        try:
            prediction = verify_webhook(
                headers, body, self._secret, self.tolerance, now=self._clock()
            )
        except WebhookVerificationError as exc:
            self.rejected += 1
            log.warning("webhook delivery refused: %s", exc)
            return 400, f"refused: {exc.check} check failed"
        webhook_id = _header(headers, ID_HEADER)
        if webhook_id in self._seen:
            self.duplicates += 1
            return 200, "duplicate"
        if not self._remember_id(webhook_id, int(_header(headers, TIMESTAMP_HEADER))):
            log.warning("webhook delivery deferred: %d deliveries remembered", len(self._seen))
            return 503, "too many recent deliveries; retry later"
        self.accepted += 1
        log.debug("webhook %s: prediction %s %s", webhook_id, prediction.id, prediction.raw_status)
        self._resolve(prediction)
        self._call_back(prediction)
        return 200, "ok"

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
            log.exception("on_prediction failed for prediction %s", prediction.id)
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
            log.exception("on_prediction failed for prediction %s", prediction.id)

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
        status, text = self.handle(request.headers, await request.read())
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
            status, text = self.handle(headers, body)
            await asgi.answer(send, status, text)
