"""The GKE branch of the pipeline steps against recording fakes: provision records what the exit
handler releases, deploy maps outcomes onto endpoints, teardown-all finds everything by owner."""

from __future__ import annotations

import pytest
import yaml

import servesweep.platform.gke.cluster as gke_steps
from components.deploy_server import deploy_server, teardown_server
from components.provision import provision
from components.teardown_all import teardown_all
from servesweep.gke_spec import CapacitySpec
from servesweep.k8s.deploy import KubeApis
from servesweep.k8s.manifests import OWNER_LABEL
from servesweep.k8s.provision import GKEProvisioner
from servesweep.k8s.rbac import SERVESWEEP_CALLS
from servesweep.platform.base import gke_section
from servesweep.platform.gke.cluster import capacity_record_name, deploy_gke, provision_gke, teardown_job
from servesweep.platform.types import Capacity
from servesweep.spec import BenchmarkSpec
from tests.support.k8s_fakes import (
    FakeApps,
    FakeClock,
    FakeClusterManager,
    FakeCore,
    FakeCustom,
    api_error,
    load_fixture,
)

OWNER = "3f2c9a7e-5b1d-4c8e-9f00-1234567890ab"  # a KFP job id
POOL = "servesweep-nvidia-l4-x1"


def gke_spec(provisioning: str = "node_pool", kind: str = "vllm", **server) -> BenchmarkSpec:
    return BenchmarkSpec.model_validate({
        "name": "l4", "run_id": "l4-20261102T101500Z", "accelerator": {"type": "nvidia-l4"},
        "server": {"kind": kind, "startup_timeout_s": 60, **server},
        "sweep": {"batch_sizes": [1, 4], "requests_per_point": 8},
        "gke": {"project": "bench-project", "location": "us-central1", "cluster": "bench",
                "provisioning": provisioning, "model": {"source": "gcs", "bucket": "bench-models", "path": "tiny"}},
    })


def kube(fixture: str = "starting", ready_after: int | None = 1) -> KubeApis:
    return KubeApis(FakeApps(ready_after=ready_after), FakeCore(load_fixture(fixture)), FakeCustom())


def provisioner_for(spec: BenchmarkSpec, apis: KubeApis, clusters: FakeClusterManager) -> GKEProvisioner:
    clock = FakeClock()
    return GKEProvisioner(spec.gke, clusters=clusters, custom=apis.custom, clock=clock, sleep=clock.sleep)


def deploy(spec: BenchmarkSpec, apis: KubeApis, deployment_id: str = "cc", max_num_seqs: int = 4,
           mode: str = "client_concurrency", owner: str = OWNER):
    clock = FakeClock()
    return deploy_gke(spec, deployment_id, max_num_seqs, mode, owner, {"cloud.google.com/gke-accelerator": "nvidia-l4"},
                      apis=apis, poll_s=5.0, clock=clock, sleep=clock.sleep)


def test_provision_records_the_capacity_and_teardown_gives_it_back():
    spec, apis, clusters = gke_spec(), kube(), FakeClusterManager()
    capacity = provision_gke(spec, OWNER, apis, provisioner_for(spec, apis, clusters))
    assert capacity.created and capacity.node_pool == POOL
    record = apis.core.config_maps[capacity_record_name(OWNER)]
    assert record.metadata.labels[OWNER_LABEL] == OWNER
    deploy(spec, apis)

    done = teardown_job(spec.gke, OWNER, apis, provisioner_for(spec, apis, clusters))

    assert not apis.apps.deployments and not apis.core.services and not apis.custom.objects
    assert ("delete_node_pool", f"projects/bench-project/locations/us-central1/clusters/bench/nodePools/{POOL}") \
        in clusters.calls
    assert not apis.core.config_maps
    assert done[-1] == f"capacity node_pool: {POOL}"
    assert teardown_job(spec.gke, OWNER, apis, provisioner_for(spec, apis, clusters)) == []  # idempotent


def test_a_retried_provision_replaces_its_record():
    spec, apis, clusters = gke_spec(), kube(), FakeClusterManager()
    provision_gke(spec, OWNER, apis, provisioner_for(spec, apis, clusters))
    again = provision_gke(spec, OWNER, apis, provisioner_for(spec, apis, clusters))
    assert again.resized and not again.created  # the pool from the first attempt is reused
    assert len(apis.core.config_maps) == 1
    assert '"resized":true' in apis.core.config_maps[capacity_record_name(OWNER)].data["capacity.json"]


def test_capacity_is_released_at_once_when_it_cannot_be_recorded():
    spec, apis, clusters = gke_spec(), kube(), FakeClusterManager()

    def refuse(namespace, body):
        raise api_error(403, "configmaps is forbidden")

    apis.core.create_namespaced_config_map = refuse
    with pytest.raises(Exception, match="Forbidden"):
        provision_gke(spec, OWNER, apis, provisioner_for(spec, apis, clusters))
    assert not clusters.pools  # created, then deleted again


def test_deploy_maps_the_outcome_onto_an_endpoint():
    spec = gke_spec(extra_args=["--enable-prefix-caching"], env={"VLLM_LOGGING_LEVEL": "DEBUG"})
    apis = kube()
    endpoint = deploy(spec, apis)
    name = f"ss-cc-{OWNER[:8]}"
    assert endpoint.error is None and endpoint.start_seconds == 5.0
    assert endpoint.base_url == f"http://{name}.servesweep.svc.cluster.local:8000"
    assert endpoint.metrics_url == f"http://{name}.servesweep.svc.cluster.local:8000/metrics"
    assert (endpoint.metric_prefix, endpoint.api, endpoint.namespace) == ("vllm:", "openai", "servesweep")
    assert f"{OWNER_LABEL}={OWNER}" in endpoint.label_selector.split(",")
    pod = apis.apps.deployments[name].spec.template.spec
    assert pod.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    server = pod.containers[0]
    assert server.args[-1] == "--enable-prefix-caching"
    assert "--max-num-seqs" in server.args and server.args[server.args.index("--max-num-seqs") + 1] == "4"
    assert {e.name: e.value for e in server.env}["VLLM_LOGGING_LEVEL"] == "DEBUG"


@pytest.mark.parametrize(("kind", "prefix", "api"), [
    ("tgi", "tgi_", "openai"), ("sglang", "sglang:", "openai"), ("triton-trtllm", "nv_", "triton-generate"),
])
def test_endpoint_carries_the_servers_metric_prefix(kind: str, prefix: str, api: str):
    endpoint = deploy(gke_spec(kind=kind), kube())
    assert (endpoint.metric_prefix, endpoint.api) == (prefix, api)


def test_a_server_without_a_batch_cap_serves_client_side_sweeps_only():
    spec = gke_spec(kind="transformers")
    spec = spec.model_copy(update={"gke": spec.gke.model_copy(update={"images": {"transformers": "img:1"}})})
    apis = kube()
    assert deploy(spec, apis).error is None  # client concurrency: deployed without a cap
    refused = deploy(spec, apis, "sm-b4", 4, "server_max_seqs")
    assert "no flag capping requests per batch" in refused.error


def test_an_impossible_combination_fails_without_touching_the_cluster():
    apis = kube()
    endpoint = deploy(gke_spec(kind="triton-trtllm").model_copy(update={"quantization": "gptq"}), apis)
    assert "cannot serve quantization 'gptq'" in endpoint.error
    assert not (apis.apps.calls or apis.core.calls or apis.custom.calls)


def test_a_server_that_cannot_start_is_an_error_and_is_removed():
    apis = kube("oom_killed", ready_after=None)
    endpoint = deploy(gke_spec(), apis)
    assert endpoint.error.startswith("OOMKilled: ") and endpoint.start_seconds is None
    assert not apis.apps.deployments and not apis.core.services


def test_a_retried_deploy_starts_from_nothing():
    spec, apis = gke_spec(), kube()
    deploy(spec, apis)
    apis.apps.reads = 0
    endpoint = deploy(spec, apis)  # the step's pod died after creating its objects; the retry must not collide
    assert endpoint.error is None
    assert len(apis.apps.deployments) == 1 and len(apis.core.services) == 1


def test_two_jobs_sweeping_the_same_ids_do_not_collide_and_teardown_keeps_the_other():
    spec, apis = gke_spec("autoprovision"), kube()
    deploy(spec, apis, owner=OWNER)
    other = "9e8d7c6b-0000-4000-8000-abcdefabcdef"
    apis.apps.reads = 0
    assert deploy(spec, apis, owner=other).error is None
    teardown_job(spec.gke, OWNER, apis)
    assert list(apis.apps.deployments) == [f"ss-cc-{other[:8]}"]


def test_step_functions_dispatch_on_the_spec(monkeypatch):
    spec, apis = gke_spec("autoprovision"), kube()
    monkeypatch.setattr(KubeApis, "connect", classmethod(lambda cls: apis))
    capacity = Capacity.model_validate_json(provision(spec, OWNER).model_dump_json(exclude_none=True))
    assert capacity.platform == "gke" and capacity.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}

    monkeypatch.setattr(gke_steps, "deploy_server", _instant_deploy(gke_steps.deploy_server))
    endpoint = deploy_server(spec, "/unused", "cc", 4, OWNER, "/unused", node_selector=capacity.node_selector)
    assert endpoint.namespace == "servesweep" and endpoint.error is None
    assert apis.apps.deployments[f"ss-cc-{OWNER[:8]}"].spec.template.spec.node_selector == capacity.node_selector

    teardown_server(endpoint, OWNER)
    assert not apis.apps.deployments and apis.core.config_maps  # the capacity record stays for the exit handler

    spec_yaml = yaml.safe_dump(spec.model_dump(mode="json"))
    assert teardown_all(OWNER, spec_yaml) == ["capacity autoprovision: autoscaled"]
    assert not apis.core.config_maps


def _instant_deploy(real):
    def deploy_now(apis, bundle, *, timeout_s, **_):
        clock = FakeClock()
        return real(apis, bundle, timeout_s=timeout_s, poll_s=5.0, clock=clock, sleep=clock.sleep)
    return deploy_now


def test_teardown_all_needs_only_the_gke_section():
    # The exit handler must clean up even when the rest of the spec is invalid.
    spec_yaml = yaml.safe_dump({"sweep": {"batch_sizes": []},
                                "gke": gke_spec().model_dump(mode="json")["gke"]})
    assert gke_section(spec_yaml).cluster == "bench"
    assert gke_section("") is None and gke_section("name: local\n") is None


def test_teardown_reports_what_it_could_not_delete_after_trying_everything():
    spec, apis, clusters = gke_spec(), kube(), FakeClusterManager()
    provision_gke(spec, OWNER, apis, provisioner_for(spec, apis, clusters))
    deploy(spec, apis)
    apis.core.fail_delete[f"ss-cc-{OWNER[:8]}"] = api_error(500)
    with pytest.raises(RuntimeError, match="Service/ss-cc-3f2c9a7e: 500 Error"):
        teardown_job(spec.gke, OWNER, apis, provisioner_for(spec, apis, clusters))
    assert not clusters.pools and not apis.apps.deployments  # the rest still went


def test_role_grants_exactly_what_the_gke_steps_use():
    spec, apis, clusters = gke_spec(), kube("crash_loop_backoff", ready_after=None), FakeClusterManager()
    provision_gke(spec, OWNER, apis, provisioner_for(spec, apis, clusters))
    provision_gke(spec, OWNER, apis, provisioner_for(spec, apis, clusters))  # a retry replaces the record
    deploy(spec, apis)
    healthy = kube()
    healthy.core.config_maps = apis.core.config_maps
    endpoint = deploy(spec, healthy)
    gke_steps.teardown_endpoint(endpoint, healthy)
    teardown_job(spec.gke, OWNER, healthy, provisioner_for(spec, healthy, clusters))
    # Queued provisioning adds a ProvisioningRequest (polled until granted) and its PodTemplate per server.
    queued = spec.model_copy(update={"gke": spec.gke.model_copy(update={"capacity": CapacitySpec(
        kinds=["flex_start"], queued={"timeout_s": 600})})})
    granted = KubeApis(FakeApps(ready_after=1), FakeCore(load_fixture("starting")), FakeCustom(conditions=[[
        {"type": "Provisioned", "status": "True", "reason": "Provisioned", "message": "ok"}]]))
    granted.core.config_maps = apis.core.config_maps
    assert deploy(queued, granted).error is None
    teardown_job(queued.gke, OWNER, granted, provisioner_for(queued, granted, clusters))
    used = {(verb, resource) for fake in (apis.apps, apis.core, apis.custom, healthy.apps, healthy.core,
                                          healthy.custom, granted.apps, granted.core, granted.custom)
            for verb, resource, _ in fake.calls}
    # servesweep's own calls; the KFP launcher's and Argo executor's are in tests/unit/k8s/test_k8s_rbac.py.
    assert used == {(call.verb, call.resource) for call in SERVESWEEP_CALLS}


def test_a_server_speaking_another_api_is_recorded_not_loaded(tmp_path):
    from components.sweep import run_sweep
    from servesweep.platform.types import Endpoint
    from servesweep.sweep_plan import plan_deployments

    spec = gke_spec(kind="triton-trtllm")
    deployment = plan_deployments(spec)[0]
    endpoint = Endpoint(deployment_id=deployment.deployment_id, max_num_seqs=4, base_url="http://ss-cc:8000",
                        metrics_url="http://ss-cc:8002/metrics", metric_prefix="nv_", api="triton-generate")
    manifest = run_sweep(spec, deployment, endpoint, str(tmp_path / "no-tokenizer"), tmp_path / "raw")
    assert [w.failure_reason for w in manifest.windows] == [
        "load generator speaks the OpenAI API, the server speaks triton-generate"] * 2


def test_a_server_without_metrics_is_swept_without_a_sampler():
    from servesweep.metrics.prometheus import MetricsSampler

    with MetricsSampler("", "cc", interval_s=0.01, prefixes=("",)) as sampler:
        sampler.begin("p")
        sampler.end()
    assert sampler.rows == [] and sampler.errors == 0 and not sampler._thread.is_alive()


def test_a_gke_spec_needs_a_gpu_and_travels_in_the_pipeline_parameters():
    from servesweep.spec import SpecError, parse_spec, spec_from_params, spec_to_params

    data = gke_spec().model_dump(mode="json") | {"accelerator": {"type": "cpu", "count": 1}}
    with pytest.raises(SpecError, match="a gke run needs a GPU accelerator"):
        parse_spec(data)
    spec = gke_spec()
    assert spec_from_params(spec_to_params(spec).model_dump()) == spec


@pytest.mark.parametrize("count", [1, 2, 8])
def test_the_spec_gpu_count_is_the_pods_gpus_and_the_servers_tensor_parallel_size(count: int):
    data = gke_spec().model_dump(mode="json") | {"accelerator": {"type": "nvidia-h200-141gb", "count": count}}
    data["server"]["env"] = {"NCCL_NVLS_ENABLE": "0"}
    spec = BenchmarkSpec.model_validate(data)
    bundle = gke_steps.server_bundle(spec, "cc", 64, "client_concurrency", OWNER,
                                     {"cloud.google.com/gke-accelerator": "nvidia-h200-141gb"})
    main = bundle.manifests()[0]["spec"]["template"]["spec"]["containers"][0]
    assert main["resources"]["limits"] == {"nvidia.com/gpu": str(count)}
    assert main["args"][main["args"].index("--tensor-parallel-size") + 1] == str(count)
    assert {"name": "NCCL_NVLS_ENABLE", "value": "0"} in main["env"]  # from server.env, nothing added
