"""AsyncWaveSpeed: one aiohttp session, many concurrent predictions.

This module is the table of contents of the client: every public method is a short,
documented door to the code that does the work (``_engine`` submits and polls, ``_http``
talks HTTP, ``_wire`` builds requests and reads answers, ``batch`` runs many items).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, overload

from ._coordination import Coordinator, LocalCoordinator
from ._engine.account import AccountCalls
from ._engine.background import Background
from ._engine.engine import PollEngine
from ._engine.future import PredictionFuture
from ._engine.keyed import KeyedSubmits, check_idempotency_key
from ._engine.polling import PollSchedule, PollStats
from ._engine.seeds import Deadline, edit_payload
from ._engine.submit import Submitter
from ._http import files as _files
from ._http.retry import RetryPolicy
from ._http.session import DEFAULT_MAX_RESPONSE_BYTES, ApiSession
from ._storage import Storage, StorageOptions
from ._telemetry import telemetry
from ._wire.account import CATALOGUE_TTL, BillingRecord, Catalogue, Usage
from ._wire.convert import structure_prediction, unstructure_payload
from ._wire.limits import Limits
from ._wire.models import ModelInfo, Prediction, Quote, TextToVideo
from ._wire.protocol import (
    DEFAULT_BASE_URL,
    check_base_url,
    check_model_id,
    history_request,
    parse_history,
    result_request,
    submit_request,
)
from ._wire.settings import BASE_URL_ENV, api_key_from, check_settings
from ._wire.webhook import parse_webhook_secret, webhook_secret_request
from .batch import BatchInput, ProgressCallback, as_completed, map_items
from .errors import WaveSpeedError
from .webhooks import WebhookReceiver

__all__ = ["AsyncWaveSpeed"]

#: Default deadline of every wait, in seconds: long enough for a queued 1080p video.
DEFAULT_WAIT_TIMEOUT = 30 * 60.0


class AsyncWaveSpeed:
    """The asyncio client: an ``async with`` block owning one ``aiohttp.ClientSession``.

    >>> async with AsyncWaveSpeed() as client:                     # doctest: +SKIP
    ...     video = await client.text_to_video("a fox", aspect_ratio="9:16")
    ...     print(video.outputs[0])

    Leaving the block stops polling, wakes every waiter with :class:`ClientClosed` (the remote
    tasks keep running) and closes the session. A client belongs to the event loop that first
    used it. Every method below is a documented door; the work is done in the engine, the HTTP
    layer and the batch runner.

    :param api_key: the API key; defaults to ``$WAVESPEED_API_KEY``. Sent only to ``base_url``,
        never shown in a repr, a log line, an exception or a URL.
    :param base_url: the API's address; ``$WAVESPEED_BASE_URL`` or ``https://api.wavespeed.ai``
        (an emulator: ``http://127.0.0.1:8765``). Plain ``http://`` only to loopback, unless
        ``allow_insecure_http``.
    :param wait_timeout: the deadline of every wait, in seconds, unless a call says otherwise
        (30 minutes).
    :param poll_schedule: a fixed :class:`PollSchedule` for every future, instead of the
        learned one (first check near the 5th percentile of what the client learnt of the
        model's durations, then 8% of the task's age apart, never closer than 2 s for images
        and 5 s for videos).
    :param request_timeout: the total deadline of each request, from sending to the last byte.
    :param max_connections: the size of the connection pool that every request shares.
    :param allow_insecure_http: accept a plain ``http://`` base URL that is not loopback.
    :param retry: the :class:`RetryPolicy` for transient failures: reads are retried; a submit
        only when it provably created nothing (see the docs' failure semantics).
    :param limits: the account's :class:`Limits` (``Limits.for_level("silver")``): submits queue
        locally instead of provoking 429s, slowing down on 429s; a task holds its running slot
        until the client sees it finish (await it) or its future is cancelled.
    :param webhooks: a :class:`WebhookReceiver` that finishes the futures of submits made with
        ``webhook=``; the client shares its ``coordinator`` with it (one owner per receiver).
    :param max_response_bytes: the cap on each answer's size, counted after decompression.
    :param max_checks_per_second: caps the result checks of all futures together (the likeliest
        finished go first).
    :param poll_stats: the durations learnt per model (:class:`PollStats`; seed or export them
        to start warm).
    :param time_scale: multiplies the default schedules' delays, within ``(0, 1]``: for an
        emulator running faster than real time.
    :param coordinator: what the client shares with other clients: limits, idempotency keys and
        webhook deliveries (``wavespeed_async.redis.RedisCoordinator`` across processes; in
        memory by default).
    :param validate_inputs: load the model catalogue at the first submit and check every payload
        against its model's schema before sending (needs the ``schema`` extra).
    :param storage: :class:`StorageOptions` for the object stores ``download`` writes to; by
        default the cloud's standard environment (``AWS_ENDPOINT_URL``, ...).
    :param catalogue_ttl: how long the catalogue is trusted, in seconds of ``catalogue_clock``.
    :param catalogue_clock: the monotonic clock of ``catalogue_ttl`` (tests pass their own).
    :raises ConfigurationError: no API key, a malformed base URL, or an out-of-range setting.
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
        storage: StorageOptions | None = None,
    ) -> None:
        key = api_key_from(api_key)
        self.base_url = check_base_url(
            base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL,
            allow_insecure_http=allow_insecure_http,
        )
        check_settings(wait_timeout, request_timeout, time_scale, max_checks_per_second)
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
        #: Finishes the futures of submits made with ``webhook=`` (see :class:`WebhookReceiver`).
        self.webhooks = webhooks
        if webhooks is not None:  # deliveries and their repeats shared like the limits
            webhooks.use_coordinator(self.coordinator)
        self._background = Background()
        self._submitter = Submitter(
            self._api,
            self,
            poll_schedule=poll_schedule,
            poll_stats=self.poll_stats,
            time_scale=time_scale,
            webhooks=webhooks,
            background=self._background,
        )
        self._keyed = KeyedSubmits(self, self._background, adopt=self._submitter.adopt)
        self._account = AccountCalls(
            self._api,
            Catalogue(ttl=catalogue_ttl, clock=catalogue_clock),
            validate_inputs=validate_inputs,
        )
        self._storage = Storage(storage)

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
        """Stop polling, wake every waiter with :class:`ClientClosed`, close the session.

        Ledger writes still being retried in the background (the coordinator was down) are
        dropped, each logged as an error naming its key and task.
        """
        await self.engine.aclose()
        await self._background.aclose()
        await self._api.aclose()
        await self._storage.aclose()

    # --- any model ----------------------------------------------------------------------------

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
        future on the same task. A key is a non-empty ``str`` of at most 256 characters without
        control characters. A keyed submit whose outcome nobody can prove leaves the key
        uncertain: this call and every later one raise :class:`SubmissionUncertain` at once,
        until the history settles it or :meth:`resolve_key` does. ``timeout`` then bounds the
        whole call: the claim, the wait for another caller's submit and any history check.
        """
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
        body = unstructure_payload(payload)
        limit = self.wait_timeout if timeout is None else timeout
        deadline = Deadline(limit)
        # against the catalogue's schema, when loaded; its loading obeys the deadline too
        await self._account.check(check_model_id(model), body, timeout=limit)
        sync_wait = self.wait_timeout if body.get("enable_sync_mode") is True else None
        request = submit_request(
            self.base_url, check_model_id(model), body, webhook=webhook, sync_wait=sync_wait
        )
        limit = deadline.left()
        await self._api.start()

        def send(seconds: float) -> Awaitable[PredictionFuture]:
            return self._submitter.submit(model, request, body, webhook, poll_schedule, seconds)

        if idempotency_key is None:
            return await send(limit)
        if poll_schedule is None and webhook is not None and self.webhooks is not None:
            poll_schedule = self.webhooks.reconcile_schedule  # an adopted task is awaited so too
        return await self._keyed.submit(
            idempotency_key, model, body, send, poll_schedule=poll_schedule, timeout=limit
        )

    async def resolve_key(
        self, idempotency_key: str, *, prediction_id: str | None = None, absent: bool = False
    ) -> PredictionFuture | None:
        """Settle an uncertain idempotency key by hand; a future on its task, or ``None``.

        After :class:`SubmissionUncertain` with ``err.key``, find out what the platform did
        (the dashboard, a webhook delivery, :meth:`recent_predictions`), then either adopt the
        task, ``prediction_id=...`` (it must exist, be of the key's model and have its input:
        else :class:`NotFound` or :class:`InvalidInput`), or declare that nothing was created,
        ``absent=True``, so that the next call with the key submits. Every process sharing the
        coordinator sees the answer. Only an uncertain key (or one whose claimant died) can be
        settled: another raises :class:`InvalidInput`.

        >>> future = await client.resolve_key("order-42", prediction_id=task_id)  # doctest: +SKIP
        """
        check_idempotency_key(idempotency_key)
        await self._api.start()
        return await self._keyed.resolve(
            idempotency_key, prediction_id=prediction_id, absent=absent
        )

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
        return self._submitter.future(prediction_id, model=model, poll_schedule=poll_schedule)

    async def get_prediction(self, prediction_id: str) -> Prediction:
        """``GET /api/v3/predictions/{id}/result`` (retried per the policy): the current state."""
        request = result_request(self.base_url, prediction_id)
        return await self._api.call(
            request, parse=structure_prediction, prediction_id=prediction_id
        )

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
        return await self._api.call(request, parse=parse_history)

    # --- the seed models ----------------------------------------------------------------------

    async def submit_text_to_video(
        self,
        prompt: str,
        *,
        aspect_ratio: str = "16:9",
        seed: int = -1,
        webhook: str | None = None,
        poll_schedule: PollSchedule | None = None,
        idempotency_key: str | None = None,
    ) -> PredictionFuture:
        """Submit Dreamina V3.0 Pro text-to-video (1080p MP4); see :class:`TextToVideo`."""
        payload = TextToVideo(prompt, aspect_ratio=aspect_ratio, seed=seed)
        return await self.submit(
            payload.model_id, payload, webhook=webhook, poll_schedule=poll_schedule,
            idempotency_key=idempotency_key,
        )  # fmt: skip

    async def text_to_video(
        self,
        prompt: str,
        *,
        aspect_ratio: str = "16:9",
        seed: int = -1,
        timeout: float | None = None,
        webhook: str | None = None,
        poll_schedule: PollSchedule | None = None,
        idempotency_key: str | None = None,
    ) -> Prediction:
        """Generate a video and wait for it; ``outputs`` holds the MP4 URL(s).

        ``timeout`` bounds the whole call, the submit included (default: ``wait_timeout``).

        >>> video = await client.text_to_video("a fox", aspect_ratio="9:16")  # doctest: +SKIP
        """
        payload = TextToVideo(prompt, aspect_ratio=aspect_ratio, seed=seed)
        return await self.run(
            payload.model_id, payload, timeout=timeout, webhook=webhook,
            poll_schedule=poll_schedule, idempotency_key=idempotency_key,
        )  # fmt: skip

    async def submit_edit_image(
        self,
        prompt: str,
        *,
        image: str | os.PathLike[str] | bytes,
        size: tuple[int, int] | str = (1328, 1328),
        seed: int = -1,
        enable_base64_output: bool = False,
        enable_sync_mode: bool = False,
        inline: bool = False,
        timeout: float | None = None,
        webhook: str | None = None,
        poll_schedule: PollSchedule | None = None,
        idempotency_key: str | None = None,
    ) -> PredictionFuture:
        """Submit Dreamina V3.0 image edit; see :class:`ImageEdit` for the limits.

        ``image`` is an http(s) URL, a ``data:image/...;base64,`` URI or bare base64 text, a
        local path (``str`` or ``Path``) or ``bytes`` of a PNG, JPEG, WebP or GIF image. A
        local image is uploaded first (:meth:`upload`), or sent inline as a data URI with
        ``inline=True``. Every argument is checked before anything is sent. ``timeout`` bounds
        the submit as in :meth:`submit`.
        """
        payload = await edit_payload(
            self._api.upload, prompt, image=image, size=size, seed=seed, inline=inline,
            enable_base64_output=enable_base64_output, enable_sync_mode=enable_sync_mode,
        )  # fmt: skip
        return await self.submit(
            payload.model_id, payload, webhook=webhook, poll_schedule=poll_schedule,
            timeout=timeout, idempotency_key=idempotency_key,
        )  # fmt: skip

    async def edit_image(
        self,
        prompt: str,
        *,
        image: str | os.PathLike[str] | bytes,
        size: tuple[int, int] | str = (1328, 1328),
        seed: int = -1,
        enable_base64_output: bool = False,
        enable_sync_mode: bool = False,
        inline: bool = False,
        timeout: float | None = None,
        webhook: str | None = None,
        poll_schedule: PollSchedule | None = None,
        idempotency_key: str | None = None,
    ) -> Prediction:
        """Edit an image and wait for it; ``outputs`` holds URLs (or base64 strings).

        ``image`` takes what :meth:`submit_edit_image` takes: a URL, a data URI or base64, a
        local path or bytes (uploaded, or inlined with ``inline=True``). ``timeout`` bounds the
        whole call, the upload and the submit included (default: ``wait_timeout``).
        """
        deadline = Deadline(self.wait_timeout if timeout is None else timeout)
        future = await self.submit_edit_image(
            prompt, image=image, size=size, seed=seed, enable_base64_output=enable_base64_output,
            enable_sync_mode=enable_sync_mode, inline=inline, timeout=deadline.left(),
            webhook=webhook, poll_schedule=poll_schedule, idempotency_key=idempotency_key,
        )  # fmt: skip
        return await future.wait(deadline.left())

    # --- many at once -------------------------------------------------------------------------

    @overload
    async def map(
        self, payloads: Iterable[BatchInput], *, concurrency: int = ...,
        return_exceptions: Literal[False] = ..., journal: str | os.PathLike[str] | None = ...,
        out: str | os.PathLike[str] | None = ..., on_event: ProgressCallback | None = ...,
        timeout: float | None = ..., max_cost: float | None = ...,
    ) -> list[Prediction]: ...  # fmt: skip

    @overload
    async def map(
        self, payloads: Iterable[BatchInput], *, concurrency: int = ...,
        return_exceptions: Literal[True], journal: str | os.PathLike[str] | None = ...,
        out: str | os.PathLike[str] | None = ..., on_event: ProgressCallback | None = ...,
        timeout: float | None = ..., max_cost: float | None = ...,
    ) -> list[Prediction | WaveSpeedError]: ...  # fmt: skip

    async def map(
        self,
        payloads: Iterable[BatchInput],
        *,
        concurrency: int = 10,
        return_exceptions: bool = False,
        journal: str | os.PathLike[str] | None = None,
        out: str | os.PathLike[str] | None = None,
        on_event: ProgressCallback | None = None,
        timeout: float | None = None,
        max_cost: float | None = None,
    ) -> list[Prediction] | list[Prediction | WaveSpeedError]:
        """Run a batch, at most ``concurrency`` tasks in flight; results in input order.

        ``payloads`` are payload models (``TextToVideo(...)``), :class:`BatchItem` objects or
        ``(model, input)`` pairs. A failure raises at once (the rest stop waiting; their
        remote tasks run on) unless ``return_exceptions=True`` puts the error in its place.
        ``journal`` makes the batch resumable: run it again with the same journal and nothing
        is submitted twice. ``out`` saves the outputs there; ``on_event`` gets progress
        events. ``max_cost`` (USD) quotes every distinct item first and refuses to start,
        with :class:`CostLimitExceeded` and no task created, when the total passes it or the
        balance. See :class:`Batch` for the whole story.

        >>> videos = await client.map([TextToVideo(p) for p in prompts], concurrency=20,
        ...                           journal="videos.jsonl")         # doctest: +SKIP
        """
        return await map_items(
            self,
            payloads,
            return_exceptions=return_exceptions,
            concurrency=concurrency,
            journal=journal,
            out=out,
            on_event=on_event,
            timeout=timeout,
            max_cost=max_cost,
        )

    @overload
    def as_completed(
        self, futures_or_payloads: Iterable[PredictionFuture | BatchInput], *,
        concurrency: int = ..., return_exceptions: Literal[False] = ...,
        timeout: float | None = ..., on_event: ProgressCallback | None = ...,
    ) -> AsyncGenerator[Prediction, None]: ...  # fmt: skip

    @overload
    def as_completed(
        self, futures_or_payloads: Iterable[PredictionFuture | BatchInput], *,
        concurrency: int = ..., return_exceptions: Literal[True], timeout: float | None = ...,
        on_event: ProgressCallback | None = ...,
    ) -> AsyncGenerator[Prediction | WaveSpeedError, None]: ...  # fmt: skip

    def as_completed(
        self,
        futures_or_payloads: Iterable[PredictionFuture | BatchInput],
        *,
        concurrency: int = 10,
        return_exceptions: bool = False,
        timeout: float | None = None,
        on_event: ProgressCallback | None = None,
    ) -> AsyncGenerator[Prediction, None] | AsyncGenerator[Prediction | WaveSpeedError, None]:
        """Yield predictions as they finish, from futures or from payloads to submit.

        Payloads are submitted with at most ``concurrency`` in flight. A failure is raised
        from the loop (which then stops waiting for the rest) unless
        ``return_exceptions=True`` yields it instead.

        >>> futures = [await client.submit_text_to_video(p) for p in prompts]  # doctest: +SKIP
        >>> async for video in client.as_completed(futures):                 # doctest: +SKIP
        ...     print(video.id, video.outputs)
        """
        return as_completed(
            self,
            futures_or_payloads,
            return_exceptions=return_exceptions,
            timeout=timeout,
            concurrency=concurrency,
            on_event=on_event,
        )

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
        return await self._api.upload(await _files.read_media(file, filename=filename))

    @overload
    async def download(
        self, prediction: Prediction, directory: os.PathLike[str], *, max_bytes: int = ...,
        timeout: float = ...,
    ) -> list[Path]: ...  # fmt: skip

    @overload
    async def download(
        self, prediction: Prediction, directory: str | os.PathLike[str], *, max_bytes: int = ...,
        timeout: float = ...,
    ) -> list[Path] | list[str]: ...  # fmt: skip

    async def download(
        self,
        prediction: Prediction,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = _files.MAX_DOWNLOAD,
        timeout: float = 30 * 60.0,
    ) -> list[Path] | list[str]:
        """Keep every output of a completed prediction in a folder or an object store.

        A local folder (``"videos/"``, a ``Path``, ``"file:///srv/videos"``) gets each output
        written atomically; the paths are returned. An object store URL (``"s3://bucket/p/"``,
        any S3-compatible service; ``gs://``, ``az://``; the ``storage`` extra) gets each
        streamed in, whole or not at all, checked, copied once across workers sharing a
        coordinator; the objects' URLs are returned. Names are ``{id}-{index}{suffix}``, the
        suffix from the bytes, the type or the URL (``.mp4 .png .jpg .webp .gif .mov .webm``,
        else ``.bin``). Each output is capped at ``max_bytes``, fetched over http(s) without
        the API key within ``timeout`` seconds (base64 ones are decoded). Raises
        :class:`PredictionFailed`, :class:`NotFinished`, :class:`OutputExpired` (past the
        platform's 7 days), :class:`StorageError`, or :class:`InvalidInput` for another scheme.
        """
        with telemetry.span("wavespeed.download", {"wavespeed.prediction.id": prediction.id}):
            return await self._storage.save(
                self._api, prediction, directory, max_bytes=max_bytes, timeout=timeout
            )

    async def check_destination(self, directory: str | os.PathLike[str]) -> None:
        """Check an output destination before paying: a store's credentials and bucket."""
        await self._storage.check(directory)

    # --- the account --------------------------------------------------------------------------

    async def balance(self) -> float:
        """The account's balance in USD: ``GET /api/v3/balance``."""
        return await self._account.balance()

    async def price(self, model: str, payload: Mapping[str, Any] | Any) -> Quote:
        """What one task of ``model`` with ``payload`` would cost (nothing is created).

        ``POST /api/v3/model/price``, or the older ``/model/pricing`` where that one is missing
        (404/405). The model id and the payload (a mapping or a payload model) are checked
        before sending. ``quote.cost`` is what the account would be charged, in USD.
        """
        return await self._account.price(model, payload)

    async def models(self, *, refresh: bool = False) -> list[ModelInfo]:
        """The model catalogue with each model's input schema: ``GET /api/v3/models``.

        Fetched once and kept ``catalogue_ttl`` seconds (an hour) unless ``refresh``; once it is
        loaded, :meth:`submit` checks payloads against it.
        """
        return await self._account.models(refresh=refresh)

    async def model(self, model_id: str) -> ModelInfo:
        """One model of the catalogue; :class:`NotFound` naming ``model_id`` when it is absent."""
        return await self._account.model(model_id)

    async def delete(self, *prediction_ids: str) -> int:
        """Delete tasks for good (``POST /api/v3/predictions/delete``); returns how many existed.

        Results and outputs are gone; unknown ids are ignored. Deleting a running task is the
        only cancellation the platform documents, and whether it still bills a task deleted
        while running is the platform's call (its docs mention partial refunds).
        """
        return await self._account.delete(prediction_ids)

    async def cancel(self, prediction_id: str) -> bool:
        """Cancel a task by deleting it, unless it has already finished; whether it was deleted.

        One check, then the delete of :meth:`delete`: a finished task keeps its outputs (use
        :meth:`delete` to remove it). Billing for a task deleted while running is the
        platform's call. Local futures of the task are not told: see
        :meth:`PredictionFuture.cancel_remote`.
        """
        return await self._account.cancel(prediction_id)

    async def billings(self, *prediction_ids: str) -> list[BillingRecord]:
        """What each prediction was billed: ``POST /api/v3/billings/search``.

        One :class:`BillingRecord` (``prediction_id``, ``price`` in USD, ``created_at``) per
        billed prediction; a prediction not billed yet (or free) has none. Ids are checked
        before sending, and searched 100 at a time.

        >>> [record.price for record in await client.billings(future.id)]  # doctest: +SKIP
        [3.2]
        """
        return await self._account.billings(prediction_ids)

    async def usage(self, start: dt.datetime, end: dt.datetime) -> Usage:
        """The account's usage between two timezone-aware times: ``POST /api/v3/user/usage_stats``.

        A :class:`Usage`: its ``total`` in USD, ``days`` (UTC dates) and ``per_model``.
        """
        return await self._account.usage(start, end)

    # --- webhooks -----------------------------------------------------------------------------

    async def webhook_secret(self) -> str:
        """The account's webhook signing secret (``whsec_...``): ``GET /api/v3/webhook/secret``.

        >>> receiver.set_secret(await client.webhook_secret())        # doctest: +SKIP
        """
        request = webhook_secret_request(self.base_url)
        return await self._api.call(request, parse=parse_webhook_secret)
