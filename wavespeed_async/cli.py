"""The ``wavespeed-async`` command line.

With no ``WAVESPEED_API_KEY`` (and no ``--base-url``) every command runs against the embedded
emulator, and says so in one line on stderr. Results go to stdout (``--json`` for scripts),
progress and errors to stderr; an error is one line and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio

from ._convert import converter
from ._models import ImageEdit, TextToVideo
from ._polling import IMAGE_SCHEDULE, VIDEO_SCHEDULE, PollSchedule
from .client import API_KEY_ENV, BASE_URL_ENV, AsyncWaveSpeed
from .errors import InvalidInput, WaveSpeedError
from .future import PredictionFuture

__all__ = ["main"]

#: The embedded emulator runs this many times faster than the platform, and the client polls
#: on the same scaled clock, so a demo video takes seconds, not a minute.
EMULATOR_SPEED = 10.0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 failure, 130 interrupted)."""
    args = _parser().parse_args(argv)
    try:
        return int(anyio.run(args.handler, args))
    except WaveSpeedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a batch file or an output directory
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        # Python 3.10's loop lets Ctrl-C surface as a cancellation: the same interruption.
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wavespeed-async", description="Generate media with WaveSpeedAI."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        if name != "emulator":
            sub.add_argument(
                "--base-url",
                default=os.environ.get(BASE_URL_ENV),
                help=f"the API's address, such as an emulator's (default: ${BASE_URL_ENV})",
            )
            sub.add_argument("--json", action="store_true", help="print JSON for scripts")
            sub.add_argument("--timeout", type=float, default=None, help="seconds to wait")
            sub.add_argument(
                "--poll-interval",
                type=float,
                default=None,
                metavar="SECONDS",
                help="seconds between result checks (default: the platform's etiquette,"
                " 2-8 s for images, 5-15 s for videos)",
            )
        return sub

    video = command("text-to-video", _text_to_video, "Generate a 1080p video from a prompt.")
    video.add_argument("prompt")
    video.add_argument("--aspect-ratio", default="16:9")
    video.add_argument("--seed", type=int, default=-1)
    video.add_argument("--out", type=Path, default=Path("videos"))

    edit = command("edit-image", _edit_image, "Edit an image (URL or local file) with a prompt.")
    edit.add_argument("prompt")
    edit.add_argument("--image", required=True, help="an image URL or a local file")
    edit.add_argument("--size", default="1328x1328", help="WxH, each 512..2048")
    edit.add_argument("--seed", type=int, default=-1)
    edit.add_argument("--base64", action="store_true", help="ask for base64 outputs")
    edit.add_argument("--sync", action="store_true", help="use the API's sync mode")
    edit.add_argument("--out", type=Path, default=Path("images"))

    batch = command("batch", _batch, "Run a JSON Lines file of tasks, resumably.")
    batch.add_argument("file", type=Path, help="one task per line (see the README)")
    batch.add_argument("--out", type=Path, default=Path("outputs"), help="where outputs go")
    batch.add_argument("--concurrency", type=int, default=10, help="tasks in flight at most")
    batch.add_argument(
        "--journal", type=Path, default=None, help="default: OUT/<file name>.journal.jsonl"
    )
    batch.add_argument(
        "--retry-failed", action="store_true", help="resubmit tasks that failed in a past run"
    )
    batch.add_argument("--max-cost", type=float, default=None, metavar="USD")
    batch.add_argument("--dry-run", action="store_true", help="print the quotes, submit nothing")

    result = command("result", _result, "Show a prediction's current state.")
    result.add_argument("id")

    download = command("download", _download, "Wait for a prediction and save its outputs.")
    download.add_argument("id")
    download.add_argument("--out", type=Path, default=Path("outputs"))

    from ._cli_account import add_commands

    add_commands(command, _client)

    emulator = command("emulator", _emulator, "Run the local WaveSpeed emulator.")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8765)
    emulator.add_argument("--speed", type=float, default=1.0, help="emulated s per real s")
    emulator.add_argument("--api-key", default=None, help="accept only this key")
    emulator.add_argument("--balance", type=float, default=None, help="account credit, USD")
    emulator.add_argument("--level", choices=["bronze", "silver", "gold", "ultra"])
    emulator.add_argument("--submits-per-minute", type=float, default=None)
    emulator.add_argument("--max-concurrent", type=int, default=None)
    return parser


@contextlib.asynccontextmanager
async def _client(args: argparse.Namespace) -> AsyncIterator[tuple[AsyncWaveSpeed, float]]:
    """The client, and the factor to scale poll schedules by (1 for a real server)."""
    if os.environ.get(API_KEY_ENV, "").strip() or args.base_url:
        async with AsyncWaveSpeed(base_url=args.base_url) as client:
            yield client, 1.0
        return
    from .emulator import Emulator  # only when needed: it is not part of the client's import

    async with Emulator(speed=EMULATOR_SPEED) as emulator:
        print(
            f"no {API_KEY_ENV} set: using the embedded emulator at {emulator.base_url}"
            f" ({EMULATOR_SPEED:g}x speed)",
            file=sys.stderr,
        )
        async with AsyncWaveSpeed(api_key="emulator", base_url=emulator.base_url) as client:
            yield client, 1 / EMULATOR_SPEED


async def _finish(
    client: AsyncWaveSpeed, future: PredictionFuture, args: argparse.Namespace
) -> int:
    # The id first, so an interrupted or failed wait never loses the task.
    print(f"submitted {future.id} ({future.model})", file=sys.stderr)
    started = time.monotonic()
    prediction = await future.wait(args.timeout)
    paths = await client.download(prediction, args.out)
    elapsed = time.monotonic() - started
    if args.json:
        unstructured = converter.unstructure(prediction)
        print(json.dumps({"prediction": unstructured, "files": [str(p) for p in paths]}))
    else:
        print(f"completed {prediction.id} in {elapsed:.1f}s", file=sys.stderr)
        for path in paths:
            print(path)
    return 0


def _schedule(args: argparse.Namespace, scale: float, default: PollSchedule) -> PollSchedule:
    every = args.poll_interval
    if every is None:
        return default.scaled(scale)
    if not every > 0:
        raise InvalidInput("--poll-interval", every, "a number of seconds above 0")
    return PollSchedule(first_delay=every, min_interval=every, max_interval=every, jitter=0.1)


async def _text_to_video(args: argparse.Namespace) -> int:
    payload = TextToVideo(args.prompt, aspect_ratio=args.aspect_ratio, seed=args.seed)
    async with _client(args) as (client, scale):
        schedule = _schedule(args, scale, VIDEO_SCHEDULE)
        future = await client.submit(payload.model_id, payload, poll_schedule=schedule)
        return await _finish(client, future, args)


async def _edit_image(args: argparse.Namespace) -> int:
    # Every other field is validated before anything starts.
    payload = ImageEdit(
        args.prompt,
        image=args.image,
        size=args.size,
        seed=args.seed,
        enable_base64_output=args.base64,
        enable_sync_mode=args.sync,
    )
    async with _client(args) as (client, scale):
        # The client decides what --image is (URL, data URI, base64, or a file to upload).
        future = await client.submit_edit_image(
            payload.prompt,
            image=args.image,
            size=payload.size,
            seed=payload.seed,
            enable_base64_output=payload.enable_base64_output,
            enable_sync_mode=payload.enable_sync_mode,
            poll_schedule=_schedule(args, scale, IMAGE_SCHEDULE),
        )
        return await _finish(client, future, args)


async def _batch(args: argparse.Namespace) -> int:
    from ._cli_batch import read_batch_file, run_batch

    if args.concurrency < 1:
        raise InvalidInput("--concurrency", args.concurrency, "at least 1")
    read_batch_file(args.file)  # checked before an emulator starts or anything is sent
    async with _client(args) as (client, scale):
        given = args.poll_interval is not None
        # Without --poll-interval a real server gets the client's per-model etiquette.
        schedule = _schedule(args, scale, VIDEO_SCHEDULE) if given or scale != 1 else None
        return await run_batch(args, client, schedule)


async def _download(args: argparse.Namespace) -> int:
    async with _client(args) as (client, scale):
        future = client.prediction(args.id, poll_schedule=_schedule(args, scale, IMAGE_SCHEDULE))
        started = time.monotonic()
        prediction = await future.wait(args.timeout)
        paths = await client.download(prediction, args.out)
        if args.json:
            unstructured = converter.unstructure(prediction)
            print(json.dumps({"prediction": unstructured, "files": [str(p) for p in paths]}))
            return 0
        print(f"{prediction.id} completed ({time.monotonic() - started:.1f}s)", file=sys.stderr)
        for path in paths:
            print(path)
        return 0


async def _result(args: argparse.Namespace) -> int:
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
    from ._limits import Limits
    from .emulator import Emulator

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
            print(
                f"WaveSpeed emulator listening on {emulator.base_url} (Ctrl-C to stop)", flush=True
            )
            async for _ in signals:
                break
    return 0
