"""The HTTP owner under attack: oversized and dripping answers, key reachability, closing
races, a second event loop. Servers here are the tests' own, written to misbehave."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from aiohttp import web

from wavespeed_async import (
    AsyncWaveSpeed,
    ClientClosed,
    ConfigurationError,
    Limits,
    PredictionTimeout,
    ResponseTooLarge,
    RetryPolicy,
    Status,
    SubmissionUncertain,
    WaveSpeedError,
)
from wavespeed_async.emulator import Emulator, Fault

from .support import FAST, SECRET_KEY, client_for, reachable_texts

MODEL = "wavespeed-ai/flux-dev"
pytestmark = pytest.mark.anyio
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """A loopback server answering every request with ``handler``; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def envelope(data: Any) -> bytes:
    return json.dumps({"code": 200, "message": "success", "data": data}).encode()


def task(status: str = "processing", **extra: Any) -> dict[str, Any]:
    return {"id": "task1", "model": MODEL, "status": status, "outputs": [], **extra}


def client_of(base_url: str, **kwargs: Any) -> AsyncWaveSpeed:
    kwargs.setdefault("poll_schedule", FAST)
    kwargs.setdefault("retry", RetryPolicy.off())
    return AsyncWaveSpeed(api_key=SECRET_KEY, base_url=base_url, **kwargs)


# --- size caps (defect 2) -------------------------------------------------------------------


async def test_an_answer_over_the_cap_fails_the_request_without_buffering_it() -> None:
    sent = 0

    async def huge(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse()  # no Content-Length: the cap must count as it reads
        await response.prepare(request)
        chunk = b" " * 65536
        try:
            for _ in range(2000):  # 128 MB if nobody stops reading
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return response

    async with serving(huge) as url, client_of(url, max_response_bytes=1_000_000) as client:
        with pytest.raises(ResponseTooLarge, match="exceeds 1000000 bytes"):
            await client.get_prediction("task1")
    assert sent < 100 * 1024 * 1024


async def test_a_gzip_bomb_is_capped_on_its_inflated_size() -> None:
    bomb = gzip.compress(envelope(task()) + b" " * 20_000_000)  # ~20 kB on the wire

    async def deflating(request: web.Request) -> web.Response:
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    assert len(bomb) < 100_000
    async with serving(deflating) as url, client_of(url, max_response_bytes=1_000_000) as client:
        with pytest.raises(ResponseTooLarge):
            await client.get_prediction("task1")


async def test_a_capped_submit_answer_is_an_uncertain_submit() -> None:
    async def announced(request: web.Request) -> web.Response:
        return web.Response(body=envelope(task("created", padding="x" * 2_000_000)))

    async with serving(announced) as url, client_of(url, max_response_bytes=1_000_000) as client:
        with pytest.raises(SubmissionUncertain) as caught:
            await client.submit(MODEL, {"prompt": "a lighthouse"})
    assert isinstance(caught.value.__cause__, ResponseTooLarge)


# --- total deadlines (defect 4) -------------------------------------------------------------


async def test_request_timeout_bounds_a_dripping_answer_as_a_whole() -> None:
    async def dripping(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            for byte in envelope(task("created")) + b" " * 400:
                await response.write(bytes([byte]))
                await asyncio.sleep(0.05)  # each read is quick; the whole answer takes ~25 s
        except (ConnectionError, RuntimeError):
            pass
        return response

    async with serving(dripping) as url, client_of(url, request_timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(SubmissionUncertain) as caught:
            await client.run(MODEL, {"prompt": "a lighthouse"}, timeout=30)
        elapsed = time.monotonic() - started
    assert caught.value.__cause__ is not None
    assert getattr(caught.value.__cause__, "timed_out", False)
    assert elapsed < 10  # bounded by request_timeout (0.5 s), not by the drip (~25 s)


async def test_a_calls_timeout_bounds_its_submit_too() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(body=envelope(task("created")))

    async with serving(slow) as url, client_of(url, request_timeout=60) as client:
        started = time.monotonic()
        with pytest.raises(SubmissionUncertain):
            await client.run(MODEL, {"prompt": "a lighthouse"}, timeout=0.3)
    assert time.monotonic() - started < 10


# --- the key out of reach (defect 6) --------------------------------------------------------


async def test_no_exception_chain_or_frame_reachable_from_an_error_holds_the_key() -> None:
    async def malformed(request: web.Request) -> web.StreamResponse:
        # A status line aiohttp cannot parse: its ClientResponseError holds the request info.
        assert request.transport is not None
        request.transport.write(b"HTTP/1.1 2OO OK\r\nContent-Length: x\r\n\r\n{}")
        request.transport.close()
        return web.Response()

    async with serving(malformed) as url, client_of(url) as client:
        with pytest.raises(WaveSpeedError) as caught:
            await client.get_prediction("task1")
        with pytest.raises(SubmissionUncertain) as uncertain:
            await client.submit(MODEL, {"prompt": "a lighthouse"})
    for error in (caught.value, uncertain.value):
        texts = reachable_texts(error)
        assert texts  # the walk saw something
        assert not [text for text in texts if SECRET_KEY in text]
        assert error.__cause__ is None or error.__cause__.__context__ is None


async def test_an_error_body_echoing_the_key_reaches_no_message_log_or_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def echoing(request: web.Request) -> web.Response:
        # A misconfigured proxy that echoes the request's headers into its error page.
        echoed = f"bad gateway; you sent {request.headers['Authorization']} (key {SECRET_KEY})"
        return web.Response(status=502, text=echoed)

    retry = RetryPolicy(attempts=2, base_delay=0.001)
    async with serving(echoing) as url, client_of(url, retry=retry) as client:
        with (
            caplog.at_level(logging.DEBUG, "wavespeed_async"),
            pytest.raises(WaveSpeedError) as caught,
        ):
            await client.get_prediction("task1")
    assert "bad gateway" in str(caught.value)  # the server's words stay, less the key
    assert "retrying" in caplog.text
    assert SECRET_KEY not in caplog.text
    assert not [text for text in reachable_texts(caught.value) if SECRET_KEY in text]


# --- closing races (defect 8) ---------------------------------------------------------------


async def test_closing_during_a_submits_retry_backoff_raises_client_closed() -> None:
    async with Emulator(speed=1000) as emu:
        emu.faults.add(Fault.RATE_LIMITED_RETRY_AFTER, route="submit")  # Retry-After: 1
        client = client_for(emu, retry=RetryPolicy(attempts=3))
        async with client:
            submit = asyncio.ensure_future(client.submit(MODEL, {"prompt": "a lighthouse"}))
            with anyio.fail_after(5):
                await emu.wait_for(lambda: len(emu.requests) == 1)
        with anyio.fail_after(0.9):  # sooner than the Retry-After it was sleeping on
            with pytest.raises(ClientClosed):
                await submit
    assert not emu.tasks


async def test_a_submit_waiting_for_a_running_slot_obeys_its_deadline_and_the_close() -> None:
    async with (
        Emulator(speed=0) as emu,
        client_for(emu, limits=Limits(max_concurrent_tasks=1)) as client,
    ):
        running = await client.submit(MODEL, {"prompt": "first"})
        with pytest.raises(PredictionTimeout) as caught:
            await client.run(MODEL, {"prompt": "second"}, timeout=0.05)
        assert caught.value.prediction_id is None
        assert "nothing was sent" in str(caught.value)
        waiting = asyncio.ensure_future(client.submit(MODEL, {"prompt": "third"}))
        await anyio.sleep(0.01)
        assert not waiting.done()
        await client.aclose()
        with anyio.fail_after(1), pytest.raises(ClientClosed):
            await waiting
        assert len(emu.tasks) == 1
        assert running.id in emu.tasks


async def test_waiters_of_a_closed_client_get_client_closed_with_the_id(frozen: Emulator) -> None:
    client = client_for(frozen)
    async with client:
        future = await client.submit(MODEL, {"prompt": "a lighthouse"})
        waiter = asyncio.ensure_future(future.wait())
        await anyio.sleep(0.01)
    with anyio.fail_after(1), pytest.raises(ClientClosed) as caught:
        await waiter
    assert caught.value.prediction_id == future.id
    with pytest.raises(ClientClosed):
        await client.get_prediction(future.id)


# --- one loop per client (defect 9) ---------------------------------------------------------


def test_a_client_used_from_a_second_event_loop_says_so() -> None:
    async def scenario() -> None:
        async with Emulator(speed=1000) as emu:
            client = client_for(emu)

            async def first() -> None:
                await client.submit(MODEL, {"prompt": "a lighthouse"})

            def second_loop() -> BaseException | None:
                try:
                    asyncio.run(first())
                except BaseException as exc:
                    return exc
                return None

            await first()
            error = await anyio.to_thread.run_sync(second_loop)
            await client.aclose()
        assert isinstance(error, ConfigurationError)
        assert "event loop" in str(error)

    asyncio.run(scenario())


# --- callbacks are contained (defect 11) ----------------------------------------------------


async def test_an_on_status_callback_that_raises_does_not_stop_the_polling(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Status] = []

    def broken(prediction: Any) -> None:
        seen.append(prediction.status)
        raise RuntimeError("a bug in the user's callback")

    async with client_for(emulator) as client:
        future = await client.submit(MODEL, {"prompt": "a lighthouse"})
        future.on_status(broken)
        with anyio.fail_after(5), caplog.at_level(logging.ERROR, "wavespeed_async"):
            prediction = await future
    assert prediction.status is Status.COMPLETED
    assert seen[-1] is Status.COMPLETED
    assert "on_status callback" in caplog.text


async def test_awaiting_a_future_of_a_closed_client_raises_client_closed(frozen: Emulator) -> None:
    client = client_for(frozen)
    async with client:
        future = await client.submit(MODEL, {"prompt": "a lighthouse"})
    for _ in range(2):  # and again: nothing was left half-registered by the first try
        with pytest.raises(ClientClosed) as caught:
            await future.wait(1)
        assert caught.value.prediction_id == future.id
