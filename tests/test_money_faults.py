"""Every promise about money holds when the history lags, a price is unreadable or the
coordinator stops answering after the platform created a task.

Each test owns its emulator and counts the tasks created there. The emulator's clock is
frozen and the tasks' ``created_at`` (its wall clock) moves with it, so the history's lag and
"a later task of the account" are driven by ``emu.advance``, never by sleeping.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import shutil
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web
from anyio.from_thread import start_blocking_portal

from wavespeed_async import (
    AsyncWaveSpeed,
    InvalidInput,
    NotFound,
    PredictionFuture,
    ProtocolError,
    SubmissionUncertain,
    WaveSpeed,
)
from wavespeed_async._wire.account import parse_balance, parse_quote
from wavespeed_async.cli import main
from wavespeed_async.emulator import Clock, Emulator, Fault
from wavespeed_async.redis import RedisCoordinator

from .redis_server import SKIP_REASON, RedisServer
from .support import SECRET_KEY, client_for

pytestmark = pytest.mark.anyio

MODEL = "test/money-model"  # off the catalogue: free, accepts any input
FLUX = "wavespeed-ai/flux-dev"
PAYLOAD = {"prompt": "a fox"}
#: Longer than the client's clock-skew allowance (2 minutes): a task created this long after
#: an unanswered submit proves, once the history lists it, that the history has caught up.
PAST_SKEW = 150.0
LAG = 60.0


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """A frozen emulator whose wall clock (the tasks' ``created_at``) moves with ``advance``."""
    clock = Clock(0)
    start = dt.datetime.now(dt.timezone.utc)
    async with Emulator(
        clock=clock, wall_clock=lambda: start + dt.timedelta(seconds=clock.now())
    ) as emulator:
        yield emulator


def lag_history(emu: Emulator, seconds: float) -> None:
    """The history omits tasks younger than ``seconds`` of the emulator's clock."""
    if hasattr(emu.faults, "lag_history"):
        emu.faults.lag_history(seconds)
        return
    # TODO(money): until the emulator's own lag fault lands from branch `emu`.
    state = emu.state
    original = state.history

    def lagging(body: object) -> Any:
        everything, now = state.tasks, state.clock.now()
        state.tasks = {k: t for k, t in everything.items() if now - t.submitted_at >= seconds}
        try:
            return original(body)
        finally:
            state.tasks = everything

    state.history = lagging  # type: ignore[method-assign]


async def later_task(emu: Emulator, prompt: str = "another job of the account") -> str:
    """A task of the account created now (by another client, without a key)."""
    async with client_for(emu) as other:
        return (await other.submit(MODEL, {"prompt": prompt})).id


def created(emu: Emulator) -> int:
    return emu.submit_count


# --- absence needs proof ----------------------------------------------------------------------


async def test_an_unanswered_submit_is_not_resent_while_the_history_lags(emu: Emulator) -> None:
    lag_history(emu, LAG)
    emu.faults.add(Fault.RESET_AFTER, route="submit", times=1)  # created, the answer lost
    async with client_for(emu) as client:
        with anyio.fail_after(10):
            with pytest.raises(SubmissionUncertain) as first:
                await client.submit(MODEL, PAYLOAD, idempotency_key="order-1")
            for _ in range(3):  # every later caller is answered at once, and nothing is sent
                with pytest.raises(SubmissionUncertain) as again:
                    await client.submit(MODEL, PAYLOAD, idempotency_key="order-1")
    assert created(emu) == 1
    uncertain = again.value
    assert uncertain.key == "order-1"
    assert uncertain.sent_at == first.value.sent_at  # the time of the POST, not of the call
    assert uncertain.payload == PAYLOAD
    assert "resolve_key" in str(uncertain)


async def test_five_hundred_callers_of_an_uncertain_key_share_one_task(emu: Emulator) -> None:
    lag_history(emu, LAG)
    emu.faults.add(Fault.RESET_AFTER, route="submit", times=1)
    async with client_for(emu) as client:

        async def call() -> PredictionFuture | BaseException:
            try:
                return await client.submit(MODEL, PAYLOAD, idempotency_key="order-500")
            except SubmissionUncertain as exc:
                return exc

        with anyio.fail_after(30):
            answers = await asyncio.gather(*(call() for _ in range(500)))
        assert all(isinstance(answer, SubmissionUncertain) for answer in answers)
        assert created(emu) == 1
        [task_id] = emu.tasks
        emu.advance(LAG + 1)  # the history now lists the task: the next check adopts it
        with anyio.fail_after(30):
            answers = await asyncio.gather(*(call() for _ in range(500)))
            future = await client.submit(MODEL, PAYLOAD, idempotency_key="order-500")
    assert future.id == task_id
    assert {a.id for a in answers if isinstance(a, PredictionFuture)} <= {task_id}
    assert created(emu) == 1


async def test_absence_is_proven_only_by_a_later_task_in_the_history(emu: Emulator) -> None:
    lag_history(emu, LAG)
    emu.faults.add(Fault.RESET_BEFORE, route="submit", times=1)  # nothing created, unknowable
    async with client_for(emu) as client:
        with pytest.raises(SubmissionUncertain):
            await client.submit(MODEL, PAYLOAD, idempotency_key="order-2")
        emu.advance(LAG + 1)  # an empty, caught-up-looking history is still no proof
        with pytest.raises(SubmissionUncertain, match="later task"):
            await client.submit(MODEL, PAYLOAD, idempotency_key="order-2")
        emu.advance(PAST_SKEW)
        await later_task(emu)  # created well after the POST...
        with pytest.raises(SubmissionUncertain):  # ...but the lagging history hides it yet
            await client.submit(MODEL, PAYLOAD, idempotency_key="order-2")
        emu.advance(LAG + 1)  # now listed: the history has caught up past the POST
        future = await client.submit(MODEL, PAYLOAD, idempotency_key="order-2")
        again = await client.submit(MODEL, PAYLOAD, idempotency_key="order-2")
    assert again.id == future.id
    assert created(emu) == 2  # the other job's task, and one for the key


async def test_resolve_key_adopts_the_task_the_user_found(emu: Emulator) -> None:
    lag_history(emu, 10 * LAG)
    emu.faults.add(Fault.RESET_AFTER, route="submit", times=1)
    async with client_for(emu) as client:
        with pytest.raises(SubmissionUncertain):
            await client.submit(MODEL, PAYLOAD, idempotency_key="order-3")
        [task_id] = emu.tasks  # found by other means (the dashboard, a webhook)
        adopted = await client.resolve_key("order-3", prediction_id=task_id)
        again = await client.submit(MODEL, PAYLOAD, idempotency_key="order-3")
    assert adopted is not None
    assert adopted.id == again.id == task_id
    assert created(emu) == 1


async def test_resolve_key_absent_lets_the_next_call_submit_once(emu: Emulator) -> None:
    lag_history(emu, 10 * LAG)
    emu.faults.add(Fault.RESET_BEFORE, route="submit", times=1)
    async with client_for(emu) as client:
        with pytest.raises(SubmissionUncertain):
            await client.submit(MODEL, PAYLOAD, idempotency_key="order-4")
        assert await client.resolve_key("order-4", absent=True) is None
        futures = await asyncio.gather(
            *(client.submit(MODEL, PAYLOAD, idempotency_key="order-4") for _ in range(5))
        )
    assert len({future.id for future in futures}) == 1
    assert created(emu) == 1


async def test_resolve_key_refuses_what_it_cannot_check(emu: Emulator) -> None:
    lag_history(emu, 10 * LAG)
    emu.faults.add(Fault.RESET_AFTER, route="submit", times=1)
    async with client_for(emu) as client:
        with pytest.raises(InvalidInput, match="idempotency_key"):  # never used
            await client.resolve_key("unknown", absent=True)
        with pytest.raises(SubmissionUncertain):
            await client.submit(MODEL, PAYLOAD, idempotency_key="order-5")
        with pytest.raises(InvalidInput, match="prediction_id"):  # both or neither
            await client.resolve_key("order-5")
        with pytest.raises(NotFound):  # a task that does not exist is not adopted
            await client.resolve_key("order-5", prediction_id="0" * 32)
        other = await later_task(emu, "someone else's")
        with pytest.raises(InvalidInput, match="prediction_id"):  # another model's task
            await client.resolve_key("order-5", prediction_id=await flux_task(client))
        with pytest.raises(InvalidInput, match="prediction_id"):  # another input's task
            await client.resolve_key("order-5", prediction_id=other)
        with pytest.raises(SubmissionUncertain):  # still uncertain: nothing was decided
            await client.submit(MODEL, PAYLOAD, idempotency_key="order-5")
    assert created(emu) == 3


async def flux_task(client: AsyncWaveSpeed) -> str:
    return (await client.submit(FLUX, {"prompt": "a lighthouse"})).id


def test_the_blocking_client_resolves_a_key_too() -> None:
    with start_blocking_portal() as portal:
        emulator = Emulator(speed=1000)
        with portal.wrap_async_context_manager(emulator):
            emulator.faults.add(Fault.RESET_BEFORE, route="submit", times=1)
            emulator.faults.add(Fault.SERVER_ERROR, route="history", times=100)
            with WaveSpeed(api_key="k", base_url=emulator.base_url) as client:
                with pytest.raises(SubmissionUncertain):
                    client.submit(MODEL, PAYLOAD, idempotency_key="sync-1")
                assert client.resolve_key("sync-1", absent=True) is None
                emulator.faults.clear()
                future = client.submit(MODEL, PAYLOAD, idempotency_key="sync-1")
            assert list(emulator.tasks) == [future.id]


async def test_a_keyed_run_with_a_timeout_is_bounded_while_the_history_stalls(
    emu: Emulator,
) -> None:
    emu.faults.add(Fault.RESET_AFTER, route="submit", times=1)
    emu.faults.add(Fault.STALL, route="history")  # every history read hangs
    emu.faults.stall_seconds = 60
    async with client_for(emu) as client:
        with anyio.fail_after(20):  # the guard of a hang, far above the call's own deadline
            with pytest.raises(SubmissionUncertain, match="deadline"):
                await client.run(MODEL, PAYLOAD, idempotency_key="order-6", timeout=1)
    assert created(emu) == 1


# --- keys are validated -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["", "x" * 257, "line\nbreak", "nul\x00", "tab\t", "del\x7f", "\ud800", 42, b"bytes"]
)
async def test_a_bad_idempotency_key_is_refused_before_anything_is_sent(
    emu: Emulator, key: Any
) -> None:
    async with client_for(emu) as client:
        with pytest.raises(InvalidInput, match="idempotency_key") as refused:
            await client.submit(MODEL, PAYLOAD, idempotency_key=key)
        with pytest.raises(InvalidInput, match="idempotency_key"):
            await client.resolve_key(key, absent=True)
    assert "256" in str(refused.value)
    assert emu.requests == []


async def test_a_key_of_256_characters_is_accepted(emu: Emulator) -> None:
    async with client_for(emu) as client:
        await client.submit(MODEL, PAYLOAD, idempotency_key="k" * 256)
    assert created(emu) == 1


# --- a created task is never "nothing sent" ---------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may freeze (SIGSTOP)."""
    executable = shutil.which("redis-server")
    if executable is None:
        if os.environ.get("WAVESPEED_REQUIRE_REDIS") == "1":
            pytest.fail(f"WAVESPEED_REQUIRE_REDIS=1 but {SKIP_REASON}")
        pytest.skip(SKIP_REASON)
    server = RedisServer(executable, tmp_path)
    server.start()
    try:
        yield server
    finally:
        thaw(server)
        server.stop()


def freeze(server: RedisServer) -> None:
    assert server._process is not None
    os.kill(server._process.pid, signal.SIGSTOP)


def thaw(server: RedisServer) -> None:
    if server._process is not None and server._process.poll() is None:
        os.kill(server._process.pid, signal.SIGCONT)


async def test_a_task_created_while_redis_froze_is_returned_and_its_key_recorded_later(
    emu: Emulator, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    emu.faults.add(Fault.STALL, route="submit", times=1)  # created; the answer comes late
    emu.faults.stall_seconds = 1
    coordinator = RedisCoordinator(own_redis.url, namespace="frozen")
    async with client_for(emu, coordinator=coordinator) as client:
        submitting = asyncio.ensure_future(client.submit(MODEL, PAYLOAD, idempotency_key="order-7"))
        with anyio.fail_after(10):
            await emu.wait_for(lambda: created(emu) == 1)
        freeze(own_redis)  # between the claim and the record of the task's id
        with caplog.at_level(logging.WARNING, "wavespeed_async"):
            with anyio.fail_after(20):
                future = await submitting  # the task exists: the caller gets it
            [task_id] = emu.tasks
            assert future.id == task_id
            again = await client.submit(MODEL, PAYLOAD, idempotency_key="order-7")
            assert again.id == task_id  # this process remembers it until Redis has it
        assert "order-7" in caplog.text  # the pending record is logged
        thaw(own_redis)
        other = RedisCoordinator(own_redis.url, namespace="frozen")
        async with client_for(emu, coordinator=other) as elsewhere:
            with anyio.fail_after(30):  # recorded in the background once Redis answers
                await recorded(other, "order-7")
            adopted = await elsewhere.submit(MODEL, PAYLOAD, idempotency_key="order-7")
    assert adopted.id == task_id
    assert created(emu) == 1


async def recorded(coordinator: RedisCoordinator, key: str) -> None:
    """Return once the ledger holds ``key``'s task (it is written in the background)."""
    while True:
        record = await coordinator.read_record(key)
        if record is not None and record.state == "submitted":
            return
        await anyio.sleep(0.05)


# --- the money guard refuses what it cannot read ----------------------------------------------


class PriceStandIn:
    """A server in front of an emulator that forwards every request, except the price quotes
    and the balance it is told to spoil (raw JSON text, as a broken platform would send)."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.quotes: dict[str, str] = {}  # prompt -> the raw JSON of its price
        self.balance: str | None = None
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PriceStandIn:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._session is not None
        assert self._runner is not None
        await self._session.close()
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path == "/api/v3/model/price":
            asked = json.loads(body)
            price = self.quotes.get(asked["inputs"].get("prompt", ""))
            if price is not None:
                model = json.dumps(asked["model_id"])
                data = f'{{"model_id": {model}, "price": {price}, "discounted_price": {price}}}'
                return self._envelope(data)
        if request.path == "/api/v3/balance" and self.balance is not None:
            return self._envelope(f'{{"balance": {self.balance}}}')
        assert self._session is not None
        headers = {
            name: value
            for name, value in request.headers.items()
            if name in ("Authorization", "Content-Type")
        }
        async with self._session.request(
            request.method, self.emu.base_url + request.path_qs, data=body, headers=headers
        ) as answer:
            return web.Response(
                status=answer.status, body=await answer.read(), content_type="application/json"
            )

    @staticmethod
    def _envelope(data: str) -> web.Response:
        text = f'{{"code": 200, "message": "success", "data": {data}}}'
        return web.Response(text=text, content_type="application/json")


UNREADABLE_MONEY = [
    "NaN",
    "Infinity",
    "-Infinity",
    "-100",
    '"nan"',
    '"-1.00"',
    '"1e400"',
    "true",
    "null",
    "1" + "0" * 400,
]


def ten_items() -> list[tuple[str, dict[str, Any]]]:
    return [(FLUX, {"prompt": f"item {i}"}) for i in range(10)]


@pytest.mark.parametrize("price", UNREADABLE_MONEY)
async def test_one_unreadable_quote_stops_the_batch_before_anything_is_sent(
    price: str,
) -> None:
    async with Emulator(speed=1000) as emulator, PriceStandIn(emulator) as stand_in:
        stand_in.quotes["item 7"] = price
        client = AsyncWaveSpeed(api_key=SECRET_KEY, base_url=stand_in.base_url)
        async with client:
            with pytest.raises(ProtocolError) as refused:
                await client.map(ten_items(), max_cost=2.0)
    assert FLUX in str(refused.value)
    assert price[:8] in str(refused.value) or price.startswith("1000")
    assert len(str(refused.value)) < 300
    assert emulator.submit_count == 0


@pytest.mark.parametrize("balance", UNREADABLE_MONEY)
async def test_an_unreadable_balance_stops_the_batch_before_anything_is_sent(
    balance: str,
) -> None:
    async with Emulator(speed=1000) as emulator, PriceStandIn(emulator) as stand_in:
        stand_in.balance = balance
        async with AsyncWaveSpeed(api_key=SECRET_KEY, base_url=stand_in.base_url) as client:
            with pytest.raises(ProtocolError, match="balance"):
                await client.map(ten_items()[:5], max_cost=2.0)
    assert emulator.submit_count == 0


def test_batch_max_cost_refuses_a_nan_quote_and_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAVESPEED_API_KEY", "k")
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"model": m, "input": i}) + "\n" for m, i in ten_items()))
    with start_blocking_portal() as portal:
        emulator = Emulator(speed=1000)
        with portal.wrap_async_context_manager(emulator):
            stand_in = PriceStandIn(emulator)
            with portal.wrap_async_context_manager(stand_in):
                stand_in.quotes["item 3"] = "NaN"
                argv = ["batch", str(tasks), "--base-url", stand_in.base_url, "--max-cost", "2"]
                status = main([*argv, "--out", str(tmp_path / "out")])
            assert emulator.submit_count == 0
    assert status == 1
    assert "NaN" in capsys.readouterr().err.replace("nan", "NaN")


@pytest.mark.parametrize(
    "data",
    [
        {"price": 0.03},
        {"price": 0},
        {"unit_price": 2},
        {"unit_price": "0.25"},
        {"price": 0.5, "discounted_price": 0.4},
    ],
)
def test_a_readable_quote_is_a_finite_non_negative_amount(data: dict[str, Any]) -> None:
    quote = parse_quote(data, FLUX)
    assert 0 <= quote.cost < 1e6


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        -float("inf"),
        -0.01,
        "-0.03",
        "1e3",
        " 1",
        True,
        None,
        10**400,
        [1],
    ],
)
def test_money_the_client_cannot_read_is_a_protocol_error(value: Any) -> None:
    with pytest.raises(ProtocolError, match=FLUX):
        parse_quote({"price": value}, FLUX)
    with pytest.raises(ProtocolError, match=FLUX):
        parse_quote({"price": 0.03, "discounted_price": value}, FLUX)
    with pytest.raises(ProtocolError, match="balance"):
        parse_balance({"balance": value})
