"""The idempotency ledger's records as Redis keeps them: flat hashes of strings.

A record is a HASH of fingerprint, model, payload (JSON), state, claimant, lease_until (ms),
sent_at (ms), prediction_id and orphaned; an uncertain key adds proof_after (ms) and reason.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import attrs

from .local import IdempotencyRecord, RecordState

__all__ = ["OwnedClaim", "fields", "milliseconds", "record", "text"]


def text(value: Any) -> str:
    """A Redis answer (bytes or not) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def fields(flat: list[Any]) -> dict[str, str]:
    """A hash from a script's flat ``HGETALL`` answer."""
    return {text(flat[i]): text(flat[i + 1]) for i in range(0, len(flat), 2)}


def milliseconds(moment: dt.datetime) -> int:
    """``moment`` as Unix milliseconds."""
    return int(moment.timestamp() * 1000)


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(float(value)) / 1000, dt.timezone.utc)


def _state(state: str) -> RecordState:
    if state == "submitted":
        return "submitted"
    return "uncertain" if state == "uncertain" else "submitting"


def record(key: str, hashed: dict[str, str], now_ms: int) -> IdempotencyRecord:
    """The record of ``key`` from its hash, read at ``now_ms`` (Redis time)."""
    state = hashed["state"]
    proof_after = hashed.get("proof_after")
    return IdempotencyRecord(
        key=key,
        fingerprint=hashed["fingerprint"],
        model=hashed["model"],
        payload=json.loads(hashed["payload"]),
        state=_state(state),
        sent_at=_time(hashed["sent_at"]),
        prediction_id=hashed.get("prediction_id") or None,
        orphaned=state == "submitting" and int(hashed["lease_until"]) < now_ms,
        proof_after=_time(proof_after) if proof_after else None,
        reason=hashed.get("reason", ""),
    )


@attrs.define
class OwnedClaim:
    """What this process needs to write its claim again after Redis lost it."""

    token: str
    fingerprint: str
    model: str
    payload: str
