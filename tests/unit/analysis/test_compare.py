"""`servesweep compare`: what differs between two runs or two configurations, and, per load on both sides,
which throughput / TTFT / TPOT changes lie outside the noise (disjoint 95 % intervals), within it, or cannot be
judged (no interval). Synthetic lakes with hand-set intervals, and two runs of the committed H200 lake."""

import json

import pytest
from typer.testing import CliRunner

from servesweep.analysis.compare import OUTSIDE, UNQUALIFIED, WITHIN, CompareError, compare, delta_rows, summary
from servesweep.analysis.views import connect
from servesweep.cli import app
from servesweep.lake import query as lake_query
from servesweep.lake import store
from tests.support.analysis_lake import point
from tests.support.committed_lakes import H200


def _ci(value: float, half: float, column: str) -> dict:
    low, high = (f"{column}_ci_low", f"{column}_ci_high") if column == "output_token_throughput" else \
        (f"{column.removesuffix('_ms')}_ci_low_ms", f"{column.removesuffix('_ms')}_ci_high_ms")
    return {low: value - half, high: value + half}


def _measured(run: str, batch: int, throughput: float, throughput_half: float | None, tpot_p99: float = 30.0,
              **extra) -> dict:
    row = point(run, "nvidia-l4", batch, throughput, 100, tpot_p99, **extra)
    if throughput_half is not None:
        row |= _ci(throughput, throughput_half, "output_token_throughput")
        for column in ("ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms", "tpot_p99_ms"):
            row |= _ci(row[column], 0.05 * row[column], column)
    return row


def _run_row(run: str, driver: str, version: str, repeats: int) -> dict:
    spec = {"name": run, "sweep": {"repeats": repeats, "batch_sizes": [1, 4]}, "server": {"kind": "vllm"}}
    return {"run_id": run, "spec_hash": f"{run:0<64}"[:64], "spec_json": json.dumps(spec, sort_keys=True),
            "server_kind": "vllm", "server_version": version, "gpu_name": "NVIDIA L4", "gpu_driver_version": driver}


@pytest.fixture
def lake(tmp_path):
    """`base` and `newer` (another driver and vLLM): batch 1 within the noise, batch 4 faster beyond it, batch 2
    without intervals in `newer`, batch 8 only in `newer`."""
    uri = str(tmp_path / "lake")
    base = [_measured("base", 1, 100, 5), _measured("base", 2, 180, 6), _measured("base", 4, 300, 10)]
    newer = [_measured("newer", 1, 103, 5), _measured("newer", 2, 190, None), _measured("newer", 4, 360, 10),
             _measured("newer", 8, 500, 20, noisy=True)]
    for run, rows, driver, version in (("base", base, "550.54", "0.9.0"), ("newer", newer, "570.12", "0.10.1")):
        store.write_run(uri, run, {"points": store.to_table("points", rows),
                                   "runs": store.to_table("runs", [_run_row(run, driver, version, 2)])})
    return uri


def _delta(comparison, batch: int, metric: str):
    return next(d for d in comparison.deltas if d.batch_size == batch and d.metric == metric)


def test_two_runs_say_what_changed_and_which_differences_lie_outside_the_noise(lake):
    result = compare(lake, "base", "newer")
    changed = {d.field: (d.a, d.b) for d in result.differences}
    assert changed["runs.gpu_driver_version"] == ("550.54", "570.12")
    assert changed["runs.server_version"] == ("0.9.0", "0.10.1")
    assert changed["config.server"] == ("vllm 0.9.0", "vllm 0.10.1")  # the identity part set aside to pair them
    assert "runs.gpu_name" not in changed and not any(f.startswith("spec.name") for f in changed)
    assert "runs.spec_hash" in changed and "spec.sweep.repeats" not in changed  # equal specs fields stay out

    assert sorted({d.batch_size for d in result.deltas}) == [1, 2, 4] and len(result.deltas) == 3 * 5
    one, four = _delta(result, 1, "output throughput"), _delta(result, 4, "output throughput")
    assert (one.verdict, one.change) == (WITHIN, 3) and one.direction is None
    assert (four.verdict, four.direction) == (OUTSIDE, "better") and four.change_fraction == pytest.approx(0.2)
    assert _delta(result, 2, "output throughput").verdict == UNQUALIFIED  # newer has no interval at batch 2
    assert _delta(result, 2, "p99 TTFT").verdict == UNQUALIFIED
    # The same TTFT with 5 % intervals: within; TPOT p99 equal: within.
    assert _delta(result, 4, "p99 TPOT").verdict == WITHIN
    assert result.only_b == ["1024/256 client_concurrency batch 8"] and result.only_a == []
    assert _delta(result, 4, "output throughput").a_point == "base/measured-none-b4"


def test_a_slower_side_is_worse_and_latency_lower_is_better(lake):
    result = compare(lake, "newer", "base")
    assert _delta(result, 4, "output throughput").direction == "worse"
    assert _delta(result, 4, "output throughput").change == -60


def test_the_text_table_and_summary_carry_each_verdict(lake):
    result = compare(lake, "base", "newer")
    headers, rows = delta_rows(result)
    assert headers[-1] == "verdict" and len(rows) == len(result.deltas)
    row = next(r for r in rows if r[1] == "batch 4" and r[2] == "output throughput")
    assert row[3] == "300 (290-310)" and row[4] == "360 (350-370)" and row[5] == "+60 tok/s (+20.0%)"
    assert row[6] == "outside the noise (B better)"
    text = summary(result)
    outside = len(result.outside_noise())
    unqualified = sum(d.verdict == UNQUALIFIED for d in result.deltas)
    assert f"{outside} outside the noise" in text and f"{unqualified} unqualified" in text


def test_two_configurations(lake):
    connection = connect(lake)
    ids = dict(connection.sql("SELECT DISTINCT run_id, config_id FROM point_costs").fetchall())
    connection.close()
    result = compare(lake, ids["base"], ids["newer"])
    assert result.kind == "configs" and result.a_runs == ["base"] and result.b_runs == ["newer"]
    changed = {d.field: (d.a, d.b) for d in result.differences}
    assert changed["config.server"] == ("vllm 0.9.0", "vllm 0.10.1")
    assert changed["runs.gpu_driver_version"] == ("550.54", "570.12")
    assert _delta(result, 4, "output throughput").verdict == OUTSIDE


@pytest.mark.parametrize(("a", "b", "message"), [
    ("base", "nope", "'nope' is neither a run nor a configuration of the lake; runs: base, newer"),
    ("base", "base", "two different runs or configurations"),
])
def test_bad_ids_fail_in_one_line(lake, a, b, message):
    with pytest.raises(CompareError, match=message):
        compare(lake, a, b)
    result = CliRunner().invoke(app, ["compare", a, b, "--lake", lake])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output


def test_a_run_against_a_configuration_is_refused(lake):
    connection = connect(lake)
    config = connection.sql("SELECT config_id FROM point_costs WHERE run_id = 'base' LIMIT 1").fetchall()[0][0]
    connection.close()
    with pytest.raises(CompareError, match="compare two runs or two configurations"):
        compare(lake, "newer", config)


def test_the_cli_prints_tables_and_json(lake):
    shown = CliRunner().invoke(app, ["compare", "base", "newer", "--lake", lake])
    assert shown.exit_code == 0, shown.output
    assert "What differs" in shown.output and "gpu_driver_version" in shown.output
    assert "outside the noise (B better)" in shown.output and "only in B: 1024/256 client_concurrency batch 8" \
        in shown.output
    as_json = CliRunner().invoke(app, ["compare", "base", "newer", "--lake", lake, "--output", "json"])
    assert as_json.exit_code == 0
    data = json.loads(as_json.output)
    assert data["kind"] == "runs" and len(data["deltas"]) == 15
    bad = CliRunner().invoke(app, ["compare", "base", "newer", "--lake", lake, "--output", "csv"])
    assert bad.exit_code == 2 and bad.output.startswith("error: ")


def test_two_runs_of_the_committed_h200_lake():
    """int8 against w4a16 on one H200: the quantization differs, every load both measured is compared, and each
    verdict follows the points table's own intervals."""
    lake = H200[0]
    result = compare(lake, "h200-llama3-8b-int8", "h200-llama3-8b-w4a16")
    changed = {d.field: (d.a, d.b) for d in result.differences}
    assert changed["config.quantization"] == ("w8a8-int8", "w4a16")
    assert changed["spec.quantization"] == ('"w8a8-int8"', '"w4a16"')
    assert "runs.gpu_driver_version" not in changed  # the same machine
    points = lake_query.query(lake, "SELECT * FROM points WHERE source = 'measured' AND status IN ('ok', 'partial') "
                                    "AND run_id IN ('h200-llama3-8b-int8', 'h200-llama3-8b-w4a16')").to_pylist()
    index = {(p["run_id"], p["point_id"]): p for p in points}
    a_loads = {(p["input_tokens"], p["output_tokens"], p["batch_size"]) for p in points
               if p["run_id"] == "h200-llama3-8b-int8"}
    b_loads = {(p["input_tokens"], p["output_tokens"], p["batch_size"]) for p in points
               if p["run_id"] == "h200-llama3-8b-w4a16"}
    assert len(result.deltas) == 5 * len(a_loads & b_loads)
    assert len(result.only_a) == len(a_loads - b_loads) and len(result.only_b) == len(b_loads - a_loads)
    for delta in result.deltas:
        a, b = (index[tuple(side.split("/", 1))] for side in (delta.a_point, delta.b_point))
        assert (a["input_tokens"], a["batch_size"]) == (b["input_tokens"], b["batch_size"])
        column = {"output throughput": "output_token_throughput", "p50 TTFT": "ttft_p50_ms", "p99 TTFT": "ttft_p99_ms",
                  "p50 TPOT": "tpot_p50_ms", "p99 TPOT": "tpot_p99_ms"}[delta.metric]
        assert (delta.a, delta.b) == (a[column], b[column])
        low = "output_token_throughput_ci_low" if column == "output_token_throughput" else \
            column.replace("_ms", "_ci_low_ms")
        lows, highs = (a[low], b[low]), (a[low.replace("low", "high")], b[low.replace("low", "high")])
        if None in lows or None in highs:
            assert delta.verdict == UNQUALIFIED
        else:
            disjoint = lows[1] > highs[0] or lows[0] > highs[1]
            assert delta.verdict == (OUTSIDE if disjoint else WITHIN), delta
    assert result.outside_noise()  # this pair has intervals (repeats) and some differences beyond them


def test_committed_runs_without_intervals_are_unqualified():
    result = compare(H200[0], "h200-llama3-8b", "h200-llama3-8b-fp8")
    assert result.deltas and all(d.verdict == UNQUALIFIED for d in result.deltas)
    assert [d.field for d in result.differences] == ["config.quantization"]
    assert any("no fingerprint" in note for note in result.notes)
