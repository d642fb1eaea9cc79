"""A submitted task: what it was asked, and its status derived from the emulated clock.

A task's status is never stored as it progresses: it is read from the clock each time, so no
background work runs per prediction and a frozen clock freezes every task.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs

from .._wire.models import Status
from ._account import Slot
from ._clock import Clock
from ._outputs import OutputSpec

__all__ = ["TaskRecord", "TaskStatus"]


@attrs.frozen
class TaskStatus:
    """A task's status at one instant: the raw text the API would send, and the error."""

    raw: str
    error: str = ""

    @property
    def status(self) -> Status:
        """The parsed status (``UNKNOWN`` for strings the library does not know)."""
        return Status.parse(self.raw)


@attrs.define(eq=False)
class TaskRecord:
    """One submitted task. ``submitted_at`` is on the emulated clock, ``created_at`` wall time.

    ``slot`` is when it runs: from submit, or later when it waited for a concurrency slot.
    ``raw_status``, ``status`` and ``error`` are read from the clock each time.
    """

    id: str
    model: str
    input: dict[str, Any]
    created_at: dt.datetime
    submitted_at: float
    duration: float
    output: OutputSpec
    sequence: int
    clock: Clock = attrs.field(repr=False)
    webhook: str | None = None
    scripted_error: str | None = None
    forced: TaskStatus | None = None
    slot: Slot | None = None
    price: float = 0.0
    #: ``data.code`` once failed (1402: an input file could not be fetched).
    error_code: int | None = None

    @property
    def started_at(self) -> float:
        """The emulated time the task starts running (``created`` until then)."""
        return self.submitted_at if self.slot is None else self.slot.start

    @property
    def finishes_at(self) -> float:
        """The emulated time at which the task becomes terminal (unless forced)."""
        return self.started_at + self.duration

    @property
    def base64_output(self) -> bool:
        """Whether outputs are returned as bare base64 strings instead of URLs."""
        return self.input.get("enable_base64_output") is True

    @property
    def sync_mode(self) -> bool:
        """Whether the submit asked to wait for the outcome."""
        return self.input.get("enable_sync_mode") is True

    def status_at(self, now: float) -> TaskStatus:
        """The status at emulated time ``now``: created, processing, then completed or failed."""
        if self.forced is not None:
            return self.forced
        elapsed = now - self.started_at
        if elapsed >= self.duration:
            if self.scripted_error is not None:
                return TaskStatus("failed", self.scripted_error)
            return TaskStatus("completed")
        return TaskStatus("processing" if elapsed > 0 else "created")

    @property
    def raw_status(self) -> str:
        """The status string right now."""
        return self.status_at(self.clock.now()).raw

    @property
    def status(self) -> Status:
        """The parsed status right now."""
        return self.status_at(self.clock.now()).status

    @property
    def error(self) -> str:
        """The error right now ("" unless failed)."""
        return self.status_at(self.clock.now()).error
