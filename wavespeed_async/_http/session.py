"""The one owner of talking HTTP: session, deadlines, size caps, retries, limits, files.

:class:`ApiSession` owns the ``aiohttp.ClientSession`` of one client. Every API request goes
through :meth:`ApiSession.call`: the submit rate, the retry policy and budget, a total
deadline, a cap on the answer's size (counted inflated) and the protocol's parser. The upload
PUT and the output fetch go through it too, without the key. Nothing else in the client
imports aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar, overload
from urllib.parse import urlsplit

import aiohttp

from .._coordination.local import Coordinator
from .._telemetry import about, route_of, telemetry
from .._wire.limits import Limits
from .._wire.protocol import (
    Request,
    parse_data,
    parse_upload_ticket,
    redact,
    upload_ticket_request,
)
from ..errors import (
    APIError,
    ClientClosed,
    ConfigurationError,
    ConnectError,
    PredictionTimeout,
    ProtocolError,
    ResponseTooLarge,
    TransportError,
    WaveSpeedError,
)
from .answers import TIMEOUTS, Output, Response, Secret, guarded, served_at
from .files import Media
from .retry import RetryBudget, RetryPolicy, call_with_retries

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "ApiSession", "Output"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The cap on one API answer, counted after decompression. A base64 output is ~10 MB, and an
#: answer may carry a few of them; anything near this is a fault (or an attack), not data.
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
_CHUNK = 256 * 1024
_CONNECT_TIMEOUT = 10.0


class ApiSession:
    """Sends every request of one client; see the module's docstring.

    A session belongs to the event loop that first used it: asyncio objects cannot cross
    loops, so a second loop gets a :class:`ConfigurationError` instead of aiohttp's errors.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        request_timeout: float,
        max_connections: int,
        retry: RetryPolicy,
        limits: Limits,
        coordinator: Coordinator,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.base_url = base_url
        self.retry = retry
        self.limits = limits
        self.request_timeout = request_timeout
        self.max_response_bytes = max_response_bytes
        #: Shares the submit rate and the running slots (across processes, on Redis).
        self.coordinator = coordinator
        self._started: asyncio.Future[None] | None = None
        self._releases: set[asyncio.Task[None]] = set()
        self._budget = RetryBudget(retry.budget)
        self._key = Secret(api_key)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._close_event: asyncio.Event | None = None
        # Requests queue here for a pooled connection, so that the total deadline of each
        # (aiohttp's ``total``) starts when it has one: queueing is not the server's delay.
        self._pool: asyncio.Semaphore | None = None

    def __repr__(self) -> str:
        return f"ApiSession(base_url={self.base_url!r})"

    def check_loop(self) -> asyncio.AbstractEventLoop:
        """The loop this session belongs to (the running one, on first use)."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise ConfigurationError(
                "this client belongs to the event loop that first used it; make one client per"
                " loop (or use the blocking WaveSpeed client from threads)"
            )
        return loop

    def session(self) -> aiohttp.ClientSession:
        """The pooled session, made on first use in this session's loop."""
        if self._closed:
            raise ClientClosed("this client is closed")
        self.check_loop()
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                # sock_connect, not connect: waiting for a free pooled connection (thousands
                # of futures share max_connections) is queueing, not a connect failure.
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=_CONNECT_TIMEOUT, sock_read=self.request_timeout
                ),
                headers={"User-Agent": "wavespeed-async", "X-Client-Name": "wavespeed-async"},
            )
            self._close_event = asyncio.Event()
            self._pool = asyncio.Semaphore(self._max_connections)
        return self._session

    async def aclose(self) -> None:
        """Close the session; waiters for slots and retries wake with :class:`ClientClosed`."""
        self._closed = True
        if self._close_event is not None:
            self._close_event.set()
        if self._releases:  # slots freed just before closing still reach the coordinator
            await asyncio.wait(set(self._releases), timeout=5.0)
        if self._started is not None and self._started.done():
            await self.coordinator.aclose()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # --- limits, through the coordinator -------------------------------------------------------

    async def start(self) -> None:
        """Start the coordinator once, in this session's loop (concurrent callers share it)."""
        if self._started is None:
            self._started = self.check_loop().create_future()
            try:
                await self.coordinator.start(self.limits)
            except BaseException as exc:
                self._started.set_exception(exc)
                self._started.exception()  # retrieved: later callers re-raise it
                raise
            self._started.set_result(None)
        await asyncio.shield(self._started)

    async def acquire_slot(self, timeout: float) -> str | None:
        """A running-task slot's lease (``None`` without ``max_concurrent_tasks``).

        Waits at most ``timeout`` seconds (then :class:`PredictionTimeout`, nothing sent), and
        no longer than the client is open (then :class:`ClientClosed`).
        """
        if self.limits.max_concurrent_tasks is None:
            return None
        self.session()
        assert self._close_event is not None
        wait = None if math.isinf(timeout) else timeout
        acquire = asyncio.ensure_future(self.coordinator.acquire_slot(wait))
        closing = asyncio.ensure_future(self._close_event.wait())
        try:
            await asyncio.wait({acquire, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not acquire.done():
                acquire.cancel()
                with contextlib.suppress(BaseException):
                    await acquire
        if acquire.cancelled():
            raise ClientClosed("the client was closed while waiting for a running slot")
        failure = acquire.exception()
        if isinstance(failure, TIMEOUTS):
            raise PredictionTimeout(
                None, timeout, reason="no running slot came free; nothing was sent"
            )
        if failure is not None:
            raise failure
        return acquire.result()

    def release_slot(self, lease_or_prediction_id: str) -> None:
        """Free a slot (by lease or task id) in the background; :meth:`aclose` awaits it."""
        task = self.check_loop().create_task(self.coordinator.release_slot(lease_or_prediction_id))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    # --- the API ------------------------------------------------------------------------------

    @overload
    async def call(
        self, request: Request, *, prediction_id: str | None = ..., deadline: float | None = ...
    ) -> Any: ...

    @overload
    async def call(
        self,
        request: Request,
        *,
        parse: Callable[[Any], T],
        prediction_id: str | None = ...,
        deadline: float | None = ...,
    ) -> T: ...

    async def call(
        self,
        request: Request,
        *,
        parse: Callable[[Any], Any] | None = None,
        prediction_id: str | None = None,
        deadline: float | None = None,
    ) -> Any:
        """Send an API request under the retry policy; return the envelope's ``data``.

        With ``parse``, return ``parse(data)``: a parser's error, whose message is built from
        the server's data, is redacted here (the key, any ``Bearer`` token), and any other
        exception of a parser becomes a :class:`ProtocolError` (see :meth:`_parsed`).
        ``deadline`` (a loop time) bounds the whole call, retries included; each attempt is
        also bounded by ``request_timeout`` (plus the sync wait of a sync-mode submit).
        """
        data = await self._call(request, prediction_id=prediction_id, deadline=deadline)
        if parse is None:
            return data
        value, failure = self._parsed(parse, data, prediction_id)
        del data  # raised from a frame that does not hold the answer (it may echo the key)
        if failure is not None:
            raise failure
        return value

    def _parsed(
        self, parse: Callable[[Any], T], data: Any, prediction_id: str | None
    ) -> tuple[T | None, WaveSpeedError | None]:
        """``parse(data)``, or the error it raised: redacted, with no chain and no traceback.

        A server may echo the request's ``Authorization`` header into any field, and parsers
        quote fields in their messages: this is the one place those messages meet the key.
        Returned, not raised, like :meth:`_parse`'s errors.
        """
        try:
            return parse(data), None
        except WaveSpeedError as exc:
            failure = exc
        except Exception as exc:  # a parser's bug must not let a raw error (or data) escape
            failure = ProtocolError(f"unreadable answer ({type(exc).__name__})")
        text = redact(failure.message, self._key)
        failure.message, failure.args = text, (text,)
        if failure.prediction_id is None:
            failure.prediction_id = prediction_id
        failure.__cause__ = failure.__context__ = None
        failure.__suppress_context__ = True
        return None, failure.with_traceback(None)

    async def _call(
        self, request: Request, *, prediction_id: str | None, deadline: float | None
    ) -> Any:
        self.session()  # refuse at once when closed or from another loop

        async def attempt() -> Any:
            if request.creates_task:  # every try of a submit waits its turn, retries too
                delay = await self.coordinator.submit_delay()
                if delay > 0:
                    await self._sleep(delay)
            # No local holds the answer: a frame kept by the error must not keep its body.
            data, failure = self._parse(
                await self._send(request, deadline, prediction_id), prediction_id
            )
            if failure is not None:
                if request.creates_task and isinstance(failure, APIError) and failure.status == 429:
                    await self.coordinator.rate_limited()
                raise failure
            if request.creates_task:
                await self.coordinator.accepted()
            return data

        path = self._api_path(request.url)
        return await call_with_retries(
            attempt,
            self.retry,
            self._budget,
            creates_task=request.creates_task,
            what=f"{request.method} {path}",
            route=route_of(request.method, path, creates_task=request.creates_task),
            sleep=self._sleep,
        )

    def _parse(
        self, response: Response, prediction_id: str | None
    ) -> tuple[Any, WaveSpeedError | None]:
        """The answer's data, or the error it means (redacted, with no traceback).

        Returned, not raised: the raw body (which may echo the key) stays in this frame and
        the parser's, and the caller raises the error from a frame that holds neither.
        """
        try:
            return parse_data(
                response.status,
                response.headers,
                response.body,
                prediction_id=prediction_id,
                secret=self._key,  # server text that echoes the key is redacted
            ), None
        except WaveSpeedError as error:
            return None, error.with_traceback(None)

    async def _send(
        self, request: Request, deadline: float | None, prediction_id: str | None = None
    ) -> Response:
        """One attempt; errors below HTTP become :class:`TransportError` with no context.

        :class:`ConnectError` means no connection was made, so nothing was sent. The raised
        error is built inside ``except`` but raised outside it, so that neither its context
        nor a traceback's locals reach aiohttp's request (which holds the key's header).
        """
        if not request.url.startswith(f"{self.base_url}/"):
            raise TransportError(f"refusing to send the API key outside {self.base_url}")
        session = self.session()
        assert self._pool is not None
        failure: WaveSpeedError | None = None
        async with self._pool:
            total = self._bounded(self.request_timeout + (request.read_timeout or 0.0), deadline)
            started = time.monotonic()
            try:
                response = await self._exchange(session, request, total)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # The connection was never made, so nothing was sent: safe to send again.
                failure = ConnectError(
                    f"cannot connect to {self.base_url}: {type(exc).__name__}",
                    timed_out=isinstance(exc, TIMEOUTS),
                )
            except (aiohttp.ClientError, *TIMEOUTS) as exc:
                failure = TransportError(
                    f"{request.method} {_path(request.url)} failed: {type(exc).__name__}",
                    timed_out=isinstance(exc, TIMEOUTS),
                )
            except RuntimeError as exc:  # aiohttp's "Session is closed", after aclose()
                failure = self._closed_error(exc)
        if telemetry.enabled:
            route = route_of(
                request.method, self._api_path(request.url), creates_task=request.creates_task
            )
            status, error = (None, type(failure).__name__) if failure else (response.status, None)
            telemetry.request(request.method, route, status, error)
        if failure is not None:
            if self._closed:
                failure = ClientClosed(f"the client was closed during {_path(request.url)}")
            raise failure
        if log.isEnabledFor(logging.DEBUG):  # this runs for every request: build nothing idle
            log.debug(
                "%s %s -> %d in %.0f ms (request id %s)",
                request.method,
                _path(request.url),
                response.status,
                (time.monotonic() - started) * 1000,
                response.headers.get("X-Request-Id", "-"),
                extra=about(prediction_id) if prediction_id else None,
            )
        return response

    async def _exchange(
        self, session: aiohttp.ClientSession, request: Request, total: float
    ) -> Response:
        async with session.request(
            request.method,
            request.url,
            json=request.json,
            headers=self._key.headers(),
            allow_redirects=False,  # a redirect must not carry the key to another host
            timeout=aiohttp.ClientTimeout(
                total=total,
                sock_connect=_CONNECT_TIMEOUT,
                sock_read=request.read_timeout or self.request_timeout,
            ),
        ) as answer:
            body = await self._read_capped(answer, request.url)
            return Response(answer.status, answer.headers, body)

    def _closed_error(self, exc: RuntimeError) -> WaveSpeedError:
        if self._closed or self._session is None or self._session.closed:
            return ClientClosed("the client is closed")
        return TransportError(f"request failed: {type(exc).__name__}")

    def _api_path(self, url: str) -> str:
        """The path of a URL this session built (a slice: no parsing on the hot path)."""
        return url[len(self.base_url) :].partition("?")[0]

    async def _read_capped(self, answer: aiohttp.ClientResponse, url: str) -> bytes:
        """The whole body, refused past :attr:`max_response_bytes` (counted inflated)."""
        cap, length = self.max_response_bytes, answer.content_length
        if length is not None and "Content-Encoding" not in answer.headers:
            if length <= cap:  # the common case: a small, plain body of a known length
                return await answer.read()
            raise ResponseTooLarge(f"answer to {self._api_path(url)} announces {length} bytes")
        path = self._api_path(url)
        parts, size = [], 0
        async for chunk in answer.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > cap:
                raise ResponseTooLarge(f"answer to {path} exceeds {cap} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def _bounded(self, seconds: float, deadline: float | None) -> float:
        if deadline is None:
            return seconds
        left = deadline - self.check_loop().time()
        if left <= 0:  # before this attempt started: nothing of it was sent
            raise PredictionTimeout(None, 0.0, reason="the call's deadline passed before sending")
        return min(seconds, left)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, unless the client closes first (then :class:`ClientClosed`)."""
        event = self._close_event
        if event is None or event.is_set():
            raise ClientClosed("the client is closed")
        with contextlib.suppress(*TIMEOUTS):
            await asyncio.wait_for(event.wait(), seconds)
        if self._closed:
            raise ClientClosed("the client was closed while waiting to retry")

    # --- storage and CDN: no key --------------------------------------------------------------

    async def upload(self, media: Media) -> str:
        """Upload ``media`` (a ticket from the API, then the PUT); the URL to use as input."""
        size = len(media.data)
        request = upload_ticket_request(self.base_url, media.filename, size, media.content_type)
        with telemetry.span("wavespeed.upload", {"wavespeed.file.size": size}):  # no URL on it
            ticket = await self.call(request, parse=parse_upload_ticket)
            await self.put(ticket.url, media.data, ticket.headers)
        return ticket.download_url

    async def put(self, url: str, data: bytes, headers: Mapping[str, str]) -> None:
        """PUT an upload to pre-signed storage (no key); retried as a read is."""

        async def attempt() -> None:
            failure: WaveSpeedError | None = None
            try:
                async with self.session().put(
                    url,
                    data=data,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=max(self.request_timeout, 300.0)),
                ) as answer:
                    status = answer.status
            except (aiohttp.ClientError, *TIMEOUTS) as exc:
                failure = TransportError(f"upload PUT failed: {type(exc).__name__}")
            if failure is not None:
                raise failure
            if not 200 <= status < 300:
                raise APIError(f"upload PUT failed: HTTP {status}", status=status)

        await call_with_retries(
            attempt,
            self.retry,
            self._budget,
            creates_task=False,
            what="upload PUT",
            sleep=self._sleep,
        )

    @contextlib.asynccontextmanager
    async def output(self, url: str, shown: str, *, timeout: float) -> AsyncIterator[Output]:
        """Open an output URL (a CDN: no key, redirects followed); any status is yielded."""
        failure: WaveSpeedError | None = None
        try:
            async with self.session().get(
                url, timeout=aiohttp.ClientTimeout(total=timeout, sock_read=self.request_timeout)
            ) as response:
                yield Output(
                    response.status,
                    response.content_type,
                    response.content_length,
                    guarded(response.content.iter_chunked(_CHUNK), shown),
                    served_at(response.headers.get("Date")),
                )
        except (aiohttp.ClientError, *TIMEOUTS) as exc:
            failure = TransportError(f"download of {shown} failed: {type(exc).__name__}")
        if failure is not None:
            raise failure


def _path(url: str) -> str:
    # Log and report paths, not full URLs: pre-signed URLs carry credentials in their query.
    return urlsplit(url).path
