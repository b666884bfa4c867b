"""Deploy, teardown and RBAC against recording fakes: failures become outcomes, teardown is thorough,
and the Role grants exactly the calls the code makes."""

from __future__ import annotations

from servesweep.gke_spec import CapacitySpec, GKESpec
from servesweep.k8s.deploy import KubeApis, deploy_server, manifests_json
from servesweep.k8s.manifests import build_server_bundle
from servesweep.k8s.provision import COMPUTE_CLASS_PLURAL
from servesweep.k8s.rbac import SERVESWEEP_CALLS, rbac_manifests
from servesweep.k8s.readiness import FailureKind
from servesweep.k8s.servers import ServerOptions
from servesweep.k8s.teardown import teardown_deployment, teardown_run
from servesweep.k8s.validate import validate_manifest
from tests.support.k8s_fakes import FakeApps, FakeClock, FakeCore, FakeCustom, api_error, load_fixture

GKE = GKESpec(project="bench-project", location="us-central1", cluster="bench",
              model={"source": "huggingface", "repo_id": "meta-llama/Llama-3.1-8B-Instruct"})
RUN_ID = "h100-sweep-20261102T101500Z"


def bundle(deployment_id: str = "llama3-8b-vllm-b64", run_id: str = RUN_ID, kind: str = "vllm"):
    return build_server_bundle(
        gke=GKE, run_id=run_id, deployment_id=deployment_id, kind=kind, options=ServerOptions(max_batch=64),
        served_name="llama3-8b", accelerator="nvidia-l4",
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"},
    )


def apis(fixture: str = "starting", ready_after: int | None = 1, **kwargs) -> KubeApis:
    return KubeApis(FakeApps(ready_after=ready_after, fail_create=kwargs.get("fail_create")),
                    FakeCore(load_fixture(fixture)), FakeCustom(crd_installed=kwargs.get("crd_installed", True)))


def deploy(kube: KubeApis, built, timeout_s: float = 60.0):
    clock = FakeClock()
    return deploy_server(kube, built, timeout_s=timeout_s, poll_s=5.0, clock=clock, sleep=clock.sleep)


def test_ready_server_keeps_its_objects():
    kube, built = apis(), bundle()
    outcome = deploy(kube, built)
    assert outcome.ready and outcome.error is None
    assert outcome.start_seconds == 5.0
    assert list(kube.apps.deployments) == [built.name]
    assert list(kube.core.services) == [built.name]
    assert ("podmonitorings", built.name) in kube.custom.objects


def test_broken_server_is_a_failed_outcome_and_is_removed():
    kube, built = apis("oom_killed", ready_after=None), bundle()
    outcome = deploy(kube, built)
    assert not outcome.ready and outcome.start_seconds is None
    assert outcome.error.startswith("OOMKilled: ")
    assert outcome.readiness.failure.kind == FailureKind.OOM_KILLED
    assert not kube.apps.deployments and not kube.core.services and not kube.custom.objects


def test_refused_objects_are_a_failed_outcome():
    quota = api_error(403, 'deployments.apps "ss-x" is forbidden: exceeded quota: gpu-quota, '
                           "requested: requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=8, limited: 8")
    kube = apis(fail_create=quota)
    outcome = deploy(kube, bundle())
    assert not outcome.ready
    assert outcome.error.startswith("Rejected: 403: deployments.apps")
    assert "exceeded quota" in outcome.error


def test_missing_managed_prometheus_is_a_note_not_a_failure():
    kube = apis(crd_installed=False)
    outcome = deploy(kube, bundle())
    assert outcome.ready
    assert outcome.notes and "PodMonitoring" in outcome.notes[0]


def test_manifests_json_is_an_applyable_list():
    text = manifests_json(bundle())
    assert '"kind": "List"' in text and '"kind": "Deployment"' in text and "hf_" not in text


def test_teardown_removes_only_the_runs_objects():
    kube = apis()
    for deployment_id in ("a", "b"):
        deploy(kube, bundle(deployment_id))
    deploy(kube, bundle("other", run_id="another-run"))
    report = teardown_run(kube.apps, kube.core, kube.custom, "servesweep", RUN_ID)
    assert report.ok
    assert sorted(report.deleted) == sorted(
        f"{kind}/ss-{d}" for kind in ("Deployment", "Service", "PodMonitoring") for d in ("a", "b"))
    assert list(kube.apps.deployments) == ["ss-other"]
    again = teardown_run(kube.apps, kube.core, kube.custom, "servesweep", RUN_ID)
    assert again.ok and again.deleted == []


def test_teardown_of_one_deployment_and_error_collection():
    kube = apis()
    deploy(kube, bundle("a"))
    deploy(kube, bundle("b"))
    kube.core.fail_delete["ss-a"] = api_error(500)
    report = teardown_deployment(kube.apps, kube.core, kube.custom, "servesweep", RUN_ID, "a")
    assert report.errors == ["Service/ss-a: 500 Error"]
    assert "Deployment/ss-a" in report.deleted and "PodMonitoring/ss-a" in report.deleted
    assert "ss-b" in kube.apps.deployments


def test_teardown_without_the_podmonitoring_crd():
    kube = apis(crd_installed=False)
    deploy(kube, bundle())
    report = teardown_run(kube.apps, kube.core, kube.custom, "servesweep", RUN_ID)
    assert report.ok and report.deleted == ["Deployment/ss-llama3-8b-vllm-b64", "Service/ss-llama3-8b-vllm-b64"]


def _granted() -> set[tuple[str, str]]:
    # servesweep's own calls; the launcher's and executor's are in tests/unit/k8s/test_k8s_rbac.py.
    return {(call.verb, call.resource) for call in SERVESWEEP_CALLS}


def test_role_grants_exactly_what_deploy_readiness_and_teardown_use():
    used: set[tuple[str, str]] = set()
    for fixture, ready_after in (("starting", 1), ("crash_loop_backoff", None)):
        kube = apis(fixture, ready_after=ready_after)
        deploy(kube, bundle())
        teardown_run(kube.apps, kube.core, kube.custom, "servesweep", RUN_ID)
        for fake in (kube.apps, kube.core, kube.custom):
            used |= {(verb, resource) for verb, resource, _ in fake.calls}
    # Queued provisioning: a ProvisioningRequest polled until granted, and its PodTemplate (tests/unit/k8s/
    # test_k8s_queued.py).
    queued = GKE.model_copy(update={"provisioning": "node_pool", "capacity": CapacitySpec(
        kinds=["flex_start"], queued={"timeout_s": 600})})
    kube = KubeApis(FakeApps(ready_after=1), FakeCore(load_fixture("starting")), FakeCustom(conditions=[[
        {"type": "Provisioned", "status": "True", "reason": "Provisioned", "message": "ok"}]]))
    deploy(kube, build_server_bundle(gke=queued, run_id=RUN_ID, deployment_id="q", kind="vllm",
                                     options=ServerOptions(), served_name="m", accelerator="nvidia-l4",
                                     node_selector={}))
    teardown_run(kube.apps, kube.core, kube.custom, "servesweep", RUN_ID)
    for fake in (kube.apps, kube.core, kube.custom):
        used |= {(verb, resource) for verb, resource, _ in fake.calls}
    # ConfigMaps hold the capacity records of the provision step (tests/unit/platform/test_gke_steps.py covers those).
    assert used == {(verb, resource) for verb, resource in _granted() if resource != "configmaps"}


def test_rbac_manifests_validate_and_never_touch_secrets():
    manifests = rbac_manifests("servesweep", workload_identity_sa="runner@bench-project.iam.gserviceaccount.com",
                               compute_classes=["servesweep-nvidia-l4-x1"])
    for manifest in manifests:
        validate_manifest(manifest)
    kinds = [m["kind"] for m in manifests]
    assert kinds == ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ClusterRole",
                     "ClusterRoleBinding"]
    account, role, binding, cluster_role, *_ = manifests
    assert account["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "runner@bench-project.iam.gserviceaccount.com"}
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert binding["roleRef"] == role_ref
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "servesweep-runner", "namespace": "servesweep"}]
    for rule in role["rules"] + cluster_role["rules"]:
        assert "secrets" not in rule["resources"] and "*" not in rule["verbs"] and "*" not in rule["resources"]
    named = [r for r in cluster_role["rules"] if r.get("resourceNames")]
    assert named == [{"apiGroups": ["cloud.google.com"], "resources": [COMPUTE_CLASS_PLURAL],
                      "resourceNames": ["servesweep-nvidia-l4-x1"], "verbs": ["get", "delete"]}]


def test_no_cluster_role_without_compute_classes_and_node_reads():
    kinds = [m["kind"] for m in rbac_manifests("servesweep", read_nodes=False)]
    assert kinds == ["ServiceAccount", "Role", "RoleBinding"]
