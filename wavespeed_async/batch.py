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
import os
from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING, Any, Literal, cast, overload

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
    "BatchMethods",
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


class BatchMethods:
    """``map`` and ``as_completed`` (mixed into the client): doors onto :class:`Batch`."""

    @overload
    async def map(
        self,
        payloads: Iterable[BatchInput],
        *,
        concurrency: int = ...,
        return_exceptions: Literal[False] = ...,
        journal: str | os.PathLike[str] | None = ...,
        out: str | os.PathLike[str] | None = ...,
        on_event: ProgressCallback | None = ...,
        timeout: float | None = ...,
        max_cost: float | None = ...,
    ) -> list[Prediction]: ...

    @overload
    async def map(
        self,
        payloads: Iterable[BatchInput],
        *,
        concurrency: int = ...,
        return_exceptions: Literal[True],
        journal: str | os.PathLike[str] | None = ...,
        out: str | os.PathLike[str] | None = ...,
        on_event: ProgressCallback | None = ...,
        timeout: float | None = ...,
        max_cost: float | None = ...,
    ) -> list[Prediction | WaveSpeedError]: ...

    async def map(
        self,
        payloads: Iterable[BatchInput],
        *,
        concurrency: int = 10,
        return_exceptions: bool = False,
        journal: str | os.PathLike[str] | None = None,
        out: str | os.PathLike[str] | None = None,
        on_event: ProgressCallback | None = None,
        timeout: float | None = None,
        max_cost: float | None = None,
    ) -> list[Prediction] | list[Prediction | WaveSpeedError]:
        """Run a batch, at most ``concurrency`` tasks in flight; results in input order.

        ``payloads`` are payload models (``TextToVideo(...)``), :class:`BatchItem` objects or
        ``(model, input)`` pairs. A failure raises at once (the rest stop waiting; their
        remote tasks run on) unless ``return_exceptions=True`` puts the error in its place.
        ``journal`` makes the batch resumable: run it again with the same journal and nothing
        is submitted twice. ``out`` saves the outputs there; ``on_event`` gets progress
        events. ``max_cost`` (USD) quotes every distinct item first and refuses to start,
        with :class:`CostLimitExceeded` and no task created, when the total passes it or the
        balance. See :class:`Batch` for the whole story.

        >>> videos = await client.map([TextToVideo(p) for p in prompts], concurrency=20,
        ...                           journal="videos.jsonl")         # doctest: +SKIP
        """
        return await map_items(
            cast("AsyncWaveSpeed", self),
            payloads,
            return_exceptions=return_exceptions,
            concurrency=concurrency,
            journal=journal,
            out=out,
            on_event=on_event,
            timeout=timeout,
            max_cost=max_cost,
        )

    @overload
    def as_completed(
        self,
        futures_or_payloads: Iterable[PredictionFuture | BatchInput],
        *,
        concurrency: int = ...,
        return_exceptions: Literal[False] = ...,
        timeout: float | None = ...,
        on_event: ProgressCallback | None = ...,
    ) -> AsyncGenerator[Prediction, None]: ...

    @overload
    def as_completed(
        self,
        futures_or_payloads: Iterable[PredictionFuture | BatchInput],
        *,
        concurrency: int = ...,
        return_exceptions: Literal[True],
        timeout: float | None = ...,
        on_event: ProgressCallback | None = ...,
    ) -> AsyncGenerator[Prediction | WaveSpeedError, None]: ...

    def as_completed(
        self,
        futures_or_payloads: Iterable[PredictionFuture | BatchInput],
        *,
        concurrency: int = 10,
        return_exceptions: bool = False,
        timeout: float | None = None,
        on_event: ProgressCallback | None = None,
    ) -> AsyncGenerator[Prediction, None] | AsyncGenerator[Prediction | WaveSpeedError, None]:
        """Yield predictions as they finish, from futures or from payloads to submit.

        Payloads are submitted with at most ``concurrency`` in flight. A failure is raised
        from the loop (which then stops waiting for the rest) unless
        ``return_exceptions=True`` yields it instead.

        >>> futures = [await client.submit_text_to_video(p) for p in prompts]  # doctest: +SKIP
        >>> async for video in client.as_completed(futures):                 # doctest: +SKIP
        ...     print(video.id, video.outputs)
        """
        return as_completed(
            cast("AsyncWaveSpeed", self),
            futures_or_payloads,
            return_exceptions=return_exceptions,
            timeout=timeout,
            concurrency=concurrency,
            on_event=on_event,
        )
