"""Configurations are identified by what was measured: a sweep split over two runs, or resumed, is one series in
every view and chart; a slot two runs measured keeps the newest measurement; configs that differ in what was
measured (server version, sampling) stay apart with labels that say how."""

from datetime import UTC, datetime, timedelta

import pytest

from servesweep.analysis.charts import render_charts
from servesweep.analysis.report import build_report
from servesweep.analysis.views import connect
from servesweep.lake import store
from servesweep.spec import SLOSpec
from tests.support.analysis_lake import point, round_price_catalog, write_points

SLO = SLOSpec(ttft_p99_ms=500, tpot_p99_ms=50)
LABEL = "nvidia-l4 x1 llama3-8b none vllm 1024/256 client_concurrency"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _at(row: dict, minutes: int) -> dict:
    return {**row, "started_at": T0 + timedelta(minutes=minutes)}


def _split_sweep() -> list[dict]:
    """One sweep split over two runs: batches 1-4 in `split-a`, 8-16 in `split-b`."""
    first = [_at(point("split-a", "nvidia-l4", b, t, ttft, tpot), i) for i, (b, t, ttft, tpot) in
             enumerate([(1, 30, 100, 30), (2, 55, 120, 32), (4, 100, 150, 35)])]
    second = [_at(point("split-b", "nvidia-l4", b, t, ttft, tpot), 60 + i) for i, (b, t, ttft, tpot) in
              enumerate([(8, 180, 300, 40), (16, 200, 900, 60)])]
    return first + second


def _resumed_sweep() -> list[dict]:
    """`first` measured batches 1, 2 and 4; `resumed` copied 1 and 2 (reused_from_run), measured 4 again (later,
    faster) and went on to 8."""
    first = [_at(point("first", "nvidia-l4", b, t, ttft, tpot), i) for i, (b, t, ttft, tpot) in
             enumerate([(1, 30, 100, 30), (2, 55, 120, 32), (4, 90, 160, 36)])]
    copies = [{**row, "run_id": "resumed", "deployment_id": "resumed-d", "reused_from_run": "first"}
              for row in first[:2]]
    again = [_at(point("resumed", "nvidia-l4", 4, 100, 150, 35), 120),
             _at(point("resumed", "nvidia-l4", 8, 180, 300, 40), 121)]
    return first + copies + again


def _lake(tmp_path, rows: list[dict]) -> str:
    lake = str(tmp_path / "lake")
    write_points(lake, rows)
    return lake


def _points(lake: str, tmp_path) -> list[dict]:
    connection = connect(lake, SLO, "nvidia-l4", catalog=round_price_catalog(tmp_path))
    try:
        return connection.sql("SELECT * FROM throughput_by_batch JOIN point_costs USING (config_id, point_id, "
                              "run_id)").to_arrow_table().to_pylist()
    finally:
        connection.close()


def test_a_split_sweep_is_one_config_in_every_view(tmp_path):
    lake = _lake(tmp_path, _split_sweep())
    connection = connect(lake, SLO, "nvidia-l4", catalog=round_price_catalog(tmp_path))
    try:
        series = connection.sql("SELECT DISTINCT config_id, config_label FROM throughput_by_batch").fetchall()
        assert len(series) == 1 and series[0][1] == LABEL  # readable, no run id appended
        config_id = series[0][0]
        assert config_id.startswith("cfg-") and "split" not in config_id
        for view in ("latency_by_batch", "throughput_per_dollar_normalised", "prefill_decode", "ideal_batch",
                     "pareto_frontier"):
            ids = {row[0] for row in connection.sql(f"SELECT DISTINCT config_id FROM {view}").fetchall()}
            assert ids == {config_id}, view
        ideal = connection.sql("SELECT * FROM ideal_batch").to_arrow_table().to_pylist()[0]
        # The knee spans both runs: batch 8 (split-b) is the largest within the SLO, and batch 1 (split-a) is
        # the scaling and prefill baseline.
        assert ideal["ideal_batch_size"] == 8 and ideal["batch_sizes_tested"] == [1, 2, 4, 8, 16]
        assert ideal["run_ids"] == ["split-a", "split-b"] and ideal["points_counted"] == 5
        scaling = dict(connection.sql("SELECT batch_size, scaling_vs_smallest_batch FROM throughput_by_batch")
                       .fetchall())
        assert scaling[16] == pytest.approx(200 / 30)
        balance = connection.sql("SELECT low_batch_size, max_batch_size FROM prefill_decode").fetchall()
        assert balance == [(1, 16)]
    finally:
        connection.close()


def test_a_resumed_sweep_keeps_the_newest_measurement_of_each_batch(tmp_path):
    rows = _points(_lake(tmp_path, _resumed_sweep()), tmp_path)
    assert len({row["config_id"] for row in rows}) == 1
    by_batch = {row["batch_size"]: row for row in rows}
    assert sorted(by_batch) == [1, 2, 4, 8] and len(rows) == 4  # one row per batch: no double counting
    assert by_batch[4]["run_id"] == "resumed" and by_batch[4]["output_token_throughput"] == 100  # newer wins
    assert by_batch[4]["measured_by_runs"] == ["first", "resumed"]
    # A resume's copy yields to the row it copied (same numbers, same start time).
    assert by_batch[1]["run_id"] == "first" and by_batch[1]["measured_by_runs"] == ["first", "resumed"]
    assert by_batch[8]["measured_by_runs"] == ["resumed"]


def test_choosing_one_run_keeps_its_own_points(tmp_path):
    lake = _lake(tmp_path, _resumed_sweep())
    connection = connect(lake, SLO, "nvidia-l4", run_ids=["first"], catalog=round_price_catalog(tmp_path))
    try:
        rows = dict(connection.sql("SELECT batch_size, output_token_throughput FROM point_costs").fetchall())
    finally:
        connection.close()
    assert rows == {1: 30, 2: 55, 4: 90}


def test_the_report_draws_one_series_and_notes_the_remeasured_batch(tmp_path):
    lake = _lake(tmp_path, _resumed_sweep())
    report = build_report(lake, [], SLO, "nvidia-l4", round_price_catalog(tmp_path))
    assert [row.config_label for row in report.measured_ideals()] == [LABEL]
    charts = {chart.name: chart for chart in render_charts(report, tmp_path / "charts")}
    assert charts["throughput_vs_batch"].values == {LABEL: [30, 55, 100, 180]}
    assert any(f"{LABEL} batch 4 (runs first, resumed; used: resumed)" in note for note in report.notes)
    assert not any("batch 8 (runs" in note for note in report.notes)


def _runs_row(run_id: str, version: str) -> dict:
    return {"run_id": run_id, "spec_hash": "0" * 64, "server_kind": "vllm", "server_version": version}


def test_a_different_server_version_is_another_config_labelled_by_its_version(tmp_path):
    lake = str(tmp_path / "lake")
    for run_id, version, batches in (("old", "0.9.0", (1, 2)), ("new", "0.10.1", (4,))):
        points = [point(run_id, "nvidia-l4", b, 10.0 * b, 100, 30) for b in batches]
        store.write_run(lake, run_id, {"points": store.to_table("points", points),
                                       "runs": store.to_table("runs", [_runs_row(run_id, version)])})
    labels = {row["config_label"]: row["server_version"] for row in _points(lake, tmp_path)}
    assert labels == {f"{LABEL} vllm 0.9.0": "0.9.0", f"{LABEL} vllm 0.10.1": "0.10.1"}


def test_configs_that_share_a_label_but_not_a_sampling_are_told_apart(tmp_path):
    greedy = [point("greedy", "nvidia-l4", b, 10.0 * b, 100, 30, temperature=0.0) for b in (1, 2)]
    sampled = [point("sampled", "nvidia-l4", b, 9.0 * b, 100, 30, temperature=0.7) for b in (1, 2)]
    rows = _points(_lake(tmp_path, greedy + sampled), tmp_path)
    ids = {row["config_id"] for row in rows}
    labels = {row["config_label"] for row in rows}
    assert len(ids) == 2 and len(labels) == 2
    assert all(label.startswith(LABEL + " #") for label in labels)
    keys = {row["config_key"] for row in rows}
    assert any("sampling 0.0 " in key for key in keys) and any("sampling 0.7 " in key for key in keys)
