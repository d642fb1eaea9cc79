"""Output retention: the emulator keeps outputs and uploads for the platform's 7 days of its
clock, then answers for them as the platform's storage answers for an expired object."""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from wavespeed_async.emulator import Clock, Emulator

from .support import FLUX

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer test-key"}
WEEK = 7 * 24 * 3600.0


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(speed=0) as emulator:
        yield emulator


async def api(
    session: aiohttp.ClientSession, emu: Emulator, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    url = f"{emu.base_url}/api/v3/{path}"
    async with session.request(method, url, json=body, headers=AUTH) as response:
        return response.status, await response.json()


async def completed_task(session: aiohttp.ClientSession, emu: Emulator) -> dict[str, Any]:
    status, envelope = await api(session, emu, "POST", FLUX, {"prompt": "a fox"})
    assert status == 200, envelope
    emu.advance(3)
    status, envelope = await api(session, emu, "GET", f"predictions/{envelope['data']['id']}")
    assert envelope["data"]["status"] == "completed"
    data: dict[str, Any] = envelope["data"]
    return data


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str, bytes]:
    async with session.get(url) as response:
        return response.status, response.content_type, await response.read()


def is_expired_answer(status: int, content_type: str, body: bytes) -> bool:
    return (
        status == 403 and content_type == "application/xml" and b"<Code>AccessDenied</Code>" in body
    )


async def test_outputs_are_served_for_seven_days_then_answer_as_an_expired_object(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    task = await completed_task(session, emu)
    url = task["outputs"][0]
    emu.advance(WEEK - 10)  # submitted 3 s before the task completed
    assert (await get(session, url))[0] == 200
    emu.advance(10)
    assert is_expired_answer(*await get(session, url))
    # The prediction itself still answers, its outputs still listed: only the file is gone.
    status, envelope = await api(session, emu, "GET", f"predictions/{task['id']}/result")
    assert status == 200
    assert (envelope["data"]["status"], envelope["data"]["outputs"]) == ("completed", [url])


async def test_an_output_that_never_existed_answers_404_unlike_an_expired_one(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    task = await completed_task(session, emu)
    never = f"{emu.base_url}/outputs/{'0' * 32}/0.png"
    wrong_name = task["outputs"][0].replace("/0.png", "/7.png")
    for url in (never, wrong_name):
        status, _, body = await get(session, url)
        assert status == 404
        assert b"AccessDenied" not in body
    await api(session, emu, "POST", "predictions/delete", {"ids": [task["id"]]})
    assert (await get(session, task["outputs"][0]))[0] == 404  # deleted: gone, not expired


async def test_retention_is_configurable_and_applies_to_uploads(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(speed=0, output_retention=60) as emu:
        assert emu.output_retention == 60
        task = await completed_task(session, emu)
        ticket_body = {"filename": "in.png", "size": 3, "content_type": "image/png"}
        _, envelope = await api(session, emu, "POST", "media/uploads", ticket_body)
        ticket = envelope["data"]
        headers = ticket["upload"]["headers"]
        async with session.put(ticket["upload"]["url"], data=b"png", headers=headers) as put:
            assert put.status == 200
        assert (await get(session, ticket["download_url"]))[0] == 200
        emu.advance(60)
        assert is_expired_answer(*await get(session, task["outputs"][0]))
        assert is_expired_answer(*await get(session, ticket["download_url"]))
        # An expired upload can no longer be a model's input: the task fails as on the platform.
        body = {"prompt": "hat", "image": ticket["download_url"]}
        _, envelope = await api(session, emu, "POST", "bytedance/dreamina-v3.0/edit", body)
        emu.advance(10)
        _, envelope = await api(session, emu, "GET", f"predictions/{envelope['data']['id']}")
        assert (envelope["data"]["status"], envelope["data"]["code"]) == ("failed", 1402)


async def test_expired_uploads_drop_their_bytes_unasked_and_refuse_their_put(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(speed=0, output_retention=60) as emu:
        tickets = []
        for name in ("a.png", "b.png"):
            body = {"filename": name, "size": 1024, "content_type": "image/png"}
            tickets.append((await api(session, emu, "POST", "media/uploads", body))[1]["data"])
        first, late = tickets
        headers = first["upload"]["headers"]
        async with session.put(first["upload"]["url"], data=b"x" * 1024, headers=headers) as put:
            assert put.status == 200
        emu.advance(60)
        body = {"filename": "c.png", "size": 1, "content_type": "image/png"}
        await api(session, emu, "POST", "media/uploads", body)  # any later upload sweeps
        assert [slot.data for slot in emu.state.uploads.slots.values()][:2] == [None, None]
        headers = late["upload"]["headers"]
        async with session.put(late["upload"]["url"], data=b"x" * 1024, headers=headers) as put:
            assert put.status == 403  # as an expired pre-signed URL
        long_name = {"filename": "x" * 1025, "size": 1, "content_type": "image/png"}
        status, envelope = await api(session, emu, "POST", "media/uploads", long_name)
        assert (status, envelope["message"][:9]) == (400, "filename=")


async def test_history_lists_only_tasks_within_the_retention(
    session: aiohttp.ClientSession,
) -> None:
    async with Emulator(speed=0, output_retention=60) as emu:
        old = await completed_task(session, emu)
        emu.advance(58)
        young = await completed_task(session, emu)  # submitted at 61 s
        _, envelope = await api(session, emu, "POST", "predictions", {"page": 1, "page_size": 10})
        assert [item["id"] for item in envelope["data"]["items"]] == [young["id"]]
        assert old["id"] in emu.tasks


async def test_the_expired_answers_date_minus_created_at_is_the_outputs_age(
    session: aiohttp.ClientSession,
) -> None:
    # With a wall clock that follows the emulated one, a client can tell how old an expired
    # output is from the server's own clocks, as it would on the platform.
    clock = Clock(speed=0)
    async with Emulator(clock=clock, wall_clock=clock.wall_clock()) as emu:
        task = await completed_task(session, emu)
        emu.advance(WEEK + 3600)
        async with session.get(task["outputs"][0]) as response:
            assert response.status == 403
            served_at = email.utils.parsedate_to_datetime(response.headers["Date"])
        created_at = dt.datetime.fromisoformat(task["created_at"].replace("Z", "+00:00"))
        age = (served_at - created_at).total_seconds()
        assert WEEK + 3600 <= age < WEEK + 3600 + 5
