"""The emulator itself, driven over loopback with raw aiohttp (and the official SDK)."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from typing import Any

import aiohttp
import anyio
import pytest

from wavespeed_async._wire.models import ImageEdit, TextToVideo
from wavespeed_async.emulator import Clock, Emulator, payload_key
from wavespeed_async.emulator._media import png
from wavespeed_async.emulator.pytest_plugin import wavespeed_emulator  # noqa: F401

from .support import FLUX

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer test-key"}
EDIT_IMAGE = "https://example.com/in.png"


@pytest.fixture
def emu(wavespeed_emulator: Emulator) -> Emulator:  # noqa: F811 (the plugin's, imported above)
    return wavespeed_emulator


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request; every answer must carry a request id."""
    async with session.request(
        method, url, json=body, headers=AUTH if headers is None else headers
    ) as response:
        assert response.headers["X-Request-Id"]
        return response.status, await response.json()


async def submit(
    session: aiohttp.ClientSession, emu: Emulator, model: str, body: dict[str, Any]
) -> dict[str, Any]:
    status, envelope = await call(session, "POST", f"{emu.base_url}/api/v3/{model}", body)
    assert (status, envelope["code"]) == (200, 200), envelope
    data: dict[str, Any] = envelope["data"]
    return data


async def result(
    session: aiohttp.ClientSession, emu: Emulator, task_id: str, suffix: str = "/result"
) -> dict[str, Any]:
    url = f"{emu.base_url}/api/v3/predictions/{task_id}{suffix}"
    status, envelope = await call(session, "GET", url)
    assert status == 200, envelope
    data: dict[str, Any] = envelope["data"]
    return data


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, str, bytes]:
    """GET with no key at all, as a client must fetch outputs and uploads."""
    async with session.get(url) as response:
        return response.status, response.content_type, await response.read()


async def eventually(emu: Emulator, condition: Callable[[], bool]) -> None:
    """Let a request in flight reach the server (I/O only: emulated time does not move)."""
    with anyio.fail_after(5):
        await emu.wait_for(condition)


def png_size(data: bytes) -> tuple[int, int]:
    """Decode a PNG far enough to prove it is valid: chunk CRCs, IHDR and the pixel data."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, dict[bytes, bytes]()
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc
        chunks[kind] = chunks.get(kind, b"") + body
        offset += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour_type) == (8, 2)
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    assert b"IEND" in chunks
    return width, height


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "k"}])
async def test_api_refuses_requests_without_a_bearer_key(
    emu: Emulator, session: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    url = f"{emu.base_url}/api/v3/{FLUX}"
    status, envelope = await call(session, "POST", url, {"prompt": "x"}, headers=headers)
    assert (status, envelope["code"]) == (401, 401)
    assert emu.submit_count == 0


async def test_wrong_key_is_refused_when_the_emulator_has_one(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(api_key="right-key", speed=0) as emu:
        url = f"{emu.base_url}/api/v3/{FLUX}"
        wrong = {"Authorization": "Bearer wrong-key"}
        status, envelope = await call(session, "POST", url, {"prompt": "x"}, headers=wrong)
        assert status == 401
        assert "wrong-key" not in envelope["message"]
        right = {"Authorization": "Bearer right-key"}
        status, _ = await call(session, "POST", url, {"prompt": "x"}, headers=right)
        assert status == 200
        assert [r.had_authorization for r in emu.requests] == [True, True]


# --- validation -----------------------------------------------------------------------------

_VIDEO, _EDIT = TextToVideo.model_id, ImageEdit.model_id


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (_VIDEO, {"prompt": ""}, "prompt"),
        (_VIDEO, {}, "prompt"),
        (_VIDEO, {"prompt": "fox", "aspect_ratio": "2:1"}, "aspect_ratio"),
        (_VIDEO, {"prompt": "fox", "seed": -2}, "seed"),
        (_VIDEO, {"prompt": "fox", "seed": 2_147_483_648}, "seed"),
        (_EDIT, {"prompt": "x" * 121, "image": EDIT_IMAGE}, "prompt"),
        (_EDIT, {"prompt": "hat", "image": EDIT_IMAGE, "size": "511*1024"}, "size"),
        (_EDIT, {"prompt": "hat", "image": EDIT_IMAGE, "size": "1024*2049"}, "size"),
        (_EDIT, {"prompt": "hat"}, "image"),
    ],
)
async def test_seed_model_limits_answer_400_with_the_envelope(
    emu: Emulator,
    session: aiohttp.ClientSession,
    model: str,
    body: dict[str, Any],
    field: str,
) -> None:
    url = f"{emu.base_url}/api/v3/{model}"
    status, envelope = await call(session, "POST", url, body)
    assert (status, envelope["code"]) == (400, 400)
    assert envelope["message"].startswith(f"{field}=")
    assert emu.submit_count == 0


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]"])
async def test_submit_body_must_be_a_json_object(
    emu: Emulator, session: aiohttp.ClientSession, body: bytes
) -> None:
    url = f"{emu.base_url}/api/v3/{FLUX}"
    async with session.post(url, data=body, headers=AUTH) as response:
        assert response.status == 400
        assert (await response.json())["code"] == 400


async def test_other_models_accept_any_json_object(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    data = await submit(session, emu, "someone/any-model/v2", {"anything": [1]})
    assert data["model"] == "someone/any-model/v2"
    assert len(data["id"]) == 32
    int(data["id"], 16)


async def test_unknown_task_is_404(emu: Emulator, session: aiohttp.ClientSession) -> None:
    url = f"{emu.base_url}/api/v3/predictions/{'0' * 32}/result"
    status, envelope = await call(session, "GET", url)
    assert (status, envelope["code"]) == (404, 404)


@pytest.mark.parametrize("path", ["predictions/abc", "media/elsewhere", "bad model!"])
async def test_model_route_never_claims_reserved_paths(
    emu: Emulator, session: aiohttp.ClientSession, path: str
) -> None:
    status, envelope = await call(session, "POST", f"{emu.base_url}/api/v3/{path}", {})
    assert (status, envelope["code"]) == (404, 404)
    assert emu.submit_count == 0


def test_clock_scales_real_time_by_speed_and_adds_advances() -> None:
    real = [100.0]
    clock = Clock(speed=10, monotonic=lambda: real[0])
    real[0] += 0.5
    assert clock.now() == 5.0
    clock.advance(2)
    assert clock.now() == 7.0
    assert clock.real_delay(20) == 2.0
    clock.speed = 0
    real[0] += 100
    assert (clock.now(), clock.real_delay(1)) == (7.0, None)
    with pytest.raises(ValueError, match="seconds=-1 is invalid: must be a finite number >= 0"):
        clock.advance(-1)


# --- lifecycle ------------------------------------------------------------------------------


async def test_task_goes_created_processing_completed_with_the_clock(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    created = await submit(session, emu, FLUX, {"prompt": "a cat", "seed": 3})
    assert created["status"] == "created"
    assert (created["outputs"], created["has_nsfw_contents"], created["error"]) == ([], [], "")
    assert created["timings"] == {"inference": 0}
    assert created["urls"]["get"] == f"{emu.base_url}/api/v3/predictions/{created['id']}/result"
    assert created["created_at"].endswith("Z")

    emu.advance(0.5)
    assert (await result(session, emu, created["id"]))["status"] == "processing"
    emu.advance(2.5)
    done = await result(session, emu, created["id"], suffix="")
    assert done["status"] == "completed"
    assert done["has_nsfw_contents"] == [False]
    assert done["timings"] == {"inference": 3000}
    status, content_type, body = await fetch(session, done["outputs"][0])
    assert (status, content_type, png_size(body)) == (200, "image/png", (1024, 1024))
    assert emu.auth_leaks() == []


async def test_video_output_is_the_fixture_mp4(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    task = await submit(session, emu, _VIDEO, {"prompt": "a red fox"})
    emu.advance(29.9)
    assert (await result(session, emu, task["id"]))["status"] == "processing"
    emu.advance(0.1)
    done = await result(session, emu, task["id"])
    assert done["outputs"][0].endswith(".mp4")
    status, content_type, body = await fetch(session, done["outputs"][0])
    assert (status, content_type) == (200, "video/mp4")
    assert body[4:8] == b"ftyp"


async def test_edit_output_is_a_png_of_the_requested_size(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    body = {"prompt": "add a hat", "image": EDIT_IMAGE, "size": "640*512"}
    task = await submit(session, emu, _EDIT, body)
    emu.advance(3)
    done = await result(session, emu, task["id"])
    _, _, image = await fetch(session, done["outputs"][0])
    assert png_size(image) == (640, 512)


async def test_base64_outputs_decode_to_a_png_of_the_requested_size(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    body = {"prompt": "hat", "image": EDIT_IMAGE, "size": "512*768", "enable_base64_output": True}
    task = await submit(session, emu, _EDIT, body)
    emu.advance(3)
    (output,) = (await result(session, emu, task["id"]))["outputs"]
    assert not output.startswith("data:")
    assert png_size(base64.b64decode(output, validate=True)) == (512, 768)


async def test_fail_next_fails_only_the_next_tasks_when_they_are_due(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    emu.fail_next(1, error="GPU on fire")
    doomed = await submit(session, emu, FLUX, {"prompt": "one"})
    fine = await submit(session, emu, FLUX, {"prompt": "two"})
    emu.advance(1)
    assert (await result(session, emu, doomed["id"]))["status"] == "processing"
    emu.advance(2)
    failed = await result(session, emu, doomed["id"])
    assert (failed["status"], failed["error"], failed["outputs"]) == ("failed", "GPU on fire", [])
    assert (await result(session, emu, fine["id"]))["status"] == "completed"


async def test_fail_marker_in_the_prompt_fails_the_task(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    task = await submit(session, emu, _VIDEO, {"prompt": "a fox [fail]"})
    emu.advance(30)
    failed = await result(session, emu, task["id"])
    assert failed["status"] == "failed"
    assert "[fail]" in failed["error"]


async def test_set_status_forces_any_status_string(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    task = await submit(session, emu, FLUX, {"prompt": "x"})
    emu.set_status(task["id"], "queued_for_gpu")
    emu.advance(100)
    assert (await result(session, emu, task["id"]))["status"] == "queued_for_gpu"
    emu.set_status(task["id"], "cancelled", error="by an operator")
    cancelled = await result(session, emu, task["id"])
    assert (cancelled["status"], cancelled["error"]) == ("cancelled", "by an operator")
    assert emu.tasks[task["id"]].raw_status == "cancelled"


async def test_webhook_is_recorded_and_refused_with_base64_output(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    hook = "https://example.com/hook"
    url = f"{emu.base_url}/api/v3/{FLUX}"
    params = {"webhook": hook}
    async with session.post(url, params=params, json={"prompt": "p"}, headers=AUTH) as reply:
        task_id = (await reply.json())["data"]["id"]
    assert emu.tasks[task_id].webhook == hook
    body = {"prompt": "p", "enable_base64_output": True}
    async with session.post(url, params={"webhook": hook}, json=body, headers=AUTH) as reply:
        assert reply.status == 400


# --- sync mode ------------------------------------------------------------------------------


async def test_sync_mode_answers_with_the_finished_prediction_on_a_frozen_clock(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    replies: list[dict[str, Any]] = []
    body = {"prompt": "hat", "image": EDIT_IMAGE, "enable_sync_mode": True}

    async def sync_submit() -> None:
        replies.append(await submit(session, emu, _EDIT, body))

    async with anyio.create_task_group() as group:
        group.start_soon(sync_submit)
        await eventually(emu, lambda: emu.submit_count == 1)
        emu.advance(2)
        # A full round trip lets the woken waiter run: it must find the task not yet due.
        assert (await result(session, emu, next(iter(emu.tasks))))["status"] == "processing"
        assert replies == []
        emu.advance(1)
    assert replies[0]["status"] == "completed"
    assert len(replies[0]["outputs"]) == 1


async def test_sync_mode_waits_in_real_time_when_the_clock_runs(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(speed=1000) as emu:
        data = await submit(session, emu, _VIDEO, {"prompt": "fox", "enable_sync_mode": True})
    assert data["status"] == "completed"


async def test_advance_wakes_a_sync_submit_on_a_running_clock(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(speed=1) as emu:  # the task would take 3 real seconds on its own
        replies: list[dict[str, Any]] = []

        async def sync_submit() -> None:
            body = {"prompt": "p", "enable_sync_mode": True}
            replies.append(await submit(session, emu, FLUX, body))

        with anyio.fail_after(2):
            async with anyio.create_task_group() as group:
                group.start_soon(sync_submit)
                await eventually(emu, lambda: emu.submit_count == 1)
                emu.advance(3)
    assert replies[0]["status"] == "completed"


async def test_sync_mode_times_out_with_5004_and_the_task_still_completes(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(speed=0, sync_timeout=10) as emu:
        replies: list[dict[str, Any]] = []

        async def sync_submit() -> None:
            body = {"prompt": "fox", "enable_sync_mode": True}
            replies.append(await submit(session, emu, _VIDEO, body))

        async with anyio.create_task_group() as group:
            group.start_soon(sync_submit)
            await eventually(emu, lambda: emu.submit_count == 1)
            emu.advance(10)
        (timed_out,) = replies
        assert (timed_out["status"], timed_out["code"]) == ("processing", 5004)
        assert "Sync mode timed out" in timed_out["error"]
        emu.advance(20)
        assert (await result(session, emu, timed_out["id"]))["status"] == "completed"
        assert emu.submit_count == 1


async def test_closing_the_emulator_ends_a_waiting_sync_submit(
    session: aiohttp.ClientSession,
) -> None:
    emu = Emulator(speed=0)
    statuses: list[int] = []

    async def sync_submit() -> None:
        url = f"{emu.base_url}/api/v3/{FLUX}"
        body = {"prompt": "p", "enable_sync_mode": True}
        async with session.post(url, json=body, headers=AUTH) as reply:
            statuses.append(reply.status)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            await emu.start()
            group.start_soon(sync_submit)
            await eventually(emu, lambda: emu.submit_count == 1)
            await emu.close()
    assert statuses == [503]


# --- uploads --------------------------------------------------------------------------------


async def ticket(
    session: aiohttp.ClientSession, emu: Emulator, size: int
) -> tuple[int, dict[str, Any]]:
    body = {"filename": "in.png", "size": size, "content_type": "image/png"}
    status, envelope = await call(session, "POST", f"{emu.base_url}/api/v3/media/uploads", body)
    return status, envelope


async def test_upload_ticket_put_and_download_round_trip(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    picture = png(8, 8, (1, 2, 3))
    status, envelope = await ticket(session, emu, len(picture))
    assert status == 200
    upload, download_url = envelope["data"]["upload"], envelope["data"]["download_url"]
    assert upload["method"] == "PUT"
    assert upload["headers"] == {"Content-Type": "image/png"}
    assert (await fetch(session, download_url))[0] == 404  # nothing PUT yet

    async with session.put(upload["url"], data=picture, headers=upload["headers"]) as put:
        assert put.status == 200
    assert await fetch(session, download_url) == (200, "image/png", picture)
    assert emu.auth_leaks() == []


async def test_upload_put_is_checked_against_the_ticket(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    _, envelope = await ticket(session, emu, 4)
    upload = envelope["data"]["upload"]
    headers = upload["headers"]
    async with session.put(upload["url"], data=b"12345", headers=headers) as put:
        assert put.status == 413  # more than announced
    forged = upload["url"].split("?")[0] + "?signature=forged"
    async with session.put(forged, data=b"1234", headers=headers) as put:
        assert put.status == 403
    leaky = {**headers, **AUTH}
    async with session.put(upload["url"], data=b"1234", headers=leaky) as put:
        assert put.status == 200
    assert [record.path for record in emu.auth_leaks()] == [
        upload["url"].split("?")[0].removeprefix(emu.base_url)
    ]


async def test_upload_over_200_mb_is_refused_with_413(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, envelope = await ticket(session, emu, 200 * 1024 * 1024 + 1)
    assert (status, envelope["code"]) == (413, 413)


async def test_binary_multipart_upload_gives_a_download_url(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"GIF89a...", filename="a.gif", content_type="image/gif")
    url = f"{emu.base_url}/api/v3/media/upload/binary"
    async with session.post(url, data=form, headers=AUTH) as reply:
        download_url = (await reply.json())["data"]["download_url"]
    assert await fetch(session, download_url) == (200, "image/gif", b"GIF89a...")


# --- history, delete, counters --------------------------------------------------------------


async def test_history_pages_newest_first_and_filters(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    url = f"{emu.base_url}/api/v3/predictions"
    first = await submit(session, emu, FLUX, {"prompt": "1"})
    second = await submit(session, emu, _VIDEO, {"prompt": "2"})
    third = await submit(session, emu, FLUX, {"prompt": "3"})
    emu.advance(3)

    _, envelope = await call(session, "POST", url, {"page": 1, "page_size": 2})
    page = envelope["data"]
    assert (page["page"], page["total"]) == (1, 3)
    assert [item["id"] for item in page["items"]] == [third["id"], second["id"]]
    _, envelope = await call(session, "POST", url, {"page": 2, "page_size": 2})
    assert [item["id"] for item in envelope["data"]["items"]] == [first["id"]]

    query = {"page": 1, "page_size": 10, "model": FLUX, "status": "completed"}
    _, envelope = await call(session, "POST", url, query)
    assert [item["id"] for item in envelope["data"]["items"]] == [third["id"], first["id"]]
    assert envelope["data"]["items"][0]["input"] == {"prompt": "3"}
    future = {"page": 1, "page_size": 10, "created_after": "2999-01-01T00:00:00Z"}
    assert (await call(session, "POST", url, future))[1]["data"]["total"] == 0
    for bad in ({"page": 1, "page_size": 101}, {"page": 0, "page_size": 1}, {"page": 1}):
        assert (await call(session, "POST", url, bad))[0] == 400


async def test_delete_removes_tasks_for_good(emu: Emulator, session: aiohttp.ClientSession) -> None:
    task = await submit(session, emu, FLUX, {"prompt": "x"})
    url = f"{emu.base_url}/api/v3/predictions/delete"
    status, envelope = await call(session, "POST", url, {"ids": [task["id"], "nope"]})
    assert (status, envelope["data"]) == (200, {"deleted_count": 1})
    missing = f"{emu.base_url}/api/v3/predictions/{task['id']}/result"
    assert (await call(session, "GET", missing))[0] == 404
    assert emu.submit_count == 1


async def test_created_per_payload_exposes_duplicate_submits(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    for _ in range(2):
        await submit(session, emu, FLUX, {"prompt": "same", "seed": 1})
    await submit(session, emu, FLUX, {"seed": 1, "prompt": "other"})
    counts = emu.created_per_payload()
    assert counts[payload_key(FLUX, {"seed": 1, "prompt": "same"})] == 2
    assert sorted(counts.values()) == [1, 2]
    assert [r.method for r in emu.requests] == ["POST"] * 3


async def test_tasks_created_counts_every_task_deleted_ones_too(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    first = await submit(session, emu, FLUX, {"prompt": "a"})
    await submit(session, emu, FLUX, {"prompt": "b"})
    url = f"{emu.base_url}/api/v3/predictions/delete"
    await call(session, "POST", url, {"ids": [first["id"]]})
    assert (emu.tasks_created, len(emu.tasks)) == (2, 1)


# --- webhook_url in the body, lagging history --------------------------------------------------


async def test_webhook_url_in_the_body_is_a_webhook_and_not_a_model_input(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    hook = "https://example.com/hook"
    task = await submit(session, emu, FLUX, {"prompt": "p", "webhook_url": hook})
    assert emu.tasks[task["id"]].webhook == hook
    assert task["input"] == {"prompt": "p"}
    assert emu.created_per_payload()[payload_key(FLUX, {"prompt": "p"})] == 1
    url = f"{emu.base_url}/api/v3/{FLUX}"
    refused = [
        ({"prompt": "p", "webhook_url": 5}, {}),
        ({"prompt": "p", "webhook_url": "ftp://example.com/hook"}, {}),
        ({"prompt": "p", "webhook_url": hook, "enable_base64_output": True}, {}),
        ({"prompt": "p", "webhook_url": hook}, {"webhook": "https://example.com/other"}),
    ]
    for body, params in refused:
        async with session.post(url, params=params, json=body, headers=AUTH) as reply:
            envelope = await reply.json()
            assert (reply.status, envelope["message"][:12]) == (400, "webhook_url="), body
    assert emu.tasks_created == 1
    both = {"prompt": "q", "webhook_url": hook}
    async with session.post(url, params={"webhook": hook}, json=both, headers=AUTH) as reply:
        assert reply.status == 200  # the same URL both ways is one webhook
    assert emu.tasks_created == 2


async def test_a_lagging_history_omits_tasks_younger_than_the_lag(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    emu.faults.lag_history(30)
    url = f"{emu.base_url}/api/v3/predictions"
    old = await submit(session, emu, FLUX, {"prompt": "old"})
    emu.advance(20)
    young = await submit(session, emu, FLUX, {"prompt": "young"})
    emu.advance(10)
    _, envelope = await call(session, "POST", url, {"page": 1, "page_size": 10})
    assert (envelope["data"]["total"], [i["id"] for i in envelope["data"]["items"]]) == (
        1,
        [old["id"]],
    )
    assert (await result(session, emu, young["id"]))["id"] == young["id"]  # it does exist
    emu.faults.lag_history(0)
    _, envelope = await call(session, "POST", url, {"page": 1, "page_size": 10})
    assert envelope["data"]["total"] == 2


async def test_a_fault_aimed_at_submits_never_hits_the_account_side() -> None:
    from wavespeed_async import AsyncWaveSpeed, RetryPolicy, ServerError, SubmissionUncertain
    from wavespeed_async.emulator import Fault

    async with Emulator(speed=1000) as emu:
        emu.faults.add(Fault.SERVER_ERROR, route="submit", rate=1.0)
        emu.faults.add(Fault.SERVER_ERROR, route="account", times=1)
        client = AsyncWaveSpeed(api_key="k", base_url=emu.base_url, retry=RetryPolicy.off())
        async with client:
            with pytest.raises(ServerError):
                await client.balance()  # the one account fault
            assert (await client.price(FLUX, {"prompt": "x"})).cost > 0  # no submit fault
            assert await client.balance() >= 0
            with pytest.raises(SubmissionUncertain):  # the submit fault still hits submits
                await client.submit(FLUX, {"prompt": "x"})
