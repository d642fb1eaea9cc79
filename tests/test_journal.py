"""The batch journal: corrupt files and failed writes are a JournalError, never a lost task id."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from wavespeed_async import Batch, JournalError, TextToVideo
from wavespeed_async.batch.journal import Journal, item_keys
from wavespeed_async.emulator import Emulator

from .support import client_for

RECORD = {"v": 1, "key": "abc/0", "status": "submitted", "id": "task-1"}


def write_lines(path: Path, *records: dict[str, Any]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


@pytest.mark.parametrize(
    "field",
    [
        {"id": ["task-1"]},
        {"id": {"task": 1}},
        {"id": 7},
        {"index": "0"},
        {"index": True},
        {"model": ["m"]},
        {"input": ["prompt"]},
        {"at": 1700000000},
        {"error": {"why": "x"}},
        {"files": "out.png"},
        {"files": [1, 2]},
        {"prediction": "done"},
    ],
)
def test_a_record_with_a_field_of_the_wrong_type_names_the_file_and_line(
    tmp_path: Path, field: dict[str, Any]
) -> None:
    journal = tmp_path / "run.jsonl"
    write_lines(journal, RECORD, {**RECORD, **field})
    with pytest.raises(JournalError) as info:
        Journal.open(journal)
    assert f"{journal}:2:" in str(info.value)
    assert next(iter(field)) in str(info.value)


@pytest.mark.parametrize(
    "line",
    [b"[" * 200_000, b"not json", b'["v", 1]', b'{"v": 2, "key": "k", "status": "submitted"}'],
)
def test_an_unreadable_line_names_the_file_and_line(tmp_path: Path, line: bytes) -> None:
    journal = tmp_path / "run.jsonl"
    journal.write_bytes(json.dumps(RECORD).encode() + b"\n" + line + b"\n")
    with pytest.raises(JournalError, match=f"{journal}:2:"):
        Journal.open(journal)


@pytest.mark.anyio
async def test_a_journal_with_a_list_as_an_id_stops_the_batch_with_a_journal_error(
    emulator: Emulator, tmp_path: Path
) -> None:
    payload = TextToVideo("a fox")
    [key] = item_keys([(payload.model_id, {"prompt": "a fox", "aspect_ratio": "16:9", "seed": -1})])
    journal = tmp_path / "run.jsonl"
    write_lines(journal, {**RECORD, "key": key, "id": ["9c1d"]})
    async with client_for(emulator) as client:
        with pytest.raises(JournalError, match=f"{journal}:1: id is a list"):
            await client.map([payload], journal=journal)
    assert emulator.submit_count == 0


def test_valid_records_fold_into_entries(tmp_path: Path) -> None:
    journal = tmp_path / "run.jsonl"
    submitting = {"v": 1, "key": "abc/0", "status": "submitting", "index": 3, "model": "m/x"}
    write_lines(journal, {**submitting, "input": {"prompt": "p"}, "at": "2026-01-01T00:00:00Z"})
    with Journal.open(journal) as log:
        log.submitted("abc/0", "task-1")
        entry = log.entries["abc/0"]
        assert (entry.status, entry.index, entry.model, entry.prediction_id) == (
            "submitted",
            3,
            "m/x",
            "task-1",
        )


def test_a_failed_write_is_a_journal_error_carrying_the_task_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def disk_full(fd: int, data: Any) -> int:
        if b'"status":"submitted"' in bytes(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    with Journal.open(tmp_path / "run.jsonl") as log:
        log.unsent("abc/0", "refused")
        monkeypatch.setattr(os, "write", disk_full)
        with pytest.raises(JournalError, match="No space left") as info:
            log.submitted("abc/0", "task-1")
        assert info.value.prediction_id == "task-1"
        assert "task-1" in str(info.value)
        monkeypatch.undo()
        with pytest.raises(JournalError, match="failed earlier") as again:
            log.unsent("abc/1", "refused")  # a journal that lost a record takes no more
        assert log.entries["abc/0"].status == "unsent"
    assert again.value.prediction_id is None


def test_a_write_past_the_file_size_limit_is_a_journal_error_with_the_task_id(
    tmp_path: Path,
) -> None:
    # A real EFBIG: the child process may write 400 bytes, the second record passes that.
    script = textwrap.dedent(
        f"""
        import resource, signal
        from wavespeed_async.batch.journal import Journal
        from wavespeed_async.errors import JournalError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (400, 400))
        with Journal.open({str(tmp_path / "run.jsonl")!r}) as log:
            log.unsent("abc/0", "x" * 200)
            try:
                log.submitted("abc/0", "task-" + "1" * 200)
            except JournalError as exc:
                print(exc.prediction_id, "|", exc, "|", repr(exc.__cause__))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    prediction_id, message, cause = done.stdout.strip().split(" | ")
    assert prediction_id == "task-" + "1" * 200
    assert "cannot write to the journal" in message
    assert "File too large" in cause


@pytest.mark.anyio
async def test_a_journal_write_failing_after_a_submit_stops_the_batch_with_the_task_id(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def disk_full_after_submit(fd: int, data: Any) -> int:
        if b'"status":"submitted"' in bytes(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", disk_full_after_submit)
    payloads = [TextToVideo(f"a fox #{n}") for n in range(5)]
    async with client_for(emulator) as client:
        with pytest.raises(JournalError) as info:
            async for _ in Batch(client, payloads, concurrency=1, journal=tmp_path / "run.jsonl"):
                pass
    [task_id] = emulator.tasks  # one submit went through; nothing was sent after it
    assert info.value.prediction_id == task_id
    assert emulator.submit_count == 1
