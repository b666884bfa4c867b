"""The HTML report's interactive charts (plotly, the `report` extra): throughput and p99 latency vs batch size per
config, hover for the exact numbers, click a legend entry to hide a config. plotly.js is embedded in the page
once, so the report opens with no network. The numbers are the report's points, as the PNG charts draw them."""

from __future__ import annotations

from html import escape
from typing import Any

from servesweep.analysis.charts import config_colors
from servesweep.analysis.models import PointSummary, Report
from servesweep.analysis.recommend import group_by

_PANELS = (("output_token_throughput", "output tok/s"), ("ttft_p99_ms", "p99 TTFT ms"),
           ("tpot_p99_ms", "p99 TPOT ms"))


def available() -> bool:
    try:
        import plotly  # noqa: F401
    except ImportError:
        return False
    return True


# What the interactive panels draw, as `servesweep query` SQL (run after report.reproduce_sql): one trace per
# config label and panel, x = batch_size, y = the panel's column where it is not null.
SOURCE = ("SELECT l.config_label, l.batch_size, n.output_token_throughput, l.ttft_p99_ms, l.tpot_p99_ms "
          "FROM latency_by_batch AS l JOIN throughput_per_dollar_normalised AS n USING (config_id, point_id) "
          "WHERE l.source = 'measured' ORDER BY l.config_label, l.batch_size")


def interactive_html(report: Report) -> str:
    """A <div> with the charts and plotly.js inline; empty when plotly is not installed or nothing was measured."""
    figure = interactive_figure(report)
    if figure is None:
        return ""
    html: str = figure.to_html(include_plotlyjs=True, full_html=False)
    return html + f'<p class="source">Source: <code>{escape(SOURCE)}</code></p>'


def interactive_figure(report: Report) -> Any:
    """The plotly Figure of the interactive charts; None without plotly or without a measured point."""
    if not available():
        return None
    from plotly.graph_objects import Figure, Scatter
    from plotly.subplots import make_subplots

    points = [p for p in report.points if p.source == "measured"]
    if not points:
        return None
    colors = config_colors(report)
    figure: Figure = make_subplots(rows=1, cols=3, subplot_titles=[title for _, title in _PANELS])
    for label, rows in sorted(group_by(points, lambda p: p.config_label).items()):
        rows = sorted(rows, key=lambda p: p.batch_size)
        for column, (field, title) in enumerate(_PANELS, start=1):
            kept = [p for p in rows if getattr(p, field) is not None]
            figure.add_trace(Scatter(
                x=[p.batch_size for p in kept], y=[getattr(p, field) for p in kept], mode="lines+markers",
                name=label, legendgroup=label, showlegend=column == 1, line={"color": colors[label]},
                error_y=_errors(kept, field), hovertemplate=f"{label}<br>batch %{{x}}<br>{title} %{{y:.4g}}"
                                                            "<extra></extra>"), row=1, col=column)
    for column, (field, _) in enumerate(_PANELS, start=1):
        figure.update_xaxes(type="log", title_text="batch size", row=1, col=column)
        if field != "output_token_throughput":
            figure.update_yaxes(type="log", row=1, col=column)
    for column, limit in ((2, report.slo.ttft_p99_ms), (3, report.slo.tpot_p99_ms)):
        if limit is not None:
            figure.add_hline(y=limit, line_dash="dot", line_color="#c00000", row=1, col=column,
                             annotation_text=f"SLO {limit:g} ms")
    figure.update_layout(height=520, legend={"orientation": "h", "y": -0.25}, margin={"t": 40})
    return figure


def _errors(rows: list[PointSummary], field: str) -> dict[str, Any] | None:
    lows = {"output_token_throughput": "output_token_throughput_ci_low", "ttft_p99_ms": "ttft_p99_ci_low_ms",
            "tpot_p99_ms": "tpot_p99_ci_low_ms"}[field]
    highs = lows.replace("low", "high")
    if not any(getattr(p, lows) is not None for p in rows):
        return None
    value = [getattr(p, field) for p in rows]
    return {"type": "data", "symmetric": False,
            "array": [max(0.0, (getattr(p, highs) or v) - v) for p, v in zip(rows, value, strict=True)],
            "arrayminus": [max(0.0, v - (getattr(p, lows) or v)) for p, v in zip(rows, value, strict=True)]}
