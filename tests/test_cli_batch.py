"""``wavespeed-async batch`` as a user runs it: a subprocess, an emulator in its own process,
Ctrl-C and ``kill -9`` part-way, then the same command again."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wavespeed_async import (
    BatchEvent,
    BatchItem,
    ItemResult,
    Prediction,
    PredictionFailed,
    Status,
)
from wavespeed_async.cli import progress as _cli_progress
from wavespeed_async.cli.progress import LiveDisplay, PlainDisplay, print_summary

from .support import CLI, CLI_ENV, EmulatorProcess, run_cli, write_batch

pytestmark = pytest.mark.slow  # runs the CLI in subprocesses


@pytest.fixture
def fast_emulator() -> Iterator[EmulatorProcess]:
    emulator = EmulatorProcess(speed=1000)
    yield emulator
    emulator.close()


def batch_args(emulator: EmulatorProcess, tasks: Path, out: Path, *extra: str) -> list[str]:
    return [
        "batch", str(tasks), "--out", str(out), "--base-url", emulator.base_url,
        "--poll-interval", "0.02", *extra,
    ]  # fmt: skip


def journal_statuses(path: Path) -> list[str]:
    if not path.exists():
        return []
    complete = path.read_text().splitlines(keepends=True)
    return [json.loads(line)["status"] for line in complete if line.endswith("\n")]


def test_batch_with_a_journal_reports_json_and_a_rerun_creates_nothing(
    fast_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        json.dumps({"text_to_video": {"prompt": "a fox", "aspect_ratio": "9:16"}}) + "\n\n"
        + json.dumps({"model": "wavespeed-ai/flux-dev", "input": {"prompt": "a lighthouse"}})
        + "\n" + json.dumps({"text_to_video": {"prompt": "no [fail]"}}) + "\n"
    )  # fmt: skip
    out, journal = tmp_path / "out", tmp_path / "run.jsonl"
    args = batch_args(fast_emulator, tasks, out, "--journal", str(journal), "--json")
    done = run_cli(*args, env=CLI_ENV)
    assert done.returncode == 1, done.stderr  # one task failed
    report = json.loads(done.stdout)
    assert (report["total"], report["completed"], report["failed"]) == (3, 2, 1)
    lines = {item["line"]: item for item in report["items"]}
    assert sorted(lines) == [1, 3, 4]  # file line numbers, blank line skipped
    assert Path(lines[1]["files"][0]).read_bytes()[4:8] == b"ftyp"
    assert "[fail] marker" in lines[4]["error"]
    assert "line 3: submitted" in done.stderr  # the plain progress lines

    again = run_cli(*args, env=CLI_ENV)
    assert again.returncode == 1
    assert json.loads(again.stdout)["resumed"] == 3
    assert "3 items finished in an earlier run" in again.stderr
    assert sum(fast_emulator.created().values()) == 3


def test_result_and_download_find_a_batch_task_by_id(
    fast_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    tasks = write_batch(tmp_path / "tasks.jsonl", ["a hare"])
    done = run_cli(*batch_args(fast_emulator, tasks, tmp_path / "out", "--json"), env=CLI_ENV)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "tasks.journal.jsonl").exists()  # the default journal
    [item] = json.loads(done.stdout)["items"]
    base = ["--base-url", fast_emulator.base_url]
    shown = run_cli("result", item["id"], "--json", *base, env=CLI_ENV)
    assert json.loads(shown.stdout)["status"] == "completed"
    saved = run_cli("download", item["id"], "--out", str(tmp_path / "again"), *base, env=CLI_ENV)
    assert saved.returncode == 0, saved.stderr
    assert Path(saved.stdout.strip()).read_bytes()[4:8] == b"ftyp"
    missing = run_cli("download", "0" * 32, *base, env=CLI_ENV)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"waiting for {'0' * 32}",
        f"error: HTTP 404: prediction not found: {'0' * 32}",  # no hint: a lasting server
    ]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_a_batch_killed_part_way_resumes_without_duplicate_tasks(
    slow_emulator: EmulatorProcess, tmp_path: Path, stop: signal.Signals
) -> None:
    prompts = [f"a fox, take {n}" for n in range(16)]
    tasks, out = write_batch(tmp_path / "tasks.jsonl", prompts), tmp_path / "out"
    journal = out / "tasks.journal.jsonl"
    args = batch_args(slow_emulator, tasks, out, "--concurrency", "4")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVESPEED_")}
    first = subprocess.Popen(
        [*CLI, *args],
        env={**env, **CLI_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while "completed" not in journal_statuses(journal):  # some done, some running, some not sent
        assert time.monotonic() < deadline, "the batch made no progress"
        assert first.poll() is None, first.communicate()
        time.sleep(0.01)
    first.send_signal(stop)
    _, stderr = first.communicate(timeout=30)
    created_before = sum(slow_emulator.created().values())
    assert 0 < created_before < len(prompts)
    if stop == signal.SIGINT:
        assert first.returncode == 130
        assert stderr.strip().splitlines()[-1].startswith("interrupted: ")
        assert "Traceback" not in stderr
    else:
        assert first.returncode == -signal.SIGKILL

    # The run again resumes what was sent and sends what never was. An item cut off while its
    # submit was in flight is sent again only once the history proves its absence (it lists a
    # later task of the account past the clock skew), which takes minutes: until then it is
    # reported uncertain, never paid twice.
    second = run_cli(*args, "--json", env=CLI_ENV)
    report = json.loads(second.stdout)
    uncertain = [line for line in second.stderr.splitlines() if ": uncertain" in line]
    assert report["uncertain"] == len(uncertain) <= 4  # at most --concurrency in flight
    assert second.returncode == (1 if uncertain else 0), second.stderr
    assert all("absence is not proven" in line for line in uncertain)
    assert report["completed"] + report["uncertain"] == len(prompts)
    created = slow_emulator.created()
    assert set(created.values()) <= {1}  # no prompt twice: no duplicate task
    assert report["completed"] <= sum(created.values()) <= len(prompts)
    assert len(list(out.glob("*.mp4"))) == report["completed"]


def test_every_bad_line_of_a_batch_file_is_reported_and_nothing_starts(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    (tmp_path / "here.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    tasks.write_text(
        json.dumps({"text_to_video": {"prompt": "fine"}}) + "\n"
        + json.dumps({"text_to_video": {"prompt": "x", "aspect": "9:16"}}) + "\n"
        + json.dumps({"edit_image": {"prompt": "snow", "image": "here.png"}}) + "\n"
        + "{not json\n\n"
        + json.dumps({"edit_image": {"prompt": "snow", "image": "gone.png"}}) + "\n"
        + json.dumps({"text_to_video": {"prompt": "x", "seed": -5}}) + "\n"
    )  # fmt: skip
    done = run_cli("batch", str(tasks), "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    # Not even the emulator's announcement: every line is checked before anything starts.
    assert done.stderr.strip().splitlines() == [
        f"error: 4 bad lines in {tasks}, nothing was sent:",
        f"{tasks}:2: aspect='9:16' is invalid: must be one of aspect_ratio, prompt, seed",
        f"{tasks}:4: not JSON: Expecting property name enclosed in double quotes",
        f"{tasks}:6: image file not found: {tmp_path / 'gone.png'}",
        f"{tasks}:7: seed=-5 is invalid: must be an integer from -1 to 2147483647 (-1 = random)",
    ]
    missing = run_cli("batch", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"error: No such file or directory: {tmp_path / 'nope.jsonl'}"


def test_batch_runs_on_the_embedded_emulator_without_a_key(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"model": "wavespeed-ai/flux-dev", "input": {"prompt": "x"}}))
    done = run_cli("batch", str(tasks), "--out", str(tmp_path / "out"), "--poll-interval", "0.1")
    assert done.returncode == 0, done.stderr
    assert "embedded emulator" in done.stderr
    assert "completed" in done.stdout  # the summary table


# --- the displays, in process ---------------------------------------------------------------------


def events() -> list[BatchEvent]:
    item = BatchItem("wavespeed-ai/flux-dev", {"prompt": "x"})
    return [
        BatchEvent("submitted", 0, item, prediction_id="task-a"),
        BatchEvent("submitted", 1, item, prediction_id="task-b"),
        BatchEvent("status", 0, item, prediction_id="task-a", status=Status.PROCESSING),
        BatchEvent("completed", 1, item, prediction_id="task-b", files=(Path("out/b.png"),)),
    ]


def test_the_live_display_shows_each_task_in_flight_and_an_overall_bar() -> None:
    rich_console = pytest.importorskip("rich.console")
    screen = io.StringIO()
    console = rich_console.Console(file=screen, force_terminal=True, width=100)
    display = LiveDisplay([3, 7], console)
    for event in events():
        display.on_event(event)
    console.print(display.render())
    text = screen.getvalue()
    assert "task-a" in text
    assert "processing" in text
    assert "task-b" not in text  # finished: off the table, counted by the bar
    assert "1/2" in text


def test_the_plain_display_prints_one_line_per_event() -> None:
    stream = io.StringIO()
    with PlainDisplay([3, 7], stream) as display:
        for event in events():
            display.on_event(event)
    assert stream.getvalue().splitlines() == [
        "[0/2] line 3: submitted task-a",
        "[0/2] line 7: submitted task-b",
        "[0/2] line 3: task-a processing",
        "[1/2] line 7: completed task-b out/b.png",
    ]


def test_without_rich_the_summary_is_a_plain_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cli_progress, "_rich_console", lambda stream: None)
    item = BatchItem("wavespeed-ai/flux-dev", {"prompt": "x"})
    failed = Prediction("task-b", status=Status.FAILED, raw_status="failed", error="NSFW")
    results = [
        ItemResult(0, item, "completed", "task-a", resumed=True),
        ItemResult(1, item, "failed", "task-b", failed, PredictionFailed(failed)),
    ]
    stream = io.StringIO()
    print_summary(results, [3, 7], stream)
    assert stream.getvalue().splitlines() == [
        "outcome     items",
        "completed   1",
        "failed      1",
        "uncertain   0",
        "unfinished  0",
        "total       2 (1 from an earlier run)",
        "line  outcome  task    error",
        "7     failed   task-b  failed: NSFW",
    ]
