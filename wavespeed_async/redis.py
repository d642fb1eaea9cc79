"""Coordination through Redis: limits, idempotency keys and webhook fan-out across processes.

Needs the ``redis`` extra (``pip install redis``, or ``pip install ".[redis]"`` in a checkout)::

    from wavespeed_async.redis import RedisCoordinator

    client = AsyncWaveSpeed(coordinator=RedisCoordinator("redis://localhost:6379/0"))

The implementation lives in ``wavespeed_async._coordination.redis``.
"""

from ._coordination.redis import QueueItem, QueueStatus, RedisBatchQueue, RedisCoordinator

__all__ = ["QueueItem", "QueueStatus", "RedisBatchQueue", "RedisCoordinator"]
