"""AsyncWaveSpeed and PredictionFuture against the emulator, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest

from wavespeed_async import (
    AsyncWaveSpeed,
    AuthenticationError,
    ConfigurationError,
    InvalidInput,
    NotFound,
    PollSchedule,
    Prediction,
    PredictionFailed,
    PredictionTimeout,
    Status,
    WaveSpeedError,
)
from wavespeed_async.emulator import Emulator

from .support import SECRET_KEY, VIDEO, client_for

pytestmark = pytest.mark.anyio

KEY = SECRET_KEY
EDIT = "bytedance/dreamina-v3.0/edit"
IMAGE_URL = "https://example.com/in.png"


def result_gets(emu: Emulator, prediction_id: str) -> int:
    return sum(1 for r in emu.requests if r.method == "GET" and prediction_id in r.path)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- the happy paths ----------------------------------------------------------------------------


async def test_text_to_video_returns_a_completed_prediction_with_a_real_mp4(
    emulator: Emulator, tmp_path: Path
) -> None:
    async with client_for(emulator) as client:
        video = await client.text_to_video("a red fox running through snow", aspect_ratio="9:16")
        paths = await client.download(video, tmp_path)
    assert video.status is Status.COMPLETED
    assert video.model == VIDEO
    assert emulator.tasks[video.id].input == {
        "prompt": "a red fox running through snow",
        "aspect_ratio": "9:16",
        "seed": -1,
    }
    assert [p.name for p in paths] == [f"{video.id}-0.mp4"]
    assert paths[0].read_bytes()[4:8] == b"ftyp"
    assert paths[0].stat().st_mode & 0o044 == 0o044  # readable like any new file, not 0600
    assert [p.name for p in tmp_path.iterdir()] == [paths[0].name]  # no temporary left behind
    assert emulator.auth_leaks() == []  # the download carried no API key


async def test_edit_image_returns_a_png_of_the_requested_size(
    emulator: Emulator, tmp_path: Path
) -> None:
    async with client_for(emulator) as client:
        image = await client.edit_image("make it snow", image=IMAGE_URL, size=(1024, 640), seed=3)
        [path] = await client.download(image, tmp_path)
    assert path.suffix == ".png"
    assert png_size(path.read_bytes()) == (1024, 640)
    assert emulator.tasks[image.id].input["size"] == "1024*640"


async def test_run_accepts_any_model_id(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        prediction = await client.run("wavespeed-ai/flux-dev", {"prompt": "a lighthouse"})
    assert prediction.status is Status.COMPLETED
    assert prediction.model == "wavespeed-ai/flux-dev"
    assert prediction.outputs


async def test_submit_returns_the_id_at_once_and_awaiting_finishes_it(frozen: Emulator) -> None:
    async with client_for(frozen) as client:
        future = await client.submit_text_to_video("a fox", seed=7)
        assert future.id in frozen.tasks
        assert future.status is Status.CREATED
        assert not future.done()
        frozen.advance(60)
        first = await future
        gets = result_gets(frozen, future.id)
        second = await future
        third = await future.wait()
    assert first is second is third
    assert first.status is Status.COMPLETED
    assert result_gets(frozen, future.id) == gets  # a finished future asks nothing more


async def test_concurrent_awaits_share_one_poller(frozen: Emulator) -> None:
    async with client_for(frozen) as client:
        future = await client.submit_text_to_video("a fox")
        results: list[Prediction] = []

        async def wait() -> None:
            results.append(await future)

        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(wait)
            await anyio.sleep(0.05)
            assert client.engine.watched == 1
            frozen.advance(60)
    assert len(results) == 5
    assert all(result is results[0] for result in results)


async def test_a_delivered_terminal_state_finishes_waiters_without_another_check(
    frozen: Emulator,
) -> None:
    slow = PollSchedule(first_delay=60, min_interval=60, max_interval=60)
    async with client_for(frozen, poll_schedule=slow) as client:
        future = await client.submit_text_to_video("a fox")
        waiter = asyncio.ensure_future(future.wait())
        await anyio.sleep(0.02)
        frozen.advance(60)
        finished = await client.get_prediction(future.id)
        future.deliver(finished)
        with anyio.fail_after(5):
            assert await waiter is finished
        future.deliver(attrs.evolve(finished, status=Status.FAILED))  # a late duplicate
        assert (await future).status is Status.COMPLETED
        with pytest.raises(ValueError, match="given to the future of"):
            future.deliver(attrs.evolve(finished, id="other"))
    assert result_gets(frozen, future.id) == 1  # only the test's own check


async def test_status_callbacks_hear_each_new_status_once(frozen: Emulator) -> None:
    async with client_for(frozen) as client:
        future = await client.submit_text_to_video("a fox")
        seen: list[str] = []
        future.on_status(lambda prediction: seen.append(prediction.raw_status))
        await future.refresh()  # still created: no news
        frozen.advance(1)
        await future.refresh()
        await future.refresh()
        frozen.advance(60)
        finished = await future
        future.deliver(attrs.evolve(finished, status=Status.FAILED))  # ignored: done
    assert seen == ["processing", "completed"]


async def test_resume_by_id_from_another_client(frozen: Emulator) -> None:
    async with client_for(frozen) as first:
        future = await first.submit_edit_image("make it snow", image=IMAGE_URL)
    frozen.advance(10)
    async with client_for(frozen) as second:
        resumed = second.prediction(future.id)
        assert resumed.prediction is None
        prediction = await resumed
    assert prediction.id == future.id
    assert prediction.status is Status.COMPLETED


async def test_gather_of_200_predictions_shares_one_connection_pool(emulator: Emulator) -> None:
    async with client_for(emulator, max_connections=20) as client:
        videos = await asyncio.gather(
            *(client.text_to_video(f"fox number {i}", seed=i) for i in range(200))
        )
    assert {v.status for v in videos} == {Status.COMPLETED}
    assert len({v.id for v in videos}) == 200
    assert emulator.submit_count == 200
    assert set(emulator.created_per_payload().values()) == {1}
    assert len({r.peer for r in emulator.requests}) <= 20


# --- sync mode and base64 -----------------------------------------------------------------------


async def test_sync_mode_returns_without_polling(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        image = await client.edit_image("snow", image=IMAGE_URL, enable_sync_mode=True)
    assert image.status is Status.COMPLETED
    assert result_gets(emulator, image.id) == 0


async def test_sync_mode_timeout_falls_back_to_polling_without_resubmitting() -> None:
    async with Emulator(speed=100, sync_timeout=0.5) as emu, client_for(emu) as client:
        image = await client.edit_image("snow", image=IMAGE_URL, enable_sync_mode=True)
    assert image.status is Status.COMPLETED
    assert emu.submit_count == 1
    assert result_gets(emu, image.id) >= 1


async def test_base64_outputs_decode_to_the_image(emulator: Emulator, tmp_path: Path) -> None:
    async with client_for(emulator) as client:
        image = await client.edit_image(
            "snow", image=IMAGE_URL, size="600*800", enable_base64_output=True
        )
        [path] = await client.download(image, tmp_path)
    assert png_size(base64.b64decode(image.outputs[0])) == (600, 800)
    assert path.name == f"{image.id}-0.png"
    assert png_size(path.read_bytes()) == (600, 800)


# --- failures, deadlines, unknown statuses ------------------------------------------------------


async def test_failed_prediction_raises_with_the_prediction(emulator: Emulator) -> None:
    emulator.fail_next(error="content policy violation")
    async with client_for(emulator) as client:
        future = await client.submit_text_to_video("a fox")
        with pytest.raises(PredictionFailed, match="content policy violation") as info:
            await future
    assert info.value.prediction.id == future.id
    assert info.value.prediction_id == future.id
    assert info.value.prediction.status is Status.FAILED


@pytest.mark.parametrize("status", ["cancelled", "timeout", "deleted"])
async def test_other_failed_terminal_statuses_raise(frozen: Emulator, status: str) -> None:
    async with client_for(frozen) as client:
        future = await client.submit_text_to_video("a fox")
        frozen.set_status(future.id, status, error=f"it was {status}")
        with pytest.raises(PredictionFailed, match=status):
            await future


async def test_wait_deadline_raises_with_the_id_and_the_task_keeps_running(
    frozen: Emulator,
) -> None:
    async with client_for(frozen) as client:
        future = await client.submit_text_to_video("a fox")
        with pytest.raises(PredictionTimeout) as info:
            await future.wait(timeout=0.05)
        assert info.value.prediction_id == future.id
        assert isinstance(info.value, TimeoutError)
        assert client.engine.watched == 0  # nobody waits, so nobody polls
        frozen.advance(60)
        assert (await future).status is Status.COMPLETED


async def test_every_wait_has_a_default_deadline(frozen: Emulator) -> None:
    async with client_for(frozen, wait_timeout=0.05) as client:
        with pytest.raises(PredictionTimeout):
            await client.text_to_video("a fox")


async def test_unknown_status_is_logged_and_polled_until_the_deadline(
    frozen: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    async with client_for(frozen) as client:
        future = await client.submit_text_to_video("a fox")
        frozen.set_status(future.id, "queued_for_gpu")
        with caplog.at_level(logging.WARNING, "wavespeed_async"), pytest.raises(PredictionTimeout):
            await future.wait(timeout=0.1)
    assert future.status is Status.UNKNOWN
    assert future.prediction is not None
    assert future.prediction.raw_status == "queued_for_gpu"
    assert "queued_for_gpu" in caplog.text
    assert result_gets(frozen, future.id) >= 2


async def test_unknown_prediction_id_is_not_found(frozen: Emulator) -> None:
    async with client_for(frozen) as client:
        with pytest.raises(NotFound) as info:
            await client.prediction("0123456789abcdef")
    assert info.value.prediction_id == "0123456789abcdef"


# --- validation never reaches the network -------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.text_to_video(""), "prompt"),
        (lambda c: c.text_to_video("fox", aspect_ratio="2:1"), "aspect_ratio"),
        (lambda c: c.text_to_video("fox", seed=-2), "seed"),
        (lambda c: c.text_to_video("fox", seed=2**31), "seed"),
        (lambda c: c.edit_image("x" * 121, image=IMAGE_URL), "prompt"),
        (lambda c: c.edit_image("snow", image=""), "image"),
        (lambda c: c.edit_image("snow", image=IMAGE_URL, size=(511, 1024)), "size"),
        (lambda c: c.edit_image("snow", image=IMAGE_URL, size=(1024, 2049)), "size"),
        (lambda c: c.edit_image("snow", image=IMAGE_URL, seed=2**31), "seed"),
        (lambda c: c.run("../predictions/x", {}), "model"),
        (lambda c: c.get_prediction("../../etc"), "prediction_id"),
        (lambda c: c.submit_text_to_video("fox", webhook="not a url"), "webhook"),
    ],
)
async def test_bad_input_raises_before_any_request(frozen: Emulator, call: Any, field: str) -> None:
    async with client_for(frozen) as client:
        with pytest.raises(InvalidInput) as info:
            await call(client)
    assert info.value.field == field
    assert frozen.requests == []


# --- keys and auth ------------------------------------------------------------------------------


async def test_wrong_key_is_an_authentication_error_that_does_not_show_the_key() -> None:
    async with Emulator(api_key="the-right-key") as emu, client_for(emu) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.text_to_video("a fox")
    assert info.value.status == 401
    assert KEY not in str(info.value)
    assert KEY not in repr(client)


def test_missing_key_is_a_clear_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="WAVESPEED_API_KEY"):
        AsyncWaveSpeed()


def test_key_and_base_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", f"  {KEY}\n")
    monkeypatch.setenv("WAVESPEED_BASE_URL", "http://127.0.0.1:9/")
    client = AsyncWaveSpeed()
    assert client.base_url == "http://127.0.0.1:9"
    assert KEY not in repr(client)


async def test_whitespace_around_a_pasted_key_is_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Emulator(api_key=KEY) as emu:
        monkeypatch.setenv("WAVESPEED_API_KEY", f"  {KEY}\n")
        monkeypatch.setenv("WAVESPEED_BASE_URL", emu.base_url)
        async with AsyncWaveSpeed() as client:
            future = await client.submit_text_to_video("a fox")  # refused with a wrong key
        assert emu.tasks[future.id].status is not None


async def test_upload_puts_the_bytes_without_the_key(emulator: Emulator, tmp_path: Path) -> None:
    source = tmp_path / "in.png"
    source.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    async with client_for(emulator) as client:
        url = await client.upload(source)
        image = await client.edit_image("snow", image=url)
    assert image.status is Status.COMPLETED
    assert emulator.auth_leaks() == []
    assert any(r.method == "PUT" for r in emulator.requests)


# --- cancellation and shutdown ------------------------------------------------------------------


async def test_cancel_stops_polling_and_waiters_see_cancellation(frozen: Emulator) -> None:
    async with client_for(frozen) as client:
        future = await client.submit_text_to_video("a fox")
        waiter = asyncio.ensure_future(future.wait())
        await anyio.sleep(0.03)
        future.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert client.engine.watched == 0
        with anyio.fail_after(5):  # a check already sent may still get its answer
            while client.engine.in_flight:  # noqa: ASYNC110 - a counter, not an event
                await anyio.sleep(0.001)
        gets = result_gets(frozen, future.id)
        await anyio.sleep(0.03)
        assert result_gets(frozen, future.id) == gets
        assert future.cancelled()


async def test_cancelling_the_awaiting_task_stops_its_poller(frozen: Emulator) -> None:
    async with client_for(frozen) as client:
        futures = [await client.submit_text_to_video(f"fox {i}") for i in range(20)]
        with anyio.move_on_after(0.05):
            await asyncio.gather(*(f.wait() for f in futures))
        await anyio.lowlevel.checkpoint()
        assert client.engine.watched == 0


async def test_cancelling_1000_waiting_tasks_leaves_no_task_behind(frozen: Emulator) -> None:
    async with client_for(frozen) as client:
        futures = await asyncio.gather(  # a model off the catalogue: free, so the balance lasts
            *(client.submit("test/free-model", {"prompt": f"fox {i}"}) for i in range(1000))
        )
        waiters = [asyncio.ensure_future(f.wait()) for f in futures]
        await anyio.sleep(0.05)
        for waiter in waiters:
            waiter.cancel()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert client.engine.watched == 0
        leftovers = [t for t in asyncio.all_tasks() if "PredictionFuture" in repr(t.get_coro())]
        assert leftovers == []


async def test_closing_the_client_stops_in_flight_waits_cleanly(frozen: Emulator) -> None:
    client = client_for(frozen)
    async with client:
        futures = [await client.submit_text_to_video(f"fox {i}") for i in range(20)]
        waiters = [asyncio.ensure_future(f.wait()) for f in futures]
        await anyio.sleep(0.02)
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, WaveSpeedError) and "closed" in str(r) for r in results)
    assert {r.prediction_id for r in results if isinstance(r, WaveSpeedError)} == {
        f.id for f in futures
    }
    assert client.engine.watched == 0
    with pytest.raises(WaveSpeedError, match="closed"):
        await client.text_to_video("a fox")
