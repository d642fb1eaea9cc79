"""Real redis-server processes for the tests, on free loopback ports.

The session's server (:func:`redis_server`) keeps its data on disk (append-only file), as a
production Redis must for the idempotency ledger. For the fault cases, :func:`redis_factory`
starts dedicated servers a test may restart (without persistence its data is then gone),
freeze (SIGSTOP) and thaw (SIGCONT), fill past ``maxmemory``, or start as a 3-master cluster.

Without ``redis-server`` the Redis tests skip (with ``WAVESPEED_REQUIRE_REDIS=1``, as in CI,
they fail instead).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

SKIP_REASON = "redis-server not installed (apt-get install -y redis-server)"
#: What a production Redis should run with: the ledger survives a restart.
DURABLE = ("--appendonly", "yes", "--save", "")
#: A cache-like Redis: a restart forgets everything.
VOLATILE = ("--appendonly", "no", "--save", "")


def free_port(below: int = 65536) -> int:
    """A loopback port nobody listens on (now), under ``below``."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port < below:
            return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server process owned by a test (or by the session)."""

    def __init__(self, executable: str, directory: Path, args: Sequence[str] = DURABLE) -> None:
        self.executable = executable
        self.directory = directory
        self.args = list(args)
        # A cluster node also listens on its port + 10000 (the cluster bus).
        self.port = free_port(below=55000 if "--cluster-enabled" in self.args else 65536)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The running server's process id."""
        assert self._process is not None, "the server is not running"
        return self._process.pid

    def start(self) -> None:
        """Start the server and wait until it accepts connections (at most 10 s)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.directory), *self.args]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _answers_ping(self.port):
                return
            if self._process.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}: {command}")

    def stop(self) -> None:
        """Stop the server (with persistence off, its data is gone)."""
        if self._process is not None:
            self.thaw()  # a stopped process does not handle SIGTERM
            self._process.terminate()
            self._process.wait(10)
            self._process = None

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: answer again (what was sent meanwhile is answered now)."""
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGCONT)


class RedisClusterServers:
    """Three redis-server masters joined into one cluster (no replicas)."""

    def __init__(self, servers: list[RedisServer]) -> None:
        self.servers = servers
        self.url = servers[0].url.rsplit("/", 1)[0]  # a cluster has no database number

    def create(self) -> None:
        """Join the masters and wait until every slot is served."""
        nodes = [f"127.0.0.1:{server.port}" for server in self.servers]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = subprocess.run(
                ["redis-cli", "-p", str(self.servers[0].port), "cluster", "info"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout
            if "cluster_state:ok" in info:
                return
            time.sleep(0.05)
        raise RuntimeError("the Redis cluster did not come up")


def _executable() -> str:
    executable = shutil.which("redis-server")
    if executable is None:
        if os.environ.get("WAVESPEED_REQUIRE_REDIS") == "1":
            pytest.fail(f"WAVESPEED_REQUIRE_REDIS=1 but {SKIP_REASON}")
        pytest.skip(SKIP_REASON)
    return executable


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's durable redis-server (skips, or fails under WAVESPEED_REQUIRE_REDIS=1)."""
    server = RedisServer(_executable(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class RedisFactory:
    """Starts dedicated servers for one test and stops them all after it."""

    def __init__(self, executable: str, directory: Path) -> None:
        self._executable = executable
        self._directory = directory
        self._servers: list[RedisServer] = []

    def __call__(self, *args: str) -> RedisServer:
        """A started server: durable, then ``args`` (a later setting wins)."""
        directory = self._directory / str(len(self._servers))
        server = RedisServer(self._executable, directory, [*DURABLE, *args])
        self._servers.append(server)
        server.start()
        return server

    def cluster(self) -> RedisClusterServers:
        """A started 3-master cluster."""
        if shutil.which("redis-cli") is None:
            pytest.skip("redis-cli not installed (apt-get install -y redis-tools)")
        args = ("--cluster-enabled", "yes", "--cluster-node-timeout", "2000")
        masters = [self(*args) for _ in range(3)]  # each in its own directory (nodes.conf)
        cluster = RedisClusterServers(masters)
        cluster.create()
        return cluster

    def stop_all(self) -> None:
        """Stop every server this factory started."""
        for server in self._servers:
            server.stop()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[RedisFactory]:
    """Dedicated redis-servers for one test, stopped when it ends."""
    factory = RedisFactory(_executable(), tmp_path / "redis")
    try:
        yield factory
    finally:
        factory.stop_all()
