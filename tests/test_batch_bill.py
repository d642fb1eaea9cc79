"""Quoted against billed: after a batch with ``max_cost`` (``Batch``, ``client.map``, the
``batch --max-cost`` command) the client reads the bill of what it submitted and says how far
it is from the quotes; a drift over 1% is a warning naming the predictions billed otherwise.

The emulator bills exactly what it quotes; a test that needs a drift makes its ledger record
another price for one model, as a platform whose bill differs from its quote would."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

from wavespeed_async import Batch, BatchItem
from wavespeed_async.emulator import Emulator

from .support import CLI_ENV, FLUX, VIDEO, client_for, run_cli

pytestmark = pytest.mark.anyio

COST_LOG = "wavespeed_async.batch.cost"
ITEMS = [
    BatchItem(VIDEO, {"prompt": "a fox"}),
    BatchItem(VIDEO, {"prompt": "a cat"}),
    BatchItem(FLUX, {"prompt": "a lighthouse"}),
]


def bill_differently(
    monkeypatch: pytest.MonkeyPatch, emu: Emulator, model: str, factor: float
) -> None:
    """From now on the emulator bills ``model``'s tasks ``factor`` times their quote."""
    ledger = emu.state.account.ledger
    record = ledger.record

    def skewed(prediction_id: str, task_model: str, price: float, at: dt.datetime) -> None:
        record(prediction_id, task_model, price * factor if task_model == model else price, at)

    monkeypatch.setattr(ledger, "record", skewed)


def bill_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == COST_LOG]


async def test_a_batch_billed_as_quoted_logs_one_matching_line_and_no_warning(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=COST_LOG)
    async with client_for(emulator) as client:
        batch = Batch(client, ITEMS, max_cost=10)
        results = [result async for result in batch]
    assert all(result.ok for result in results)
    spent = 100.0 - emulator.balance
    assert batch.bill is not None
    assert batch.bill.quoted == pytest.approx(spent)
    assert batch.bill.billed == pytest.approx(spent)
    assert (batch.bill.differing, batch.bill.unbilled, batch.bill.drifted) == ((), (), False)
    (line,) = bill_lines(caplog)
    assert line.levelno == logging.INFO
    assert line.getMessage() == f"batch bill: quoted ${spent:,.4f}, billed ${spent:,.4f} (+0.0%)"


async def test_a_bill_drifting_over_one_percent_is_a_warning_naming_the_predictions_that_differ(
    emulator: Emulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    bill_differently(monkeypatch, emulator, VIDEO, 1.5)
    async with client_for(emulator) as client:
        quote = (await client.price(VIDEO, {"prompt": "a fox"})).cost
        batch = Batch(client, ITEMS, max_cost=10)
        results = [result async for result in batch]
    videos = sorted(result.prediction_id or "" for result in results if result.item.model == VIDEO)
    assert batch.bill is not None
    assert batch.bill.drifted
    assert sorted(task_id for task_id, _, _ in batch.bill.differing) == videos
    for _, quoted, billed in batch.bill.differing:
        assert quoted == pytest.approx(quote)
        assert billed == pytest.approx(quote * 1.5)
    (line,) = bill_lines(caplog)
    assert line.levelno == logging.WARNING
    assert all(task_id in line.getMessage() for task_id in videos)
    assert "billed differently" in line.getMessage()
    assert (
        sorted(line.__dict__["prediction_ids"]) == videos
    )  # the structured field, for log pipelines


async def test_a_drift_within_one_percent_is_logged_but_not_a_warning(
    emulator: Emulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger=COST_LOG)
    bill_differently(monkeypatch, emulator, FLUX, 1.001)
    async with client_for(emulator) as client:
        batch = Batch(client, ITEMS, max_cost=10)
        _ = [result async for result in batch]
    assert batch.bill is not None
    assert len(batch.bill.differing) == 1
    assert not batch.bill.drifted
    (line,) = bill_lines(caplog)
    assert line.levelno == logging.INFO


async def test_map_with_max_cost_warns_of_a_drift(
    emulator: Emulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    bill_differently(monkeypatch, emulator, VIDEO, 0.5)  # a refund, say
    async with client_for(emulator) as client:
        predictions = await client.map(ITEMS, max_cost=10)
    (line,) = bill_lines(caplog)
    assert line.levelno == logging.WARNING
    assert predictions[0].id in line.getMessage()
    assert predictions[1].id in line.getMessage()
    assert predictions[2].id not in line.getMessage()  # billed as quoted


async def test_a_batch_without_max_cost_reads_no_bill(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        batch = Batch(client, ITEMS)
        _ = [result async for result in batch]
    assert batch.bill is None
    assert not [request for request in emulator.requests if "billings" in request.path]


@pytest.fixture
def drifting_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """An emulator serving from a thread of this process, billing videos 1.5 times."""
    with start_blocking_portal() as portal:
        emu = Emulator(speed=1000)
        with portal.wrap_async_context_manager(emu):
            bill_differently(monkeypatch, emu, VIDEO, 1.5)
            yield emu


def run_max_cost_batch(emu: Emulator, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``wavespeed-async batch --max-cost 5`` of one video against ``emu``, in a subprocess."""
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"text_to_video": {"prompt": "a fox"}}\n')
    args = ["batch", str(tasks), "--max-cost", "5", "--out", str(tmp_path / "out")]
    return run_cli(*args, "--base-url", emu.base_url, "--poll-interval", "0.02", env=CLI_ENV)


@pytest.mark.slow
def test_the_batch_command_with_max_cost_prints_the_drift_warning(
    drifting_emulator: Emulator, tmp_path: Path
) -> None:
    done = run_max_cost_batch(drifting_emulator, tmp_path)
    assert done.returncode == 0, done.stderr
    (task_id,) = drifting_emulator.tasks
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("batch bill:")]
    assert "(+50.0%)" in line
    assert task_id in line


@pytest.mark.slow
def test_the_batch_command_with_max_cost_prints_the_bill_when_it_matches_the_quotes(
    tmp_path: Path,
) -> None:
    with start_blocking_portal() as portal:
        emu = Emulator(speed=1000)
        with portal.wrap_async_context_manager(emu):
            done = run_max_cost_batch(emu, tmp_path)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("batch bill:")]
    assert "(+0.0%)" in line, line
    assert "billed differently" not in line
