"""The cost guard of ``client.map(..., max_cost=...)``: quote first, refuse what the limit or
the balance cannot pay, and never pass the limit while submitting."""

from __future__ import annotations

from pathlib import Path

import pytest

from wavespeed_async import (
    BatchItem,
    CostLimitExceeded,
    InvalidInput,
    NotFound,
    TextToVideo,
)
from wavespeed_async.batch.cost import CostGuard
from wavespeed_async.emulator import Emulator

from .support import FLUX, client_for

pytestmark = pytest.mark.anyio


def quotes_asked(emu: Emulator) -> int:
    return sum(record.path == "/api/v3/model/price" for record in emu.requests)


def batch() -> list[TextToVideo | tuple[str, dict[str, object]]]:
    # Five items, three distinct: two identical videos, two identical images, one other.
    return [
        TextToVideo("a fox"),
        TextToVideo("a fox"),
        (FLUX, {"prompt": "a lighthouse", "num_images": 2}),
        (FLUX, {"prompt": "a lighthouse", "num_images": 2}),
        (FLUX, {"prompt": "a harbour"}),
    ]


async def quoted_total(emu: Emulator) -> float:
    total = 0.0
    async with client_for(emu) as client:
        for item in map(BatchItem.of, batch()):
            total += (await client.price(item.model, item.input)).cost
    return total


async def test_a_batch_over_max_cost_is_refused_with_no_task_created(emulator: Emulator) -> None:
    total = await quoted_total(emulator)
    asked = quotes_asked(emulator)
    async with client_for(emulator) as client:
        with pytest.raises(CostLimitExceeded) as refused:
            await client.map(batch(), max_cost=total - 0.01)
    assert emulator.submit_count == 0
    assert refused.value.quoted == pytest.approx(total)
    assert refused.value.limit == pytest.approx(total - 0.01)
    assert "max_cost" in str(refused.value)
    assert quotes_asked(emulator) - asked == 3  # one quote per distinct (model, input)


async def test_a_batch_over_the_balance_is_refused_with_no_task_created(emulator: Emulator) -> None:
    total = await quoted_total(emulator)
    emulator.balance = total / 2
    async with client_for(emulator) as client:
        with pytest.raises(CostLimitExceeded, match="the balance") as refused:
            await client.map(batch(), max_cost=1000.0)
    assert refused.value.limit == pytest.approx(total / 2)
    assert emulator.submit_count == 0


async def test_a_batch_within_max_cost_runs_and_spends_its_quote(emulator: Emulator) -> None:
    total = await quoted_total(emulator)
    async with client_for(emulator) as client:
        results = await client.map(batch(), max_cost=total)  # an exact fit is allowed
    assert len(results) == emulator.submit_count == 5
    assert emulator.balance == pytest.approx(100.0 - total, abs=1e-9)


async def test_a_model_that_cannot_be_quoted_stops_the_batch_before_it_starts(
    emulator: Emulator,
) -> None:
    async with client_for(emulator) as client:
        with pytest.raises(NotFound):
            await client.map([*batch(), ("acme/unlisted", {"x": 1})], max_cost=1000.0)
    assert emulator.submit_count == 0


async def test_max_cost_must_be_a_number_of_dollars(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        with pytest.raises(InvalidInput, match="max_cost"):
            await client.map(batch(), max_cost=-1)
    assert emulator.requests == []


async def test_submits_stop_once_the_spend_would_pass_max_cost(emulator: Emulator) -> None:
    first, second = (BatchItem(FLUX, {"prompt": prompt}) for prompt in ("first", "second"))
    async with client_for(emulator) as client:
        cost = (await client.price(FLUX, first.input)).cost
        guard = CostGuard(max_cost=2.5 * cost)
        plan = await guard.check(client, [first, second])
    assert plan.total == pytest.approx(2 * cost)
    assert plan.balance == pytest.approx(100.0)
    guard.reserve(first)
    guard.reserve(second)
    guard.refund(second)  # the server refused it outright: nothing was billed
    guard.reserve(second)
    with pytest.raises(CostLimitExceeded) as refused:
        guard.reserve(first)  # a third submit would spend 3 x cost > 2.5 x cost
    assert refused.value.quoted == pytest.approx(3 * cost)
    guard.refund(second)
    with pytest.raises(CostLimitExceeded):
        guard.reserve(first)  # it would fit now, but the batch has stopped spending
    assert guard.spent == pytest.approx(cost)


async def test_a_resumed_batch_is_quoted_only_for_what_it_still_has_to_submit(
    emulator: Emulator, tmp_path: Path
) -> None:
    journal = tmp_path / "run.jsonl"
    async with client_for(emulator) as client:
        await client.map(batch(), journal=journal)
        again = await client.map(batch(), journal=journal, max_cost=0.0)
    assert len(again) == emulator.submit_count == 5
