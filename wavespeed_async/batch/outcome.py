"""How one item's attempt ended: one classifier for the local and the shared batch."""

from __future__ import annotations

from ..errors import (
    AuthenticationError,
    ConfigurationError,
    CoordinatorUnavailable,
    InsufficientBalance,
    InvalidInput,
    InvalidRequest,
    JournalError,
    NotFound,
    PredictionFailed,
    SubmissionUncertain,
    WaveSpeedError,
)
from .items import Outcome

__all__ = ["FATAL", "REJECTED", "outcome_of"]

#: Errors about the whole run rather than one item: raised, never recorded per item (a shared
#: batch's items then wait for another worker).
FATAL = (
    AuthenticationError,
    InsufficientBalance,
    ConfigurationError,
    JournalError,
    CoordinatorUnavailable,
)
#: A submit refused outright: the input is wrong, and sending it again changes nothing.
#: (``IdempotencyConflict`` is an ``InvalidInput``: the key was used for other input.)
REJECTED = (InvalidInput, InvalidRequest, NotFound)


def outcome_of(error: WaveSpeedError) -> Outcome:
    """The outcome an item's error gives it (callers raise :data:`FATAL` errors instead).

    ``failed``: the task failed, or the submit was refused (sending it again changes nothing).
    ``uncertain``: the submit may have created a task (resolved through the history or the key).
    ``unfinished``: no answer yet (a deadline, the network): resumed later, never resent blindly.
    """
    if isinstance(error, (PredictionFailed, *REJECTED)):
        return "failed"
    if isinstance(error, SubmissionUncertain):
        return "uncertain"
    return "unfinished"
