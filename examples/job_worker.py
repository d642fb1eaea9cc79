r"""A job worker on an at-least-once queue: a job delivered twice is made (and billed) once.

Job queues (SQS, Redis streams, Celery with ``acks_late``, ...) deliver a job again when its
worker did not acknowledge it in time: it crashed, or the video simply took longer than the
queue's visibility timeout. Submitting again would create, and bill, a second task. With
``idempotency_key=job.id`` the second delivery gets a future on the task the first one
created, in this process or, sharing a ``RedisCoordinator``, in any other.

    WAVESPEED_API_KEY=... REDIS_URL=redis://localhost:6379/0 \
        python examples/job_worker.py jobs.jsonl

``jobs.jsonl`` holds one ``{"id": "...", "prompt": "..."}`` per line. Run it on as many
machines as you like with the same ``REDIS_URL``: each job's video is made once. Settings from
the environment: ``WAVESPEED_API_KEY``, ``WAVESPEED_BASE_URL``, ``REDIS_URL`` (optional; without
it, only this process's repeats are caught), ``VISIBILITY_TIMEOUT`` (seconds, 60) and
``CONCURRENCY`` (4).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Iterable

import attrs

from wavespeed_async import AsyncWaveSpeed, Prediction, WaveSpeedError

log = logging.getLogger("job_worker")


@attrs.frozen
class Job:
    """One unit of work: ``id`` is the queue's message id, stable across redeliveries."""

    id: str
    prompt: str


class AtLeastOnceQueue:
    """A stand-in for a real queue: a job not acknowledged in ``visibility_timeout`` comes back."""

    def __init__(self, jobs: Iterable[Job], visibility_timeout: float) -> None:
        self.visibility_timeout = visibility_timeout
        self._ready: asyncio.Queue[Job] = asyncio.Queue()
        self._unacknowledged: set[str] = set()
        self._redeliveries: dict[str, asyncio.TimerHandle] = {}
        for job in jobs:
            self.put(job)

    def put(self, job: Job) -> None:
        """Deliver ``job`` (again)."""
        self._unacknowledged.add(job.id)
        self._ready.put_nowait(job)

    async def get(self) -> Job | None:
        """The next job, or ``None`` once every job is acknowledged."""
        while self._unacknowledged:
            try:
                job = await asyncio.wait_for(self._ready.get(), timeout=0.5)
            except asyncio.TimeoutError:
                continue
            self._forget_redelivery(job.id)
            self._redeliveries[job.id] = asyncio.get_running_loop().call_later(
                self.visibility_timeout, self.put, job
            )
            return job
        return None

    def ack(self, job: Job) -> None:
        """``job`` is done: it is not delivered again."""
        self._unacknowledged.discard(job.id)
        self._forget_redelivery(job.id)

    def _forget_redelivery(self, job_id: str) -> None:
        timer = self._redeliveries.pop(job_id, None)
        if timer is not None:
            timer.cancel()


async def handle(client: AsyncWaveSpeed, job: Job) -> Prediction:
    """Make the job's video: once per job id, however often the job is delivered."""
    future = await client.submit_text_to_video(job.prompt, idempotency_key=job.id)
    return await future


async def work(client: AsyncWaveSpeed, queue: AtLeastOnceQueue) -> dict[str, str]:
    """Take jobs until the queue is drained; the task id each delivery was answered with."""
    done: dict[str, str] = {}
    while (job := await queue.get()) is not None:
        try:
            prediction = await handle(client, job)
        except WaveSpeedError as exc:  # not acknowledged: the queue delivers it again
            log.warning("job %s failed: %s", job.id, exc)
            continue
        log.info("job %s: task %s, %s", job.id, prediction.id, prediction.outputs)
        done[job.id] = prediction.id
        queue.ack(job)
    return done


def make_client() -> AsyncWaveSpeed:
    """The client: a shared ``RedisCoordinator`` when ``REDIS_URL`` is set."""
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        return AsyncWaveSpeed()
    from wavespeed_async.redis import RedisCoordinator

    return AsyncWaveSpeed(coordinator=RedisCoordinator(redis_url, namespace="job-worker"))


def read_jobs(path: str) -> list[Job]:
    """The jobs of a JSON-lines file."""
    with open(path, encoding="utf-8") as lines:
        return [Job(**json.loads(line)) for line in lines if line.strip()]


async def main(jobs: list[Job]) -> None:
    """Run ``CONCURRENCY`` workers over ``jobs`` until all are done."""
    queue = AtLeastOnceQueue(jobs, float(os.environ.get("VISIBILITY_TIMEOUT", "60")))
    async with make_client() as client:
        workers = int(os.environ.get("CONCURRENCY", "4"))
        await asyncio.gather(*(work(client, queue) for _ in range(workers)))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    asyncio.run(main(read_jobs(sys.argv[1])))
