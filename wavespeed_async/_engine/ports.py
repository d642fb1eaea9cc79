"""Ports: the few client methods that submitting, reconciling and batches use.

Code below the client asks for one of these small protocols instead of importing
``AsyncWaveSpeed``, so nothing imports the client back and each piece says what it needs.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from .._coordination.local import Coordinator
from .._wire.account import BillingRecord
from .._wire.models import Prediction, Quote
from .future import PredictionFuture
from .polling import PollSchedule

__all__ = ["BatchClient", "FutureTracker", "HistoryReader", "KeyedClient", "QuoteSource"]


class HistoryReader(Protocol):
    """Reads the account's history (reconciling an unanswered submit)."""

    async def recent_predictions(
        self,
        *,
        model: str | None = ...,
        status: str | None = ...,
        created_after: dt.datetime | None = ...,
        created_before: dt.datetime | None = ...,
        page: int = ...,
        page_size: int = ...,
    ) -> list[Prediction]:
        """A page of the account's predictions, newest first."""
        ...


class FutureTracker(Protocol):
    """Something that finishes futures from outside (a webhook receiver)."""

    @property
    def reconcile_schedule(self) -> PollSchedule:
        """How a tracked future still polls, rarely, in case a delivery is lost."""
        ...

    def track(self, future: PredictionFuture) -> None:
        """Finish ``future`` when its task's delivery arrives."""
        ...


class KeyedClient(HistoryReader, Protocol):
    """What a keyed submit needs: the shared ledger, the history, futures by id."""

    @property
    def coordinator(self) -> Coordinator:
        """The ledger of idempotency keys (shared across processes with Redis)."""
        ...

    @property
    def webhooks(self) -> FutureTracker | None:
        """The webhook receiver adopted tasks are tracked by, if any."""
        ...

    def prediction(
        self, prediction_id: str, *, model: str = ..., poll_schedule: PollSchedule | None = ...
    ) -> PredictionFuture:
        """A future for a task created earlier."""
        ...

    async def get_prediction(self, prediction_id: str) -> Prediction:
        """The current state of a task."""
        ...


class QuoteSource(Protocol):
    """Prices and the balance (the cost guard of a batch)."""

    async def price(self, model: str, payload: Mapping[str, Any] | Any) -> Quote:
        """What one task would cost."""
        ...

    async def balance(self) -> float:
        """The account's balance in USD."""
        ...

    async def billings(self, *prediction_ids: str) -> list[BillingRecord]:
        """What each prediction was billed (the batch's quotes are compared with it)."""
        ...


class BatchClient(KeyedClient, QuoteSource, Protocol):
    """What a batch runner uses of the client."""

    wait_timeout: float

    async def submit(
        self,
        model: str,
        payload: Mapping[str, Any] | Any,
        *,
        webhook: str | None = ...,
        poll_schedule: PollSchedule | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> PredictionFuture:
        """Create a task; a future for it."""
        ...

    async def upload(
        self, file: str | os.PathLike[str] | bytes, *, filename: str | None = ...
    ) -> str:
        """Upload a local file; the URL to use as input."""
        ...

    async def download(
        self, prediction: Prediction, directory: str | os.PathLike[str], *, max_bytes: int = ...
    ) -> list[Path] | list[str]:
        """Save a completed prediction's outputs."""
        ...
