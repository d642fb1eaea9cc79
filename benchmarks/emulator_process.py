"""The emulator in a process of its own, so the client's CPU and memory are measured alone.

`python -m benchmarks.emulator_process --speed S --duration MODEL=SECONDS ...` prints one JSON
line with the base URL, then answers one JSON line for each command read on stdin:

- `stats`: what the server saw since the last reset (requests by kind, tasks, resends) and, per
  model, each task's result checks and detection lag on the emulated clock;
- `count START END`: the submits and result checks received between two POSIX times;
- `reset`: forget the requests and tasks seen so far;
- `quit`: stop.

The harness drives it through :class:`EmulatorProcess`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import random
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from wavespeed_async.emulator import Emulator, TaskRecord

ROOT = Path(__file__).resolve().parent.parent


def count(emu: Emulator, start: float, end: float) -> dict[str, int]:
    """The submits and result checks received between two POSIX times (a window of a run)."""
    submits = results = 0
    for request in emu.requests:
        if start <= request.wall.timestamp() <= end:
            parts = request.path.split("/")
            if request.method == "GET" and len(parts) == 6 and parts[5] == "result":
                results += 1
            elif request.method == "POST" and request.path.startswith("/api/v3/"):
                submits += 1
    return {"submits": submits, "results": results}


def stats(emu: Emulator) -> dict[str, Any]:
    """Requests and per-task polling figures since the last reset.

    A task's detection lag is the emulated time from its finish (``submitted_at + duration``)
    to the first request that could see it finished: the submit itself when the task finished
    at once, else the first result check made at or after the finish.
    """
    submits = results = other = 0
    checks: collections.Counter[str] = collections.Counter()
    first_seen: dict[str, float] = {}
    tasks = emu.tasks
    for request in emu.requests:
        parts = request.path.split("/")  # /api/v3/predictions/{id}/result
        if request.method == "GET" and len(parts) == 6 and parts[5] == "result":
            results += 1
            task = tasks.get(parts[4])
            checks[parts[4]] += 1
            if task is not None and parts[4] not in first_seen and request.at >= task.finishes_at:
                first_seen[parts[4]] = request.at
        elif request.method == "POST" and request.path.startswith("/api/v3/"):
            submits += 1
        else:
            other += 1
    per_model: dict[str, dict[str, list[Any]]] = {}
    for task in tasks.values():
        entry = per_model.setdefault(task.model, {"duration": [], "checks": [], "lags": []})
        seen = task.submitted_at if task.submitted_at >= task.finishes_at else None
        seen = first_seen.get(task.id, seen)
        entry["duration"].append(task.duration)
        entry["checks"].append(checks[task.id])
        entry["lags"].append(None if seen is None else seen - task.finishes_at)
    resent = sum(count - 1 for count in emu.created_per_payload().values() if count > 1)
    return {
        "submits": submits,
        "results": results,
        "other": other,
        "tasks": len(tasks),
        "resent": resent,
        "models": per_model,
    }


#: How a model's task durations vary around its nominal duration: ``(kind, parameter)``.
#: ``uniform``: times a factor uniform in ``1 +- parameter``; ``lognormal``: times
#: ``exp(parameter * N(0, 1))``, so the nominal duration is the median.
Variation = tuple[str, float]
VARIATIONS = ("uniform", "lognormal")


def vary_durations(
    emu: Emulator, spread: float, per_model: Mapping[str, Variation] | None = None, seed: int = 6
) -> None:
    """Vary each new task's duration: ``per_model`` variations, else uniform ``1 +- spread``.

    Real tasks do not last a whole number of seconds; with exact 3 s or 60 s tasks a client
    polling every whole second would see each finish the instant it happens, which flatters
    fixed-interval polling. The emulator has no knob for this, so its ``submit`` is wrapped.
    """
    submit, rng, variations = emu.state.submit, random.Random(seed), dict(per_model or {})

    def varied(*args: Any, **kwargs: Any) -> TaskRecord:
        task = submit(*args, **kwargs)
        kind, parameter = variations.get(task.model, ("uniform", spread))
        if kind == "lognormal":
            task.duration *= math.exp(parameter * rng.gauss(0.0, 1.0))
        elif parameter:
            task.duration *= 1 + parameter * (2 * rng.random() - 1)
        return task

    emu.state.submit = varied  # type: ignore[method-assign]


def real_timings(speed: float) -> None:
    """Report tasks' inference times on the client's real clock, not the emulated one.

    The client takes ``timings.inference`` as a lower bound of a task's duration on its own
    clock; at ``speed`` 10 a 60 s task reports 60,000 ms while the client saw 6 s go by, which
    would bias what it learns upwards. So every response's figure is divided by ``speed``.
    """
    from aiohttp import web

    from wavespeed_async.emulator import _app, _server

    build = _app.build_app

    @web.middleware
    async def rescale(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if isinstance(response, web.Response) and response.content_type == "application/json":
            assert isinstance(response.body, bytes)
            envelope = json.loads(response.body)
            data = envelope.get("data") if isinstance(envelope, dict) else None
            timings = data.get("timings") if isinstance(data, dict) else None
            if isinstance(timings, dict) and timings.get("inference"):
                timings["inference"] = round(timings["inference"] / speed)
                response.body = json.dumps(envelope).encode()
        return response

    def build_app(*args: Any) -> web.Application:
        app = build(*args)
        app.middlewares.append(rescale)
        return app

    _server.build_app = build_app  # type: ignore[attr-defined,assignment]


async def serve(
    speed: float,
    durations: Mapping[str, float],
    spread: float = 0.0,
    vary: Mapping[str, Variation] | None = None,
    timings_on_real_clock: bool = False,
) -> None:
    """Run the emulator and answer commands on stdin until `quit` or end of input."""
    if timings_on_real_clock and speed:
        real_timings(speed)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with Emulator(speed=speed, durations=durations) as emu:
        if spread or vary:
            vary_durations(emu, spread, vary)
        _answer({"base_url": emu.base_url})
        while line := (await reader.readline()).decode().strip():
            if line == "stats":
                _answer(stats(emu))
            elif line.startswith("count "):
                _, start, end = line.split()
                _answer(count(emu, float(start), float(end)))
            elif line == "reset":
                emu.requests.clear()
                emu.tasks.clear()
                _answer({"reset": True})
            elif line == "quit":
                _answer({"quit": True})
                break
            else:
                _answer({"error": f"unknown command {line!r}"})


def _answer(message: Mapping[str, Any]) -> None:
    print(json.dumps(message), flush=True)


def _variation(text: str) -> tuple[str, Variation]:
    model, _, spec = text.rpartition("=")
    kind, _, parameter = spec.partition(":")
    if not model or kind not in VARIATIONS:
        raise argparse.ArgumentTypeError(f"expected MODEL={'|'.join(VARIATIONS)}:X, got {text!r}")
    return model, (kind, float(parameter))


def _duration(text: str) -> tuple[str, float]:
    model, _, seconds = text.rpartition("=")
    if not model:
        raise argparse.ArgumentTypeError(f"expected MODEL=SECONDS, got {text!r}")
    return model, float(seconds)


class EmulatorProcess:
    """A handle on an emulator subprocess.

    >>> with EmulatorProcess(speed=1, durations={}) as emu:  # doctest: +SKIP
    ...     print(emu.base_url, emu.stats()["tasks"])
    """

    def __init__(
        self,
        speed: float,
        durations: Mapping[str, float],
        spread: float = 0,
        vary: Mapping[str, Variation] | None = None,
        real_timings: bool = False,
    ) -> None:
        self.speed = speed
        self.real_timings = real_timings
        self.durations = dict(durations)
        self.spread = spread
        self.vary = dict(vary or {})
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> EmulatorProcess:
        argv = [sys.executable, "-m", "benchmarks.emulator_process", "--speed", str(self.speed)]
        for model, seconds in self.durations.items():
            argv += ["--duration", f"{model}={seconds}"]
        if self.spread:
            argv += ["--spread", str(self.spread)]
        for model, (kind, parameter) in self.vary.items():
            argv += ["--vary", f"{model}={kind}:{parameter}"]
        if self.real_timings:
            argv.append("--real-timings")
        self._process = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.base_url = self._read()["base_url"]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()  # end of input stops the server
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def command(self, name: str) -> dict[str, Any]:
        """Send one command and return its answer."""
        stdin = self._pipes()[0]
        stdin.write(f"{name}\n")
        stdin.flush()
        return self._read()

    def stats(self) -> dict[str, Any]:
        """See :func:`stats`."""
        return self.command("stats")

    def count(self, start: float, end: float) -> dict[str, int]:
        """See :func:`count`."""
        return self.command(f"count {start!r} {end!r}")

    def reset(self) -> None:
        """Forget the requests and tasks seen so far."""
        self.command("reset")

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise RuntimeError("the emulator process is not running")
        return process.stdin, process.stdout

    def _read(self) -> dict[str, Any]:
        line = self._pipes()[1].readline()
        if not line:
            raise RuntimeError("the emulator process exited")
        answer: dict[str, Any] = json.loads(line)
        return answer


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the subprocess."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.emulator_process")
    parser.add_argument("--speed", type=float, default=1.0, help="emulated s per real s")
    parser.add_argument(
        "--duration",
        type=_duration,
        action="append",
        default=[],
        metavar="MODEL=SECONDS",
        help="emulated run time of a model's tasks (repeatable)",
    )
    parser.add_argument(
        "--spread", type=float, default=0.0, help="vary each task's duration by up to +-SPREAD"
    )
    parser.add_argument(
        "--vary",
        type=_variation,
        action="append",
        default=[],
        metavar="MODEL=KIND:X",
        help="vary one model's durations instead: uniform:SPREAD or lognormal:SIGMA",
    )
    parser.add_argument(
        "--real-timings", action="store_true", help="timings.inference on the real clock"
    )
    args = parser.parse_args(argv)
    asyncio.run(
        serve(args.speed, dict(args.duration), args.spread, dict(args.vary), args.real_timings)
    )


if __name__ == "__main__":
    main()
