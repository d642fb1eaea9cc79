"""What the tests share: constants, helpers and the emulator in a subprocess.

Fixtures live in conftest.py; everything a test imports by name comes from here.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.abc
import attrs
import pytest
from aiohttp import web
from anyio.from_thread import BlockingPortal

from wavespeed_async import (
    AsyncWaveSpeed,
    PollSchedule,
    Prediction,
    PredictionFuture,
    Status,
    TextToVideo,
    sign_webhook,
)
from wavespeed_async._engine.engine import PollEngine
from wavespeed_async._engine.polling import PollStats
from wavespeed_async.cli import main
from wavespeed_async.emulator import Emulator, payload_key

#: The seed text-to-video model and an image model of the emulator's catalogue.
VIDEO = TextToVideo.model_id
FLUX = "wavespeed-ai/flux-dev"


#: The key tests use where a leak would matter; no log record of any test may contain it.
SECRET_KEY = "sk-test-DO-NOT-LEAK-0123456789abcdef"


#: Polling for tests: the emulator's clock is sped up or frozen, so check every few ms.
FAST = PollSchedule(first_delay=0.001, min_interval=0.002, max_interval=0.01, jitter=0.1)


def client_for(emu: Emulator, **kwargs: Any) -> AsyncWaveSpeed:
    """A client of ``emu`` with the test key and ``FAST`` polling unless told otherwise."""
    kwargs.setdefault("poll_schedule", FAST)
    return AsyncWaveSpeed(api_key=SECRET_KEY, base_url=emu.base_url, **kwargs)


CLI = [sys.executable, "-m", "wavespeed_async"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WAVESPEED_")}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env={**clean, **(env or {})}
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


#: The environment of a CLI subprocess: any key (the emulator accepts any).
CLI_ENV = {"WAVESPEED_API_KEY": "k"}


class EmulatorProcess:
    """``wavespeed-async emulator`` in a process of its own: it outlives the CLI runs."""

    def __init__(self, speed: float) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [*CLI, "emulator", "--port", str(port), "--speed", str(speed)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert f"127.0.0.1:{port}" in self.process.stdout.readline()

    def created(self) -> collections.Counter[str]:
        """Tasks created so far, per (model, input), read from the emulator's history."""
        created: collections.Counter[str] = collections.Counter()
        for page in range(1, 100):
            body = json.dumps({"page": page, "page_size": 100}).encode()
            request = urllib.request.Request(
                f"{self.base_url}/api/v3/predictions",
                data=body,
                headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                items = json.load(answer)["data"]["items"]
            created.update(payload_key(item["model"], item["input"]) for item in items)
            if len(items) < 100:
                return created
        raise AssertionError("too many tasks")

    def close(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def write_batch(path: Path, prompts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text_to_video": {"prompt": p}}) + "\n" for p in prompts))
    return path


BODY = (Path(__file__).parent / "samples" / "webhook-completed.json").read_bytes()


#: Reconciliation that never comes within a test: only a delivery can finish the future.
NO_RECONCILIATION = PollSchedule(first_delay=3600, min_interval=3600, max_interval=3600, jitter=0)


SECRET = "whsec_dGVzdC1zZWNyZXQ="  # the key is this text after the prefix, not its base64 bytes


SIGNED_AT = 1_700_000_000


class NoPolling:
    """A future's owner that fails the test if the future ever checks the API."""

    wait_timeout = 5.0
    time_scale = 1.0

    def __init__(self) -> None:
        self.engine = PollEngine(self.get_prediction, workers=1)
        self.poll_stats = PollStats()

    async def get_prediction(self, prediction_id: str) -> Prediction:
        raise AssertionError(f"{prediction_id} was polled")

    async def cancel(self, prediction_id: str) -> bool:
        raise AssertionError("not used")

    async def download(
        self, prediction: Prediction, directory: str | os.PathLike[str], *, max_bytes: int = 0
    ) -> list[Path]:
        raise AssertionError("not used")


def new_future(prediction_id: str = "pred_abc123") -> PredictionFuture:
    created = Prediction(id=prediction_id, status=Status.CREATED, raw_status="created")
    return PredictionFuture(
        NoPolling(),
        prediction_id,
        schedule=NO_RECONCILIATION,
        prediction=created,
        started=time.monotonic(),  # just submitted (the loop's clock): its first check is late
    )


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def signed_headers(
    body: bytes = BODY,
    *,
    secret: str = SECRET,
    webhook_id: str = "msg_1",
    timestamp: int | str = SIGNED_AT,
) -> dict[str, str]:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_webhook(secret, webhook_id, timestamp, body),
    }


async def wait_until_up(
    session: aiohttp.ClientSession, base: str, process: anyio.abc.Process, log: Path
) -> str:
    """Poll an example service's ``/health`` until it answers (its secret fetched); its worker."""
    with anyio.fail_after(30):
        while True:
            if process.returncode is not None:
                pytest.fail(f"the service exited early:\n{log.read_text()}")
            try:
                async with session.get(f"{base}/health") as answer:
                    if answer.status == 200:
                        return str((await answer.json()).get("worker", ""))
            except aiohttp.ClientConnectionError:
                pass
            await anyio.sleep(0.05)


@attrs.define
class Cli:
    """``wavespeed-async`` against one emulator; ``run`` returns (status, stdout, stderr)."""

    emu: Emulator
    portal: BlockingPortal
    capsys: pytest.CaptureFixture[str]

    def run(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        status = main([argv[0], "--base-url", self.emu.base_url, *argv[1:]])
        out, err = self.capsys.readouterr()
        return status, out, err

    def json(self, *argv: str) -> object:
        status, out, err = self.run(*argv, "--json")
        assert status == 0, err
        return json.loads(out)

    def submit(self, model: str, payload: dict[str, object]) -> str:
        """Create a task (with the library, in the emulator's loop); returns its id."""
        return self.portal.call(self._submit, model, payload)

    async def _submit(self, model: str, payload: dict[str, object]) -> str:
        async with client_for(self.emu) as client:
            return (await client.submit(model, payload)).id


def reachable_texts(error: BaseException) -> list[str]:
    """Everything a traceback renderer with locals could print from ``error``'s chain."""
    texts, seen = [], set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts.append(repr(current) + str(current))
        texts.extend(repr(value) for value in vars(current).values())
        for frame, _ in traceback.walk_tb(current.__traceback__):
            texts.extend(f"{name}={value!r}" for name, value in frame.f_locals.items())
        pending += [current.__cause__, current.__context__]
    return texts
