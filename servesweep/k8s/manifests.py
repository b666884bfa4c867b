"""Kubernetes objects for one model server: Deployment, Service and a Managed Prometheus PodMonitoring.

Built as `kubernetes.client` models (PodMonitoring, a CRD, as a dict) so the API client can send
them as they are and tests can check them against the client's schema. Every object carries the
labels teardown selects on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from servesweep.gke_spec import GCSModel, GKESpec, HuggingFaceModel, ModelSource
from servesweep.k8s.accelerators import accelerator_info, machine_for
from servesweep.k8s.queued import (
    consume_annotations,
    queued_toleration,
    render_pod_template,
    render_provisioning_request,
)
from servesweep.k8s.servers import (
    HF_TOKEN_DIR,
    HF_TOKEN_ENV,
    HF_TOKEN_FILE,
    ContainerPlan,
    ModelRef,
    RenderedServer,
    ServerOptions,
    render_server,
)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "servesweep"
SERVER_KIND_LABEL = "app.kubernetes.io/name"
RUN_ID_LABEL = "servesweep.dev/run-id"
DEPLOYMENT_ID_LABEL = "servesweep.dev/deployment-id"
OWNER_LABEL = "servesweep.dev/owner"  # the pipeline job (KFP job id, Argo workflow uid) that created it

PODMONITORING_GROUP = "monitoring.googleapis.com"
PODMONITORING_VERSION = "v1"
PODMONITORING_PLURAL = "podmonitorings"

MODEL_MOUNT = "/models"
GCSFUSE_DRIVER = "gcsfuse.csi.storage.gke.io"

_MAX_NAME = 63
_LABEL_INVALID = re.compile(r"[^A-Za-z0-9_.-]+")
_NAME_INVALID = re.compile(r"[^a-z0-9-]+")


def _shorten(text: str, original: str, limit: int) -> str:
    """`text` as is when it fits and nothing was lost; else cut, with a hash of `original` to stay unique."""
    if text == original and len(text) <= limit:
        return text
    digest = hashlib.sha1(original.encode()).hexdigest()[:10]
    return f"{text[: limit - len(digest) - 1].rstrip('-_.')}-{digest}"


def label_value(text: str) -> str:
    """A valid label value for any text: at most 63 characters, alphanumeric at both ends."""
    cleaned = _LABEL_INVALID.sub("-", text).strip("-_.")
    return _shorten(cleaned, text, _MAX_NAME) if cleaned else hashlib.sha1(text.encode()).hexdigest()[:10]


def resource_name(deployment_id: str, prefix: str = "ss") -> str:
    """A DNS-1035 name (Deployment, Service) for a deployment id."""
    cleaned = _NAME_INVALID.sub("-", f"{prefix}-{deployment_id}".lower()).strip("-")
    return _shorten(cleaned, f"{prefix}-{deployment_id}", _MAX_NAME)


def run_labels(run_id: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, RUN_ID_LABEL: label_value(run_id)}


def deployment_labels(run_id: str, deployment_id: str) -> dict[str, str]:
    return {**run_labels(run_id), DEPLOYMENT_ID_LABEL: label_value(deployment_id)}


def owner_labels(owner: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, OWNER_LABEL: label_value(owner)}


def selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def model_ref(source: ModelSource, served_name: str) -> ModelRef:
    if isinstance(source, GCSModel):
        location = f"{MODEL_MOUNT}/{source.path}" if source.path else MODEL_MOUNT
        return ModelRef(location, served_name, from_hub=False)
    return ModelRef(source.repo_id, served_name, revision=source.revision)


def to_dict(obj: Any) -> dict[str, Any]:
    """The object as the API server receives it (camelCase keys, no None fields)."""
    data: dict[str, Any] = k8s.ApiClient().sanitize_for_serialization(obj)
    return data


@dataclass(frozen=True)
class ServerBundle:
    name: str
    namespace: str
    labels: dict[str, str]
    rendered: RenderedServer
    deployment: k8s.V1Deployment
    service: k8s.V1Service
    pod_monitoring: dict[str, Any] | None
    # Queued provisioning (gke.capacity.queued): the request for the server's node, the PodTemplate it names, and
    # how long deploy waits for it to be granted before the deployment fails NoCapacity.
    pod_template: k8s.V1PodTemplate | None = None
    provisioning_request: dict[str, Any] | None = None
    capacity_timeout_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.name}.{self.namespace}.svc.cluster.local:{self.rendered.port}"

    @property
    def metrics_url(self) -> str | None:
        if self.rendered.metrics_port is None:
            return None
        host = f"{self.name}.{self.namespace}.svc.cluster.local"
        return f"http://{host}:{self.rendered.metrics_port}{self.rendered.metrics_path}"

    def manifests(self) -> list[dict[str, Any]]:
        objects: list[Any] = [self.deployment, self.service]
        if self.pod_monitoring is not None:
            objects.append(self.pod_monitoring)
        if self.pod_template is not None and self.provisioning_request is not None:
            objects += [self.pod_template, self.provisioning_request]
        return [to_dict(obj) for obj in objects]


def build_server_bundle(
    *,
    gke: GKESpec,
    run_id: str,
    deployment_id: str,
    kind: str,
    options: ServerOptions,
    served_name: str,
    accelerator: str,
    node_selector: Mapping[str, str],
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    owner: str = "",
    secret_env: Mapping[str, tuple[str, str]] | None = None,
) -> ServerBundle:
    """Deployment, Service and PodMonitoring for one server; `node_selector` comes from provisioning.

    `secret_env` maps a variable to (Secret name, key): rendered as a secretKeyRef, so the value
    never passes through servesweep, the manifest or the pipeline.

    With an `owner` (the pipeline job), objects carry its label and its first characters in their
    names, so two jobs sweeping the same deployment ids in one namespace do not collide.
    """
    rendered = render_server(kind, model_ref(gke.model, served_name), options, gke.images)
    info = accelerator_info(accelerator)
    machine_for(accelerator, options.tensor_parallel)  # e.g. 2 TPU chips: no single-host slice has that
    if info.kind != rendered.accelerator_kind:
        raise ValueError(f"server {kind!r} runs on {rendered.accelerator_kind.upper()}s, "
                         f"not on {accelerator} ({info.kind.upper()})")
    name = resource_name(f"{deployment_id}-{label_value(owner)[:8]}" if owner else deployment_id)
    labels = {**deployment_labels(run_id, deployment_id), **(owner_labels(owner) if owner else {})}
    pod_labels = {**labels, SERVER_KIND_LABEL: kind}
    pod = _pod_spec(gke, rendered, info.resource, options.tensor_parallel, node_selector, extra_args,
                    _env(gke.model, rendered, env or {}, secret_env or {}))
    queued = gke.capacity.queued if gke.provisioning == "node_pool" else None
    annotations = _pod_annotations(gke.model)
    if queued is not None:
        pod.tolerations = [*(pod.tolerations or []), queued_toleration()]
        annotations |= consume_annotations(name)  # the request has the Deployment's name
    deployment = _deployment(name, gke.namespace, labels, pod_labels, pod, annotations)
    pod_template = provisioning_request = None
    if queued is not None:
        # One pod, one node: the Deployment runs one replica (Recreate) on a node of its own.
        pod_template = render_pod_template(name, gke.namespace, labels, deployment.spec.template)
        provisioning_request = render_provisioning_request(name, gke.namespace, labels, name, queued)
    return ServerBundle(
        name=name,
        namespace=gke.namespace,
        labels=labels,
        rendered=rendered,
        deployment=deployment,
        service=_service(name, gke.namespace, pod_labels, labels, rendered),
        pod_monitoring=_pod_monitoring(name, gke.namespace, pod_labels, labels, rendered, gke.scrape_interval_s),
        pod_template=pod_template,
        provisioning_request=provisioning_request,
        capacity_timeout_s=float(queued.timeout_s) if queued is not None else None,
    )


def _metadata(name: str, namespace: str, labels: Mapping[str, str]) -> k8s.V1ObjectMeta:
    return k8s.V1ObjectMeta(name=name, namespace=namespace, labels=dict(labels))


def _deployment(
    name: str, namespace: str, labels: dict[str, str], pod_labels: dict[str, str], pod: k8s.V1PodSpec,
    annotations: dict[str, str],
) -> k8s.V1Deployment:
    return k8s.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=_metadata(name, namespace, pod_labels),
        spec=k8s.V1DeploymentSpec(
            replicas=1,
            # Recreate: a second pod would wait for accelerators the first one holds.
            strategy=k8s.V1DeploymentStrategy(type="Recreate"),
            selector=k8s.V1LabelSelector(match_labels=labels),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=pod_labels, annotations=annotations or None), spec=pod
            ),
        ),
    )


def _pod_annotations(source: ModelSource) -> dict[str, str]:
    if not isinstance(source, GCSModel):
        return {}
    # The gcsfuse sidecar is injected on this annotation; "0" lifts its default CPU/memory/disk limits,
    # which a multi-GB weight read would otherwise hit.
    return {
        "gke-gcsfuse/volumes": "true",
        "gke-gcsfuse/cpu-limit": "0",
        "gke-gcsfuse/memory-limit": "0",
        "gke-gcsfuse/ephemeral-storage-limit": "0",
    }


def _pod_spec(
    gke: GKESpec, rendered: RenderedServer, resource: str, count: int, node_selector: Mapping[str, str],
    extra_args: Sequence[str], env: list[k8s.V1EnvVar],
) -> k8s.V1PodSpec:
    volumes, mounts = _volumes(gke, rendered)
    main = _container(rendered.main, rendered, extra_args, env, mounts)
    main.resources = _resources(gke, resource, count)
    return k8s.V1PodSpec(
        containers=[main] + [_container(plan, None, (), [], []) for plan in rendered.sidecars],
        volumes=volumes,
        node_selector=dict(node_selector),
        tolerations=[k8s.V1Toleration(key=resource, operator="Exists", effect="NoSchedule")],
        service_account_name=gke.server_service_account,
        termination_grace_period_seconds=30,
    )


def _container(
    plan: ContainerPlan, rendered: RenderedServer | None, extra_args: Sequence[str], env: list[k8s.V1EnvVar],
    mounts: list[k8s.V1VolumeMount],
) -> k8s.V1Container:
    probe = None
    if rendered is not None:  # the main container carries the probe, whichever container serves it
        probe = k8s.V1Probe(
            http_get=k8s.V1HTTPGetAction(path=rendered.readiness_path, port=rendered.port),
            period_seconds=5, timeout_seconds=5, failure_threshold=3,
        )
    return k8s.V1Container(
        name=plan.name,
        image=plan.image,
        command=list(plan.command) or None,
        args=[*plan.args, *extra_args] or None,
        ports=[k8s.V1ContainerPort(name=port_name, container_port=port) for port_name, port in plan.ports.items()],
        env=env or None,
        volume_mounts=mounts or None,
        readiness_probe=probe,
    )


def _secret_var(name: str, secret: str, key: str) -> k8s.V1EnvVar:
    ref = k8s.V1SecretKeySelector(name=secret, key=key)
    return k8s.V1EnvVar(name=name, value_from=k8s.V1EnvVarSource(secret_key_ref=ref))


def _env(source: ModelSource, rendered: RenderedServer, extra: Mapping[str, str],
         secret_env: Mapping[str, tuple[str, str]]) -> list[k8s.V1EnvVar]:
    if both := sorted(set(extra) & set(secret_env)):
        raise ValueError(f"{', '.join(both)} given both as a value and from a Secret")
    env = [k8s.V1EnvVar(name=key, value=value) for key, value in sorted(extra.items())]
    env += [_secret_var(name, secret, key) for name, (secret, key) in sorted(secret_env.items())]
    if isinstance(source, HuggingFaceModel) and source.token_secret and rendered.token_delivery == "env":
        if HF_TOKEN_ENV in secret_env:
            raise ValueError(f"{HF_TOKEN_ENV} comes from the model's token_secret; drop it from secret_env")
        # A reference, never the value: the token stays in the Secret.
        env.append(_secret_var(HF_TOKEN_ENV, source.token_secret, source.token_key))
    return env


def _volumes(gke: GKESpec, rendered: RenderedServer) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    shm = k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=gke.shm_size)
    volumes = [k8s.V1Volume(name="dshm", empty_dir=shm)]
    mounts = [k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm")]
    source = gke.model
    if isinstance(source, GCSModel):
        csi = k8s.V1CSIVolumeSource(
            driver=GCSFUSE_DRIVER, read_only=True,
            volume_attributes={"bucketName": source.bucket, "mountOptions": "implicit-dirs"},
        )
        volumes.append(k8s.V1Volume(name="model", csi=csi))
        mounts.append(k8s.V1VolumeMount(name="model", mount_path=MODEL_MOUNT, read_only=True))
    elif source.token_secret and rendered.token_delivery == "file":
        secret = k8s.V1SecretVolumeSource(
            secret_name=source.token_secret, default_mode=0o400,
            items=[k8s.V1KeyToPath(key=source.token_key, path=HF_TOKEN_FILE)],
        )
        volumes.append(k8s.V1Volume(name="hf-token", secret=secret))
        mounts.append(k8s.V1VolumeMount(name="hf-token", mount_path=HF_TOKEN_DIR, read_only=True))
    return volumes, mounts


def _resources(gke: GKESpec, resource: str, count: int) -> k8s.V1ResourceRequirements:
    requests = {key: value for key, value in (("cpu", gke.cpu), ("memory", gke.memory)) if value}
    return k8s.V1ResourceRequirements(limits={resource: str(count)}, requests=requests or None)


def _service(
    name: str, namespace: str, labels: dict[str, str], match: dict[str, str], rendered: RenderedServer
) -> k8s.V1Service:
    ports = [k8s.V1ServicePort(name="http", port=rendered.port, target_port=rendered.port, protocol="TCP")]
    if rendered.metrics_port is not None and rendered.metrics_port != rendered.port:
        ports.append(k8s.V1ServicePort(name="metrics", port=rendered.metrics_port,
                                       target_port=rendered.metrics_port, protocol="TCP"))
    return k8s.V1Service(
        api_version="v1",
        kind="Service",
        metadata=_metadata(name, namespace, labels),
        spec=k8s.V1ServiceSpec(type="ClusterIP", selector=match, ports=ports),
    )


def _pod_monitoring(
    name: str, namespace: str, labels: dict[str, str], match: dict[str, str], rendered: RenderedServer,
    interval_s: int,
) -> dict[str, Any] | None:
    if rendered.metrics_port is None:
        return None
    return {
        "apiVersion": f"{PODMONITORING_GROUP}/{PODMONITORING_VERSION}",
        "kind": "PodMonitoring",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "selector": {"matchLabels": dict(match)},
            "endpoints": [{"port": rendered.metrics_port, "path": rendered.metrics_path, "interval": f"{interval_s}s"}],
        },
    }
