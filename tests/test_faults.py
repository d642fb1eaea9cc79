"""The fault matrix: every misbehaviour of the platform, what the user sees, tasks created."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from wavespeed_async import (
    AsyncWaveSpeed,
    AuthenticationError,
    ConnectError,
    PredictionFailed,
    RetryPolicy,
    ServerError,
    Status,
    SubmissionUncertain,
)
from wavespeed_async.emulator import Emulator, Fault

from .support import client_for as shared_client_for

pytestmark = pytest.mark.anyio

QUICK_RETRIES = RetryPolicy(attempts=5, base_delay=0.001, max_delay=0.01)
MODEL = "wavespeed-ai/flux-dev"


@pytest.fixture
async def stalling() -> AsyncIterator[Emulator]:
    """A fast emulator whose stall fault holds an answer 2 s (past the 0.5 s request timeout)."""
    async with Emulator(speed=1000) as emu:
        emu.faults.stall_seconds = 2.0
        yield emu


def quick_client_for(emu: Emulator, **kwargs: Any) -> AsyncWaveSpeed:
    # Quick retries, and a stalled answer becomes a read timeout soon.
    return shared_client_for(emu, **{"retry": QUICK_RETRIES, "request_timeout": 0.5, **kwargs})


def routed(emu: Emulator, route: str) -> int:
    return sum(1 for r in emu.requests if r.path.startswith("/api/v3/" + route))


# --- submits: resent only when nothing can have been created -----------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault.RATE_LIMITED,
        Fault.RATE_LIMITED_RETRY_AFTER,
        Fault.UNAVAILABLE_RETRY_AFTER,
    ],
)
async def test_submit_refused_by_the_server_is_resent_once_and_succeeds(
    stalling: Emulator, fault: Fault
) -> None:
    stalling.faults.add(fault, route="submit")
    async with quick_client_for(stalling) as client:
        prediction = await client.run(MODEL, {"prompt": "a lighthouse"})
    assert prediction.status is Status.COMPLETED
    assert stalling.submit_count == 1
    assert routed(stalling, "wavespeed-ai") == 2  # the refused try and the good one


async def test_retry_after_is_honoured(stalling: Emulator) -> None:
    stalling.faults.add(Fault.RATE_LIMITED_RETRY_AFTER, route="submit")
    started = time.monotonic()
    async with quick_client_for(stalling) as client:
        await client.submit(MODEL, {"prompt": "a lighthouse"})
    assert time.monotonic() - started >= 0.95  # Retry-After: 1, not the 1 ms backoff


@pytest.mark.parametrize(
    ("fault", "created"),
    [
        (Fault.SERVER_ERROR, 1),
        (Fault.BAD_GATEWAY, 1),
        (Fault.GATEWAY_TIMEOUT, 1),
        (Fault.RESET_AFTER, 1),
        (Fault.STALL, 1),
        (Fault.MALFORMED_JSON, 1),
        (Fault.RESET_BEFORE, 0),
        (Fault.HTML_ERROR, 0),
        (Fault.UNAVAILABLE, 0),
    ],
)
async def test_submit_with_unknown_outcome_raises_uncertain_and_is_never_resent(
    stalling: Emulator, fault: Fault, created: int
) -> None:
    stalling.faults.add(fault, route="submit")
    payload = {"prompt": "a lighthouse", "seed": 7}
    before = dt.datetime.now(dt.timezone.utc)
    async with quick_client_for(stalling) as client:
        with pytest.raises(SubmissionUncertain) as info:
            await client.submit(MODEL, payload)
        error = info.value
        assert (error.model, error.payload) == (MODEL, payload)
        assert before <= error.sent_at <= dt.datetime.now(dt.timezone.utc)
        assert routed(stalling, "wavespeed-ai") == 1  # sent once, never again
        assert stalling.submit_count == created
        # Reconciling as the README says finds the task exactly when one was created.
        recent = await client.recent_predictions(model=MODEL, created_after=error.sent_at)
        found = [p for p in recent if p.input == error.payload]
    assert len(found) == created


async def test_connection_refused_is_retried_then_reported_as_nothing_sent() -> None:
    async with Emulator() as emu:
        base_url = emu.base_url
    async with AsyncWaveSpeed(api_key="k", base_url=base_url, retry=QUICK_RETRIES) as client:
        with pytest.raises(ConnectError):
            await client.submit(MODEL, {"prompt": "x"})


async def test_sync_mode_time_out_falls_back_to_polling(frozen: Emulator) -> None:
    # A frozen clock: the task cannot finish before the sync wait's "still running" answer
    # (on a loaded machine a fast clock could finish it first, and nothing would time out).
    frozen.faults.add(Fault.SYNC_TIMEOUT, route="submit")
    async with quick_client_for(frozen) as client:
        future = await client.submit(MODEL, {"prompt": "x", "enable_sync_mode": True})
        assert not future.done()
        frozen.advance(60)
        with anyio.fail_after(10):
            prediction = await future
    assert prediction.status is Status.COMPLETED
    assert frozen.submit_count == 1
    assert routed(frozen, "predictions") >= 1


async def test_a_task_that_fails_raises_prediction_failed(stalling: Emulator) -> None:
    stalling.faults.add(Fault.TASK_FAILS, route="submit")
    async with quick_client_for(stalling) as client:
        with pytest.raises(PredictionFailed, match="emulated failure"):
            await client.run(MODEL, {"prompt": "x"})
    assert stalling.submit_count == 1


async def test_missing_fields_in_a_submit_answer_still_give_a_future(stalling: Emulator) -> None:
    stalling.faults.add(Fault.MISSING_FIELDS, route="submit")
    async with quick_client_for(stalling) as client:
        prediction = await client.run(MODEL, {"prompt": "x"})
    assert prediction.status is Status.COMPLETED


# --- result checks: retried, the wait completes -------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault.RATE_LIMITED,
        Fault.UNAVAILABLE,
        Fault.SERVER_ERROR,
        Fault.BAD_GATEWAY,
        Fault.GATEWAY_TIMEOUT,
        Fault.HTML_ERROR,
        Fault.RESET_BEFORE,
        Fault.RESET_AFTER,
        Fault.STALL,
        Fault.MALFORMED_JSON,
        Fault.UNKNOWN_STATUS,
        Fault.MISSING_FIELDS,
    ],
)
async def test_faulty_result_checks_are_retried_and_the_wait_completes(fault: Fault) -> None:
    async with Emulator(speed=0) as frozen, quick_client_for(frozen) as client:
        frozen.faults.stall_seconds = 2.0
        frozen.faults.add(fault, route="result", on=[1, 2])
        future = await client.submit(MODEL, {"prompt": "x"})
        waiter = asyncio.ensure_future(future.wait())
        # The task finishes only once both faulty checks have happened.
        await frozen.wait_for(lambda: frozen.faults.injected[fault] == 2)
        frozen.advance(10)
        prediction = await waiter
    assert prediction.status is Status.COMPLETED
    assert prediction.outputs
    assert frozen.submit_count == 1


async def test_result_errors_surface_with_the_id_when_retries_run_out(stalling: Emulator) -> None:
    stalling.faults.add(Fault.SERVER_ERROR, route="result", rate=1.0)
    async with quick_client_for(
        stalling, retry=RetryPolicy(attempts=3, base_delay=0.001)
    ) as client:
        future = await client.submit(MODEL, {"prompt": "x"})
        with pytest.raises(ServerError) as info:
            await future
    assert info.value.prediction_id == future.id
    assert routed(stalling, "predictions") == 3


async def test_a_spent_retry_budget_surfaces_errors_at_once(stalling: Emulator) -> None:
    stalling.faults.add(Fault.SERVER_ERROR, route="result", rate=1.0)
    stalling.speed = 0  # no task finishes before its submit is answered, however slow
    policy = RetryPolicy(attempts=10, base_delay=0.001, budget=10)  # two retries in all
    # No answer is stalled here: a generous read timeout, so that a slow answer on a loaded
    # machine is not a timeout (which costs 10 tokens, not 5, and would change the count).
    async with quick_client_for(stalling, retry=policy, request_timeout=60) as client:
        futures = [await client.submit(MODEL, {"prompt": f"x{i}"}) for i in range(3)]
        for future in futures:
            with pytest.raises(ServerError):
                await future
    # 3 first tries, and only the 2 retries the budget paid for.
    assert routed(stalling, "predictions") == 5


async def test_client_errors_are_never_retried() -> None:
    async with Emulator(api_key="right") as emu, quick_client_for(emu) as client:
        with pytest.raises(AuthenticationError):
            await client.submit(MODEL, {"prompt": "x"})
        assert len(emu.requests) == 1


async def test_retries_can_be_switched_off(stalling: Emulator) -> None:
    stalling.faults.add(Fault.SERVER_ERROR, route="result")
    async with quick_client_for(stalling, retry=RetryPolicy.off()) as client:
        with pytest.raises(ServerError):
            await client.run(MODEL, {"prompt": "x"})
