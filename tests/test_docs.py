"""Every code block of README.md and docs/pages/ runs here, through Sybil.

Python blocks run in one of two ways, decided by the code itself:

- a complete program (no top-level ``await``) runs as written, with ``WAVESPEED_API_KEY`` and
  ``WAVESPEED_BASE_URL`` pointing at an emulator in a thread of its own, so that
  ``AsyncWaveSpeed()`` and ``asyncio.run(main())`` work unchanged;
- a snippet (top-level ``await``) runs as the body of an ``async def`` with ``client``, an open
  :class:`AsyncWaveSpeed` on that emulator with fast polling (the pages say so).

``bash`` blocks run each ``wavespeed-async ...`` line through the CLI's ``main``; a block that
must not run (installs, servers) is preceded by ``<!-- skip: next "reason" -->``, shown in the
page source. Blocks of one page share a namespace, top to bottom, and run in a fresh
directory holding ``photo.png``. The emulator runs 1000x fast: a 30 s video takes 30 ms.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import re
import shlex
import struct
import threading
import unittest
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sybil import Example, Sybil
from sybil.evaluators.python import pad
from sybil.parsers.markdown import CodeBlockParser, SkipParser

from tests.support import FAST
from wavespeed_async import AsyncWaveSpeed, cli
from wavespeed_async.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "pages").rglob("*.md"))]
SNIPPET_TIMEOUT = 60.0  # a hang fails the block instead of the suite


def _png(width: int = 64, height: int = 64) -> bytes:
    """A valid grey PNG, so that image blocks have a local file to upload."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@contextlib.contextmanager
def _emulator_in_a_thread() -> Iterator[str]:
    """An emulator on a loop of its own, so complete programs can `asyncio.run` beside it."""
    started = threading.Event()
    base_url: list[str] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        async with Emulator(speed=1000) as emu:
            base_url.append(emu.base_url)
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert started.wait(30), "the docs emulator did not start"
        yield base_url[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


class _Page:
    """Runs the blocks of one page: snippets on a loop that owns ``client``."""

    def __init__(self, base_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = AsyncWaveSpeed(api_key="docs", base_url=base_url, poll_schedule=FAST)
        self.ran = 0  # blocks evaluated (not skipped)

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()

    def python(self, example: Example) -> None:
        source = pad(example.parsed, example.line + example.parsed.line_offset)
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        code = compile(source, example.path, "exec", flags=flags, dont_inherit=True)
        result = eval(code, example.namespace)
        if inspect.iscoroutine(result):  # a snippet: top-level await
            self.loop.run_until_complete(asyncio.wait_for(result, SNIPPET_TIMEOUT))
        example.namespace.pop("__builtins__", None)
        self.ran += 1

    def bash(self, example: Example) -> None:
        for line in str(example.parsed).splitlines():
            line = line.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            argv = shlex.split(line)
            assert argv[0] == "wavespeed-async", (
                f"{example.path}:{example.line}: only wavespeed-async commands run here;"
                ' precede the block with <!-- skip: next "reason" -->'
            )
            try:
                status = cli.main(argv[1:])
            except SystemExit as exit_:  # --help
                status = int(exit_.code or 0)
            assert status == 0, f"{example.path}:{example.line}: `{line}` exited {status}"
        self.ran += 1

    def sybil(self) -> Sybil:
        return Sybil(
            parsers=[
                CodeBlockParser(language="python", evaluator=self.python),
                CodeBlockParser(language="bash", evaluator=self.bash),
                SkipParser(),
            ]
        )


@pytest.fixture(scope="module")
def docs_emulator() -> Iterator[str]:
    with _emulator_in_a_thread() as base_url:
        yield base_url


def _run_page(path: Path, base_url: str) -> tuple[int, list[str]]:
    page = _Page(base_url)
    skipped: list[str] = []
    try:
        document = page.sybil().parse(path)
        document.namespace["client"] = page.client
        for example in document:
            try:
                example.evaluate()
            except unittest.SkipTest as skip:
                skipped.append(f"line {example.line}: {skip}")
    finally:
        page.close()
    return page.ran, skipped


@pytest.mark.parametrize("path", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_code_block_runs(
    path: Path,
    docs_emulator: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    if path.name == "storage.md":  # writes to a real S3 server, bucket "media", AWS_* set
        request.getfixturevalue("s3_env").ensure_bucket("media")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WAVESPEED_API_KEY", "docs")
    monkeypatch.setenv("WAVESPEED_BASE_URL", docs_emulator)
    (tmp_path / "photo.png").write_bytes(_png())
    ran, skipped = _run_page(path, docs_emulator)
    print(f"{path.name}: {ran} blocks ran, {len(skipped)} skipped: {skipped}")


@pytest.mark.parametrize("path", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_skipped_block_says_why(path: Path) -> None:
    bare = re.findall(r"<!--\s*skip:\s*(?:next|start)\s*-->", path.read_text())
    assert not bare, f"{path.name}: a skip without a reason"
