"""A small TCP proxy on loopback that can blackhole or delay, for partition faults.

It runs its own event loop in a thread, so it keeps forwarding (or withholding) whatever the
test's loop is doing. ``mode`` applies to every byte from then on, on open connections too:

- ``"pass"``: forward both ways;
- ``"blackhole"``: accept and read, never forward nor answer (a partition that drops packets);
- ``"delay"``: forward each chunk after ``delay`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Literal

import pytest

from .redis_server import RedisServer

Mode = Literal["pass", "blackhole", "delay"]


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>`` (see the module doc)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.mode: Mode = "pass"
        self.delay = 0.0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)

    def url(self, database: int = 0) -> str:
        """A Redis URL through the proxy."""
        return f"redis://127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Listen on a free loopback port (``port``)."""
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the TCP proxy did not start")

    def stop(self) -> None:
        """Close every connection and the listener."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            # Let every connection's finally close its sockets (else they leak, and warn).
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(
                self._pipe(reader, upstream_writer),
                self._pipe(upstream_reader, writer),
                return_exceptions=True,
            )
        finally:
            for end in (writer, upstream_writer):
                end.close()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while chunk := await source.read(65536):
            if self.mode == "blackhole":
                continue  # swallowed: the peer waits for an answer that never comes
            if self.mode == "delay":
                await asyncio.sleep(self.delay)
            sink.write(chunk)
            with contextlib.suppress(ConnectionError):
                await sink.drain()
        with contextlib.suppress(OSError):
            sink.write_eof()


@pytest.fixture
def redis_proxy(redis_factory: object) -> Iterator[tuple[RedisServer, TcpProxy]]:
    """A dedicated durable redis-server and a proxy in front of it."""
    server = redis_factory()  # type: ignore[operator]
    proxy = TcpProxy(server.port)
    proxy.start()
    try:
        yield server, proxy
    finally:
        proxy.stop()
