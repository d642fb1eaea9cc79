"""What may be sent again, when, and how much retrying the client can afford.

Reads (result checks) are retried on anything transient. A submit creates a billable task
and the API has no idempotency key, so it is resent only when the request provably did not
reach the server, or the server said it created nothing (429; 503 with ``Retry-After``).
Every other failure of a submit is reported as :class:`SubmissionUncertain`, never resent.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import attrs

from .._telemetry import about, telemetry
from ..errors import (
    APIError,
    ConnectError,
    ProtocolError,
    RateLimited,
    ServerError,
    TransportError,
    WaveSpeedError,
)

__all__ = ["RetryBudget", "RetryPolicy", "call_with_retries", "outcome_unknown"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Statuses worth asking again for a read.
_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@attrs.define(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped in attempts and in total time.

    The n-th retry waits ``uniform(0, min(max_delay, base_delay * 2**n))`` (full jitter, as
    the AWS SDKs do), or the server's ``Retry-After`` when it gives one. Retrying stops after
    ``attempts`` tries in all or when the next wait would pass ``timeout`` seconds since the
    first try. ``budget`` is the size of the client-wide retry budget (a token bucket in the
    manner of the AWS SDKs' standard mode): each retry spends tokens, successes earn them back,
    so during an outage errors surface at once instead of multiplying traffic.

    >>> RetryPolicy.off().attempts
    1
    """

    attempts: int = 5
    timeout: float = 60.0
    base_delay: float = 0.5
    max_delay: float = 20.0
    budget: int = 500

    @classmethod
    def off(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(attempts=1)

    def backoff(self, retry: int, uniform: Callable[[], float] = random.random) -> float:
        """The full-jitter wait before retry number ``retry`` (0 for the first retry)."""
        return uniform() * min(self.max_delay, self.base_delay * 2.0**retry)


class RetryBudget:
    """Tokens shared by every request of one client (AWS standard mode's retry quota).

    A retry costs 5 tokens (10 after a timeout); a success earns 1 back, or a retried
    request's cost when it finally succeeds.
    """

    RETRY_COST = 5
    TIMEOUT_COST = 10

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.tokens = capacity

    def spend(self, error: WaveSpeedError) -> int | None:
        """Take the cost of retrying after ``error``; ``None`` when the budget is spent."""
        timed_out = isinstance(error, TransportError) and error.timed_out
        cost = self.TIMEOUT_COST if timed_out else self.RETRY_COST
        if cost > self.tokens:
            return None
        self.tokens -= cost
        return cost

    def earn(self, amount: int) -> None:
        """Give back tokens after a success."""
        self.tokens = min(self.capacity, self.tokens + amount)


def is_retryable(error: WaveSpeedError, *, creates_task: bool) -> bool:
    """Whether sending the same request again is safe and may help."""
    if isinstance(error, ConnectError):
        return True  # nothing reached the server
    if isinstance(error, RateLimited):
        return True  # the server refused it: nothing was created
    if creates_task:
        return (
            isinstance(error, ServerError) and error.status == 503 and error.retry_after is not None
        )
    if isinstance(error, APIError):
        return error.status in _RETRYABLE_STATUSES
    return isinstance(error, (TransportError, ProtocolError))


def outcome_unknown(error: WaveSpeedError) -> bool:
    """Whether a failed submit may still have created a task on the platform."""
    if isinstance(error, ConnectError):
        return False
    if isinstance(error, (TransportError, ProtocolError)):
        return True
    if isinstance(error, APIError):
        # A 503 with Retry-After and a 429 are refusals; other 5xx and 408 may come from a
        # gateway in front of a server that went on to create the task.
        if error.status == 503 and error.retry_after is not None:
            return False
        return error.status >= 500 or error.status == 408
    return False


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    budget: RetryBudget,
    *,
    creates_task: bool,
    what: str,
    route: str | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    uniform: Callable[[], float] = random.random,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``attempt`` until it succeeds or the policy, the deadline or the budget says stop.

    ``sleep``, ``uniform`` and ``clock`` (seconds) are injected so that tests need not wait.
    Each retry is told to the telemetry under ``route`` (a template: no ids), else ``what``.
    """
    started = clock()
    retries = 0
    spent = 0
    while True:
        try:
            result = await attempt()
        except WaveSpeedError as error:
            if retries + 1 >= policy.attempts or not is_retryable(error, creates_task=creates_task):
                raise
            delay = policy.backoff(retries, uniform)
            if isinstance(error, APIError) and error.retry_after is not None:
                delay = error.retry_after
            if clock() - started + delay > policy.timeout:
                raise
            cost = budget.spend(error)
            fields = about(error.prediction_id) if error.prediction_id else None
            if cost is None:
                log.warning("retry budget spent: not retrying %s (%s)", what, error, extra=fields)
                raise
            spent += cost
            retries += 1
            log.info(
                "retrying %s in %.2fs after: %s (retry %d)",
                what,
                delay,
                error,
                retries,
                extra=fields,
            )
            telemetry.retry(route or what, _reason(error), delay, retries)
            await sleep(delay)
        else:
            budget.earn(spent or 1)
            return result


def _reason(error: WaveSpeedError) -> str:
    """Why a request is retried, in few words: an HTTP status, or the error's type."""
    return str(error.status) if isinstance(error, APIError) else type(error).__name__
