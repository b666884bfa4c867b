"""Step helpers that need no server: request counts per point, local provisioning."""

import pytest

from servesweep.platform.local import provision_local
from servesweep.platform.types import ProvisionError
from servesweep.spec import BenchmarkSpec, SweepSpec
from servesweep.sweep_plan import plan_deployments, requests_for


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


def test_a_workload_can_set_its_own_request_count():
    spec = BenchmarkSpec(
        workloads=[{"input_tokens": 16, "output_tokens": 16}, {"input_tokens": 16, "output_tokens": 512,
                                                               "requests_per_point": 1}],
        server={"max_model_len": 1024},
        sweep=SweepSpec(batch_sizes=[1, 8], requests_per_point=4, rounds_per_point=1),
    )
    counts = {(p.output_tokens, p.batch_size): requests_for(spec, p) for p in plan_deployments(spec)[0].points}
    assert counts == {(16, 1): 4, (16, 8): 8, (512, 1): 1, (512, 8): 8}


def test_dummy_weights_on_a_gpu_reach_vllm_and_the_chosen_gpus():
    from servesweep.platform.local import server_env, vllm_command

    spec = BenchmarkSpec(model={"weights": "dummy"}, quantization="fp8", sweep=SweepSpec(requests_per_point=1),
                         accelerator={"type": "nvidia-h200-141gb", "count": 2, "device_ids": [3, 1]},
                         server={"env": {"VLLM_USE_FLASHINFER_SAMPLER": "0"}})
    command = vllm_command(spec, "/m", 8000, 64)
    flags = dict(zip(command, command[1:], strict=False))
    assert flags["--load-format"] == "dummy" and flags["--quantization"] == "fp8"
    assert flags["--tensor-parallel-size"] == "2" and flags["--max-num-seqs"] == "64"
    assert "--enforce-eager" not in command  # CUDA graphs stay on for GPUs
    env = server_env(spec)
    assert env["CUDA_VISIBLE_DEVICES"] == "3,1" and env["VLLM_USE_FLASHINFER_SAMPLER"] == "0"
    assert "--load-format" not in vllm_command(BenchmarkSpec(), "/m", 8000, 4)


def test_dummy_weights_write_config_and_tokenizer_only(tmp_path):
    from servesweep.platform.checkpoint import load_model
    from servesweep.spec import ModelSpec

    info = load_model(ModelSpec(preset="llama3-8b", weights="dummy"), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
    assert info.parameters == 8_030_261_248  # Llama 3 8B, counted on the meta device
    assert info.bytes_on_disk < 20_000_000


def test_local_gpu_provisioning_checks_the_chosen_device_ids(monkeypatch):
    import servesweep.platform.local as provision

    monkeypatch.setattr(provision, "local_gpus", lambda: ["NVIDIA H200", "NVIDIA H200"])
    spec = BenchmarkSpec(accelerator={"type": "nvidia-h200-141gb", "device_ids": [1]},
                         sweep=SweepSpec(requests_per_point=1))
    assert provision.provision_local(spec).gpus == ["NVIDIA H200"]
    bad = spec.model_copy(update={"accelerator": spec.accelerator.model_copy(update={"device_ids": [2]})})
    with pytest.raises(ProvisionError, match="device_ids"):
        provision.provision_local(bad)
