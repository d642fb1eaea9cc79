"""The key stays with the API; outputs are fetched and written defensively."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from aiohttp import web

from wavespeed_async import AsyncWaveSpeed, PollSchedule, Prediction, Status, WaveSpeedError
from wavespeed_async.emulator import Emulator

from .support import SECRET_KEY

pytestmark = pytest.mark.anyio


def completed(*outputs: str, prediction_id: str = "abc123") -> Prediction:
    return Prediction(id=prediction_id, status=Status.COMPLETED, outputs=outputs)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def test_a_redirect_from_the_api_is_not_followed_with_the_key() -> None:
    seen: list[str | None] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"code": 200, "data": {"id": "x"}})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{other_url}/steal")

    other_app = web.Application()
    other_app.router.add_route("*", "/{tail:.*}", elsewhere)
    other, other_url = await serve(other_app)
    api_app = web.Application()
    api_app.router.add_route("*", "/{tail:.*}", redirect)
    api, api_url = await serve(api_app)
    try:
        async with AsyncWaveSpeed(api_key=SECRET_KEY, base_url=api_url) as client:
            with pytest.raises(WaveSpeedError, match="HTTP 302"):
                await client.get_prediction("abc")
    finally:
        await api.cleanup()
        await other.cleanup()
    assert seen == []


@pytest.mark.parametrize(
    "output", ["file:///etc/passwd", "ftp://example.com/x.png", "gopher://x/y"]
)
async def test_outputs_are_fetched_only_over_http(tmp_path: Path, output: str) -> None:
    async with Emulator() as emu, AsyncWaveSpeed(api_key="k", base_url=emu.base_url) as client:
        with pytest.raises(WaveSpeedError, match="refusing to fetch"):
            await client.download(completed(output), tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_a_hostile_prediction_id_cannot_name_a_file_outside_the_directory(
    tmp_path: Path,
) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
    async with Emulator() as emu, AsyncWaveSpeed(api_key="k", base_url=emu.base_url) as client:
        with pytest.raises(WaveSpeedError, match="prediction_id"):
            await client.download(completed(png, prediction_id="../../evil"), tmp_path / "out")
    assert not (tmp_path / "evil-0.png").exists()


async def test_downloads_over_the_cap_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    async with Emulator(speed=1000) as emu:
        async with AsyncWaveSpeed(api_key="k", base_url=emu.base_url) as client:
            fast = PollSchedule(first_delay=0.001, min_interval=0.002)
            video = await client.run("m/text-to-video", {"prompt": "x"}, poll_schedule=fast)
            with pytest.raises(WaveSpeedError, match="exceeds 1000 bytes"):
                await client.download(video, tmp_path, max_bytes=1000)
        assert emu.auth_leaks() == []
    assert list(tmp_path.iterdir()) == []
