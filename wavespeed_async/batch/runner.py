"""The batch runner: a concurrency limit, progress events, a journal, and resuming from it.

Resuming, item by item, from what the journal says:

- ``completed`` / ``failed``: skipped (``failed`` is retried with ``retry_failed``);
- ``submitted`` (an id): polled by id, before anything new is submitted;
- ``submitting`` without an id (the process died between sending a submit and recording its
  answer): looked up in the history (``_reconcile.py``) and adopted if found; submitted
  again only if the history proves it absent, otherwise reported ``uncertain``;
- nothing, or ``unsent``: submitted.

A :class:`SubmissionUncertain` during a run is handled the same way, at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from pathlib import Path
from typing import Any, TypeVar

import anyio

from .._engine.polling import PollSchedule
from .._engine.ports import BatchClient
from .._engine.reconcile import Pending, Verdict, reconcile
from .._http import files as _files
from .._storage.url import parse_destination
from .._telemetry import NO_OPERATION, OperationTrace, about, telemetry
from .._wire.models import ImageEdit, Prediction
from ..errors import (
    InvalidInput,
    PredictionFailed,
    SubmissionUncertain,
    WaveSpeedError,
)
from ..future import PredictionFuture
from .cost import BillCheck, CostGuard, read_bill
from .items import (
    BatchEvent,
    BatchInput,
    BatchItem,
    EventKind,
    ItemResult,
    Outcome,
    ProgressCallback,
)
from .journal import Entry, Journal, JournalError, MemoryJournal, item_keys, utc_now
from .outcome import FATAL, outcome_of

__all__ = ["Batch"]

log = logging.getLogger(__name__)
T = TypeVar("T")

UNCERTAIN_ROUNDS = 3


class Batch:
    """A batch run: iterate it for an :class:`ItemResult` per item, in the order they finish.

    >>> batch = Batch(client, [TextToVideo(p) for p in prompts], concurrency=20,
    ...               journal="run.jsonl", out="videos/")              # doctest: +SKIP
    >>> async for result in batch:                                     # doctest: +SKIP
    ...     print(result.index, result.outcome, result.files)

    At most ``concurrency`` items are in flight (submitted and not finished); items a journal
    shows as submitted are polled first. ``out`` saves each completed item's outputs there.
    ``timeout`` bounds each item's wait (default: the client's ``wait_timeout``), and
    ``poll_schedule`` replaces the client's. ``on_event`` receives every :class:`BatchEvent`.
    ``settle`` is how old (seconds) an unanswered submit must be before the history is
    trusted to show it. A journal's failed items are skipped unless ``retry_failed``. A local
    ``image`` of an ``ImageEdit`` item is uploaded when it is submitted. ``max_cost`` (USD)
    quotes the items to submit first and refuses to start (:class:`CostLimitExceeded`, no
    task created) when they pass it or the balance; a submit that would take the spend so far
    past it is not sent (its item ends ``unfinished`` with that error). After such a run,
    :attr:`bill` compares the quotes with what the predictions were billed (logged; a drift
    over 1% is a warning naming the predictions that differ). See ``cost.py``. With
    OpenTelemetry on, the run is a ``wavespeed.batch`` span, its predictions' spans' parent.

    :meth:`stop` ends the run early: nothing more is submitted, submits already sent are
    waited for (so the journal gets their ids), and waits stop (the remote tasks keep
    running; a re-run with the journal polls them). Errors about the whole batch (a wrong key,
    an empty balance, an unusable journal) are raised from the iteration.
    """

    def __init__(
        self,
        client: BatchClient,
        items: Iterable[BatchInput],
        *,
        concurrency: int = 10,
        journal: str | os.PathLike[str] | None = None,
        out: str | os.PathLike[str] | None = None,
        on_event: ProgressCallback | None = None,
        timeout: float | None = None,
        poll_schedule: PollSchedule | None = None,
        retry_failed: bool = False,
        settle: float = 2.0,
        max_cost: float | None = None,
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidInput("concurrency", concurrency, "an integer of at least 1")
        self.items = [BatchItem.of(item) for item in items]
        self._keys = item_keys([(item.model, item.input) for item in self.items])
        self._client = client
        self._concurrency = concurrency
        self._journal_path = None if journal is None else Path(journal)
        self._journal: Journal = MemoryJournal()
        # Checked now (an unknown scheme is refused before any submit), kept as given: a
        # store URL is not a Path.
        self._out = out
        if out is not None:
            parse_destination(out, field="out")
        self._on_event = on_event
        self._timeout = timeout
        self._poll_schedule = poll_schedule
        self._retry_failed = retry_failed
        self._settle = settle
        self._stopping = False
        self._stopped = asyncio.Event()
        self._claimed: set[str] = set()  # task ids owned by some item
        self._locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(
            asyncio.Lock
        )
        self._started = False
        self._guard = None if max_cost is None else CostGuard(max_cost)
        self._trace: OperationTrace = NO_OPERATION
        self._ended: collections.Counter[bool] = collections.Counter()  # by ``result.ok``
        #: Quoted against billed, once a run with ``max_cost`` has ended (else ``None``).
        self.bill: BillCheck | None = None

    def stop(self) -> None:
        """Stop early (see the class docstring); call it from the loop (a task, a callback)."""
        self._stopping = True
        self._stopped.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopping

    def __aiter__(self) -> AsyncIterator[ItemResult]:
        return self.results()

    async def results(self) -> AsyncGenerator[ItemResult, None]:
        """The results, as items finish (the same as iterating the batch); runs once.

        Leaving the iteration early (``break``) stops the run as :meth:`stop` does, when the
        generator is closed: wrap it in ``contextlib.aclosing`` to make that immediate.
        """
        if self._started:
            raise RuntimeError("a Batch runs once: make a new one (same journal) to run again")
        self._started = True
        items = {"wavespeed.batch.items": len(self.items)}
        self._trace = telemetry.operation("wavespeed.batch", items)
        error: BaseException | None = None
        try:
            with self._trace.current():  # never across a yield: see OperationTrace
                if self._journal_path is not None:
                    self._journal = Journal.open(self._journal_path)
                finished, queue = await self._plan()
                if self._guard is not None:
                    entries = self._journal.entries
                    to_submit = [i for i in queue if _task_of(entries.get(self._keys[i])) is None]
                    await self._guard.check(self._client, [self.items[i] for i in to_submit])
            for result in finished:
                yield result
            async with contextlib.aclosing(self._run_all(queue)) as running:
                async for result in running:
                    yield result
            if self._guard is not None:
                with self._trace.current():
                    self.bill = await read_bill(self._client, self._guard)
        except BaseException as exc:
            error = None if isinstance(exc, GeneratorExit) else exc
            raise
        finally:
            self._journal.close()
            ended = {"wavespeed.batch.completed": self._ended[True]}
            ended["wavespeed.batch.failed"] = self._ended[False]
            self._trace.end(error, {**ended, **(self.bill.attributes if self.bill else {})})

    # --- planning a (resumed) run -------------------------------------------------------------

    async def _plan(self) -> tuple[list[ItemResult], collections.deque[int]]:
        finished, resumed, fresh, maybe_sent = [], [], [], []
        entries = self._journal.entries
        self._claimed.update(e.prediction_id for e in entries.values() if e.prediction_id)
        for index, key in enumerate(self._keys):
            entry = entries.get(key)
            status = entry.status if entry is not None else "unsent"
            if entry is not None and (
                status == "completed" or (status == "failed" and not self._retry_failed)
            ):
                finished.append(self._recorded(index, entry))
            elif status == "submitted" and entry is not None and entry.prediction_id:
                resumed.append(index)
            elif status in ("submitting", "submitted"):  # sent; the answer was not recorded
                maybe_sent.append(index)
            else:
                fresh.append(index)
        if maybe_sent:
            uncertain, adopted, absent = await self._reconcile_journal(maybe_sent)
            finished += uncertain
            resumed += adopted
            fresh = sorted(fresh + absent)
        return finished, collections.deque(resumed + fresh)

    def _recorded(self, index: int, entry: Entry) -> ItemResult:
        if entry.status == "completed" and entry.prediction is not None:
            return self._finish(
                index, "completed", entry.prediction, files=entry.files, resumed=True
            )
        error = (
            PredictionFailed(entry.prediction)
            if entry.prediction is not None
            else WaveSpeedError(entry.error or "failed", prediction_id=entry.prediction_id)
        )
        return self._finish(index, "failed", entry.prediction_id, error=error, resumed=True)

    async def _reconcile_journal(
        self, indices: list[int]
    ) -> tuple[list[ItemResult], list[int], list[int]]:
        """Submits a previous run sent without recording an answer: found, absent, unknown."""
        entries = {index: self._journal.entries[self._keys[index]] for index in indices}
        pending = {
            index: Pending(self._keys[index], entry.model, entry.input, entry.at)
            for index, entry in entries.items()
            if entry.at is not None
        }
        verdicts: dict[str, Verdict] = {}
        if pending:
            await self._let_settle(max(item.sent_at for item in pending.values()))
            found = await reconcile(
                self._client, list(pending.values()), self._claimed, now=utc_now()
            )
            verdicts.update(found)
        uncertain, adopted, absent = [], [], []
        for index in indices:
            verdict = verdicts.get(self._keys[index], Verdict(reason="no time in the journal"))
            if verdict.prediction_id is not None:
                self._adopt(index, verdict.prediction_id)
                adopted.append(index)
            elif verdict.absent:
                absent.append(index)
            else:
                entry = entries[index]
                item = BatchItem(entry.model or self.items[index].model, entry.input)
                uncertain.append(self._uncertain(index, item, entry.at, verdict.reason))
        return uncertain, adopted, absent

    async def _let_settle(self, sent_at: dt.datetime) -> None:
        # A submit still in transit when the history is read would be missed: wait it out.
        age = (utc_now() - sent_at).total_seconds()
        await anyio.sleep(max(0.0, self._settle - age))

    def _adopt(self, index: int, prediction_id: str) -> None:
        self._journal.submitted(self._keys[index], prediction_id)
        self._claimed.add(prediction_id)

    def _uncertain(
        self, index: int, item: BatchItem, sent_at: dt.datetime | None, reason: str
    ) -> ItemResult:
        error = SubmissionUncertain(
            f"item {index} may have been submitted, and {reason}: it was not resubmitted;"
            " look for the task in the history before submitting it again",
            model=item.model,
            payload=item.input,
            sent_at=sent_at or utc_now(),
        )
        return self._finish(index, "uncertain", None, error=error)

    # --- running ------------------------------------------------------------------------------

    async def _run_all(self, queue: collections.deque[int]) -> AsyncGenerator[ItemResult, None]:
        running: dict[asyncio.Task[ItemResult | None], int] = {}
        stopper = asyncio.ensure_future(self._stopped.wait())
        try:
            while queue or running:
                while queue and len(running) < self._concurrency and not self._stopping:
                    index = queue.popleft()
                    running[asyncio.ensure_future(self._run(index))] = index
                if self._stopping:
                    return
                done, _ = await asyncio.wait([*running, stopper], return_when="FIRST_COMPLETED")
                for task in [task for task in running if task in done]:
                    del running[task]
                    result = task.result()  # a batch-wide error ends the run here
                    if result is not None:
                        yield result
        finally:
            stopper.cancel()
            for task in running:
                task.cancel()
            with anyio.CancelScope(shield=True):  # submits in flight get their answers recorded
                await asyncio.wait([*running, stopper])
            for task in running:
                error = None if task.cancelled() else task.exception()
                if isinstance(error, JournalError) and error.prediction_id:
                    # A task was created but its record was lost: this line is its only trace.
                    model = self.items[running[task]].model
                    log.error(
                        "batch item %d: %s",
                        running[task],
                        error,
                        extra=about(error.prediction_id, model),
                    )
                elif error is not None:
                    log.debug("batch item %d ended while stopping", running[task])

    async def _run(self, index: int) -> ItemResult | None:
        with self._trace.current():  # this task's own context: its predictions' parent
            return await self._run_item(index)

    async def _run_item(self, index: int) -> ItemResult | None:
        item, key = self.items[index], self._keys[index]
        task_id = _task_of(self._journal.entries.get(key))
        if task_id is not None:
            future = self._client.prediction(
                task_id, model=item.model, poll_schedule=self._schedule(item)
            )
            self._emit("submitted", index, prediction_id=future.id, resumed=True)
        else:
            submitted = await self._submit(index)
            if not isinstance(submitted, PredictionFuture):
                return submitted
            future = submitted
        try:
            prediction = await self._wait(index, future)
            files = await self._client.download(prediction, self._out) if self._out else []
        except PredictionFailed as exc:
            self._journal.failed(key, exc.prediction.error or str(exc), exc.prediction)
            return self._finish(index, "failed", exc.prediction, error=exc)
        except FATAL:
            raise
        except WaveSpeedError as exc:
            return self._finish(index, "unfinished", future.id, error=exc)
        self._journal.completed(key, prediction, files)
        return self._finish(index, "completed", prediction, files=tuple(files))

    async def _submit(self, index: int) -> PredictionFuture | ItemResult | None:
        key = self._keys[index]
        # Identical items take turns: reconciling one must not adopt the other's task.
        async with self._locks[key.partition("/")[0]]:
            if self._stopping:
                return None
            try:
                if self._guard is not None:
                    self._guard.reserve(self.items[index])
                item = await self._prepare(self.items[index])
            except FATAL:
                raise
            except WaveSpeedError as exc:
                return self._finish(index, outcome_of(exc), None, error=exc)
            if self._stopping:
                return None
            return await _uninterruptible(self._send(index, item))

    async def _prepare(self, item: BatchItem) -> BatchItem:
        """Upload a local image of an edit (the key stays that of the item as given)."""
        image = item.input.get("image")
        if item.model != ImageEdit.model_id or not isinstance(image, str):
            return item
        source = await _files.image_input(image)
        if isinstance(source, _files.Media):
            source = await self._client.upload(source.data, filename=source.filename)
        return item if source == image else BatchItem(item.model, {**item.input, "image": source})

    async def _send(self, index: int, item: BatchItem) -> PredictionFuture | ItemResult:
        """Submit once; after an uncertain answer, only what the history proves absent again."""
        key, error = self._keys[index], None
        for _ in range(UNCERTAIN_ROUNDS):
            sent_at = utc_now()
            self._journal.submitting(key, index, item.model, item.input, sent_at)
            try:
                with telemetry.quoting(self._quote(index)):  # the quote on the span
                    future = await self._client.submit(
                        item.model, item.input, poll_schedule=self._schedule(item)
                    )
            except SubmissionUncertain as exc:
                error = exc
                await self._let_settle(sent_at)
                pending = Pending(key, item.model, item.input, sent_at)
                verdicts = await reconcile(self._client, [pending], self._claimed, now=utc_now())
                verdict = verdicts[key]
                if verdict.prediction_id is not None:
                    self._adopt(index, verdict.prediction_id)
                    self._submitted(index, verdict.prediction_id)
                    self._emit("submitted", index, prediction_id=verdict.prediction_id)
                    return self._client.prediction(
                        verdict.prediction_id, model=item.model, poll_schedule=self._schedule(item)
                    )
                if not verdict.absent:
                    return self._uncertain(index, item, sent_at, verdict.reason)
                continue  # proven absent: the submit created nothing, so it may be sent again
            except WaveSpeedError as exc:  # refused before any task existed
                self._journal.unsent(key, str(exc))
                if self._guard is not None:
                    self._guard.refund(self.items[index])
                if isinstance(exc, FATAL):
                    raise
                return self._finish(index, outcome_of(exc), None, error=exc)
            self._journal.submitted(key, future.id)
            self._claimed.add(future.id)
            self._submitted(index, future.id)
            self._emit("submitted", index, prediction_id=future.id, status=future.status)
            return future
        assert error is not None
        self._journal.unsent(key, str(error))
        return self._finish(index, "unfinished", None, error=error)

    async def _wait(self, index: int, future: PredictionFuture) -> Prediction:
        """Wait until terminal, telling ``on_event`` of every status change."""
        future.on_status(
            lambda p: self._emit("status", index, prediction_id=future.id, status=p.status)
        )
        try:
            return await future.wait(self._timeout)
        except BaseException:
            if not future.done():
                future.cancel()  # frees the client's running slot; the remote task goes on
            raise

    def _quote(self, index: int) -> float | None:
        return None if self._guard is None else self._guard.cost_of(self.items[index])

    def _submitted(self, index: int, prediction_id: str) -> None:
        if self._guard is not None:  # the item as given: its quote's key
            self._guard.submitted(self.items[index], prediction_id)

    def _schedule(self, item: BatchItem) -> PollSchedule | None:
        return self._poll_schedule  # None: the client's (learned) schedule for the model

    # --- results and events -------------------------------------------------------------------

    def _finish(
        self,
        index: int,
        outcome: Outcome,
        prediction: Prediction | str | None,
        *,
        error: WaveSpeedError | None = None,
        files: tuple[Path | str, ...] = (),
        resumed: bool = False,
    ) -> ItemResult:
        task = prediction if isinstance(prediction, Prediction) else None
        task_id = (
            task.id if task is not None else prediction if isinstance(prediction, str) else None
        )
        result = ItemResult(index, self.items[index], outcome, task_id, task, error, files, resumed)
        self._ended[result.ok] += 1
        self._emit(
            "completed" if result.ok else "failed",
            index,
            prediction_id=task_id,
            status=task.status if task is not None else None,
            error=error,
            files=files,
            resumed=resumed,
        )
        return result

    def _emit(self, kind: EventKind, index: int, **fields: Any) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(BatchEvent(kind, index, self.items[index], **fields))
        except Exception:
            log.exception("a batch progress callback failed; the batch goes on")


def _task_of(entry: Entry | None) -> str | None:
    """The task id a journal entry shows as submitted, if any."""
    if entry is not None and entry.status == "submitted" and entry.prediction_id:
        return entry.prediction_id
    return None


async def _uninterruptible(coroutine: Any) -> T:
    """Run to the end even if the caller is cancelled (which is then re-raised).

    A submit's answer is the only record of its task id: it is never abandoned midway.
    """
    task: asyncio.Future[T] = asyncio.ensure_future(coroutine)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({task})
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the caller is going away, the journal has the rest
        raise
