"""PredictionFuture: an awaitable handle on a task running on the platform.

The implementation lives with the poll engine that drives it, in ``wavespeed_async._engine``.
"""

from ._engine.future import PredictionFuture

__all__ = ["PredictionFuture"]
