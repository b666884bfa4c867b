"""Load shapes on the real vLLM server: stages with a ramp and gamma arrivals, and a trace replay."""

from __future__ import annotations

import json

import pytest

from servesweep.lake.query import query
from servesweep.spec import parse_spec
from tests.integration.conftest import run_steps

pytestmark = pytest.mark.server


def test_stages_run_back_to_back_with_a_gamma_ramp(vllm_server, endpoint_token, tmp_path):
    spec = parse_spec({
        "run_id": "stages", "lake_uri": str(tmp_path / "lake"), "server": vllm_server.external(),
        "workloads": [{"input_tokens": 16, "output_tokens": 4}],
        "sweep": {"batch_sizes": [4], "arrival": "gamma", "burstiness": 0.5, "warmup_requests": 0, "stages": [
            {"concurrency": 2, "duration_s": 2.0}, {"rate": 3.0, "ramp_to_rate": 12.0, "duration_s": 3.0}]},
    })
    lake = run_steps(spec, tmp_path)
    points = query(lake, "select point_id, status, stage, load_kind, arrival, burstiness, request_rate, "
                         "ramp_to_rate, num_requests, started_at from points order by stage").to_pylist()
    assert [(p["point_id"], p["status"], p["load_kind"]) for p in points] == [
        ("cc-s0-i16-o4", "ok", "closed"), ("cc-s1-i16-o4", "ok", "open")]
    ramp = points[1]
    assert (ramp["arrival"], ramp["burstiness"], ramp["request_rate"], ramp["ramp_to_rate"]) == ("gamma", 0.5, 3, 12)
    assert 10 <= ramp["num_requests"] <= 40  # about (3 + 12) / 2 x 3 s arrivals
    assert points[0]["started_at"] < ramp["started_at"]
    sends = [r["t"] for r in query(lake, "select scheduled_at_s as t from requests where point_id = 'cc-s1-i16-o4' "
                                         "order by t").to_pylist()]
    half = sends[0] + 1.5
    assert sum(t >= half for t in sends) > sum(t < half for t in sends)  # the rate rose


def test_a_trace_is_replayed_with_its_lengths(vllm_server, endpoint_token, tmp_path):
    trace = tmp_path / "arrivals.jsonl"
    arrivals = [(0.0, 12, 3), (0.1, 20, 5), (0.15, 16, 2), (0.6, 24, 4), (0.65, 12, 6), (1.0, 30, 3)]
    trace.write_text("".join(json.dumps({"timestamp": 1000 + t, "input_tokens": i, "output_tokens": o}) + "\n"
                             for t, i, o in arrivals))
    spec = parse_spec({
        "run_id": "trace", "lake_uri": str(tmp_path / "lake"), "server": vllm_server.external(),
        "workloads": [{"input_tokens": 64, "output_tokens": 8}],
        "sweep": {"batch_sizes": [4], "warmup_requests": 0, "trace": {"path": str(trace)}},
    })
    lake = run_steps(spec, tmp_path)
    [point] = query(lake, "select point_id, status, trace, load_kind from points").to_pylist()
    assert point == {"point_id": "cc-trace-i64-o8", "status": "ok", "trace": True, "load_kind": "open"}
    rows = query(lake, "select scheduled_at_s as t, input_tokens as i, output_tokens as o from requests "
                       "order by request_index").to_pylist()
    assert [(r["i"], r["o"]) for r in rows] == [(i, o) for _, i, o in arrivals]
    start = rows[0]["t"]  # the point's go time: offsets count from it
    assert [r["t"] - start for r in rows] == pytest.approx([t for t, _, _ in arrivals], abs=1e-6)
