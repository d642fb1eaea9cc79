"""The retry policy and budget on a fake clock and sleep: what is resent, when, how often."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from wavespeed_async import (
    APIError,
    AuthenticationError,
    ConnectError,
    InvalidRequest,
    NotFound,
    ProtocolError,
    RateLimited,
    RetryPolicy,
    ServerError,
    TransportError,
    WaveSpeedError,
)
from wavespeed_async._http.retry import (
    RetryBudget,
    call_with_retries,
    is_retryable,
    outcome_unknown,
)
from wavespeed_async._wire.protocol import parse_data

pytestmark = pytest.mark.anyio


class FakeTime:
    """A clock that only moves when slept on, and a record of the sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(*errors: WaveSpeedError, result: str = "ok") -> Callable[[], object]:
    """An attempt that raises ``errors`` in turn, then returns ``result``."""
    pending = list(errors)
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(1)
        if pending:
            raise pending.pop(0)
        return result

    attempt.calls = calls  # type: ignore[attr-defined]
    return attempt


def server_error(status: int = 500, retry_after: float | None = None) -> ServerError:
    return ServerError(f"HTTP {status}", status=status, retry_after=retry_after)


async def run(
    attempt: Callable[[], object],
    policy: RetryPolicy,
    budget: RetryBudget | None = None,
    *,
    creates_task: bool = False,
    time: FakeTime | None = None,
    uniform: Callable[[], float] = lambda: 1.0,
) -> object:
    time = time or FakeTime()
    return await call_with_retries(
        attempt,  # type: ignore[arg-type]
        policy,
        budget or RetryBudget(policy.budget),
        creates_task=creates_task,
        what="test",
        sleep=time.sleep,
        uniform=uniform,
        clock=time.clock,
    )


# --- the policy's backoff -------------------------------------------------------------------


def test_backoff_doubles_from_the_base_delay_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    assert [policy.backoff(n, lambda: 1.0) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_is_full_jitter_between_zero_and_the_ceiling() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=20.0)
    assert policy.backoff(2, lambda: 0.0) == 0.0
    assert policy.backoff(2, lambda: 0.25) == 1.0
    assert 0.0 <= policy.backoff(3) < 8.0


def test_the_default_policy_and_off() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.timeout, policy.base_delay) == (5, 60.0, 0.5)
    assert (policy.max_delay, policy.budget) == (20.0, 500)
    assert RetryPolicy.off().attempts == 1


# --- the budget -----------------------------------------------------------------------------


def test_a_retry_costs_five_tokens_and_ten_after_a_timeout() -> None:
    budget = RetryBudget(100)
    assert budget.spend(server_error()) == 5
    assert budget.tokens == 95
    assert budget.spend(TransportError("read timeout", timed_out=True)) == 10
    assert budget.tokens == 85
    assert budget.spend(TransportError("reset")) == 5
    assert budget.tokens == 80


def test_a_spent_budget_refuses_and_keeps_what_is_left() -> None:
    budget = RetryBudget(9)
    assert budget.spend(server_error()) == 5
    assert budget.spend(server_error()) is None
    assert budget.tokens == 4
    assert RetryBudget(5).spend(server_error()) == 5  # exactly enough is enough
    assert RetryBudget(9).spend(TransportError("t", timed_out=True)) is None


def test_earning_refunds_tokens_up_to_the_capacity() -> None:
    budget = RetryBudget(20)
    budget.spend(server_error())
    budget.spend(server_error())
    budget.earn(3)
    assert budget.tokens == 13
    budget.earn(100)
    assert budget.tokens == 20


async def test_a_retried_success_refunds_what_its_retries_cost() -> None:
    budget = RetryBudget(100)
    attempt = failing(server_error(), TransportError("slow", timed_out=True))
    assert await run(attempt, RetryPolicy(), budget) == "ok"
    assert budget.tokens == 100
    budget.tokens = 50
    assert await run(failing(), RetryPolicy(), budget) == "ok"
    assert budget.tokens == 51  # a first-try success earns one


async def test_retries_stop_at_once_when_the_budget_is_spent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    budget = RetryBudget(7)
    time = FakeTime()
    attempt = failing(server_error(), server_error(), server_error())
    with pytest.raises(ServerError):
        await run(attempt, RetryPolicy(attempts=10), budget, time=time)
    assert len(attempt.calls) == 2  # type: ignore[attr-defined]
    assert budget.tokens == 2
    assert "retry budget spent" in caplog.text


# --- call_with_retries ----------------------------------------------------------------------


async def test_reads_are_retried_with_growing_backoff_then_succeed() -> None:
    time = FakeTime()
    attempt = failing(server_error(), server_error(502), server_error(504))
    assert await run(attempt, RetryPolicy(base_delay=1.0, max_delay=3.0), time=time) == "ok"
    assert time.sleeps == [1.0, 2.0, 3.0]


async def test_attempts_count_the_first_try() -> None:
    attempt = failing(*(server_error() for _ in range(5)))
    with pytest.raises(ServerError):
        await run(attempt, RetryPolicy(attempts=3))
    assert len(attempt.calls) == 3  # type: ignore[attr-defined]


async def test_retry_after_replaces_the_backoff() -> None:
    time = FakeTime()
    attempt = failing(RateLimited("slow", status=429, retry_after=7.0))
    assert await run(attempt, RetryPolicy(base_delay=1.0), time=time) == "ok"
    assert time.sleeps == [7.0]


async def test_retrying_stops_when_the_next_wait_would_pass_the_total_time_cap() -> None:
    time = FakeTime()
    attempt = failing(*(server_error() for _ in range(10)))
    policy = RetryPolicy(attempts=10, timeout=10.0, base_delay=4.0, max_delay=4.0)
    with pytest.raises(ServerError):
        await run(attempt, policy, time=time)
    assert time.sleeps == [4.0, 4.0]  # a third wait would end at 12 s
    assert len(attempt.calls) == 3  # type: ignore[attr-defined]


async def test_the_total_time_cap_counts_the_attempts_own_time() -> None:
    time = FakeTime()

    async def slow_failure() -> str:
        time.now += 9.0
        raise server_error()

    with pytest.raises(ServerError):
        await run(slow_failure, RetryPolicy(timeout=10.0, base_delay=1.5), time=time)
    assert time.sleeps == []  # 9 s spent, and 1.5 s more would pass 10 s


async def test_a_wait_that_ends_exactly_at_the_cap_is_allowed() -> None:
    time = FakeTime()
    policy = RetryPolicy(timeout=4.0, base_delay=4.0, max_delay=4.0)
    assert await run(failing(server_error()), policy, time=time) == "ok"
    assert time.sleeps == [4.0]


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("no", status=401),
        InvalidRequest("bad", status=400),
        NotFound("gone", status=404),
        WaveSpeedError("other"),
    ],
)
async def test_client_errors_are_raised_at_once(error: WaveSpeedError) -> None:
    time = FakeTime()
    attempt = failing(error)
    with pytest.raises(type(error)):
        await run(attempt, RetryPolicy(), time=time)
    assert len(attempt.calls) == 1  # type: ignore[attr-defined]


async def test_a_submit_is_retried_only_after_a_refusal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "wavespeed_async")
    refusals = (
        ConnectError("refused"),
        RateLimited("slow", status=429),
        server_error(503, retry_after=1.0),
    )
    assert await run(failing(*refusals), RetryPolicy(), creates_task=True) == "ok"
    assert caplog.text.count("retrying test") == 3
    for unknown in (server_error(503), server_error(502), TransportError("reset")):
        attempt = failing(unknown)
        with pytest.raises(type(unknown)):
            await run(attempt, RetryPolicy(), creates_task=True)
        assert len(attempt.calls) == 1  # type: ignore[attr-defined]


async def test_a_503_with_retry_after_on_a_submit_surfaces_once_retries_run_out() -> None:
    time = FakeTime()
    attempt = failing(*(server_error(503, retry_after=2.0) for _ in range(5)))
    with pytest.raises(ServerError) as info:
        await run(attempt, RetryPolicy(attempts=3), creates_task=True, time=time)
    assert len(attempt.calls) == 3  # type: ignore[attr-defined]
    assert time.sleeps == [2.0, 2.0]
    assert not outcome_unknown(info.value)  # a refusal: nothing was created


async def test_the_retry_log_line_never_shows_an_echoed_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "wavespeed_async")
    echo = b"<pre>Authorization: Bearer sk-echoed-0123456789</pre>"
    with pytest.raises(ServerError) as info:
        parse_data(502, {}, echo)
    assert await run(failing(info.value), RetryPolicy()) == "ok"
    assert "retrying test" in caplog.text
    assert "sk-echoed" not in caplog.text


# --- what may be resent, and what may have created a task -----------------------------------


@pytest.mark.parametrize(
    ("error", "read", "submit"),
    [
        (ConnectError("refused"), True, True),
        (RateLimited("slow", status=429), True, True),
        (server_error(503, retry_after=0.0), True, True),
        (server_error(503), True, False),
        (server_error(500), True, False),
        (server_error(502), True, False),
        (server_error(504), True, False),
        (APIError("timeout", status=408), True, False),
        (server_error(501), False, False),
        (InvalidRequest("bad", status=400), False, False),
        (TransportError("reset"), True, False),
        (ProtocolError("html"), True, False),
        (WaveSpeedError("other"), False, False),
    ],
)
def test_what_is_retryable(error: WaveSpeedError, read: bool, submit: bool) -> None:
    assert is_retryable(error, creates_task=False) is read
    assert is_retryable(error, creates_task=True) is submit


@pytest.mark.parametrize(
    ("error", "unknown"),
    [
        (ConnectError("refused"), False),
        (TransportError("reset"), True),
        (TransportError("read timeout", timed_out=True), True),
        (ProtocolError("unreadable answer"), True),
        (RateLimited("slow", status=429), False),
        (server_error(503, retry_after=1.0), False),
        (server_error(503), True),
        (server_error(500), True),
        (APIError("timeout", status=408), True),
        (InvalidRequest("bad", status=400), False),
        (APIError("odd", status=499), False),
        (WaveSpeedError("local"), False),
    ],
)
def test_which_failed_submits_may_have_created_a_task(error: WaveSpeedError, unknown: bool) -> None:
    assert outcome_unknown(error) is unknown


def test_a_submit_answer_nested_too_deeply_counts_as_outcome_unknown() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_data(200, {}, b"[" * 200_000)
    assert outcome_unknown(info.value)


async def test_a_retried_success_refunds_exactly_its_cost_below_the_capacity() -> None:
    budget = RetryBudget(100)
    budget.tokens = 50
    attempt = failing(server_error(), TransportError("slow", timed_out=True))
    assert await run(attempt, RetryPolicy(), budget) == "ok"
    assert budget.tokens == 50  # 15 spent on the two retries, 15 refunded


async def test_a_timeout_retry_inside_call_with_retries_costs_ten() -> None:
    budget = RetryBudget(12)
    timeouts = [TransportError("read timeout", timed_out=True) for _ in range(3)]
    attempt = failing(*timeouts)
    with pytest.raises(TransportError):
        await run(attempt, RetryPolicy(attempts=10), budget)
    assert len(attempt.calls) == 2  # type: ignore[attr-defined]
    assert budget.tokens == 2


async def test_the_log_lines_say_what_is_retried_after_which_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "wavespeed_async")
    attempt = failing(server_error(), server_error(502))
    with pytest.raises(ServerError):
        await run(attempt, RetryPolicy(base_delay=1.0), RetryBudget(5))
    assert [record.getMessage() for record in caplog.records] == [
        "retrying test in 1.00s after: HTTP 500 (retry 1)",
        "retry budget spent: not retrying test (HTTP 502)",
    ]
