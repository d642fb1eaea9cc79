"""The ``wavespeed-async`` command line.

With no ``WAVESPEED_API_KEY`` (and no ``--base-url``) every command runs against the embedded
emulator, and says so in one line on stderr. Results go to stdout (``--json`` for scripts),
progress and errors to stderr; an error is one line (followed by the bad lines of a batch
file, or a hint) and exit status 1, a usage error too. Every local check (files, directories,
arguments) is made before anything is submitted; Ctrl-C prints the id of a task that keeps
running (exit 130).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio

from .._engine.polling import IMAGE_SCHEDULE, VIDEO_SCHEDULE, PollSchedule
from .._storage.url import LocalDestination, parse_destination
from .._wire.convert import converter
from .._wire.models import (
    SIZE_MAX,
    SIZE_MIN,
    ImageEdit,
    Prediction,
    TextToVideo,
)
from .._wire.settings import API_KEY_ENV, BASE_URL_ENV
from ..client import AsyncWaveSpeed
from ..errors import InvalidInput, NotFound, PredictionTimeout, WaveSpeedError
from ..future import PredictionFuture
from .args import SIZE_FORM, WAITING, build_parser
from .batch import (
    check_image,
    journal_beside,
    read_batch_file,
    run_batch,
)
from .errors import debugging, report
from .watch import load_stats, save_stats, watching

__all__ = ["WAITING", "main"]

#: The embedded emulator runs this many times faster than the platform, and the client polls
#: on the same scaled clock, so a demo video takes seconds, not a minute.
EMULATOR_SPEED = 10.0


def _lasting_emulator_hint(command: str, task_id: str) -> str:
    return (
        "hint: the embedded emulator is new for each command and knows no task of an earlier"
        " one; run a lasting one in another terminal:\n"
        "  wavespeed-async emulator --port 8765\n"
        "then point every command at it:\n"
        "  WAVESPEED_BASE_URL=http://127.0.0.1:8765 WAVESPEED_API_KEY=any"
        f" wavespeed-async {command} {shlex.quote(task_id)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 failure, 130 interrupted)."""
    args = _parser().parse_args(argv)
    args.task_id = None  # set once a task is known, for the Ctrl-C message
    args.embedded = False  # set by _client
    try:
        return int(anyio.run(args.handler, args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        # Python 3.10's loop lets Ctrl-C surface as a cancellation: the same interruption.
        print(_interrupted(args), file=sys.stderr)
        return 130
    except Exception as exc:  # the last resort: one line, never a traceback (see cli/errors.py)
        return report(exc, args.command, debug=debugging(args.debug))


def _parser() -> argparse.ArgumentParser:
    return build_parser(
        {
            "text-to-video": _text_to_video,
            "edit-image": _edit_image,
            "batch": _batch,
            "result": _result,
            "download": _download,
            "emulator": _emulator,
        },
        _client,
    )


def _interrupted(args: argparse.Namespace) -> str:
    if args.task_id is None:
        return "interrupted"
    if args.embedded:
        return f"interrupted: task {args.task_id} ran on the embedded emulator, which stopped too"
    fetch = ["wavespeed-async", "download", args.task_id, "--out", str(args.out)]
    if args.base_url:
        fetch += ["--base-url", args.base_url]
    return (
        f"interrupted: task {args.task_id} keeps running on the platform;"
        f" fetch it later with: {shlex.join(fetch)}"
    )


# --- local checks, made before anything starts -----------------------------------------------


def _check_common(args: argparse.Namespace) -> None:  # the commands that wait
    for option, value in (("--timeout", args.timeout), ("--poll-interval", args.poll_interval)):
        if value is not None and not value > 0:
            raise InvalidInput(option, value, "a number of seconds above 0")
    out = getattr(args, "out", None)
    if isinstance(out, str):  # a URL: a local one is a folder like any other
        destination = parse_destination(out, field="--out")
        out = destination.directory if isinstance(destination, LocalDestination) else None
    if out is not None:
        _check_directory(out, "--out")


def _check_directory(path: Path, option: str) -> None:
    """``path`` is, or can be made, a writable directory (it is made only when written to)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # it cannot be made: a link to nowhere, or a loop of links
            what = f"{option} is a symbolic link that leads nowhere (dangling or a loop)"
            raise FileNotFoundError(errno.ENOENT, what, str(existing))
        existing = existing.parent
    if not existing.is_dir():
        what = "a file" if existing == path else f"inside the file {existing}"
        raise NotADirectoryError(errno.ENOTDIR, f"{option} is {what}, not a directory", str(path))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"{option} is not writable", str(existing))


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[x*]\s*(\d+)\s*", text, re.IGNORECASE)
    size = (int(match[1]), int(match[2])) if match else (0, 0)
    if not all(SIZE_MIN <= side <= SIZE_MAX for side in size):
        raise InvalidInput("--size", text, SIZE_FORM)
    return size


# --- the commands ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _client(
    args: argparse.Namespace, **options: Any
) -> AsyncIterator[tuple[AsyncWaveSpeed, float]]:
    """The client, made with ``options``, and the factor to scale poll schedules by."""
    base_url = args.base_url or os.environ.get(BASE_URL_ENV)
    args.embedded = not (os.environ.get(API_KEY_ENV, "").strip() or base_url)
    if not args.embedded:
        async with AsyncWaveSpeed(base_url=base_url, **options) as client:
            with _remembered(client, client.base_url):
                yield client, 1.0
        return
    from ..emulator import Emulator  # only when needed: it is not part of the client's import

    async with Emulator(speed=EMULATOR_SPEED) as emulator:
        print(
            f"no {API_KEY_ENV} set: using the embedded emulator at {emulator.base_url}"
            f" ({EMULATOR_SPEED:g}x speed)",
            file=sys.stderr,
        )
        async with AsyncWaveSpeed(
            api_key="emulator", base_url=emulator.base_url, **options
        ) as client:
            try:
                with _remembered(client, "embedded emulator"):
                    yield client, 1 / EMULATOR_SPEED
            except NotFound as exc:
                if getattr(args, "id", None) is None:  # not an id from an earlier command
                    raise
                hint = _lasting_emulator_hint(args.command, args.id)
                raise WaveSpeedError(f"{exc}\n{hint}") from exc


@contextlib.contextmanager
def _remembered(client: AsyncWaveSpeed, server: str) -> Iterator[None]:
    """Start with the durations learnt in earlier runs against ``server``; keep the new ones."""
    load_stats(client.poll_stats, server)
    try:
        yield
    finally:
        save_stats(client.poll_stats, server)


def _print_outcome(
    prediction: Prediction, paths: Sequence[Path | str], args: argparse.Namespace, took: float
) -> int:
    if args.json:
        unstructured = converter.unstructure(prediction)
        print(json.dumps({"prediction": unstructured, "files": [str(p) for p in paths]}))
    else:
        print(f"completed {prediction.id} in {took:.1f}s", file=sys.stderr)
        for path in paths:
            print(path)
    return 0


async def _finish(
    client: AsyncWaveSpeed, future: PredictionFuture, args: argparse.Namespace
) -> int:
    # The id first, so an interrupted or failed wait never loses the task.
    args.task_id = future.id
    print(f"submitted {future.id} ({future.model})", file=sys.stderr, flush=True)
    started = time.monotonic()
    prediction = await _wait(client, future, args)
    paths = await client.download(prediction, args.out)
    return _print_outcome(prediction, paths, args, time.monotonic() - started)


async def _wait(
    client: AsyncWaveSpeed, future: PredictionFuture, args: argparse.Namespace
) -> Prediction:
    """Wait with a status line; a deadline that passes still prints the task for a script."""
    try:
        with watching(future, client.poll_stats, sys.stderr):
            return await future.wait(args.timeout)
    except PredictionTimeout:
        if args.json:  # what a script needs to resume: `download ID`
            status = future.status.value if future.status else None
            print(json.dumps({"id": future.id, "model": future.model, "status": status}))
        raise


def _schedule(args: argparse.Namespace, scale: float, default: PollSchedule) -> PollSchedule:
    every = args.poll_interval
    if every is None:
        return default.scaled(scale)
    return PollSchedule(first_delay=every, min_interval=every, max_interval=every, jitter=0.1)


async def _text_to_video(args: argparse.Namespace) -> int:
    _check_common(args)
    payload = TextToVideo(args.prompt, aspect_ratio=args.aspect_ratio, seed=args.seed)
    async with _client(args) as (client, scale):
        await client.check_destination(args.out)  # before paying for the task
        schedule = _schedule(args, scale, VIDEO_SCHEDULE)
        future = await client.submit(payload.model_id, payload, poll_schedule=schedule)
        return await _finish(client, future, args)


async def _edit_image(args: argparse.Namespace) -> int:
    _check_common(args)
    image = check_image(args.image, Path())
    # Every other field is validated before anything starts.
    payload = ImageEdit(
        args.prompt,
        image=args.image,
        size=_size(args.size),
        seed=args.seed,
        enable_base64_output=args.base64,
        enable_sync_mode=args.sync,
    )
    async with _client(args) as (client, scale):
        await client.check_destination(args.out)  # before paying for the task
        # The client decides what --image is (URL, data URI, base64, or a file to upload).
        future = await client.submit_edit_image(
            payload.prompt,
            image=image,
            size=payload.size,
            seed=payload.seed,
            enable_base64_output=payload.enable_base64_output,
            enable_sync_mode=payload.enable_sync_mode,
            poll_schedule=_schedule(args, scale, IMAGE_SCHEDULE),
        )
        return await _finish(client, future, args)


async def _batch(args: argparse.Namespace) -> int:
    _check_common(args)
    if args.concurrency < 1:
        raise InvalidInput("--concurrency", args.concurrency, "at least 1")
    if args.redis is not None and not re.match(r"(?i)^(rediss?|unix)://", args.redis):
        raise InvalidInput("--redis", args.redis, "a redis://, rediss:// or unix:// URL")
    if (args.redis is not None or args.status) and not args.dry_run:
        from .queue import run_shared_batch  # needs the redis extra

        return await run_shared_batch(args, _client, lambda scale: _batch_schedule(args, scale))
    journal = args.journal or journal_beside(args.out, args.file)
    if journal.is_dir():
        raise IsADirectoryError(errno.EISDIR, "--journal is a directory, not a file", str(journal))
    _check_directory(journal.parent, "--journal")
    read_batch_file(args.file)  # checked before an emulator starts or anything is sent
    async with _client(args) as (client, scale):
        return await run_batch(args, client, _batch_schedule(args, scale))


def _batch_schedule(args: argparse.Namespace, scale: float) -> PollSchedule | None:
    # Without --poll-interval a real server gets the client's per-model etiquette.
    given = args.poll_interval is not None
    return _schedule(args, scale, VIDEO_SCHEDULE) if given or scale != 1 else None


async def _download(args: argparse.Namespace) -> int:
    _check_common(args)
    async with _client(args) as (client, scale):
        future = client.prediction(args.id, poll_schedule=_schedule(args, scale, IMAGE_SCHEDULE))
        args.task_id = future.id
        print(f"waiting for {future.id}", file=sys.stderr, flush=True)
        started = time.monotonic()
        prediction = await _wait(client, future, args)
        paths = await client.download(prediction, args.out)
        return _print_outcome(prediction, paths, args, time.monotonic() - started)


async def _result(args: argparse.Namespace) -> int:
    _check_common(args)
    async with _client(args) as (client, _):
        prediction = await client.get_prediction(args.id)
        if args.json:
            print(json.dumps(converter.unstructure(prediction)))
        else:
            print(f"{prediction.id} {prediction.raw_status} {prediction.error}".rstrip())
            for output in prediction.outputs:
                print(output)
        return 0


async def _emulator(args: argparse.Namespace) -> int:
    from .._wire.limits import Limits
    from ..emulator import Emulator

    # A level's published limits, each overridden by an explicit option.
    base = Limits.for_level(args.level) if args.level else Limits()
    limits = Limits(
        submits_per_minute=args.submits_per_minute or base.submits_per_minute,
        max_concurrent_tasks=args.max_concurrent or base.max_concurrent_tasks,
    )
    extra: dict[str, Any] = {} if args.balance is None else {"balance": args.balance}
    emulator = Emulator(
        host=args.host,
        port=args.port,
        speed=args.speed,
        api_key=args.api_key,
        limits=limits,
        **extra,
    )
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with emulator:
            key = "any" if args.api_key is None else "'<the --api-key you gave>'"
            print(
                f"WaveSpeed emulator listening on {emulator.base_url} (Ctrl-C to stop);"
                " in another terminal:",
                f"export WAVESPEED_BASE_URL={emulator.base_url} WAVESPEED_API_KEY={key}",
                sep="\n",
                flush=True,
            )
            async for _ in signals:
                break
    return 0
