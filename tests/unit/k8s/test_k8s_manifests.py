"""Rendered manifests validate against the Kubernetes schema and hang together."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from servesweep.gke_spec import GKESpec
from servesweep.k8s.manifests import (
    DEPLOYMENT_ID_LABEL,
    MANAGED_BY_LABEL,
    RUN_ID_LABEL,
    build_server_bundle,
    label_value,
    resource_name,
)
from servesweep.k8s.servers import ServerOptions
from servesweep.k8s.validate import ManifestError, validate_manifest

KINDS = ["vllm", "tgi", "triton-trtllm", "jetstream", "sglang", "transformers"]
QUANTIZATIONS = ["none", "fp8", "int8", "awq", "gptq"]
TP_SIZES = [1, 2, 8]
SUPPORTED = {
    "vllm": set(QUANTIZATIONS), "tgi": set(QUANTIZATIONS), "sglang": set(QUANTIZATIONS),
    "triton-trtllm": {"none", "fp8", "awq"}, "jetstream": {"none", "int8"}, "transformers": {"none", "int8"},
}
ACCELERATOR = {"jetstream": "tpu-v5-lite-podslice"}  # everything else on H100s
NODE_SELECTOR = {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def gke(**overrides) -> GKESpec:
    fields = {
        "project": "bench-project", "location": "us-central1", "cluster": "bench",
        "model": {"source": "huggingface", "repo_id": "meta-llama/Llama-3.1-8B-Instruct"},
        "images": {"transformers": "registry.example/servesweep/transformers-serve:5.19.0"},
        **overrides,
    }
    return GKESpec.model_validate(fields)


def bundle(kind: str = "vllm", *, spec: GKESpec | None = None, tp: int = 1, quantization: str = "none",
           run_id: str = "h100-sweep-20261102T101500Z", deployment_id: str = "llama3-8b-vllm-b64", **kwargs):
    max_batch = None if kind == "transformers" else 64
    return build_server_bundle(
        gke=spec or gke(), run_id=run_id, deployment_id=deployment_id, kind=kind,
        options=ServerOptions(quantization=quantization, tensor_parallel=tp, max_batch=max_batch),
        served_name="llama3-8b", accelerator=kwargs.pop("accelerator", ACCELERATOR.get(kind, "nvidia-h100-80gb")),
        node_selector=kwargs.pop("node_selector", NODE_SELECTOR), **kwargs,
    )


def _refusal(kind: str, quantization: str, tp: int) -> str | None:
    if quantization not in SUPPORTED[kind]:
        return quantization
    if kind == "transformers" and tp > 1:
        return "tensor parallelism"
    if kind == "jetstream" and tp == 2:
        return "fits no single machine"  # no single-host TPU slice has two chips
    return None


@pytest.mark.parametrize(("kind", "quantization", "tp"), list(itertools.product(KINDS, QUANTIZATIONS, TP_SIZES)))
def test_every_manifest_validates(kind: str, quantization: str, tp: int):
    refusal = _refusal(kind, quantization, tp)
    if refusal:
        with pytest.raises(ValueError, match=refusal):
            bundle(kind, tp=tp, quantization=quantization)
        return
    built = bundle(kind, tp=tp, quantization=quantization)
    manifests = built.manifests()
    for manifest in manifests:
        validate_manifest(manifest)
    deployment, service = manifests[0], manifests[1]
    _check_deployment(deployment, built, tp)
    _check_service(service, deployment, built)
    if built.rendered.metrics_port is None:
        assert len(manifests) == 2
    else:
        _check_pod_monitoring(manifests[2], deployment, built)


def _check_deployment(deployment: dict, built, tp: int) -> None:
    template = deployment["spec"]["template"]
    pod = template["spec"]
    match = deployment["spec"]["selector"]["matchLabels"]
    assert match.items() <= template["metadata"]["labels"].items()
    assert match[MANAGED_BY_LABEL] == "servesweep"
    assert {RUN_ID_LABEL, DEPLOYMENT_ID_LABEL} <= match.keys()
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert pod["nodeSelector"] == NODE_SELECTOR
    main = pod["containers"][0]
    for container in pod["containers"]:
        assert container["name"] and container["image"] and container["ports"]
    resource = "google.com/tpu" if built.rendered.accelerator_kind == "tpu" else "nvidia.com/gpu"
    assert main["resources"]["limits"] == {resource: str(tp)}
    assert {"key": resource, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    pod_ports = {p["containerPort"] for c in pod["containers"] for p in c["ports"]}
    assert main["readinessProbe"]["httpGet"]["port"] in pod_ports
    assert {"name": "dshm", "mountPath": "/dev/shm"} in main["volumeMounts"]


def _check_service(service: dict, deployment: dict, built) -> None:
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= template_labels.items()
    pod_ports = {p["containerPort"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= pod_ports
    assert service["spec"]["ports"][0]["port"] == built.rendered.port
    assert built.base_url == f"http://{built.name}.servesweep.svc.cluster.local:{built.rendered.port}"


def _check_pod_monitoring(monitoring: dict, deployment: dict, built) -> None:
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitoring["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
    endpoint = monitoring["spec"]["endpoints"][0]
    pod_ports = {p["containerPort"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert endpoint["port"] in pod_ports
    assert endpoint["path"] == built.rendered.metrics_path
    assert endpoint["interval"] == "5s"
    assert monitoring["metadata"]["labels"][RUN_ID_LABEL] == deployment["metadata"]["labels"][RUN_ID_LABEL]


def _env(manifest: dict) -> list[dict]:
    return manifest["spec"]["template"]["spec"]["containers"][0].get("env", [])


def test_hf_token_comes_from_the_secret_by_reference():
    manifests = bundle("vllm").manifests()
    token = [e for e in _env(manifests[0]) if e["name"] == "HF_TOKEN"]
    assert token == [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}]
    assert "hf_" not in json.dumps(manifests)


def test_public_models_get_no_token():
    spec = gke(model={"source": "huggingface", "repo_id": "Qwen/Qwen2.5-0.5B", "token_secret": None})
    assert not [e for e in _env(bundle("vllm", spec=spec).manifests()[0]) if e["name"] == "HF_TOKEN"]


def test_jetstream_reads_the_token_file_from_a_secret_volume():
    pod = bundle("jetstream", tp=8, accelerator="tpu-v5-lite-podslice").manifests()[0]["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "hf-token")
    assert volume["secret"]["secretName"] == "hf-token"
    assert volume["secret"]["items"] == [{"key": "token", "path": "HUGGINGFACE_TOKEN"}]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "hf-token", "mountPath": "/huggingface", "readOnly": True} in mounts
    assert not [e for e in pod["containers"][0].get("env", []) if e["name"] == "HF_TOKEN"]


def test_gcs_models_mount_through_gcsfuse():
    spec = gke(model={"source": "gcs", "bucket": "bench-models", "path": "/llama3-8b/"},
               server_service_account="servesweep-server")
    deployment = bundle("vllm", spec=spec).manifests()[0]
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["gke-gcsfuse/volumes"] == "true"
    pod = template["spec"]
    assert pod["serviceAccountName"] == "servesweep-server"
    volume = next(v for v in pod["volumes"] if v["name"] == "model")
    assert volume["csi"]["driver"] == "gcsfuse.csi.storage.gke.io"
    assert volume["csi"]["readOnly"] is True
    assert volume["csi"]["volumeAttributes"]["bucketName"] == "bench-models"
    main = pod["containers"][0]
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in main["volumeMounts"]
    assert main["args"][0] == "/models/llama3-8b"
    assert not [e for e in main.get("env", []) if e["name"] == "HF_TOKEN"]


def test_extra_args_env_and_requests():
    spec = gke(cpu="8", memory="64Gi")
    built = bundle("vllm", spec=spec, extra_args=["--enable-prefix-caching"], env={"VLLM_LOGGING_LEVEL": "DEBUG"})
    main = built.manifests()[0]["spec"]["template"]["spec"]["containers"][0]
    assert main["args"][-1] == "--enable-prefix-caching"
    assert {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"} in main["env"]
    assert main["resources"]["requests"] == {"cpu": "8", "memory": "64Gi"}


def test_server_and_accelerator_kinds_must_agree():
    with pytest.raises(ValueError, match="runs on TPUs"):
        bundle("jetstream", accelerator="nvidia-l4")
    with pytest.raises(ValueError, match="runs on GPUs"):
        bundle("vllm", accelerator="tpu-v5-lite-podslice", tp=4)


def test_h200_accepts_fewer_gpus_than_its_machine_has():
    built = bundle("vllm", tp=2, accelerator="nvidia-h200-141gb")
    assert built.manifests()[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "nvidia.com/gpu": "2"}


def test_long_ids_make_valid_distinct_names_and_labels():
    run_id = "llama3-70b-h100-quantization-sweep-" + "x" * 44  # 80 characters: the spec's maximum
    first = bundle(run_id=run_id, deployment_id="Llama3_70B/vLLM fp8 tp8 b256 " + "y" * 40)
    second = bundle(run_id=run_id, deployment_id="Llama3_70B/vLLM fp8 tp8 b256 " + "z" * 40)
    for built in (first, second):
        assert _DNS_1035.match(built.name) and len(built.name) <= 63
        for value in built.labels.values():
            assert _LABEL_VALUE.match(value) and len(value) <= 63
        for manifest in built.manifests():
            validate_manifest(manifest)
    assert first.name != second.name
    assert first.labels[DEPLOYMENT_ID_LABEL] != second.labels[DEPLOYMENT_ID_LABEL]
    assert first.labels[RUN_ID_LABEL] == second.labels[RUN_ID_LABEL]


def test_short_ids_are_kept_readable():
    assert label_value("run-1") == "run-1"
    assert resource_name("llama3-8b-vllm-b64") == "ss-llama3-8b-vllm-b64"
    assert resource_name("A") != resource_name("a")  # lossy lowercasing gets a hash, so no collision


def test_validator_rejects_unknown_and_missing_fields():
    deployment = bundle("vllm").manifests()[0]
    misspelt = json.loads(json.dumps(deployment))
    misspelt["spec"]["template"]["spec"]["nodeSelecter"] = {}
    with pytest.raises(ManifestError, match="unknown field 'nodeSelecter'"):
        validate_manifest(misspelt)
    nameless = json.loads(json.dumps(deployment))
    del nameless["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(ManifestError, match="name"):
        validate_manifest(nameless)
    wrong_type = json.loads(json.dumps(deployment))
    wrong_type["spec"]["replicas"] = "one"
    with pytest.raises(ManifestError, match="replicas: expected int"):
        validate_manifest(wrong_type)
    monitoring = bundle("vllm").manifests()[2]
    del monitoring["spec"]["endpoints"][0]["port"]
    with pytest.raises(ManifestError, match="port"):
        validate_manifest(monitoring)
    with pytest.raises(ManifestError, match="no schema"):
        validate_manifest({"apiVersion": "batch/v1", "kind": "Job"})


@pytest.mark.parametrize("tp", TP_SIZES)
def test_a_tensor_parallel_vllm_pod_gets_its_gpus_shared_memory_and_flag(tp: int):
    h200 = {"cloud.google.com/gke-accelerator": "nvidia-h200-141gb"}
    pod = bundle("vllm", tp=tp, accelerator="nvidia-h200-141gb", node_selector=h200).manifests()[0]
    spec = pod["spec"]["template"]["spec"]
    main = spec["containers"][0]
    assert main["resources"]["limits"] == {"nvidia.com/gpu": str(tp)}
    assert main["args"][main["args"].index("--tensor-parallel-size") + 1] == str(tp)
    # NCCL and vLLM's workers pass tensors through /dev/shm: memory-backed, 16Gi unless gke.shm_size says.
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in spec["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in main["volumeMounts"]
    assert not [e for e in main.get("env", []) if e["name"].startswith("NCCL_")]  # servesweep sets no NCCL knob


def test_nccl_settings_come_from_the_spec_and_shm_size_from_gke():
    h200 = {"cloud.google.com/gke-accelerator": "nvidia-h200-141gb"}
    built = bundle("vllm", spec=gke(shm_size="32Gi"), tp=8, accelerator="nvidia-h200-141gb", node_selector=h200,
                   env={"NCCL_NVLS_ENABLE": "0"})
    spec = built.manifests()[0]["spec"]["template"]["spec"]
    assert {"name": "NCCL_NVLS_ENABLE", "value": "0"} in spec["containers"][0]["env"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "32Gi"}} in spec["volumes"]

