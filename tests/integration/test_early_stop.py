"""Early stop on the real vLLM server: the climb ends before the top batch size, the reason recorded."""

from __future__ import annotations

import pytest

from servesweep.lake.query import query
from servesweep.spec import parse_spec
from tests.integration.conftest import run_steps

pytestmark = pytest.mark.server


def test_a_throughput_plateau_stops_the_climb_before_the_top_level(vllm_server, endpoint_token, tmp_path):
    # No batch on 2 shared cores gives 5x the throughput of the one before it: the climb stops at batch 2.
    spec = parse_spec({
        "run_id": "stop", "lake_uri": str(tmp_path / "lake"), "server": vllm_server.external(),
        "workloads": [{"input_tokens": 16, "output_tokens": 8}],
        "sweep": {"batch_sizes": [1, 2, 4, 8], "requests_per_point": 4, "warmup_requests": 0,
                  "stop": {"min_throughput_gain": 4.0}},
    })
    lake = run_steps(spec, tmp_path)
    points = query(lake, "select batch_size, status, stop_reason from points order by batch_size").to_pylist()
    assert [p["batch_size"] for p in points] == [1, 2]  # 4 and 8 never ran
    assert all(p["status"] == "ok" for p in points) and points[0]["stop_reason"] is None
    assert points[1]["stop_reason"].startswith("throughput plateau: batch 2 gave")


def test_a_budget_stops_the_adaptive_search(vllm_server, endpoint_token, tmp_path):
    spec = parse_spec({
        "run_id": "budget", "lake_uri": str(tmp_path / "lake"), "server": vllm_server.external(),
        "workloads": [{"input_tokens": 16, "output_tokens": 8}], "slo": {"ttft_p99_ms": 60000},
        "sweep": {"batch_sizes": [8], "strategy": "adaptive", "requests_per_point": 4, "warmup_requests": 0,
                  "stop": {"max_gpu_hours": 0.0001}},  # 0.36 s: the first point's wall time passes it
    })
    lake = run_steps(spec, tmp_path)
    points = query(lake, "select batch_size, stop_reason from points order by batch_size").to_pylist()
    assert [p["batch_size"] for p in points] == [1]  # the search would have gone on to 2, 4, 8
    assert points[0]["stop_reason"].startswith("budget: ")
