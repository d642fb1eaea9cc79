"""The command line under hostile input: whatever a user types or a file holds, the answer is
an ``error:`` message and exit status 1, never a traceback, and nothing is sent that was refused.

Each case runs ``wavespeed-async`` in a subprocess against a loopback server of the test's own
that records every request (so "nothing sent" is checked, not assumed).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wavespeed_async import InvalidInput
from wavespeed_async.cli import main
from wavespeed_async.cli.account import since
from wavespeed_async.cli.batch import BatchFileError, read_batch_file

from .support import CLI_ENV, FLUX, run_cli

pytestmark = pytest.mark.slow  # runs the CLI in subprocesses

TASK = {"text_to_video": {"prompt": "a red fox"}}
ODD_MODEL = "acme/odd-model"
#: A catalogue entry whose schema fields are not objects, with defaults JSON cannot show.
ODD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"prompt": 7, "size": {"default": {"a": [1, {"b": None}]}}, "seed": None},
    "required": "prompt",
    "x-order-properties": [None, "seed", 5, "prompt"],
}


class Recorder(http.server.ThreadingHTTPServer):
    """A loopback API that records each request's path and answers every one alike."""

    paths: list[str]


class Handler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def do_GET(self) -> None:
        self.answer()

    def do_POST(self) -> None:
        self.answer()

    def answer(self) -> None:
        self.server.paths.append(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        data: Any = {}
        if self.path == "/api/v3/models":
            run = {"type": "model_run", "request_schema": ODD_SCHEMA}
            data = [{"model_id": ODD_MODEL, "api_schema": {"api_schemas": [run]}}]
        elif self.path == "/api/v3/balance":
            data = {"balance": 10**400}  # too large for a float
        body = json.dumps({"code": 200, "message": "success", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def api() -> Iterator[Recorder]:
    server = Recorder(("127.0.0.1", 0), Handler)
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server: Recorder) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def batch_file(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def deep(depth: int) -> str:
    return '{"prompt": "a fox", "x": ' + "[" * depth + "]" * depth + "}"


def dangling(tmp: Path) -> str:
    (tmp / "out").symlink_to(tmp / "nowhere")
    return str(tmp / "out")


def looping(tmp: Path) -> str:
    (tmp / "a").symlink_to(tmp / "b")
    (tmp / "b").symlink_to(tmp / "a")
    return str(tmp / "a")


def valid(tmp: Path) -> str:
    return batch_file(tmp / "ok.jsonl", json.dumps(TASK).encode() + b"\n")


def sparse(tmp: Path) -> str:
    with (tmp / "huge.jsonl").open("wb") as file:
        file.truncate(3 * 2**30)  # 3 GB of holes: nothing is written to the disk
    return str(tmp / "huge.jsonl")


Args = Callable[[Path], list[str]]

CASES: dict[str, tuple[Args, str]] = {
    "since-99999999999d": (lambda _: ["history", "--since", "99999999999d"], "--since"),
    "since-3000000d": (lambda _: ["history", "--since", "3000000d"], "--since"),
    "since-month-13": (lambda _: ["history", "--since", "2024-13-45"], "--since"),
    "since-year-0": (lambda _: ["history", "--since", "0000-01-01"], "--since"),
    "price-input-5000-deep": (
        lambda _: ["price", FLUX, "--input", deep(5_000)],
        "--input",
    ),
    "price-input-150-deep": (lambda _: ["price", FLUX, "--input", deep(150)], "nested"),
    "batch-not-utf8": (
        lambda tmp: ["batch", batch_file(tmp / "b.jsonl", b'\xff\xfe{"a": 1}\n')],
        "UTF-8",
    ),
    "batch-line-5000-deep": (
        lambda tmp: ["batch", batch_file(tmp / "b.jsonl", deep(5_000).encode())],
        "nested",
    ),
    "batch-input-150-deep": (
        lambda tmp: [
            "batch",
            batch_file(
                tmp / "b.jsonl",
                json.dumps({"model": FLUX, "input": json.loads(deep(150))}).encode(),
            ),
        ],
        "nested",
    ),
    "batch-3-GB-file": (lambda tmp: ["batch", sparse(tmp)], "larger than"),
    "batch-endless-line": (lambda _: ["batch", "/dev/zero"], "longer than"),
    "batch-redis-without-scheme": (
        lambda tmp: ["batch", valid(tmp), "--redis", "cache:6379"],
        "--redis",
    ),
    "text-to-video-out-dangling-symlink": (
        lambda tmp: ["text-to-video", "a fox", "--out", dangling(tmp)],
        "--out",
    ),
    "text-to-video-out-looping-symlink": (
        lambda tmp: ["text-to-video", "a fox", "--out", looping(tmp)],
        "--out",
    ),
    "batch-out-dangling-symlink": (
        lambda tmp: ["batch", valid(tmp), "--out", dangling(tmp)],
        "--out",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_hostile_input_is_an_error_line_and_status_1_with_nothing_sent(
    api: Recorder, tmp_path: Path, case: str
) -> None:
    make, named = CASES[case]
    argv = make(tmp_path)
    sent = len(api.paths)
    done = run_cli(argv[0], "--base-url", url(api), *argv[1:], env=CLI_ENV)
    assert "Traceback" not in done.stderr
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error:"), done.stderr
    assert named in done.stderr
    assert len(done.stderr) < 2_000
    assert api.paths[sent:] == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "70000"],
        ["--port", "-1"],
        ["--speed", "-1"],
        ["--speed", "nan"],
        ["--balance", "nan"],
        ["--balance", "inf"],
    ],
    ids=" ".join,
)
def test_emulator_arguments_out_of_range_are_one_error_line(argv: list[str]) -> None:
    done = run_cli("emulator", *argv)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("error: ")
    assert argv[0].lstrip("-") in line


def test_schema_of_an_odd_catalogue_entry_prints_what_it_can(api: Recorder) -> None:
    done = run_cli("schema", ODD_MODEL, "--base-url", url(api), env=CLI_ENV)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [
        "  seed: optional, a value",
        "  prompt: optional, a value",
        '  size: optional, a value (default {"a": [1, {"b": null}]})',
    ]


def test_a_balance_too_large_for_a_float_is_one_error_line(api: Recorder) -> None:
    done = run_cli("balance", "--base-url", url(api), env=CLI_ENV)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("error: the balance is not an amount of USD")
    assert len(line) < 200


# --- the last resort ------------------------------------------------------------------------


def broken_balance(monkeypatch: pytest.MonkeyPatch) -> None:
    """``balance`` hits a bug of ours: an exception nobody expects."""

    async def crash(*_: object) -> int:
        raise KeyError("an unforeseen key")

    monkeypatch.setattr("wavespeed_async.cli.account._balance", crash)
    monkeypatch.setenv("WAVESPEED_API_KEY", "k")


def test_an_unexpected_error_is_one_line_naming_the_command(
    api: Recorder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken_balance(monkeypatch)
    monkeypatch.delenv("WAVESPEED_DEBUG", raising=False)
    assert main(["balance", "--base-url", url(api)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: balance failed unexpectedly: KeyError")
    assert "--debug" in line


@pytest.mark.parametrize("how", ["--debug", "WAVESPEED_DEBUG=1"])
def test_the_stack_of_an_unexpected_error_is_shown_only_when_asked(
    api: Recorder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    broken_balance(monkeypatch)
    monkeypatch.delenv("WAVESPEED_DEBUG", raising=False)
    argv = ["balance", "--base-url", url(api)]
    if how == "--debug":
        argv.append("--debug")
    else:
        monkeypatch.setenv("WAVESPEED_DEBUG", "1")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "an unforeseen key" in err
    assert err.splitlines()[-1].startswith("error: balance failed unexpectedly: KeyError")


def test_an_unexpected_error_in_a_real_process_prints_no_traceback(api: Recorder) -> None:
    script = (
        "import sys, wavespeed_async.cli as cli, wavespeed_async.cli.account as account\n"
        "async def crash(*_): raise RuntimeError('a bug')\n"
        "account._balance = crash\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WAVESPEED_")}
    done = subprocess.run(
        [sys.executable, "-c", script, "balance", "--base-url", url(api)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **CLI_ENV},
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: balance failed unexpectedly: RuntimeError: a bug"
        " (a bug of wavespeed-async: run again with --debug for the details)"
    ]


# --- open-ended inputs, in process --------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40) | st.from_regex(r"\A\d{1,30}(\.\d{1,5})?[smhd]\Z"))
def test_any_since_text_is_a_time_or_invalid_input(text: str) -> None:
    try:
        when = since(text)
    except InvalidInput as exc:
        refused: InvalidInput | None = exc
    else:
        refused = None
        assert when.tzinfo is not None
    assert refused is None or refused.field == "--since"


LINES = st.binary(max_size=60) | st.from_regex(rb"\A[\[\]{}\":, a-z0-9_/.-]{0,80}\Z")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(LINES, max_size=6))
def test_any_batch_file_is_items_or_a_batch_file_error(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "any.jsonl"
        path.write_bytes(b"\n".join(lines))
        try:
            items, numbers = read_batch_file(path)
        except BatchFileError as exc:
            message = str(exc)
        else:
            message = ""
            assert len(items) == len(numbers) > 0
    assert len(message) < 20_000
