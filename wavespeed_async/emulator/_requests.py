"""The emulator's record of the requests it received: a ring of the newest, each one small.

Every request is recorded (tests count polls, connections and leaked keys with it), so the
record is bounded whatever arrives: it keeps the newest ``size`` requests (10,000 by
default), and cuts a long path or query value down to its head and tail.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
from collections.abc import Iterator, Mapping

import attrs

__all__ = ["DEFAULT_LOG_SIZE", "RequestLog", "RequestRecord"]

#: How many requests an emulator remembers unless told otherwise.
DEFAULT_LOG_SIZE = 10_000
_MAX_TEXT = 1024  # characters of a path or query value kept: its head and its tail
_MAX_QUERY_ITEMS = 32


@attrs.frozen
class RequestRecord:
    """One request the emulator received. The key itself is never kept, only its presence.

    ``at`` is the emulated clock's reading, ``wall`` the real time, ``peer`` the client's
    ``host:port`` (one per connection, so tests can count the connections a client opened).
    A ``path`` or query value over 1,024 characters is kept as its head and tail around "...".
    """

    method: str
    path: str
    query: dict[str, str]
    had_authorization: bool
    at: float
    wall: dt.datetime
    peer: str = ""

    @property
    def is_api(self) -> bool:
        """Whether the request went to the API (where the key belongs) rather than storage."""
        return self.path.startswith("/api/")


class RequestLog:
    """The newest ``size`` requests, oldest first."""

    def __init__(self, size: int = DEFAULT_LOG_SIZE) -> None:
        self._records: collections.deque[RequestRecord] = collections.deque(maxlen=size)

    def add(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        had_authorization: bool,
        at: float,
        wall: dt.datetime,
        peer: str = "",
    ) -> RequestRecord:
        """Record one request (dropping the oldest when full) and return its record."""
        kept_query = {
            _cut(name): _cut(value)
            for name, value in itertools.islice(query.items(), _MAX_QUERY_ITEMS)
        }
        record = RequestRecord(
            method[:16], _cut(path), kept_query, had_authorization, at, wall, peer
        )
        self._records.append(record)
        return record

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def auth_leaks(self) -> list[RequestRecord]:
        """Requests to storage or media URLs that carried an ``Authorization`` header."""
        return [req for req in self._records if req.had_authorization and not req.is_api]


def _cut(text: str) -> str:
    if len(text) <= _MAX_TEXT:
        return text
    half = (_MAX_TEXT - 3) // 2
    return f"{text[:half]}...{text[-half:]}"
