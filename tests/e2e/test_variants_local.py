"""Two variants in one command, for real: the KFP pipeline on KFP's local runner per variant against vLLM's CPU
build, the baseline (bf16) and W4A16 made by llm-compressor (the quantize venv), each its own run in the lake
with the quantize step's result on its runs row, and the report's quantize answer over both. Nothing mocked."""

from __future__ import annotations

import pytest

from pipelines.variants import overall_code, run_variants
from servesweep.analysis.models import Question
from servesweep.analysis.report import build_report
from servesweep.lake.query import query
from servesweep.outcome import OK
from servesweep.spec import parse_spec

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def variant_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    spec = parse_spec({
        "name": "variants", "run_id": "v", "model": {"name": "adder", "preset": "tiny-trained"},
        "variants": ["w4a16", "none"], "server": {"max_model_len": 256, "cpu_kv_cache_gib": 1},
        "quantize": {"cache_uri": str(root / "cache"), "calibration_samples": 8, "max_seq_length": 32},
        "workloads": [{"input_tokens": 32, "output_tokens": 8}],
        "sweep": {"batch_sizes": [1, 2], "requests_per_point": 4, "warmup_requests": 1},
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


def test_the_report_answers_quantize_without_recommending_four_bits_unmeasured(variant_runs):
    spec, runs, _ = variant_runs
    report = build_report(spec.lake_uri, [run.run_id for run in runs])
    (answer,) = [r for r in report.recommendations if r.question == Question.QUANTIZE]
    assert "w4a16: " in answer.answer and "weights below eight bits and no accuracy result" in answer.answer
    assert not answer.answer.startswith("quantize to w4a16")
    sizes = {v.quantization: (v.weight_source, v.weight_bits) for v in report.quantize_variants}
    assert sizes == {"none": ("checkpoint", 16), "w4a16": ("checkpoint", 4)}
