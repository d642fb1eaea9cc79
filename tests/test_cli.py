"""The command line, driven as a user would: a subprocess, the embedded emulator, real files."""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import attrs
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from wavespeed_async._wire.models import ASPECT_RATIOS
from wavespeed_async.cli import _interrupted, _parser, main
from wavespeed_async.emulator import Emulator

from .support import CLI, free_port, run_cli

pytestmark = pytest.mark.slow  # runs the CLI in subprocesses


def test_text_to_video_without_a_key_uses_the_emulator_and_saves_an_mp4(tmp_path: Path) -> None:
    done = run_cli("text-to-video", "a red fox running through snow", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "embedded emulator" in done.stderr
    assert "submitted" in done.stderr
    [line] = done.stdout.splitlines()
    video = Path(line)
    assert video.parent == tmp_path
    assert video.suffix == ".mp4"
    assert video.read_bytes()[4:8] == b"ftyp"


def test_edit_image_uploads_a_local_file_and_prints_json(tmp_path: Path) -> None:
    source = tmp_path / "photo.png"
    source.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    out = tmp_path / "out"
    done = run_cli(
        "edit-image", "make it snow", "--image", str(source), "--size", "1024x640",
        "--out", str(out), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["prediction"]["status"] == "completed"
    [path] = map(Path, result["files"])
    assert struct.unpack(">II", path.read_bytes()[16:24]) == (1024, 640)


def test_bad_input_is_one_readable_line_and_exit_status_1() -> None:
    done = run_cli("text-to-video", "a fox", "--seed", "-5")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: seed=-5 is invalid: must be an integer from -1 to 2147483647 (-1 = random)"
    ]
    assert "Traceback" not in done.stderr


def test_emulator_command_serves_other_commands_via_base_url(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [*CLI, "emulator", "--port", str(port), "--speed", "1000", "--api-key", "k"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert f"127.0.0.1:{port}" in server.stdout.readline()
        base = ["--base-url", f"http://127.0.0.1:{port}"]
        env = {"WAVESPEED_API_KEY": "k"}
        done = run_cli("text-to-video", "a fox", "--out", str(tmp_path), "--json", *base, env=env)
        assert done.returncode == 0, done.stderr
        assert "emulator" not in done.stderr  # it talked to the server it was given
        prediction_id = json.loads(done.stdout)["prediction"]["id"]
        shown = run_cli("result", prediction_id, *base, env=env)
        assert shown.stdout.startswith(f"{prediction_id} completed")
        wrong = run_cli("result", prediction_id, *base, env={"WAVESPEED_API_KEY": "nope"})
        assert wrong.returncode == 1
        assert "HTTP 401" in wrong.stderr
        assert "nope" not in wrong.stderr
    finally:
        server.send_signal(signal.SIGINT)
        status = server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()
    assert status == 0  # Ctrl-C stops the emulator cleanly


@pytest.mark.parametrize("argv", [["--help"], ["text-to-video", "--help"]])
def test_help_exits_cleanly(argv: list[str]) -> None:
    assert run_cli(*argv).returncode == 0


# --- what a new user runs into ----------------------------------------------------------------


@attrs.define
class Lasting:
    """An emulator serving from a thread of the test process, for many CLI runs."""

    emu: Emulator
    portal: BlockingPortal

    def args(self, *args: str) -> list[str]:
        return [*args, "--base-url", self.emu.base_url]


@pytest.fixture
def lasting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Lasting]:
    """A frozen emulator (tasks never finish unless advanced), with the key set for main()."""
    for name in list(os.environ):
        if name.startswith("WAVESPEED_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WAVESPEED_API_KEY", "k")
    with start_blocking_portal() as portal:
        emu = Emulator(speed=0)
        with portal.wrap_async_context_manager(emu):
            yield Lasting(emu, portal)


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("WAVESPEED_"):
            monkeypatch.delenv(name)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    [commands] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_option_has_help_that_names_its_default_and_choices(name: str) -> None:
    parser = subcommands()[name]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{name} {action.dest} has no help"
        text = action.help % {**vars(action), "default": action.default, "choices": "C"}
        if action.default not in (None, False):
            assert f"(default: {action.default}" in text, f"{name} {action.dest}: no default"
        if action.choices:
            assert "%(choices)s" in action.help, f"{name} {action.dest}: choices not shown"


def test_aspect_ratio_offers_the_models_choices_and_refuses_others(no_key: None) -> None:
    [ratio] = [a for a in subcommands()["text-to-video"]._actions if a.dest == "aspect_ratio"]
    assert tuple(ratio.choices or ()) == ASPECT_RATIOS
    done = run_cli("text-to-video", "a fox", "--aspect-ratio", "5:4")
    assert done.returncode == 1  # a usage error is an error like any other
    [line] = done.stderr.splitlines()
    assert "invalid choice: '5:4'" in line


def test_a_bad_size_is_refused_in_the_words_of_the_help(
    no_key: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["edit-image", "snow", "--image", "https://e.com/a.png", "--size", "100x100"]) == 1
    error = capsys.readouterr().err
    assert error == "error: --size='100x100' is invalid: must be WxH, each side from 512 to 2048\n"
    [size] = [a for a in subcommands()["edit-image"]._actions if a.dest == "size"]
    assert "WxH, each side from 512 to 2048" in (size.help or "")


def test_a_missing_image_file_says_not_found_before_anything_starts(
    no_key: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "photo.png"
    assert main(["edit-image", "make it snow", "--image", str(missing)]) == 1
    # One line: no emulator was started, no list of accepted forms.
    assert capsys.readouterr().err == f"error: image file not found: {missing}\n"


@pytest.mark.parametrize(
    "command",
    [
        ["text-to-video", "a fox"],
        ["edit-image", "make it snow", "--image", "https://example.com/in.png"],
        ["download", "0" * 32],
        ["batch", "TASKS"],
    ],
    ids=lambda command: command[0],
)
def test_an_out_that_is_a_file_is_refused_before_anything_is_sent(
    lasting: Lasting, capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"text_to_video": {"prompt": "a fox"}}) + "\n")
    existing = tmp_path / "photo.png"
    existing.write_bytes(b"not a directory")
    # --timeout: were the check late, the wait on the frozen clock would fail, not hang.
    argv = [str(tasks) if arg == "TASKS" else arg for arg in command] + ["--timeout", "5"]
    assert main(lasting.args(*argv, "--out", str(existing))) == 1
    assert capsys.readouterr().err == f"error: --out is a file, not a directory: {existing}\n"
    assert main(lasting.args(*argv, "--out", str(existing / "sub"))) == 1
    assert f"--out is inside the file {existing}" in capsys.readouterr().err
    assert lasting.emu.requests == []  # nothing was submitted, uploaded or even looked up


def test_a_bad_timeout_is_refused_before_the_task_is_submitted(
    lasting: Lasting, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(lasting.args("text-to-video", "a fox", "--timeout", "0")) == 1
    assert "--timeout=0.0 is invalid" in capsys.readouterr().err
    assert lasting.emu.requests == []


@pytest.mark.parametrize("command", ["result", "download"])
def test_an_id_unknown_to_the_embedded_emulator_says_how_to_run_a_lasting_one(
    no_key: None, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    assert (
        main(
            [command, "0" * 32, "--out", "unused"] if command == "download" else [command, "0" * 32]
        )
        == 1
    )
    error = capsys.readouterr().err
    assert "not found" in error
    assert "the embedded emulator is new for each command" in error
    assert "  wavespeed-async emulator --port 8765\n" in error
    assert (
        "  WAVESPEED_BASE_URL=http://127.0.0.1:8765 WAVESPEED_API_KEY=any"
        f" wavespeed-async {command} {'0' * 32}\n"
    ) in error


def wait_for_line(stream: IO[str], start: str) -> str:
    """Read ``stream`` until a line starts with ``start`` (the CLI flushes it at once)."""
    seen = []
    for line in stream:
        if line.startswith(start):
            return line
        seen.append(line)
    raise AssertionError(f"no line starting with {start!r} in {seen}")


def test_ctrl_c_during_a_wait_names_the_task_that_keeps_running(
    lasting: Lasting, tmp_path: Path
) -> None:
    # The emulator's clock is frozen: the task cannot finish, so the CLI is surely waiting.
    out = tmp_path / "my videos"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WAVESPEED_")}
    process = subprocess.Popen(
        [*CLI, *lasting.args("text-to-video", "a fox", "--out", str(out))],
        env={**clean, "WAVESPEED_API_KEY": "k"},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    task_id = wait_for_line(process.stderr, "submitted ").split()[1]
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=30) == 130
    process.stderr.close()
    assert rest.strip().splitlines() == [
        f"interrupted: task {task_id} keeps running on the platform; fetch it later with:"
        f" wavespeed-async download {task_id} --out '{out}' --base-url {lasting.emu.base_url}"
    ]
    assert task_id in lasting.emu.tasks


def test_ctrl_c_on_the_embedded_emulator_does_not_claim_the_task_runs_on() -> None:
    # That emulator ends with the command: there is nothing to fetch later.
    args = argparse.Namespace(task_id="abc", embedded=True, out=Path("videos"), base_url=None)
    assert _interrupted(args) == (
        "interrupted: task abc ran on the embedded emulator, which stopped too"
    )
