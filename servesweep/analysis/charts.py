"""PNG charts of a Report, drawn with matplotlib's Agg canvas (no pyplot: no global state, no display).

Each chart function returns a ChartSpec whose series_labels are the data series it drew (SLO and baseline
reference lines are not series), or None when the report has nothing to plot. Throughput and latency points
carry their 95 % intervals as error bars where the lake has them (schema v4). Charts show measured points;
planner predictions are drawn only when a report has no measurement (they can be orders of magnitude off,
which would flatten the measured lines), and the title then says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import cycle
from pathlib import Path
from typing import Any, TypeVar

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from servesweep.analysis.models import ChartSpec, PointSummary, PrefillDecode, Report
from servesweep.analysis.recommend import group_by

R = TypeVar("R", PointSummary, PrefillDecode)

_DPI = 110
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
_SLO_STYLE: dict[str, Any] = {"color": "#c00000", "linestyle": ":", "linewidth": 1.5}


def render_charts(report: Report, out_dir: str | Path) -> list[ChartSpec]:
    """Every chart the report has data for, as PNGs in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    makers: list[Callable[[Report, Path], ChartSpec | None]] = [
        throughput_chart, latency_chart, cost_chart, prefill_decode_chart, pareto_chart,
    ]
    return [chart for chart in (make(report, out) for make in makers) if chart is not None]


def _plotted(rows: Sequence[R]) -> tuple[list[R], str]:
    """Measured rows, or the predictions when nothing was measured, with the title suffix that says which."""
    measured = [row for row in rows if row.source == "measured"]
    return (measured, "") if measured else (list(rows), " (planner predictions)")


def _configs(points: Sequence[PointSummary]) -> dict[str, list[PointSummary]]:
    """Points per config label, each sorted by batch size."""
    return {label: sorted(rows, key=lambda p: p.batch_size)
            for label, rows in sorted(group_by(points, lambda p: p.config_label).items())}


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=_DPI, bbox_inches="tight")


def _legend(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")


def _legend_below(figure: Figure, axes: Sequence[Axes]) -> None:
    """One legend under the plots for every labelled artist (deduplicated): long config names cover no data."""
    entries: dict[str, Any] = {}  # label -> artist
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        figure.legend(list(entries.values()), list(entries), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                      fontsize=7, frameon=False)


def _log_if_wide(ax: Axes, values: Sequence[float | None]) -> None:
    positive = [v for v in values if v is not None and v > 0]
    if positive and max(positive) / min(positive) > 30:
        ax.set_yscale("log")


def _style(source: str) -> dict[str, Any]:
    # Predictions are dashed with hollow markers so they never pass for measurements.
    if source == "measured":
        return {"linestyle": "-", "marker": "o"}
    return {"linestyle": "--", "marker": "o", "markerfacecolor": "none"}


# --- throughput vs batch size -----------------------------------------------------------------------------

def throughput_chart(report: Report, out: Path) -> ChartSpec | None:
    points, suffix = _plotted(report.points)
    configs = {label: [p for p in rows if p.output_token_throughput is not None]
               for label, rows in _configs(points).items()}
    configs = {label: rows for label, rows in configs.items() if rows}
    if not configs:
        return None
    figure = Figure(figsize=(8, 5))
    ax = figure.subplots()
    for (label, rows), color in zip(configs.items(), cycle(_COLORS), strict=False):
        ax.plot([p.batch_size for p in rows], [p.output_token_throughput or 0.0 for p in rows], label=label,
                color=color, **_style(rows[0].source))
        _error_bars(ax, [(p.batch_size, p.output_token_throughput, p.output_token_throughput_ci_low,
                          p.output_token_throughput_ci_high) for p in rows], color)
    _batch_axis(ax, points)
    ax.set_ylabel("output tokens / s")
    title = "Output throughput vs batch size" + suffix
    ax.set_title(title)
    _log_if_wide(ax, [p.output_token_throughput for rows in configs.values() for p in rows])
    _legend_below(figure, [ax])
    path = out / "throughput_vs_batch.png"
    _save(figure, path)
    return ChartSpec(name="throughput_vs_batch", title=title, path=str(path), series_labels=list(configs))


def _error_bars(ax: Axes, points: Sequence[tuple[int, float | None, float | None, float | None]], color: str) -> int:
    """Draw (x, value, low, high) intervals that are known; returns how many."""
    known = [(x, v, lo, hi) for x, v, lo, hi in points if v is not None and lo is not None and hi is not None]
    if known:
        xs, values, lows, highs = zip(*known, strict=True)
        below = [max(0.0, v - lo) for v, lo in zip(values, lows, strict=True)]
        above = [max(0.0, hi - v) for v, hi in zip(values, highs, strict=True)]
        ax.errorbar(xs, values, yerr=[below, above], fmt="none", ecolor=color, elinewidth=1, capsize=3)
    return len(known)


def _batch_axis(ax: Axes, points: Sequence[PointSummary]) -> None:
    batches = sorted({p.batch_size for p in points})
    if batches and batches[-1] / batches[0] >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.grid(True, alpha=0.3)


# --- latency vs batch size ------------------------------------------------------------------------------

_LATENCY_PANELS = (("TTFT", "ttft", "ttft_p99_ms"), ("TPOT", "tpot", "tpot_p99_ms"))


def latency_chart(report: Report, out: Path) -> ChartSpec | None:
    points, suffix = _plotted(report.points)
    configs = _configs(points)
    if not configs:
        return None
    figure = Figure(figsize=(12, 5))
    axes = figure.subplots(1, 2)
    labels: list[str] = []
    for ax, (name, metric, slo_field) in zip(axes, _LATENCY_PANELS, strict=True):
        labels += _latency_panel(ax, configs, name, metric, getattr(report.slo, slo_field))
        _batch_axis(ax, points)
    title = "Latency (p50 dashed, p99 solid, 95 % intervals) vs batch size" + suffix
    figure.suptitle(title)
    _legend_below(figure, axes)
    path = out / "latency_vs_batch.png"
    _save(figure, path)
    return ChartSpec(name="latency_vs_batch", title=title, path=str(path), series_labels=labels)


def _latency_panel(ax: Axes, configs: dict[str, list[PointSummary]], name: str, metric: str,
                   slo: float | None) -> list[str]:
    drawn = []
    for (label, rows), color in zip(configs.items(), cycle(_COLORS), strict=False):
        for stat, linestyle in (("p50", "--"), ("p99", "-")):
            values = [getattr(p, f"{metric}_{stat}_ms") for p in rows]
            kept = [(p.batch_size, v) for p, v in zip(rows, values, strict=True) if v is not None]
            if not kept:
                continue
            series = f"{name} {stat} {label}"
            ax.plot(*zip(*kept, strict=True), color=color, linestyle=linestyle, marker="o", markersize=3,
                    label=label if stat == "p99" else "_nolegend_")  # one legend entry per config colour
            _error_bars(ax, [(p.batch_size, getattr(p, f"{metric}_{stat}_ms"),
                              getattr(p, f"{metric}_{stat}_ci_low_ms"), getattr(p, f"{metric}_{stat}_ci_high_ms"))
                             for p in rows], color)
            drawn.append(series)
    if slo is not None:
        ax.axhline(slo, label=f"SLO p99 {name} {slo:g} ms", **_SLO_STYLE)
    ax.set_title(name)
    ax.set_ylabel(f"{name} (ms)")
    _log_if_wide(ax, [getattr(p, f"{metric}_{stat}_ms") for rows in configs.values() for p in rows
                      for stat in ("p50", "p99")])
    return drawn


# --- tokens per dollar, normalised ------------------------------------------------------------------------

def cost_chart(report: Report, out: Path) -> ChartSpec | None:
    """Per config: its best tokens per dollar at any batch size and, with an SLO, within the SLO.

    Both bars share one denominator, the baseline's best at any batch (vs_baseline_best), so the gap between
    them is what the SLO costs; without the baseline in the data they show absolute tokens per dollar.
    """
    points, suffix = _plotted(report.points)
    configs = {label: [p for p in rows if p.output_tokens_per_dollar is not None]
               for label, rows in _configs(points).items()}
    configs = {label: rows for label, rows in configs.items() if rows}
    if not configs:
        return None
    normalised = all(p.vs_baseline_best is not None for rows in configs.values() for p in rows)

    def value(p: PointSummary) -> float:
        return (p.vs_baseline_best if normalised else (p.output_tokens_per_dollar or 0.0) / 1e6) or 0.0

    series = {"best at any batch size": [max(value(p) for p in rows) for rows in configs.values()]}
    if report.slo.has_limits:
        series["best within the SLO"] = [max((value(p) for p in rows if p.meets_slo), default=0.0)
                                         for rows in configs.values()]
    figure = Figure(figsize=(9, 1.5 + 0.35 * len(configs) * len(series)))
    ax = figure.subplots()
    _grouped_barh(ax, list(configs), series)
    if normalised:
        ax.axvline(1.0, **_SLO_STYLE)
        ax.set_xlabel(f"output tokens per dollar, {report.baseline_accelerator}'s best = 1.0")
        title = f"Throughput per dollar normalised to {report.baseline_accelerator}{suffix}"
    else:
        ax.set_xlabel("million output tokens per dollar")
        title = f"Throughput per dollar ({report.baseline_accelerator} not in the data: not normalised){suffix}"
    ax.set_title(title)
    _legend(ax)
    path = out / "throughput_per_dollar.png"
    _save(figure, path)
    return ChartSpec(name="throughput_per_dollar", title=title, path=str(path), series_labels=list(series),
                     categories=list(configs))


def _grouped_barh(ax: Axes, categories: Sequence[str], series: Mapping[str, Sequence[float]]) -> None:
    """One horizontal bar group per category, one bar per series inside it, first category on top."""
    height = 0.8 / len(series)
    for index, ((name, values), color) in enumerate(zip(series.items(), cycle(_COLORS), strict=False)):
        ax.barh([row + index * height for row in range(len(categories))], values, height=height, label=name,
                color=color)
    ax.set_yticks([row + 0.4 - height / 2 for row in range(len(categories))], list(categories))
    ax.invert_yaxis()
    ax.grid(True, axis="x", alpha=0.3)


# --- prefill vs decode --------------------------------------------------------------------------------

_SPEEDS = (
    ("prefill tok/s (smallest batch)", "prefill_tokens_per_s"),
    ("decode tok/s per sequence (smallest batch)", "decode_tokens_per_s"),
    ("decode tok/s, all sequences (largest batch)", "decode_tokens_per_s_all_sequences_max_batch"),
)


def prefill_decode_chart(report: Report, out: Path) -> ChartSpec | None:
    plotted, suffix = _plotted(report.prefill_decode)
    rows = sorted(plotted, key=lambda r: r.config_label)
    speeds = [(name, field) for name, field in _SPEEDS if any(_positive(r, field) for r in rows)]
    if not speeds:
        return None
    figure = Figure(figsize=(9, 1.5 + 0.35 * len(rows) * len(speeds)))
    ax = figure.subplots()
    _grouped_barh(ax, [r.config_label for r in rows],
                  {name: [getattr(r, field) or 0.0 for r in rows] for name, field in speeds})
    ax.set_xscale("log")  # prefill is often 10-100x decode
    ax.set_xlabel("tokens / s (log)")
    title = "Prefill vs decode speed" + suffix
    ax.set_title(title)
    _legend(ax)
    path = out / "prefill_vs_decode.png"
    _save(figure, path)
    return ChartSpec(name="prefill_vs_decode", title=title, path=str(path), series_labels=[n for n, _ in speeds],
                     categories=[r.config_label for r in rows])


def _positive(row: PrefillDecode, field: str) -> bool:
    value = getattr(row, field)
    return value is not None and value > 0


# --- Pareto frontier ------------------------------------------------------------------------------------

def pareto_chart(report: Report, out: Path, metric: str = "e2e_p99_ms") -> ChartSpec | None:
    """Measured points (one series per config) with the frontier over them, per comparison group."""
    frontier = group_by([p for p in report.pareto if p.latency_metric == metric and p.source == "measured"],
                        lambda p: p.comparison_group)
    if not frontier:
        return None
    measured = group_by([p for p in report.points if p.source == "measured"], lambda p: p.comparison_group)
    figure = Figure(figsize=(8, 4.5 * len(frontier)))
    axes = list(figure.subplots(len(frontier), 1, squeeze=False)[:, 0])
    labels: list[str] = []
    for ax, (group, edge) in zip(axes, sorted(frontier.items()), strict=True):
        for (label, rows), color in zip(_configs(measured.get(group, [])).items(), cycle(_COLORS), strict=False):
            kept = [(p.e2e_p99_ms, p.output_token_throughput) for p in rows
                    if p.e2e_p99_ms is not None and p.output_token_throughput is not None]
            if kept:
                ax.scatter(*zip(*kept, strict=True), color=color, label=label, s=25)
                labels.append(label)
        ax.step([p.latency_ms for p in edge], [p.output_token_throughput for p in edge], where="post",
                color="black", label=f"frontier ({group})")
        labels.append(f"frontier ({group})")
        ax.set_xlabel("p99 end-to-end latency (ms)")
        ax.set_ylabel("output tokens / s")
        ax.set_title(group)
        ax.grid(True, alpha=0.3)
        if report.slo.e2e_p99_ms is not None:
            ax.axvline(report.slo.e2e_p99_ms, label=f"SLO p99 E2E {report.slo.e2e_p99_ms:g} ms", **_SLO_STYLE)
    title = "Throughput vs p99 E2E latency: Pareto frontier"
    figure.suptitle(title)
    _legend_below(figure, axes)
    path = out / "pareto_frontier.png"
    _save(figure, path)
    return ChartSpec(name="pareto_frontier", title=title, path=str(path), series_labels=labels)
