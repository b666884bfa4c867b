"""On GKE the quantize step's pod asks for one GPU of the run's accelerator (llm-compressor calibrates there), in
both pipelines; not on CPU runs, not with queued provisioning, not when the spec says no."""

from __future__ import annotations

import yaml

from pipelines.argo_workflow import build_workflow
from pipelines.compile import compile_kfp
from servesweep.k8s.accelerators import quantize_gpu
from servesweep.spec import BenchmarkSpec, load_spec
from tests.support.paths import REPO

GKE_SPEC = REPO / "specs" / "gke.yaml"


def _spec(**gke: object) -> BenchmarkSpec:
    spec = load_spec(GKE_SPEC)
    return spec.model_copy(update={"gke": spec.gke.model_copy(update=gke)})


def test_the_quantize_pod_asks_for_the_run_s_gpu_only_where_it_can_get_one():
    spec = load_spec(GKE_SPEC)
    gpu = quantize_gpu(spec.accelerator.type, spec.gke)
    assert gpu is not None and gpu.accelerator == spec.accelerator.type
    assert quantize_gpu(spec.accelerator.type, _spec(quantize_on_gpu=False).gke) is None
    queued = _spec(capacity=spec.gke.capacity.model_copy(update={"kinds": ["flex_start"],
                                                                  "queued": {"timeout_s": 600}}))
    assert quantize_gpu(spec.accelerator.type, queued.gke) is None
    assert quantize_gpu("cpu", spec.gke) is None
    assert quantize_gpu(spec.accelerator.type, None) is None  # local: no GKE section


def test_kfp_quantize_executor_requests_a_gpu_on_a_gpu_node(tmp_path):
    spec = load_spec(GKE_SPEC)
    documents = list(yaml.safe_load_all(compile_kfp(tmp_path / "kfp.yaml", spec).read_text()))
    executor = documents[0]["deploymentSpec"]["executors"]["exec-quantize"]
    assert executor["container"]["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert executor["container"]["resources"]["accelerator"]["resourceCount"] == "1"
    platform = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-quantize"]
    assert platform["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": spec.accelerator.type}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in platform["tolerations"]
    others = documents[0]["deploymentSpec"]["executors"]
    assert all("resources" not in e["container"] for name, e in others.items() if name != "exec-quantize")


def test_argo_quantize_template_requests_a_gpu_on_a_gpu_node():
    spec = load_spec(GKE_SPEC)
    workflow = yaml.safe_load(build_workflow(spec).to_yaml())
    template = next(t for t in workflow["spec"]["templates"] if t["name"] == "quantize")
    assert template["container"]["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert template["nodeSelector"] == {"cloud.google.com/gke-accelerator": spec.accelerator.type}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in template["tolerations"]
    cpu = yaml.safe_load(build_workflow(_spec(quantize_on_gpu=False)).to_yaml())
    assert "resources" not in next(t for t in cpu["spec"]["templates"] if t["name"] == "quantize")["container"]
