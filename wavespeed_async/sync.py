"""WaveSpeed: the blocking facade over :class:`AsyncWaveSpeed`, for scripts and notebooks.

Each facade owns one event loop, run by anyio's blocking portal in its own thread, and one
:class:`AsyncWaveSpeed` living in that loop. Every method hands the async method of the same
name to the portal and blocks until it returns: nothing here re-implements the client. It
works from any thread, including one that runs an event loop of its own (a Jupyter cell).
"""

from __future__ import annotations

import functools
import inspect
import os
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, overload

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._coordination.local import Coordinator
from ._engine.polling import PollSchedule, PollStats
from ._http.files import MAX_DOWNLOAD
from ._http.retry import RetryPolicy
from ._http.session import DEFAULT_MAX_RESPONSE_BYTES
from ._storage import StorageOptions
from ._wire.account import CATALOGUE_TTL
from ._wire.limits import Limits
from ._wire.models import Prediction, Status
from .batch.items import BatchInput, ProgressCallback
from .client import DEFAULT_WAIT_TIMEOUT, AsyncWaveSpeed
from .errors import ClientClosed, WaveSpeedError
from .future import PredictionFuture
from .webhooks import WebhookReceiver

__all__ = ["SyncPredictionFuture", "WaveSpeed"]

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _blocking(
    method: Callable[Concatenate[AsyncWaveSpeed, P], Awaitable[T]],
) -> Callable[Concatenate[WaveSpeed, P], T]:
    """The blocking twin of a coroutine method of :class:`AsyncWaveSpeed`."""
    check = _argument_check(method)

    def twin(self: WaveSpeed, /, *args: P.args, **kwargs: P.kwargs) -> T:
        check(args, kwargs)

        async def call() -> T:
            return await method(self._client, *args, **kwargs)

        return self._run(call)

    return _named_after(twin, method)


def _blocking_submit(
    method: Callable[Concatenate[AsyncWaveSpeed, P], Awaitable[PredictionFuture]],
) -> Callable[Concatenate[WaveSpeed, P], SyncPredictionFuture]:
    """The blocking twin of a ``submit*`` method: it returns a :class:`SyncPredictionFuture`."""
    check = _argument_check(method)

    def twin(self: WaveSpeed, /, *args: P.args, **kwargs: P.kwargs) -> SyncPredictionFuture:
        check(args, kwargs)

        async def call() -> PredictionFuture:
            return await method(self._client, *args, **kwargs)

        return SyncPredictionFuture(self, self._run(call))

    return _named_after(twin, method, returns="SyncPredictionFuture")


def _argument_check(method: Callable[..., Any]) -> Callable[[Any, Any], None]:
    """A check of a twin's arguments, run in the caller's thread before the loop sees them.

    A wrong argument then raises at once and names ``WaveSpeed``, not ``AsyncWaveSpeed``.
    """
    signature = inspect.signature(method)

    def check(args: Any, kwargs: Any) -> None:
        try:
            signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"WaveSpeed.{method.__name__}() {exc}") from None

    return check


def _named_after(twin: F, method: Callable[..., Any], returns: str | None = None) -> F:
    """Give a twin its method's name, parameters (for ``help()``) and documentation."""
    name = method.__name__
    twin.__name__ = name
    twin.__qualname__ = f"WaveSpeed.{name}"
    twin.__doc__ = (
        f"Blocking :meth:`AsyncWaveSpeed.{name}`: the same arguments, no ``await``.\n\n"
        f"{inspect.getdoc(method)}"
    )
    signature = inspect.signature(method)
    if returns is not None:
        signature = signature.replace(return_annotation=returns)
    twin.__signature__ = signature  # type: ignore[attr-defined]
    return twin


class WaveSpeed:
    """The blocking client: :class:`AsyncWaveSpeed`'s methods, called without ``await``.

    It takes the same arguments as :class:`AsyncWaveSpeed` and runs one in an event loop of
    its own, in a thread of its own; ``with`` (or :meth:`close`) stops both. The ``submit*``
    methods and :meth:`prediction` return a :class:`SyncPredictionFuture`, and
    :meth:`as_completed` is a plain iterator. Callbacks (``on_event``) run in the loop's
    thread: keep them short.

    >>> with WaveSpeed() as client:                                 # doctest: +SKIP
    ...     image = client.edit_image("make it snow", image="photo.jpg")
    ...     client.download(image, "images/")
    [PosixPath('images/9c1d...-0.png')]
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
        # Built here, so that a bad argument raises before any thread starts.
        client = AsyncWaveSpeed(
            api_key,
            base_url,
            wait_timeout=wait_timeout,
            poll_schedule=poll_schedule,
            request_timeout=request_timeout,
            max_connections=max_connections,
            allow_insecure_http=allow_insecure_http,
            retry=retry,
            limits=limits,
            webhooks=webhooks,
            max_response_bytes=max_response_bytes,
            max_checks_per_second=max_checks_per_second,
            poll_stats=poll_stats,
            time_scale=time_scale,
            coordinator=coordinator,
            validate_inputs=validate_inputs,
            catalogue_ttl=catalogue_ttl,
            catalogue_clock=catalogue_clock,
            storage=storage,
        )
        portal_cm = start_blocking_portal()
        portal = portal_cm.__enter__()
        self._client = client
        self._portal = portal
        # Closes a facade that was forgotten (garbage-collected, or at exit) as close() would.
        self._finalizer = weakref.finalize(self, _shut_down, portal_cm, portal, client)

    def __repr__(self) -> str:
        state = "open" if self._finalizer.alive else "closed"
        return f"WaveSpeed(base_url={self._client.base_url!r}, api_key='***', {state})"

    def __enter__(self) -> WaveSpeed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop every poller, close the session, then the loop and its thread. Idempotent."""
        self._finalizer()

    @property
    def base_url(self) -> str:
        """The API's base URL."""
        return self._client.base_url

    def _run(self, function: Callable[[], Awaitable[T]]) -> T:
        """Run ``function`` in the client's loop and wait; an interrupt cancels it there."""
        if not self._finalizer.alive:
            raise ClientClosed("this WaveSpeed client is closed")
        pending = self._portal.start_task_soon(function)
        try:
            return pending.result()
        except BaseException:
            pending.cancel()  # KeyboardInterrupt in a notebook: stop the wait in the loop too
            raise

    def _iterate(self, source: AsyncGenerator[T, None]) -> Iterator[T]:
        """Iterate an async generator of the loop, one step per call into the loop."""

        async def step() -> tuple[bool, T | None]:
            try:
                return True, await source.__anext__()
            except StopAsyncIteration:
                return False, None

        try:
            while True:
                more, value = self._run(step)
                if not more:
                    return
                yield value  # type: ignore[misc]  # a value, since more is True
        finally:
            if self._finalizer.alive:  # left early (break): stop its waits in the loop
                self._run(source.aclose)

    # --- the client's methods, blocking -------------------------------------------------------

    run = _blocking(AsyncWaveSpeed.run)
    submit = _blocking_submit(AsyncWaveSpeed.submit)
    get_prediction = _blocking(AsyncWaveSpeed.get_prediction)
    recent_predictions = _blocking(AsyncWaveSpeed.recent_predictions)
    text_to_video = _blocking(AsyncWaveSpeed.text_to_video)
    submit_text_to_video = _blocking_submit(AsyncWaveSpeed.submit_text_to_video)
    edit_image = _blocking(AsyncWaveSpeed.edit_image)
    submit_edit_image = _blocking_submit(AsyncWaveSpeed.submit_edit_image)
    upload = _blocking(AsyncWaveSpeed.upload)
    download = _blocking(AsyncWaveSpeed.download)
    check_destination = _blocking(AsyncWaveSpeed.check_destination)
    webhook_secret = _blocking(AsyncWaveSpeed.webhook_secret)
    balance = _blocking(AsyncWaveSpeed.balance)
    price = _blocking(AsyncWaveSpeed.price)
    models = _blocking(AsyncWaveSpeed.models)
    model = _blocking(AsyncWaveSpeed.model)
    delete = _blocking(AsyncWaveSpeed.delete)
    cancel = _blocking(AsyncWaveSpeed.cancel)
    billings = _blocking(AsyncWaveSpeed.billings)
    usage = _blocking(AsyncWaveSpeed.usage)
    map = _blocking(AsyncWaveSpeed.map)

    def resolve_key(
        self, idempotency_key: str, *, prediction_id: str | None = None, absent: bool = False
    ) -> SyncPredictionFuture | None:
        """Blocking :meth:`AsyncWaveSpeed.resolve_key`: settle an uncertain idempotency key.

        Adopt the key's task with ``prediction_id=...`` (a :class:`SyncPredictionFuture` on
        it is returned), or declare with ``absent=True`` that nothing was created (``None``).
        """

        async def call() -> PredictionFuture | None:
            return await self._client.resolve_key(
                idempotency_key, prediction_id=prediction_id, absent=absent
            )

        future = self._run(call)
        return None if future is None else SyncPredictionFuture(self, future)

    def prediction(
        self, prediction_id: str, *, model: str = "", poll_schedule: PollSchedule | None = None
    ) -> SyncPredictionFuture:
        """A future for a task created earlier (resume by id): :meth:`AsyncWaveSpeed.prediction`."""

        async def call() -> PredictionFuture:  # in the loop: the future belongs to it
            return self._client.prediction(prediction_id, model=model, poll_schedule=poll_schedule)

        return SyncPredictionFuture(self, self._run(call))

    @overload
    def as_completed(
        self,
        futures_or_payloads: Iterable[SyncPredictionFuture | BatchInput],
        *,
        concurrency: int = ...,
        return_exceptions: Literal[False] = ...,
        timeout: float | None = ...,
        on_event: ProgressCallback | None = ...,
    ) -> Iterator[Prediction]: ...

    @overload
    def as_completed(
        self,
        futures_or_payloads: Iterable[SyncPredictionFuture | BatchInput],
        *,
        concurrency: int = ...,
        return_exceptions: Literal[True],
        timeout: float | None = ...,
        on_event: ProgressCallback | None = ...,
    ) -> Iterator[Prediction | WaveSpeedError]: ...

    def as_completed(
        self,
        futures_or_payloads: Iterable[SyncPredictionFuture | BatchInput],
        *,
        concurrency: int = 10,
        return_exceptions: bool = False,
        timeout: float | None = None,
        on_event: ProgressCallback | None = None,
    ) -> Iterator[Prediction] | Iterator[Prediction | WaveSpeedError]:
        """Blocking :meth:`AsyncWaveSpeed.as_completed`: a plain iterator of predictions.

        >>> futures = [client.submit_text_to_video(p) for p in prompts]  # doctest: +SKIP
        >>> for video in client.as_completed(futures):                  # doctest: +SKIP
        ...     print(video.id, video.outputs)
        """
        given = [
            item._future if isinstance(item, SyncPredictionFuture) else item
            for item in futures_or_payloads
        ]
        # The overloads type only literal flags; the method itself takes any bool.
        source = self._client.as_completed(  # type: ignore[call-overload]
            given,
            concurrency=concurrency,
            return_exceptions=return_exceptions,
            timeout=timeout,
            on_event=on_event,
        )
        return self._iterate(source)


def _shut_down(
    portal_cm: AbstractContextManager[BlockingPortal],
    portal: BlockingPortal,
    client: AsyncWaveSpeed,
) -> None:
    try:
        portal.call(client.aclose)
    finally:
        portal_cm.__exit__(None, None, None)


class SyncPredictionFuture:
    """A submitted task, for blocking code: :meth:`result` waits for the finished prediction.

    The blocking twin of :class:`PredictionFuture`; the polling runs in the client's loop.

    >>> fut = client.submit_text_to_video("a fox")                  # doctest: +SKIP
    >>> save_somewhere(fut.id)                                      # doctest: +SKIP
    >>> video = fut.result()                                        # doctest: +SKIP
    """

    def __init__(self, client: WaveSpeed, future: PredictionFuture) -> None:
        self._client = client  # keeps the facade, and so its loop, alive while this is used
        self._future = future

    def __repr__(self) -> str:
        status = self.status.value if self.status else "unseen"
        return f"<SyncPredictionFuture {self.id} model={self.model!r} status={status}>"

    @property
    def id(self) -> str:
        """The task id on the platform: keep it to resume with ``client.prediction(id)``."""
        return self._future.id

    @property
    def model(self) -> str:
        """The model id the task runs, when known."""
        return self._future.model

    @property
    def prediction(self) -> Prediction | None:
        """The last state seen, or ``None`` before the first check of a resumed id."""
        return self._future.prediction

    @property
    def status(self) -> Status | None:
        """The last status seen."""
        return self._future.status

    def done(self) -> bool:
        """Whether the task has reached a terminal status (as last seen)."""
        return self._future.done()

    def cancelled(self) -> bool:
        """Whether :meth:`cancel` stopped the local polling."""
        return self._future.cancelled()

    def result(self, timeout: float | None = None) -> Prediction:
        """Wait until the task is terminal; see :meth:`PredictionFuture.wait`.

        ``None`` means the client's ``wait_timeout``. Raises :class:`PredictionFailed` or
        :class:`PredictionTimeout` as awaiting the async future does, and
        ``concurrent.futures.CancelledError`` after :meth:`cancel`. An interrupt (Ctrl-C)
        stops the wait; the task keeps running and ``result()`` may be called again.
        """
        return self._client._run(functools.partial(self._future.wait, timeout))

    def refresh(self) -> Prediction:
        """Fetch the task's current state once (one GET)."""
        return self._client._run(self._future.refresh)

    def cancel(self) -> None:
        """Stop polling locally; the remote task keeps running (and is billed)."""

        async def cancel() -> None:  # in the loop, which owns the poller it cancels
            self._future.cancel()

        self._client._run(cancel)

    def cancel_remote(self) -> bool:
        """Delete the task, then stop polling; see :meth:`PredictionFuture.cancel_remote`."""
        return self._client._run(self._future.cancel_remote)

    @overload
    def download(self, directory: os.PathLike[str], *, max_bytes: int = ...) -> list[Path]: ...

    @overload
    def download(
        self, directory: str | os.PathLike[str], *, max_bytes: int = ...
    ) -> list[Path] | list[str]: ...

    def download(
        self, directory: str | os.PathLike[str], *, max_bytes: int = MAX_DOWNLOAD
    ) -> list[Path] | list[str]:
        """Save the finished task's outputs; see :meth:`PredictionFuture.download`."""
        return self._client._run(
            functools.partial(self._future.download, directory, max_bytes=max_bytes)
        )
