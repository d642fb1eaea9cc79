"""Batches against the emulator: map, as_completed, progress events, and resumable journals."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from wavespeed_async import (
    AsyncWaveSpeed,
    AuthenticationError,
    Batch,
    BatchEvent,
    BatchItem,
    ImageEdit,
    ItemResult,
    JournalError,
    Prediction,
    PredictionFailed,
    RetryPolicy,
    SubmissionUncertain,
    TextToVideo,
    WaveSpeedError,
)
from wavespeed_async.batch.journal import Journal, item_keys
from wavespeed_async.emulator import Emulator, Fault

from .support import FLUX, client_for

pytestmark = pytest.mark.anyio


def videos(count: int, prefix: str = "a fox") -> list[TextToVideo]:
    return [TextToVideo(f"{prefix} #{n}") for n in range(count)]


def no_duplicates(emu: Emulator) -> bool:
    return all(count == 1 for count in emu.created_per_payload().values())


def journal_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def collect(batch: Batch) -> list[ItemResult]:
    return sorted([result async for result in batch], key=lambda result: result.index)


# --- map and as_completed -----------------------------------------------------------------------


async def test_map_returns_results_in_input_order_with_at_most_n_in_flight(
    emulator: Emulator,
) -> None:
    in_flight, most = 0, 0

    def track(event: BatchEvent) -> None:
        nonlocal in_flight, most
        if event.kind == "submitted":
            in_flight += 1
            most = max(most, in_flight)
        elif event.kind in ("completed", "failed"):
            in_flight -= 1

    payloads = videos(12)
    async with client_for(emulator) as client:
        results = await client.map(payloads, concurrency=3, on_event=track)
    assert [p.id for p in results] == [p.id for p in results if p.outputs]
    prompts = [emulator.tasks[p.id].input["prompt"] for p in results]
    assert prompts == [p.prompt for p in payloads]
    assert most == 3
    assert emulator.submit_count == 12


async def test_map_raises_the_first_failure_unless_asked_to_return_it(emulator: Emulator) -> None:
    payloads = [TextToVideo("fine"), TextToVideo("broken [fail]"), TextToVideo("fine too")]
    async with client_for(emulator) as client:
        with pytest.raises(PredictionFailed, match=r"\[fail\] marker"):
            await client.map(payloads, concurrency=3)
        results = await client.map(payloads, concurrency=3, return_exceptions=True)
    first, failed, last = results
    assert isinstance(first, Prediction)
    assert first.outputs
    assert isinstance(failed, PredictionFailed)
    assert failed.prediction.status.is_failure
    assert isinstance(last, Prediction)


async def test_as_completed_yields_futures_in_the_order_they_finish(frozen: Emulator) -> None:
    async with client_for(frozen) as client:
        video = await client.submit_text_to_video("slow: 30 s")
        image = await client.submit(FLUX, {"prompt": "quick: 3 s"})
        finished = client.as_completed([video, image])
        frozen.advance(3)
        first = await finished.__anext__()
        frozen.advance(30)
        second = await finished.__anext__()
    assert (first.id, second.id) == (image.id, video.id)


async def test_as_completed_submits_payloads_and_yields_errors_when_asked(
    emulator: Emulator,
) -> None:
    payloads = [*videos(4), TextToVideo("no [fail]")]
    async with client_for(emulator) as client:
        seen = [
            value
            async for value in client.as_completed(payloads, concurrency=2, return_exceptions=True)
        ]
    assert len(seen) == 5
    assert sum(isinstance(value, PredictionFailed) for value in seen) == 1
    assert emulator.submit_count == 5


async def test_every_item_is_reported_from_submitted_to_its_outcome(emulator: Emulator) -> None:
    events: list[BatchEvent] = []
    async with client_for(emulator) as client:
        await client.map(
            [TextToVideo("ok"), TextToVideo("no [fail]")],
            return_exceptions=True,
            on_event=events.append,
        )
    for index, outcome in ((0, "completed"), (1, "failed")):
        kinds = [event.kind for event in events if event.index == index]
        assert kinds[0] == "submitted"
        assert kinds[-1] == outcome
        assert set(kinds[1:-1]) == {"status"}  # the terminal status was reported first
    [failure] = [event for event in events if event.kind == "failed"]
    assert isinstance(failure.error, PredictionFailed)
    assert failure.prediction_id is not None


async def test_a_failing_progress_callback_does_not_stop_the_batch(emulator: Emulator) -> None:
    def broken(event: BatchEvent) -> None:
        raise RuntimeError("a display bug")

    async with client_for(emulator) as client:
        results = await client.map(videos(2), on_event=broken)
    assert len(results) == 2


# --- journals and resuming ----------------------------------------------------------------------


async def test_a_rerun_skips_finished_items_polls_submitted_ones_and_submits_the_rest(
    frozen: Emulator, tmp_path: Path
) -> None:
    journal = tmp_path / "run.jsonl"
    payloads = videos(5)
    async with client_for(frozen) as client, anyio.create_task_group() as group:
        group.start_soon(lambda: client.map(payloads, concurrency=2, journal=journal))
        await frozen.wait_for(lambda: frozen.submit_count == 2)
        frozen.advance(30)  # the first two finish; two more are submitted
        await frozen.wait_for(lambda: frozen.submit_count == 4)
        group.cancel_scope.cancel()  # the process "dies" with 2 done and 2 running
    statuses = [record["status"] for record in journal_records(journal)]
    assert statuses.count("completed") == 2
    assert statuses.count("submitted") == 4

    frozen.speed = 1000
    events: list[BatchEvent] = []
    async with client_for(frozen) as client:
        results = await client.map(payloads, concurrency=2, journal=journal, on_event=events.append)
    assert len(results) == 5
    assert frozen.submit_count == 5  # only the never-submitted item was sent
    assert no_duplicates(frozen)
    resumed = {event.index for event in events if event.resumed}
    assert resumed == {0, 1, 2, 3}

    async with client_for(frozen) as client:  # a third run has nothing left to do
        again = await client.map(payloads, journal=journal)
    assert [p.id for p in again] == [p.id for p in results]
    assert frozen.submit_count == 5


async def test_items_are_matched_by_content_so_a_reordered_file_resumes(
    emulator: Emulator, tmp_path: Path
) -> None:
    journal = tmp_path / "run.jsonl"
    payloads = videos(3)
    async with client_for(emulator) as client:
        first = await client.map(payloads, journal=journal)
        second = await client.map([*reversed(payloads), TextToVideo("new")], journal=journal)
    assert [p.id for p in second[:3]] == [p.id for p in reversed(first)]
    assert emulator.submit_count == 4


def write_submitting(journal: Path, payload: TextToVideo, sent_at: dt.datetime, n: int = 0) -> None:
    items = [(payload.model_id, {"prompt": payload.prompt, "aspect_ratio": "16:9", "seed": -1})]
    keys = item_keys(items * (n + 1))
    with Journal.open(journal) as log:
        log.submitting(keys[n], n, items[0][0], items[0][1], sent_at)


async def test_a_submit_sent_without_a_recorded_answer_is_adopted_from_the_history(
    emulator: Emulator, tmp_path: Path
) -> None:
    journal, payload = tmp_path / "run.jsonl", TextToVideo("sent, then killed")
    sent_at = dt.datetime.now(dt.timezone.utc)
    async with client_for(emulator) as client:
        write_submitting(journal, payload, sent_at)
        task = await client.submit(payload.model_id, payload)  # reached the server, answer lost
        [result] = await collect(Batch(client, [payload], journal=journal, settle=0))
    assert result.ok
    assert result.prediction_id == task.id
    assert emulator.submit_count == 1


async def test_a_submit_the_history_proves_absent_is_sent_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    journal, payload = tmp_path / "run.jsonl", TextToVideo("killed before sending")
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=3)  # past clock skew
    write_submitting(journal, payload, long_ago)
    async with client_for(emulator) as client:
        await client.submit("test/other-job", {"prompt": "x"})  # the history lists a later task
        [result] = await collect(Batch(client, [payload], journal=journal, settle=0))
    assert result.ok
    assert emulator.submit_count == 2  # the other job's task and the item's, sent once


async def test_an_empty_history_is_no_proof_of_absence(emulator: Emulator, tmp_path: Path) -> None:
    journal, payload = tmp_path / "run.jsonl", TextToVideo("killed, maybe after sending")
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=3)
    write_submitting(journal, payload, long_ago)
    async with client_for(emulator) as client:  # the history may lag: it lists nothing later
        [result] = await collect(Batch(client, [payload], journal=journal, settle=0))
    assert result.outcome == "uncertain"
    assert "later task" in str(result.error)
    assert emulator.submit_count == 0


async def test_an_unreadable_history_leaves_the_item_uncertain_and_unsubmitted(
    emulator: Emulator, tmp_path: Path
) -> None:
    journal, payload = tmp_path / "run.jsonl", TextToVideo("maybe sent")
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)  # settled already
    write_submitting(journal, payload, long_ago)
    emulator.faults.add(Fault.SERVER_ERROR, route="history", rate=1.0)
    async with client_for(emulator, retry=RetryPolicy.off()) as client:
        [result] = await collect(Batch(client, [payload], journal=journal, settle=0))
        with pytest.raises(SubmissionUncertain, match="not resubmitted"):
            await client.map([payload], journal=journal)
    assert result.outcome == "uncertain"
    assert isinstance(result.error, SubmissionUncertain)
    assert "history could not be read" in str(result.error)
    assert emulator.submit_count == 0


async def test_identical_items_each_adopt_their_own_task(
    emulator: Emulator, tmp_path: Path
) -> None:
    journal, payload = tmp_path / "run.jsonl", TextToVideo("the same prompt twice")
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=3)  # past clock skew
    write_submitting(journal, payload, now, n=0)
    write_submitting(journal, payload, now, n=1)
    async with client_for(emulator) as client:
        task = await client.submit(payload.model_id, payload)  # only the first got through
        results = await collect(Batch(client, [payload, payload], journal=journal, settle=0))
    assert [r.ok for r in results] == [True, True]
    assert results[0].prediction_id == task.id
    assert results[1].prediction_id != task.id
    assert emulator.submit_count == 2


async def test_a_submission_uncertain_during_a_run_is_reconciled_not_resent(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.faults.add(Fault.RESET_AFTER, route="submit", on=[2])  # task made, answer lost
    async with client_for(emulator) as client:
        results = await collect(Batch(client, videos(3), concurrency=1, settle=0))
    assert [r.outcome for r in results] == ["completed"] * 3
    assert emulator.submit_count == 3
    assert no_duplicates(emulator)


async def test_stopping_waits_for_a_submit_in_flight_and_records_its_id(
    emulator: Emulator, tmp_path: Path
) -> None:
    journal = tmp_path / "run.jsonl"
    emulator.faults.stall_seconds = 0.2
    emulator.faults.add(Fault.STALL, route="submit")  # the answer takes 0.2 s
    async with client_for(emulator) as client:
        batch = Batch(client, videos(3), concurrency=1, journal=journal)
        async with anyio.create_task_group() as group:
            group.start_soon(collect, batch)
            await emulator.wait_for(lambda: emulator.submit_count == 1)
            batch.stop()
    assert emulator.submit_count == 1
    [task_id] = emulator.tasks
    assert [(r["status"], r.get("id")) for r in journal_records(journal)] == [
        ("submitting", None),
        ("submitted", task_id),
    ]


async def test_failed_items_are_skipped_on_resume_unless_retry_failed(
    emulator: Emulator, tmp_path: Path
) -> None:
    journal, payloads = tmp_path / "run.jsonl", [TextToVideo("ok"), TextToVideo("x [fail]")]
    async with client_for(emulator) as client:
        await collect(Batch(client, payloads, journal=journal))
        skipped = await collect(Batch(client, payloads, journal=journal))
        assert emulator.submit_count == 2
        assert [(r.outcome, r.resumed) for r in skipped] == [
            ("completed", True),
            ("failed", True),
        ]
        assert isinstance(skipped[1].error, PredictionFailed)
        retried = await collect(Batch(client, payloads, journal=journal, retry_failed=True))
    assert emulator.submit_count == 3
    assert [r.resumed for r in retried] == [True, False]


async def test_a_record_cut_short_by_a_crash_is_dropped(emulator: Emulator, tmp_path: Path) -> None:
    journal, payloads = tmp_path / "run.jsonl", videos(2)
    async with client_for(emulator) as client:
        await client.map(payloads[:1], journal=journal)
        with journal.open("ab") as file:
            file.write(b'{"v":1,"key":"abc/0","status":"subm')  # killed mid-write
        await client.map(payloads, journal=journal)
    records = journal_records(journal)  # every line parses again
    assert [r["status"] for r in records].count("completed") == 2
    assert emulator.submit_count == 2


async def test_a_journal_is_used_by_one_run_at_a_time(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "run.jsonl"), pytest.raises(JournalError, match="in use"):
        Journal.open(tmp_path / "run.jsonl")


async def test_outputs_are_saved_and_their_paths_journaled(
    emulator: Emulator, tmp_path: Path
) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    journal, out = tmp_path / "run.jsonl", tmp_path / "out"
    items: list[ImageEdit | TextToVideo] = [
        ImageEdit("make it snow", image=str(image), size=(512, 512)),
        TextToVideo("a fox"),
    ]
    async with client_for(emulator) as client:
        results = await collect(Batch(client, items, journal=journal, out=out))
        again = await collect(Batch(client, items, journal=journal, out=out))
    assert all(r.ok for r in results)
    paths = [Path(path) for r in results for path in r.files]  # a local --out: paths
    assert sorted(path.suffix for path in paths) == [".mp4", ".png"]
    assert all(path.exists() for path in paths)
    assert [r.files for r in again] == [r.files for r in results]
    edit = emulator.tasks[results[0].prediction_id or ""]
    assert edit.input["image"].startswith("http")  # the local file was uploaded
    assert emulator.submit_count == 2


async def test_bad_items_are_refused_before_anything_is_sent(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        with pytest.raises(WaveSpeedError, match="model"):
            await client.map([("not a model id", {"prompt": "x"})])
        with pytest.raises(WaveSpeedError, match="concurrency"):
            await client.map(videos(1), concurrency=0)
    assert BatchItem.of((FLUX, {"prompt": "x"})) == BatchItem(FLUX, {"prompt": "x"})
    assert emulator.submit_count == 0


async def test_a_wrong_key_stops_the_batch_and_leaves_every_item_unsent(tmp_path: Path) -> None:
    journal = tmp_path / "run.jsonl"
    async with (
        Emulator(speed=1000, api_key="the right key") as emu,
        AsyncWaveSpeed(api_key="a wrong key", base_url=emu.base_url) as client,
    ):
        with pytest.raises(AuthenticationError):
            await client.map(videos(5), concurrency=2, journal=journal)
    assert emu.submit_count == 0
    last = {record["key"]: record["status"] for record in journal_records(journal)}
    assert set(last.values()) == {"unsent"}  # a re-run submits them without looking them up


async def test_leaving_as_completed_early_stops_local_polling_only(emulator: Emulator) -> None:
    async with client_for(emulator) as client:
        futures = [await client.submit_text_to_video(f"fox {n}") for n in range(3)]
        async with contextlib.aclosing(client.as_completed(futures)) as finished:
            async for _ in finished:
                break
        assert client.engine.watched == 0  # nothing polls on behalf of the loop that was left
        assert [(await future).outputs != () for future in futures] == [True] * 3  # still usable
