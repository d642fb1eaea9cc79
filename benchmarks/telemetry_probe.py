"""One telemetry mode's client CPU, in a fresh process (see :mod:`benchmarks.telemetry`).

``python -m benchmarks.telemetry_probe MODE BASE_URL COUNT TAG`` prints one JSON line. Only
the standard library is imported up front: in mode ``absent`` OpenTelemetry is made
unimportable before the client is, as if the ``otel`` extra were not installed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

MODES = ("absent", "imported", "api", "sdk")
WARM_UP = 100
#: Predictions of the isolated measure (the telemetry calls alone, no I/O).
ISOLATED = 20_000


def _configure(mode: str) -> Callable[[], None]:
    """Set the mode up; returns what flushes its telemetry (inside the timed window)."""
    if mode == "absent":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # import fails
        return lambda: None
    if mode == "api":
        return lambda: None  # the API's own no-op providers: nothing set
    if mode == "imported":  # a control: the API imported, the client's calls the no-op's
        _silence()
        return lambda: None
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Discard(SpanExporter):
        """An exporter that drops what the batch processor hands it (no network in a bench)."""

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Discard()))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    def flush() -> None:
        tracer_provider.force_flush()
        reader.get_metrics_data()  # one collection, as a periodic reader would make

    return flush


def _silence() -> None:
    """Rebind every client module's ``telemetry`` to the facade that records nothing."""
    import wavespeed_async
    from wavespeed_async import _telemetry
    from wavespeed_async._telemetry import Telemetry

    quiet = Telemetry()
    for name, module in list(sys.modules.items()):
        ours = name.startswith(wavespeed_async.__name__)
        if ours and getattr(module, "telemetry", None) is _telemetry.telemetry:
            module.telemetry = quiet


def probe(mode: str, base_url: str, count: int, tag: str) -> dict[str, Any]:
    """Warm up, then time ``count`` instant predictions and the flush of their telemetry."""
    flush = _configure(mode)
    from wavespeed_async._telemetry import telemetry

    from .contenders import CONTENDERS, OURS, Batch, Fixed

    fast = Fixed(0.005, 0.005)

    def batch(prefix: str, size: int) -> Batch:
        prompts = tuple(f"{prefix} {index}" for index in range(size))
        return Batch(base_url, "wavespeed-ai/bench-instant", prompts, size, fast, fast.interval)

    CONTENDERS[OURS](batch(f"warm {tag}", WARM_UP))
    flush()
    cpu = time.process_time()
    completed = CONTENDERS[OURS](batch(tag, count))
    flush()
    cpu = time.process_time() - cpu
    kind = type(telemetry).__name__
    isolated = _isolated(flush)
    return {
        "mode": mode,
        "telemetry": kind,
        "completed": completed,
        "cpu_s": cpu,
        "telemetry_us_per_prediction": isolated,
    }


def _isolated(flush: Callable[[], None]) -> float:
    """CPU microseconds of the telemetry calls one instant prediction makes, alone.

    The same calls, in the same order, as the client makes for a prediction submitted and
    seen completed by its first check: far less noisy than the difference of two end-to-end
    runs on a shared machine.
    """
    from wavespeed_async._telemetry import route_of, telemetry

    def one(index: int) -> None:
        trace = telemetry.prediction("wavespeed-ai/bench-instant")
        with trace.current():
            if telemetry.enabled:
                route = route_of("POST", "/api/v3/wavespeed-ai/bench-instant", creates_task=True)
                telemetry.request("POST", route, 200, None)
        trace.submitted(f"task-{index}")
        with trace.current():
            trace.checked()
            if telemetry.enabled:
                route = route_of("GET", f"/api/v3/predictions/task-{index}/result")
                telemetry.request("GET", route, 200, None)
        trace.finish("completed", inference=0.001, detection_lag=0.004)

    for index in range(1000):  # warm-up
        one(index)
    flush()
    cpu = time.process_time()
    for index in range(ISOLATED):
        one(index)
    flush()
    return (time.process_time() - cpu) / ISOLATED * 1e6


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the probe process."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.telemetry_probe")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("base_url")
    parser.add_argument("count", type=int)
    parser.add_argument("tag")
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.mode, args.base_url, args.count, args.tag)), flush=True)


if __name__ == "__main__":
    main()
