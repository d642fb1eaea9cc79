"""The command line, driven as a user would: a subprocess, the embedded emulator, real files."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "wavespeed_async"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WAVESPEED_")}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env={**clean, **(env or {})}
    )


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
