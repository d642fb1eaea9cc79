"""What ``wavespeed-async batch`` shows: live progress on stderr, a summary at the end.

With ``rich`` installed (the ``cli`` extra) and a terminal on stderr, a live table of the tasks
in flight (their last status seen) above an overall bar with an estimate of the time left;
otherwise one plain line per event, which suits logs and pipes. ``rich`` is imported here only,
and only when used: the library never imports it.

The estimate is the work left (each task's expected duration, less its age for those running)
spread over the tasks allowed at once, and never less than the longest running task still
needs. A model's expected duration is the median of its tasks finished in this run, else what
the client learnt of it before; with neither, the display says it is still estimating.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Protocol

from ..batch.items import BatchEvent, BatchItem, ItemResult
from ..errors import PredictionFailed, SubmissionUncertain, WaveSpeedError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = ["Display", "make_display", "print_summary"]

MAX_ROWS = 12  # tasks shown in flight at once; the rest are counted
MAX_PROBLEMS = 50  # failed items listed in the summary; --json has them all


class Display(Protocol):
    """A progress display: a context manager fed with every batch event."""

    def on_event(self, event: BatchEvent) -> None:
        """Show one batch event."""
        ...

    def __enter__(self) -> Display: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def _rich_console(stream: IO[str]) -> Console | None:
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=stream)


Expected = Callable[[str], "float | None"]  # a model's expected duration, when known


def make_display(
    lines: Sequence[int],
    stream: IO[str] | None = None,
    *,
    items: Sequence[BatchItem] = (),
    concurrency: int = 1,
    expected: Expected | None = None,
) -> Display:
    """The live display on a terminal with rich, plain lines otherwise."""
    stream = stream or sys.stderr
    console = _rich_console(stream) if stream.isatty() else None
    if console is not None:
        return LiveDisplay(lines, console, items=items, concurrency=concurrency, expected=expected)
    return PlainDisplay(lines, stream)


def estimate_remaining(
    running: Sequence[tuple[str, float]],
    queued: Sequence[str],
    concurrency: int,
    expected: Expected,
) -> float | None:
    """Seconds until every task is done: ``running`` is (model, age) pairs, ``queued`` models.

    ``None`` when no model's duration is known; a model not yet seen counts as the average
    of those known.
    """
    models = {model for model, _ in running} | set(queued)
    known = {model: seconds for model in models if (seconds := expected(model)) is not None}
    if not known:
        return None if models else 0.0
    fallback = statistics.fmean(known.values())
    left = [max(0.0, known.get(model, fallback) - age) for model, age in running]
    work = sum(left) + sum(known.get(model, fallback) for model in queued)
    return max([work / max(1, concurrency), *left])


def _failed(line: str, event: BatchEvent) -> str:
    """``line 5: failed <id>: reason``; ``uncertain`` when a task may exist that nobody saw."""
    word = "uncertain" if isinstance(event.error, SubmissionUncertain) else "failed"
    task = f" {event.prediction_id}" if event.prediction_id else ""
    return f"{line}: {word}{task}: {reason(event.error)}"


class _Tally:
    """Counts shared by both displays."""

    def __init__(self, lines: Sequence[int]) -> None:
        self.lines = lines
        self.total = len(lines)
        self.finished = 0
        self.failed = 0
        self.earlier = 0  # finished in an earlier run, per the journal

    def count(self, event: BatchEvent) -> None:
        if event.kind in ("completed", "failed"):
            self.finished += 1
            self.failed += event.kind == "failed"
            self.earlier += event.resumed


class PlainDisplay(_Tally):
    """One line per event on ``stream``; items finished in an earlier run are counted once."""

    def __init__(self, lines: Sequence[int], stream: IO[str]) -> None:
        super().__init__(lines)
        self.stream = stream
        self._reported_earlier = 0

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._flush_earlier()

    def on_event(self, event: BatchEvent) -> None:
        """Print the event (finished-earlier items as one line, before the next event)."""
        self.count(event)
        if event.resumed and event.kind != "submitted":
            return
        self._flush_earlier()
        line = f"line {self.lines[event.index]}"
        task = event.prediction_id or ""
        if event.kind == "submitted":
            text = f"{line}: {'resumed' if event.resumed else 'submitted'} {task}"
        elif event.kind == "status":
            if event.status is None or event.status.is_terminal:
                return  # the completed or failed line follows at once
            text = f"{line}: {task} {event.status.value}"
        elif event.kind == "completed":
            text = f"{line}: completed {task} {' '.join(map(str, event.files))}".rstrip()
        else:
            text = _failed(line, event)
        print(f"[{self.finished}/{self.total}] {text}", file=self.stream, flush=True)

    def _flush_earlier(self) -> None:
        if self.earlier > self._reported_earlier:
            count, self._reported_earlier = self.earlier - self._reported_earlier, self.earlier
            print(
                f"[{self.finished}/{self.total}] {count} item{'s' * (count != 1)} finished in an"
                " earlier run (journal): skipped",
                file=self.stream,
                flush=True,
            )


class LiveDisplay(_Tally):
    """A rich live view: the tasks in flight (line, id, status, time) and an overall bar."""

    def __init__(
        self,
        lines: Sequence[int],
        console: Console,
        *,
        items: Sequence[BatchItem] = (),
        concurrency: int = 1,
        expected: Expected | None = None,
    ) -> None:
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        super().__init__(lines)
        self.console = console
        self.active: dict[int, tuple[str, str, float]] = {}  # index -> id, status, since
        self.items = items
        self.concurrency = concurrency
        self.learnt = expected or (lambda model: None)
        self.durations: dict[str, list[float]] = {}  # model -> seconds, finished in this run
        self.settled: set[int] = set()  # indexes finished
        self.progress = Progress(
            TextColumn("[bold]batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[left]}"),
            console=console,
        )
        self.bar = self.progress.add_task("batch", total=self.total, failed="", left="")
        self.live = Live(console=console, refresh_per_second=8, get_renderable=self.render)

    def __enter__(self) -> LiveDisplay:
        self.live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.live.stop()

    def on_event(self, event: BatchEvent) -> None:
        """Update the table and the bar."""
        self.count(event)
        task = event.prediction_id or ""
        if event.kind == "submitted":
            # The submit's answer may already say "processing": show it, not "submitted".
            status = event.status.value if event.status else "submitted"
            self.active[event.index] = (
                task,
                f"{status} (resumed)" if event.resumed else status,
                _now(),
            )
        elif event.kind == "status" and event.index in self.active:
            _, _, since = self.active[event.index]
            self.active[event.index] = (task, event.status.value if event.status else "?", since)
        elif event.kind in ("completed", "failed"):
            started = self.active.pop(event.index, None)
            self.settled.add(event.index)
            if event.kind == "completed" and started is not None and not event.resumed:
                model = self._model(event.index)
                self.durations.setdefault(model, []).append(_now() - started[2])
            if event.kind == "failed" and not event.resumed:
                text = _failed(f"line {self.lines[event.index]}", event)
                self.console.print(text, markup=False, highlight=False)
        failed = f"[red]{self.failed} failed" if self.failed else ""
        self.progress.update(self.bar, completed=self.finished, failed=failed)

    def _model(self, index: int) -> str:
        return self.items[index].model if index < len(self.items) else ""

    def expected(self, model: str) -> float | None:
        """The model's expected duration: this run's median, else what the client learnt."""
        seen = self.durations.get(model)
        return statistics.median(seen) if seen else self.learnt(model)

    def time_left(self) -> str:
        """The estimate, as the bar's last column shows it."""
        if self.finished >= self.total:
            return ""
        now = _now()
        running = [(self._model(i), now - since) for i, (_, _, since) in self.active.items()]
        waiting = set(range(self.total)) - self.settled - set(self.active)
        queued = [self._model(index) for index in waiting]
        seconds = estimate_remaining(running, queued, self.concurrency, self.expected)
        if seconds is None:
            return "estimating the time left"
        minutes, secs = divmod(round(seconds), 60)
        return f"about {minutes // 60}:{minutes % 60:02d}:{secs:02d} left"

    def render(self) -> RenderableType:
        """The table of tasks in flight above the bar."""
        from rich.console import Group
        from rich.table import Table

        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("line", "task", "status", "time"):
            table.add_column(column, justify="right" if column in ("line", "time") else "left")
        now = _now()
        shown = sorted(self.active.items())[:MAX_ROWS]
        for index, (task, status, since) in shown:
            table.add_row(str(self.lines[index]), task, status, f"{now - since:.0f}s")
        more = len(self.active) - len(shown)
        if more > 0:
            table.add_row("", f"... and {more} more in flight", "", "")
        self.progress.update(self.bar, left=self.time_left())
        return Group(table, self.progress)


def _now() -> float:
    return time.monotonic()


# --- the end ----------------------------------------------------------------------------------


def print_summary(
    results: Sequence[ItemResult], lines: Sequence[int], stream: IO[str] | None = None
) -> None:
    """The outcome counts, then the items that did not complete (a rich table if possible)."""
    stream = stream or sys.stdout
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    earlier = sum(result.resumed for result in results)
    problems = [result for result in results if not result.ok]
    rows: list[tuple[str, str, str, str]] = [
        (str(lines[r.index]), r.outcome, r.prediction_id or "-", reason(r.error))
        for r in problems[:MAX_PROBLEMS]
    ]
    if len(problems) > MAX_PROBLEMS:
        rows.append(("", f"... {len(problems) - MAX_PROBLEMS} more", "", "(see --json)"))
    summary = [(outcome, str(counts.get(outcome, 0))) for outcome in _OUTCOMES]
    summary.append(("total", f"{len(results)} ({earlier} from an earlier run)"))
    console = _rich_console(stream)
    if console is None:
        _plain_table(("outcome", "items"), summary, stream)
        if rows:
            _plain_table(("line", "outcome", "task", "error"), rows, stream)
        return
    console.print(_rich_table(("outcome", "items"), summary, "batch summary"))
    if rows:
        console.print(_rich_table(("line", "outcome", "task", "error"), rows, "not completed"))


_OUTCOMES = ("completed", "failed", "uncertain", "unfinished")


def reason(error: WaveSpeedError | None) -> str:
    """Why an item did not complete, on one line (without repeating its task id)."""
    if error is None:
        return ""
    if isinstance(error, PredictionFailed):
        text = f"{error.prediction.raw_status}: {error.prediction.error or 'no reason given'}"
    else:
        text = error.message
    return " ".join(text.split())


def _rich_table(header: Sequence[str], rows: Sequence[Sequence[str]], title: str) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for name in header:
        table.add_column(name, overflow="fold", no_wrap=name == "task")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # not markup: errors quote prompts
    return table


def _plain_table(header: Sequence[str], rows: Sequence[Sequence[str]], stream: IO[str]) -> None:
    widths = [max(len(row[n]) for row in [header, *rows]) for n in range(len(header))]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip(), file=stream)
