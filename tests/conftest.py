"""Shared test set-up: anyio on asyncio, and a watch for the API key in every log record
and in the text of every library exception raised during the suite."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from anyio.from_thread import start_blocking_portal

from wavespeed_async.emulator import Emulator
from wavespeed_async.errors import WaveSpeedError

from .redis_server import redis_factory, redis_server  # noqa: F401  (real Redis servers)
from .s3_server import s3_env, s3_gate, s3_server  # noqa: F401  (a real S3 server, its gate)
from .support import SECRET_KEY, Cli, EmulatorProcess
from .tcp_proxy import redis_proxy  # noqa: F401  (a real Redis behind a faulty proxy)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _cli_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI remembers model durations in a cache directory: never the user's, in tests."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("WAVESPEED_CACHE_DIR", raising=False)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """A fast emulator: a 30 s video takes 30 ms."""
    async with Emulator(speed=1000) as emu:
        yield emu


@pytest.fixture
async def frozen() -> AsyncIterator[Emulator]:
    """An emulator whose clock only moves when the test advances it."""
    async with Emulator(speed=0) as emu:
        yield emu


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
def no_key_in_logs_or_errors(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every record any logger emits during a test, at DEBUG, and every library exception
    created, are searched for the key."""
    errors: list[WaveSpeedError] = []
    original_init = WaveSpeedError.__init__

    def recording_init(self: WaveSpeedError, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]
        errors.append(self)

    monkeypatch.setattr(WaveSpeedError, "__init__", recording_init)
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
    texts = [f"{error} {error!r} {getattr(error, 'body', '')}" for error in errors]
    leaked = [text for text in texts if SECRET_KEY in text]
    assert not leaked, f"the API key appeared in an exception: {leaked[0][:200]}"


@pytest.fixture
def slow_emulator() -> Iterator[EmulatorProcess]:
    """An emulator in a subprocess where a video takes 0.5 s: long enough to stop a batch
    part-way, to share it between two workers, or to kill one."""
    emulator = EmulatorProcess(speed=60)
    yield emulator
    emulator.close()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    monkeypatch.setenv("WAVESPEED_API_KEY", "k")
    with start_blocking_portal() as portal:
        emu = Emulator(speed=1000)
        with portal.wrap_async_context_manager(emu):
            yield Cli(emu, portal, capsys)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session, for tests that speak raw HTTP to an emulator."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session
