"""Traces and metrics through OpenTelemetry, when the application turns them on.

The rest of the client talks to :data:`telemetry` only. Without ``opentelemetry-api``
(the ``otel`` extra) it is :class:`Telemetry`, whose every method does nothing and whose
prediction traces are one shared object that does nothing: nothing is imported, nothing is
allocated per prediction. With the API it is the OpenTelemetry implementation (``_otel``),
which asks the *global* providers for its tracer and meter: spans and metrics appear as soon
as the application sets a ``TracerProvider`` / ``MeterProvider``, with no setting here, and
cost the API's no-op calls until then.

What is recorded, and under which names, is listed in ``_otel.py`` and in
``docs/pages/observability.md``. Never recorded: the key, request headers, URLs with a query
(pre-signed upload and output URLs), request or output bodies.
"""

from __future__ import annotations

from ._base import (
    NO_OPERATION,
    Attributes,
    OperationTrace,
    PredictionTrace,
    Telemetry,
    about,
    route_of,
)

__all__ = [
    "NO_OPERATION",
    "Attributes",
    "OperationTrace",
    "PredictionTrace",
    "Telemetry",
    "about",
    "route_of",
    "telemetry",
]


def _load() -> Telemetry:
    try:
        from ._otel import OtelTelemetry
    except ImportError:  # the otel extra is not installed
        return Telemetry()
    return OtelTelemetry()


#: The client's telemetry: OpenTelemetry's when its API is installed, else nothing.
telemetry: Telemetry = _load()
