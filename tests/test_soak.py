"""Soak: thousands of predictions through a faulty platform; nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import collections
import logging
import time

import pytest

from wavespeed_async import (
    AsyncWaveSpeed,
    PollSchedule,
    Prediction,
    RetryPolicy,
    Status,
    SubmissionUncertain,
    WaveSpeedError,
)
from wavespeed_async.emulator import Emulator, Fault, payload_key

from .support import SECRET_KEY

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # subprocesses or a soak

MODEL = "wavespeed-ai/flux-dev"
COUNT = 2000
#: Seconds before an answer is a read timeout: only a stalled one takes that long.
READ_TIMEOUT = 5.0
FAULTS = {
    "submit": [
        (Fault.RATE_LIMITED, 0.04),
        (Fault.RESET_AFTER, 0.01),
        (Fault.SERVER_ERROR, 0.01),
        (Fault.RESET_BEFORE, 0.01),
        (Fault.MALFORMED_JSON, 0.005),
        (Fault.TASK_FAILS, 0.01),
    ],
    "result": [
        (Fault.SERVER_ERROR, 0.04),
        (Fault.BAD_GATEWAY, 0.01),
        (Fault.GATEWAY_TIMEOUT, 0.01),
        (Fault.RESET_AFTER, 0.02),
        (Fault.MALFORMED_JSON, 0.01),
        (Fault.HTML_ERROR, 0.01),
        (Fault.RATE_LIMITED, 0.01),
        (Fault.UNKNOWN_STATUS, 0.01),
        (Fault.STALL, 0.001),
    ],
}


async def test_2000_predictions_with_10_percent_faults_lose_and_double_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    schedule = PollSchedule(first_delay=0.005, min_interval=0.01, max_interval=0.05)
    # Nothing here may hinge on the wall clock, so that a loaded machine passes too: the tasks
    # run on the emulator's clock, the total-time cap of retries is out of reach, and the read
    # timeout (which a stalled answer must pass) is far above any loaded answer time.
    retry = RetryPolicy(attempts=6, timeout=3600, base_delay=0.002, max_delay=0.05, budget=100_000)
    started = time.monotonic()
    async with Emulator(speed=1000) as emu:
        emu.faults.stall_seconds = READ_TIMEOUT + 3
        for route, faults in FAULTS.items():
            for fault, rate in faults:
                emu.faults.add(fault, route=route, rate=rate)
        async with AsyncWaveSpeed(
            api_key=SECRET_KEY,
            base_url=emu.base_url,
            poll_schedule=schedule,
            retry=retry,
            request_timeout=READ_TIMEOUT,
        ) as client:
            payloads = [{"prompt": f"soak {i}", "seed": i} for i in range(COUNT)]
            results = await asyncio.gather(
                *(client.run(MODEL, p) for p in payloads), return_exceptions=True
            )
        requests = len(emu.requests)
        created = emu.created_per_payload()
        injected = sum(emu.faults.injected.values())

    outcomes: collections.Counter[str] = collections.Counter()
    for payload, result in zip(payloads, results, strict=True):
        key = payload_key(MODEL, payload)
        if isinstance(result, Prediction):
            assert result.status is Status.COMPLETED
            assert created[key] == 1
            outcomes["completed"] += 1
        elif isinstance(result, SubmissionUncertain):
            assert result.payload == payload  # reported, so the caller can reconcile
            outcomes[f"uncertain, created {created[key]}"] += 1
        else:
            assert isinstance(result, WaveSpeedError), repr(result)
            assert result.prediction_id is not None, repr(result)  # never loses the id
            assert created[key] == 1
            outcomes[type(result).__name__] += 1
        assert SECRET_KEY not in str(result)

    assert sum(outcomes.values()) == COUNT
    assert max(created.values()) == 1, "a task was created twice"
    assert outcomes["completed"] >= COUNT * 0.9
    assert injected >= requests * 0.05
    elapsed = time.monotonic() - started
    logging.getLogger(__name__).info(
        "soak: %d predictions, %d requests, %d faults injected, outcomes %s, %d tasks, %.1fs",
        COUNT,
        requests,
        injected,
        dict(outcomes),
        sum(created.values()),
        elapsed,
    )
