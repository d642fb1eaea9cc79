"""The emulator as a whole platform: account, catalogue, prices, limits, outputs, media access.

Driven over loopback with raw aiohttp, on a frozen clock moved by ``advance``.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from wavespeed_async import Limits
from wavespeed_async.emulator import Emulator, Fault

from .support import FLUX, VIDEO

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer test-key"}
EDIT = "bytedance/dreamina-v3.0/edit"
I2V = "bytedance/dreamina-v3.0-pro/image-to-video"
IMAGE = "https://example.com/in.png"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(speed=0) as emulator:
        yield emulator


async def call(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    async with session.request(method, url, json=body, headers=AUTH) as response:
        return response.status, await response.json(), dict(response.headers)


async def submit(
    session: aiohttp.ClientSession, emu: Emulator, model: str, body: dict[str, Any]
) -> tuple[int, Any]:
    status, envelope, _ = await call(session, "POST", f"{emu.base_url}/api/v3/{model}", body)
    return status, envelope


async def result(session: aiohttp.ClientSession, emu: Emulator, task_id: str) -> dict[str, Any]:
    url = f"{emu.base_url}/api/v3/predictions/{task_id}/result"
    status, envelope, _ = await call(session, "GET", url)
    assert status == 200, envelope
    data: dict[str, Any] = envelope["data"]
    return data


async def created(
    session: aiohttp.ClientSession, emu: Emulator, model: str, body: dict[str, Any]
) -> dict[str, Any]:
    status, envelope = await submit(session, emu, model, body)
    assert status == 200, envelope
    data: dict[str, Any] = envelope["data"]
    return data


# --- account ----------------------------------------------------------------------------------


async def test_balance_is_served_on_both_routes(session: aiohttp.ClientSession) -> None:
    async with Emulator(speed=0, balance=12.5) as emu:
        _, envelope, _ = await call(session, "GET", f"{emu.base_url}/api/v3/balance")
        assert envelope == {"code": 200, "message": "success", "data": {"balance": 12.5}}
        _, envelope, _ = await call(session, "GET", f"{emu.base_url}/api/v3/account/balance")
        assert envelope["data"] == {"balance": 12.5, "currency": "USD"}


async def test_each_task_is_debited_its_quoted_price(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    url = f"{emu.base_url}/api/v3/model/price"
    quote_body = {"model_id": FLUX, "inputs": {"prompt": "x", "num_images": 3}}
    _, envelope, _ = await call(session, "POST", url, quote_body)
    assert envelope["data"] == {
        "model_id": FLUX,
        "price": 0.009,
        "discounted_price": 0.009,
        "discount_rate": 0.0,
        "currency": "USD",
    }
    before = emu.balance
    await created(session, emu, FLUX, {"prompt": "x", "num_images": 3})
    assert emu.balance == pytest.approx(before - 0.009)


async def test_a_submit_the_balance_cannot_pay_is_refused_and_creates_nothing(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(speed=0, balance=0.6) as emu:
        await created(session, emu, VIDEO, {"prompt": "a fox"})  # 0.50
        status, envelope = await submit(session, emu, VIDEO, {"prompt": "a fox"})
        assert (status, envelope["code"]) == (402, 402)
        assert "Insufficient balance" in envelope["message"]
        assert emu.submit_count == 1
        assert emu.balance == pytest.approx(0.1)


async def test_old_pricing_route_answers_unit_price_and_unknown_models_404(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    url = f"{emu.base_url}/api/v3/model/pricing"
    _, envelope, _ = await call(session, "POST", url, {"model_id": VIDEO, "inputs": {}})
    assert envelope["data"] == {"model_id": VIDEO, "unit_price": 0.5, "currency": "USD"}
    for route in ("pricing", "price"):
        status, envelope, _ = await call(
            session, "POST", f"{emu.base_url}/api/v3/model/{route}", {"model_id": "no/such"}
        )
        assert (status, envelope["code"]) == (404, 404)
    bad = {"model_id": FLUX, "inputs": {"num_images": 9}}
    assert (await call(session, "POST", url, bad))[0] == 400


# --- catalogue --------------------------------------------------------------------------------


async def test_catalogue_lists_the_seed_schemas(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    _, envelope, _ = await call(session, "GET", f"{emu.base_url}/api/v3/models")
    models = {model["model_id"]: model for model in envelope["data"]}
    assert {VIDEO, EDIT, FLUX, I2V} <= set(models)
    (api,) = models[VIDEO]["api_schema"]["api_schemas"]
    assert (api["type"], api["method"], api["api_path"]) == (
        "model_run",
        "POST",
        f"/api/v3/{VIDEO}",
    )
    assert api["server"] == emu.base_url
    schema = api["request_schema"]
    assert schema["required"] == ["prompt"]
    assert schema["x-order-properties"] == ["prompt", "aspect_ratio", "seed"]
    assert schema["properties"]["aspect_ratio"]["enum"] == [
        "16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21"
    ]  # fmt: skip
    seed = schema["properties"]["seed"]
    assert (seed["default"], seed["minimum"], seed["maximum"]) == (-1, -1, 2_147_483_647)
    edit = models[EDIT]["api_schema"]["api_schemas"][0]["request_schema"]
    assert edit["required"] == ["prompt", "image"]
    assert edit["properties"]["prompt"]["maxLength"] == 120
    assert edit["properties"]["size"]["default"] == "1328*1328"
    assert models[FLUX]["base_price"] == 0.003
    assert models[FLUX]["type"] == "text-to-image"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x", "num_images": 5}, "num_images"),
        ({"prompt": "x", "num_images": "2"}, "num_images"),
        ({"prompt": "x", "size": "4096*4096"}, "size"),
        ({"prompt": "x", "guidance_scale": True}, "guidance_scale"),
        ({"num_images": 1}, "prompt"),
    ],
)
async def test_catalogue_schemas_are_enforced_beyond_the_seeds(
    emu: Emulator, session: aiohttp.ClientSession, body: dict[str, Any], field: str
) -> None:
    status, envelope = await submit(session, emu, FLUX, body)
    assert status == 400
    assert envelope["message"].startswith(f"{field}=")
    assert emu.submit_count == 0


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("balance", 404),
        ("models", 404),
        ("account/balance", 404),
        ("model/other", 404),
        ("model/pricing", 400),  # the quote itself, refusing a body without model_id
        ("model/price", 400),
    ],
)
async def test_reserved_paths_never_create_a_task(
    emu: Emulator, session: aiohttp.ClientSession, path: str, expected: int
) -> None:
    status, envelope = await submit(session, emu, path, {"prompt": "x"})
    assert (status, envelope["code"]) == (expected, expected)
    assert emu.submit_count == 0
    assert emu.balance == 100.0


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/api/v3/nothing/here"), ("PUT", "/api/v3/balance"), ("GET", "/x")]
)
async def test_unknown_routes_answer_404(
    emu: Emulator, session: aiohttp.ClientSession, method: str, path: str
) -> None:
    async with session.request(method, f"{emu.base_url}{path}", headers=AUTH) as response:
        assert response.status == 404
        if path.startswith("/api/"):
            assert (await response.json())["code"] == 404


# --- results and outputs ----------------------------------------------------------------------


async def test_result_echoes_the_input(emu: Emulator, session: aiohttp.ClientSession) -> None:
    body = {"prompt": "a fox", "aspect_ratio": "9:16"}
    task = await created(session, emu, VIDEO, body)
    assert (await result(session, emu, task["id"]))["input"] == body


@pytest.mark.parametrize(
    ("ratio", "size"), [("16:9", (1920, 1080)), ("9:21", (1080, 2520)), ("1:1", (1080, 1080))]
)
async def test_video_has_the_requested_aspect_ratio(
    emu: Emulator, session: aiohttp.ClientSession, ratio: str, size: tuple[int, int]
) -> None:
    task = await created(session, emu, VIDEO, {"prompt": "a fox", "aspect_ratio": ratio})
    emu.advance(30)
    (url,) = (await result(session, emu, task["id"]))["outputs"]
    async with session.get(url) as response:
        assert response.content_type == "video/mp4"
        video = await response.read()
    assert video[4:8] == b"ftyp"
    assert _mp4_dimensions(video) == size


def _mp4_dimensions(data: bytes) -> tuple[int, int]:
    """Width and height from the video track's ``tkhd`` box (16.16 fixed point)."""
    offset = data.index(b"tkhd") + 4
    version = data[offset]
    end = offset + (96 if version == 1 else 84)
    width, height = (
        int.from_bytes(data[end - 8 : end - 4], "big"),
        int.from_bytes(data[end - 4 : end], "big"),
    )
    return width >> 16, height >> 16


async def test_catalogue_not_the_model_id_says_a_model_outputs_video(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    listed = await created(session, emu, I2V, {"prompt": "go", "image": IMAGE})
    unlisted = await created(session, emu, "someone/my-video-model", {"prompt": "go"})
    emu.advance(30)
    assert (await result(session, emu, listed["id"]))["outputs"][0].endswith(".mp4")
    assert (await result(session, emu, unlisted["id"]))["outputs"][0].endswith(".png")
    assert emu.balance == pytest.approx(100.0 - 0.5)  # an unlisted model costs nothing


async def test_num_images_gives_that_many_distinct_outputs(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    task = await created(session, emu, FLUX, {"prompt": "cat", "num_images": 3, "size": "256*256"})
    emu.advance(3)
    done = await result(session, emu, task["id"])
    assert len(done["outputs"]) == 3
    assert done["has_nsfw_contents"] == [False] * 3
    bodies = set()
    for url in done["outputs"]:
        async with session.get(url) as response:
            assert (response.status, response.content_type) == (200, "image/png")
            bodies.add(await response.read())
    assert len(bodies) == 3


# --- input media ------------------------------------------------------------------------------


def _edit(image: str) -> dict[str, Any]:
    return {"prompt": "add a hat", "image": image, "size": "512*512"}


@pytest.mark.parametrize(
    "image",
    [
        "https://cdn.example/in.png",
        "https://images.invalid/in.png",
        "http://photos.test/in.png",
        "http://me.localhost/in.png",
        "data:image/png;base64,@@not-base64@@",
    ],
)
async def test_an_input_image_that_cannot_be_fetched_fails_the_task_with_1402(
    emu: Emulator, session: aiohttp.ClientSession, image: str
) -> None:
    task = await created(session, emu, EDIT, _edit(image))
    emu.advance(3)
    done = await result(session, emu, task["id"])
    assert (done["status"], done["code"]) == ("failed", 1402)
    assert done["error"]


async def test_the_emulators_own_urls_must_exist(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    first = await created(session, emu, FLUX, {"prompt": "cat", "size": "256*256"})
    emu.advance(3)
    (output,) = (await result(session, emu, first["id"]))["outputs"]
    fine = await created(session, emu, EDIT, _edit(output))
    missing = await created(session, emu, EDIT, _edit(output.replace("/0.png", "/7.png")))
    upload = f"{emu.base_url}/storage/files/nothing/in.png"
    never_uploaded = await created(session, emu, EDIT, _edit(upload))
    inline = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()
    data_uri = await created(session, emu, EDIT, _edit(f"data:image/png;base64,{inline}"))
    elsewhere = await created(session, emu, EDIT, _edit(IMAGE))  # accepted unfetched
    emu.advance(3)
    statuses = [
        (await result(session, emu, task["id"]))["status"]
        for task in (fine, missing, never_uploaded, data_uri, elsewhere)
    ]
    assert statuses == ["completed", "failed", "failed", "completed", "completed"]


# --- limits -----------------------------------------------------------------------------------


async def test_submits_over_the_rate_get_429_with_retry_after_on_the_emulated_minute(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(speed=0, limits=Limits(submits_per_minute=2)) as emu:
        for _ in range(2):
            await created(session, emu, FLUX, {"prompt": "x"})
        emu.advance(20)
        status, envelope, headers = await call(
            session, "POST", f"{emu.base_url}/api/v3/{FLUX}", {"prompt": "x"}
        )
        assert (status, envelope["code"]) == (429, 429)
        assert headers["Retry-After"] == "40"  # frozen clock: emulated seconds
        assert (emu.rate_limited, emu.submit_count) == (1, 2)
        emu.advance(40)
        await created(session, emu, FLUX, {"prompt": "x"})
        assert emu.submit_count == 3
        emu.faults.add(Fault.RATE_LIMITED, route="result")  # a scripted 429 counts too
        assert (await call(session, "GET", f"{emu.base_url}/api/v3/predictions/x/result"))[0] == 429
        assert emu.rate_limited == 2


async def test_retry_after_is_in_real_seconds_on_a_running_clock(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(speed=0, limits=Limits(submits_per_minute=1)) as emu:
        await created(session, emu, FLUX, {"prompt": "x"})
        emu.speed = 0.1  # the minute ends in 60 emulated seconds: 600 real ones
        url = f"{emu.base_url}/api/v3/{FLUX}"
        status, _, headers = await call(session, "POST", url, {"prompt": "x"})
        assert status == 429
        assert 590 <= int(headers["Retry-After"]) <= 600  # less the real time the request took
        emu.limits = Limits(submits_per_minute=2)
        assert (await submit(session, emu, FLUX, {"prompt": "x"}))[0] == 200


async def test_tasks_over_the_concurrency_limit_wait_created_for_a_slot(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(speed=0, limits=Limits(max_concurrent_tasks=2)) as emu:
        tasks = [await created(session, emu, FLUX, {"prompt": str(n)}) for n in range(3)]
        emu.advance(1)
        states = [(await result(session, emu, task["id"]))["status"] for task in tasks]
        assert states == ["processing", "processing", "created"]
        emu.advance(2.5)  # the first two finish at 3 s; the third runs 3 s .. 6 s
        states = [(await result(session, emu, task["id"]))["status"] for task in tasks]
        assert states == ["completed", "completed", "processing"]
        emu.advance(2.5)
        assert (await result(session, emu, tasks[2]["id"]))["status"] == "completed"
        assert emu.peak_running == 2


async def test_deleting_a_running_task_frees_its_slot(session: aiohttp.ClientSession) -> None:
    async with Emulator(speed=0, limits=Limits(max_concurrent_tasks=1)) as emu:
        running = await created(session, emu, VIDEO, {"prompt": "a"})
        waiting = await created(session, emu, VIDEO, {"prompt": "b"})
        emu.advance(10)
        url = f"{emu.base_url}/api/v3/predictions/{running['id']}"
        _, envelope, _ = await call(session, "DELETE", url)
        assert envelope["data"] == {"id": running["id"], "status": "deleted"}
        assert (await call(session, "GET", f"{url}/result"))[0] == 404
        assert (await call(session, "DELETE", url))[0] == 404
        emu.advance(1)
        assert (await result(session, emu, waiting["id"]))["status"] == "processing"
        emu.advance(29)  # started at 10 s when the slot freed: done at 40 s
        assert (await result(session, emu, waiting["id"]))["status"] == "completed"
        assert emu.peak_running == 1


async def test_peak_running_counts_overlapping_tasks_without_limits(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    for n in range(3):
        await created(session, emu, FLUX, {"prompt": str(n)})
    emu.advance(3)
    await created(session, emu, FLUX, {"prompt": "later"})
    emu.advance(3)
    assert emu.peak_running == 3


# --- the command line -------------------------------------------------------------------------


def test_emulator_command_takes_balance_and_level(tmp_path: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "wavespeed_async", "emulator", "--port", str(port)]
    command += ["--speed", "0", "--balance", "0.007", "--level", "bronze"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            assert "listening" in server.stdout.readline()
            base = f"http://127.0.0.1:{port}/api/v3"
            answers = [_post(f"{base}/{FLUX}", {"prompt": "x"}) for _ in range(3)]
            assert [status for status, _ in answers] == [200, 200, 429]  # bronze: 2 a minute
            assert _post(f"{base}/balance", None)[1]["data"] == {"balance": 0.001}
        finally:
            server.terminate()


def _post(url: str, body: dict[str, Any] | None) -> tuple[int, Any]:
    """POST ``body`` as JSON (GET when it is ``None``), retrying until the server listens."""
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    headers = {**AUTH, "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers)
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
