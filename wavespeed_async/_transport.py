"""The thin I/O shell: send a :class:`Request` with aiohttp, translate aiohttp's errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import attrs

from ._protocol import Request, auth_headers
from .errors import ConnectError, TransportError

__all__ = ["Response", "Transport"]

log = logging.getLogger("wavespeed_async")


@attrs.define(frozen=True)
class Response:
    """Status, headers and body of one HTTP answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class _Secret:
    """Holds the API key; its repr never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"


class Transport:
    """Sends requests on one ``aiohttp.ClientSession``.

    The API key is attached only to URLs under ``base_url``: uploads to pre-signed storage and
    output downloads go through :meth:`send_plain`, which never carries it.
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str) -> None:
        self.session = session
        self.base_url = base_url
        self._key = _Secret(api_key)

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r})"

    async def send(self, request: Request) -> Response:
        """Send an API request; errors below HTTP become :class:`TransportError`.

        :class:`ConnectError` means no connection was made, so nothing was sent.
        """
        if not request.url.startswith(f"{self.base_url}/"):
            raise TransportError(f"refusing to send the API key outside {self.base_url}")
        headers = auth_headers(self._key.reveal())
        # Only a sync-mode submit needs a longer read than the session's request timeout.
        options: dict[str, Any] = {}
        if request.read_timeout is not None:
            options["timeout"] = aiohttp.ClientTimeout(
                sock_connect=10.0, sock_read=request.read_timeout
            )
        started = time.monotonic()
        try:
            async with self.session.request(
                request.method,
                request.url,
                json=request.json,
                headers=headers,
                allow_redirects=False,  # a redirect must not carry the key to another host
                **options,
            ) as answer:
                body = await answer.read()
                response = Response(answer.status, answer.headers, body)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # The connection was never made, so nothing was sent: safe to send again.
            raise ConnectError(
                f"cannot connect to {self.base_url}: {type(exc).__name__}",
                timed_out=isinstance(exc, TimeoutError),
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(
                f"{request.method} {_path(request.url)} failed: {type(exc).__name__}",
                timed_out=isinstance(exc, TimeoutError),
            ) from None
        if log.isEnabledFor(logging.DEBUG):  # this runs for every request: build nothing idle
            log.debug(
                "%s %s -> %d in %.0f ms (request id %s)",
                request.method,
                _path(request.url),
                response.status,
                (time.monotonic() - started) * 1000,
                response.headers.get("X-Request-Id", "-"),
            )
        return response

    async def send_plain(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """A request to storage or a CDN: no API key, no JSON."""
        try:
            async with self.session.request(method, url, data=data, headers=headers) as answer:
                return Response(answer.status, answer.headers, await answer.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"{method} {_path(url)} failed: {type(exc).__name__}") from None


def _path(url: str) -> str:
    # Log and report paths, not full URLs: pre-signed URLs carry credentials in their query.
    return urlsplit(url).path
