"""Point ids are unique by construction: mode tag, batch, input and output tokens identify a point, and
the spec refuses what would repeat one (a mode, a batch size or a workload shape given twice)."""

from __future__ import annotations

import itertools

import pytest

import components.sweep as sweep
from servesweep.loadgen.adaptive import PointResult
from servesweep.spec import BenchmarkSpec, SpecError, parse_spec
from servesweep.sweep_plan import Deployment, plan_deployments

WORKLOADS = [{"input_tokens": 64, "output_tokens": 32}, {"input_tokens": 32, "output_tokens": 64},
             {"input_tokens": 128, "output_tokens": 8, "requests_per_point": 3}]


def _spec(modes: list[str], batches: list[int], workloads: list[dict], load: str = "closed") -> BenchmarkSpec:
    sweep_spec = {"modes": modes, "batch_sizes": batches, "load": load, "requests_per_point": 2}
    if load == "open":
        sweep_spec["request_rates"] = [float(b) for b in batches]
    return parse_spec({"sweep": sweep_spec, "workloads": workloads})


@pytest.mark.parametrize(("modes", "batches", "workloads", "load"), [
    (list(modes), batches, WORKLOADS[:n], load)
    for modes, batches, n, load in itertools.product(
        [["client_concurrency"], ["server_max_seqs"], ["client_concurrency", "server_max_seqs"],
         ["server_max_seqs", "client_concurrency"]],
        [[1], [1, 2, 4, 8], [3, 5, 64]], [1, 3], ["closed", "open"])
])
def test_every_planned_point_has_its_own_id(modes, batches, workloads, load):
    points = [p for d in plan_deployments(_spec(modes, batches, workloads, load)) for p in d.points]
    ids = [p.point_id for p in points]
    assert len(ids) == len(modes) * len(batches) * len(workloads) == len(set(ids))
    # The id is the identity, nothing more: (mode, batch, input, output) determines it and back.
    assert len({(p.sweep_mode, p.batch_size, p.input_tokens, p.output_tokens) for p in points}) == len(ids)


@pytest.mark.parametrize(("data", "field"), [
    ({"sweep": {"modes": ["server_max_seqs"] * 2, "requests_per_point": 2}}, "sweep.modes"),
    ({"sweep": {"batch_sizes": [4, 4], "requests_per_point": 2}}, "sweep.batch_sizes"),
    ({"workloads": [WORKLOADS[0], {**WORKLOADS[0], "requests_per_point": 9}]}, "workloads repeat"),
])
def test_what_would_repeat_a_point_id_is_refused(data, field):
    with pytest.raises(SpecError, match=field):
        parse_spec(data)


def test_adaptive_search_measures_each_batch_under_its_own_id(monkeypatch):
    """The adaptive path builds points as it goes; each measured batch (at most once) gets a distinct id."""
    spec = parse_spec({"sweep": {"strategy": "adaptive", "batch_sizes": [1, 100], "requests_per_point": 2},
                       "slo": {"ttft_p99_ms": 100}, "workloads": WORKLOADS[:2]})
    # Batches up to 37 meet the SLO: doubling then narrowing probes a dozen batches per workload.
    monkeypatch.setattr(sweep, "point_result", lambda batch, rows, failure=None, window=None: PointResult(
        batch_size=batch, ttft_p99_ms=50.0 if batch <= 37 else 500.0))
    run_ids = []
    deployment = Deployment(deployment_id="cc", sweep_mode="client_concurrency", max_num_seqs=100, points=[])
    def run(point):
        run_ids.append(point.point_id)
        return sweep.PointWindow(point_id=point.point_id), []

    measured, searches = sweep._adaptive(spec, deployment, run)
    assert [s.result.best_batch for s in searches] == [37, 37]
    assert len(run_ids) == len(set(run_ids)) == sum(s.result.points_used for s in searches) > 8
    assert [p.point_id for p in measured] == run_ids
