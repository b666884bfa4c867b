"""PNG charts of a Report, drawn with matplotlib's Agg canvas (no pyplot: no global state, no display).

Each chart function returns a ChartSpec whose series_labels are the data series it drew (SLO and baseline
reference lines are not series), or None when the report has nothing to plot. Throughput and latency points
carry their 95 % intervals as error bars where the lake has them (schema v4). Charts show measured points;
planner predictions are drawn only when a report has no measurement (they can be orders of magnitude off,
which would flatten the measured lines), and the title then says so.

Many configurations (more than `_FACET_ABOVE` over more than one comparison group, e.g. the H200 lake's 20
measured ones over 2 models x 3 workload shapes) are drawn in small multiples: one panel per comparison group
(model + workload shape), and inside a panel one colour per *variant*, the part of the config label that varies
within the group (quantization, sweep mode, ...). A variant has the same colour in every panel and chart, and
one legend outside the panels names the variants. Fewer configurations share one panel, a colour per config.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from itertools import cycle
from pathlib import Path
from typing import Any, TypeVar

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from servesweep.analysis.models import ChartSpec, PointSummary, PrefillDecode, Report
from servesweep.analysis.recommend import group_by

R = TypeVar("R", PointSummary, PrefillDecode)

_DPI = 110
_SIZE = (12.0, 7.0)  # every chart: the same width and height, so a report's charts line up
_FACET_ABOVE = 8  # configs drawn in one panel at most; more (over several groups) get a panel per group
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1",
    "#636363")
_SLO_STYLE: dict[str, Any] = {"color": "#c00000", "linestyle": ":", "linewidth": 1.5}


def render_charts(report: Report, out_dir: str | Path) -> list[ChartSpec]:
    """Every chart the report has data for, as PNGs in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    makers: list[Callable[[Report, Path], ChartSpec | None]] = [
        throughput_chart, latency_chart, cost_chart, prefill_decode_chart, pareto_chart,
    ]
    return [chart for chart in (make(report, out) for make in makers) if chart is not None]


def config_colors(report: Report) -> dict[str, str]:
    """One colour per config label, the same in every chart of the report: its variant's colour (sorted
    variants in palette order). Unfaceted, every config is its own variant, so each has its own colour; faceted,
    the configs that share a colour sit in different panels (one per comparison group)."""
    variants = config_variants(report)
    keys = sorted(set(variants.values()))
    if len(keys) <= len(_COLORS):
        palette = dict(zip(keys, _COLORS, strict=False))
    else:
        # More variants than distinct fixed colours: evenly spaced along a perceptual colormap, still one each.
        from matplotlib import colormaps
        from matplotlib.colors import to_hex

        ramp = colormaps["turbo"].resampled(len(keys))
        palette = {key: to_hex(ramp(i)) for i, key in enumerate(keys)}
    return {label: palette[key] for label, key in variants.items()}


def _labels_and_groups(report: Report) -> dict[str, str]:
    """Config label -> its comparison group, over the points and the prefill/decode rows."""
    groups = {p.config_label: p.comparison_group for p in report.points}
    groups |= {r.config_label: r.comparison_group for r in report.prefill_decode if r.config_label not in groups}
    return groups


def faceted(report: Report) -> bool:
    """Small multiples: more configs than one panel reads (measured ones, or all when nothing was measured),
    spread over more than one comparison group."""
    points, _ = _plotted(report.points)
    groups = {p.comparison_group for p in points}
    return len({p.config_label for p in points}) > _FACET_ABOVE and len(groups) > 1


def config_variants(report: Report) -> dict[str, str]:
    """Config label -> what varies within its comparison group (its variant; the label itself unfaceted).

    The variant is the label less the words its group names (model, input/output lengths) and less the words
    every config of the report shares (e.g. one accelerator and server): 'fp8 client_concurrency'."""
    groups = _labels_and_groups(report)
    if not faceted(report):
        return {label: label for label in groups}
    rest = {label: [w for w in label.split() if w not in set(group.split()[:-1])] for label, group in groups.items()}
    shared = set.intersection(*(set(words) for words in rest.values())) if rest else set()
    variants = {label: " ".join(w for w in words if w not in shared) for label, words in rest.items()}
    return {label: variant or label for label, variant in variants.items()}


def _group_title(group: str) -> str:
    # 'llama3-8b-dummy 128/2048 measured' -> 'llama3-8b-dummy, 128 in / 2048 out tokens'
    words = group.split()
    if len(words) >= 2 and "/" in words[1]:
        prompt, output = words[1].split("/", 1)
        return f"{words[0]}, {prompt} in / {output} out tokens"
    return group


def _facet_grid(figure: Figure, count: int, columns: int = 3, **kwargs: Any) -> list[Axes]:
    """`count` panels in rows of `columns` (fewer when fewer panels); unused cells hidden."""
    columns = max(1, min(count, columns))
    grid = figure.subplots(-(-count // columns), columns, squeeze=False, **kwargs)
    axes = [ax for row in grid for ax in row]
    for ax in axes[count:]:
        ax.set_visible(False)
    return axes[:count]


def _plotted(rows: Sequence[R]) -> tuple[list[R], str]:
    """Measured rows, or the predictions when nothing was measured, with the title suffix that says which."""
    measured = [row for row in rows if row.source == "measured"]
    return (measured, "") if measured else (list(rows), " (planner predictions)")


def _where_plotted(suffix: str) -> str:
    """The SQL condition `_plotted` applies: measured rows, or (predictions only) every row."""
    return "true" if suffix else "source = 'measured'"


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
        columns = 1 if len(entries) <= 4 else 2 if len(entries) <= 10 else 3
        figure.legend(list(entries.values()), list(entries), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                      fontsize=7, frameon=False, ncols=columns)


def _log_if_wide(ax: Axes, values: Sequence[float | None], axis: str = "y") -> bool:
    """A log scale where the values span a decade or more (latencies from 10 ms to 300 s read at a glance)."""
    positive = [v for v in values if v is not None and v > 0]
    if positive and max(positive) / min(positive) >= 10:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        # Plain numbers at the decades, no labels between them (2x10^2 3x10^2 ... overlapped on narrow panels).
        scale = ax.yaxis if axis == "y" else ax.xaxis
        # Under two decades a tick per decade leaves one label or none: mark 1, 2 and 5 of each decade.
        subs = (1.0, 2.0, 5.0) if max(positive) / min(positive) < 100 else (1.0,)
        scale.set_major_locator(LogLocator(base=10, subs=subs))
        scale.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        scale.set_minor_formatter(NullFormatter())
        return True
    return False


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
    figure = Figure(figsize=_SIZE)
    colors, variants = config_colors(report), config_variants(report)
    panels = _panels(report, list(configs))
    axes = _facet_grid(figure, len(panels), sharex=True, sharey=True)
    for ax, (group, labels) in zip(axes, panels.items(), strict=True):
        for label in labels:
            rows = configs[label]
            ax.plot([p.batch_size for p in rows], [p.output_token_throughput or 0.0 for p in rows],
                    label=variants[label], color=colors[label], **_style(rows[0].source))
            _error_bars(ax, [(p.batch_size, p.output_token_throughput, p.output_token_throughput_ci_low,
                              p.output_token_throughput_ci_high) for p in rows], colors[label])
        _batch_axis(ax, points)
        ax.set_ylabel("output tokens / s")
        _panel_title(ax, group, len(panels))
    _log_if_wide(axes[0], [p.output_token_throughput for rows in configs.values() for p in rows])  # shared y
    title = "Output throughput vs batch size" + suffix
    figure.suptitle(title)
    _legend_below(figure, axes)
    path = out / "throughput_vs_batch.png"
    _save(figure, path)
    return ChartSpec(name="throughput_vs_batch", title=title, path=str(path), series_labels=list(configs),
                     values={label: [p.output_token_throughput for p in rows] for label, rows in configs.items()},
                     source=f"SELECT config_label, batch_size, output_token_throughput FROM throughput_by_batch WHERE "
                            f"{_where_plotted(suffix)} AND output_token_throughput IS NOT NULL "
                            "ORDER BY config_label, batch_size")


def _panels(report: Report, labels: Sequence[str]) -> dict[str, list[str]]:
    """Comparison group -> its config labels (sorted), one panel each when faceted; else one panel of all."""
    if not faceted(report):
        return {"": sorted(labels)}
    groups = _labels_and_groups(report)
    return {group: sorted(rows) for group, rows in sorted(group_by(list(labels), lambda lb: groups[lb]).items())}


def _panel_title(ax: Axes, group: str, panels: int) -> None:
    if group:
        ax.set_title(_group_title(group), fontsize=8)
    if panels > 1:
        ax.tick_params(labelsize=7)
        ax.xaxis.label.set_fontsize(8)
        ax.yaxis.label.set_fontsize(8)


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
    figure = Figure(figsize=_SIZE)
    values: dict[str, list[float | None]] = {}
    colors, variants = config_colors(report), config_variants(report)
    panels = _panels(report, list(configs))
    columns = 2 if len(panels) == 1 else min(len(panels), 3)
    group_rows = -(-len(panels) // columns) if len(panels) > 1 else 1
    # Unfaceted: TTFT | TPOT side by side. Faceted: a block of group panels for TTFT, then one for TPOT.
    grid = figure.subplots(2 * group_rows if len(panels) > 1 else 1, columns, squeeze=False)
    cells = [ax for row in grid for ax in row]
    used: list[Axes] = []
    for block, (name, metric, slo_field) in enumerate(_LATENCY_PANELS):
        for index, (group, labels) in enumerate(panels.items()):
            ax = cells[block] if len(panels) == 1 else cells[block * group_rows * columns + index]
            values |= _latency_panel(ax, {label: configs[label] for label in labels}, name, metric,
                                     getattr(report.slo, slo_field), colors, variants)
            _batch_axis(ax, points)
            if group:
                ax.set_title(f"{name}: {_group_title(group)}", fontsize=8)
            _panel_title(ax, "", len(panels))
            used.append(ax)
    for ax in cells:
        if ax not in used:
            ax.set_visible(False)
    title = "Latency (p50 dashed, p99 solid, 95 % intervals) vs batch size" + suffix
    figure.suptitle(title)
    if len(panels) > 1:
        figure.tight_layout()
    _legend_below(figure, used)
    path = out / "latency_vs_batch.png"
    _save(figure, path)
    return ChartSpec(name="latency_vs_batch", title=title, path=str(path), series_labels=list(values), values=values,
                     source=f"SELECT config_label, batch_size, ttft_p50_ms, ttft_p99_ms, tpot_p50_ms, tpot_p99_ms FROM "
                            f"latency_by_batch WHERE {_where_plotted(suffix)} ORDER BY config_label, batch_size")


def _latency_panel(ax: Axes, configs: dict[str, list[PointSummary]], name: str, metric: str,
                   slo: float | None, colors: Mapping[str, str],
                   variants: Mapping[str, str]) -> dict[str, list[float | None]]:
    """Draw one panel; returns the series drawn ('TTFT p99 <config>') with their values in batch order."""
    drawn: dict[str, list[float | None]] = {}
    for label, rows in configs.items():
        color = colors[label]
        for stat, linestyle in (("p50", "--"), ("p99", "-")):
            values = [getattr(p, f"{metric}_{stat}_ms") for p in rows]
            kept = [(p.batch_size, v) for p, v in zip(rows, values, strict=True) if v is not None]
            if not kept:
                continue
            series = f"{name} {stat} {label}"
            ax.plot(*zip(*kept, strict=True), color=color, linestyle=linestyle, marker="o", markersize=3,
                    label=variants[label] if stat == "p99" else "_nolegend_")  # one legend entry per colour
            _error_bars(ax, [(p.batch_size, getattr(p, f"{metric}_{stat}_ms"),
                              getattr(p, f"{metric}_{stat}_ci_low_ms"), getattr(p, f"{metric}_{stat}_ci_high_ms"))
                             for p in rows], color)
            drawn[series] = [v for _, v in kept]
    if slo is not None:
        ax.axhline(slo, label=f"SLO p99 {name} {slo:g} ms", **_SLO_STYLE)
    ax.set_title(name)
    ax.set_ylabel(f"{name} (ms)")
    _log_if_wide(ax, [getattr(p, f"{metric}_{stat}_ms") for rows in configs.values() for p in rows
                      for stat in ("p50", "p99")] + ([slo] if slo is not None else []))
    return drawn


# --- tokens per dollar, normalised ------------------------------------------------------------------------

def cost_chart(report: Report, out: Path) -> ChartSpec | None:
    """Per config: tokens per dollar within the SLO (its ideal batch) and at any batch size.

    The numbers are the ideal-batch table's: within the SLO is `tokens_per_dollar_vs_baseline` (the ideal batch's
    tokens per dollar over the baseline's best within the SLO in the same comparison group), and the any-batch bar
    divides the config's best tokens per dollar at any batch by that same denominator, so the gap between the bars
    is what the SLO costs. Without the baseline in a group: absolute million tokens per dollar.
    """
    ideals = {row.config_label: row for row in report.ideal_batches}
    points, suffix = _plotted(report.points)
    configs = {label: [p for p in rows if p.output_tokens_per_dollar is not None]
               for label, rows in _configs(points).items() if label in ideals}
    configs = {label: rows for label, rows in configs.items() if rows}
    if not configs:
        return None
    denominators = _baseline_denominators(report)
    normalised = all(denominators.get(ideals[label].comparison_group) for label in configs)

    def scaled(label: str, tokens_per_dollar: float | None) -> float | None:
        if tokens_per_dollar is None:
            return None
        return tokens_per_dollar / denominators[ideals[label].comparison_group] if normalised \
            else tokens_per_dollar / 1e6

    series: dict[str, list[float | None]] = {
        "best at any batch size": [scaled(label, max(p.output_tokens_per_dollar or 0.0 for p in rows))
                                   for label, rows in configs.items()]}
    if report.slo.has_limits:
        series["within the SLO (ideal batch)"] = [scaled(label, ideals[label].output_tokens_per_dollar)
                                                  for label in configs]
    figure = Figure(figsize=_SIZE)
    axes = _bar_panels(report, figure, list(configs),
                       {name: [v or 0.0 for v in values] for name, values in series.items()})
    if normalised:
        xlabel = f"output tokens per dollar, {report.baseline_accelerator}'s best within the SLO = 1.0"
        title = f"Throughput per dollar normalised to {report.baseline_accelerator}{suffix}"
    else:
        xlabel = "million output tokens per dollar"
        title = f"Throughput per dollar ({report.baseline_accelerator} not in the data: not normalised){suffix}"
    for ax in axes:
        if normalised:
            ax.axvline(1.0, **_SLO_STYLE)
        ax.set_xlabel(xlabel, fontsize=8 if len(axes) > 1 else None)
    _finish_bars(figure, axes, title)
    path = out / "throughput_per_dollar.png"
    _save(figure, path)
    return ChartSpec(name="throughput_per_dollar", title=title, path=str(path), series_labels=list(series),
                     categories=list(configs), values=series,
                     source="SELECT config_label, comparison_group, accelerator, output_tokens_per_dollar FROM "
                            "ideal_batch; SELECT config_label, max(output_tokens_per_dollar) AS best FROM "
                            f"throughput_per_dollar_normalised WHERE {_where_plotted(suffix)} GROUP BY config_label")


def _baseline_denominators(report: Report) -> dict[str, float]:
    """Per comparison group: the baseline accelerator's best tokens per dollar within the SLO (ideal_batch's)."""
    best: dict[str, float] = {}
    for row in report.ideal_batches:
        if row.accelerator == report.baseline_accelerator and row.output_tokens_per_dollar:
            best[row.comparison_group] = max(best.get(row.comparison_group, 0.0), row.output_tokens_per_dollar)
    return best


def _bar_panels(report: Report, figure: Figure, categories: Sequence[str],
                series: Mapping[str, Sequence[float]]) -> list[Axes]:
    """Grouped bars of `series` per config: one panel, or (faceted) one per comparison group whose bars are
    named by their variants, in two columns sharing the value axis."""
    panels = _panels(report, categories)
    if len(panels) == 1:
        ax = figure.subplots()
        _grouped_barh(ax, categories, series)
        return [ax]
    variants = config_variants(report)
    axes = _facet_grid(figure, len(panels), columns=2, sharex=True)
    position = {label: index for index, label in enumerate(categories)}
    for ax, (group, labels) in zip(axes, panels.items(), strict=True):
        _grouped_barh(ax, labels, {name: [values[position[label]] for label in labels]
                                   for name, values in series.items()},
                      tick_labels=[variants[label] for label in labels])
        _panel_title(ax, group, len(panels))
    return axes


def _finish_bars(figure: Figure, axes: Sequence[Axes], title: str) -> None:
    if len(axes) == 1:
        axes[0].set_title(title)
        _legend(axes[0])
        return
    figure.suptitle(title)
    figure.tight_layout()
    _legend_below(figure, axes)


def _grouped_barh(ax: Axes, categories: Sequence[str], series: Mapping[str, Sequence[float]],
                  tick_labels: Sequence[str] | None = None) -> None:
    """One horizontal bar group per category, one bar per series inside it, first category on top."""
    height = 0.8 / len(series)
    for index, ((name, values), color) in enumerate(zip(series.items(), cycle(_COLORS), strict=False)):
        ax.barh([row + index * height for row in range(len(categories))], values, height=height, label=name,
                color=color)
    # Long config names wrap (on spaces) so the plot keeps the common width instead of a wide label margin.
    ax.set_yticks([row + 0.4 - height / 2 for row in range(len(categories))],
                  [textwrap.fill(c, 34) for c in (tick_labels or categories)], fontsize=7)
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
    figure = Figure(figsize=_SIZE)
    axes = _bar_panels(report, figure, [r.config_label for r in rows],
                       {name: [getattr(r, field) or 0.0 for r in rows] for name, field in speeds})
    for ax in axes:
        ax.set_xscale("log")  # prefill is often 10-100x decode
        ax.set_xlabel("tokens / s (log)", fontsize=8 if len(axes) > 1 else None)
    title = "Prefill vs decode speed" + suffix
    _finish_bars(figure, axes, title)
    path = out / "prefill_vs_decode.png"
    _save(figure, path)
    return ChartSpec(name="prefill_vs_decode", title=title, path=str(path), series_labels=[n for n, _ in speeds],
                     categories=[r.config_label for r in rows],
                     values={name: [getattr(r, field) for r in rows] for name, field in speeds},
                     source=f"SELECT * FROM prefill_decode WHERE {_where_plotted(suffix)} ORDER BY config_label")


def _positive(row: PrefillDecode, field: str) -> bool:
    value = getattr(row, field)
    return value is not None and value > 0


# --- Pareto frontier ------------------------------------------------------------------------------------

def pareto_chart(report: Report, out: Path, metric: str = "e2e_p99_ms") -> ChartSpec | None:
    """Measured points (one colour per config) with the frontier over them, one panel per comparison group, side
    by side in one chart of the common size; the latency axis is logarithmic where it spans a decade or more."""
    frontier = group_by([p for p in report.pareto if p.latency_metric == metric and p.source == "measured"],
                        lambda p: p.comparison_group)
    if not frontier:
        return None
    measured = group_by([p for p in report.points if p.source == "measured"], lambda p: p.comparison_group)
    columns = min(len(frontier), 3)
    rows_count = -(-len(frontier) // columns)
    figure = Figure(figsize=_SIZE)
    grid = figure.subplots(rows_count, columns, squeeze=False)
    axes = [ax for row in grid for ax in row]
    colors, variants = config_colors(report), config_variants(report)
    labels: list[str] = []
    values: dict[str, list[float | None]] = {}
    for ax, (group, edge) in zip(axes, sorted(frontier.items()), strict=False):
        latencies: list[float | None] = []
        for label, rows in _configs(measured.get(group, [])).items():
            kept = [(p.e2e_p99_ms, p.output_token_throughput) for p in rows
                    if p.e2e_p99_ms is not None and p.output_token_throughput is not None]
            if kept:
                ax.scatter(*zip(*kept, strict=True), color=colors[label], label=variants[label], s=25)
                labels.append(label)
                latencies += [x for x, _ in kept]
        ax.step([p.latency_ms for p in edge], [p.output_token_throughput for p in edge], where="post",
                color="black", label="Pareto frontier")
        values[f"frontier ({group})"] = [p.output_token_throughput for p in edge]
        labels.append(f"frontier ({group})")
        if report.slo.e2e_p99_ms is not None:
            ax.axvline(report.slo.e2e_p99_ms, label=f"SLO p99 E2E {report.slo.e2e_p99_ms:g} ms", **_SLO_STYLE)
            latencies.append(report.slo.e2e_p99_ms)
        log = _log_if_wide(ax, latencies, axis="x")
        ax.set_xlabel("p99 E2E latency (ms" + (", log)" if log else ")"), fontsize=8)
        ax.set_ylabel("output tokens / s", fontsize=8)
        ax.set_title(_group_title(group), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(frontier):]:
        ax.set_visible(False)
    title = "Throughput vs p99 E2E latency: Pareto frontier"
    figure.suptitle(title)
    figure.tight_layout()
    _legend_below(figure, axes)
    path = out / "pareto_frontier.png"
    _save(figure, path)
    return ChartSpec(name="pareto_frontier", title=title, path=str(path), series_labels=labels, values=values,
                     source=f"SELECT comparison_group, latency_ms, output_token_throughput FROM pareto_frontier WHERE "
                            f"latency_metric = '{metric}' AND source = 'measured' "
                            "ORDER BY comparison_group, latency_ms, output_token_throughput DESC")
