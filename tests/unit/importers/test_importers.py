"""The importers against their fixture files' own numbers; the imported run in `servesweep query` and in the
report beside a measured run; bad files as one-line errors with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from servesweep.cli import app
from servesweep.importers import FORMATS, ImportFailed, import_file, parse_file
from servesweep.lake import store
from tests.support.analysis_lake import spine_rows, write_points
from tests.support.paths import TESTS

FIXTURES = TESTS / "fixtures" / "importers"
VLLM = FIXTURES / "vllm-bench.json"
GUIDELLM = FIXTURES / "guidellm.json"
INFERENCE_PERF = FIXTURES / "inference-perf"


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_every_format_has_an_importer_and_a_fixture():
    assert set(FORMATS) == {"vllm-bench", "guidellm", "inference-perf"}


def test_vllm_bench_point_is_the_files_summary():
    data = _json(VLLM)
    [point] = parse_file("vllm-bench", VLLM).points
    assert point["imported_from"] == "vllm-bench" and point["source"] == "measured"
    assert (point["model_name"], point["batch_size"], point["load_kind"]) == (data["model_id"], 4, "closed")
    assert point["num_requests"] == data["completed"] + data["failed"]
    assert point["output_token_throughput"] == data["output_throughput"]
    assert point["input_token_throughput"] == pytest.approx(data["total_input_tokens"] / data["duration"])
    for ours, theirs in (("ttft", "ttft"), ("tpot", "tpot"), ("itl", "itl"), ("e2e", "e2el")):
        for stat in ("p90", "p95", "p99", "mean"):
            assert point[f"{ours}_{stat}_ms"] == data[f"{stat}_{theirs}_ms"]
        assert point[f"{ours}_p50_ms"] == data[f"median_{theirs}_ms"]
    assert {"server_kind", "accelerator", "started_at"}.isdisjoint(point)  # the file does not say: null


def test_vllm_bench_requests_convert_seconds_and_match_the_summary():
    data = _json(VLLM)
    requests = parse_file("vllm-bench", VLLM).requests
    assert len(requests) == data["completed"]
    assert [r["ttft_ms"] for r in requests] == pytest.approx([1000 * t for t in data["ttfts"]])
    assert [r["e2e_ms"] for r in requests] == pytest.approx([1000 * t for t in data["latencies"]])
    assert requests[3]["itl_ms"] == pytest.approx([1000 * g for g in data["itls"][3]])
    assert all("sent_at_unix" not in r for r in requests)  # perf_counter only: null in the lake
    # vLLM's TPOT excludes the first token, like the lake's: recomputed per request, its mean is the file's.
    assert np.mean([r["tpot_ms"] for r in requests]) == pytest.approx(data["mean_tpot_ms"], rel=1e-9)
    gaps = [g for r in requests for g in r["itl_ms"]]
    assert np.percentile(gaps, 99) == pytest.approx(data["p99_itl_ms"], rel=1e-9)


def test_vllm_bench_percentiles_not_asked_for_come_from_the_per_request_lists(tmp_path):
    data = _json(VLLM)
    del data["p90_ttft_ms"]
    path = tmp_path / "no-p90.json"
    path.write_text(json.dumps(data))
    [point] = parse_file("vllm-bench", path).points
    assert point["ttft_p90_ms"] == pytest.approx(np.percentile([1000 * t for t in data["ttfts"]], 90))
    for name in ("ttfts", "itls", "latencies", "start_times", "input_lens", "output_lens", "errors"):
        del data[name]
    path.write_text(json.dumps(data))
    imported = parse_file("vllm-bench", path)
    assert imported.requests == [] and imported.points[0]["ttft_p90_ms"] is None  # not estimated


def test_guidellm_benchmarks_are_points_with_its_itl_as_the_lakes_tpot():
    data = _json(GUIDELLM)
    points = parse_file("guidellm", GUIDELLM).points
    assert [p["batch_size"] for p in points] == [1, 4]
    for point, bench in zip(points, data["benchmarks"], strict=True):
        metrics = bench["metrics"]
        ttft = metrics["time_to_first_token_ms"]["successful"]
        assert point["ttft_p99_ms"] == ttft["percentiles"]["p99"] and point["ttft_mean_ms"] == ttft["mean"]
        e2e = metrics["request_latency"]["successful"]
        assert point["e2e_p50_ms"] == pytest.approx(1000 * e2e["percentiles"]["p50"])
        assert point["itl_p99_ms"] is None  # no per-gap data in a guidellm report
        duration = bench["scheduler_metrics"]["measure_end_time"] - bench["scheduler_metrics"]["measure_start_time"]
        tokens = metrics["output_token_count"]["successful"]["total_sum"]
        assert point["output_token_throughput"] == pytest.approx(tokens / duration)
        assert point["model_name"] == bench["config"]["backend"]["model"]
    # Benchmark 0 lists every request: TPOT per request (unweighted); benchmark 1 sampled: the weighted summary.
    listed = [r["inter_token_latency_ms"] for r in data["benchmarks"][0]["requests"]["successful"]]
    assert points[0]["tpot_p50_ms"] == pytest.approx(np.percentile(listed, 50))
    weighted = data["benchmarks"][1]["metrics"]["inter_token_latency_ms"]["successful"]
    assert points[1]["tpot_p99_ms"] == weighted["percentiles"]["p99"]


def test_inference_perf_folder_is_one_point_per_stage_in_ms():
    points = parse_file("inference-perf", INFERENCE_PERF).points
    assert [(p["batch_size"], p["model_name"]) for p in points] == [(2, "tiny-llama"), (8, "tiny-llama")]
    for point, stage in zip(points, (0, 1), strict=True):
        report = _json(INFERENCE_PERF / f"stage_{stage}_lifecycle_metrics.json")
        latency = report["successes"]["latency"]
        assert point["ttft_p99_ms"] == pytest.approx(1000 * latency["time_to_first_token"]["p99"])
        assert point["tpot_p50_ms"] == pytest.approx(1000 * latency["time_per_output_token"]["median"])
        assert point["itl_p99_ms"] == pytest.approx(1000 * latency["inter_token_latency"]["p99"])
        assert point["e2e_mean_ms"] == pytest.approx(1000 * latency["request_latency"]["mean"])
        assert point["output_token_throughput"] == report["successes"]["throughput"]["output_tokens_per_sec"]
        assert point["duration_s"] == report["benchmark_time_seconds"]
        assert point["schedule_lag_p99_ms"] == pytest.approx(1000 * report["load_summary"]["schedule_delay"]["p99"])


def test_an_imported_run_is_queried_and_reported_beside_a_measured_one(tmp_path):
    lake = str(tmp_path / "lake")
    write_points(lake, spine_rows())
    measured = store.run_ids(lake)[0]
    result = import_file("vllm-bench", VLLM, lake)
    assert result.rows == {"points": 1, "requests": 24, "server_metrics": 0, "runs": 1, "accuracy": 0}
    out = CliRunner().invoke(app, ["query", "select run_id, imported_from, ttft_p99_ms from points "
                                   "where imported_from is not null", "--lake", lake, "--output", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == [{"run_id": result.run_id, "imported_from": "vllm-bench",
                                       "ttft_p99_ms": _json(VLLM)["p99_ttft_ms"]}]
    notes = store.read_table(lake, "runs", [result.run_id])["notes"][0].as_py()
    assert notes.startswith("imported:vllm-bench from vllm-bench.json")
    from servesweep.analysis.report import build_report

    others = [import_file(fmt, path, lake).run_id for fmt, path in (("guidellm", GUIDELLM),
                                                                       ("inference-perf", INFERENCE_PERF))]
    report = build_report(lake, [measured, result.run_id, *others])
    assert {row.run_id for row in report.ideal_batches} == {measured, result.run_id, *others}
    # guidellm's and inference-perf's fixtures ran the spine's model and shape: compared in its group.
    group = {row.run_id: row.comparison_group for row in report.ideal_batches if row.source == "measured"}
    assert group[others[0]] == group[others[1]] == group[measured]


@pytest.mark.parametrize(("fmt", "content", "message"), [
    ("vllm-bench", "{not json", "not JSON"),
    ("vllm-bench", json.dumps({"duration": 1.0}), "no 'completed' field"),
    ("vllm-bench", json.dumps({"completed": "many", "duration": 1.0}), "completed is not a number"),
    ("guidellm", json.dumps({"benchmarks": {}}), "'benchmarks' is not a list"),
    ("guidellm", json.dumps({"benchmarks": []}), "no benchmark results"),
    ("inference-perf", json.dumps({"load_summary": {}}), "no 'successes' field"),
    ("guidellm", json.dumps({"benchmarks": [{"config": {}, "metrics": {"request_totals": [1]},
                                             "scheduler_metrics": {}}]}),
     "not a guidellm result as its source defines it"),
    ("vllm-bench", json.dumps({"completed": 1, "duration": 1.0, "model_id": ["a", "list"]}),
     "a value does not fit the lake's column"),
])
def test_a_bad_file_is_one_line_and_writes_nothing(tmp_path, fmt, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    lake = tmp_path / "lake"
    out = CliRunner().invoke(app, ["import", fmt, str(path), "--lake", str(lake)])
    assert out.exit_code == 2
    assert out.output.startswith("error: ") and message in out.output and len(out.output.splitlines()) == 1
    assert not lake.exists()


def test_unknown_format_missing_file_and_second_import_are_refused(tmp_path):
    with pytest.raises(ImportFailed, match="unknown format 'aiperf'"):
        parse_file("aiperf", VLLM)
    with pytest.raises(ImportFailed, match="cannot read it"):
        parse_file("vllm-bench", tmp_path / "missing.json")
    lake = str(tmp_path / "lake")
    first = import_file("guidellm", GUIDELLM, lake)
    with pytest.raises(ImportFailed, match=f"run {first.run_id} is already in"):
        import_file("guidellm", GUIDELLM, lake)
    assert store.run_ids(lake) == [first.run_id]


def test_stated_facts_fill_what_the_file_lacks_and_are_noted(tmp_path):
    lake = str(tmp_path / "lake")
    out = CliRunner().invoke(app, ["import", "vllm-bench", str(VLLM), "--lake", lake, "--accelerator", "cpu",
                                   "--server-kind", "vllm", "--quantization", "none", "--run-id", "before"])
    assert out.exit_code == 0, out.output
    [point] = store.read_table(lake, "points", ["before"]).to_pylist()
    assert (point["accelerator"], point["server_kind"], point["quantization"], point["accelerator_count"]) == (
        "cpu", "vllm", "none", None)
    notes = store.read_table(lake, "runs", ["before"])["notes"][0].as_py()
    assert "stated at import, not in the file: accelerator=cpu, server_kind=vllm, quantization=none" in notes


@pytest.mark.parametrize(("flags", "message"), [
    (["--accelerator", "nvidia-l5"], "error: --accelerator 'nvidia-l5': one of"),
    (["--server-kind", "vlm"], "error: --server-kind 'vlm': one of"),
    (["--quantization", "int3"], "error: --quantization 'int3': one of"),
    (["--accelerator-count", "0"], "error: --accelerator-count must be >= 1"),
])
def test_unknown_stated_names_are_refused(tmp_path, flags, message):
    lake = tmp_path / "lake"
    out = CliRunner().invoke(app, ["import", "vllm-bench", str(VLLM), "--lake", str(lake), *flags])
    assert out.exit_code == 2 and out.output.startswith(message) and len(out.output.splitlines()) == 1, out.output
    assert not lake.exists()


# --- files the tools themselves wrote (tests/fixtures/importers/real/README.md says how) ---------------------

REAL = FIXTURES / "real"
REAL_GUIDELLM = REAL / "guidellm-0.8.1" / "benchmarks.json"
REAL_INFERENCE_PERF = REAL / "inference-perf-0.7.0"


def test_a_real_guidellm_report_imports_to_its_own_numbers():
    data = _json(REAL_GUIDELLM)
    assert data["metadata"]["guidellm_version"] == "0.8.1"
    imported = parse_file("guidellm", REAL_GUIDELLM)
    assert imported.notes == ["guidellm 0.8.1"]  # every request listed: TPOT per request, nothing sampled
    assert [(p["batch_size"], p["concurrency"], p["load_kind"]) for p in imported.points] == [
        (1, 1, "closed"), (4, 4, "closed")]
    for point, bench in zip(imported.points, data["benchmarks"], strict=True):
        metrics, totals = bench["metrics"], bench["metrics"]["request_totals"]
        assert bench["config"]["strategy"]["streams"] == point["batch_size"]
        assert point["num_requests"] == totals["successful"] == 24 and point["num_errors"] == totals["errored"] == 0
        ttft = metrics["time_to_first_token_ms"]["successful"]
        assert point["ttft_p50_ms"] == ttft["percentiles"]["p50"] and point["ttft_mean_ms"] == ttft["mean"]
        e2e = metrics["request_latency"]["successful"]["percentiles"]
        assert point["e2e_p99_ms"] == pytest.approx(1000 * e2e["p99"])
        window = bench["scheduler_metrics"]["measure_end_time"] - bench["scheduler_metrics"]["measure_start_time"]
        assert point["duration_s"] == pytest.approx(window)
        assert point["output_token_throughput"] == pytest.approx(
            metrics["output_token_count"]["successful"]["total_sum"] / window)
        per_request = [r["inter_token_latency_ms"] for r in bench["requests"]["successful"]]
        assert point["tpot_p50_ms"] == pytest.approx(np.percentile(per_request, 50))
        assert (point["model_name"], point["api"], point["output_tokens"]) == ("mock-model", "chat", 16)
        # The mock server answered with 5 ms between tokens after a 20 ms first token (its settings).
        assert 4 < point["tpot_p50_ms"] < 8 and 15 < point["ttft_p50_ms"] < 60


def test_a_real_inference_perf_folder_imports_one_point_per_stage():
    imported = parse_file("inference-perf", REAL_INFERENCE_PERF)
    assert imported.model_name == "mock-model"
    assert [p["batch_size"] for p in imported.points] == [1, 4]
    for point, stage in zip(imported.points, (0, 1), strict=True):
        report = _json(REAL_INFERENCE_PERF / f"stage_{stage}_lifecycle_metrics.json")
        latency, load = report["successes"]["latency"], report["load_summary"]
        assert load["concurrency"] == point["batch_size"] and point["num_requests"] == load["count"] == 24
        assert point["ttft_p50_ms"] == pytest.approx(1000 * latency["time_to_first_token"]["median"])
        assert point["tpot_p99_ms"] == pytest.approx(1000 * latency["time_per_output_token"]["p99"])
        assert point["itl_p50_ms"] == pytest.approx(1000 * latency["inter_token_latency"]["median"])
        assert point["e2e_mean_ms"] == pytest.approx(1000 * latency["request_latency"]["mean"])
        assert point["output_token_throughput"] == report["successes"]["throughput"]["output_tokens_per_sec"]
        assert point["duration_s"] == report["benchmark_time_seconds"]
        assert point["output_tokens"] == 16


def test_the_real_files_hold_every_field_the_hand_built_fixtures_feed_the_importers():
    """The hand-built fixtures' fields the importers read exist, with the same shape, in the tools' own files."""
    real, hand = _json(REAL_GUIDELLM)["benchmarks"][0], _json(GUIDELLM)["benchmarks"][0]
    for path in (("config", "strategy", "type_"), ("config", "backend", "model"), ("scheduler_metrics",
                 "measure_start_time"), ("metrics", "request_totals", "incomplete"),
                 ("metrics", "inter_token_latency_ms", "successful", "percentiles", "p99"),
                 ("metrics", "prompt_token_count", "successful", "total_sum"),
                 ("metrics", "request_concurrency", "successful", "max")):
        assert type(_at(real, path)) is type(_at(hand, path)) or {type(_at(real, path)), type(_at(hand, path))} \
            <= {int, float}, path
    assert set(real["metrics"]["time_to_first_token_ms"]["successful"]["percentiles"]) == set(
        hand["metrics"]["time_to_first_token_ms"]["successful"]["percentiles"])
    real_stage = _json(REAL_INFERENCE_PERF / "stage_0_lifecycle_metrics.json")
    hand_stage = _json(INFERENCE_PERF / "stage_0_lifecycle_metrics.json")
    assert set(hand_stage["successes"]["latency"]) <= set(real_stage["successes"]["latency"])
    assert set(hand_stage["successes"]["latency"]["time_to_first_token"]) == set(
        real_stage["successes"]["latency"]["time_to_first_token"])


def _at(data, path):
    for key in path:
        data = data[key]
    return data
