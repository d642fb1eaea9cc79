"""The account side of the client against the emulator: balance, quotes, catalogue and its
schema checks, delete and cancel."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from anyio.from_thread import start_blocking_portal

from wavespeed_async import (
    AsyncWaveSpeed,
    ConfigurationError,
    ImageEdit,
    InvalidInput,
    InvalidRequest,
    NotFound,
    TextToVideo,
    WaveSpeed,
)
from wavespeed_async._wire.account import parse_models, parse_quote
from wavespeed_async.emulator import Emulator

from .support import FAST, FLUX, SECRET_KEY, VIDEO, client_for

pytestmark = pytest.mark.anyio

EDIT = ImageEdit.model_id
IMAGE_URL = "https://example.com/photo.png"


def paths(emu: Emulator, path: str) -> int:
    return sum(record.path == path for record in emu.requests)


# --- balance and quotes ---------------------------------------------------------------------


async def test_balance_falls_by_exactly_the_quoted_price_of_each_task(emulator: Emulator) -> None:
    payloads: list[tuple[str, dict[str, object]]] = [
        (VIDEO, {"prompt": "a fox"}),
        (FLUX, {"prompt": "a lighthouse", "num_images": 3}),
        (FLUX, {"prompt": "a lighthouse"}),
    ]
    spent = 0.0
    async with client_for(emulator) as client:
        for model, payload in payloads:
            quote = await client.price(model, payload)
            before = await client.balance()
            await client.run(model, payload)
            assert await client.balance() == pytest.approx(before - quote.cost, abs=1e-9)
            spent += quote.cost
    assert emulator.balance == pytest.approx(100.0 - spent, abs=1e-9)


async def test_a_quote_creates_nothing_and_reads_both_answer_shapes(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        quote = await client.price(VIDEO, TextToVideo("a fox"))
    assert (quote.model_id, quote.currency, quote.cost) == (VIDEO, "USD", quote.discounted_price)
    assert quote.price > 0
    assert emulator.submit_count == 0
    legacy = parse_quote({"unit_price": "0.25", "currency": "USD"}, VIDEO)
    assert (legacy.model_id, legacy.price, legacy.cost) == (VIDEO, 0.25, 0.25)


async def test_bad_quote_arguments_are_refused_before_any_request(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        with pytest.raises(InvalidInput) as bad_model:
            await client.price("../balance", {"prompt": "x"})
        with pytest.raises(InvalidInput) as bad_payload:
            await client.price(VIDEO, ["a fox"])
    assert bad_model.value.field == "model"
    assert bad_payload.value.field == "payload"
    assert emulator.requests == []


async def test_an_unknown_model_has_no_quote(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        with pytest.raises(NotFound, match="nobody/nothing"):
            await client.price("nobody/nothing", {})


@pytest.fixture
async def legacy_only() -> AsyncIterator[tuple[str, list[str]]]:
    """A server of the older API: ``/model/pricing`` only, and 405 for ``/model/price``."""
    seen: list[str] = []

    async def pricing(request: web.Request) -> web.Response:
        seen.append(request.path)
        body = await request.json()
        return web.json_response(
            {"code": 200, "data": {"model_id": body["model_id"], "unit_price": 0.12}}
        )

    async def missing(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"code": 405, "message": "method not allowed"}, status=405)

    app = web.Application()
    app.router.add_post("/api/v3/model/pricing", pricing)
    app.router.add_post("/api/v3/model/price", missing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_price_falls_back_to_model_pricing_and_keeps_to_it(
    legacy_only: tuple[str, list[str]],
) -> None:
    base_url, seen = legacy_only
    async with AsyncWaveSpeed(api_key=SECRET_KEY, base_url=base_url) as client:
        first = await client.price(FLUX, {"prompt": "a"})
        second = await client.price(FLUX, {"prompt": "b"})
    assert first.cost == second.cost == 0.12
    assert seen == ["/api/v3/model/price", "/api/v3/model/pricing", "/api/v3/model/pricing"]


# --- the catalogue --------------------------------------------------------------------------


async def test_models_carry_their_input_schemas(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        models = await client.models()
        video = await client.model(VIDEO)
    assert VIDEO in [model.model_id for model in models]
    assert video.fields == ["prompt", "aspect_ratio", "seed"]
    assert video.required == ["prompt"]
    assert video.input_schema["properties"]["aspect_ratio"]["enum"][0] == "16:9"
    assert video.base_price is not None
    assert video.name


async def test_the_catalogue_is_fetched_once_an_hour(emulator: Emulator) -> None:
    now = [0.0]
    async with client_for(emulator, catalogue_clock=lambda: now[0]) as client:
        await asyncio.gather(client.models(), client.models(), client.model(VIDEO))
        now[0] = 3599.0
        await client.models()
        assert paths(emulator, "/api/v3/models") == 1
        now[0] = 3601.0
        await client.models()
        assert paths(emulator, "/api/v3/models") == 2
        await client.models(refresh=True)
        assert paths(emulator, "/api/v3/models") == 3


async def test_a_model_missing_from_the_catalogue_is_not_found_by_id(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        with pytest.raises(NotFound, match="'acme/not-a-model' is not in the catalogue"):
            await client.model("acme/not-a-model")


def test_catalogue_entries_without_a_schema_or_an_id_do_not_break_parsing() -> None:
    models = parse_models([{"model_id": "a/b", "name": None}, {"name": "no id"}, "junk"])
    assert [(model.model_id, model.name, model.input_schema) for model in models] == [
        ("a/b", "", {})
    ]


# --- checking payloads against the catalogue ------------------------------------------------


@pytest.mark.parametrize(
    ("model", "payload", "field", "allowed"),
    [
        (VIDEO, {"prompt": "a fox", "aspect_ratio": "2:1"}, "aspect_ratio", "one of 16:9, 4:3"),
        (VIDEO, {"prompt": "a fox", "seed": -7}, "seed", "from -1 to 2147483647"),
        (VIDEO, {"aspect_ratio": "1:1"}, "prompt", "given (it is required"),
        (EDIT, {"prompt": "snow", "image": IMAGE_URL, "size": "100*100"}, "size", "from 512 to"),
        (EDIT, {"prompt": "x" * 121, "image": IMAGE_URL}, "prompt", "at most 120 characters"),
        (FLUX, {"prompt": "a", "num_images": "two"}, "num_images", "an integer from 1 to"),
    ],
)
async def test_validate_inputs_names_the_field_and_creates_nothing(
    emulator: Emulator, model: str, payload: dict[str, object], field: str, allowed: str
) -> None:
    async with client_for(emulator, validate_inputs=True) as client:
        with pytest.raises(InvalidInput) as refused:
            await client.submit(model, payload)
    assert refused.value.field == field
    assert allowed in refused.value.allowed
    assert emulator.submit_count == 0


async def test_validate_inputs_loads_the_catalogue_once_and_lets_good_payloads_through(
    emulator: Emulator,
) -> None:
    async with client_for(emulator, validate_inputs=True) as client:
        videos = await asyncio.gather(
            *(client.run(VIDEO, {"prompt": f"fox {n}"}) for n in range(3))
        )
        await client.run("acme/unlisted-model", {"anything": 1})  # the server judges those
    assert [video.status.value for video in videos] == ["completed"] * 3
    assert paths(emulator, "/api/v3/models") == 1


async def test_a_catalogue_loaded_by_models_checks_submits_too(emulator: Emulator) -> None:
    bad = {"prompt": "a fox", "aspect_ratio": "2:1"}
    async with client_for(emulator) as client:
        with pytest.raises(InvalidRequest):  # no catalogue yet: the server refuses it (400)
            await client.submit(VIDEO, bad)
        sent = paths(emulator, f"/api/v3/{VIDEO}")
        await client.models()
        with pytest.raises(InvalidInput, match="aspect_ratio"):
            await client.submit(VIDEO, bad)
    assert paths(emulator, f"/api/v3/{VIDEO}") == sent == 1
    assert emulator.submit_count == 0


async def test_validate_inputs_without_jsonschema_rs_is_a_clear_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema_rs", None)  # as if it were not installed
    with pytest.raises(ConfigurationError, match=r"jsonschema-rs: .*the schema extra"):
        AsyncWaveSpeed(api_key=SECRET_KEY, base_url="http://127.0.0.1:1", validate_inputs=True)


# --- delete and cancel ----------------------------------------------------------------------


async def test_delete_removes_tasks_for_good_and_ignores_unknown_ids(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        first = await client.run(VIDEO, {"prompt": "one"})
        second = await client.submit(VIDEO, {"prompt": "two"})
        assert await client.delete(first.id, second.id, first.id, "no-such-task") == 2
        with pytest.raises(NotFound) as gone:
            await client.get_prediction(first.id)
        assert await client.delete(first.id) == 0
    assert gone.value.prediction_id == first.id
    assert emulator.tasks == {}


async def test_delete_refuses_no_ids_and_malformed_ids_before_sending(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        with pytest.raises(InvalidInput, match="at least one"):
            await client.delete()
        with pytest.raises(InvalidInput) as bad:
            await client.delete("ok", "../../balance")
    assert bad.value.field == "prediction_id"
    assert emulator.requests == []


async def test_client_cancel_only_deletes_unfinished_tasks(frozen: Emulator) -> None:
    frozen.set_duration(VIDEO, 600)
    async with client_for(frozen) as client:
        running = await client.submit(VIDEO, {"prompt": "running"})
        finished = await client.submit(EDIT, {"prompt": "done", "image": IMAGE_URL})
        frozen.advance(60)
        await finished
        assert await client.cancel(running.id) is True
        assert await client.cancel(finished.id) is False
        with pytest.raises(NotFound):
            await client.cancel("no-such-task")
    assert list(frozen.tasks) == [finished.id]


async def test_cancel_remote_deletes_the_task_and_stops_local_waits(frozen: Emulator) -> None:
    async with client_for(frozen) as client:
        future = await client.submit(VIDEO, {"prompt": "a fox"})
        waiter = asyncio.ensure_future(future.wait())
        await asyncio.sleep(0.05)
        assert await future.cancel_remote() is True
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert future.cancelled()
    assert future.id not in frozen.tasks


async def test_cancel_remote_of_a_finished_future_sends_nothing(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        future = await client.submit(VIDEO, {"prompt": "a fox"})
        await future
        sent = len(emulator.requests)
        assert await future.cancel_remote() is False
    assert len(emulator.requests) == sent
    assert future.id in emulator.tasks


def test_the_blocking_client_has_the_account_methods() -> None:
    with start_blocking_portal() as portal:
        emu = Emulator(speed=0)
        with (
            portal.wrap_async_context_manager(emu),
            WaveSpeed(SECRET_KEY, emu.base_url, poll_schedule=FAST) as client,
        ):
            quote = client.price(VIDEO, {"prompt": "a fox"})
            first = client.submit(VIDEO, {"prompt": "a fox"})
            second = client.submit(VIDEO, {"prompt": "another"})
            assert client.balance() == pytest.approx(100.0 - 2 * quote.cost)
            assert client.model(VIDEO).required == ["prompt"]
            assert VIDEO in [m.model_id for m in client.models()]
            assert client.delete(first.id) == 1
            assert second.cancel_remote() is True
            with pytest.raises(NotFound):
                client.cancel(second.id)  # already gone
        assert emu.tasks == {}


# --- arguments checked before anything is sent ----------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "field", "allowed"),
    [
        ({"page_size": "5"}, "page_size", "an integer from 1 to 100"),
        ({"page_size": 5.0}, "page_size", "an integer from 1 to 100"),
        ({"page_size": True}, "page_size", "an integer from 1 to 100"),
        ({"page": "2"}, "page", "an integer, 1 or more"),
        ({"status": 5}, "status", "one of completed, failed, processing"),
        ({"status": "done"}, "status", "one of completed, failed, processing"),
        ({"created_after": "yesterday"}, "created_after", "a datetime"),
        ({"created_before": 1_700_000_000}, "created_before", "a datetime"),
        (
            {"created_after": dt.datetime.min.replace(tzinfo=dt.timezone(dt.timedelta(hours=5)))},
            "created_after",
            "from year 1 to 9999",
        ),
    ],
    ids=lambda value: repr(value)[:30],
)
async def test_history_arguments_of_the_wrong_kind_are_invalid_input_before_any_request(
    frozen: Emulator, arguments: dict[str, Any], field: str, allowed: str
) -> None:
    async with client_for(frozen) as client:
        with pytest.raises(InvalidInput) as refused:
            await client.recent_predictions(**arguments)
    assert refused.value.field == field
    assert allowed in refused.value.allowed
    assert frozen.requests == []


@pytest.mark.parametrize("ttl", [math.nan, -1.0, "3600", None, True])
def test_a_catalogue_ttl_that_is_not_seconds_is_a_configuration_error(ttl: Any) -> None:
    with pytest.raises(ConfigurationError, match="catalogue_ttl must be a number of seconds"):
        AsyncWaveSpeed(api_key=SECRET_KEY, base_url="http://127.0.0.1:1", catalogue_ttl=ttl)


@pytest.mark.parametrize(
    ("required", "expected"),
    [(7, []), ("prompt", []), (None, []), (["prompt", 7, None, "size"], ["prompt", "size"])],
)
def test_an_odd_required_list_in_the_catalogue_is_read_as_what_it_names(
    required: Any, expected: list[str]
) -> None:
    entry = {
        "model_id": FLUX,
        "api_schema": {
            "api_schemas": [
                {"type": "model_run", "request_schema": {"type": "object", "required": required}}
            ]
        },
    }
    [info] = parse_models([entry])
    assert info.required == expected
