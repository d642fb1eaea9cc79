"""Batches: many predictions under a concurrency limit, with progress events and a journal.

:class:`Batch` runs items (payload models, :class:`BatchItem` objects or ``(model, input)``
pairs) with at most ``concurrency`` of them in flight, and yields an :class:`ItemResult` for
each as it finishes. ``client.map`` and ``client.as_completed`` are built on it, and so is
the ``wavespeed-async batch`` command.

With ``journal=PATH`` the batch keeps a JSON Lines journal (see ``journal.py``) and a second
run with the same journal resumes the first: finished items are skipped, submitted ones are
polled by id, a submit whose answer was lost is looked up in the history (see
``_reconcile.py``), and only never-submitted items are submitted. However the first run ended
(an exception, Ctrl-C, ``kill -9``, a power cut), the second creates no duplicate task.
"""

from __future__ import annotations

from .items import BatchEvent, BatchInput, BatchItem, ItemResult, ProgressCallback
from .journal import JournalError
from .mapping import as_completed, map_items
from .runner import Batch

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
