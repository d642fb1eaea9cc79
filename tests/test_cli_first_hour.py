"""What a new user meets in the first hour (issue 21): the CLI run as typed, in a subprocess."""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from wavespeed_async import AsyncWaveSpeed, PollStats, Prediction, Status
from wavespeed_async.batch import BatchEvent, BatchItem
from wavespeed_async.cli import WAITING, _parser
from wavespeed_async.cli.progress import LiveDisplay, estimate_remaining
from wavespeed_async.cli.watch import StatusLine, load_stats, remaining, save_stats
from wavespeed_async.emulator import Emulator
from wavespeed_async.errors import ConfigurationError

CLI = [sys.executable, "-m", "wavespeed_async"]
ROOT = Path(__file__).resolve().parent.parent
VIDEO = "bytedance/dreamina-v3.0-pro/text-to-video"


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any WAVESPEED_ setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVESPEED_")}
    return {**env, **extra}


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env=clean_env(**env)
    )


@pytest.fixture
def frozen_server() -> Iterator[tuple[Emulator, BlockingPortal]]:
    """An emulator in a thread of the test, its clock moving only when the test says."""
    with start_blocking_portal() as portal:
        emu = Emulator(speed=0)
        with portal.wrap_async_context_manager(emu):
            yield emu, portal


def wait_for_line(stream: IO[str], start: str) -> str:
    seen = []
    for line in stream:
        if line.startswith(start):
            return line
        seen.append(line)
    raise AssertionError(f"no line starting with {start!r} in {seen}")


# --- the library without a key ----------------------------------------------------------------


def test_the_client_without_a_key_says_how_to_point_it_at_an_emulator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WAVESPEED_API_KEY", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        AsyncWaveSpeed()
    message = str(caught.value)
    assert "wavespeed-async emulator --port 8765" in message
    assert "WAVESPEED_BASE_URL=http://127.0.0.1:8765" in message
    assert "WAVESPEED_API_KEY=any" in message


# --- a single generation ----------------------------------------------------------------------


def test_json_with_a_timeout_prints_the_task_a_script_can_resume(
    frozen_server: tuple[Emulator, BlockingPortal], tmp_path: Path
) -> None:
    emu, _ = frozen_server  # frozen: the task cannot finish, the deadline surely passes
    done = run_cli(
        "text-to-video", "a fox", "--json", "--timeout", "0.5", "--poll-interval", "0.05",
        "--out", str(tmp_path), "--base-url", emu.base_url, WAVESPEED_API_KEY="k",
    )  # fmt: skip
    assert done.returncode == 1
    printed = json.loads(done.stdout)
    assert printed == {"id": printed["id"], "model": VIDEO, "status": "created"}
    assert printed["id"] in emu.tasks
    assert done.stderr.splitlines()[-1].startswith("error: ")


def test_a_generation_prints_each_new_status_when_stderr_is_not_a_terminal(
    frozen_server: tuple[Emulator, BlockingPortal], tmp_path: Path
) -> None:
    emu, portal = frozen_server
    argv = ["text-to-video", "a fox", "--poll-interval", "0.05", "--out", str(tmp_path)]
    process = subprocess.Popen(
        [*CLI, *argv, "--base-url", emu.base_url],
        env=clean_env(WAVESPEED_API_KEY="k"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    assert process.stdout is not None
    try:
        task_id = wait_for_line(process.stderr, "submitted ").split()[1]
        portal.call(emu.advance, 1.0)
        line = wait_for_line(process.stderr, task_id)
        assert line.split("  ")[:2] == [task_id, "processing"]
        assert "elapsed" in line
        assert "no estimate yet" in line  # nothing learnt of this model on this server yet
        portal.call(emu.advance, 60.0)
        assert process.wait(timeout=30) == 0
        assert Path(process.stdout.read().strip()).suffix == ".mp4"
    finally:
        process.kill()
        process.stderr.close()
        process.stdout.close()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeFuture:
    id = "task-1"
    model = VIDEO
    status = Status.CREATED


def test_on_a_terminal_one_line_shows_status_elapsed_and_time_left() -> None:
    now = [100.0]
    screen = FakeTerminal()
    line = StatusLine(FakeFuture(), 60.0, screen, now=lambda: now[0])  # type: ignore[arg-type]
    now[0] += 15
    line.on_status(Prediction("task-1", status=Status.PROCESSING, raw_status="processing"))
    assert screen.getvalue() == "\r\x1b[Ktask-1  processing  0:15 elapsed, about 0:45 left"
    now[0] += 50
    line.draw()
    assert screen.getvalue().endswith("\r\x1b[Ktask-1  processing  1:05 elapsed, longer than"
                                      " the usual 1:00")  # fmt: skip
    line.close()
    assert screen.getvalue().endswith("\r\x1b[K")  # cleared for the outcome's line


def test_the_time_left_says_when_there_is_no_estimate_yet() -> None:
    assert remaining(None, 10.0) == "no estimate yet (the first task of this model)"
    assert remaining(90.0, 30.0) == "about 1:00 left"


def test_learnt_durations_outlive_the_command_per_server(tmp_path: Path) -> None:
    os.environ["WAVESPEED_CACHE_DIR"] = str(tmp_path)  # restored below: no monkeypatch here
    try:
        stats = PollStats()
        stats.record(VIDEO, 42.0)
        save_stats(stats, "https://api.wavespeed.ai")
        warm, other = PollStats(), PollStats()
        load_stats(warm, "https://api.wavespeed.ai")
        load_stats(other, "embedded emulator")
        assert warm.export() == {VIDEO: [42.0]}
        assert other.export() == {}
        (tmp_path / "poll-stats.json").write_text("not json")
        load_stats(PollStats(), "https://api.wavespeed.ai")  # a broken cache is ignored
    finally:
        del os.environ["WAVESPEED_CACHE_DIR"]


def test_a_run_against_the_embedded_emulator_remembers_the_models_duration(
    tmp_path: Path,
) -> None:
    done = run_cli(
        "text-to-video", "a fox", "--out", str(tmp_path / "videos"),
        WAVESPEED_CACHE_DIR=str(tmp_path / "cache"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    cache = json.loads((tmp_path / "cache" / "poll-stats.json").read_text())
    [seconds] = cache["embedded emulator"][VIDEO]
    assert 0 < seconds < 60  # a 30 s video, 10x fast


# --- batches ----------------------------------------------------------------------------------


def test_the_batch_table_shows_the_status_the_submit_answered() -> None:
    rich_console = pytest.importorskip("rich.console")
    screen = io.StringIO()
    console = rich_console.Console(file=screen, force_terminal=True, width=120)
    item = BatchItem(VIDEO, {"prompt": "x"})
    display = LiveDisplay([1, 2], console, items=[item, item], expected=lambda model: None)
    display.on_event(BatchEvent("submitted", 0, item, "task-a", status=Status.PROCESSING))
    display.on_event(BatchEvent("submitted", 1, item, "task-b"))
    console.print(display.render())
    text = screen.getvalue()
    assert "task-a  processing" in text
    assert "task-b  submitted" in text
    assert "estimating the time left" in text


def test_the_batch_time_left_counts_the_queue_over_the_concurrency() -> None:
    thirty = {VIDEO: 30.0}.get
    # Two running (10 s and 25 s old), four queued, two at once: (20 + 5 + 4 x 30) / 2.
    running = [(VIDEO, 10.0), (VIDEO, 25.0)]
    assert estimate_remaining(running, [VIDEO] * 4, 2, thirty) == pytest.approx(72.5)
    # The last task running bounds it from below, whatever the concurrency.
    assert estimate_remaining([(VIDEO, 5.0)], [], 10, thirty) == pytest.approx(25.0)
    # A model not seen yet counts as the average of those known; nothing known: no estimate.
    assert estimate_remaining([], ["other", VIDEO], 1, thirty) == pytest.approx(60.0)
    assert estimate_remaining([], ["other"], 1, thirty) is None
    assert estimate_remaining([], [], 1, thirty) == 0.0


def test_the_batch_display_estimates_from_tasks_finished_in_this_run() -> None:
    rich_console = pytest.importorskip("rich.console")
    console = rich_console.Console(file=io.StringIO(), force_terminal=True, width=120)
    item = BatchItem(VIDEO, {"prompt": "x"})
    display = LiveDisplay([1, 2, 3], console, items=[item] * 3, expected=lambda model: None)
    display.on_event(BatchEvent("submitted", 0, item, "task-a"))
    display.on_event(BatchEvent("completed", 0, item, "task-a"))
    assert display.time_left().startswith("about 0:00:")  # no longer "estimating"
    assert display.expected(VIDEO) is not None


def test_batch_help_shows_the_file_format() -> None:
    done = run_cli("batch", "--help")
    assert done.returncode == 0
    assert "README" not in done.stdout
    for form in ('{"text_to_video": {', '{"edit_image": {', '{"model": "wavespeed-ai/flux-dev"'):
        assert form in done.stdout


def test_a_batch_refused_by_max_cost_leaves_no_folder_and_no_journal(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"text_to_video": {"prompt": "a fox"}}\n')
    out = tmp_path / "outputs" / "today"
    done = run_cli("batch", str(tasks), "--out", str(out), "--max-cost", "0.0001")
    assert done.returncode == 1
    assert "error:" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks.jsonl"]


# --- history, delete, help, usage -------------------------------------------------------------


def test_history_says_so_when_there_is_nothing() -> None:
    done = run_cli("history")
    assert done.returncode == 0
    assert done.stdout == ""
    assert "no predictions in the history" in done.stderr


def test_history_says_more_exist_and_how_to_see_them(
    frozen_server: tuple[Emulator, BlockingPortal],
) -> None:
    emu, portal = frozen_server

    async def submit_three() -> None:
        async with AsyncWaveSpeed(api_key="k", base_url=emu.base_url) as client:
            for prompt in ("one", "two", "three"):
                await client.submit(VIDEO, {"prompt": prompt})

    portal.call(submit_three)
    first = run_cli("history", "--limit", "2", "--base-url", emu.base_url, WAVESPEED_API_KEY="k")
    assert first.returncode == 0
    assert len(first.stdout.splitlines()) == 2
    [hint] = first.stderr.splitlines()
    next_page = f"wavespeed-async history --base-url {emu.base_url} --limit 2 --page 2"
    assert hint == f"more predictions exist: {next_page}"
    second = run_cli(*shlex.split(next_page)[1:], WAVESPEED_API_KEY="k")
    assert len(second.stdout.splitlines()) == 1
    assert second.stderr == ""


def test_commands_that_do_not_wait_offer_no_timeout_or_poll_interval() -> None:
    [commands] = [a for a in _parser()._actions if hasattr(a, "choices") and a.choices]
    assert isinstance(commands.choices, dict)
    for name, parser in commands.choices.items():
        options = {option for action in parser._actions for option in action.option_strings}
        waits = {"--timeout", "--poll-interval"} <= options
        assert waits == (name in WAITING), name
    assert "--timeout" not in run_cli("balance", "--help").stdout
    assert "--timeout" in run_cli("download", "--help").stdout


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["text-to-video"], "the following arguments are required: prompt"),
        (["make-video", "a fox"], "argument COMMAND: invalid choice: 'make-video'"),
        (["balance", "--timeout", "5"], "unrecognized arguments: --timeout 5"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_status_1_as_the_cli_page_says(
    argv: list[str], says: str
) -> None:
    done = run_cli(*argv)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: {says}")
    assert line.endswith("--help)")
    page = " ".join((ROOT / "docs" / "pages" / "cli.md").read_text().split())
    assert "A usage error too is one line and exit status 1" in page


def test_the_emulator_prints_the_export_line_to_use_it() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [*CLI, "emulator", "--port", str(port)], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    try:
        assert f"listening on http://127.0.0.1:{port}" in server.stdout.readline()
        assert server.stdout.readline() == (
            f"export WAVESPEED_BASE_URL=http://127.0.0.1:{port} WAVESPEED_API_KEY=any\n"
        )
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=10) == 0
        server.stdout.close()
