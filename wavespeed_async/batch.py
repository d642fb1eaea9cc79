"""Batches: many predictions under a concurrency limit, with progress events and a journal.

:class:`Batch` runs items (payload models, :class:`BatchItem` objects or ``(model, input)``
pairs) with at most ``concurrency`` of them in flight, and yields an :class:`ItemResult` for
each as it finishes. ``client.map`` and ``client.as_completed`` are built on it, and so is
the ``wavespeed-async batch`` command.

With ``journal=PATH`` the batch keeps a JSON Lines journal (see ``_journal.py``) and a second
run with the same journal resumes the first: finished items are skipped, submitted ones are
polled by id, a submit whose answer was lost is looked up in the history (see
``_reconcile.py``), and only never-submitted items are submitted. However the first run ended
(an exception, Ctrl-C, ``kill -9``, a power cut), the second creates no duplicate task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING, Any

import anyio

from ._batch import Batch
from ._batch_items import BatchEvent, BatchInput, BatchItem, ItemResult, ProgressCallback
from ._journal import JournalError
from ._models import Prediction
from .errors import WaveSpeedError
from .future import PredictionFuture

if TYPE_CHECKING:
    from .client import AsyncWaveSpeed

__all__ = [
    "Batch",
    "BatchEvent",
    "BatchInput",
    "BatchItem",
    "ItemResult",
    "JournalError",
    "ProgressCallback",
    "as_completed",
    "map_items",
]


async def map_items(
    client: AsyncWaveSpeed,
    payloads: Iterable[BatchInput],
    *,
    return_exceptions: bool,
    **options: Any,
) -> list[Prediction | WaveSpeedError]:
    """``client.map``: every item's prediction (or error), in input order."""
    batch = Batch(client, payloads, **options)
    values: list[Prediction | WaveSpeedError | None] = [None] * len(batch.items)
    async with contextlib.aclosing(batch.results()) as results:
        async for result in results:
            if result.error is not None and not return_exceptions:
                raise result.error  # the rest stops: local waits end, remote tasks go on
            values[result.index] = result.value()
    return [value for value in values if value is not None]


async def as_completed(
    client: AsyncWaveSpeed,
    futures_or_payloads: Iterable[PredictionFuture | BatchInput],
    *,
    return_exceptions: bool,
    timeout: float | None = None,
    **options: Any,
) -> AsyncGenerator[Prediction | WaveSpeedError, None]:
    """``client.as_completed``: predictions (or errors) in the order they finish."""
    given = list(futures_or_payloads)
    futures = [item for item in given if isinstance(item, PredictionFuture)]
    if futures and len(futures) != len(given):
        raise TypeError("as_completed takes futures or payloads, not a mix of both")
    if futures:
        source = _futures_as_completed(futures, timeout)
    else:
        payloads = [item for item in given if not isinstance(item, PredictionFuture)]
        source = _values(Batch(client, payloads, timeout=timeout, **options))
    async with contextlib.aclosing(source) as values:
        async for value in values:
            if isinstance(value, WaveSpeedError) and not return_exceptions:
                raise value
            yield value


async def _values(batch: Batch) -> AsyncGenerator[Prediction | WaveSpeedError, None]:
    async with contextlib.aclosing(batch.results()) as results:
        async for result in results:
            yield result.value()


async def _futures_as_completed(
    futures: list[PredictionFuture], timeout: float | None
) -> AsyncGenerator[Prediction | WaveSpeedError, None]:
    waits = {asyncio.ensure_future(future.wait(timeout)): n for n, future in enumerate(futures)}
    try:
        while waits:
            done, _ = await asyncio.wait(waits, return_when="FIRST_COMPLETED")
            for task in sorted(done, key=waits.__getitem__):
                future = futures[waits.pop(task)]
                if task.cancelled():
                    yield WaveSpeedError("polling was cancelled", prediction_id=future.id)
                elif isinstance(task.exception(), WaveSpeedError):
                    yield task.exception()  # type: ignore[misc]
                else:
                    yield task.result()
    finally:
        for task in waits:
            task.cancel()  # local waits only: the futures stay usable, the tasks run on
        if waits:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(waits)
