"""Traces and metrics: the facade on its own, then the client's predictions through it.

One TracerProvider (in-memory exporter) and one MeterProvider (in-memory reader, delta
temporality) are set globally, as an application sets them: the global providers can be set
once per process, so each test reads only what it produced (``Otel.take``).
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import gc
import gzip
import logging
import os
import subprocess
import sys
import time
from typing import Any

import anyio
import attrs
import pytest
from aiohttp import web

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk records the spans")

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from wavespeed_async import Batch, BatchItem, CostLimitExceeded, Prediction, Status
from wavespeed_async._telemetry import route_of, telemetry
from wavespeed_async.emulator import Emulator, Fault
from wavespeed_async.errors import PredictionFailed, PredictionTimeout, WaveSpeedError

from .support import FLUX, SECRET_KEY, VIDEO, client_for

pytestmark = pytest.mark.anyio

_DELTA: dict[type, AggregationTemporality] = {
    Counter: AggregationTemporality.DELTA,
    UpDownCounter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
    ObservableCounter: AggregationTemporality.DELTA,  # the client's counters are observable
    ObservableUpDownCounter: AggregationTemporality.DELTA,
}


@attrs.define
class Otel:
    """The application's providers: what was exported, and the metrics since the last take."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    def take(self) -> tuple[list[ReadableSpan], dict[str, list[tuple[dict[str, Any], Any]]]]:
        """The spans ended and the metric points recorded since the last take."""
        spans = list(self.spans.get_finished_spans())
        self.spans.clear()
        points: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value: Any = getattr(point, "value", None)
                        if isinstance(point, HistogramDataPoint):
                            value = (point.count, point.sum)
                        points.setdefault(metric.name, []).append(
                            (dict(point.attributes or {}), value)
                        )
        return spans, points


_PROVIDERS: list[Otel] = []


@pytest.fixture
def otel() -> Otel:
    """The global providers (set once per process), emptied before the test."""
    if not _PROVIDERS:
        exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)
        reader = InMemoryMetricReader(preferred_temporality=_DELTA)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        _PROVIDERS.append(Otel(exporter, reader))
    providers = _PROVIDERS[0]
    providers.take()
    return providers


def total(points: list[tuple[dict[str, Any], Any]], **attributes: Any) -> Any:
    """The sum of the points whose attributes include ``attributes``."""
    return sum(
        value
        for point, value in points
        if all(point.get(name) == wanted for name, wanted in attributes.items())
    )


# --- the facade -----------------------------------------------------------------------------


def test_without_the_api_the_facade_imports_nothing_and_shares_one_idle_trace() -> None:
    probe = """
import sys
sys.modules["opentelemetry"] = None  # the otel extra is not installed: importing it fails
import wavespeed_async
from wavespeed_async._telemetry import telemetry
from wavespeed_async._telemetry._base import NOTHING, Telemetry
assert type(telemetry) is Telemetry, type(telemetry)
first, second = telemetry.prediction("a/model"), telemetry.prediction("b/model")
assert first is second is NOTHING and not first.active
with first.current(), telemetry.span("wavespeed.upload"):
    first.finish("completed")
loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
assert loaded == ["opentelemetry"], loaded  # only the blocked name, never a real module
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr


async def test_a_prediction_span_is_a_child_of_the_span_current_at_submit(otel: Otel) -> None:
    tracer = trace.get_tracer("the application")
    with tracer.start_as_current_span("POST /videos") as request:
        prediction = telemetry.prediction("google/veo3")
        prediction.submitted("task-1")
    assert trace.get_current_span() is not request

    async def engine_task() -> None:  # the poll engine's task: no caller's context in it
        prediction.checked()
        prediction.finish("completed", inference=12.5, detection_lag=0.4)

    # A task made in an empty context, as the engine's workers are: nothing of the caller's.
    await contextvars.Context().run(asyncio.get_running_loop().create_task, engine_task())

    spans, points = otel.take()
    (span,) = [span for span in spans if span.name == "generate_content google/veo3"]
    assert span.parent is not None
    assert span.parent.span_id == request.get_span_context().span_id
    assert span.context.trace_id == request.get_span_context().trace_id
    assert span.kind is trace.SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attributes = dict(span.attributes or {})
    assert attributes == {
        "wavespeed.model": "google/veo3",
        "wavespeed.prediction.id": "task-1",
        "wavespeed.prediction.status": "completed",
        "wavespeed.prediction.checks": 1,
        "wavespeed.prediction.inference_time": 12.5,
        "wavespeed.prediction.detection_lag": 0.4,
        "gen_ai.operation.name": "generate_content",
        "gen_ai.request.model": "google/veo3",
        "gen_ai.provider.name": "wavespeed",
        "gen_ai.response.id": "task-1",
    }
    assert total(points["wavespeed.predictions"], **{"wavespeed.prediction.status": "completed"})
    assert total(points["wavespeed.in_flight"]) == 0  # +1 at submit, -1 at the end
    assert points["wavespeed.detection_lag"] == [({"wavespeed.model": "google/veo3"}, (1, 0.4))]


async def test_a_failed_prediction_ends_once_with_error_and_its_type(otel: Otel) -> None:
    prediction = telemetry.prediction("wavespeed-ai/flux-dev")
    prediction.submitted("task-2")
    failed = Prediction("task-2", status=Status.FAILED, raw_status="failed", error="out of GPUs")
    prediction.finish("failed", error=PredictionFailed(failed))
    prediction.finish("completed")  # a repeated webhook delivery: ignored

    spans, points = otel.take()
    (span,) = spans
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "prediction task-2 failed: out of GPUs"
    assert dict(span.attributes or {})["error.type"] == "PredictionFailed"
    assert dict(span.attributes or {})["wavespeed.prediction.status"] == "failed"
    assert total(points["wavespeed.predictions"]) == 1


async def test_retries_and_429s_are_events_on_the_span_that_is_current(otel: Otel) -> None:
    prediction = telemetry.prediction("google/veo3")
    with prediction.current():
        telemetry.request("POST", "/api/v3/{model}", 429, None)
        telemetry.retry("/api/v3/{model}", "429", 1.0, 1)
        telemetry.request("POST", "/api/v3/{model}", 200, None)
    prediction.submitted("task-3")
    prediction.finish("completed")

    spans, points = otel.take()
    (span,) = spans
    (event,) = span.events
    assert event.name == "wavespeed.retry"
    assert dict(event.attributes or {}) == {
        "http.route": "/api/v3/{model}",
        "wavespeed.retry.reason": "429",
        "wavespeed.retry.delay": 1.0,
        "wavespeed.retry.attempt": 1,
    }
    assert total(points["wavespeed.rate_limited"]) == 1
    assert total(points["wavespeed.retries"], **{"wavespeed.retry.reason": "429"}) == 1
    assert total(points["wavespeed.requests"], **{"http.response.status_code": 200}) == 1


async def test_cost_counts_the_quote_once_accepted_then_the_billed_difference(
    otel: Otel,
) -> None:
    refused = telemetry.prediction("google/veo3")
    refused.quoted(3.2)
    refused.finish("rejected", error=ValueError("bad input"))  # never accepted: costs nothing
    accepted = telemetry.prediction("google/veo3")
    accepted.quoted(3.2)
    accepted.submitted("task-4")
    accepted.finish("completed")
    telemetry.billed("google/veo3", quoted=3.2, billed=2.4)

    spans, points = otel.take()
    assert total(points["wavespeed.cost"]) == pytest.approx(2.4)
    refused_span = next(
        span for span in spans if "wavespeed.prediction.id" not in (span.attributes or {})
    )
    assert dict(refused_span.attributes or {})["error.type"] == "ValueError"
    assert refused_span.status.description == "ValueError"  # not our text: its type only


async def test_an_operation_span_records_errors_by_type_in_the_callers_tree(otel: Otel) -> None:
    tracer = trace.get_tracer("the application")
    with (
        tracer.start_as_current_span("job") as job,
        pytest.raises(RuntimeError),
        telemetry.span("wavespeed.upload", {"wavespeed.file.size": 10}),
    ):
        raise RuntimeError("https://storage.example/put?signature=SECRET")
    spans, _ = otel.take()
    upload = next(span for span in spans if span.name == "wavespeed.upload")
    assert upload.parent is not None
    assert upload.parent.span_id == job.get_span_context().span_id
    assert upload.status.status_code is StatusCode.ERROR
    assert "SECRET" not in repr(upload.to_json())


@pytest.mark.parametrize(
    ("method", "path", "creates_task", "route"),
    [
        ("GET", "/api/v3/predictions/abc/result", False, "/api/v3/predictions/{id}/result"),
        ("GET", "/api/v3/predictions/abc", False, "/api/v3/predictions/{id}"),
        ("POST", "/api/v3/predictions/delete", False, "/api/v3/predictions/delete"),
        ("POST", "/api/v3/predictions", False, "/api/v3/predictions"),
        ("POST", "/api/v3/google/veo3", True, "/api/v3/{model}"),
        ("POST", "/api/v3/billings/search", False, "/api/v3/billings/search"),
    ],
)
def test_routes_are_templates_without_ids(
    method: str, path: str, creates_task: bool, route: str
) -> None:
    assert route_of(method, path, creates_task=creates_task) == route


# --- the client's predictions ---------------------------------------------------------------

MODEL = "wavespeed-ai/telemetry-probe"  # unlisted: 3 emulated seconds, free
APP = trace.get_tracer("the application")


def prediction_spans(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [span for span in spans if span.name == f"generate_content {MODEL}"]


async def test_six_predictions_give_six_spans_under_the_callers_span_and_six_counts(
    otel: Otel, emulator: Emulator
) -> None:
    emulator.faults.add(Fault.RATE_LIMITED, route="submit", on=[3])  # the third is retried
    prompts = ["one", "two", "three", "four [fail]", "five", "six"]
    async with client_for(emulator) as client:
        with APP.start_as_current_span("POST /generate") as request:
            futures = [await client.submit(MODEL, {"prompt": prompt}) for prompt in prompts]
        # The results arrive in the engine's tasks, outside the request's span.
        outcomes = await asyncio.gather(
            *(future.wait() for future in futures), return_exceptions=True
        )
    assert [type(outcome).__name__ for outcome in outcomes].count("PredictionFailed") == 1

    spans, points = otel.take()
    mine = prediction_spans(spans)
    assert len(mine) == 6
    request_id = request.get_span_context().span_id
    assert all(span.parent is not None and span.parent.span_id == request_id for span in mine)
    by_id = {dict(span.attributes or {})["wavespeed.prediction.id"]: span for span in mine}
    assert set(by_id) == {future.id for future in futures}
    failed = by_id[futures[3].id]
    assert failed.status.status_code is StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "PredictionFailed"
    assert dict(failed.attributes or {})["wavespeed.prediction.status"] == "failed"
    for future in futures[:3] + futures[4:]:
        span = by_id[future.id]
        assert span.status.status_code is StatusCode.UNSET
        assert dict(span.attributes or {})["wavespeed.prediction.status"] == "completed"
        assert dict(span.attributes or {})["wavespeed.prediction.checks"] in range(1, 100)
    retried = by_id[futures[2].id]
    assert [
        (event.name, dict(event.attributes or {})["wavespeed.retry.reason"])
        for event in retried.events
    ] == [("wavespeed.retry", "429")]
    assert all(not by_id[future.id].events for future in futures if future is not futures[2])

    status = "wavespeed.prediction.status"
    assert total(points["wavespeed.predictions"], **{"wavespeed.model": MODEL}) == 6
    assert total(points["wavespeed.predictions"], **{status: "completed"}) == 5
    assert total(points["wavespeed.predictions"], **{status: "failed"}) == 1
    assert total(points["wavespeed.rate_limited"]) == 1
    submits = {"http.route": "/api/v3/{model}", "http.request.method": "POST"}
    assert total(points["wavespeed.requests"], **submits, **{"http.response.status_code": 429}) == 1
    assert total(points["wavespeed.requests"], **submits, **{"http.response.status_code": 200}) == 6
    assert total(points["wavespeed.in_flight"]) == 0
    assert sum(count for _, (count, _) in points["wavespeed.prediction.duration"]) == 6
    exported = repr([span.to_json() for span in spans])
    assert SECRET_KEY not in exported
    assert "Authorization" not in exported
    assert "Bearer" not in exported


async def test_a_webhook_delivery_ends_the_span_in_the_receiving_task(
    otel: Otel, frozen: Emulator
) -> None:
    async with client_for(frozen) as client:
        with APP.start_as_current_span("POST /generate") as request:
            future = await client.submit(MODEL, {"prompt": "by webhook"})
        frozen.advance(5)
        finished = await client.get_prediction(future.id)

        async def receiver() -> None:  # a webhook handler: another task, another context
            future.deliver(finished)

        await contextvars.Context().run(asyncio.get_running_loop().create_task, receiver())

    (span,) = prediction_spans(otel.take()[0])
    assert span.parent is not None
    assert span.parent.span_id == request.get_span_context().span_id
    assert dict(span.attributes or {})["wavespeed.prediction.status"] == "completed"


async def test_an_abandoned_wait_ends_the_span_unfinished_where_the_wait_ended(
    otel: Otel, frozen: Emulator
) -> None:
    async with client_for(frozen) as client:
        future = await client.submit(MODEL, {"prompt": "never awaited again"})
        try:
            await future.wait(timeout=0.01)
        except PredictionTimeout as timed_out:
            # conftest keeps every library error (to search them for the key): without its
            # traceback, this one no longer keeps the future's frames alive.
            timed_out.__traceback__ = None
        else:
            pytest.fail("the wait did not time out")
        waited_until = time.time_ns()
        assert prediction_spans(otel.take()[0]) == []  # a later wait may still finish it
    del future  # closed, the engine holds it no more: nobody can wait on it again
    gc.collect()
    (span,) = prediction_spans(otel.take()[0])
    assert dict(span.attributes or {})["wavespeed.prediction.status"] == "unfinished"
    assert dict(span.attributes or {})["error.type"] == "PredictionTimeout"
    assert span.end_time is not None
    assert span.end_time <= waited_until


async def test_a_refused_submit_ends_its_span_with_the_error(otel: Otel, frozen: Emulator) -> None:
    frozen.balance = 0.0
    async with client_for(frozen) as client:
        with pytest.raises(WaveSpeedError):
            await client.submit("google/veo3", {"prompt": "too dear"})
    spans, points = otel.take()
    (span,) = [span for span in spans if span.name == "generate_content google/veo3"]
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["wavespeed.prediction.status"] == "rejected"
    assert (
        total(points["wavespeed.predictions"], **{"wavespeed.prediction.status": "rejected"}) == 1
    )


# --- batches and the bill -------------------------------------------------------------------


async def test_a_batch_span_parents_its_predictions_which_carry_their_quotes_and_cost_the_bill(
    otel: Otel, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = emulator.state.account.ledger
    record = ledger.record

    def dearer_video(task_id: str, model: str, price: float, at: dt.datetime) -> None:
        record(task_id, model, price * 1.5 if model == VIDEO else price, at)

    monkeypatch.setattr(ledger, "record", dearer_video)  # the bill differs from the quote
    items = [BatchItem(VIDEO, {"prompt": "a fox"}), BatchItem(FLUX, {"prompt": "a lighthouse"})]
    async with client_for(emulator) as client:
        quotes = {item.model: (await client.price(item.model, item.input)).cost for item in items}
        otel.take()
        with APP.start_as_current_span("nightly job") as job:
            batch = Batch(client, items, max_cost=10)
            results = [result async for result in batch]
    assert all(result.ok for result in results)

    spans, points = otel.take()
    (span,) = [span for span in spans if span.name == "wavespeed.batch"]
    assert span.parent is not None
    assert span.parent.span_id == job.get_span_context().span_id
    billed = quotes[VIDEO] * 1.5 + quotes[FLUX]
    attributes = dict(span.attributes or {})
    assert attributes["wavespeed.batch.items"] == 2
    assert attributes["wavespeed.batch.completed"] == 2
    assert attributes["wavespeed.batch.failed"] == 0
    assert attributes["wavespeed.cost.quoted"] == pytest.approx(sum(quotes.values()))
    assert attributes["wavespeed.cost.billed"] == pytest.approx(billed)
    batch_id = span.context.span_id
    for model, quote in quotes.items():
        (prediction,) = [span for span in spans if span.name == f"generate_content {model}"]
        assert prediction.parent is not None
        assert prediction.parent.span_id == batch_id
        assert dict(prediction.attributes or {})["wavespeed.cost.quoted"] == quote
    (billings,) = [span for span in spans if span.name == "wavespeed.account.billings"]
    assert billings.parent is not None
    assert billings.parent.span_id == batch_id
    # Counted at the quotes when accepted, then corrected to the bill.
    assert total(points["wavespeed.cost"]) == pytest.approx(billed)
    assert total(points["wavespeed.cost"], **{"wavespeed.model": FLUX}) == pytest.approx(
        quotes[FLUX]
    )


async def test_a_batch_refused_by_its_cost_limit_ends_its_span_with_the_error(
    otel: Otel, emulator: Emulator
) -> None:
    async with client_for(emulator) as client:
        batch = Batch(client, [BatchItem(VIDEO, {"prompt": "a fox"})], max_cost=0.01)
        with pytest.raises(CostLimitExceeded):
            _ = [result async for result in batch]
    spans, _ = otel.take()
    (span,) = [span for span in spans if span.name == "wavespeed.batch"]
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "CostLimitExceeded"
    assert not [span for span in spans if span.name.startswith("generate_content")]


# --- logs -----------------------------------------------------------------------------------


async def test_every_log_line_about_a_prediction_carries_its_id_as_a_field(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="wavespeed_async")
    emulator.faults.add(Fault.BAD_GATEWAY, route="result", on=[1])  # a check is retried

    def broken(prediction: Prediction) -> None:
        raise RuntimeError("the application's callback")

    async with client_for(emulator) as client:
        future = await client.submit(MODEL, {"prompt": "logged"})
        future.on_status(broken)
        await future.wait()

    about = [record for record in caplog.records if future.id in record.getMessage()]
    messages = [record.getMessage() for record in about]
    assert any(message.startswith("retrying GET") for message in messages), messages
    assert any("on_status callback" in message for message in messages), messages
    for record in about:
        assert record.__dict__["prediction_id"] == future.id, record.getMessage()
    callback = next(record for record in about if "on_status" in record.getMessage())
    assert callback.__dict__["model"] == MODEL


# --- the wire format a collector receives ---------------------------------------------------

_OTLP_APP = """
import asyncio, sys
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from wavespeed_async import AsyncWaveSpeed, PollSchedule

receiver, base_url, key, model = sys.argv[1:5]
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(receiver + "/v1/traces")))
trace.set_tracer_provider(tracer_provider)
exporter = OTLPMetricExporter(receiver + "/v1/metrics")
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
meter_provider = MeterProvider(metric_readers=[reader])
metrics.set_meter_provider(meter_provider)
schedule = PollSchedule(first_delay=0.001, min_interval=0.002, max_interval=0.01, jitter=0.1)

async def main() -> None:
    async with AsyncWaveSpeed(api_key=key, base_url=base_url, poll_schedule=schedule) as client:
        with trace.get_tracer("the application").start_as_current_span("POST /generate"):
            futures = [await client.submit(model, {"prompt": p}) for p in ("one", "two [fail]")]
        await asyncio.gather(*(future.wait() for future in futures), return_exceptions=True)
        print(" ".join(future.id for future in futures))

asyncio.run(main())
tracer_provider.shutdown()  # exports what the batch processor holds
meter_provider.shutdown()  # exports a last collection
"""


@attrs.define
class OtlpReceiver:
    """A collector's OTLP/HTTP endpoint on loopback: every request's path and raw body."""

    url: str
    received: list[tuple[str, bytes]] = attrs.field(factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.received.append((request.path, body))
        return web.Response(body=b"", content_type="application/x-protobuf")

    def bodies(self, path: str) -> list[bytes]:
        return [body for got, body in self.received if got == path]


async def test_spans_and_metrics_reach_a_collector_over_otlp_http_without_the_key(
    emulator: Emulator,
) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="the OTLP exporter")
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import Status as OtlpStatus

    app = web.Application()
    receiver = OtlpReceiver("")
    app.router.add_post("/v1/traces", receiver.handle)
    app.router.add_post("/v1/metrics", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WAVESPEED_", "OTEL_"))}
        app_argv = [sys.executable, "-c", _OTLP_APP, f"http://127.0.0.1:{port}"]
        done = await anyio.run_process(
            [*app_argv, emulator.base_url, SECRET_KEY, MODEL],
            env=env,
            check=False,
        )
    finally:
        await runner.cleanup()
    assert done.returncode == 0, done.stderr.decode()
    completed, failed = done.stdout.decode().split()

    spans = [
        span
        for body in receiver.bodies("/v1/traces")
        for resource in ExportTraceServiceRequest.FromString(body).resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    (request,) = [span for span in spans if span.name == "POST /generate"]
    mine = {
        _otlp_attributes(span)["wavespeed.prediction.id"]: span
        for span in spans
        if span.name == f"generate_content {MODEL}"
    }
    assert set(mine) == {completed, failed}
    assert all(span.parent_span_id == request.span_id for span in mine.values())
    assert all(span.trace_id == request.trace_id for span in mine.values())
    assert _otlp_attributes(mine[completed])["wavespeed.prediction.status"] == "completed"
    assert mine[failed].status.code == OtlpStatus.STATUS_CODE_ERROR
    assert _otlp_attributes(mine[failed])["error.type"] == "PredictionFailed"
    assert _otlp_attributes(mine[failed])["gen_ai.provider.name"] == "wavespeed"

    counted = [
        point.as_int
        for body in receiver.bodies("/v1/metrics")
        for resource in ExportMetricsServiceRequest.FromString(body).resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "wavespeed.predictions"
        for point in metric.sum.data_points
    ]
    assert sum(counted) == 2
    for _, body in receiver.received:  # the collector never sees the key, even encoded
        assert SECRET_KEY.encode() not in body
        assert b"Bearer" not in body
        assert b"Authorization" not in body


def _otlp_attributes(span: Any) -> dict[str, Any]:
    values = {}
    for attribute in span.attributes:
        kind = attribute.value.WhichOneof("value")
        values[attribute.key] = getattr(attribute.value, kind)
    return values
