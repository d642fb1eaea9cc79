"""Was a submit that got no answer received? Ask the history, and believe only a proof.

A submit that was sent but not answered (the process was killed, or the client raised
:class:`SubmissionUncertain`) may or may not have created a task. The only way to know is the
account's history (``POST /api/v3/predictions``): a task of the same model, created after the
submit was sent (less some clock skew), whose ``input`` equals the payload, and that no other
item of the batch already owns. Found: the item adopts it. Not found, in a history read in
full where every unowned task shows its input: the submit created nothing, and only then may
it be sent again. Anything less (the history unreadable, too long, older than it keeps, or
tasks without their input) leaves the item *uncertain*: it is reported, never resubmitted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import attrs

from .._wire.models import Prediction
from ..errors import WaveSpeedError
from .ports import HistoryReader

__all__ = ["CLOCK_SKEW", "Pending", "Verdict", "reconcile"]

#: How far the server's clock may be ahead of ours: the history is searched from this long
#: before the submit was sent.
CLOCK_SKEW = dt.timedelta(minutes=2)
#: The history the platform keeps (7 days), less a margin: older submits cannot be proven absent.
HISTORY_REACH = dt.timedelta(days=6, hours=12)
PAGE_SIZE = 100
MAX_PAGES = 100


@attrs.frozen
class Pending:
    """A submit that may have created a task: the item's key, what was sent and when."""

    key: str
    model: str
    input: Mapping[str, Any]
    sent_at: dt.datetime


@attrs.frozen
class Verdict:
    """The history's answer for one pending submit: found, absent, or unknown (``reason``)."""

    prediction_id: str | None = None
    absent: bool = False
    reason: str = ""


async def reconcile(
    client: HistoryReader,
    pending: Sequence[Pending],
    claimed: Collection[str],
    *,
    now: dt.datetime,
) -> dict[str, Verdict]:
    """A verdict for every pending submit, reading each model's history once.

    ``claimed`` holds the task ids other items already own: a task is adopted by one item only.
    """
    verdicts: dict[str, Verdict] = {}
    owned = set(claimed)
    for model in sorted({item.model for item in pending}):
        group = sorted((item for item in pending if item.model == model), key=lambda p: p.sent_at)
        since = group[0].sent_at - CLOCK_SKEW
        if now - since > HISTORY_REACH:
            history: list[Prediction] | str = "the submit is older than the history the API keeps"
        else:
            history = await _read_history(client, model, since)
        for item in group:
            if isinstance(history, str):
                verdicts[item.key] = Verdict(reason=history)
                continue
            verdict = judge(item, history, owned)
            if verdict.prediction_id is not None:
                owned.add(verdict.prediction_id)
            verdicts[item.key] = verdict
    return verdicts


def judge(item: Pending, history: Sequence[Prediction], owned: Collection[str]) -> Verdict:
    """Match one pending submit against a complete history page set (pure)."""
    window = [
        task
        for task in history
        if task.id not in owned
        and (task.created_at is None or task.created_at >= item.sent_at - CLOCK_SKEW)
    ]
    matches = [task for task in window if task.input == dict(item.input)]
    if matches:
        oldest = min(matches, key=lambda task: (task.created_at is None, task.created_at))
        return Verdict(prediction_id=oldest.id)
    if any(not task.input for task in window):
        return Verdict(reason="the history does not show the input of some recent tasks")
    return Verdict(absent=True)


async def _read_history(
    client: HistoryReader, model: str, since: dt.datetime
) -> list[Prediction] | str:
    """Every task of ``model`` created since ``since``, or why they could not all be read."""
    tasks: dict[str, Prediction] = {}
    for page in range(1, MAX_PAGES + 1):
        try:
            items = await client.recent_predictions(
                model=model, created_after=since, page=page, page_size=PAGE_SIZE
            )
        except WaveSpeedError as exc:
            return f"the history could not be read ({exc})"
        # Newest first: tasks created meanwhile push older ones to later pages (seen twice,
        # never missed), hence the dictionary.
        tasks.update((task.id, task) for task in items)
        if len(items) < PAGE_SIZE:
            return list(tasks.values())
    return f"the history has more than {MAX_PAGES * PAGE_SIZE} tasks since the submit"
