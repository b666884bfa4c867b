"""Every number of the report traces to a query: each table and chart names the SQL it came from, and here each
named query is run again through `servesweep query`'s sandbox (after the report's own parameters,
report.reproduce_sql) and the table's cells and the chart's drawn values are checked against its rows.

Tables without a query (the machine types come from the planner, the figures of an answer from several views)
are checked against the views their source names. Run on the synthetic fleet lake and the committed H100 and
H200 lakes (with the SLOs and baselines of `make bench-gpu-report` / `make bench-h200-report`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from servesweep.analysis import report as report_module
from servesweep.analysis.charts import _SPEEDS, render_charts
from servesweep.analysis.report import (
    FIGURES_SOURCE,
    MACHINES_SOURCE,
    _Chart,
    _document,
    _Table,
    build_report,
    render_markdown,
    reproduce_sql,
)
from servesweep.analysis.views import connect, run_sql
from servesweep.catalog import CATALOG_ENV, load_catalog
from servesweep.spec import SLOSpec
from tests.support.analysis_lake import ROUND_PRICES, fleet_rows, write_points
from tests.support.committed_lakes import H100, H200
from tests.support.sentences import group_values, numbers_in, unmatched


def _fleet(tmp_path, monkeypatch) -> tuple:
    lake = str(tmp_path / "lake")
    write_points(lake, fleet_rows())
    prices = tmp_path / "round-prices.yaml"
    prices.write_text(ROUND_PRICES)
    monkeypatch.setenv(CATALOG_ENV, str(prices))  # the sandbox's views price from the same catalog
    return lake, [], SLOSpec(ttft_p99_ms=500, tpot_p99_ms=50), "nvidia-l4"


@pytest.fixture(params=["fleet", "h100", "h200"])
def traced(request, tmp_path, monkeypatch):
    """(report, its document's blocks, a function running a named query the way a user would)."""
    case = _fleet(tmp_path, monkeypatch) if request.param == "fleet" else {"h100": H100, "h200": H200}[request.param]
    lake, run_ids, slo, baseline = case
    report = build_report(lake, run_ids, slo, baseline, load_catalog())
    charts = render_charts(report, tmp_path / "charts")

    def rerun(sql: str) -> list[list[dict[str, Any]]]:
        return [table.to_pylist() for table in run_sql(lake, f"{reproduce_sql(report)} {sql}")]

    return report, _document(report, charts), rerun


def _matches(cell: str, value: object) -> bool:
    """The cell shows `value` to the digits it prints."""
    if value is None:
        return cell == "-"
    if isinstance(value, bool):
        return cell == ("yes" if value else "no")
    if isinstance(value, list):
        return cell == (", ".join(str(v) for v in value) or "-")
    if isinstance(value, str):
        return cell == value
    printed, number, tolerance = numbers_in(cell, ())[0]
    return abs(number - float(value)) <= tolerance * (1 + 1e-9) + 1e-12  # type: ignore[arg-type]


def _key(value: object) -> str:
    return str(value)


def test_every_table_and_chart_names_its_source(traced):
    report, blocks, _ = traced
    tables = [block for block in blocks if isinstance(block, _Table)]
    charts = [block.chart for block in blocks if isinstance(block, _Chart)]
    assert tables and charts
    assert all(table.source for table in tables), [t.headers for t in tables if not t.source]
    assert all(chart.source.startswith("SELECT") for chart in charts)
    markdown = render_markdown(report, charts)
    assert markdown.count("Source: ") == len(tables) + len(charts)
    assert reproduce_sql(report) in markdown


def test_every_query_table_equals_its_query(traced):
    _, blocks, rerun = traced
    checked = 0
    for table in (b for b in blocks if isinstance(b, _Table) and b.columns):
        rows = rerun(table.source)[-1]
        assert len(rows) == len(table.rows), table.source
        by_key = {tuple(_key(row[c]) for c in table.columns[:table.key]): row for row in rows}
        for cells in table.rows:
            row = by_key[tuple(cells[:table.key])]
            for cell, column in zip(cells, table.columns, strict=True):
                if column is not None:
                    assert _matches(cell, row[column]), (table.source, column, cell, row[column])
                    checked += 1
    assert checked > 20


def test_the_runs_table_equals_the_runs_query(traced):
    report, blocks, rerun = traced
    table = next((b for b in blocks if isinstance(b, _Table) and b.source.startswith("SELECT * FROM runs")), None)
    if table is None:  # only a lake without fingerprints has no runs table, and the report says so
        assert rerun("SELECT count(*) AS n FROM runs")[-1][0]["n"] == 0 and not report.fingerprints
        return
    rows = {row["run_id"]: row for row in rerun(table.source)[-1]}
    assert list(table.headers[1:]) == sorted(rows)
    fields = dict(report_module._FINGERPRINT_FIELDS)
    for label, *cells in table.rows:
        for run, cell in zip(table.headers[1:], cells, strict=True):
            value = rows[run][fields[label]]
            if fields[label] in ("git_commit", "spec_hash") and value:
                assert str(value).startswith(cell)
            else:
                assert _matches(cell, value), (label, run, cell, value)


def test_machine_rows_marked_measured_are_the_ideal_batch_rows(traced):
    report, blocks, rerun = traced
    table = next((b for b in blocks if isinstance(b, _Table) and b.source == MACHINES_SOURCE), None)
    if table is None:  # the report draws the machine-type table whenever the planner gave options
        assert not report.machine_options
        return
    ideals = rerun("SELECT * FROM ideal_batch WHERE source = 'measured'")[-1]
    measured = 0
    for option, cells in zip(report.machine_options, table.rows, strict=True):
        if option.source != "measured":
            continue
        cell = dict(zip(table.headers, cells, strict=True))
        if option.point_id is None:  # a measured placement with no point within the SLO: nothing to quote
            assert (cell["out tok/s"], cell["batch"]) == ("-", "-") and not option.meets_slo
            continue
        # Point ids repeat across runs: the ideal row is the group's one at that point, accelerator and count.
        candidates = [row for row in ideals if row["point_id"] == option.point_id
                      and row["comparison_group"] == option.comparison_group
                      and row["accelerator"] == option.accelerator and (row["accelerator_count"] or 1) == option.gpus]
        assert any(_matches(cell["out tok/s"], row["output_token_throughput"])
                   and _matches(cell["batch"], row["ideal_batch_size"])
                   and _matches(cell["$/M out tokens (all time)"], row["usd_per_million_output_tokens"])
                   for row in candidates), (option, candidates)
        measured += 1
    assert measured


def test_every_figure_is_a_value_of_its_group(traced, tmp_path):
    report, blocks, _ = traced
    connection = connect(report.lake_uri, report.slo, report.baseline_accelerator, report.run_ids, load_catalog())
    try:
        answered = [item for item in report.recommendations if item.figures]
        tables = [b for b in blocks if isinstance(b, _Table) and b.source == FIGURES_SOURCE]
        assert len(tables) == len(answered)
        for item, table in zip(answered, tables, strict=True):
            values = group_values(connection, item.scope)
            for option in report.machine_options:
                if option.comparison_group == item.scope:
                    values.add_row(option.model_dump())
            for variant in report.quantize_variants:  # the quantize answer's planner weight memory and GPUs
                if variant.comparison_group == item.scope:
                    values.add_row(variant.model_dump(exclude={"accuracy"}))
            for label, cell in table.rows:
                assert not unmatched(cell, values), (item.scope, label, cell)
    finally:
        connection.close()


def _series(rows: list[dict[str, Any]], column: str) -> dict[str, list[Any]]:
    drawn: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        if row[column] is not None:
            drawn[row["config_label"]].append(row[column])
    return dict(drawn)


def test_every_chart_draws_its_query(traced):
    report, blocks, rerun = traced
    charts = {block.chart.name: block.chart for block in blocks if isinstance(block, _Chart)}
    throughput = charts["throughput_vs_batch"]
    assert throughput.values == _series(rerun(throughput.source)[-1], "output_token_throughput")

    latency = charts["latency_vs_batch"]
    rows = rerun(latency.source)[-1]
    expected = {f"{name} {stat} {label}": values for name in ("TTFT", "TPOT") for stat in ("p50", "p99")
                for label, values in _series(rows, f"{name.lower()}_{stat}_ms").items()}
    assert latency.values == expected

    if "throughput_per_dollar" in charts:
        cost = charts["throughput_per_dollar"]
        ideals, best = rerun(cost.source)[-2:]
        denominators: dict[str, float] = {}
        for row in ideals:
            if row["accelerator"] == report.baseline_accelerator and row["output_tokens_per_dollar"]:
                group = row["comparison_group"]
                denominators[group] = max(denominators.get(group, 0.0), row["output_tokens_per_dollar"])
        group_of = {row["config_label"]: row["comparison_group"] for row in ideals}
        normalised = all(denominators.get(group_of[label]) for label in cost.categories)
        scale = {label: denominators[group_of[label]] if normalised else 1e6 for label in cost.categories}
        best_of = {row["config_label"]: row["best"] for row in best}
        assert cost.values["best at any batch size"] == pytest.approx(
            [best_of[label] / scale[label] for label in cost.categories])
        if "within the SLO (ideal batch)" in cost.values:
            within = {row["config_label"]: row["output_tokens_per_dollar"] for row in ideals}
            assert cost.values["within the SLO (ideal batch)"] == pytest.approx(
                [None if within[label] is None else within[label] / scale[label] for label in cost.categories])

    if "prefill_vs_decode" in charts:
        balance = charts["prefill_vs_decode"]
        rows = {row["config_label"]: row for row in rerun(balance.source)[-1]}
        assert balance.categories == sorted(rows)
        for name, field in _SPEEDS:
            if name in balance.values:
                assert balance.values[name] == [rows[label][field] for label in balance.categories]

    pareto = charts["pareto_frontier"]
    frontier: dict[str, list[float]] = defaultdict(list)
    for row in rerun(pareto.source)[-1]:
        frontier[f"frontier ({row['comparison_group']})"].append(row["output_token_throughput"])
    assert pareto.values == dict(frontier)


def test_the_interactive_chart_draws_its_query(traced):
    from servesweep.analysis.interactive import _PANELS, SOURCE, interactive_figure

    report, _, rerun = traced
    figure = interactive_figure(report)
    rows = rerun(SOURCE)[-1]
    expected = {(label, column): (batches, values) for column, (field, _) in enumerate(_PANELS, start=1)
                for label, (batches, values) in _points_by_label(rows, field).items()}
    drawn = {}
    for trace in figure.data:
        column = {"x": 1, "x2": 2, "x3": 3}[trace.xaxis]
        drawn[(trace.name, column)] = (list(trace.x), list(trace.y))
    assert drawn == expected


def _points_by_label(rows: list[dict[str, Any]], column: str) -> dict[str, tuple[list[int], list[float]]]:
    out: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows:
        if row[column] is not None:
            batches, values = out.setdefault(row["config_label"], ([], []))
            batches.append(row["batch_size"])
            values.append(row[column])
    return out
