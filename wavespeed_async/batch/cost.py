"""The cost guard of a batch: quote first, refuse what the limit or the balance cannot pay.

:func:`plan_cost` quotes each distinct ``(model, input)`` once (``client.price``) and reads
the balance; nothing is created. :class:`CostGuard` refuses to start a batch whose total
passes ``max_cost`` or the balance, then counts the spend as items are submitted (at their
quotes; a submit whose outcome is unknown counts, as it may have been billed) and refuses any
submit that would take it past ``max_cost``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import attrs

from .._engine.ports import QuoteSource
from .._wire.models import Quote
from ..errors import CostLimitExceeded, InvalidInput
from .items import BatchItem
from .journal import item_keys

__all__ = ["CostGuard", "CostLine", "CostPlan", "plan_cost"]

#: Quotes asked at once while planning.
QUOTE_CONCURRENCY = 8
_CENT_FRACTION = 1e-9  # float sums of prices must not refuse an exact fit


@attrs.frozen
class CostLine:
    """One distinct ``(model, input)`` of a batch: how many items have it, and its quote."""

    item: BatchItem
    count: int
    quote: Quote

    @property
    def total(self) -> float:
        """What the items of this line cost together, in USD."""
        return self.quote.cost * self.count


@attrs.frozen
class CostPlan:
    """The quotes of a batch (one line per distinct item) and the balance when quoted."""

    lines: tuple[CostLine, ...]
    balance: float

    @property
    def total(self) -> float:
        """What the whole batch would cost, in USD."""
        return math.fsum(line.total for line in self.lines)


def _distinct(items: Sequence[BatchItem]) -> dict[str, list[BatchItem]]:
    groups: dict[str, list[BatchItem]] = {}
    keys = item_keys([(item.model, item.input) for item in items])
    for key, item in zip(keys, items, strict=True):
        groups.setdefault(key.partition("/")[0], []).append(item)
    return groups


async def plan_cost(client: QuoteSource, items: Sequence[BatchItem]) -> CostPlan:
    """Quote every distinct item once (a few at a time) and read the balance."""
    groups = _distinct(items)
    gate = asyncio.Semaphore(QUOTE_CONCURRENCY)

    async def quote(item: BatchItem) -> Quote:
        async with gate:
            return await client.price(item.model, item.input)

    tasks = [asyncio.ensure_future(quote(group[0])) for group in groups.values()]
    try:
        quotes = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()  # the first failure ends the plan: stop asking the rest
        if tasks:
            await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled():
                task.exception()  # retrieved: only the first failure is raised
    balance = await client.balance()
    pairs = zip(groups.values(), quotes, strict=True)
    lines = tuple(CostLine(group[0], len(group), quote) for group, quote in pairs)
    return CostPlan(lines, balance)


class CostGuard:
    """Keeps a batch within ``max_cost`` USD (see the module docstring)."""

    def __init__(self, max_cost: float) -> None:
        if (
            not isinstance(max_cost, (int, float))
            or isinstance(max_cost, bool)
            or not 0 <= max_cost < math.inf
        ):
            raise InvalidInput("max_cost", max_cost, "a number of USD, 0 or more")
        self.max_cost = float(max_cost)
        self.spent = 0.0
        self._costs: dict[str, float] = {}
        self._refused = False

    async def check(self, client: QuoteSource, items: Sequence[BatchItem]) -> CostPlan:
        """Quote ``items`` (those to be submitted); refuse when they pass the limit or balance.

        Raises :class:`CostLimitExceeded` before anything is created.
        """
        plan = await plan_cost(client, items)
        for line in plan.lines:
            self._costs[_key(line.item)] = line.quote.cost
        for limit, what in ((self.max_cost, "max_cost"), (plan.balance, "the balance")):
            if plan.total > limit + _CENT_FRACTION:
                raise CostLimitExceeded(
                    f"the batch is quoted at ${plan.total:.4f} for {len(items)} tasks, more than"
                    f" {what} (${limit:.4f}): nothing was submitted",
                    quoted=plan.total,
                    limit=limit,
                )
        return plan

    def reserve(self, item: BatchItem) -> None:
        """Count ``item``'s quote as spent before submitting it, or refuse it.

        Once one submit is refused, every later one is too: the batch stops spending.
        """
        cost = self._costs.get(_key(item), 0.0)
        if self._refused or self.spent + cost > self.max_cost + _CENT_FRACTION:
            self._refused = True
            raise CostLimitExceeded(
                f"submitting {item.model} would take the batch's spend to"
                f" ${self.spent + cost:.4f}, past max_cost (${self.max_cost:.4f}): not submitted",
                quoted=self.spent + cost,
                limit=self.max_cost,
            )
        self.spent += cost

    def refund(self, item: BatchItem) -> None:
        """A reserved submit was refused by the server (nothing was created or billed)."""
        self.spent = max(0.0, self.spent - self._costs.get(_key(item), 0.0))


def _key(item: BatchItem) -> str:
    return next(iter(_distinct([item])))
