"""Step helpers that need no server: request counts per point, local provisioning."""

import pytest

from components.provision import ProvisionError, provision_local
from components.sweep import plan_deployments, requests_for
from servesweep.spec import BenchmarkSpec, SweepSpec


def _spec(**sweep) -> BenchmarkSpec:
    return BenchmarkSpec(sweep=SweepSpec(batch_sizes=[1, 8, 64], **sweep))


def test_requests_per_point_and_rounds_take_the_larger():
    spec = _spec(requests_per_point=16, rounds_per_point=2)
    counts = {p.batch_size: requests_for(spec, p) for p in plan_deployments(spec)[0].points}
    assert counts == {1: 16, 8: 16, 64: 128}  # max(16, 2 x batch)


def test_duration_bound_points_have_no_request_count():
    spec = _spec(duration_s=5)
    assert {requests_for(spec, p) for p in plan_deployments(spec)[0].points} == {None}


def test_server_cap_mode_redeploys_per_batch_size():
    spec = _spec(requests_per_point=4, modes=["client_concurrency", "server_max_seqs"])
    deployments = {d.deployment_id: (d.max_num_seqs, [p.batch_size for p in d.points])
                   for d in plan_deployments(spec)}
    assert deployments == {"cc": (64, [1, 8, 64]), "sm-b1": (1, [1]), "sm-b8": (8, [8]), "sm-b64": (64, [64])}


def test_local_provisioning_needs_the_gpus_it_names():
    assert provision_local(BenchmarkSpec()).platform == "local"
    gpu = BenchmarkSpec(accelerator={"type": "nvidia-h100-80gb", "count": 1})
    with pytest.raises(ProvisionError, match="nvidia-h100-80gb x1 is not on this host"):
        provision_local(gpu)
