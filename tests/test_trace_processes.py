"""One trace across processes: a web request in one worker, its webhook delivery in another.

Two workers of ``examples/fastapi_service.py`` share a real Redis; each exports its spans
over OTLP/HTTP (the example's own set-up, turned on by ``OTEL_EXPORTER_OTLP_ENDPOINT``) to a
collector on loopback that the test owns. The request carries the test's ``traceparent``; the
emulator delivers the finished video to the *other* worker, whose delivery is fanned out
through Redis to the submitter's future, which ends the prediction span there.
"""

from __future__ import annotations

import gzip
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.abc
import attrs
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from wavespeed_async.emulator import Emulator

from .redis_server import RedisServer
from .support import free_port, wait_until_up

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # subprocesses

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk (the test extra)")
pytest.importorskip(
    "opentelemetry.instrumentation.fastapi", reason="opentelemetry-instrumentation-fastapi"
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status  # noqa: E402

ROOT = Path(__file__).parent.parent
KEY = "sk-trace-" + secrets.token_hex(8)
TRACE_ID = secrets.token_bytes(16)
CALLER_SPAN_ID = secrets.token_bytes(8)  # the span of whoever called the service


@attrs.define
class Collector:
    """An OTLP/HTTP trace endpoint on loopback: every export's raw body, and its spans."""

    bodies: list[bytes] = attrs.field(factory=list)
    _arrived: anyio.Condition = attrs.field(factory=anyio.Condition)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.bodies.append(body)
        async with self._arrived:
            self._arrived.notify_all()
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def wait_for_prediction(self, prediction_id: str) -> None:
        """Until a span of this prediction has arrived."""
        async with self._arrived:
            while not self.prediction_spans(prediction_id):
                await self._arrived.wait()

    def prediction_spans(self, prediction_id: str) -> list[tuple[str, Span]]:
        """The spans of one prediction, with the process that sent each."""
        return [
            (service, span)
            for service, span in self.spans()
            if attributes(span).get("wavespeed.prediction.id") == prediction_id
        ]

    def spans(self) -> list[tuple[str, Span]]:
        """Every span received, with the ``service.name`` of the process that sent it."""
        found: list[tuple[str, Span]] = []
        for body in self.bodies:
            for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
                service = attributes(resource.resource)["service.name"]
                for scope in resource.scope_spans:
                    found.extend((service, span) for span in scope.spans)
        return found


def attributes(item: Any) -> dict[str, Any]:
    """A span's (or resource's) attributes as a dict."""
    return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in item.attributes}


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, str]]:
    """The collector and its base URL (OTLP/HTTP adds ``/v1/traces``)."""
    collector = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", collector.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield collector, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@attrs.frozen
class Worker:
    """One worker process of the example service."""

    base: str
    pid: str


@asynccontextmanager
async def two_workers(
    emu: Emulator, redis_url: str, collector: str, tmp_path: Path
) -> AsyncIterator[dict[str, Worker]]:
    """Workers ``a`` and ``b`` of the example on one Redis namespace, exporting to ``collector``.

    The service's public URL is b's, so every delivery goes to b. Both stop on the way out,
    which flushes the spans they hold.
    """
    ports = {"a": free_port(), "b": free_port()}
    bases = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    namespace = f"trace-{uuid.uuid4().hex}"
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("WAVESPEED_", "OTEL_"))}
    processes: dict[str, anyio.abc.Process] = {}
    redis = aioredis.Redis.from_url(redis_url)
    try:
        for name, port in ports.items():
            env = {
                **inherited,
                "WAVESPEED_API_KEY": KEY,
                "WAVESPEED_BASE_URL": emu.base_url,
                "PORT": str(port),
                "PUBLIC_URL": bases["b"],
                "REDIS_URL": redis_url,
                "REDIS_NAMESPACE": namespace,
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector,
                "OTEL_SERVICE_NAME": f"generations-{name}",
                "OTEL_BSP_SCHEDULE_DELAY": "50",  # ms: export soon after a span ends
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
                ),
            }
            with (tmp_path / f"{name}.log").open("wb") as output:
                processes[name] = await anyio.open_process(
                    [sys.executable, str(ROOT / "examples" / "fastapi_service.py")],
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
        workers = {}
        async with aiohttp.ClientSession() as session:
            for name, process in processes.items():
                log = tmp_path / f"{name}.log"
                pid = await wait_until_up(session, bases[name], process, log)
                workers[name] = Worker(bases[name], pid)
        with anyio.fail_after(10):  # both workers' coordinators hear deliveries
            while (await redis.pubsub_numsub(f"{namespace}:deliveries"))[0][1] < 2:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        yield workers
    finally:
        await redis.aclose()
        for process in processes.values():
            process.terminate()
        with anyio.fail_after(15):
            for process in processes.values():
                await process.wait()


async def test_the_prediction_span_is_under_the_request_span_when_another_process_gets_its_webhook(
    redis_server: RedisServer, collector: tuple[Collector, str], tmp_path: Path
) -> None:
    received, endpoint = collector
    state: dict[str, Any] = {}
    async with (
        Emulator(api_key=KEY, speed=0) as emu,
        two_workers(emu, redis_server.url, endpoint, tmp_path) as workers,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(
            f"{workers['a'].base}/generations",
            json={"prompt": "a fox"},
            headers={"traceparent": f"00-{TRACE_ID.hex()}-{CALLER_SPAN_ID.hex()}-01"},
        ) as answer:
            assert answer.status == 202, await answer.text()
            generation = (await answer.json())["id"]

        emu.advance(30)  # the video is done: the emulator POSTs it to worker b
        with anyio.move_on_after(10):
            while "resolved_at" not in state or "delivered_to" not in state:
                async with session.get(f"{workers['a'].base}/generations/{generation}") as answer:
                    state = await answer.json()
                await anyio.sleep(0.02)
        with anyio.move_on_after(10):  # the batch processor's next export
            await received.wait_for_prediction(generation)
    model = emu.tasks[generation].model
    polls = [r for r in emu.requests if r.path.endswith("/result")]
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("a", "b")}

    # Worker a submitted; the delivery reached worker b and finished a's future from there.
    assert state.get("status") == "completed", (state, emu.webhooks.deliveries, logs)
    assert (state["submitted_by"], state["delivered_to"], state["resolved_by"]) == (
        workers["a"].pid,
        workers["b"].pid,
        workers["a"].pid,
    )
    assert polls == []  # finished by the fanned-out delivery, not by polling

    spans = received.spans()
    (request,) = server_spans(spans, "generations-a", "POST /generations")
    assert request.trace_id == TRACE_ID
    assert request.parent_span_id == CALLER_SPAN_ID  # the caller's traceparent, continued
    exported = received.prediction_spans(generation)
    assert [(service, span.name) for service, span in exported] == [
        ("generations-a", f"generate_content {model}")  # the submitter ends and exports it
    ], logs
    ((_, prediction),) = exported
    assert prediction.trace_id == TRACE_ID
    assert prediction.parent_span_id == request.span_id
    assert attributes(prediction)["wavespeed.prediction.status"] == "completed"
    assert prediction.status.code != Status.STATUS_CODE_ERROR
    # Worker b served the delivery, in a trace of its own (the platform sends no traceparent).
    (webhook,) = server_spans(spans, "generations-b", "POST /webhooks/wavespeed")
    assert webhook.trace_id != TRACE_ID
    for body in received.bodies:  # the collector never sees the key, even encoded
        assert KEY.encode() not in body
        assert b"Bearer" not in body
        assert b"Authorization" not in body


def server_spans(spans: list[tuple[str, Span]], service: str, name: str) -> list[Span]:
    """The server spans called ``name`` that ``service`` exported."""
    return [
        span
        for exporter, span in spans
        if exporter == service and span.kind == Span.SPAN_KIND_SERVER and span.name == name
    ]
