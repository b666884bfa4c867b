"""Charts people read at a glance, drawing the same numbers as the tables: one size, one colour per config,
log latency axes where the range spans decades, and an interactive HTML version that needs no network."""

from __future__ import annotations

import re

import pytest
from matplotlib.image import imread

from servesweep.analysis.charts import config_colors, config_variants, faceted, render_charts  # noqa: E402
from servesweep.analysis.report import build_report, render_html  # noqa: E402
from servesweep.spec import SLOSpec  # noqa: E402
from tests.support.analysis_lake import fleet_rows, round_price_catalog, write_points
from tests.support.committed_lakes import H200


@pytest.fixture
def fleet(tmp_path):
    lake = str(tmp_path / "lake")
    write_points(lake, fleet_rows())
    return build_report(lake, [], SLOSpec(ttft_p99_ms=500, tpot_p99_ms=50), "nvidia-l4", round_price_catalog(tmp_path))


def test_the_cost_chart_draws_the_ideal_batch_table_s_numbers(fleet, tmp_path):
    charts = {c.name: c for c in render_charts(fleet, tmp_path)}
    cost = charts["throughput_per_dollar"]
    ideals = {row.config_label: row for row in fleet.measured_ideals()}
    within = dict(zip(cost.categories, cost.values["within the SLO (ideal batch)"], strict=True))
    for label, value in within.items():
        assert value == pytest.approx(ideals[label].tokens_per_dollar_vs_baseline) if ideals[label].meets_slo \
            else value is None


def test_the_throughput_chart_draws_the_points_table(fleet, tmp_path):
    charts = {c.name: c for c in render_charts(fleet, tmp_path)}
    drawn = charts["throughput_vs_batch"].values
    for label, values in drawn.items():
        table = sorted((p for p in fleet.points if p.config_label == label and p.source == "measured"),
                       key=lambda p: p.batch_size)
        assert values == [p.output_token_throughput for p in table]
        ideal = next(r for r in fleet.ideal_batches if r.config_label == label)
        assert ideal.max_output_token_throughput == max(v for v in values if v is not None)


def test_every_chart_has_the_same_size_and_each_config_one_colour(tmp_path):
    report = build_report(*H200[:4])
    charts = render_charts(report, tmp_path)
    shapes = {c.name: imread(c.path).shape[:2] for c in charts}
    heights = {h for h, _ in shapes.values()}
    widths = {w for _, w in shapes.values()}
    # bbox_inches="tight" trims each to its content: same canvas, within the legend's and labels' margins.
    assert max(widths) - min(widths) < 0.35 * max(widths) and max(heights) - min(heights) < 0.5 * max(heights), shapes
    assert all(h < 1400 for h in heights), shapes  # the Pareto chart was 2125 px high
    colors = config_colors(report)
    assert set(colors) >= {p.config_label for p in report.points}


def test_many_configs_get_a_panel_per_group_and_a_colour_per_variant(tmp_path):
    # The H200 lake: 20 measured configs over 2 models x 3 workload shapes.
    report = build_report(*H200)
    assert faceted(report)
    colors, variants = config_colors(report), config_variants(report)
    measured = {p.config_label: p.comparison_group for p in report.points if p.source == "measured"}
    by_group: dict[str, list[str]] = {}
    for label, group in measured.items():
        by_group.setdefault(group, []).append(label)
    for labels in by_group.values():  # inside a panel: a colour (and a variant name) per config
        assert len({colors[label] for label in labels}) == len({variants[label] for label in labels}) == len(labels)
    # The same variant has the same colour in every panel, and far fewer legend entries than configs.
    assert all(colors[a] == colors[b] for a in measured for b in measured if variants[a] == variants[b])
    legend = {variants[label] for label in measured}
    assert len(legend) <= 6 < len(measured) and "fp8 client_concurrency" in legend
    charts = {c.name: c for c in render_charts(report, tmp_path)}
    assert sorted(charts["pareto_frontier"].values) == sorted(f"frontier ({group})" for group in by_group)
    # Drawing per panel changes none of the numbers: every measured config's throughput, as the table has it.
    drawn = charts["throughput_vs_batch"].values
    assert set(drawn) == {label for label, rows in _measured_with_throughput(report).items() if rows}
    for label, values in drawn.items():
        assert values == _measured_with_throughput(report)[label]


def _measured_with_throughput(report):
    rows: dict[str, list[float]] = {}
    for p in sorted(report.points, key=lambda p: (p.config_label, p.batch_size)):
        if p.source == "measured" and p.output_token_throughput is not None:
            rows.setdefault(p.config_label, []).append(p.output_token_throughput)
    return rows


def test_a_few_configs_share_one_panel_with_a_colour_each(fleet):
    assert not faceted(fleet)
    colors = config_colors(fleet)
    assert len(set(colors.values())) == len(colors)


def test_latency_axes_are_log_where_the_range_spans_decades(tmp_path):
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from servesweep.analysis.charts import _log_if_wide

    ax: Axes = Figure().subplots()
    assert _log_if_wide(ax, [20.0, 350_000.0]) and ax.get_yscale() == "log"
    ax2: Axes = Figure().subplots()
    assert not _log_if_wide(ax2, [20.0, 60.0]) and ax2.get_yscale() == "linear"


def test_the_html_report_has_an_interactive_chart_that_needs_no_network(fleet, tmp_path):
    charts = render_charts(fleet, tmp_path)
    page = render_html(fleet, charts)
    assert "Interactive charts" in page and "Plotly.newPlot" in page
    # plotly.js is inline: no <script src=...> pointing anywhere
    assert not re.findall(r'<script[^>]+src=', page)
    assert page.count("<img alt=") == len(charts)
