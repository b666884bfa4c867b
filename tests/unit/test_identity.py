"""The configuration hash: what a point measured, without the run that measured it."""

from __future__ import annotations

from servesweep.identity import config_hash, measured_identity, measured_in_lake
from servesweep.spec import parse_spec
from servesweep.sweep_plan import plan_deployments


def _hashes(version: str | None = "0.32.0", **fields) -> dict[str, str]:
    base = {"workloads": [{"input_tokens": 16, "output_tokens": 8}],
            "sweep": {"batch_sizes": [1, 2], "requests_per_point": 4}}
    spec = parse_spec(base | fields)
    return {p.point_id: config_hash(spec, p, version) for d in plan_deployments(spec) for p in d.points}


def test_the_run_id_name_lake_and_slo_are_not_part_of_it():
    assert _hashes() == _hashes(run_id="other", name="x", lake_uri="/tmp/l", slo={"ttft_p99_ms": 5})


def test_extending_the_grid_keeps_the_hashes_of_the_points_it_had():
    wider = _hashes(sweep={"batch_sizes": [1, 2, 8], "requests_per_point": 4})
    assert {k: wider[k] for k in _hashes()} == _hashes() and len(set(wider.values())) == 3


def test_what_is_measured_changes_it():
    base = _hashes()
    assert _hashes(version="0.33.0") != base  # the server's version
    assert _hashes(quantization="fp8") != base
    assert _hashes(accelerator={"type": "cpu", "count": 2}) != base
    assert _hashes(workloads=[{"input_tokens": 16, "output_tokens": 8, "temperature": 0.7}]) != base
    assert _hashes(workloads=[{"input_tokens": 16, "output_tokens": 8, "api": "chat"}]) != base
    assert _hashes(sweep={"batch_sizes": [1, 2], "requests_per_point": 5}) != base
    # A workload's name is a label: the same workload under a name measures the same thing.
    named = _hashes(workloads=[{"name": "short", "input_tokens": 16, "output_tokens": 8}])
    assert sorted(named.values()) == sorted(base.values())


def test_the_identity_is_plain_json_data():
    spec = parse_spec({"sweep": {"requests_per_point": 2}})
    point = plan_deployments(spec)[0].points[0]
    identity = measured_identity(spec, point, None, 2)
    assert identity["point"]["batch_size"] == 1 and identity["measurement"]["requests"] == 2
    assert "run_id" not in str(identity)


def test_an_absent_lake_has_nothing_measured(tmp_path):
    assert measured_in_lake(str(tmp_path / "none"), {"p": "h"}, "r") == {}
