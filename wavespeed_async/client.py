"""AsyncWaveSpeed: one aiohttp session, many concurrent predictions."""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs

from . import _files
from ._account import CATALOGUE_TTL, Catalogue
from ._account_calls import AccountCalls, AccountMethods
from ._api import DEFAULT_MAX_RESPONSE_BYTES, ApiSession
from ._convert import structure_prediction, unstructure_payload
from ._coordination import Coordinator, LocalCoordinator
from ._engine import PollEngine
from ._idempotent import submit_once
from ._limits import Limits
from ._models import Prediction, Status
from ._polling import LearnedSchedule, PollSchedule, PollStats, Schedule, schedule_for
from ._protocol import (
    DEFAULT_BASE_URL,
    Request,
    check_base_url,
    check_model_id,
    history_request,
    is_sync_timeout,
    parse_history,
    parse_upload_ticket,
    result_request,
    submit_request,
    upload_ticket_request,
)
from ._retry import RetryPolicy, outcome_unknown
from ._seeds import Deadline, SeedModels
from .batch import BatchMethods
from .errors import (
    ConfigurationError,
    NotFinished,
    PredictionFailed,
    SubmissionUncertain,
    WaveSpeedError,
)
from .future import PredictionFuture
from .webhooks import WebhookReceiver, parse_webhook_secret, webhook_secret_request

__all__ = ["AsyncWaveSpeed"]

API_KEY_ENV = "WAVESPEED_API_KEY"
BASE_URL_ENV = "WAVESPEED_BASE_URL"
#: Default deadline of every wait, in seconds: long enough for a queued 1080p video.
DEFAULT_WAIT_TIMEOUT = 30 * 60.0


class AsyncWaveSpeed(SeedModels, BatchMethods, AccountMethods):
    """The asyncio client: an ``async with`` block owning one ``aiohttp.ClientSession``.

    >>> async with AsyncWaveSpeed() as client:                     # doctest: +SKIP
    ...     video = await client.text_to_video("a fox", aspect_ratio="9:16")
    ...     print(video.outputs[0])

    ``api_key`` defaults to ``$WAVESPEED_API_KEY`` and ``base_url`` to ``$WAVESPEED_BASE_URL``
    or ``https://api.wavespeed.ai``. Every wait has a deadline, ``wait_timeout`` seconds unless
    a call says otherwise. By default checks are timed by what the client learnt of each model's
    durations (``poll_stats``: first check near the 5th percentile, then 8% of the task's age
    apart), never closer than 2 s for images and 5 s for videos; ``poll_schedule`` replaces
    that with a fixed :class:`PollSchedule`, and ``time_scale`` shrinks the default delays for
    an emulator that runs faster than real time. ``max_checks_per_second`` caps the result
    checks of all futures together (the likeliest finished go first). ``max_connections`` caps
    the pool that all requests share; ``request_timeout`` bounds each request from sending to
    the last byte, and ``max_response_bytes`` each answer's size. ``retry`` is the
    :class:`RetryPolicy` for transient failures (reads are retried; a submit only when it
    provably created nothing: see the docs' failure semantics). ``limits`` queues submits
    locally to stay within the account's rate and running-task limits
    (``Limits.for_level("silver")``), slowing down on 429s; a task holds its running slot until
    the client sees it finish (await it) or its future is cancelled. Leaving the block stops
    polling, wakes every waiter with :class:`ClientClosed` (the remote tasks keep running) and
    closes the session. A client belongs to the event loop that first used it. ``coordinator``
    shares the limits, idempotency keys and webhook deliveries with other clients (a
    ``wavespeed_async.redis.RedisCoordinator`` across processes; in memory by default).
    ``validate_inputs`` loads the model catalogue (:meth:`models`, cached ``catalogue_ttl``
    seconds of ``catalogue_clock``) at the first submit and checks every payload against its
    model's schema before sending (needs the ``schema`` extra, ``jsonschema``).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_schedule: PollSchedule | None = None,
        request_timeout: float = 60.0,
        max_connections: int = 100,
        allow_insecure_http: bool = False,
        retry: RetryPolicy | None = None,
        limits: Limits | None = None,
        webhooks: WebhookReceiver | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_checks_per_second: float | None = None,
        poll_stats: PollStats | None = None,
        time_scale: float = 1.0,
        coordinator: Coordinator | None = None,
        validate_inputs: bool = False,
        catalogue_ttl: float = CATALOGUE_TTL,
        catalogue_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        key = (api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")).strip()
        if not key:
            raise ConfigurationError(
                f"no API key: pass api_key=... or set the {API_KEY_ENV} environment variable"
            )
        self.base_url = check_base_url(
            base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL,
            allow_insecure_http=allow_insecure_http,
        )
        for name, value in (("wait_timeout", wait_timeout), ("request_timeout", request_timeout)):
            if not value > 0:
                raise ConfigurationError(f"{name} must be > 0 seconds, got {value!r}")
        if not 0 < time_scale <= 1:
            raise ConfigurationError(f"time_scale must be within (0, 1], got {time_scale!r}")
        if max_checks_per_second is not None and not max_checks_per_second > 0:
            raise ConfigurationError(
                f"max_checks_per_second must be > 0 or None, got {max_checks_per_second!r}"
            )
        self.wait_timeout = wait_timeout
        self.poll_schedule = poll_schedule
        #: The durations learnt per model (seed or export them to start warm).
        self.poll_stats = poll_stats or PollStats()
        #: Multiplies the default schedules' delays (an emulator running faster than real time).
        self.time_scale = time_scale
        self.retry = retry or RetryPolicy()
        self.limits = limits or Limits()
        self._api = ApiSession(
            self.base_url,
            key,
            request_timeout=request_timeout,
            max_connections=max_connections,
            retry=self.retry,
            limits=self.limits,
            coordinator=coordinator or LocalCoordinator(),
            max_response_bytes=max_response_bytes,
        )
        #: Sends the result checks of every future of this client (internal).
        self.engine = PollEngine(
            self.get_prediction,
            workers=max_connections,
            max_checks_per_second=max_checks_per_second,
        )
        self._schedules: dict[str, Schedule] = {}
        #: Finishes the futures of submits made with ``webhook=`` (see :class:`WebhookReceiver`).
        self.webhooks = webhooks
        if webhooks is not None:  # deliveries and their repeats shared like the limits
            webhooks.use_coordinator(self.coordinator)
        self._account = AccountCalls(
            self._api,
            Catalogue(ttl=catalogue_ttl, clock=catalogue_clock),
            validate_inputs=validate_inputs,
        )

    def __repr__(self) -> str:
        return f"AsyncWaveSpeed(base_url={self.base_url!r}, api_key='***')"

    @property
    def coordinator(self) -> Coordinator:
        """What this client shares with others: limits, idempotency keys, webhook fan-out."""
        return self._api.coordinator

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncWaveSpeed:
        self._api.session()
        await self._api.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop polling, wake every waiter with :class:`ClientClosed`, close the session."""
        await self.engine.aclose()
        await self._api.aclose()

    # --- generic ------------------------------------------------------------------------------

    async def submit(
        self,
        model: str,
        payload: Mapping[str, Any] | Any,
        *,
        webhook: str | None = None,
        poll_schedule: PollSchedule | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> PredictionFuture:
        """Create a task and return a :class:`PredictionFuture` for it (its ``id`` is known).

        ``payload`` is the model's input: a mapping, or a payload model such as
        :class:`TextToVideo`. With ``enable_sync_mode`` the server answers when the task is
        done and the future is already finished; if the server's sync wait ran out, the future
        polls the returned id. A submit is never resent: a failure after the request may have
        reached the server raises :class:`SubmissionUncertain`. ``timeout`` bounds the wait
        for a running slot (``limits``) and the request (default: ``wait_timeout``).
        With the catalogue loaded (``validate_inputs``, or :meth:`models`) the payload is
        checked against the model's schema first: :class:`InvalidInput` names the field.

        ``idempotency_key`` makes the submit happen at most once per key (7 days), across every
        process sharing the ``coordinator``: a later or concurrent call with the same key gets a
        future on the same task (see :func:`submit_once`).
        """
        body = unstructure_payload(payload)
        await self._account.check(model, body)  # against the catalogue's schema, when loaded
        sync_wait = self.wait_timeout if body.get("enable_sync_mode") is True else None
        request = submit_request(
            self.base_url, check_model_id(model), body, webhook=webhook, sync_wait=sync_wait
        )
        limit = self.wait_timeout if timeout is None else timeout
        await self._api.start()
        if idempotency_key is None:
            return await self._submit_new(model, request, body, webhook, poll_schedule, limit)
        if poll_schedule is None and webhook is not None and self.webhooks is not None:
            poll_schedule = self.webhooks.reconcile_schedule  # an adopted task is awaited so too
        return await submit_once(
            self,
            idempotency_key,
            model,
            body,
            lambda: self._submit_new(model, request, body, webhook, poll_schedule, limit),
            poll_schedule=poll_schedule,
            timeout=limit,
        )

    async def _submit_new(
        self,
        model: str,
        request: Request,
        body: dict[str, Any],
        webhook: str | None,
        poll_schedule: PollSchedule | None,
        limit: float,
    ) -> PredictionFuture:
        loop = self._api.check_loop()
        deadline = None if math.isinf(limit) else loop.time() + limit
        lease = await self._api.acquire_slot(limit)
        try:
            started = loop.time()
            prediction = await self._create(model, request, body, deadline)
        except BaseException:
            if lease is not None:
                self._api.release_slot(lease)
            raise
        if lease is not None:
            await self.coordinator.bind_slot(lease, prediction.id)
        if is_sync_timeout(prediction) and prediction.status.is_terminal:
            # A sync wait that ran out says nothing of the task's fate: check, don't trust.
            prediction = attrs.evolve(prediction, status=Status.PROCESSING)
        # Webhook mode: the receiver finishes the future; polling only reconciles, rarely.
        receiver = self.webhooks if webhook is not None else None
        if poll_schedule is None and receiver is not None:
            poll_schedule = receiver.reconcile_schedule
        future = PredictionFuture(
            self,
            prediction.id,
            model=model,
            schedule=self._schedule(model, poll_schedule),
            prediction=prediction,
            on_finish=None if lease is None else functools.partial(self._api.release_slot, lease),
            started=started,
        )
        if receiver is not None:
            receiver.track(future)
        return future

    async def _create(
        self, model: str, request: Request, body: dict[str, Any], deadline: float | None
    ) -> Prediction:
        """Send a submit; a failure that may have created the task is SubmissionUncertain."""
        sent_at = dt.datetime.now(dt.timezone.utc)
        try:
            return structure_prediction(await self._api.call(request, deadline=deadline))
        except WaveSpeedError as exc:
            if not outcome_unknown(exc):
                raise
            raise SubmissionUncertain(
                f"submitting to {model} failed after the request may have reached the server"
                f" ({exc}); the task may exist, so it was not resent",
                model=model,
                payload=body,
                sent_at=sent_at,
            ) from exc

    async def run(
        self,
        model: str,
        payload: Mapping[str, Any] | Any,
        *,
        timeout: float | None = None,
        webhook: str | None = None,
        poll_schedule: PollSchedule | None = None,
        idempotency_key: str | None = None,
    ) -> Prediction:
        """Submit a task for any model id and wait for it: ``submit(...)`` then ``wait()``.

        ``timeout`` bounds the whole call, the submit included (default: ``wait_timeout``).
        """
        deadline = Deadline(self.wait_timeout if timeout is None else timeout)
        future = await self.submit(
            model,
            payload,
            webhook=webhook,
            poll_schedule=poll_schedule,
            timeout=deadline.left(),
            idempotency_key=idempotency_key,
        )
        return await future.wait(deadline.left())

    def prediction(
        self, prediction_id: str, *, model: str = "", poll_schedule: PollSchedule | None = None
    ) -> PredictionFuture:
        """A future for a task created earlier (resume by id); it checks at once when awaited."""
        result_request(self.base_url, prediction_id)  # validates the id before anything else
        return PredictionFuture(
            self, prediction_id, model=model, schedule=self._schedule(model, poll_schedule)
        )

    async def get_prediction(self, prediction_id: str) -> Prediction:
        """``GET /api/v3/predictions/{id}/result`` (retried per the policy): the current state."""
        request = result_request(self.base_url, prediction_id)
        return structure_prediction(await self._api.call(request, prediction_id=prediction_id))

    async def recent_predictions(
        self,
        *,
        model: str | None = None,
        status: str | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        page: int = 1,
        page_size: int = 100,
    ) -> list[Prediction]:
        """A page of the account's predictions, newest first (the API keeps 7 days).

        The way to reconcile a :class:`SubmissionUncertain`: look for a task of ``err.model``
        created after ``err.sent_at`` (minus clock skew) whose ``input`` is ``err.payload``.
        """
        request = history_request(
            self.base_url,
            model=model,
            status=status,
            created_after=created_after,
            created_before=created_before,
            page=page,
            page_size=page_size,
        )
        return parse_history(await self._api.call(request))

    def _schedule(self, model: str, given: PollSchedule | None = None) -> Schedule:
        """``given``, the client's ``poll_schedule``, or the learned schedule of ``model``."""
        if given is not None or self.poll_schedule is not None:
            return given or self.poll_schedule  # type: ignore[return-value]
        schedule = self._schedules.get(model)
        if schedule is None:
            if len(self._schedules) >= self.poll_stats.max_models:
                self._schedules.clear()
            fallback = schedule_for(model)
            if self.time_scale != 1:
                fallback = fallback.scaled(self.time_scale)
            schedule = LearnedSchedule(model, self.poll_stats, fallback)
            self._schedules[model] = schedule
        return schedule

    # --- files --------------------------------------------------------------------------------

    async def upload(
        self, file: str | os.PathLike[str] | bytes, *, filename: str | None = None
    ) -> str:
        """Upload a local file or bytes (ticket, then PUT); returns the URL to use as input.

        The content type comes from the bytes (PNG, JPEG, WebP, GIF, MP4, ...) or the file
        name; ``filename`` overrides the name announced. Empty files and files over 200 MB are
        refused before anything is sent. The PUT goes to pre-signed storage with exactly the
        ticket's headers, never the API key.

        >>> url = await client.upload("photo.jpg")                     # doctest: +SKIP
        >>> await client.edit_image("make it snow", image=url)         # doctest: +SKIP
        """
        return await self._upload(await _files.read_media(file, filename=filename))

    async def _upload(self, media: _files.Media) -> str:
        request = upload_ticket_request(
            self.base_url, media.filename, len(media.data), media.content_type
        )
        ticket = parse_upload_ticket(await self._api.call(request))
        await self._api.put(ticket.url, media.data, ticket.headers)
        return ticket.download_url

    async def download(
        self,
        prediction: Prediction,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = _files.MAX_DOWNLOAD,
        timeout: float = 30 * 60.0,
    ) -> list[Path]:
        """Save every output of a completed prediction under ``directory``; returns the paths.

        Files are named ``{id}-{index}{suffix}``, the suffix from the bytes, the content type
        or the URL, among ``.mp4 .png .jpg .jpeg .webp .gif .mov .webm`` (else ``.bin``).
        Each is written atomically (temporary file, then rename) and capped at ``max_bytes``.
        Base64 outputs are decoded; URLs are fetched over http(s) only, without the API key,
        each within ``timeout`` seconds. A failed prediction raises :class:`PredictionFailed`,
        an unfinished one :class:`NotFinished`.
        """
        if prediction.status.is_failure:
            raise PredictionFailed(prediction)
        if prediction.status is not Status.COMPLETED:
            raise NotFinished(
                f"prediction {prediction.id} is {prediction.raw_status or prediction.status.value},"
                " not completed: nothing to download yet",
                prediction_id=prediction.id,
            )
        return await _files.download_outputs(
            self._api.output, prediction, Path(directory), max_bytes=max_bytes, timeout=timeout
        )

    # --- webhooks -----------------------------------------------------------------------------

    async def webhook_secret(self) -> str:
        """The account's webhook signing secret (``whsec_...``): ``GET /api/v3/webhook/secret``.

        >>> receiver.set_secret(await client.webhook_secret())        # doctest: +SKIP
        """
        return parse_webhook_secret(await self._api.call(webhook_secret_request(self.base_url)))
