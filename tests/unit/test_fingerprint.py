"""The run fingerprint: spec hash, what a GKE server ran as, what is null and why."""

from __future__ import annotations

from types import SimpleNamespace

from kubernetes.client.exceptions import ApiException

from servesweep.fingerprint import canonical_spec, spec_hash, take
from servesweep.k8s.facts import image_digest, server_facts
from servesweep.spec import BenchmarkSpec, load_spec
from tests.support.paths import REPO

_DIGEST = "sha256:" + "ab" * 32
_POD = {
    "metadata": {"name": "ss-cc-0"},
    "spec": {"nodeName": "gke-node-1", "containers": [{"name": "sidecar", "image": "busybox"},
                                                      {"name": "server", "image": "vllm/vllm-openai:v0.32.0"}]},
    "status": {"phase": "Running", "containerStatuses": [
        {"name": "sidecar", "image": "busybox", "imageID": "docker.io/library/busybox@sha256:00"},
        {"name": "server", "image": "vllm/vllm-openai:v0.32.0", "imageID": f"docker.io/vllm/vllm-openai@{_DIGEST}"}]},
}
_NODE = {"metadata": {"name": "gke-node-1", "labels": {"node.kubernetes.io/instance-type": "g2-standard-8",
                                                       "cloud.google.com/gke-accelerator": "nvidia-l4"}}}


class _Core:
    def list_namespaced_pod(self, namespace: str, label_selector: str = "") -> SimpleNamespace:
        return SimpleNamespace(items=[_POD])

    def read_node(self, name: str) -> dict:
        assert name == "gke-node-1"
        return _NODE


def test_the_spec_hash_ignores_the_run_id_and_never_sees_env_values():
    spec = BenchmarkSpec(run_id="a", server={"env": {"TOKEN": "s3cret"}})
    assert spec_hash(spec) == spec_hash(spec.model_copy(update={"run_id": "b"}))
    assert "s3cret" not in canonical_spec(spec) and "TOKEN" in canonical_spec(spec)
    assert spec_hash(spec) != spec_hash(BenchmarkSpec(run_id="a", sweep={"batch_sizes": [1, 2],
                                                                          "requests_per_point": 8}))


def test_a_gke_server_s_image_digest_and_node_type_are_read_from_its_pod_and_node():
    facts = server_facts(_Core(), "servesweep", "app=ss")
    assert facts == {"server_image": "vllm/vllm-openai:v0.32.0", "server_image_digest": _DIGEST,
                     "node_machine_type": "g2-standard-8", "node_accelerator": "nvidia-l4", "node_note": None}
    assert image_digest("repo@sha256:1") == "sha256:1" and image_digest(None) is None


def test_a_gke_fingerprint_says_which_fields_it_could_not_know():
    spec = load_spec(REPO / "specs" / "gke.yaml")
    facts = server_facts(_Core(), "servesweep", "app=ss")
    fingerprint = take(spec, "", facts)  # no base URL: the server's version cannot be asked
    assert fingerprint.server_image_digest == _DIGEST and fingerprint.node_machine_type == "g2-standard-8"
    assert fingerprint.gpu_name == "nvidia-l4" and fingerprint.gpu_count == spec.accelerator.count
    assert fingerprint.gpu_driver_version is None and fingerprint.server_version is None
    notes = " | ".join(fingerprint.notes)
    assert "gpu_driver_version, cuda_driver_version: the server's GPUs are on its node" in notes
    assert "server_version: vllm reported none (no server)" in notes


class _ForbiddenNodes(_Core):
    def read_node(self, name: str) -> dict:
        raise ApiException(status=403, reason="Forbidden")


def test_a_node_the_runner_may_not_read_leaves_the_machine_type_null_and_says_why():
    facts = server_facts(_ForbiddenNodes(), "servesweep", "app=ss")
    assert facts["server_image_digest"] == _DIGEST and facts["node_machine_type"] is None
    fingerprint = take(load_spec(REPO / "specs" / "gke.yaml"), "", facts)
    assert ("node_machine_type: reading node gke-node-1 failed: HTTP 403 (the runner needs RBAC nodes get: "
            "gke.read_nodes)" in fingerprint.notes)
