"""The cost guard of a batch: quote first, refuse what the limit or the balance cannot pay.

:func:`plan_cost` quotes each distinct ``(model, input)`` once (``client.price``) and reads
the balance; nothing is created. :class:`CostGuard` refuses to start a batch whose total
passes ``max_cost`` or the balance, then counts the spend as items are submitted (at their
quotes; a submit whose outcome is unknown counts, as it may have been billed) and refuses any
submit that would take it past ``max_cost``.

After the batch, :func:`check_bill` compares what its predictions were quoted with what
they were billed (``client.billings``): the comparison is logged, a drift of the total over
:data:`DRIFT` (1%) as a warning naming the predictions whose price differs, and each known
price corrects the ``wavespeed.cost`` metric counted at the quote.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs

from .._engine.ports import QuoteSource
from .._telemetry import telemetry
from .._wire.account import BillingRecord
from .._wire.models import Quote
from ..errors import CostLimitExceeded, InvalidInput, WaveSpeedError
from .items import BatchItem
from .journal import item_keys

__all__ = [
    "DRIFT",
    "BillCheck",
    "BillSource",
    "CostGuard",
    "CostLine",
    "CostPlan",
    "check_bill",
    "plan_cost",
    "read_bill",
]

log = logging.getLogger(__name__)

#: Quotes asked at once while planning.
QUOTE_CONCURRENCY = 8
_CENT_FRACTION = 1e-9  # float sums of prices must not refuse an exact fit
#: The drift of the billed total from the quoted total that is worth a warning.
DRIFT = 0.01
_SHOWN = 10  # predictions named in a drift warning


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
        #: Each submitted prediction's model and quote (USD), by prediction id.
        self.quoted: dict[str, tuple[str, float]] = {}

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

    def cost_of(self, item: BatchItem) -> float | None:
        """``item``'s quote (USD), if it was quoted."""
        return self._costs.get(_key(item))

    def submitted(self, item: BatchItem, prediction_id: str) -> None:
        """``item`` became the task ``prediction_id``: remember its quote for the bill."""
        cost = self._costs.get(_key(item))
        if cost is not None:
            self.quoted[prediction_id] = (item.model, cost)


class BillSource(Protocol):
    """The billed prices of predictions (the client's ``billings``)."""

    async def billings(self, *prediction_ids: str) -> list[BillingRecord]:
        """One record per billed prediction."""
        ...


@attrs.frozen
class BillCheck:
    """A batch's quotes against its bill: totals over the predictions billed so far.

    ``differing`` lists ``(prediction_id, quoted, billed)`` of each price that differs;
    ``unbilled`` the predictions without a billing record (not billed yet, or free).
    """

    quoted: float
    billed: float
    differing: tuple[tuple[str, float, float], ...] = ()
    unbilled: tuple[str, ...] = ()

    @property
    def drift(self) -> float:
        """``(billed - quoted) / quoted`` (0 when both are 0)."""
        if self.quoted == 0:
            return 0.0 if self.billed == 0 else math.inf
        return (self.billed - self.quoted) / self.quoted

    @property
    def attributes(self) -> dict[str, float]:
        """The totals as span attributes."""
        return {"wavespeed.cost.quoted": self.quoted, "wavespeed.cost.billed": self.billed}

    @property
    def drifted(self) -> bool:
        """Whether the totals differ by more than :data:`DRIFT`."""
        return abs(self.drift) > DRIFT

    def summary(self) -> str:
        """One line: the quoted and billed totals, and what differs."""
        line = f"quoted ${self.quoted:,.4f}, billed ${self.billed:,.4f}"
        if self.quoted or self.billed:
            line += f" ({self.drift:+.1%})"
        if self.differing:
            shown = ", ".join(
                f"{task_id} ${quoted:,.4f} -> ${billed:,.4f}"
                for task_id, quoted, billed in self.differing[:_SHOWN]
            )
            more = len(self.differing) - _SHOWN
            line += f"; billed differently: {shown}" + (f" and {more} more" if more > 0 else "")
        if self.unbilled:
            line += f"; {len(self.unbilled)} not billed yet"
        return line


async def read_bill(client: BillSource, guard: CostGuard) -> BillCheck | None:
    """:func:`check_bill` of what ``guard`` saw submitted; ``None`` if nothing, or unreadable."""
    if not guard.quoted:
        return None
    try:
        return await check_bill(client, guard.quoted)
    except WaveSpeedError as exc:  # the batch is done: its bill is a report, not a result
        log.warning("batch bill: could not read the bill of the batch: %s", exc)
        return None


async def check_bill(client: BillSource, quoted: Mapping[str, tuple[str, float]]) -> BillCheck:
    """Compare the quotes of ``quoted`` (id -> model, USD) with their bill (see the module)."""
    prices: dict[str, list[float]] = {}
    for record in await client.billings(*quoted):
        prices.setdefault(record.prediction_id, []).append(record.price)
    billed = {task_id: math.fsum(amounts) for task_id, amounts in prices.items()}
    differing = []
    for task_id, price in billed.items():
        model, quote = quoted.get(task_id, ("", price))
        telemetry.billed(model, quote, price)
        if abs(price - quote) > _CENT_FRACTION:
            differing.append((task_id, quote, price))
    bill = BillCheck(
        quoted=math.fsum(quoted[task_id][1] for task_id in billed if task_id in quoted),
        billed=math.fsum(billed.values()),
        differing=tuple(differing),
        unbilled=tuple(task_id for task_id in quoted if task_id not in billed),
    )
    ids = [task_id for task_id, _, _ in bill.differing]
    if bill.drifted:
        log.warning("batch bill: %s", bill.summary(), extra={"prediction_ids": ids})
    else:
        log.info("batch bill: %s", bill.summary(), extra={"prediction_ids": ids})
    return bill


def _key(item: BatchItem) -> str:
    return next(iter(_distinct([item])))
