"""Turning per-round samples into medians, ratios, target checks, JSON and a Markdown table."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import engine_report
from .contenders import FLOOR, NAMES, OFFICIAL, OURS
from .scenarios import Result

Summary = dict[str, dict[str, dict[str, dict[str, float]]]]  # scenario, contender, metric


@dataclass(frozen=True)
class Row:
    """One line of the table: a metric of a scenario, how to label and print it."""

    scenario: str
    metric: str
    label: str  # formatted with the scenario's params
    digits: int = 2
    scale: float = 1.0


def _polling_rows() -> list[Row]:
    rows = []
    for kind in ("image", "video"):
        task = f"Polling, {{durations_s[{kind}]:g}} s {kind}"
        clock = f" [{{predictions_per_kind}} at once, clock x{{speeds[{kind}]:g}}]"
        rows += [
            Row("polling", f"{kind}_checks_per_prediction", f"{task}: result checks{clock}"),
            Row("polling", f"{kind}_lag_median_s", f"{task}: detection lag, median (s)"),
            Row("polling", f"{kind}_lag_p95_s", f"{task}: detection lag, p95 (s)"),
            Row("polling", f"{kind}_lag_p95_pct", f"{task}: p95 lag, % of the task", 1),
        ]
    return rows


ROWS = (
    Row(
        "overhead",
        "cpu_ms_per_prediction",
        "Overhead: client CPU per prediction (ms) [official: {official_pool} threads]",
        3,
    ),
    Row("overhead", "wall_s", "Overhead: wall time, {predictions} predictions (s)"),
    Row("overhead", "requests_per_prediction", "Overhead: requests per prediction"),
    Row(
        "batch",
        "wall_s",
        "Batch: wall time, {predictions} x {duration_s:g} s, cap {concurrency} (s)"
        " [official: {official_pool} threads]",
    ),
    Row("batch", "requests", "Batch: requests sent", 0),
    Row("batch", "cpu_s", "Batch: client CPU (s)"),
    Row("memory", "in_flight", "Memory: predictions in flight [official: one per thread]", 0),
    Row("memory", "idle_rss_mb", "Memory: RSS of the idle client (MB)", 1, 2**20 / 1e6),
    Row("memory", "in_flight_rss_mb", "Memory: RSS, all in flight (MB)", 1, 2**20 / 1e6),
    Row("memory", "peak_rss_mb", "Memory: peak RSS (MB)", 1, 2**20 / 1e6),
    Row("memory", "bytes_per_in_flight", "Memory: bytes per in-flight prediction", 0),
    *_polling_rows(),
    Row("startup", "import_ms", "Start-up: import time (ms)", 0),
    Row(
        "startup", "cold_first_prediction_ms", "Start-up: cold process to first prediction (ms)", 0
    ),
)


def summarize(results: dict[str, Result]) -> Summary:
    """Median, min and max of every metric over the rounds."""
    return {
        name: {
            contender: {
                metric: {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                    "rounds": len(values),
                }
                for metric, values in metrics.items()
            }
            for contender, metrics in result.samples.items()
        }
        for name, result in results.items()
    }


def median(summary: Summary, scenario: str, contender: str, metric: str) -> float:
    """A median, or NaN when the scenario did not run."""
    try:
        return summary[scenario][contender][metric]["median"]
    except KeyError:
        return math.nan


def all_correct(summary: Summary, scenario: str, contenders: tuple[str, ...]) -> bool:
    """Whether every round of these contenders was correct (no missing or resent task)."""
    try:
        return all(
            summary[scenario][name][metric]["min"] == 1.0
            for name in contenders
            for metric in summary[scenario][name]
            if metric.endswith("correct")
        )
    except KeyError:
        return False


def ratios(summary: Summary) -> dict[str, float]:
    """The headline ratios, all from this one run's medians."""

    def m(scenario: str, contender: str, metric: str) -> float:
        return median(summary, scenario, contender, metric)

    return {
        "overhead_cpu_ours_over_floor": m("overhead", OURS, "cpu_ms_per_prediction")
        / m("overhead", FLOOR, "cpu_ms_per_prediction"),
        "overhead_cpu_official_over_ours": m("overhead", OFFICIAL, "cpu_ms_per_prediction")
        / m("overhead", OURS, "cpu_ms_per_prediction"),
        "batch_wall_official_over_ours": m("batch", OFFICIAL, "wall_s")
        / m("batch", OURS, "wall_s"),
        "batch_requests_official_over_ours": m("batch", OFFICIAL, "requests")
        / m("batch", OURS, "requests"),
        "video_checks_ours_over_official": m("polling", OURS, "video_checks_per_prediction")
        / m("polling", OFFICIAL, "video_checks_per_prediction"),
        "image_checks_ours_over_official": m("polling", OURS, "image_checks_per_prediction")
        / m("polling", OFFICIAL, "image_checks_per_prediction"),
    }


def targets(summary: Summary, params: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets: what was asked, what was measured, and whether it was met."""
    r = ratios(summary)

    def m(scenario: str, contender: str, metric: str) -> float:
        return median(summary, scenario, contender, metric)

    in_flight = params.get("memory", {}).get("in_flight", 0)
    batch_ok = all_correct(summary, "batch", NAMES)
    # Each check names the scenarios it needs: a run without them (--only) leaves it out
    # instead of publishing `nan`.
    needs: list[tuple[str, ...]] = [
        ("overhead",),
        ("overhead",),
        ("batch",),
        ("memory",),
        ("memory",),
        ("polling",),
        ("polling",),
        ("polling",),
    ]
    checks: list[tuple[str, str, bool]] = [
        (
            "overhead CPU per prediction <= 1.3x the floor",
            f"{r['overhead_cpu_ours_over_floor']:.2f}x",
            r["overhead_cpu_ours_over_floor"] <= 1.3,
        ),
        (
            "overhead CPU per prediction >= 5x lower than official",
            f"{r['overhead_cpu_official_over_ours']:.2f}x lower",
            r["overhead_cpu_official_over_ours"] >= 5,
        ),
        (
            "batch wall time >= 10x lower than official, at equal correctness",
            f"{r['batch_wall_official_over_ours']:.2f}x lower"
            + ("" if batch_ok else " (a contender was not correct in every round)"),
            r["batch_wall_official_over_ours"] >= 10 and batch_ok,
        ),
        (
            "< 10 KB per in-flight future",
            f"{m('memory', OURS, 'bytes_per_in_flight') / 1000:.1f} KB",
            m("memory", OURS, "bytes_per_in_flight") < 10_000,
        ),
        (
            f"{in_flight:,} in flight under 150 MB RSS total (peak)",
            f"{m('memory', OURS, 'peak_rss_mb') * 2**20 / 1e6:.1f} MB",
            m("memory", OURS, "peak_rss_mb") * 2**20 < 150e6,
        ),
        (
            "<= 1/4 of official's result checks per video-like prediction",
            f"{r['video_checks_ours_over_official']:.3f}x",
            r["video_checks_ours_over_official"] <= 0.25,
        ),
    ]
    for kind in ("image", "video"):
        p95 = m("polling", OURS, f"{kind}_lag_p95_pct")
        article = "an" if kind == "image" else "a"
        checks.append(
            (f"p95 detection lag < 20% of {article} {kind}-like task", f"{p95:.1f}%", p95 < 20)
        )
    checks = [
        check
        for check, scenarios in zip(checks, needs, strict=True)
        if all(scenario in summary for scenario in scenarios)
    ]
    checks += engine_report.targets(summary, params)
    return [{"target": t, "measured": v, "met": bool(ok)} for t, v, ok in checks]


def machine() -> dict[str, Any]:
    """Where the figures come from."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for package in ("wavespeed-async", "aiohttp", "wavespeed", "requests"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "absent"
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "packages": versions,
    }


def _cell(values: dict[str, float] | None, row: Row) -> str:
    if values is None:
        return "-"
    scale = row.scale
    text = f"{values['median'] * scale:,.{row.digits}f}"
    if values["rounds"] > 1 and values["min"] != values["max"]:
        low, high = values["min"] * scale, values["max"] * scale
        text += f" ({low:,.{row.digits}f}-{high:,.{row.digits}f})"
    return text


def _ratio(numerator: float, denominator: float) -> str:
    if not denominator or math.isnan(numerator) or math.isnan(denominator):
        return "-"
    return f"{numerator / denominator:.2f}x"


def markdown(report: dict[str, Any]) -> str:
    """The table (medians, min-max over rounds), the ratios and the targets."""
    summary: Summary = report["summary"]
    params: dict[str, dict[str, Any]] = report["params"]
    info = report["machine"]
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['platform']}, "
        f"{info['implementation']} {info['python']}; "
        + ", ".join(f"{k} {v}" for k, v in info["packages"].items())
        + ".",
        f"Command: `{report['command']}` ({report['elapsed_s']:.0f} s). Cells: median"
        " (min-max) over rounds; ratios from medians.",
    ]
    shown = [row for row in ROWS if row.scenario in summary]
    if shown:  # a run of other scenarios only (--only learned) has no row here
        lines += [
            "",
            "| Metric | wavespeed-async | floor (raw aiohttp) | official (thread pool) "
            "| ours / floor | official / ours |",
            "|---|---:|---:|---:|---:|---:|",
        ]
    for row in shown:
        label = row.label.format(**params[row.scenario])
        cells = [summary[row.scenario].get(name, {}).get(row.metric) for name in NAMES]
        ours, floor, official = (median(summary, row.scenario, name, row.metric) for name in NAMES)
        lines.append(
            f"| {label} | "
            + " | ".join(_cell(cell, row) for cell in cells)
            + f" | {_ratio(ours, floor)} | {_ratio(official, ours)} |"
        )
    lines += engine_report.sections(summary, params)
    if report["targets"]:
        lines += ["", "| Target | Measured | Met |", "|---|---:|:---:|"]
    for target in report["targets"]:
        met = "yes" if target["met"] else "**no**"
        lines.append(f"| {target['target']} | {target['measured']} | {met} |")
    return "\n".join(lines) + "\n"


def build(
    results: dict[str, Result], command: str, elapsed: float, rounds: dict[str, int]
) -> dict[str, Any]:
    """Everything the run measured, ready for JSON."""
    summary = summarize(results)
    params = {name: result.params for name, result in results.items()}
    return {
        "command": command,
        "elapsed_s": elapsed,
        "machine": machine(),
        "rounds": rounds,
        "params": params,
        "summary": summary,
        "ratios": {**ratios(summary), **engine_report.ratios(summary, params)},
        "targets": targets(summary, params),
        "samples": {name: result.samples for name, result in results.items()},
    }


def write(report: dict[str, Any], directory: Path) -> list[Path]:
    """Write ``results.json``, ``results.md`` and (when matplotlib is there) the plot."""
    from .plot import polling_plot

    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "results.json", directory / "results.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    written = [json_path, md_path]
    if "polling" in report["summary"]:
        png = polling_plot(report, directory / "polling.png")
        if png is not None:
            written.append(png)
    return written
