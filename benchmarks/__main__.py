"""`python -m benchmarks [--quick]`: wavespeed-async side by side with a raw-aiohttp floor and
the official SDK, against one emulator, in one run.

Scenarios: overhead (client CPU per instant prediction), batch (wall time of a capped batch),
memory (RSS with many predictions in flight), polling (checks per prediction against detection
lag), start-up (import, cold first prediction), and for the poll engine: scaling (1,000 to
30,000 in flight: CPU per request, objects, RSS, loop stalls, close time), learned (the learned
schedule on lognormal durations) and ultra (42 submits/s sustained, ~5,000 in flight); and
telemetry (client CPU without the otel extra, with the API only, with the SDK). The
emulator runs in its own process. Results go to ``benchmarks/results/`` (``results/quick/``
for ``--quick``): a JSON file, a Markdown table and a PNG plot. Timings never gate CI:
``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import report
from .learned import learned
from .scaling import profile_scaling, scaling
from .scenarios import SCENARIOS as BASE_SCENARIOS
from .scenarios import Plan, Result, profile_overhead
from .telemetry import telemetry
from .ultra import ultra

SCENARIOS = {
    **BASE_SCENARIOS,
    "scaling": scaling,
    "learned": learned,
    "ultra": ultra,
    "telemetry": telemetry,
}

RESULTS = Path(__file__).resolve().parent / "results"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: tens of predictions, one round"
    )
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run (default: all of {','.join(SCENARIOS)})",
    )
    parser.add_argument("--rounds", type=int, help="rounds of overhead and start-up")
    parser.add_argument("--official-pool", type=int, help="official SDK's thread pool size")
    parser.add_argument("--out", type=Path, help="directory for results.{json,md} and the PNG")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile wavespeed-async's overhead and scaling runs (pyinstrument) into the"
        " output directory",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen scenarios, print the table and write the result files."""
    args = _parser().parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    if args.rounds:
        plan = dataclasses.replace(plan, rounds=args.rounds)
    if args.official_pool:
        plan = dataclasses.replace(plan, official_pool=args.official_pool)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        _parser().error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)

    started = time.perf_counter()
    results: dict[str, Result] = {}
    for name in chosen:
        _log(f"--- {name}")
        results[name] = SCENARIOS[name](plan, _log)
    elapsed = time.perf_counter() - started

    command = "python -m benchmarks" + ("".join(f" {arg}" for arg in (argv or sys.argv[1:])))
    rounds = {
        "overhead": plan.rounds,
        "startup": plan.rounds,
        "batch": plan.batch_rounds,
        "polling": plan.polling_rounds,
        "memory": 1,
        "scaling": 1,
        "learned": 1,
        "ultra": 1,
        "telemetry": plan.rounds,
    }
    built = report.build(results, command, elapsed, rounds)
    paths = report.write(built, out)
    print(report.markdown(built))
    for ratio, value in built["ratios"].items():
        print(f"{ratio}: {value:.3f}")
    if args.profile:
        paths.append(profile_overhead(plan, out / "profile-overhead.txt"))
        if "scaling" in chosen:
            count = max(c for c in plan.scaling_counts if c <= 10_000)
            paths.append(profile_scaling(count, out / f"profile-scaling-{count}.txt"))
    _log("wrote " + ", ".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
