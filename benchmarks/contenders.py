"""The three contenders, each driven the way its users would drive it.

- `wavespeed-async`: this project, ``asyncio.gather`` over one client;
- `floor`: the least code that does the job with raw aiohttp (one session, submit, poll the
  result URL on the same schedule, JSON parsed into dicts): the limit for client overhead;
- `official`: the official ``wavespeed`` SDK (blocking, ``requests``), scaled with a thread
  pool, as its users do.

Each is a plain function taking a :class:`Batch` and returning how many predictions completed,
so the harness times them all the same way. Each imports its own library when first called, so
a cold process (the start-up scenario) pays only for the contender it runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import aiohttp

    from wavespeed_async import PollSchedule

OURS = "wavespeed-async"
FLOOR = "floor"
OFFICIAL = "official"
NAMES = (OURS, FLOOR, OFFICIAL)
API_KEY = "bench"
TERMINAL = frozenset({"completed", "failed", "cancelled", "timeout", "deleted"})


class Schedule(Protocol):
    """Delays between result checks: a ``PollSchedule``, or :class:`Fixed`."""

    def delays(self) -> Iterator[float]: ...


@dataclass(frozen=True)
class Fixed:
    """A first check after ``first`` seconds, then one every ``interval`` seconds.

    It needs no import of this project, so the floor's cold start and memory stay its own.
    """

    first: float
    interval: float

    def delays(self) -> Iterator[float]:
        """``first``, then ``interval`` forever."""
        return itertools.chain([self.first], itertools.repeat(self.interval))


@dataclass(frozen=True)
class Batch:
    """Predictions to run: one model, one prompt each, at most ``concurrency`` at a time.

    ``schedule`` paces `wavespeed-async` and the floor; ``poll_interval`` the official SDK,
    whose thread pool has ``concurrency`` workers.
    """

    base_url: str
    model: str
    prompts: tuple[str, ...]
    concurrency: int
    schedule: Schedule
    poll_interval: float


Contender = Callable[[Batch], int]


# --- wavespeed-async ---------------------------------------------------------------------------


def run_ours(batch: Batch) -> int:
    """``client.run`` for every prompt, gathered, behind a semaphore."""
    return asyncio.run(_ours(batch))


async def _ours(batch: Batch) -> int:
    from wavespeed_async import AsyncWaveSpeed, Status

    limit = asyncio.Semaphore(batch.concurrency)
    schedule = poll_schedule(batch.schedule)
    async with AsyncWaveSpeed(
        api_key=API_KEY, base_url=batch.base_url, poll_schedule=schedule
    ) as client:

        async def one(prompt: str) -> bool:
            async with limit:
                prediction = await client.run(batch.model, {"prompt": prompt})
            return prediction.status is Status.COMPLETED

        done = await asyncio.gather(*(one(p) for p in batch.prompts), return_exceptions=True)
    return sum(outcome is True for outcome in done)


def poll_schedule(schedule: Schedule) -> PollSchedule:
    """The client's own type for a schedule (a :class:`Fixed` one has no jitter)."""
    from wavespeed_async import PollSchedule

    if isinstance(schedule, Fixed):
        gap = schedule.interval
        return PollSchedule(
            first_delay=schedule.first, min_interval=gap, max_interval=gap, jitter=0
        )
    assert isinstance(schedule, PollSchedule)
    return schedule


# --- floor -------------------------------------------------------------------------------------


def run_floor(batch: Batch) -> int:
    """The raw-aiohttp floor."""
    return asyncio.run(_floor(batch))


async def _floor(batch: Batch) -> int:
    limit = asyncio.Semaphore(batch.concurrency)
    async with floor_session() as session:

        async def one(prompt: str) -> bool:
            async with limit:
                data = await floor_prediction(session, batch.base_url, batch.model, prompt)
                data = await floor_wait(session, data, batch.schedule)
            return bool(data["status"] == "completed")

        done = await asyncio.gather(*(one(p) for p in batch.prompts), return_exceptions=True)
    return sum(outcome is True for outcome in done)


def floor_session() -> aiohttp.ClientSession:
    """One session for everything, with the key, raising on HTTP errors."""
    import aiohttp

    headers = {"Authorization": f"Bearer {API_KEY}"}
    return aiohttp.ClientSession(headers=headers, raise_for_status=True)


async def floor_prediction(
    session: aiohttp.ClientSession, base_url: str, model: str, prompt: str
) -> dict[str, Any]:
    """Submit: the task as the API describes it."""
    async with session.post(f"{base_url}/api/v3/{model}", json={"prompt": prompt}) as response:
        data: dict[str, Any] = (await response.json())["data"]
    return data


async def floor_wait(
    session: aiohttp.ClientSession, data: dict[str, Any], schedule: Schedule
) -> dict[str, Any]:
    """Poll the task's result URL on ``schedule`` until its status is terminal."""
    delays = schedule.delays()
    while data["status"] not in TERMINAL:
        await asyncio.sleep(next(delays))
        async with session.get(data["urls"]["get"]) as response:
            data = (await response.json())["data"]
    return data


# --- official ----------------------------------------------------------------------------------


def run_official(batch: Batch) -> int:
    """``wavespeed.Client.run`` in a thread pool of ``batch.concurrency`` workers.

    The SDK prints retries and tracebacks to stdout and stderr: both are swallowed.
    """
    import wavespeed

    client = wavespeed.Client(api_key=API_KEY, base_url=batch.base_url)
    quiet = io.StringIO()
    with (
        contextlib.redirect_stdout(quiet),
        contextlib.redirect_stderr(quiet),
        concurrent.futures.ThreadPoolExecutor(batch.concurrency) as pool,
    ):
        runs = [
            pool.submit(
                client.run,
                batch.model,
                {"prompt": prompt},
                timeout=3600,
                poll_interval=batch.poll_interval,
            )
            for prompt in batch.prompts
        ]
        done = sum(run.exception() is None for run in runs)
    return done


CONTENDERS: dict[str, Contender] = {OURS: run_ours, FLOOR: run_floor, OFFICIAL: run_official}
