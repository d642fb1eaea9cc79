"""Telemetry's cost: client CPU per instant prediction in three modes, in one run.

- ``absent``: the ``otel`` extra is not installed (OpenTelemetry made unimportable): the
  no-op facade, as the client was before telemetry;
- ``api``: ``opentelemetry-api`` installed, no SDK configured: the API's no-op providers
  (target: at most 1.02x ``absent``);
- ``imported``: a control: the API imported but the client's calls those of the no-op
  facade, which separates the cost of the calls from that of the import (a bigger heap for
  the garbage collector to scan);
- ``sdk``: the SDK's ``TracerProvider`` with a ``BatchSpanProcessor`` (spans dropped by the
  exporter, the export thread's CPU counted) and a ``MeterProvider`` (target: at most 1.10x).

Each mode runs in a fresh process (:mod:`benchmarks.telemetry_probe`: a warm-up, then the
timed predictions and the flush of their spans and metrics); the modes alternate in an order
rotated every round, against one emulator process. Ratios are of this run's medians.

Two figures per mode: the end-to-end CPU per prediction, whose ratios carry the noise of a
shared machine (a few % between rounds of the same mode), and the CPU of the telemetry calls
a prediction makes, measured alone. The targets are checked on the second:
``(absent end-to-end + mode's calls - absent's calls) / absent end-to-end``.
"""

from __future__ import annotations

from collections.abc import Callable

from .emulator_process import EmulatorProcess
from .engine_report import TELEMETRY_MODES, TELEMETRY_TARGETS
from .probes import run_probe
from .scenarios import INSTANT, Plan, Result, Samples, correct, orders, record


def telemetry(plan: Plan, log: Callable[[str], None]) -> Result:
    """Client CPU per prediction without the extra, with the API only, with the SDK."""
    count = plan.overhead_count
    samples: Samples = {}
    with EmulatorProcess(1.0, {INSTANT: 0.001}) as emu:
        for round_index, order in orders(tuple(TELEMETRY_MODES), plan.rounds):
            for mode in order:
                emu.reset()
                tag = f"t{round_index} {mode}"
                answer = run_probe(
                    mode, emu.base_url, str(count), tag, module="benchmarks.telemetry_probe"
                )
                cpu_ms = answer["cpu_s"] / count * 1000
                ok = correct(count, answer["completed"], emu.stats())
                alone = answer["telemetry_us_per_prediction"]
                record(
                    samples,
                    mode,
                    cpu_ms_per_prediction=cpu_ms,
                    telemetry_us_per_prediction=alone,
                    correct=ok,
                )
                log(
                    f"telemetry round {round_index + 1} {mode}: {cpu_ms:.3f} ms CPU/prediction,"
                    f" telemetry calls alone {alone:.1f} us"
                )
    params = {"predictions": count, "poll_s": 0.005, "targets": TELEMETRY_TARGETS}
    return Result("telemetry", params, samples)
