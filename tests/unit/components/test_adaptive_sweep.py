"""The sweep step's adaptive strategy end to end against the zero-work server: which points it
measures, and the search it records in the manifest."""

import pytest

from components.sweep import run_sweep
from servesweep.platform.types import Endpoint
from servesweep.spec import BenchmarkSpec
from servesweep.sweep_plan import plan_deployments
from tests.support.zero_server import running_zero_server

TTFT_MS, ITL_MS, TOKENS = 5.0, 2.0, 8


@pytest.fixture(scope="module")
def zero_endpoint(tmp_path_factory):
    with running_zero_server(tmp_path_factory, TTFT_MS, ITL_MS) as server:
        yield Endpoint(deployment_id="cc", max_num_seqs=8, base_url=server.base_url,
                       metrics_url=server.base_url + "/metrics", served_name="zero")


def _spec(ttft_p99_ms: float) -> BenchmarkSpec:
    return BenchmarkSpec.model_validate({
        "run_id": "adaptive-test", "model": {"name": "zero"},
        "workloads": [{"input_tokens": 8, "output_tokens": TOKENS}],
        "sweep": {"batch_sizes": [8], "strategy": "adaptive", "requests_per_point": 8, "warmup_requests": 0},
        "slo": {"ttft_p99_ms": ttft_p99_ms},
    })


@pytest.mark.parametrize("ttft_p99_ms, best, measured", [
    (250.0, 8, ["cc-b1-i8-o8", "cc-b2-i8-o8", "cc-b4-i8-o8", "cc-b8-i8-o8"]),  # every batch meets it: doubling
    (1.0, None, ["cc-b1-i8-o8"]),  # below the server's own 5 ms TTFT: batch 1 fails, the search stops
])
def test_adaptive_search_measures_only_the_points_it_needs(zero_endpoint, tiny_model, tmp_path, ttft_p99_ms, best,
                                                           measured):
    spec = _spec(ttft_p99_ms)
    (deployment,) = plan_deployments(spec)
    manifest = run_sweep(spec, deployment, zero_endpoint, tiny_model.path, tmp_path)
    (search,) = manifest.searches
    assert search.result.best_batch == best
    assert search.result.points_used == len(measured) and search.result.grid_points == 8
    assert [w.point_id for w in manifest.windows] == measured == [p.point_id for p in manifest.deployment.points]
    assert all(w.failure_reason is None and w.client_timing == "kernel" for w in manifest.windows)


def test_adaptive_with_repeats_reruns_every_probed_batch_interleaved_and_judges_the_pool(zero_endpoint, tiny_model,
                                                                                          tmp_path):
    spec = _spec(250.0).model_copy(deep=True)
    spec = BenchmarkSpec.model_validate({**spec.model_dump(exclude={"sweep"}),
                                         "sweep": {**spec.sweep.model_dump(), "repeats": 2}})
    (deployment,) = plan_deployments(spec)
    manifest = run_sweep(spec, deployment, zero_endpoint, tiny_model.path, tmp_path)
    probed = ["cc-b1-i8-o8", "cc-b2-i8-o8", "cc-b4-i8-o8", "cc-b8-i8-o8"]
    # The search (repeat 0), then the probed batches again in the same order (repeat 1): never back to back.
    assert [(w.point_id, w.repeat) for w in manifest.windows] == [(p, 0) for p in probed] + [(p, 1) for p in probed]
    (search,) = manifest.searches
    assert search.result.repeats == 2 and search.result.best_batch == search.result.first_repeat_batch == 8
    assert [p.batch_size for p in search.result.pooled] == [1, 2, 4, 8]
    assert all(p.ttft_p99_ms is not None and not p.failed for p in search.result.pooled)


def test_a_stop_rule_with_repeats_ends_the_climb_in_every_repeat(zero_endpoint, tiny_model, tmp_path):
    # p99 TTFT >= the zero server's 5 ms against a 1 ms limit: the rule fires after batch 1, judged in repeat 0;
    # repeat 1 measures batch 1 again and nothing above it.
    spec = BenchmarkSpec.model_validate({
        "run_id": "stop-repeats", "model": {"name": "zero"},
        "workloads": [{"input_tokens": 8, "output_tokens": TOKENS}],
        "sweep": {"batch_sizes": [1, 2, 4], "requests_per_point": 4, "warmup_requests": 0, "repeats": 2,
                  "stop": {"slo_margin": 1.0}},
        "slo": {"ttft_p99_ms": 1.0},
    })
    (deployment,) = plan_deployments(spec)
    manifest = run_sweep(spec, deployment, zero_endpoint, tiny_model.path, tmp_path)
    assert [(w.point_id, w.repeat) for w in manifest.windows] == [("cc-b1-i8-o8", 0), ("cc-b1-i8-o8", 1)]
    assert manifest.windows[0].stop_reason and manifest.windows[1].stop_reason is None
    assert [p.point_id for p in manifest.deployment.points] == ["cc-b1-i8-o8"]
