"""The emulator under hostile requests and arguments: a 400 envelope, never a 500, and memory
that stays bounded whatever stream of requests arrives."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import math
import os
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wavespeed_async.emulator import Clock, Emulator, FaultPlan
from wavespeed_async.emulator._account import InsufficientFunds
from wavespeed_async.emulator._app import render_task
from wavespeed_async.emulator._catalog import model_spec
from wavespeed_async.emulator._http import decode_json
from wavespeed_async.emulator._schema import validate
from wavespeed_async.emulator._state import EmulatorState
from wavespeed_async.errors import InvalidInput

from .support import FLUX

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer test-key", "Content-Type": "application/json"}
EDIT = "bytedance/dreamina-v3.0/edit"
UNLISTED = "someone/unlisted-model"
#: Every route that reads a JSON body.
JSON_ROUTES = [
    f"/api/v3/{FLUX}",
    f"/api/v3/{UNLISTED}",
    "/api/v3/predictions",
    "/api/v3/predictions/delete",
    "/api/v3/model/price",
    "/api/v3/model/pricing",
    "/api/v3/media/uploads",
    "/api/v3/billings/search",
    "/api/v3/user/usage_stats",
]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(speed=0) as emulator:
        yield emulator


async def post_raw(
    session: aiohttp.ClientSession, emu: Emulator, path: str, body: str | bytes
) -> tuple[int, Any]:
    async with session.post(f"{emu.base_url}{path}", data=body, headers=AUTH) as response:
        return response.status, await response.json()


def nested(depth: int) -> str:
    return '{"prompt": "x", "extra": ' + "[" * depth + "]" * depth + "}"


# --- hostile bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize("depth", [100_000, 500])
async def test_a_deeply_nested_body_is_a_400_envelope_on_every_json_route(
    emu: Emulator, session: aiohttp.ClientSession, path: str, depth: int
) -> None:
    status, envelope = await post_raw(session, emu, path, nested(depth))
    assert (status, envelope["code"], envelope["data"]) == (400, 400, None)
    assert "nested" in envelope["message"]
    assert emu.submit_count == 0


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (EDIT, '{"prompt": "hat", "image": "https://a.example/x.png", "size": "9" * 5000}', "size"),
        (UNLISTED, '{"prompt": "x", "size": "9" * 5000}', None),
        (UNLISTED, '{"prompt": "x", "seed": 9 * 5000}', "seed"),
        (UNLISTED, '{"prompt": "x", "seed": 9 * 30}', "seed"),
        (UNLISTED, '{"prompt": "x", "guidance": 1e400}', "guidance"),
        (UNLISTED, '{"prompt": "x", "loras": [{"scale": NaN}]}', "loras[0].scale"),
        (UNLISTED, '{"prompt": "x", "guidance": -Infinity}', "guidance"),
    ],
)
async def test_numbers_beyond_what_the_api_reads_are_a_400_naming_the_field(
    emu: Emulator, session: aiohttp.ClientSession, model: str, body: str, field: str | None
) -> None:
    # The bodies are written with Python's repetition for brevity; expand it here.
    text = body.replace('"9" * 5000', '"' + "9" * 5000 + '*512"')
    text = text.replace("9 * 5000", "9" * 5000).replace("9 * 30", "9" * 30)
    status, envelope = await post_raw(session, emu, f"/api/v3/{model}", text)
    if field is None:  # an unlisted model has no schema: a size it cannot read is ignored
        assert status == 200, envelope
        return
    assert (status, envelope["code"]) == (400, 400), envelope
    assert envelope["message"].startswith(f"{field}=")
    assert len(envelope["message"]) < 300
    assert emu.submit_count == 0


@pytest.mark.parametrize(
    "created_after",
    [
        "2024-02-30T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "2024-01-01T25:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9" * 5000,
    ],
)
async def test_an_impossible_date_is_a_400_naming_it_on_history_and_usage(
    emu: Emulator, session: aiohttp.ClientSession, created_after: str
) -> None:
    history = f'{{"page": 1, "page_size": 10, "created_after": "{created_after}"}}'
    usage = f'{{"start_time": "{created_after}", "end_time": "2999-01-01T00:00:00Z"}}'
    for path, body, field in (
        ("/api/v3/predictions", history, "created_after"),
        ("/api/v3/user/usage_stats", usage, "start_time"),
    ):
        status, envelope = await post_raw(session, emu, path, body)
        if created_after.startswith("0001"):  # a real, if early, instant
            assert status == 200, envelope
            continue
        assert (status, envelope["code"]) == (400, 400), envelope
        assert envelope["message"].startswith(f"{field}=")


@pytest.mark.parametrize("body", [b"\xff\xfe\x00garbage", b'{"prompt": "\xff"}', b""])
async def test_bodies_that_are_not_json_objects_are_a_400(
    emu: Emulator, session: aiohttp.ClientSession, body: bytes
) -> None:
    status, envelope = await post_raw(session, emu, f"/api/v3/{FLUX}", body)
    assert (status, envelope["code"]) == (400, 400)


#: Field names the emulator reads somewhere, so generated bodies reach its checks.
_FIELDS = [
    "prompt", "image", "size", "seed", "num_images", "duration", "aspect_ratio", "resolution",
    "webhook_url", "enable_base64_output", "enable_sync_mode", "page", "page_size", "model",
    "status", "created_after", "created_before", "ids", "filename", "content_type",
    "prediction_uuids", "start_time", "end_time", "billing_type", "sort",
]  # fmt: skip
_HOSTILE = st.sampled_from(
    [
        *("9" * 5000 + "*5", "5*" + "9" * 40, "2024-02-30T00:00:00Z", "0000-01-01T00:00:00Z"),
        *(2**63, -(2**63) - 1, 10**400, 1e308, -1, 0, "1024*1024", "16:9", "ftp://x/hook"),
    ]
)
_SCALARS = st.one_of(
    _HOSTILE,
    _HOSTILE,  # listed twice: drawn as often as every ordinary kind together
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=8,
)
_BODIES = st.dictionaries(st.sampled_from(_FIELDS), _VALUES, max_size=8) | _VALUES
_MODELS = [FLUX, EDIT, "bytedance/dreamina-v3.0-pro/text-to-video", "google/veo3", UNLISTED]


def quote(model: str, inputs: object) -> None:
    """What ``POST /api/v3/model/price`` does with ``inputs``: a finite price or a refusal."""
    spec = model_spec(model)
    if spec is not None and isinstance(inputs, dict):
        validate(spec.schema, inputs, complete=False)
        assert math.isfinite(spec.price_for(inputs))


@settings(max_examples=150, deadline=None)
@given(body=_BODIES, model=st.sampled_from(_MODELS))
def test_any_json_body_is_answered_or_refused_as_invalid_input_on_every_route(
    body: object, model: str
) -> None:
    state = EmulatorState(clock=Clock(speed=0))
    try:
        decoded = decode_json(json.dumps(body).encode())  # NaN, Infinity and big ints too
    except InvalidInput:
        return
    for route in (
        lambda: state.submit(model, decoded),
        lambda: state.history(decoded),
        lambda: state.delete(decoded),
        lambda: state.uploads.announce(decoded, 0.0),
        lambda: quote(model, decoded),
        lambda: state.account.ledger.search(decoded, lambda _: "completed"),
        lambda: state.account.ledger.usage(decoded, lambda _: "image"),
    ):
        with contextlib.suppress(InvalidInput, InsufficientFunds):
            route()
    state.clock.advance(3600)
    for task in state.tasks.values():  # what it answers is strict JSON
        json.dumps(render_task(task, state.clock.now(), "http://e"), allow_nan=False)


# --- bounded memory ---------------------------------------------------------------------------


def resident_bytes() -> int:
    """This process's resident memory now (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


async def _pipeline(emu: Emulator, paths: list[str]) -> int:
    """Send GETs for ``paths`` pipelined on one connection; returns how many were answered."""
    host, port = emu.base_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    requests = [f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n" for path in paths]
    requests[-1] = requests[-1][:-2] + "Connection: close\r\n\r\n"
    answered = 0

    async def read() -> None:
        nonlocal answered
        tail = b""  # a status line may straddle two reads
        while chunk := await reader.read(1 << 16):
            answered += (tail + chunk).count(b"HTTP/1.1 404 ")
            tail = chunk[-12:]

    reading = asyncio.create_task(read())
    for start in range(0, len(requests), 500):
        writer.write("".join(requests[start : start + 500]).encode())
        await writer.drain()
    await reading
    writer.close()
    return answered


@pytest.mark.slow  # a soak: 40,000 requests, about 8 s
async def test_the_request_log_is_a_ring_and_memory_stays_flat_over_40000_requests() -> None:
    async with Emulator(speed=0, request_log_size=10_000) as emu:
        long_tail = "x" * 3000

        async def burst(first: int) -> None:
            paths = [f"/files/{first + n}/{long_tail}" for n in range(10_000)]
            assert await _pipeline(emu, paths) == 10_000

        await burst(0)
        gc.collect()
        objects_after_10k, rss_after_10k = len(gc.get_objects()), resident_bytes()
        for first in (10_000, 20_000, 30_000):
            await burst(first)
        gc.collect()
        log = emu.requests
        assert len(log) == 10_000  # the newest ones
        assert log[-1].path.startswith("/files/39999/")
        assert log[0].path.startswith("/files/30000/")
        # Each kept path is cut to a bounded length; head and tail survive for tests.
        assert max(len(record.path) for record in log) <= 1024
        assert log[-1].path.endswith("x")
        assert len(gc.get_objects()) < objects_after_10k + 2_000
        # Kept whole and unbounded, 30,000 more of these paths would hold ~100 MB more.
        assert resident_bytes() - rss_after_10k < 32 * 1024 * 1024


async def test_a_deleted_task_frees_its_input(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    big = "p" * (4 * 1024 * 1024)
    url = f"{emu.base_url}/api/v3/{UNLISTED}"
    tracemalloc.start()
    try:
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        ids = []
        for n in range(5):
            body = io.BytesIO(json.dumps({"prompt": big, "n": n}).encode())
            async with session.post(url, data=body, headers=AUTH) as reply:
                ids.append((await reply.json())["data"]["id"])
        del body
        gc.collect()
        holding, _ = tracemalloc.get_traced_memory()
        delete = f"{emu.base_url}/api/v3/predictions/delete"
        async with session.post(delete, json={"ids": ids}, headers=AUTH) as reply:
            assert (await reply.json())["data"] == {"deleted_count": 5}
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert holding - before > 5 * len(big)  # the live tasks do hold their inputs
    assert after - before < 1024 * 1024
    assert emu.tasks_created == 5


# --- argument checks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"port": 70000}, "port"),
        ({"port": -1}, "port"),
        ({"port": True}, "port"),
        ({"speed": math.nan}, "speed"),
        ({"speed": -1}, "speed"),
        ({"speed": math.inf}, "speed"),
        ({"balance": math.nan}, "balance"),
        ({"balance": -5.0}, "balance"),
        ({"durations": {FLUX: -30}}, "durations"),
        ({"durations": {FLUX: math.nan}}, "durations"),
        ({"sync_timeout": math.inf}, "sync_timeout"),
        ({"output_retention": 0}, "output_retention"),
        ({"output_retention": math.nan}, "output_retention"),
        ({"request_log_size": -1}, "request_log_size"),
        ({"request_log_size": 2.5}, "request_log_size"),
    ],
)
def test_bad_emulator_arguments_are_invalid_input_naming_the_argument_and_range(
    arguments: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        Emulator(**arguments)
    assert caught.value.field.startswith(field)
    assert "must be" in str(caught.value)


def test_setters_and_scripting_apply_the_same_checks() -> None:
    emu = Emulator(speed=0)
    for bad in (-30, math.nan, math.inf):
        with pytest.raises(InvalidInput, match="seconds="):
            emu.set_duration(FLUX, bad)
    for attempt in (lambda: setattr(emu, "speed", math.nan), lambda: Clock(math.inf)):
        with pytest.raises(InvalidInput, match="speed="):
            attempt()
    with pytest.raises(InvalidInput, match="balance="):
        emu.balance = math.inf
    with pytest.raises(InvalidInput, match="seconds="):
        emu.advance(math.nan)
    with pytest.raises(InvalidInput, match="seconds="):
        emu.webhooks.delay_next(seconds=math.nan)
    plan = FaultPlan()
    with pytest.raises(InvalidInput, match="history_lag="):
        plan.lag_history(-1)
    with pytest.raises(InvalidInput, match="stall_seconds="):
        plan.stall_seconds = math.nan
    # What is allowed still is.
    emu.set_duration(FLUX, 0)
    emu.speed = 0
    emu.balance = 0
