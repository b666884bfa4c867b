"""The quantize step's result reaches the runs row: sweep (against the zero-work server) -> collect-metrics with
the QuantizeResult the pipelines read from the quantize step's checkpoint (servesweep-quantize.json)."""

from __future__ import annotations

import pytest

from components.collect_metrics import collect_metrics
from components.quantize import read_quantize_result
from components.sweep import run_sweep
from servesweep.lake.schema import V7_ADDED
from servesweep.platform.types import Endpoint
from servesweep.quantize import RESULT_FILE, QuantizeResult
from servesweep.spec import BenchmarkSpec
from servesweep.sweep_plan import plan_deployments
from tests.support.zero_server import running_zero_server


@pytest.fixture(scope="module")
def zero_endpoint(tmp_path_factory):
    with running_zero_server(tmp_path_factory, 2.0, 1.0) as server:
        yield Endpoint(deployment_id="cc", max_num_seqs=2, base_url=server.base_url, served_name="zero")


def _runs_row(tmp_path, tiny_model, endpoint, method: str, quantized: QuantizeResult | None) -> dict:
    spec = BenchmarkSpec.model_validate({
        "run_id": f"q-{method}", "model": {"name": "zero"}, "quantization": method,
        "workloads": [{"input_tokens": 8, "output_tokens": 4}],
        "sweep": {"batch_sizes": [1], "requests_per_point": 2, "warmup_requests": 0}})
    (deployment,) = plan_deployments(spec)
    run_sweep(spec, deployment, endpoint, tiny_model.path, tmp_path / "raw")
    (row,) = collect_metrics(spec, tiny_model, [str(tmp_path / "raw")], quantized)["runs"].to_pylist()
    return row


def test_the_runs_row_carries_the_quantize_result(tmp_path, tiny_model, zero_endpoint):
    made = QuantizeResult(method="w4a16", path=str(tmp_path), how="llmcompressor", tool="llmcompressor",
                          tool_version="0.14.0.1", cache_key="abc", cached=True, weight_bytes=312312,
                          quantize_seconds=5.04)
    (tmp_path / RESULT_FILE).write_text(made.model_dump_json())
    row = _runs_row(tmp_path, tiny_model, zero_endpoint, "w4a16", read_quantize_result(tmp_path))
    assert {name: row[name] for name in V7_ADDED["runs"]} == {
        "quantization": "w4a16", "quantize_how": "llmcompressor", "quantize_tool": "llmcompressor",
        "quantize_tool_version": "0.14.0.1", "quantize_cache_key": "abc", "quantize_cached": True,
        "quantize_seconds": 5.04, "weight_bytes": 312312}


def test_without_a_quantize_result_only_the_variant_is_known(tmp_path, tiny_model, zero_endpoint):
    row = _runs_row(tmp_path, tiny_model, zero_endpoint, "fp8", None)
    assert row["quantization"] == "fp8"
    assert all(row[name] is None for name in V7_ADDED["runs"] if name != "quantization")
