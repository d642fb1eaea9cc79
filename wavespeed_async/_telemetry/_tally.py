"""Counters summed here and read by the SDK when it collects (asynchronous instruments).

A synchronous OpenTelemetry counter costs the SDK's whole measurement path on every ``add``
(attributes checked and hashed, a view matched, an exemplar offered): several per prediction,
it was most of the telemetry's CPU. A :class:`Tally` adds under a lock to a dict keyed by the
attribute values, and the SDK reads the sums through an observable counter once per
collection, with the same names, attributes and meaning. Histograms stay synchronous: their
distribution cannot be summed this way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from opentelemetry import metrics

__all__ = ["Tally"]

Value = str | int | None  # an attribute's value; None leaves the attribute out


class Tally:
    """A monotonic or up-down sum per combination of ``keys``' values."""

    __slots__ = ("_keys", "_lock", "_sums")

    def __init__(
        self,
        meter: metrics.Meter,
        name: str,
        unit: str,
        description: str,
        keys: tuple[str, ...],
        *,
        up_down: bool = False,
    ) -> None:
        self._keys = keys
        self._sums: dict[tuple[Value, ...], float] = {}
        self._lock = threading.Lock()  # the sync facade's loop runs in a thread of its own
        create = (
            meter.create_observable_up_down_counter if up_down else meter.create_observable_counter
        )
        create(name, callbacks=[self._observe], unit=unit, description=description)

    def add(self, amount: float, *values: Value) -> None:
        """Add ``amount`` to the sum of these attribute values (in the order of ``keys``)."""
        with self._lock:
            self._sums[values] = self._sums.get(values, 0) + amount

    def _observe(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        with self._lock:
            sums = list(self._sums.items())
        return [
            metrics.Observation(
                total,
                {
                    key: value
                    for key, value in zip(self._keys, values, strict=True)
                    if value is not None
                },
            )
            for values, total in sums
        ]
