"""What the client tells its telemetry, and the implementation that records nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager as ContextManager

__all__ = [
    "NOTHING",
    "NO_OPERATION",
    "Attributes",
    "OperationTrace",
    "PredictionTrace",
    "Telemetry",
    "about",
    "route_of",
]

#: Span and metric attributes: OpenTelemetry's primitive values only.
Attributes = Mapping[str, "str | bool | int | float"]

_NULL = contextlib.nullcontext()  # stateless: one instance serves every caller


class PredictionTrace:
    """One prediction's trace, from its submit to the last status the client saw.

    This base records nothing; :meth:`finish` may be called any number of times (the first
    one counts), from any task: the submitter's, the poll engine's, a webhook handler's.
    """

    __slots__ = ()

    @property
    def active(self) -> bool:
        """Whether anything is recorded (``False``: callers may skip building attributes)."""
        return False

    def submitted(self, prediction_id: str) -> None:
        """The platform accepted the submit and named the prediction."""

    def quoted(self, cost: float) -> None:
        """What the prediction was quoted, in USD (before or just after the submit)."""

    def checked(self) -> None:
        """A result check was sent for it."""

    def event(self, name: str, attributes: Attributes | None = None) -> None:
        """Something happened to the prediction (an uncertain submit, a delivery)."""

    def waited(self, error: BaseException) -> None:
        """A wait on the unfinished prediction ended with ``error`` (a timeout, a close)."""

    def abandon(self) -> None:
        """Nothing will wait on it again: end it where its last wait ended, unfinished."""

    def current(self) -> ContextManager[object]:
        """Make the prediction's span the current one (around its submit and each check)."""
        return _NULL

    def finish(
        self,
        status: str,
        *,
        error: BaseException | None = None,
        inference: float | None = None,
        detection_lag: float | None = None,
    ) -> None:
        """The last status the client saw (the raw text) and, if it is a failure, why.

        ``inference`` is the platform's own run time, ``detection_lag`` how long after the
        task ended the client saw it (an estimate), both in seconds.
        """


#: The one trace that records nothing, handed out when telemetry is off.
NOTHING = PredictionTrace()


class OperationTrace:
    """A long operation's trace (a batch), made current only inside the blocks it wraps.

    Not a ``with`` block of its own: a batch's results are an async generator, and a span
    made current across its ``yield`` would be the consumer's current span between results.
    """

    __slots__ = ()

    def current(self) -> ContextManager[object]:
        """Make the operation's span the current one (around a part of its work)."""
        return _NULL

    def end(self, error: BaseException | None = None, attributes: Attributes | None = None) -> None:
        """End the operation (once), with ``attributes``, as failed by ``error`` if given."""


#: The one operation trace that records nothing.
NO_OPERATION = OperationTrace()


class Telemetry:
    """The client's telemetry, recording nothing (``opentelemetry-api`` is not installed)."""

    enabled = False

    def prediction(self, model: str) -> PredictionTrace:
        """Start a prediction's trace, as a child of the caller's current span."""
        return NOTHING

    def span(self, name: str, attributes: Attributes | None = None) -> ContextManager[object]:
        """A span around an upload, a download, an account call or a batch."""
        return _NULL

    def operation(self, name: str, attributes: Attributes | None = None) -> OperationTrace:
        """Start an operation's span (a batch) under the caller's current span."""
        return NO_OPERATION

    def quoting(self, cost: float | None) -> ContextManager[object]:
        """Predictions started in the block were quoted ``cost`` USD each (a batch's quote)."""
        return _NULL

    def request(self, method: str, route: str, status: int | None, error: str | None) -> None:
        """One HTTP exchange ended: its answer's status, or the error that ended it."""

    def retry(self, route: str, reason: str, delay: float, retries: int) -> None:
        """A request will be sent again after ``delay`` seconds (``reason``: "429", ...)."""

    def billed(self, model: str, quoted: float, billed: float) -> None:
        """A prediction's billed price is known: correct the cost counted at its quote."""


def about(prediction_id: str | None, model: str | None = None) -> dict[str, str]:
    """A log line's structured fields about a prediction: ``extra=about(id, model)``.

    Log pipelines (JSON formatters, OpenTelemetry's logging handler) read ``prediction_id``
    and ``model`` from the record as fields of their own, not from the message's text.
    """
    return {"prediction_id": prediction_id or "", "model": model or ""}


def route_of(method: str, path: str, *, creates_task: bool = False) -> str:
    """The route template of an API path: ids and model ids become ``{id}`` and ``{model}``.

    >>> route_of("GET", "/api/v3/predictions/9c1d/result")
    '/api/v3/predictions/{id}/result'
    >>> route_of("POST", "/api/v3/google/veo3", creates_task=True)
    '/api/v3/{model}'
    """
    if creates_task:
        return "/api/v3/{model}"
    parts = path.split("/")
    if len(parts) > 4 and parts[:4] == ["", "api", "v3", "predictions"] and parts[4] != "delete":
        parts[4] = "{id}"
    return "/".join(parts)
