"""GKE capacity, servers and teardown through servesweep.k8s, as the GKE platform does them.

A pipeline's exit handler can take no output of the steps it guards, so what it must undo is found
on the cluster: server objects by the job's owner label, and capacity through one ConfigMap per job
that the provision step writes. API clients are parameters (tests pass recording fakes); by default
the pod's in-cluster credentials are used.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from servesweep.gke_spec import GKESpec
from servesweep.k8s.capacity import Capacity
from servesweep.k8s.deploy import DeployOutcome, KubeApis, deploy_server
from servesweep.k8s.facts import server_facts
from servesweep.k8s.manifests import ServerBundle, build_server_bundle, label_value, owner_labels, selector
from servesweep.k8s.provision import GKEProvisioner
from servesweep.k8s.servers import ServerOptions, server_info
from servesweep.k8s.teardown import teardown_owner, teardown_selected
from servesweep.platform.types import Endpoint
from servesweep.secrets import resolve_env
from servesweep.spec import BenchmarkSpec

CAPACITY_KEY = "capacity.json"


def _connect(apis: KubeApis | None) -> KubeApis:
    return apis or KubeApis.connect()


def capacity_record_name(owner: str) -> str:
    return f"servesweep-capacity-{label_value(owner).lower()}"[:63].rstrip("-.")


# --- provision -------------------------------------------------------------------------------------


def provision_gke(
    spec: BenchmarkSpec, owner: str, apis: KubeApis | None = None, provisioner: GKEProvisioner | None = None
) -> Capacity:
    """Ensure the accelerators, then record what was added so the exit handler can release it."""
    gke = _gke(spec)
    apis = _connect(apis)
    provisioner = provisioner or GKEProvisioner(gke, custom=apis.custom)
    capacity = provisioner.ensure(spec.accelerator.type, spec.accelerator.count)
    try:
        record_capacity(apis.core, gke.namespace, owner, capacity)
    except ApiException:
        provisioner.release(capacity)  # unrecorded, nobody could give it back later
        raise
    return capacity


def record_capacity(core: k8s.CoreV1Api, namespace: str, owner: str, capacity: Capacity) -> None:
    name = capacity_record_name(owner)
    body = k8s.V1ConfigMap(
        api_version="v1", kind="ConfigMap",
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels=owner_labels(owner)),
        data={CAPACITY_KEY: capacity.model_dump_json()},
    )
    try:
        core.create_namespaced_config_map(namespace, body)
    except ApiException as error:
        if error.status != 409:
            raise
        # A retried provision step: the newer record replaces the older one.
        core.delete_namespaced_config_map(name, namespace)
        core.create_namespaced_config_map(namespace, body)


def release_capacity(gke: GKESpec, owner: str, apis: KubeApis, provisioner: GKEProvisioner) -> list[str]:
    """Release every capacity record of the job, then delete the record; returns what was released."""
    records = apis.core.list_namespaced_config_map(gke.namespace, label_selector=selector(owner_labels(owner)))
    released = []
    for record in records.items:
        capacity = Capacity.model_validate_json(record.data[CAPACITY_KEY])
        provisioner.release(capacity)
        apis.core.delete_namespaced_config_map(record.metadata.name, gke.namespace)
        released.append(f"capacity {capacity.mode}: {capacity.node_pool or capacity.compute_class or 'autoscaled'}")
    return released


# --- servers ---------------------------------------------------------------------------------------


def server_bundle(
    spec: BenchmarkSpec, deployment_id: str, max_num_seqs: int, sweep_mode: str, owner: str,
    node_selector: dict[str, str],
) -> ServerBundle:
    """The spec's server for one deployment; ValueError for a combination the server cannot run, or for a
    server.env value withheld from the pipeline (SecretMissing)."""
    kind = spec.server.kind
    # A server without a batch cap still serves a client-side concurrency sweep, just uncapped.
    capped = sweep_mode == "server_max_seqs" or server_info(kind).caps_batch
    options = ServerOptions(
        quantization=spec.quantization, tensor_parallel=spec.accelerator.count,
        max_batch=max_num_seqs if capped else None, gpu_memory_fraction=spec.server.gpu_memory_utilization,
        max_model_len=spec.server.max_model_len,
    )
    return build_server_bundle(
        gke=_gke(spec), run_id=spec.run_id, deployment_id=deployment_id, kind=kind, options=options,
        served_name=spec.model.name, accelerator=spec.accelerator.type, node_selector=node_selector,
        extra_args=spec.server.extra_args, env=resolve_env(spec.server.env), owner=owner,
        secret_env={name: (ref.secret, ref.key) for name, ref in spec.server.secret_env.items()},
    )


def deploy_gke(
    spec: BenchmarkSpec, deployment_id: str, max_num_seqs: int, sweep_mode: str, owner: str,
    node_selector: dict[str, str], apis: KubeApis | None = None, **wait: Any,
) -> Endpoint:
    """Create the server and wait for it; whatever stops it becomes `Endpoint.error`, not an exception."""
    try:
        bundle = server_bundle(spec, deployment_id, max_num_seqs, sweep_mode, owner, node_selector)
    except ValueError as error:
        return Endpoint(deployment_id=deployment_id, max_num_seqs=max_num_seqs, error=str(error), platform="gke")
    apis = _connect(apis)
    # A retried step finds its earlier attempt's objects; start from nothing so create cannot collide.
    teardown_selected(apis.apps, apis.core, apis.custom, bundle.namespace, selector(bundle.labels))
    outcome = deploy_server(apis, bundle, timeout_s=spec.server.startup_timeout_s, **wait)
    for note in outcome.notes:
        print(f"note: {note}")
    facts = server_facts(apis.core, bundle.namespace, selector(bundle.labels)) if outcome.ready else {}
    return endpoint_from(outcome, deployment_id, max_num_seqs, facts)


def endpoint_from(outcome: DeployOutcome, deployment_id: str, max_num_seqs: int,
                  facts: dict[str, str | None] | None = None) -> Endpoint:
    bundle, rendered = outcome.bundle, outcome.bundle.rendered
    return Endpoint(
        deployment_id=deployment_id, max_num_seqs=max_num_seqs, base_url=bundle.base_url,
        metrics_url=bundle.metrics_url or "", served_name=rendered.served_name, start_seconds=outcome.start_seconds,
        error=outcome.error, metric_prefix=rendered.metric_prefix or "", api=rendered.api,
        namespace=bundle.namespace, label_selector=selector(bundle.labels), platform="gke",
        gke_facts=facts or {},
    )


def teardown_endpoint(endpoint: Endpoint, apis: KubeApis | None = None) -> None:
    """Delete one server's objects; a deployment refused before it reached the cluster has none."""
    if not endpoint.namespace:
        return
    apis = _connect(apis)
    report = teardown_selected(apis.apps, apis.core, apis.custom, endpoint.namespace, endpoint.label_selector)
    if not report.ok:
        raise RuntimeError(f"teardown of {endpoint.deployment_id} left objects behind: {'; '.join(report.errors)}")


# --- exit handler ----------------------------------------------------------------------------------


def teardown_job(
    gke: GKESpec, owner: str, apis: KubeApis | None = None, provisioner: GKEProvisioner | None = None
) -> list[str]:
    """Delete every server the job created, then give back its capacity; raises after trying it all."""
    apis = _connect(apis)
    provisioner = provisioner or GKEProvisioner(gke, custom=apis.custom)
    report = teardown_owner(apis.apps, apis.core, apis.custom, gke.namespace, owner)
    done, errors = list(report.deleted), list(report.errors)
    try:
        done += release_capacity(gke, owner, apis, provisioner)
    except Exception as error:  # reported with the rest; the step fails below
        errors.append(f"capacity release: {error}")
    if errors:
        raise RuntimeError(f"teardown left resources behind (done: {done}): {'; '.join(errors)}")
    return done


def _gke(spec: BenchmarkSpec) -> GKESpec:
    if spec.gke is None:
        raise ValueError("spec has no gke section")
    return spec.gke
