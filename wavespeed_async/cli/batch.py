"""``wavespeed-async batch FILE.jsonl``: the batch file, the run, Ctrl-C, the summary.

The file has one task per line (blank lines are skipped), in one of three forms::

    {"model": "wavespeed-ai/flux-dev", "input": {"prompt": "a lighthouse"}}
    {"text_to_video": {"prompt": "a red fox", "aspect_ratio": "9:16", "seed": 7}}
    {"edit_image": {"prompt": "make it snow", "image": "photo.png", "size": "1024x1024"}}

The short forms take the arguments of ``text_to_video`` and ``edit_image`` and are validated
as they are; a local ``image`` path is relative to the batch file and uploaded when its task
is submitted. The whole file is checked before anything is sent, and every bad line is
reported (``FILE:LINE: reason``), not only the first.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from .._engine.polling import PollSchedule
from .._wire.convert import MAX_PAYLOAD_DEPTH, converter, nested_too_deep, structure_payload
from .._wire.models import ImageEdit, TextToVideo
from ..batch.cost import plan_cost
from ..batch.items import BatchItem, ItemResult
from ..batch.runner import Batch
from ..client import AsyncWaveSpeed
from ..errors import InvalidInput, WaveSpeedError
from .account import print_cost_plan
from .progress import make_display, print_summary
from .watch import expected_duration

__all__ = ["BATCH_FILE_HELP", "check_image", "read_batch_file", "run_batch"]

SHORT_FORMS: dict[str, type[Any]] = {"text_to_video": TextToVideo, "edit_image": ImageEdit}
#: The file format, as ``batch --help`` shows it.
BATCH_FILE_HELP = """\
the file: one JSON object per line (blank lines are skipped), in one of three forms:
  {"text_to_video": {"prompt": "a red fox", "aspect_ratio": "9:16", "seed": 7}}
  {"edit_image": {"prompt": "make it snow", "image": "photo.png", "size": "1024x1024"}}
  {"model": "wavespeed-ai/flux-dev", "input": {"prompt": "a lighthouse"}}
The short forms take the options of text-to-video and edit-image (underscores for dashes),
checked the same way; a local image is relative to the file and uploaded when its task is
sent. The whole file is checked before anything is sent, and every bad line is reported.
Outputs are saved in --out as <task id>-<n>.<ext>; the journal makes a rerun resume.
"""
_FORMS = '{"model": ..., "input": {...}}, {"text_to_video": {...}} or {"edit_image": {...}}'


class BatchFileError(WaveSpeedError):
    """Lines of the batch file are not tasks; raised before anything is sent."""


#: A batch file is read a line at a time, within these bounds (a line may carry an image).
MAX_BATCH_BYTES = 256 * 2**20
MAX_LINE_BYTES = 16 * 2**20
MAX_BATCH_LINES = 1_000_000
#: Bad lines listed in the error; the rest are counted.
_SHOWN_PROBLEMS = 50


def read_batch_file(path: Path) -> tuple[list[BatchItem], list[int]]:
    """The items of a batch file and the line number of each; every bad line is reported.

    The file is streamed: one larger than :data:`MAX_BATCH_BYTES`, with more than
    :data:`MAX_BATCH_LINES` lines or a line longer than :data:`MAX_LINE_BYTES` is refused
    (:class:`BatchFileError`) without being read whole.
    """
    if path.stat().st_size > MAX_BATCH_BYTES:
        raise BatchFileError(f"{path} is {_too_big(path.stat().st_size)}; split it")
    items: list[BatchItem] = []
    lines: list[int] = []
    problems: list[str] = []
    with path.open("rb") as file:
        read = 0
        for number, raw in enumerate(iter(lambda: file.readline(MAX_LINE_BYTES + 1), b""), 1):
            read += len(raw)
            if len(raw) > MAX_LINE_BYTES:
                longest = f"{MAX_LINE_BYTES // 2**20} MiB"
                raise BatchFileError(f"{path}:{number}: a line longer than {longest}; split it")
            if read > MAX_BATCH_BYTES or number > MAX_BATCH_LINES:
                raise BatchFileError(f"{path} is {_too_big(read, number)}; split it")
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                problems.append(f"{path}:{number}: not UTF-8 text (byte {exc.start + 1})")
                continue
            if line.strip():
                problem = _read_line(line, path.parent, items)
                if problem is None:
                    lines.append(number)
                else:
                    problems.append(f"{path}:{number}: {problem}")
    if problems:
        count = f"{len(problems)} bad line{'s' * (len(problems) != 1)}"
        more = len(problems) - _SHOWN_PROBLEMS
        shown = problems[:_SHOWN_PROBLEMS] + ([f"... and {more:,} more"] if more > 0 else [])
        raise BatchFileError("\n".join([f"{count} in {path}, nothing was sent:", *shown]))
    if not items:
        raise BatchFileError(f"{path} has no tasks (one JSON object per line: {_FORMS})")
    return items, lines


def _too_big(size: int, lines: int = 0) -> str:
    if lines > MAX_BATCH_LINES:
        return f"longer than {MAX_BATCH_LINES:,} lines"
    return f"larger than {MAX_BATCH_BYTES // 2**20} MiB ({size:,} bytes)"


def _read_line(line: str, base: Path, items: list[BatchItem]) -> str | None:
    """Append the line's item to ``items``; else the reason it is not one."""
    deep = f"JSON nested too deeply (at most {MAX_PAYLOAD_DEPTH} levels)"
    try:
        data = json.loads(line)
        if nested_too_deep(data):
            return deep
        items.append(_item(data, base))
    except json.JSONDecodeError as exc:
        return f"not JSON: {exc.msg}"
    except RecursionError:
        return deep
    except ValueError as exc:  # InvalidInput; an integer of too many digits
        return str(exc)
    except OSError as exc:  # an image file
        return f"{exc.strerror}: {exc.filename}"
    return None


def _item(data: object, base: Path) -> BatchItem:
    if not isinstance(data, dict) or len(data) not in (1, 2):
        raise InvalidInput("line", data, _FORMS)
    if set(data) == {"model", "input"}:
        if not isinstance(data["input"], dict):
            raise InvalidInput("input", data["input"], "a JSON object")
        return BatchItem(str(data["model"]), data["input"])
    [(form, fields)] = data.items() if len(data) == 1 else [("", None)]
    cls = SHORT_FORMS.get(form)
    if cls is None or not isinstance(fields, dict):
        raise InvalidInput("line", data, _FORMS)
    known = {field.name for field in cls.__attrs_attrs__}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise InvalidInput(unknown[0], fields[unknown[0]], f"one of {', '.join(sorted(known))}")
    if cls is ImageEdit and isinstance(fields.get("image"), str):
        fields = {**fields, "image": check_image(fields["image"], base)}
    return BatchItem.of(structure_payload(fields, cls))


#: Bare base64 text (no dot, no path separator but ``/``): an image, not a file name.
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]{64,}")


def check_image(image: str, base: Path) -> str:
    """An ``image`` argument, a local path taken relative to ``base`` and checked to exist.

    URLs, data URIs and base64 text are returned as they are, for the client to judge; a
    path that is not a file raises ``FileNotFoundError`` (``image file not found: PATH``).
    """
    text = image.strip()
    if "://" in text or text[:5].lower() == "data:" or _BASE64.fullmatch(text):
        return image
    path = base / Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "image file not found", str(path))
    return str(path)


def out_destination(text: str) -> Path | str:
    """``--out``: a local folder as a ``Path``, a URL (``s3://``, ``file://``) as given."""
    return text if "://" in text else Path(text)


def journal_beside(out: Path | str, batch_file: Path) -> Path:
    """The default journal: in the ``--out`` folder, or here when outputs go to a store."""
    folder = out if isinstance(out, Path) else Path()
    return folder / f"{batch_file.stem}.journal.jsonl"


async def run_batch(
    args: argparse.Namespace, client: AsyncWaveSpeed, schedule: PollSchedule | None
) -> int:
    """Run the batch with a live display; 0 if every item completed, 1 if not, 130 on Ctrl-C."""
    items, lines = read_batch_file(args.file)
    if args.dry_run:  # the quotes and the balance; nothing is created
        fits = print_cost_plan(await plan_cost(client, items), args.max_cost, as_json=args.json)
        return 0 if fits or args.max_cost is None else 1
    journal = args.journal or journal_beside(args.out, args.file)
    await client.check_destination(args.out)  # before paying for any task
    folder = _missing(args.out) if isinstance(args.out, Path) else []
    made = [*folder, *_missing(journal.parent)]
    made += [] if journal.exists() else [journal]
    try:
        return await _run(args, client, schedule, items, lines, journal)
    finally:  # a batch refused before its first submit leaves nothing behind
        _remove_if_empty(made)


def _missing(directory: Path) -> list[Path]:
    """``directory`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    return missing


def _remove_if_empty(paths: list[Path]) -> None:
    """Remove each path made by this run that holds nothing: an empty journal, empty folders."""
    for path in sorted(set(paths), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty, or not ours to remove: kept
            if path.is_dir():
                path.rmdir()
            elif path.is_file() and path.stat().st_size == 0:
                path.unlink()


async def _run(
    args: argparse.Namespace,
    client: AsyncWaveSpeed,
    schedule: PollSchedule | None,
    items: list[BatchItem],
    lines: list[int],
    journal: Path,
) -> int:
    print(
        f"batch: {len(items)} tasks from {args.file}, at most {args.concurrency} at once;"
        f" journal {journal} (run the same command again to resume)",
        file=sys.stderr,
    )
    display = make_display(
        lines,
        items=items,
        concurrency=args.concurrency,
        expected=lambda model: expected_duration(client.poll_stats, model),
    )
    batch = Batch(
        client,
        items,
        concurrency=args.concurrency,
        journal=journal,
        out=args.out,
        on_event=display.on_event,
        timeout=args.timeout,
        poll_schedule=schedule,
        retry_failed=args.retry_failed,
        max_cost=args.max_cost,
    )
    results: list[ItemResult] = []
    started = time.monotonic()
    failure: WaveSpeedError | None = None  # raised past the task group, not in a group
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as group:
            group.start_soon(_stop_on_signal, signals, batch, group.cancel_scope)
            try:
                with display:
                    async for result in batch:
                        results.append(result)
            except WaveSpeedError as exc:  # about the whole batch: a refused cost, a bad key
                failure = exc
            group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    elapsed = time.monotonic() - started
    results.sort(key=lambda result: result.index)
    if args.json:
        print(json.dumps(_report(results, lines, journal, batch.stopping, elapsed)))
    if batch.stopping:
        print(
            f"interrupted: {len(results)} of {len(items)} tasks finished; the rest keep their"
            f" place in {journal}: run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    if not args.json:
        print_summary(results, lines)
    print(f"batch done in {elapsed:.1f}s", file=sys.stderr)
    if batch.bill is not None and not batch.bill.drifted:  # a drift is already a warning line
        print(f"batch bill: {batch.bill.summary()}", file=sys.stderr)  # quoted against billed
    return 0 if all(result.ok for result in results) else 1


async def _stop_on_signal(signals: Any, batch: Batch, scope: anyio.CancelScope) -> None:
    async for _ in signals:
        if batch.stopping:
            scope.cancel()  # a second Ctrl-C: stop a history lookup or a download too
            return
        batch.stop()  # nothing more is submitted; sent submits get their ids journaled


def _report(
    results: list[ItemResult], lines: list[int], journal: Path, interrupted: bool, elapsed: float
) -> dict[str, Any]:
    return {
        "total": len(lines),
        **outcome_counts(results),
        "resumed": sum(result.resumed for result in results),
        "interrupted": interrupted,
        "seconds": round(elapsed, 3),
        "journal": str(journal),
        "items": [item_json(result, lines[result.index]) for result in results],
    }


def outcome_counts(results: list[ItemResult]) -> dict[str, int]:
    """How many results ended each way (every outcome named, zeros too)."""
    counts = {outcome: 0 for outcome in ("completed", "failed", "uncertain", "unfinished")}
    for result in results:
        counts[result.outcome] += 1
    return counts


def item_json(result: ItemResult, line: int) -> dict[str, Any]:
    """One item of a batch report, for ``--json``: its line in the file and how it ended."""
    return {
        "line": line,
        "outcome": result.outcome,
        "id": result.prediction_id,
        "resumed": result.resumed,
        "files": [str(path) for path in result.files],
        "error": str(result.error) if result.error else None,
        "prediction": converter.unstructure(result.prediction) if result.prediction else None,
    }
