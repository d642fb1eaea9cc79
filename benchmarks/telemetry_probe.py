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

MODES = ("absent", "api", "sdk")
WARM_UP = 100


def _configure(mode: str) -> Callable[[], None]:
    """Set the mode up; returns what flushes its telemetry (inside the timed window)."""
    if mode == "absent":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # import fails
        return lambda: None
    if mode == "api":
        return lambda: None  # the API's own no-op providers: nothing set
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
    return {"mode": mode, "telemetry": kind, "completed": completed, "cpu_s": cpu}


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
