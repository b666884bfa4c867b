"""Resume on the real vLLM server through the CLI and the local runner: a rerun measures exactly the points the
lake lacks for its configuration, carries the others over, and --force measures everything again."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from servesweep.cli import app
from servesweep.lake.query import query

pytestmark = pytest.mark.server


def _run(vllm_server, tmp_path, run_id: str, batch_sizes: list[int], *flags: str, **sweep) -> str:
    spec = tmp_path / f"{run_id}.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "resume", "run_id": run_id, "lake_uri": str(tmp_path / "lake"), "server": vllm_server.external(),
        "workloads": [{"input_tokens": 16, "output_tokens": 4}],
        "sweep": {"batch_sizes": batch_sizes, "requests_per_point": 3, "warmup_requests": 0, **sweep},
        **({"slo": {"ttft_p99_ms": 600000.0}} if sweep.get("strategy") == "adaptive" else {}),
    }))
    result = CliRunner().invoke(app, ["run", str(spec), "--pipeline-root", str(tmp_path / "kfp"), *flags])
    assert result.exit_code == 0, result.output
    return result.output


def _points(tmp_path, run_id: str) -> dict[str, dict]:
    rows = query(str(tmp_path / "lake"), f"select point_id, status, config_hash, reused_from_run from points "
                                         f"where run_id = '{run_id}' and source = 'measured'").to_pylist()
    return {r["point_id"]: r for r in rows}


def _sends(tmp_path, run_id: str) -> dict[str, list[float]]:
    rows = query(str(tmp_path / "lake"), f"select point_id, sent_at_unix from requests where run_id = '{run_id}' "
                                         "order by point_id, request_index").to_pylist()
    sends: dict[str, list[float]] = {}
    for row in rows:
        sends.setdefault(row["point_id"], []).append(row["sent_at_unix"])
    return sends


def test_a_resumed_sweep_runs_exactly_the_missing_points(vllm_server, endpoint_token, tmp_path):
    # A sweep cut short: it measured batch 1 and 3 of 1, 2, 3 (here: a spec that had only those).
    _run(vllm_server, tmp_path, "r1", [1, 3])
    first, first_sends = _points(tmp_path, "r1"), _sends(tmp_path, "r1")
    assert set(first) == {"cc-b1-i16-o4", "cc-b3-i16-o4"} and all(p["config_hash"] for p in first.values())

    output = _run(vllm_server, tmp_path, "r1", [1, 2, 3])  # the same run, the whole grid
    assert "2 of 3 points measured already" in output
    resumed, sends = _points(tmp_path, "r1"), _sends(tmp_path, "r1")
    assert set(resumed) == {"cc-b1-i16-o4", "cc-b2-i16-o4", "cc-b3-i16-o4"}
    assert all(resumed[p]["status"] == "ok" for p in resumed)
    for point_id in first:  # carried over, not measured again: the very same requests
        assert resumed[point_id]["config_hash"] == first[point_id]["config_hash"]
        assert resumed[point_id]["reused_from_run"] == "r1" and sends[point_id] == first_sends[point_id]
    assert resumed["cc-b2-i16-o4"]["reused_from_run"] is None  # the one missing point, measured now
    assert min(sends["cc-b2-i16-o4"]) > max(max(v) for v in first_sends.values())

    # Another run id with the same configuration: nothing is missing, all three come from r1.
    _run(vllm_server, tmp_path, "r2", [1, 2, 3])
    assert {p["reused_from_run"] for p in _points(tmp_path, "r2").values()} == {"r1"}

    _run(vllm_server, tmp_path, "r1", [1, 2, 3], "--force")  # everything measured again
    forced, forced_sends = _points(tmp_path, "r1"), _sends(tmp_path, "r1")
    assert {p["reused_from_run"] for p in forced.values()} == {None}
    assert all(min(forced_sends[p]) > max(sends[p]) for p in forced)
    assert {p: forced[p]["config_hash"] for p in forced} == {p: resumed[p]["config_hash"] for p in resumed}


def test_an_adaptive_search_reuses_the_probes_the_lake_has(vllm_server, endpoint_token, tmp_path):
    # Every batch meets a 10-minute TTFT: the search doubles 1, 2 (up to 2), then 1, 2, 4 (up to 4).
    _run(vllm_server, tmp_path, "a1", [2], strategy="adaptive")
    assert set(_points(tmp_path, "a1")) == {"cc-b1-i16-o4", "cc-b2-i16-o4"}
    output = _run(vllm_server, tmp_path, "a2", [4], strategy="adaptive")
    assert "2 of the search's 3 probes measured already" in output
    second = _points(tmp_path, "a2")
    assert {p: second[p]["reused_from_run"] for p in second} == {
        "cc-b1-i16-o4": "a1", "cc-b2-i16-o4": "a1", "cc-b4-i16-o4": None}
    assert not _sends(tmp_path, "a2").keys() - {"cc-b1-i16-o4", "cc-b2-i16-o4", "cc-b4-i16-o4"}
