"""The values a batch deals in: its items, their progress events and their results."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import attrs

from .._wire.convert import unstructure_payload
from .._wire.models import ImageEdit, Prediction, Status, TextToVideo
from .._wire.protocol import check_model_id
from ..errors import InvalidInput, WaveSpeedError

__all__ = [
    "BatchEvent",
    "BatchInput",
    "BatchItem",
    "EventKind",
    "ItemResult",
    "Outcome",
    "ProgressCallback",
]

EventKind = Literal["submitted", "status", "completed", "failed"]
Outcome = Literal["completed", "failed", "uncertain", "unfinished"]


def _json_input(payload: Mapping[str, Any] | Any) -> dict[str, Any]:
    # Through JSON once, so what is compared later (journal, history) has the same types.
    body = unstructure_payload(payload)
    try:
        loaded: dict[str, Any] = json.loads(json.dumps(body))
    except (TypeError, ValueError) as exc:
        raise InvalidInput("input", body, f"JSON values only ({exc})") from None
    return loaded


@attrs.frozen
class BatchItem:
    """One item of a batch: a model id and its input (the JSON body to submit).

    >>> BatchItem("wavespeed-ai/flux-dev", {"prompt": "a lighthouse"})
    BatchItem(model='wavespeed-ai/flux-dev', input={'prompt': 'a lighthouse'})
    """

    model: str = attrs.field(converter=check_model_id)
    input: dict[str, Any] = attrs.field(converter=_json_input)

    @classmethod
    def of(cls, value: BatchInput) -> BatchItem:
        """An item from a payload model (``TextToVideo``, ...), a pair, or an item."""
        if isinstance(value, BatchItem):
            return value
        model = getattr(type(value), "model_id", None)
        if isinstance(model, str):
            return cls(model, value)
        if isinstance(value, tuple) and len(value) == 2:
            return cls(value[0], value[1])
        raise InvalidInput(
            "item", value, "a payload model (TextToVideo, ImageEdit), a BatchItem or (model, input)"
        )


BatchInput = BatchItem | TextToVideo | ImageEdit | tuple[str, Mapping[str, Any]]


@attrs.frozen
class BatchEvent:
    """Progress of one item, as it happens.

    ``kind`` is ``"submitted"`` (a task exists for the item: created now, or found by id in
    the journal or the history, then ``resumed`` is true), ``"status"`` (the task's status
    changed), ``"completed"`` (with ``files`` saved) or ``"failed"`` (with ``error``; also for
    an item whose outcome is not known, see :class:`ItemResult`). Items a journal records as
    finished get one ``completed`` or ``failed`` event with ``resumed`` set.
    """

    kind: EventKind
    index: int
    item: BatchItem
    prediction_id: str | None = None
    status: Status | None = None
    error: WaveSpeedError | None = None
    files: tuple[Path | str, ...] = ()
    resumed: bool = False


class ProgressCallback(Protocol):
    """What ``on_event`` is called with: one :class:`BatchEvent` at a time, in the loop.

    It should return quickly; an exception it raises is logged and the batch goes on.
    """

    def __call__(self, event: BatchEvent, /) -> None:
        """Take one event (called in the batch's task: return quickly)."""
        ...


@attrs.frozen
class ItemResult:
    """How one item ended.

    ``outcome`` is ``"completed"`` (``prediction`` and ``files``), ``"failed"`` (the task
    failed, or the input was refused: ``error``), ``"uncertain"`` (a submit may have created a
    task the history could not confirm: it was not resubmitted; ``error`` is a
    :class:`SubmissionUncertain`), or ``"unfinished"`` (the outcome is not known yet: a wait's
    deadline, a network failure, a failed download; with a journal a re-run resumes it).
    ``resumed`` is true when the journal already knew the outcome.
    """

    index: int
    item: BatchItem
    outcome: Outcome
    prediction_id: str | None = None
    prediction: Prediction | None = None
    error: WaveSpeedError | None = None
    files: tuple[Path | str, ...] = ()
    resumed: bool = False

    @property
    def ok(self) -> bool:
        """Whether the item completed."""
        return self.outcome == "completed"

    def value(self) -> Prediction | WaveSpeedError:
        """The prediction if the item completed, else its error."""
        if self.prediction is not None and self.ok:
            return self.prediction
        assert self.error is not None
        return self.error
