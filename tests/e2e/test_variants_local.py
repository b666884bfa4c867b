"""Two variants in one command, for real: the KFP pipeline on KFP's local runner per variant against vLLM's CPU
build, the baseline (bf16) and W4A16 made by llm-compressor (the quantize venv) from the trained adder, each its
own run in the lake with the quantize step's result on its runs row and its accuracy (perplexity from the
server's prompt log-probabilities, exact match through lm-eval) compared with the baseline, and the report's
quantize answer over both. Nothing mocked. The trained model comes from the load-model step's cache (trained on
first use, about a minute)."""

from __future__ import annotations

import pytest

from pipelines.variants import overall_code, run_variants
from servesweep.analysis.models import Question
from servesweep.analysis.report import build_report
from servesweep.lake.query import query
from servesweep.lake.store import read_table
from servesweep.outcome import OK
from servesweep.spec import parse_spec

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def variant_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    spec = parse_spec({
        "name": "variants", "run_id": "v",
        "model": {"name": "adder", "preset": "tiny-trained", "weights": "trained"}, "accuracy": {"items": 64},
        "variants": ["w4a16", "none"], "server": {"max_model_len": 256, "cpu_kv_cache_gib": 1},
        "quantize": {"cache_uri": str(root / "cache"), "calibration_samples": 8, "max_seq_length": 32},
        "workloads": [{"input_tokens": 32, "output_tokens": 8}],
        "sweep": {"batch_sizes": [2], "requests_per_point": 4, "warmup_requests": 1},
        "lake_uri": str(root / "lake")})
    lines: list[str] = []
    return spec, run_variants(spec, root / "kfp", lines.append), lines


def test_each_variant_is_a_measured_run_of_its_own(variant_runs):
    spec, runs, lines = variant_runs
    assert [(run.variant, run.run_id) for run in runs] == [("none", "v-none"), ("w4a16", "v-w4a16")]
    assert overall_code(runs) == OK, [run.message for run in runs]
    assert lines[0] == "variant none: run v-none"


def test_the_runs_rows_hold_the_quantize_step_s_result(variant_runs):
    spec, _, _ = variant_runs
    rows = {row["run_id"]: row for row in query(spec.lake_uri, "SELECT * FROM runs").to_pylist()}
    baseline, w4a16 = rows["v-none"], rows["v-w4a16"]
    assert (baseline["quantization"], baseline["quantize_how"], baseline["quantize_tool"]) == ("none", "as-is", None)
    assert (w4a16["quantization"], w4a16["quantize_how"], w4a16["quantize_tool"]) == (
        "w4a16", "llmcompressor", "llmcompressor")
    assert w4a16["quantize_tool_version"] and len(w4a16["quantize_cache_key"]) == 24
    assert w4a16["quantize_cached"] is False and w4a16["quantize_seconds"] > 0
    assert 0 < w4a16["weight_bytes"] < baseline["weight_bytes"]


def test_each_variant_s_accuracy_is_scored_on_its_server_against_the_baseline(variant_runs):
    spec, _, _ = variant_runs
    rows = {(r["run_id"], r["metric"]): r for r in read_table(spec.lake_uri, "accuracy").to_pylist()}
    assert set(rows) == {(run, metric) for run in ("v-none", "v-w4a16") for metric in ("perplexity", "exact_match")}
    for metric in ("perplexity", "exact_match"):
        baseline, variant = rows[("v-none", metric)], rows[("v-w4a16", metric)]
        assert baseline["quantization"] == "none" and baseline["baseline_run_id"] is None
        assert baseline["items"] == variant["items"] == 64 and baseline["ci_low"] <= baseline["value"]
        assert variant["quantization"] == "w4a16" and variant["baseline_run_id"] == "v-none"
        assert variant["delta"] == pytest.approx(variant["value"] - baseline["value"])
        assert variant["delta_low"] <= variant["delta"] <= variant["delta_high"] and variant["passed"] is not None
    assert rows[("v-none", "exact_match")]["tool"] == "lm-eval" and rows[("v-none", "exact_match")]["value"] > 0.9
    assert rows[("v-none", "perplexity")]["tool"] == "servesweep"
    assert rows[("v-none", "perplexity")]["tokens"] == 64 * 3  # the answers' tokens: 2 digits -> 3-digit sums


def test_the_report_answers_quantize_with_the_measured_accuracy(variant_runs):
    spec, runs, _ = variant_runs
    report = build_report(spec.lake_uri, [run.run_id for run in runs])
    (answer,) = [r for r in report.recommendations if r.question == Question.QUANTIZE]
    assert "w4a16" in answer.answer and "No accuracy data" not in answer.answer
    sizes = {v.quantization: (v.weight_source, v.weight_bits) for v in report.quantize_variants}
    assert sizes == {"none": ("checkpoint", 16), "w4a16": ("checkpoint", 4)}
    (w4a16,) = [v for v in report.quantize_variants if v.quantization == "w4a16"]
    assert {a.metric for a in w4a16.accuracy} == {"perplexity", "exact_match"}
