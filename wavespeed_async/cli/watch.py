"""What one generation shows while it runs, and the durations the command line remembers.

On a terminal, one status line on stderr, rewritten every second: the task id, the last status
seen, the time since the submit, and the time left as the model's earlier tasks suggest.
Elsewhere (a pipe, a log file) one plain line per status change.

The estimate comes from the client's :class:`~wavespeed_async.PollStats` (what polling learns
of each model's durations), which the command line keeps between runs in
``$WAVESPEED_CACHE_DIR`` (default ``$XDG_CACHE_HOME/wavespeed-async``, else
``~/.cache/wavespeed-async``), per server: the embedded emulator's durations never stand in
for the platform's. A cache that cannot be read or written is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .._engine.polling import PollStats
from .._wire.models import Prediction
from ..future import PredictionFuture

__all__ = ["expected_duration", "load_stats", "remaining", "save_stats", "watching"]

CACHE_ENV = "WAVESPEED_CACHE_DIR"
STATS_FILE = "poll-stats.json"
MAX_SERVERS = 8  # servers remembered (an emulator on a new port is a new server)
REDRAW_EVERY = 1.0  # seconds between redraws of the terminal line


def _stats_path() -> Path:
    base = os.environ.get(CACHE_ENV)
    if base:
        return Path(base) / STATS_FILE
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "wavespeed-async" / STATS_FILE


def _read_cache(path: Path) -> dict[str, dict[str, list[float]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_stats(stats: PollStats, server: str) -> None:
    """Seed ``stats`` with the durations remembered for ``server`` (nothing if none)."""
    durations = _read_cache(_stats_path()).get(server)
    if not isinstance(durations, dict):
        return
    with contextlib.suppress(TypeError, ValueError):  # a hand-edited file: start cold
        stats.load(
            {
                model: [float(value) for value in values]
                for model, values in durations.items()
                if isinstance(values, list)
            }
        )


def save_stats(stats: PollStats, server: str) -> None:
    """Remember ``stats`` for ``server`` (the most recent servers only; atomically)."""
    path = _stats_path()
    cache = _read_cache(path)
    cache.pop(server, None)
    cache[server] = stats.export()
    kept = dict(list(cache.items())[-MAX_SERVERS:])
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(kept), encoding="utf-8")
        temporary.replace(path)


def expected_duration(stats: PollStats, model: str) -> float | None:
    """The median duration seen of ``model``'s tasks, or ``None`` before the first one."""
    samples = stats.export().get(model)
    return statistics.median(samples) if samples else None


def clock(seconds: float) -> str:
    """``seconds`` as ``M:SS`` (or ``H:MM:SS``)."""
    minutes, secs = divmod(int(max(0.0, seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def remaining(expected: float | None, elapsed: float) -> str:
    """What is left, in words: an estimate, an overrun, or no estimate yet."""
    if expected is None:
        return "no estimate yet (the first task of this model)"
    if elapsed < expected:
        return f"about {clock(expected - elapsed)} left"
    return f"longer than the usual {clock(expected)}"


class StatusLine:
    """The status of one running task, on ``stream``: redrawn in place on a terminal."""

    def __init__(
        self,
        future: PredictionFuture,
        expected: float | None,
        stream: IO[str],
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.future = future
        self.expected = expected
        self.stream = stream
        self.now = now
        self.started = now()
        self.live = stream.isatty()
        self.status = future.status.value if future.status else "submitted"

    def text(self) -> str:
        """One line: id, status, elapsed, what is left."""
        elapsed = self.now() - self.started
        left = remaining(self.expected, elapsed)
        return f"{self.future.id}  {self.status}  {clock(elapsed)} elapsed, {left}"

    def draw(self) -> None:
        """Rewrite the terminal line (nothing elsewhere: plain lines come with each status)."""
        if self.live:
            self.stream.write(f"\r\x1b[K{self.text()}")
            self.stream.flush()

    def on_status(self, prediction: Prediction) -> None:
        """A new status was seen: redraw, or print a plain line."""
        self.status = prediction.raw_status or prediction.status.value
        if self.live:
            self.draw()
        elif not prediction.status.is_terminal:  # the outcome is printed by the caller
            print(self.text(), file=self.stream, flush=True)

    def close(self) -> None:
        """Clear the terminal line, so what follows starts clean."""
        if self.live:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    async def redraw(self) -> None:
        """Redraw every second until cancelled (the elapsed time moves on)."""
        while True:
            self.draw()
            await asyncio.sleep(REDRAW_EVERY)


@contextlib.contextmanager
def watching(future: PredictionFuture, stats: PollStats, stream: IO[str]) -> Iterator[StatusLine]:
    """Show ``future``'s status on ``stream`` while the block waits for it."""
    line = StatusLine(future, expected_duration(stats, future.model), stream)
    future.on_status(line.on_status)
    redraw = asyncio.get_running_loop().create_task(line.redraw()) if line.live else None
    try:
        yield line
    finally:
        if redraw is not None:
            redraw.cancel()
        line.close()
