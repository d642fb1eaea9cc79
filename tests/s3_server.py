"""A real S3 server for the tests: ``moto_server`` on a free loopback port, one per session.

Without ``moto[server]`` (or without ``obstore``, the ``storage`` extra) the storage tests
skip; with ``WAVESPEED_REQUIRE_S3=1``, as in CI, they fail instead. :class:`S3Gate` is a TCP
proxy in front of it that the fault tests use: it can cut every connection and stop
listening (a store that goes down mid-upload), flip a byte of an upload on its way (a
corrupted part), or refuse writes with S3's ``AccessDenied`` (a read-only key).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

SKIP_REASON = "moto[server] and obstore not installed (pip install 'moto[server]' obstore)"
ACCESS_KEY = "AKIATESTSTORAGE0001"
SECRET = "s3-secret-DO-NOT-LEAK-abcdef0123456789"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _moto_server() -> str | None:
    beside = Path(sys.executable).with_name("moto_server")
    if beside.exists() and importlib.util.find_spec("obstore") is not None:
        return str(beside)
    found = shutil.which("moto_server")
    return found if found and importlib.util.find_spec("obstore") is not None else None


class S3Server:
    """A moto_server process owned by the test session."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it answers (at most 30 s)."""
        self._process = subprocess.Popen(
            [self.executable, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    if sock.recv(16).startswith(b"HTTP/1."):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"moto_server did not start on port {self.port}")

    def stop(self) -> None:
        """Stop the server."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None

    def client(self, endpoint: str | None = None) -> Any:
        """A boto3 S3 client of this server, to check what the library stored."""
        import boto3  # type: ignore[import-untyped]

        return boto3.client(
            "s3",
            endpoint_url=endpoint or self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET,
            region_name=REGION,
        )

    def ensure_bucket(self, name: str) -> None:
        """Make the bucket ``name`` unless it exists."""
        client = self.client()
        if name not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=name)

    def bucket(self) -> str:
        """A new, empty bucket."""
        name = f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """The session's moto_server (skips, or fails under WAVESPEED_REQUIRE_S3=1, if absent)."""
    executable = _moto_server()
    if executable is None:
        if os.environ.get("WAVESPEED_REQUIRE_S3") == "1":
            pytest.fail(f"WAVESPEED_REQUIRE_S3=1 but {SKIP_REASON}")
        pytest.skip(SKIP_REASON)
    server = S3Server(executable)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The standard AWS environment pointing at the session's S3 server."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", REGION)
    return s3_server


class S3Gate:
    """A TCP proxy to the S3 server that records the traffic and injects faults on command."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.url = ""
        self.sent = bytearray()  # every byte clients sent through the gate
        self.cut_after: int | None = None  # stop the "server" once this many bytes went up
        self.corrupt_at: int | None = None  # flip the byte at this offset of the upstream
        self.read_only = False
        self.cut = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        """Stop listening and drop every connection: the store is gone."""
        self.cut.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()

    async def wait_closed(self) -> None:
        """Wait for every connection's handler to end (they are cut), at most 5 s."""
        for _ in range(3):  # a connection accepted just before the close gets its handler late
            await asyncio.sleep(0)
            for writer in list(self._writers):
                writer.transport.abort()
        tasks = {task for task in self._tasks if not task.done()}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()
        if self._server is not None:  # and no accepted socket is left for the collector
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if self.cut.is_set():  # accepted just before the gate closed: gone too
                return
            if self.read_only:
                await self._refuse_writes(reader, writer)
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers.add(up_writer)
            if self.cut.is_set():
                up_writer.transport.abort()
                return
            await asyncio.gather(
                self._pipe(reader, up_writer, upstream=True),
                self._pipe(up_reader, writer, upstream=False),
                return_exceptions=True,
            )
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if upstream:
                    tampered = self._tamper(bytearray(data))
                    if tampered is None:
                        return
                    data = bytes(tampered)
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()

    def _tamper(self, data: bytearray) -> bytearray | None:
        start = len(self.sent)
        self.sent += data
        if self.corrupt_at is not None and start <= self.corrupt_at < len(self.sent):
            data[self.corrupt_at - start] ^= 0xFF
        if self.cut_after is not None and len(self.sent) >= self.cut_after:
            asyncio.get_running_loop().create_task(self.stop())
            return None
        return data

    async def _refuse_writes(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # Enough HTTP for S3's answer to a write with a read-only key.
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
            b"<Message>Access Denied</Message></Error>"
        )
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.sent += head
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                self.sent += await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()


@pytest.fixture
async def s3_gate(s3_server: S3Server) -> AsyncIterator[S3Gate]:
    """A fault-injecting gate in front of the session's S3 server."""
    gate = S3Gate(s3_server.port)
    await gate.start()
    try:
        yield gate
    finally:
        await gate.stop()
        await gate.wait_closed()
