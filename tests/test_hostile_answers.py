"""Hostile answers: servers of the tests' own (raw ``aiohttp.web``) sending what no API should,
and the client's answer to each: a typed error or a tolerated value, in bounded time, never the
key in a message, never a second URL fetched."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from aiohttp import web

from wavespeed_async import (
    AsyncWaveSpeed,
    InvalidInput,
    PredictionTimeout,
    ProtocolError,
    RetryPolicy,
    WaveSpeedError,
)
from wavespeed_async.emulator import Emulator, Fault

from .support import FAST, SECRET_KEY, client_for, reachable_texts

pytestmark = pytest.mark.anyio

MODEL = "acme/hostile-model"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Generous: the client must answer in milliseconds; this only turns a hang into a failure.
HANG = 30


class Server:
    """A loopback server whose ``answers`` (path -> data or handler) the test sets."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}
        self.paths: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        answer = self.answers.get(request.path)
        if callable(answer):
            return await answer(request)  # type: ignore[no-any-return]
        if answer is None:
            answer = {"id": "task1", "model": MODEL, "status": "completed", "outputs": []}
        return web.Response(
            body=json.dumps({"code": 200, "message": "success", "data": answer}),
            content_type="application/json",
        )

    def sent(self, path: str) -> int:
        return self.paths.count(path)


@asynccontextmanager
async def serving() -> AsyncIterator[Server]:
    server = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        await runner.cleanup()


def client_of(server: Server, **kwargs: Any) -> AsyncWaveSpeed:
    kwargs.setdefault("poll_schedule", FAST)
    kwargs.setdefault("retry", RetryPolicy.off())
    return AsyncWaveSpeed(api_key=SECRET_KEY, base_url=server.url, **kwargs)


def catalogue(schema: dict[str, Any]) -> list[dict[str, Any]]:
    run = {"type": "model_run", "request_schema": schema}
    return [{"model_id": MODEL, "name": "hostile", "api_schema": {"api_schemas": [run]}}]


# --- the key echoed into an answer ----------------------------------------------------------


async def echo(request: web.Request, field: str) -> web.Response:
    # A misconfigured gateway that echoes the request's Authorization header into a field.
    data = {field: request.headers["Authorization"], "note": SECRET_KEY}
    return web.json_response({"code": 200, "message": "success", "data": data})


@pytest.mark.parametrize(
    ("path", "field", "call"),
    [
        ("/api/v3/balance", "balance", lambda client: client.balance()),
        ("/api/v3/predictions/delete", "deleted_count", lambda client: client.delete("t1")),
        ("/api/v3/predictions", "items", lambda client: client.recent_predictions()),
        ("/api/v3/webhook/secret", "secret", lambda client: client.webhook_secret()),
        ("/api/v3/model/price", "price", lambda client: client.price(MODEL, {"prompt": "a"})),
        ("/api/v3/models", "items", lambda client: client.models()),
    ],
)
async def test_an_answer_echoing_the_key_gives_a_protocol_error_without_it(
    path: str,
    field: str,
    call: Callable[[AsyncWaveSpeed], Awaitable[Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving() as server, client_of(server) as client:
        server.answers[path] = lambda request: echo(request, field)
        with caplog.at_level(logging.DEBUG, "wavespeed_async"):
            try:
                await call(client)
            except WaveSpeedError as exc:
                error: WaveSpeedError | None = exc
            else:
                error = None
    if field != "secret":  # a secret that is a string is a secret: the user's to keep
        assert isinstance(error, ProtocolError)
    if error is not None:
        assert not [text for text in reachable_texts(error) if SECRET_KEY in text]
    assert SECRET_KEY not in caplog.text


# --- timestamps -----------------------------------------------------------------------------


async def test_impossible_created_at_values_keep_their_predictions_without_a_time() -> None:
    stamps: list[Any] = [
        "2024-02-30T10:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-01-01T25:61:00Z",
        "0000-01-01T00:00:00Z",
        1e20,
        -1e300,
        "x" * 10_000,
        {"nested": ["object"]},
        "2024-05-01T12:00:00.123456789Z",
    ]
    items = [
        {"id": f"t{n}", "model": MODEL, "status": "completed", "created_at": stamp}
        for n, stamp in enumerate(stamps)
    ]
    async with serving() as server, client_of(server) as client:
        server.answers["/api/v3/predictions"] = {"items": items}
        page = await client.recent_predictions()
    assert [prediction.id for prediction in page] == [f"t{n}" for n in range(len(stamps))]
    assert [prediction.created_at for prediction in page[:-1]] == [None] * (len(stamps) - 1)
    assert page[-1].created_at is not None
    assert page[-1].created_at.microsecond == 123456


# --- the catalogue's schemas ----------------------------------------------------------------


async def test_a_remote_ref_in_a_catalogue_schema_is_never_fetched() -> None:
    async with serving() as elsewhere, serving() as server:
        elsewhere.answers["/schema.json"] = {"type": "integer"}
        schema = {
            "type": "object",
            "properties": {"prompt": {"$ref": f"{elsewhere.url}/schema.json"}},
        }
        server.answers["/api/v3/models"] = catalogue(schema)
        async with client_of(server, validate_inputs=True) as client:
            with anyio.fail_after(HANG):
                await client.submit(MODEL, {"prompt": "a fox"})
    assert elsewhere.paths == []  # left to the server, which got the submit
    assert server.sent(f"/api/v3/{MODEL}") == 1


async def test_a_catastrophic_pattern_is_checked_in_linear_time() -> None:
    schema = {"properties": {"prompt": {"type": "string", "pattern": "^(a+)+$"}}}
    async with serving() as server:
        server.answers["/api/v3/models"] = catalogue(schema)
        async with client_of(server, validate_inputs=True) as client:
            with anyio.fail_after(HANG), pytest.raises(InvalidInput) as refused:
                await client.submit(MODEL, {"prompt": "a" * 50_000 + "!"})
            with anyio.fail_after(HANG):
                await client.submit(MODEL, {"prompt": "a" * 50_000})
    assert refused.value.field == "prompt"
    assert server.sent(f"/api/v3/{MODEL}") == 1


def doubling(depth: int) -> dict[str, Any]:
    defs: dict[str, Any] = {
        f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(depth)
    }
    defs[f"d{depth}"] = {"type": "string"}
    return {"$defs": defs, "properties": {"prompt": {"$ref": "#/$defs/d0"}}}


async def test_an_exponential_schema_is_left_to_the_server_and_the_loop_keeps_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with serving() as server:
        server.answers["/api/v3/models"] = catalogue(doubling(60))  # 2**60 visits if followed
        async with (
            client_of(server, validate_inputs=True) as client,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(tick)
            with caplog.at_level(logging.DEBUG, "wavespeed_async"), anyio.fail_after(HANG):
                await client.submit(MODEL, {"prompt": "a fox"})
            tg.cancel_scope.cancel()
    assert ticks > 0
    assert server.sent(f"/api/v3/{MODEL}") == 1
    assert "left to the server" in caplog.text


async def test_a_stalled_catalogue_obeys_the_calls_deadline() -> None:
    async with Emulator(speed=0) as emulator:
        emulator.faults.stall_seconds = 600.0
        emulator.faults.add(Fault.STALL, route="any", on=[1])  # the first request: /models
        async with client_for(emulator, validate_inputs=True) as client:
            with anyio.fail_after(HANG), pytest.raises(PredictionTimeout, match="catalogue"):
                await client.run(MODEL, {"prompt": "a fox"}, timeout=0.2)
        assert emulator.submit_count == 0
        assert [record.path for record in emulator.requests] == ["/api/v3/models"]


# --- payloads too deep to send ----------------------------------------------------------------


def nested(depth: int) -> dict[str, Any]:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return {"prompt": "a fox", "loras": value}


@pytest.mark.parametrize("depth", [150, 5_000])
async def test_a_payload_too_deep_to_encode_is_invalid_input_before_any_request(
    frozen: Emulator, depth: int
) -> None:
    payload = nested(depth)
    flux = "wavespeed-ai/flux-dev"
    async with client_for(frozen) as client:
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: client.submit(flux, payload),
            lambda: client.submit(flux, payload, idempotency_key="deep-1"),
            lambda: client.price(flux, payload),
            lambda: client.map([(flux, payload)], max_cost=1.0),
        ]
        for call in calls:
            with pytest.raises(InvalidInput) as refused:
                await call()
            assert refused.value.field.startswith("loras")
            assert "nested at most 100 levels" in refused.value.allowed
    assert frozen.requests == []


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        (float("nan"), "a finite number"),
        (float("inf"), "a finite number"),
        (10**5000, "at most 4,000 digits"),
        ({1, 2}, "a JSON value"),
        ({("a", "b"): 1}, "string keys"),
    ],
    ids=["nan", "infinity", "5000-digit-int", "set", "tuple-key"],
)
async def test_a_value_json_cannot_carry_is_invalid_input_naming_it(
    frozen: Emulator, value: object, allowed: str
) -> None:
    async with client_for(frozen) as client:
        with pytest.raises(InvalidInput) as refused:
            await client.submit("wavespeed-ai/flux-dev", {"prompt": "a fox", "extra": [value]})
    assert refused.value.field == "extra[0]"
    assert allowed in refused.value.allowed
    assert frozen.requests == []
