"""Coordination: the limits, idempotency ledger and webhook fan-out that clients share.

``local`` keeps them in one process (the default); ``redis`` shares them across processes and
machines through Redis (the ``redis`` extra).
"""

from .local import Coordinator, LocalCoordinator

__all__ = ["Coordinator", "LocalCoordinator"]
