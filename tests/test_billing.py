"""The emulated bill, through HTTP: the ledger behind ``billings/search`` and ``usage_stats``,
and the catalogue families whose prices depend on their inputs (quote = formula = debit)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from wavespeed_async import InvalidInput, ProtocolError
from wavespeed_async._wire.account import parse_billings
from wavespeed_async.emulator import Emulator

from .support import SECRET_KEY, client_for

pytestmark = pytest.mark.anyio

jsonata = pytest.importorskip("jsonata", reason="jsonata-python evaluates the price formulas")

VEO3 = "google/veo3"
KLING_26 = "kwaivgi/kling-v2.6-std/image-to-video"
KLING_21 = "kwaivgi/kling-v2.1-i2v-standard"
SEEDANCE_LITE = "bytedance/seedance-v1-lite-i2v-480p"
SEEDANCE_FAST = "bytedance/seedance-v1.5-pro/text-to-video-fast"
WAN = "wavespeed-ai/wan-2.2/i2v-720p"
WAN_LORA = "wavespeed-ai/wan-2.2/i2v-720p-lora"
FLUX = "wavespeed-ai/flux-dev"
IMAGE = "https://example.com/first-frame.png"


class Api:
    """The emulator's API over HTTP, answering ``(status, data or message)``."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def post(self, path: str, body: object) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {SECRET_KEY}"}
        async with self.session.post(self.base_url + path, json=body, headers=headers) as answer:
            envelope = await answer.json()
        return answer.status, envelope["data"] if answer.status == 200 else envelope["message"]

    async def get(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {SECRET_KEY}"}
        async with self.session.get(self.base_url + path, headers=headers) as answer:
            assert answer.status == 200
            return (await answer.json())["data"]

    async def submit(self, model: str, inputs: dict[str, Any]) -> str:
        status, data = await self.post(f"/api/v3/{model}", inputs)
        assert status == 200, data
        return str(data["id"])

    async def quote(self, model: str, inputs: dict[str, Any]) -> float:
        status, data = await self.post("/api/v3/model/price", {"model_id": model, "inputs": inputs})
        assert status == 200, data
        return float(data["price"])

    async def balance(self) -> float:
        return float((await self.get("/api/v3/balance"))["balance"])

    async def billings(self, ids: list[str], **query: Any) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"billing_type": "deduct", "prediction_uuids": ids}
        body["sort"] = "created_at ASC"
        body.update({"page": 1, "page_size": 100, **query})
        status, data = await self.post("/api/v3/billings/search", body)
        assert status == 200, data
        return list(data["items"])


@pytest.fixture
async def api(frozen: Emulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, frozen.base_url)


# --- billed = debited -----------------------------------------------------------------------

JOBS: list[tuple[str, dict[str, Any]]] = [
    (VEO3, {"prompt": "a storm", "resolution": "1080p", "duration": 6}),
    (KLING_26, {"prompt": "a wave", "image": IMAGE, "duration": 10}),
    (SEEDANCE_FAST, {"prompt": "a city", "duration": -1}),
    (FLUX, {"prompt": "a lighthouse", "num_images": 3}),
    (WAN, {"prompt": "a cat [fail]", "image": IMAGE, "duration": 8}),  # fails: still billed
]


async def test_billing_records_sum_to_exactly_what_the_balance_lost(
    frozen: Emulator, api: Api
) -> None:
    quotes, ids = [], []
    for model, inputs in JOBS:
        quotes.append(await api.quote(model, inputs))
        ids.append(await api.submit(model, inputs))
    frozen.advance(600)
    deleted = ids[1]
    assert (await api.post("/api/v3/predictions/delete", {"ids": [deleted]}))[0] == 200

    records = await api.billings(ids)

    assert [record["prediction"]["uuid"] for record in records] == ids
    assert [record["price"] for record in records] == quotes
    assert sum(record["price"] for record in records) == pytest.approx(
        100.0 - await api.balance(), abs=1e-9
    )
    statuses = [record["prediction"]["status"] for record in records]
    assert statuses == ["completed", "deleted", "completed", "completed", "failed"]
    assert {record["billing_type"] for record in records} == {"deduct"}
    assert [record["prediction"]["model_uuid"] for record in records] == [m for m, _ in JOBS]


async def test_billing_search_returns_only_the_predictions_asked_for_in_pages(
    frozen: Emulator, api: Api
) -> None:
    ids = [await api.submit(FLUX, {"prompt": f"image {index}"}) for index in range(5)]

    assert await api.billings([]) == []
    wanted = [ids[0], ids[2], ids[4]]
    newest_first = await api.billings(wanted, sort="created_at DESC")
    assert [record["prediction"]["uuid"] for record in newest_first] == wanted[::-1]
    second_page = await api.billings(ids, page=2, page_size=2)
    assert [record["prediction"]["uuid"] for record in second_page] == ids[2:4]
    status, data = await api.post("/api/v3/billings/search", {"page": 1, "page_size": 100})
    assert (status, data["total"]) == (200, 5)


async def test_a_free_task_leaves_no_billing_record(frozen: Emulator, api: Api) -> None:
    task = await api.submit("nobody/unlisted-model", {"prompt": "free"})
    assert await api.billings([task]) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"page": 0}, "page"),
        ({"page_size": 101}, "page_size"),
        ({"sort": "price DESC"}, "sort"),
        ({"prediction_uuids": "abc"}, "prediction_uuids"),
        ({"prediction_uuids": ["x"] * 101}, "prediction_uuids"),
    ],
)
async def test_bad_billing_queries_are_400s_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    status, message = await api.post("/api/v3/billings/search", body)
    assert status == 400
    assert field in message


# --- usage ----------------------------------------------------------------------------------


class WallClock:
    def __init__(self) -> None:
        self.now = dt.datetime(2025, 3, 1, 23, 0, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now


async def test_usage_totals_per_day_and_model_match_the_debits() -> None:
    wall = WallClock()
    async with Emulator(speed=0, wall_clock=wall) as emu, aiohttp.ClientSession() as session:
        api = Api(session, emu.base_url)
        await api.submit(VEO3, {"prompt": "day one"})  # 3.20
        await api.submit(FLUX, {"prompt": "day one", "num_images": 2})  # 0.006
        wall.now += dt.timedelta(hours=2)  # 2 March
        await api.submit(VEO3, {"prompt": "day two", "duration": 4, "generate_audio": False})
        await api.submit(KLING_21, {"prompt": "day two", "image": IMAGE, "duration": 10})
        wall.now += dt.timedelta(days=3)  # outside the window below
        await api.submit(FLUX, {"prompt": "later"})
        window = {"start_time": "2025-03-01T00:00:00Z", "end_time": "2025-03-03T00:00:00Z"}

        status, usage = await api.post("/api/v3/user/usage_stats", window)
        everything = {"start_time": "2025-01-01T00:00:00Z", "end_time": "2025-12-31T00:00:00Z"}
        _, whole = await api.post("/api/v3/user/usage_stats", everything)
        lost = 100.0 - await api.balance()

    assert status == 200
    days = {day["date"]: day for day in usage["daily_usage"]}
    assert list(days) == ["2025-03-01", "2025-03-02"]
    assert (days["2025-03-01"]["count"], days["2025-03-01"]["amount"]) == (2, 3.206)
    assert (days["2025-03-02"]["count"], days["2025-03-02"]["amount"]) == (2, 1.3)
    per_model = {entry["model_uuid"]: entry["amount"] for entry in days["2025-03-02"]["models"]}
    assert per_model == {VEO3: 0.8, KLING_21: 0.5}
    assert {entry["model_uuid"]: entry["model_type"] for entry in usage["per_model_usage"]} == {
        VEO3: "text-to-video",
        FLUX: "text-to-image",
        KLING_21: "image-to-video",
    }
    assert sum(day["amount"] for day in whole["daily_usage"]) == pytest.approx(lost, abs=1e-9)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"end_time": "2025-03-01T00:00:00Z"}, "start_time"),
        ({"start_time": "2025-03-01T00:00:00Z", "end_time": "yesterday"}, "end_time"),
        ({"start_time": "2025-03-02T00:00:00Z", "end_time": "2025-03-01T00:00:00Z"}, "end_time"),
    ],
)
async def test_bad_usage_windows_are_400s_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    status, message = await api.post("/api/v3/user/usage_stats", body)
    assert status == 400
    assert field in message


# --- the catalogue's families: quote = formula = debit --------------------------------------


def price_driving_inputs(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the entry's enumerated price inputs (and none given)."""
    schema = entry["api_schema"]["api_schemas"][0]["request_schema"]
    drivers = [
        (name, field["enum"])
        for name, field in schema["properties"].items()
        if name in ("duration", "resolution", "num_images") and "enum" in field
    ]
    drivers += [(name, [False, True]) for name in schema["properties"] if name == "generate_audio"]
    if "num_images" in schema["properties"]:
        drivers.append(("num_images", [1, 2, 4]))
    names = [name for name, _ in drivers]
    choices = itertools.product(*(values for _, values in drivers))
    combos = [dict(zip(names, values, strict=True)) for values in choices]
    return [{}, *combos]


def formula_price(entry: dict[str, Any], inputs: dict[str, Any]) -> float:
    """The entry's JSONata formula, evaluated on the inputs with the schema's defaults."""
    schema = entry["api_schema"]["api_schemas"][0]["request_schema"]
    filled = {
        name: field["default"] for name, field in schema["properties"].items() if "default" in field
    }
    filled.update(inputs)
    filled["base_price"] = entry["base_price"]
    return round(float(jsonata.Jsonata(entry["formula"]).evaluate(filled)["total_price"]), 6)


async def test_every_catalogue_quote_agrees_with_its_formula_and_its_debit(
    frozen: Emulator, api: Api
) -> None:
    catalogue = await api.get("/api/v3/models")
    families = {VEO3, KLING_26, KLING_21, SEEDANCE_LITE, SEEDANCE_FAST, WAN, WAN_LORA}
    assert families <= {entry["model_id"] for entry in catalogue}
    checked = 0
    for entry in catalogue:
        schema = entry["api_schema"]["api_schemas"][0]["request_schema"]
        base = {name: "x" if name == "prompt" else IMAGE for name in schema["required"]}
        for inputs in price_driving_inputs(entry):
            quote = await api.quote(entry["model_id"], inputs)
            assert quote == formula_price(entry, inputs), (entry["model_id"], inputs)
            assert quote >= entry["base_price"], "base_price is the floor of the price range"
            before = await api.balance()
            await api.submit(entry["model_id"], {**base, **inputs})
            assert before - await api.balance() == pytest.approx(quote, abs=1e-9)
            checked += 1
    assert checked > 40


async def test_prices_grow_with_duration_and_resolution(api: Api) -> None:
    short = await api.quote(VEO3, {"duration": 4, "generate_audio": False})
    long = await api.quote(VEO3, {"duration": 8, "generate_audio": False})
    sharp = await api.quote(VEO3, {"duration": 8, "generate_audio": False, "resolution": "1080p"})
    assert short < long < sharp
    assert await api.quote(KLING_26, {"duration": 10}) == 2 * await api.quote(KLING_26, {})
    chosen_by_model = await api.quote(SEEDANCE_FAST, {"duration": -1})
    assert chosen_by_model == await api.quote(SEEDANCE_FAST, {"duration": 12})


@pytest.mark.parametrize(
    ("model", "inputs", "field"),
    [
        (VEO3, {"prompt": "x", "duration": 5}, "duration"),
        (VEO3, {"prompt": "x", "resolution": "4k"}, "resolution"),
        (VEO3, {"prompt": "x", "aspect_ratio": "4:3"}, "aspect_ratio"),
        (KLING_26, {"prompt": "x"}, "image"),
        (KLING_21, {"prompt": "x", "image": IMAGE, "guidance_scale": 1.5}, "guidance_scale"),
        (KLING_21, {"prompt": "x" * 2501, "image": IMAGE}, "prompt"),
        (SEEDANCE_LITE, {"image": IMAGE, "duration": 7}, "duration"),
        (SEEDANCE_FAST, {"prompt": "x", "duration": 3}, "duration"),
        (WAN, {"image": IMAGE}, "prompt"),
        (WAN_LORA, {"prompt": "x", "image": IMAGE, "loras": [{"scale": 1}]}, "loras[0].path"),
        (
            WAN_LORA,
            {"prompt": "x", "image": IMAGE, "high_noise_loras": [{"path": "a", "scale": 9}]},
            "high_noise_loras[0].scale",
        ),
        (WAN_LORA, {"prompt": "x", "image": IMAGE, "loras": [{"path": "a"}] * 4}, "loras"),
    ],
)
async def test_the_families_refuse_inputs_outside_their_shapes_and_debit_nothing(
    api: Api, model: str, inputs: dict[str, Any], field: str
) -> None:
    status, message = await api.post(f"/api/v3/{model}", inputs)
    assert status == 400
    assert field in message
    assert await api.balance() == 100.0


async def test_the_families_accept_their_documented_inputs(frozen: Emulator, api: Api) -> None:
    lora = [{"path": "https://example.com/style.safetensors", "scale": 0.8}]
    await api.submit(SEEDANCE_LITE, {"image": IMAGE})  # the prompt is optional
    with_loras = {"loras": lora, "low_noise_loras": lora}
    await api.submit(WAN_LORA, {"prompt": "x", "image": IMAGE, "last_image": IMAGE, **with_loras})
    await api.submit(SEEDANCE_FAST, {"prompt": "x", "aspect_ratio": "adaptive", "duration": 12})
    await api.submit(VEO3, {"prompt": "x", "negative_prompt": "rain", "aspect_ratio": "9:16"})
    assert frozen.submit_count == 4


# --- the client's bill ----------------------------------------------------------------------


async def test_the_clients_billings_and_usage_agree_with_what_the_balance_lost() -> None:
    wall = WallClock()
    async with Emulator(speed=1000, wall_clock=wall) as emu, client_for(emu) as client:
        futures = [await client.submit(model, inputs) for model, inputs in JOBS]
        await asyncio.gather(*(future.wait() for future in futures), return_exceptions=True)
        records = await client.billings(*(future.id for future in futures))
        usage = await client.usage(wall.now - dt.timedelta(days=1), wall.now + dt.timedelta(days=1))
        lost = 100.0 - await client.balance()

    assert [record.prediction_id for record in records] == [future.id for future in futures]
    assert math.fsum(record.price for record in records) == pytest.approx(lost, abs=1e-9)
    assert usage.total == pytest.approx(lost, abs=1e-9)
    assert usage.count == len(JOBS)
    assert [day.date for day in usage.days] == [dt.date(2025, 3, 1)]
    assert usage.per_model[VEO3].amount == records[0].price
    assert all(record.created_at is not None for record in records)


async def test_billings_refuses_bad_ids_and_naive_windows_before_any_request(
    frozen: Emulator,
) -> None:
    async with client_for(frozen) as client:
        with pytest.raises(InvalidInput) as no_ids:
            await client.billings()
        with pytest.raises(InvalidInput) as naive:
            await client.usage(dt.datetime(2025, 3, 1), dt.datetime(2025, 3, 2))
        with pytest.raises(InvalidInput) as backwards:
            await client.usage(WallClock().now, WallClock().now - dt.timedelta(days=1))
    assert (no_ids.value.field, naive.value.field, backwards.value.field) == (
        "prediction_ids",
        "start",
        "end",
    )
    assert frozen.requests == []


def test_a_billing_answer_is_read_as_data_items_or_as_a_bare_list() -> None:
    item = {"price": 0.25, "created_at": "2025-03-01T10:00:00Z", "prediction": {"uuid": "abc"}}
    as_page, _ = parse_billings({"items": [item], "total": 1})
    as_list, more = parse_billings([item])
    assert as_page == as_list
    assert as_page[0].price == 0.25
    assert as_page[0].prediction_id == "abc"
    assert more is False


@pytest.mark.parametrize("price", [float("nan"), float("inf"), -0.5, "free", True, None])
def test_a_billed_price_that_is_not_money_is_a_protocol_error(price: object) -> None:
    with pytest.raises(ProtocolError, match="abc"):
        parse_billings({"items": [{"price": price, "prediction": {"uuid": "abc"}}]})
