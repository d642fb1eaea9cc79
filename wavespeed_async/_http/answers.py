"""What the HTTP layer hands back: an API answer, an output being fetched, the hidden key."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
from collections.abc import AsyncIterator, Mapping

import aiohttp
import attrs

from .._wire.protocol import auth_headers
from ..errors import TransportError, WaveSpeedError

__all__ = ["TIMEOUTS", "Output", "Response", "Secret", "guarded", "served_at"]

#: A timeout, whichever kind: on Python 3.10 asyncio's (and aiohttp's) is not the builtin one.
TIMEOUTS = (TimeoutError, asyncio.TimeoutError)


@attrs.frozen
class Response:
    """Status, headers and body of one HTTP answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@attrs.frozen
class Output:
    """An output file being fetched: its status, declared type and size, and its bytes.

    ``served_at`` is the answer's ``Date``, when it has a readable one (the age of an expired
    output is told by the server's clock).
    """

    status: int
    content_type: str
    content_length: int | None
    chunks: AsyncIterator[bytes]
    served_at: dt.datetime | None = None


class Secret(str):
    """The API key: a ``str`` whose repr never shows it.

    The protocol's redaction takes it as a string, and a traceback that renders the locals of
    its frames (``parse_data(secret=...)`` among them) shows ``'***'``.
    """

    __slots__ = ()

    def headers(self) -> dict[str, str]:
        return auth_headers(self)

    def __repr__(self) -> str:
        return "'***'"


async def guarded(chunks: AsyncIterator[bytes], shown: str) -> AsyncIterator[bytes]:
    failure: WaveSpeedError | None = None
    try:
        async for chunk in chunks:
            yield chunk
    except (aiohttp.ClientError, *TIMEOUTS) as exc:
        failure = TransportError(f"download of {shown} failed: {type(exc).__name__}")
    if failure is not None:
        raise failure


def served_at(header: str | None) -> dt.datetime | None:
    try:
        date = email.utils.parsedate_to_datetime(header) if header else None
    except (TypeError, ValueError):
        return None
    return date.replace(tzinfo=dt.timezone.utc) if date and date.tzinfo is None else date
