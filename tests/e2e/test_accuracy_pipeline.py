"""The KFP pipeline on KFP's local runner with the trained model: the accuracy step's rows reach the lake.

Real vLLM CPU server, real lm-eval; the trained model comes from the load-model step's cache (trained on first
use, about a minute).
"""

from __future__ import annotations

import pytest

from pipelines.local import run_locally
from servesweep.lake.store import read_table
from servesweep.spec import BenchmarkSpec

pytestmark = pytest.mark.server


def test_a_trained_run_writes_its_accuracy_with_the_sweep(tmp_path):
    spec = BenchmarkSpec.model_validate({
        "name": "acc-e2e", "run_id": "acc-e2e", "lake_uri": str(tmp_path / "lake"),
        "model": {"name": "adder", "preset": "tiny-trained", "weights": "trained"},
        "server": {"kind": "vllm", "max_model_len": 256},
        "workloads": [{"input_tokens": 16, "output_tokens": 8}],
        "sweep": {"batch_sizes": [1, 2], "modes": ["client_concurrency"], "requests_per_point": 4,
                  "warmup_requests": 1},
        "accuracy": {"items": 64},
    })
    lake = run_locally(spec, tmp_path / "kfp")
    rows = {r["metric"]: r for r in read_table(lake, "accuracy").to_pylist()}
    assert set(rows) == {"perplexity", "exact_match"}
    for row in rows.values():
        assert row["run_id"] == "acc-e2e" and row["model"] == "adder" and row["quantization"] == "none"
        assert row["items"] == 64 and row["baseline_run_id"] is None and row["passed"] is None
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
    assert rows["exact_match"]["tool"] == "lm-eval" and rows["exact_match"]["value"] > 0.9
    assert rows["perplexity"]["tool"] == "servesweep" and rows["perplexity"]["tokens"] == 64 * 3
    points = read_table(lake, "points")
    assert len(points) and set(points["run_id"].to_pylist()) == {"acc-e2e"}  # the sweep's rows beside them
