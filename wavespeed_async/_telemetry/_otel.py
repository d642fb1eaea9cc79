"""The OpenTelemetry implementation of the client's telemetry (imported only with the API).

Spans (tracer ``wavespeed_async``, kind CLIENT):

- one per prediction, ``generate_content {model}`` (the GenAI convention's name), from the
  submit to the last status the client saw, parented to the caller's current span *at submit
  time* however the result arrives (a poll in the engine's tasks, a webhook). Attributes:
  ``wavespeed.prediction.id``, ``wavespeed.model``, ``wavespeed.prediction.status``,
  ``wavespeed.prediction.checks``, ``wavespeed.prediction.detection_lag`` and
  ``wavespeed.prediction.inference_time`` (s), ``wavespeed.cost.quoted`` (USD), and
  ``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.provider.name``,
  ``gen_ai.response.id``. A failed, timed-out, refused or uncertain prediction has status
  ERROR and ``error.type``.
- retries, 429s and an uncertain submit are *events* on the span the request belongs to (the
  prediction's, for its submit and checks): they are moments inside one operation, not
  operations of their own, and a span per retry would multiply the spans of a busy batch
  while telling no more. Their attributes: route template, reason, delay, attempt; never a
  header, a key or a URL.
- ``wavespeed.upload``, ``wavespeed.download``, ``wavespeed.account.*`` around those
  operations, and ``wavespeed.batch`` (INTERNAL, :class:`OtelOperation`) the parent of a
  batch's predictions, in the caller's tree.

Metrics (meter ``wavespeed_async``; the counters are observable, summed in ``_tally.py`` and
read when the SDK collects): ``wavespeed.predictions`` (counter, by model and final status),
``wavespeed.requests`` (counter, by method, route template and status code or error type),
``wavespeed.prediction.duration`` and ``wavespeed.detection_lag`` (histograms, s),
``wavespeed.in_flight`` (up-down counter), ``wavespeed.cost`` (USD: the quote when the submit
is accepted, then the difference when the billed price is known; an up-down counter, since a
correction may be negative), ``wavespeed.rate_limited`` (429 answers) and
``wavespeed.retries`` (by route and reason).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager as ContextManager
from importlib import metadata
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ._base import Attributes, OperationTrace, PredictionTrace, Telemetry
from ._tally import Tally

__all__ = ["OtelOperation", "OtelPrediction", "OtelTelemetry"]

_SCOPE = "wavespeed_async"
_PROVIDER = "wavespeed"  # gen_ai.provider.name
_OPERATION = "generate_content"  # gen_ai.operation.name: media from a prompt
#: Seconds: from a fraction of a poll interval to a long video's queue and run.
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)
MODEL = "wavespeed.model"
STATUS = "wavespeed.prediction.status"
#: The quote of the predictions started in a ``quoting`` block (a batch's, per item).
_QUOTE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "wavespeed_quote", default=None
)


def _version() -> str:
    try:
        return metadata.version("wavespeed-async")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0"


def _histogram(meter: metrics.Meter, name: str, description: str) -> metrics.Histogram:
    try:  # bucket advice arrived in opentelemetry-api 1.30; older APIs use the SDK's defaults
        return meter.create_histogram(
            name, unit="s", description=description, explicit_bucket_boundaries_advisory=_SECONDS
        )
    except TypeError:
        return meter.create_histogram(name, unit="s", description=description)


class OtelTelemetry(Telemetry):
    """Spans and metrics from the global providers (no-ops until the application sets them)."""

    enabled = True

    def __init__(self) -> None:
        version = _version()
        # Proxies of the global providers: they follow a provider set later, so importing
        # the client before configuring OpenTelemetry loses nothing.
        self.tracer = trace.get_tracer(_SCOPE, version)
        meter = metrics.get_meter(_SCOPE, version)
        # Counters are tallies (see _tally.py): the SDK reads them when it collects.
        self.predictions = Tally(
            meter,
            "wavespeed.predictions",
            "{prediction}",
            "Predictions ended, by model and status.",
            (MODEL, STATUS),
        )
        self.requests = Tally(
            meter,
            "wavespeed.requests",
            "{request}",
            "HTTP requests, by route and status code.",
            ("http.request.method", "http.route", "http.response.status_code", "error.type"),
        )
        self.duration = _histogram(
            meter, "wavespeed.prediction.duration", "From submit to the last status seen."
        )
        self.detection_lag = _histogram(
            meter, "wavespeed.detection_lag", "From a task's end to the client seeing it."
        )
        self.in_flight = Tally(
            meter,
            "wavespeed.in_flight",
            "{prediction}",
            "Predictions submitted and not yet ended.",
            (MODEL,),
            up_down=True,
        )
        self.cost = Tally(
            meter,
            "wavespeed.cost",
            "USD",
            "Spend: quoted at submit, corrected to the billed price.",
            (MODEL,),
            up_down=True,
        )
        self.rate_limited = Tally(
            meter, "wavespeed.rate_limited", "{response}", "429 answers, by route.", ("http.route",)
        )
        self.retries = Tally(
            meter,
            "wavespeed.retries",
            "{retry}",
            "Requests sent again, by route and reason.",
            ("http.route", "wavespeed.retry.reason"),
        )

    def prediction(self, model: str) -> PredictionTrace:
        """Start a prediction's span under the caller's current span."""
        return OtelPrediction(self, model)

    def span(self, name: str, attributes: Attributes | None = None) -> ContextManager[object]:
        """A CLIENT span made current for the block; an exception sets ERROR and its type."""
        return self._span(name, attributes)

    @contextlib.contextmanager
    def _span(self, name: str, attributes: Attributes | None) -> Iterator[object]:
        with self.tracer.start_as_current_span(
            name,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,  # a traceback is not needed, and may quote anything
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                _set_error(span, *_describe(exc))
                raise

    def operation(self, name: str, attributes: Attributes | None = None) -> OperationTrace:
        """An INTERNAL span under the caller's current span, current only where asked."""
        return OtelOperation(
            self.tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes)
        )

    def quoting(self, cost: float | None) -> ContextManager[object]:
        """Hand ``cost`` to the predictions started in the block (their span and cost)."""
        return self._quoting(cost)

    @contextlib.contextmanager
    def _quoting(self, cost: float | None) -> Iterator[None]:
        token = _QUOTE.set(cost)
        try:
            yield
        finally:
            _QUOTE.reset(token)

    def request(self, method: str, route: str, status: int | None, error: str | None) -> None:
        """Count one HTTP exchange (and a 429)."""
        self.requests.add(1, method, route, status, error)
        if status == 429:
            self.rate_limited.add(1, route)

    def retry(self, route: str, reason: str, delay: float, retries: int) -> None:
        """Count a retry and put it on the current span as an event."""
        self.retries.add(1, route, reason)
        trace.get_current_span().add_event(
            "wavespeed.retry",
            {
                "http.route": route,
                "wavespeed.retry.reason": reason,
                "wavespeed.retry.delay": delay,
                "wavespeed.retry.attempt": retries,
            },
        )

    def billed(self, model: str, quoted: float, billed: float) -> None:
        """Move the cost counted at the quote to the billed price."""
        if billed != quoted:
            self.cost.add(billed - quoted, model)


class OtelPrediction(PredictionTrace):
    """One prediction's span and the metrics it ends with."""

    __slots__ = (
        "_checks",
        "_ended",
        "_model",
        "_owner",
        "_quoted",
        "_span",
        "_started",
        "_wait_end",
        "_wait_error",
    )

    def __init__(self, owner: OtelTelemetry, model: str) -> None:
        self._owner = owner
        self._model = model
        self._checks = 0
        self._quoted: float | None = None
        self._ended = False
        self._started = time.monotonic()
        self._wait_error: tuple[str, str] | None = None  # kept as text: no traceback
        self._wait_end: tuple[float, int] | None = None  # monotonic and epoch ns
        self._span = owner.tracer.start_span(
            f"{_OPERATION} {model}",
            context=otel_context.get_current(),  # the caller's, captured now, at submit
            kind=SpanKind.CLIENT,
            attributes={
                MODEL: model,
                "gen_ai.operation.name": _OPERATION,
                "gen_ai.request.model": model,
                "gen_ai.provider.name": _PROVIDER,
            },
        )
        owner.in_flight.add(1, model)
        quote = _QUOTE.get()
        if quote is not None:
            self.quoted(quote)

    @property
    def active(self) -> bool:
        """Whether the span records (a provider is set and sampled it)."""
        return self._span.is_recording()

    def submitted(self, prediction_id: str) -> None:
        """Name the prediction on its span; count its quote as spent."""
        self._span.set_attribute("wavespeed.prediction.id", prediction_id)
        self._span.set_attribute("gen_ai.response.id", prediction_id)
        if self._quoted is not None:
            self._owner.cost.add(self._quoted, self._model)

    def quoted(self, cost: float) -> None:
        """Remember the quote (counted as spent once the submit is accepted)."""
        self._quoted = cost
        self._span.set_attribute("wavespeed.cost.quoted", cost)

    def checked(self) -> None:
        """Count a result check."""
        self._checks += 1

    def event(self, name: str, attributes: Attributes | None = None) -> None:
        """An event on the prediction's span."""
        self._span.add_event(name, attributes)

    def waited(self, error: BaseException) -> None:
        """Remember how and when the latest wait ended."""
        # Not the exception: its traceback holds the future's frames, and this trace is held
        # by the future's finalizer, which would then never run.
        self._wait_error = _describe(error)
        self._wait_end = (time.monotonic(), time.time_ns())

    def abandon(self) -> None:
        """End the span unfinished, at the end of the last wait (or now, if none)."""
        if not self._ended and self._wait_error is not None:
            _set_error(self._span, *self._wait_error)
        self.finish("unfinished", _end=self._wait_end)

    def current(self) -> ContextManager[object]:
        """The prediction's span as the current one (retries inside land on it)."""
        return trace.use_span(
            self._span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        )

    def finish(
        self,
        status: str,
        *,
        error: BaseException | None = None,
        inference: float | None = None,
        detection_lag: float | None = None,
        _end: tuple[float, int] | None = None,
    ) -> None:
        """End the span (once) and record the prediction's metrics."""
        if self._ended:
            return
        self._ended = True
        span, owner, model = self._span, self._owner, self._model
        if span.is_recording():  # else nobody reads them: build nothing
            ended_with: dict[str, Any] = {
                STATUS: status,
                "wavespeed.prediction.checks": self._checks,
            }
            if inference is not None:
                ended_with["wavespeed.prediction.inference_time"] = inference
            if detection_lag is not None:
                ended_with["wavespeed.prediction.detection_lag"] = detection_lag
            span.set_attributes(ended_with)  # one call: the SDK takes its lock once
            if error is not None:
                _set_error(span, *_describe(error))
        if detection_lag is not None:
            owner.detection_lag.record(detection_lag, {MODEL: model})
        owner.predictions.add(1, model, status)
        ended, end_time = _end or (time.monotonic(), None)
        owner.duration.record(ended - self._started, {MODEL: model, STATUS: status})
        owner.in_flight.add(-1, model)
        span.end(end_time)


class OtelOperation(OperationTrace):
    """A span started now and ended by :meth:`end`; current inside :meth:`current` only."""

    __slots__ = ("_ended", "_span")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._ended = False

    def current(self) -> ContextManager[object]:
        """The operation's span as the current one (what starts inside becomes its child)."""
        return trace.use_span(
            self._span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        )

    def end(self, error: BaseException | None = None, attributes: Attributes | None = None) -> None:
        """End the span once, with ``attributes``; ERROR with the error's type if ``error``."""
        if self._ended:
            return
        self._ended = True
        if attributes:
            self._span.set_attributes(attributes)
        if error is not None:
            _set_error(self._span, *_describe(error))
        self._span.end()


def _describe(error: BaseException) -> tuple[str, str]:
    """An error's type, and a description: the library's own (key-free) text, else the type."""
    from ..errors import WaveSpeedError  # the errors module never imports telemetry

    kind = type(error).__name__
    return kind, (str(error) if isinstance(error, WaveSpeedError) else kind)[:300]


def _set_error(span: trace.Span, kind: str, description: str) -> None:
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, description))
