"""The polling trade-off as a picture: result checks per prediction against detection lag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .contenders import FLOOR, NAMES, OFFICIAL, OURS

STYLE: dict[str, dict[str, Any]] = {
    OURS: {"color": "#1f77b4", "fillstyle": "full", "markersize": 10},
    FLOOR: {"color": "#2ca02c", "fillstyle": "none", "markersize": 15},  # ours sits inside it
    OFFICIAL: {"color": "#d62728", "fillstyle": "full", "markersize": 10},
}
MARKERS = {"image": "o", "video": "s"}


def polling_plot(report: dict[str, Any], path: Path) -> Path | None:
    """Median lag (marker) and p95 lag (bar top), as % of the task, per contender and kind.

    Returns ``None`` without matplotlib (it is in the ``bench`` extra only).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter
        from matplotlib.transforms import blended_transform_factory
    except ImportError:
        return None
    summary = report["summary"]["polling"]
    params = report["params"]["polling"]
    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    for name in NAMES:
        for kind, marker in MARKERS.items():
            figures = summary[name]
            checks = figures[f"{kind}_checks_per_prediction"]["median"]
            median = figures[f"{kind}_lag_median_pct"]["median"]
            p95 = figures[f"{kind}_lag_p95_pct"]["median"]
            seconds = params["durations_s"][kind]
            axes.errorbar(
                [checks],
                [median],
                yerr=[[0], [max(p95 - median, 0)]],
                marker=marker,
                linestyle="none",
                capsize=4,
                label=f"{name}, {seconds:g} s {kind}",
                **STYLE[name],
            )
    axes.axhline(20, color="grey", linestyle=":", linewidth=1)
    left_edge = blended_transform_factory(axes.transAxes, axes.transData)
    axes.text(0.01, 20.5, "target: p95 lag < 20% of the task", color="grey", transform=left_edge)
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(FixedLocator([1, 2, 3, 5, 10, 20, 30, 50, 100]))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("result checks per prediction (log scale)")
    axes.set_ylabel("detection lag, % of the task's duration\n(marker: median, bar: up to p95)")
    axes.set_title(
        f"Polling cost vs detection lag ({params['predictions_per_kind']} tasks each,"
        f" clocks: image x{params['speeds']['image']:g}, video x{params['speeds']['video']:g})"
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="upper right", numpoints=1)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
