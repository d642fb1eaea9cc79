"""Copying a prediction's outputs once, however many workers are asked to.

Many workers may receive one prediction's webhook and each be told to keep its outputs. The
copy is claimed in the coordinator's idempotency ledger, the same atomic claim that guards
submits (leased while its owner lives, taken over when it dies): the first caller copies,
the others wait for it and get the stored locations. The ledger record's ``prediction_id``
holds them (newline-separated URLs) under a key of this module's own namespace.

The ledger is a saving, not a safety net: copying twice writes the same bytes under the
same names. So when the coordinator cannot be reached, each caller copies for itself.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable

import anyio

from .._coordination import Coordinator
from ..errors import CoordinatorUnavailable

__all__ = ["copy_key", "copy_once"]

log = logging.getLogger(__name__)

_MODEL = "wavespeed-async/copy"


def copy_key(destination_url: str, prediction_id: str) -> str:
    """The ledger key of copying ``prediction_id``'s outputs to ``destination_url``."""
    return f"{_MODEL}:{destination_url}{prediction_id}"


async def copy_once(
    coordinator: Coordinator,
    key: str,
    copy: Callable[[], Awaitable[list[str]]],
    *,
    timeout: float,
) -> list[str]:
    """Run ``copy`` unless another caller ran (or is running) it for ``key``; its locations.

    A caller whose copy fails drops its claim and raises: a waiting caller then claims the
    key and copies itself. ``timeout`` bounds the wait for another caller's copy
    (``TimeoutError``).
    """
    deadline = anyio.current_time() + timeout
    while True:
        try:
            claim = await coordinator.claim(key, model=_MODEL, payload={"copy": key})
        except CoordinatorUnavailable:
            log.warning("coordinator unavailable: copying %s without a claim", key)
            return await copy()
        if claim.owned:
            return await _copy_owned(coordinator, key, copy)
        record = claim.record
        if record.state == "submitting" and not record.orphaned:
            left = deadline - anyio.current_time()
            if left <= 0 or math.isnan(left):
                raise TimeoutError(f"another worker is still copying ({key})")
            record = await coordinator.wait_submitted(key, left)
        if record.state == "submitted":
            return record.prediction_id.split("\n") if record.prediction_id else []
        # dropped (the owner failed) or orphaned (it died): claim again


async def _copy_owned(
    coordinator: Coordinator, key: str, copy: Callable[[], Awaitable[list[str]]]
) -> list[str]:
    try:
        locations = await copy()
    except BaseException:
        with anyio.CancelScope(shield=True), contextlib.suppress(CoordinatorUnavailable):
            await coordinator.record_absent(key)  # the copy's own error is the one to see
        raise
    await coordinator.record_submitted(key, "\n".join(locations))
    return locations
