"""The command line's arguments: every command, its options and their help."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from .._wire.models import ASPECT_RATIOS, SEED_MAX, SIZE_MAX, SIZE_MIN
from .._wire.settings import BASE_URL_ENV
from ..client import DEFAULT_WAIT_TIMEOUT
from .batch import BATCH_FILE_HELP, out_destination

__all__ = ["SIZE_FORM", "WAITING", "Handler", "build_parser"]

#: Runs one command with its parsed arguments; returns the exit status.
Handler = Callable[[argparse.Namespace], Awaitable[int]]
SIZE_FORM = f"WxH, each side from {SIZE_MIN} to {SIZE_MAX}"
SEED_FORM = f"-1 for a random seed, or 0 to {SEED_MAX} to repeat a result"
#: The commands that wait for a task, and so take --timeout and --poll-interval.
WAITING = ("text-to-video", "edit-image", "batch", "download")


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line and exit status 1, like every other error."""

    def error(self, message: str) -> NoReturn:
        """Print ``error: <message> (see <prog> --help)`` and exit with status 1."""
        self.exit(1, f"error: {message} (see {self.prog} --help)\n")


def build_parser(handlers: Mapping[str, Handler], client: Any) -> argparse.ArgumentParser:
    """Every command and option; ``handlers`` run the commands, ``client`` opens a client."""
    parser = _Parser(prog="wavespeed-async", description="Generate media with WaveSpeedAI.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(
        name: str, handler: Any, help_text: str, epilog: str | None = None
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler, command=name, timeout=None, poll_interval=None)
        sub.add_argument("--debug", action="store_true", help="print the stack of a bug")
        if name != "emulator":
            sub.add_argument(
                "--base-url",
                default=None,
                metavar="URL",
                help=f"the API's address, such as an emulator's (default: ${BASE_URL_ENV},"
                " else https://api.wavespeed.ai with a key, else the embedded emulator)",
            )
            sub.add_argument("--json", action="store_true", help="print JSON on stdout")
        if name in WAITING:
            sub.add_argument(
                "--timeout",
                type=float,
                default=None,
                metavar="SECONDS",
                help="give up waiting after this long; the task keeps running"
                f" (default: {DEFAULT_WAIT_TIMEOUT:g} s)",
            )
            sub.add_argument(
                "--poll-interval",
                type=float,
                default=None,
                metavar="SECONDS",
                help="seconds between result checks (default: the platform's etiquette,"
                " 2-8 s for images, 5-15 s for videos)",
            )
        return sub

    def out(sub: argparse.ArgumentParser, default: str, what: str) -> None:
        sub.add_argument(
            "--out",
            type=out_destination,
            default=Path(default),
            metavar="DIR",
            help=f"the directory, or s3://bucket/prefix/ (gs://, az://), to keep {what} in"
            " (default: %(default)s)",
        )

    def seed(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--seed", type=int, default=-1, metavar="N", help=f"{SEED_FORM} (default: %(default)s)"
        )

    video = command(
        "text-to-video", handlers["text-to-video"], "Generate a 1080p video from a prompt."
    )
    video.add_argument("prompt", help="what the video shows")
    video.add_argument(
        "--aspect-ratio",
        default="16:9",
        choices=ASPECT_RATIOS,
        metavar="RATIO",
        help="the video's shape: %(choices)s (default: %(default)s)",
    )
    seed(video)
    out(video, "videos", "the MP4")

    edit = command(
        "edit-image", handlers["edit-image"], "Edit an image (URL or local file) with a prompt."
    )
    edit.add_argument("prompt", help="the edit to make, at most 120 characters")
    edit.add_argument(
        "--image",
        required=True,
        metavar="URL_OR_FILE",
        help="the image: an http(s) URL, a data: URI or a local file",
    )
    edit.add_argument(
        "--size",
        default="1328x1328",
        metavar="WxH",
        help=f"the output's size, {SIZE_FORM} (default: %(default)s)",
    )
    seed(edit)
    edit.add_argument(
        "--base64", action="store_true", help="ask for the outputs as base64, not URLs"
    )
    edit.add_argument(
        "--sync", action="store_true", help="use the API's sync mode (one request that waits)"
    )
    out(edit, "images", "the edited image")

    batch = command(
        "batch",
        handlers["batch"],
        "Run a JSON Lines file of tasks, resumably.",
        epilog=BATCH_FILE_HELP,
    )
    batch.add_argument("file", type=Path, help="one task per line, in a form shown below")
    out(batch, "outputs", "every output")
    batch.add_argument(
        "--concurrency",
        type=int,
        default=10,
        metavar="N",
        help="tasks in flight at most, 1 or more (default: %(default)s)",
    )
    batch.add_argument(
        "--journal",
        type=Path,
        default=None,
        metavar="FILE",
        help="the journal that makes a rerun resume (default: OUT/<file name>.journal.jsonl)",
    )
    batch.add_argument(
        "--retry-failed", action="store_true", help="resubmit tasks that failed in a past run"
    )
    batch.add_argument(
        "--max-cost",
        type=float,
        default=None,
        metavar="USD",
        help="refuse to start if the quotes total more (default: no limit)",
    )
    batch.add_argument("--dry-run", action="store_true", help="print the quotes, submit nothing")
    batch.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="share the batch with every worker started on this file and Redis, such as"
        " redis://host:6379/0 (default: none, a local batch)",
    )
    batch.add_argument(
        "--namespace",
        default="wavespeed",
        metavar="NAME",
        help="the Redis key prefix the workers share (default: %(default)s)",
    )
    batch.add_argument(
        "--reclaim-after",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --redis, take over the items of a worker silent this long: it died; a live"
        " one renews its items every third of this (default: %(default)s s)",
    )
    batch.add_argument(
        "--status",
        action="store_true",
        help="with --redis, print the shared batch's pending/running/done/failed counts",
    )

    result = command("result", handlers["result"], "Show a prediction's current state.")
    result.add_argument("id", help="the task id that a submit printed")

    download = command(
        "download", handlers["download"], "Wait for a prediction and save its outputs."
    )
    download.add_argument("id", help="the task id that a submit printed")
    out(download, "outputs", "the outputs")

    from .account import add_commands

    add_commands(command, client)

    emulator = command("emulator", handlers["emulator"], "Run the local WaveSpeed emulator.")
    emulator.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s)")
    emulator.add_argument("--port", type=int, default=8765, help="port (default: %(default)s)")
    emulator.add_argument(
        "--speed", type=float, default=1.0, help="emulated s per real s (default: %(default)s)"
    )
    emulator.add_argument("--api-key", default=None, help="accept only this key")
    emulator.add_argument("--balance", type=float, default=None, help="account credit, USD")
    emulator.add_argument(
        "--level",
        choices=["bronze", "silver", "gold", "ultra"],
        help="enforce an account level's limits, one of %(choices)s (default: none)",
    )
    emulator.add_argument(
        "--submits-per-minute", type=float, default=None, help="429 past this rate (default: none)"
    )
    emulator.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="tasks running at once; more wait as created (default: none)",
    )
    return parser
