"""The poll engine's scenarios in the report: scaling, learned polling and ultra.

Each has its own table (the learned one has a fourth contender), its targets and its ratios;
:mod:`benchmarks.report` adds them to the run's JSON and Markdown.
"""

from __future__ import annotations

import math
from typing import Any

from .contenders import FLOOR, OFFICIAL, OURS
from .learned import LEARNED_NAMES

Summary = dict[str, dict[str, dict[str, dict[str, float]]]]
#: The telemetry scenario's modes (see ``benchmarks.telemetry``) and their targets over absent.
TELEMETRY_MODES = {
    "absent": "no otel extra",
    "imported": "the API imported, calls off (control)",
    "api": "the API, no SDK",
    "sdk": "the SDK + BatchSpanProcessor",
}
TELEMETRY_TARGETS = {"api": 1.02, "sdk": 1.10}
Target = tuple[str, str, bool]


def _m(summary: Summary, scenario: str, contender: str, metric: str) -> float:
    try:
        return summary[scenario][contender][metric]["median"]
    except KeyError:
        return math.nan


def _fmt(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _over(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def _table(
    summary: Summary,
    scenario: str,
    names: tuple[str, ...],
    rows: list[tuple[str, str, int]],
    ratio: tuple[str, str] | None,
) -> list[str]:
    header = "| Metric | " + " | ".join(names)
    header += f" | {ratio[0]} / {ratio[1]} |" if ratio else " |"
    lines = [header, "|---|" + "---:|" * (len(names) + bool(ratio))]
    for metric, label, digits in rows:
        values = [_m(summary, scenario, name, metric) for name in names]
        line = f"| {label} | " + " | ".join(_fmt(value, digits) for value in values) + " |"
        if ratio:
            share = _over(*(_m(summary, scenario, name, metric) for name in ratio))
            line += " - |" if math.isnan(share) else f" {share:.2f}x |"
        lines.append(line)
    return lines


def telemetry_estimate(summary: Summary, mode: str) -> float:
    """A mode's CPU per prediction over the absent extra's, from its telemetry calls alone."""
    absent = _m(summary, "telemetry", "absent", "cpu_ms_per_prediction") * 1000
    extra = _m(summary, "telemetry", mode, "telemetry_us_per_prediction") - _m(
        summary, "telemetry", "absent", "telemetry_us_per_prediction"
    )
    return _over(absent + extra, absent)


def sections(summary: Summary, params: dict[str, dict[str, Any]]) -> list[str]:
    """The Markdown of every one of these scenarios that ran."""
    lines: list[str] = []
    if "scaling" in summary:
        rows = []
        for count in params["scaling"]["counts"]:
            at = f"{count:,} in flight"
            rows += [
                (f"cpu_us_per_request_{count}", f"{at}: client CPU per request (µs)", 0),
                (f"cpu_us_per_check_held_{count}", f"{at}: CPU per check, all submitted (µs)", 0),
                (f"objects_per_prediction_{count}", f"{at}: objects per prediction", 1),
                (f"bytes_per_prediction_{count}", f"{at}: RSS per prediction (bytes)", 0),
                (f"worst_stall_ms_{count}", f"{at}: worst stall of a 10 ms ticker (ms)", 0),
                (f"worst_gc_pause_ms_{count}", f"{at}: worst garbage-collector pause (ms)", 0),
                (f"gc_share_of_cpu_{count}", f"{at}: garbage collection, share of CPU", 3),
                (f"aclose_s_{count}", f"{at}: close, all waiters woken (s)", 3),
                (f"requests_{count}", f"{at}: requests in the window", 0),
            ]
        lines += ["", "### Scaling", ""]
        lines += _table(summary, "scaling", (OURS, FLOOR), rows, (OURS, FLOOR))
    if "learned" in summary:
        p = params["learned"]
        rows = []
        for kind in ("video", "image"):
            task = (
                f"{p['medians_s'][kind]:g} s {kind} (sigma {p['sigma']:g}, x{p['speeds'][kind]:g})"
            )
            rows += [
                (f"{kind}_checks_per_prediction", f"{task}: checks per task", 2),
                (f"{kind}_lag_median_pct", f"{task}: lag median, % of the task", 1),
                (f"{kind}_lag_p95_pct", f"{task}: lag p95, % of the task", 1),
                (f"{kind}_lag_p95_s", f"{task}: lag p95 (s)", 2),
            ]
        lines += [
            "",
            f"### Learned polling ({p['tasks_per_kind']} tasks per kind, warm-up {p['warmup']})",
            "",
        ]
        lines += _table(summary, "learned", LEARNED_NAMES, rows, (OURS, OFFICIAL))
    if "ultra" in summary:
        p = params["ultra"]
        rows = [
            ("cpu_share_of_core", "client CPU, share of one core", 3),
            ("submits_achieved_over_intended", "submits achieved / intended", 3),
            ("requests_per_s", "requests per second", 1),
            ("checks_per_s", "result checks per second", 1),
            ("in_flight", "in flight at the end", 0),
            ("lag_p50_s", "detection lag p50 (s)", 2),
            ("lag_p95_s", "detection lag p95 (s)", 2),
            ("worst_stall_ms", "worst stall of a 10 ms ticker (ms)", 0),
            ("worst_gc_pause_ms", "worst garbage-collector pause (ms)", 0),
            ("failed", "predictions failed", 0),
        ]
        title = (
            f"### Ultra ({p['rate_per_s']:g} submits/s, {p['duration_s']:g} s tasks,"
            f" {p['ramp_s']:.0f} s ramp, {p['window_s']:g} s measured)"
        )
        lines += ["", title, ""]
        lines += _table(summary, "ultra", (OURS, FLOOR), rows, (OURS, FLOOR))
    if "telemetry" in summary:
        lines += ["", "### Telemetry (client CPU per instant prediction)", ""]
        lines += [
            "| Mode | end to end, ms | / absent | telemetry calls alone, us | estimated / absent"
            " | target |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        absent = _m(summary, "telemetry", "absent", "cpu_ms_per_prediction")
        for mode, label in TELEMETRY_MODES.items():
            value = _m(summary, "telemetry", mode, "cpu_ms_per_prediction")
            alone = _m(summary, "telemetry", mode, "telemetry_us_per_prediction")
            target = TELEMETRY_TARGETS.get(mode)
            limit = "-" if target is None else f"<= {target:.2f}x"
            lines.append(
                f"| {label} | {_fmt(value, 3)} | {_over(value, absent):.3f}x | {_fmt(alone, 1)}"
                f" | {telemetry_estimate(summary, mode):.3f}x | {limit} |"
            )
    return lines


def targets(summary: Summary, params: dict[str, dict[str, Any]]) -> list[Target]:
    """The targets of issue #9 that this run can check (a size not run is left out)."""
    checks: list[Target] = []

    def m(scenario: str, contender: str, metric: str) -> float:
        return _m(summary, scenario, contender, metric)

    counts = params.get("scaling", {}).get("counts", [])
    for count in counts:
        ours, floor = (m("scaling", c, f"objects_per_prediction_{count}") for c in (OURS, FLOOR))
        checks.append(
            (
                f"{count:,} in flight: objects per prediction <= the floor's",
                f"{ours:.1f} vs {floor:.1f}",
                ours <= floor,
            )
        )
        size = m("scaling", OURS, f"bytes_per_prediction_{count}")
        checks.append(
            (f"{count:,} in flight: < 6 KB per prediction", f"{size / 1000:.1f} KB", size < 6000)
        )
    for count in (c for c in counts if c >= 10_000):
        share = _over(*(m("scaling", c, f"cpu_us_per_request_{count}") for c in (OURS, FLOOR)))
        checks.append(
            (
                f"{count:,} in flight: CPU per request <= 1.0x the floor",
                f"{share:.2f}x",
                share <= 1.0,
            )
        )
    if 10_000 in counts:
        stall = m("scaling", OURS, "worst_stall_ms_10000")
        checks.append(("10,000 in flight: worst stall < 150 ms", f"{stall:.0f} ms", stall < 150))
        close = m("scaling", OURS, "aclose_s_10000")
        checks.append(("10,000 in flight: aclose() < 0.5 s", f"{close:.3f} s", close < 0.5))
    if "learned" in summary:
        p95, checks_per = (
            m("learned", OURS, "video_lag_p95_pct"),
            m("learned", OURS, "video_checks_per_prediction"),
        )
        checks.append(
            (
                "learned video: p95 lag < 12% with <= 7 checks",
                f"{p95:.1f}%, {checks_per:.2f} checks",
                p95 < 12 and checks_per <= 7,
            )
        )
        p95 = m("learned", OURS, "image_lag_p95_pct")
        checks.append(("learned image-like: p95 lag < 15%", f"{p95:.1f}%", p95 < 15))
    if "ultra" in summary:
        share = m("ultra", OURS, "cpu_share_of_core")
        checks.append(("ultra: client CPU < 0.25 of a core", f"{share:.3f}", share < 0.25))
    if "telemetry" in summary:
        for mode, target in TELEMETRY_TARGETS.items():
            share = telemetry_estimate(summary, mode)
            label = (
                f"telemetry: CPU with {TELEMETRY_MODES[mode]} <= {target:.2f}x without the extra"
            )
            checks.append((label, f"{share:.3f}x", share <= target))
    return checks


def ratios(summary: Summary, params: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Ours over the floor (or the official SDK), from this run's medians."""
    out: dict[str, float] = {}

    def ratio(scenario: str, metric: str, other: str = FLOOR) -> float:
        return _over(_m(summary, scenario, OURS, metric), _m(summary, scenario, other, metric))

    for count in params.get("scaling", {}).get("counts", []):
        for metric in (
            "cpu_us_per_request",
            "cpu_us_per_check_held",
            "objects_per_prediction",
            "bytes_per_prediction",
        ):
            out[f"scaling_{metric}_{count}_ours_over_floor"] = ratio("scaling", f"{metric}_{count}")
    if "learned" in summary:
        for kind in ("video", "image"):
            out[f"learned_{kind}_checks_ours_over_official"] = ratio(
                "learned", f"{kind}_checks_per_prediction", OFFICIAL
            )
    if "ultra" in summary:
        out["ultra_cpu_ours_over_floor"] = ratio("ultra", "cpu_share_of_core")
    if "telemetry" in summary:
        absent = _m(summary, "telemetry", "absent", "cpu_ms_per_prediction")
        for mode in TELEMETRY_TARGETS:
            value = _m(summary, "telemetry", mode, "cpu_ms_per_prediction")
            out[f"telemetry_cpu_{mode}_over_absent"] = _over(value, absent)
            out[f"telemetry_estimate_{mode}_over_absent"] = telemetry_estimate(summary, mode)
    return out
