"""Flex-start with queued provisioning: the node pool GKE needs, a ProvisioningRequest and PodTemplate per server,
the wait for GKE's grant bounded by gke.capacity.queued.timeout_s (then NoCapacity), and teardown of both."""

from __future__ import annotations

import json

import jsonschema
import kubernetes_validate
import pytest
from google.cloud import container_v1
from pydantic import ValidationError

from servesweep.gke_spec import GKESpec
from servesweep.k8s.deploy import KubeApis, deploy_server
from servesweep.k8s.manifests import build_server_bundle, to_dict
from servesweep.k8s.provision import node_pool_for
from servesweep.k8s.queued import CLASS_ANNOTATIONS, CONSUME_ANNOTATIONS, QUEUED_CLASS, request_state
from servesweep.k8s.readiness import FailureKind
from servesweep.k8s.servers import ServerOptions
from servesweep.k8s.teardown import teardown_run
from servesweep.k8s.validate import ManifestError, validate_manifest
from tests.support.gke_versions import GKE_NEWEST, GKE_OLDEST
from tests.support.k8s_fakes import FIXTURES, FakeApps, FakeClock, FakeCore, FakeCustom, load_fixture

RUN_ID = "h100-flex-20261102T101500Z"
SCHEMA = json.loads((FIXTURES / "provisioningrequest_v1.schema.json").read_text())
GRANTED = [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "queued",
            "lastTransitionTime": "2026-11-02T10:15:00Z"},
           {"type": "Provisioned", "status": "True", "reason": "Provisioned", "message": "nodes are ready",
            "lastTransitionTime": "2026-11-02T10:45:00Z"}]
QUEUED = [GRANTED[0]]


def gke(**capacity) -> GKESpec:
    return GKESpec(project="bench-project", location="us-central1", cluster="bench", provisioning="node_pool",
                   capacity={"kinds": ["flex_start"], "queued": {"timeout_s": 600}} | capacity,
                   model={"source": "huggingface", "repo_id": "meta-llama/Llama-3.1-8B-Instruct"})


def bundle(spec: GKESpec | None = None):
    return build_server_bundle(
        gke=spec or gke(), run_id=RUN_ID, deployment_id="llama3-8b-vllm-b64", kind="vllm",
        options=ServerOptions(max_batch=64, tensor_parallel=8), served_name="llama3-8b",
        accelerator="nvidia-h100-80gb",
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb",
                       "cloud.google.com/gke-nodepool": "servesweep-nvidia-h100-80gb-x8"},
    )


def deploy(kube: KubeApis, built):
    clock = FakeClock()
    return deploy_server(kube, built, timeout_s=60.0, poll_s=5.0, clock=clock, sleep=clock.sleep), clock


def apis(conditions) -> KubeApis:
    return KubeApis(FakeApps(ready_after=1), FakeCore(load_fixture("starting")), FakeCustom(conditions=conditions))


# --- the node pool --------------------------------------------------------------------------------------------


def test_queued_flex_start_pool_is_created_for_queued_provisioning():
    pool = node_pool_for(gke(), "nvidia-h100-80gb", 8)
    assert pool.queued_provisioning.enabled  # --enable-queued-provisioning
    assert pool.config.flex_start  # --flex-start
    assert pool.config.reservation_affinity.consume_reservation_type == \
        container_v1.ReservationAffinity.Type.NO_RESERVATION  # --reservation-affinity=none
    assert pool.autoscaling.location_policy == container_v1.NodePoolAutoscaling.LocationPolicy.ANY
    assert (pool.initial_node_count, pool.autoscaling.enabled, pool.autoscaling.min_node_count) == (0, True, 0)


def test_flex_start_without_queueing_keeps_a_plain_flex_start_pool():
    spec = GKESpec(project="bench-project", location="us-central1", cluster="bench", provisioning="node_pool",
                   capacity={"kinds": ["flex_start"]}, model={"source": "huggingface", "repo_id": "org/model"})
    pool = node_pool_for(spec, "nvidia-h100-80gb", 8)
    assert pool.config.flex_start and not pool.queued_provisioning.enabled
    assert build_server_bundle(gke=spec, run_id=RUN_ID, deployment_id="d", kind="vllm",
                               options=ServerOptions(tensor_parallel=8), served_name="m",
                               accelerator="nvidia-h100-80gb", node_selector={}).provisioning_request is None


@pytest.mark.parametrize(("fields", "message"), [
    ({"provisioning": "compute_class"}, "provisioning node_pool"),
    ({"provisioning": "autoprovision"}, "provisioning node_pool"),
    ({"node_pool": {"spot": True}}, "node_pool.spot"),
    ({"capacity": {"kinds": ["on_demand", "flex_start"], "queued": {}}}, r"kinds to \[flex_start\]"),
    ({"capacity": {"kinds": ["flex_start"], "queued": {"timeout_s": 10}}}, "timeout_s"),
    ({"capacity": {"kinds": ["flex_start"], "queued": {"timeout_s": 10**7}}}, "timeout_s"),
    ({"capacity": {"kinds": ["flex_start"], "queued": {"max_run_duration_s": 700_000}}}, "max_run_duration_s"),
    ({"capacity": {"kinds": ["flex_start"], "queued": {"timeout": 600}}}, "timeout"),
])
def test_queued_provisioning_needs_a_flex_start_node_pool_and_bounded_times(fields, message):
    base = {"project": "bench-project", "location": "us-central1", "cluster": "bench", "provisioning": "node_pool",
            "capacity": {"kinds": ["flex_start"], "queued": {}}, "model": {"source": "huggingface", "repo_id": "o/m"}}
    with pytest.raises(ValidationError, match=message):
        GKESpec.model_validate(base | fields)


# --- the objects ----------------------------------------------------------------------------------------------


def test_request_names_a_pod_template_shaped_like_the_server_pod():
    built = bundle(gke(queued={"timeout_s": 600, "max_run_duration_s": 86_400}))
    request, template = built.provisioning_request, to_dict(built.pod_template)
    assert request["apiVersion"] == "autoscaling.x-k8s.io/v1" and request["kind"] == "ProvisioningRequest"
    assert request["spec"] == {"provisioningClassName": QUEUED_CLASS, "parameters": {"maxRunDurationSeconds": "86400"},
                               "podSets": [{"count": 1, "podTemplateRef": {"name": built.name}}]}
    pod = to_dict(built.deployment)["spec"]["template"]
    assert template["template"]["spec"] == pod["spec"]  # resources, node selector, tolerations: the server pod's
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert {"key": "cloud.google.com/gke-queued", "operator": "Equal", "value": "true",
            "effect": "NoSchedule"} in pod["spec"]["tolerations"]
    annotations = pod["metadata"]["annotations"]
    assert all(annotations[key] == built.name for key in CONSUME_ANNOTATIONS)
    assert all(annotations[key] == QUEUED_CLASS for key in CLASS_ANNOTATIONS)
    assert template["metadata"]["labels"] == request["metadata"]["labels"] == built.labels  # teardown finds both


@pytest.mark.parametrize("version", [GKE_OLDEST, GKE_NEWEST])
def test_queued_objects_validate_strictly(version):
    built = bundle(gke(queued={"timeout_s": 600, "max_run_duration_s": 86_400}))
    for manifest in built.manifests():
        validate_manifest(manifest)
        if manifest["kind"] == "ProvisioningRequest":
            jsonschema.validate(manifest, SCHEMA)
        elif manifest["kind"] != "PodMonitoring":
            kubernetes_validate.validate(manifest, version, strict=True)
    assert {m["kind"] for m in built.manifests()} >= {"Deployment", "PodTemplate", "ProvisioningRequest"}


def test_schema_and_check_refuse_a_broken_request():
    request = bundle().provisioning_request
    for broken in ({**request, "spec": {**request["spec"], "podSets": []}},
                   {**request, "spec": {**request["spec"], "podSets": [{"count": 0, "podTemplateRef": {"name": "x"}}]}},
                   {**request, "spec": {**request["spec"], "provisioningClassname": QUEUED_CLASS}},
                   {**request, "spec": {**request["spec"], "parameters": {"maxRunDurationSeconds": 86400}}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMA)
        with pytest.raises(ManifestError):
            validate_manifest(broken)


def test_request_state_reads_the_autoscalers_conditions():
    assert request_state({})[0] == "pending"
    assert request_state({"status": {"conditions": QUEUED}}) == ("pending", "Accepted: queued")
    assert request_state({"status": {"conditions": GRANTED}})[0] == "provisioned"
    failed = [{"type": "Failed", "status": "True", "message": "GCE out of resources"}]
    assert request_state({"status": {"conditions": failed}}) == ("failed", "Failed: GCE out of resources")
    assert request_state({"status": {"conditions": [{"type": "BookingExpired", "status": "True"}]}})[0] == "failed"


# --- deploy and teardown --------------------------------------------------------------------------------------


def test_server_is_created_only_once_its_node_is_granted():
    kube, built = apis([QUEUED, QUEUED, GRANTED]), bundle()
    outcome, clock = deploy(kube, built)
    assert outcome.ready
    order = [call for fake in (kube.core, kube.custom, kube.apps) for call in fake.calls if call[0] == "create"]
    assert ("create", "podtemplates", built.name) in order and ("create", "provisioningrequests", built.name) in order
    assert kube.custom.status_reads == 3 and clock.sleeps[:2] == [10.0, 10.0]  # polled until Provisioned
    assert list(kube.apps.deployments) == [built.name]


def test_no_grant_in_time_is_no_capacity_and_nothing_is_left():
    kube, built = apis([QUEUED]), bundle()
    outcome, clock = deploy(kube, built)
    assert not outcome.ready and outcome.readiness.failure.kind == FailureKind.NO_CAPACITY
    assert "not granted after 600s" in outcome.error and "gke.capacity.queued.timeout_s" in outcome.error
    assert sum(clock.sleeps) == 600.0  # its own timeout, not server.startup_timeout_s
    assert not kube.apps.deployments  # the server never started
    assert not kube.custom.objects and not kube.core.pod_templates  # request and template deleted


def test_a_failed_request_is_no_capacity_at_once():
    failed = [{"type": "Failed", "status": "True", "reason": "Failed", "message": "GCE out of resources"}]
    kube, built = apis([failed]), bundle()
    outcome, clock = deploy(kube, built)
    assert outcome.error.startswith("NoCapacity: ProvisioningRequest") and "GCE out of resources" in outcome.error
    assert clock.sleeps == [] and not kube.custom.objects


def test_teardown_deletes_the_request_and_its_template():
    kube, built = apis([GRANTED]), bundle()
    deploy(kube, built)
    report = teardown_run(kube.apps, kube.core, kube.custom, "servesweep", RUN_ID)
    assert report.ok
    assert {f"ProvisioningRequest/{built.name}", f"PodTemplate/{built.name}"} <= set(report.deleted)
    assert not kube.custom.objects and not kube.core.pod_templates
