"""The example services, started for real and driven over HTTP against the emulator."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import anyio
import anyio.abc
import pytest

from wavespeed_async.emulator import Emulator

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parent.parent
KEY = "sk-example"


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def wait_until_up(
    session: aiohttp.ClientSession, base: str, process: anyio.abc.Process, log: Path
) -> None:
    """Poll ``/health`` until the service answers (it fetched its secret by then)."""
    with anyio.fail_after(30):
        while True:
            if process.returncode is not None:
                pytest.fail(f"the service exited early:\n{log.read_text()}")
            try:
                async with session.get(f"{base}/health") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await anyio.sleep(0.05)


@pytest.mark.parametrize("script", ["aiohttp_service.py", "fastapi_service.py"])
async def test_example_service_reports_a_generation_through_its_webhook(
    script: str, tmp_path: Path
) -> None:
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "service.log"
    async with Emulator(api_key=KEY, speed=0) as emu:
        env = {
            **os.environ,
            "WAVESPEED_API_KEY": KEY,
            "WAVESPEED_BASE_URL": emu.base_url,
            "PORT": str(port),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        command = [sys.executable, str(ROOT / "examples" / script)]
        with log.open("wb") as output:
            process = await anyio.open_process(
                command, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        async with process, aiohttp.ClientSession() as session:
            try:
                await wait_until_up(session, base, process, log)
                async with session.post(f"{base}/generations", json={"prompt": "a fox"}) as answer:
                    assert answer.status == 202
                    started = await answer.json()
                assert started["status"] == "created"
                assert emu.tasks[started["id"]].webhook == f"{base}/webhooks/wavespeed"

                emu.advance(30)  # the video is done: the emulator POSTs it to the service
                with anyio.fail_after(10):
                    await emu.wait_for(lambda: any(d.ok for d in emu.webhooks.deliveries))
                async with session.get(f"{base}/generations/{started['id']}") as answer:
                    finished = await answer.json()
                assert finished["status"] == "completed"
                assert finished["outputs"][0].endswith(".mp4")
                assert not [r for r in emu.requests if r.path.endswith("/result")]  # no polls

                async with session.post(f"{base}/generations", json={"prompt": ""}) as answer:
                    assert answer.status in (400, 422)
                async with session.get(f"{base}/generations/unknown") as answer:
                    assert answer.status == 404
            finally:
                process.terminate()
                with anyio.fail_after(15):
                    await process.wait()
        assert "completed" in log.read_text(), log.read_text()
