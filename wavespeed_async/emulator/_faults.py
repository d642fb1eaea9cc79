"""Scripted fault injection: which request gets which fault (pure; the app applies them).

>>> plan = FaultPlan()
>>> plan.add(Fault.RESET_AFTER, route="submit", on=[2])        # the 2nd submit
>>> plan.add(Fault.BAD_GATEWAY, route="result", rate=0.1)      # ~10% of result checks
>>> plan.lag_history(30)           # the history omits tasks younger than 30 emulated seconds
"""

from __future__ import annotations

import collections
import enum
import random
from collections.abc import Iterable

import attrs

from ..errors import InvalidInput
from ._arguments import check_number, check_seconds

__all__ = ["Fault", "FaultPlan", "FaultRule", "route_of"]


class Fault(str, enum.Enum):
    """A way the platform or the network misbehaves.

    *Before* faults answer without running the handler: nothing is created. *After* faults
    run the handler first (a submit creates its task), then spoil the answer, which is what
    makes a client's retry of a submit dangerous.
    """

    RATE_LIMITED = "429"  # before; no Retry-After
    RATE_LIMITED_RETRY_AFTER = "429-retry-after"  # before; Retry-After: 1
    UNAVAILABLE = "503"  # before; no Retry-After
    UNAVAILABLE_RETRY_AFTER = "503-retry-after"  # before; Retry-After: 1
    HTML_ERROR = "html"  # before; a proxy's 502 HTML page
    RESET_BEFORE = "reset-before"  # before; the connection drops
    SERVER_ERROR = "500"  # after
    BAD_GATEWAY = "502"  # after; a gateway's envelope-less 502
    GATEWAY_TIMEOUT = "504"  # after
    RESET_AFTER = "reset-after"  # after; the connection drops once the handler ran
    STALL = "stall"  # after; the answer comes only after `stall_seconds` (past read timeouts)
    MALFORMED_JSON = "malformed-json"  # after; a 200 whose body is cut short
    UNKNOWN_STATUS = "unknown-status"  # after; data.status becomes an unknown word
    MISSING_FIELDS = "missing-fields"  # after; data keeps only id and status
    SYNC_TIMEOUT = "sync-timeout"  # a sync-mode submit answers 5004 at once, task running
    TASK_FAILS = "task-fails"  # the submitted task ends failed

    @property
    def before(self) -> bool:
        """Whether the fault answers instead of the handler (nothing is created)."""
        return self in _BEFORE


_BEFORE = frozenset(
    {
        Fault.RATE_LIMITED,
        Fault.RATE_LIMITED_RETRY_AFTER,
        Fault.UNAVAILABLE,
        Fault.UNAVAILABLE_RETRY_AFTER,
        Fault.HTML_ERROR,
        Fault.RESET_BEFORE,
    }
)

ROUTES = ("submit", "result", "upload", "history", "account", "any")
#: The first path segments of the account side: balance, price, catalogue, bill, usage.
ACCOUNT_PATHS = ("model", "models", "balance", "billings", "user", "account")


def route_of(method: str, path: str) -> str:
    """Name the API route a request is for: submit, result, upload, history, account or other.

    ``account`` is the balance, price quotes, the catalogue, the bill and the usage: nothing
    there creates a task, so a fault aimed at submits never hits a quote.
    """
    if not path.startswith("/api/v3/"):
        return "other"
    rest = path.removeprefix("/api/v3/")
    if rest.startswith("predictions"):
        return "result" if method == "GET" else "history"
    if rest.startswith("media"):
        return "upload"
    if rest.startswith("webhook"):
        return "other"
    if rest.split("/", 1)[0] in ACCOUNT_PATHS:
        return "account"
    return "submit" if method == "POST" else "other"


@attrs.define
class FaultRule:
    """Inject ``fault`` into requests of ``route``.

    It hits the request numbers ``on``, or else each request with probability ``rate``, at
    most ``times`` times (``None``: no cap).
    """

    fault: Fault
    route: str
    on: frozenset[int] = frozenset()
    rate: float = 0.0
    times: int | None = None

    def matches(self, route: str, number: int, draw: float) -> bool:
        if self.route not in (route, "any") or self.times == 0:
            return False
        return number in self.on or (not self.on and draw < self.rate)


class FaultPlan:
    """The faults scripted for one emulator, and counts of what was injected."""

    def __init__(self, seed: int = 0) -> None:
        self.rules: list[FaultRule] = []
        self.injected: collections.Counter[Fault] = collections.Counter()
        self._stall_seconds = 5.0
        self._history_lag = 0.0
        self._numbers: collections.Counter[str] = collections.Counter()
        self._random = random.Random(seed)

    def add(
        self,
        fault: Fault,
        *,
        route: str = "any",
        on: Iterable[int] = (),
        rate: float = 0.0,
        times: int | None = None,
    ) -> FaultRule:
        """Script a fault.

        ``on`` lists 1-based request numbers on that route; else ``rate`` (0..1) is the chance
        per request; with neither, the next ``times`` requests (default 1) get it.
        """
        if route not in ROUTES:
            raise InvalidInput("route", route, f"one of {', '.join(ROUTES)}")
        rate = check_number("rate", rate, maximum=1.0)
        numbers = frozenset(on)
        if not numbers and not rate:
            rate, times = 1.0, 1 if times is None else times
        rule = FaultRule(fault, route, numbers, rate, times)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every scripted fault (and the history lag)."""
        self.rules.clear()
        self._history_lag = 0.0

    @property
    def stall_seconds(self) -> float:
        """How long, in real seconds, a ``STALL`` answer is held back (default 5)."""
        return self._stall_seconds

    @stall_seconds.setter
    def stall_seconds(self, value: float) -> None:
        self._stall_seconds = check_seconds("stall_seconds", value)

    @property
    def history_lag(self) -> float:
        """Emulated seconds a task stays out of the history after its submit (0: none)."""
        return self._history_lag

    def lag_history(self, seconds: float) -> None:
        """Make the history (``POST /api/v3/predictions``) lag by ``seconds`` (emulated).

        It omits tasks created less than ``seconds`` ago, from its items and its total, as an
        index that catches up late would; their results answer as usual. ``0`` ends the lag.
        """
        self._history_lag = check_seconds("history_lag", seconds)

    def pick(self, route: str) -> Fault | None:
        """Number this request on its route and return the fault it gets, if any."""
        self._numbers[route] += 1
        number = self._numbers[route]
        for rule in self.rules:
            # A draw per rule, so the rates of several rules add up rather than overlap.
            if rule.matches(route, number, self._random.random()):
                if rule.times is not None:
                    rule.times -= 1
                self.injected[rule.fault] += 1
                return rule.fault
        return None
