"""Shared test set-up: anyio on asyncio, and a watch for the API key in every log record."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

#: The key tests use where a leak would matter; no log record of any test may contain it.
SECRET_KEY = "sk-test-DO-NOT-LEAK-0123456789abcdef"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!r} {record.exc_info[1]}"
        self.texts.append(text)


@pytest.fixture(autouse=True)
def no_key_in_logs() -> Iterator[None]:
    """Every record any logger emits during a test, at DEBUG, is searched for the key."""
    collector = _Collector()
    root = logging.getLogger()
    library = logging.getLogger("wavespeed_async")
    previous = library.level
    library.setLevel(logging.DEBUG)
    root.addHandler(collector)
    try:
        yield
    finally:
        root.removeHandler(collector)
        library.setLevel(previous)
    leaks = [text for text in collector.texts if SECRET_KEY in text]
    assert not leaks, f"the API key appeared in a log record: {leaks[0][:200]}"
