"""``client.map`` and ``client.as_completed``: a batch's results in input or finishing order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable
from typing import Any

import anyio

from .._engine.future import PredictionFuture
from .._engine.ports import BatchClient
from .._wire.models import Prediction
from ..errors import WaveSpeedError
from .items import BatchInput
from .runner import Batch

__all__ = ["as_completed", "map_items"]


async def map_items(
    client: BatchClient,
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
    client: BatchClient,
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
