"""Was a submit that got no answer received? Ask the history, and believe only a proof.

A submit that was sent but not answered (the process was killed, or the client raised
:class:`SubmissionUncertain`) may or may not have created a task. The only way to know is the
account's history (``POST /api/v3/predictions``): a task of the same model, created after the
submit was sent (less some clock skew), whose ``input`` equals the payload, and that no other
item of the batch already owns. Found: the item adopts it.

Absence needs proof. The history can lag (a new task may be missing from it for a while), so
an empty answer proves nothing by itself, however long after the submit it comes. The submit
created nothing only if the history, read in full with every unowned task showing its input,
*also* lists a later task of the account: one created after the submit's failure plus the
clock skew (:data:`CLOCK_SKEW`), which shows that the history has caught up past the moment
the submit could have created its task. The proof is read first, the model's tasks after it.
Anything less (no later task yet, the history unreadable, too long, older than it keeps, or
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
    """A submit that may have created a task: the item's key, what was sent and when.

    ``sent_at`` is the earliest its task could have been created; ``proof_after`` the latest
    (when the submit's failure was seen, or the claimant was found dead), ``sent_at`` if not
    given. A task of the account created after ``proof_after`` + :data:`CLOCK_SKEW`, listed in
    the history, proves the history shows every task the submit could have created.
    """

    key: str
    model: str
    input: Mapping[str, Any]
    sent_at: dt.datetime
    proof_after: dt.datetime | None = None

    @property
    def horizon(self) -> dt.datetime:
        """The history proves absence once it lists a task created after this moment."""
        return max(self.sent_at, self.proof_after or self.sent_at) + CLOCK_SKEW


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
    if not pending:
        return verdicts
    # First the proof that the history has caught up, then the tasks: a history read before
    # the proof could still miss a task the proof's later read shows.
    newest = await _newest_after(client, min(item.horizon for item in pending))
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
            verdict = judge(item, history, owned, newest)
            if verdict.prediction_id is not None:
                owned.add(verdict.prediction_id)
            verdicts[item.key] = verdict
    return verdicts


def judge(
    item: Pending,
    history: Sequence[Prediction],
    owned: Collection[str],
    newest: dt.datetime | str | None,
) -> Verdict:
    """Match one pending submit against a complete history page set (pure).

    ``newest`` is when the newest task the history listed was created (read before
    ``history``), ``None`` when it listed none, or why it could not be read.
    """
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
    if isinstance(newest, str):
        return Verdict(reason=newest)
    if newest is None or newest <= item.horizon:
        return Verdict(
            reason="the history lists no later task of the account yet (none created after"
            f" {item.horizon:%Y-%m-%d %H:%M:%S}Z), so it may not show this submit's task"
            " yet: absence is not proven"
        )
    return Verdict(absent=True)


async def _newest_after(client: HistoryReader, after: dt.datetime) -> dt.datetime | str | None:
    """When the newest task the history lists was created, if after ``after``; or why not read."""
    try:
        items = await client.recent_predictions(created_after=after, page=1, page_size=1)
    except WaveSpeedError as exc:
        return f"the history could not be read ({exc})"
    stamps = [task.created_at for task in items if task.created_at is not None]
    return max(stamps) if stamps else None


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
