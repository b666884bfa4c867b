"""Create a server's objects, wait for it, and hand back an outcome instead of an exception.

A server that cannot start (or that the API server refuses) becomes a failed outcome whose
`error` goes into the lake as the point's failure_reason; its objects are deleted at once so the
accelerators are free for the next deployment. The run's final teardown by labels still runs.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from servesweep.k8s.manifests import (
    PODMONITORING_GROUP,
    PODMONITORING_PLURAL,
    PODMONITORING_VERSION,
    ServerBundle,
    selector,
)
from servesweep.k8s.queued import PROVREQ_GROUP, PROVREQ_PLURAL, PROVREQ_VERSION, request_state
from servesweep.k8s.readiness import FailureKind, FailureReason, Readiness, redact, wait_until_ready
from servesweep.k8s.teardown import teardown_selected
from servesweep.k8s.validate import validate_manifest


@dataclass(frozen=True)
class KubeApis:
    apps: k8s.AppsV1Api
    core: k8s.CoreV1Api
    custom: k8s.CustomObjectsApi

    @classmethod
    def connect(cls) -> KubeApis:
        """In-cluster credentials inside a pipeline pod, else the local kubeconfig."""
        try:
            k8s_config.load_incluster_config()
        except k8s_config.ConfigException:
            k8s_config.load_kube_config()
        return cls(k8s.AppsV1Api(), k8s.CoreV1Api(), k8s.CustomObjectsApi())


@dataclass(frozen=True)
class DeployOutcome:
    bundle: ServerBundle
    readiness: Readiness
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ready(self) -> bool:
        return self.readiness.ready

    @property
    def start_seconds(self) -> float | None:
        return self.readiness.seconds if self.ready else None

    @property
    def error(self) -> str | None:
        failure = self.readiness.failure
        return failure.summary() if failure and not self.ready else None


def request_capacity(apis: KubeApis, bundle: ServerBundle) -> None:
    """Queued provisioning: create the PodTemplate and the ProvisioningRequest that names it."""
    if bundle.pod_template is None or bundle.provisioning_request is None:
        return
    apis.core.create_namespaced_pod_template(bundle.namespace, bundle.pod_template)
    apis.custom.create_namespaced_custom_object(group=PROVREQ_GROUP, version=PROVREQ_VERSION,
                                                namespace=bundle.namespace, plural=PROVREQ_PLURAL,
                                                body=bundle.provisioning_request)


def wait_for_capacity(
    apis: KubeApis, bundle: ServerBundle, *, poll_s: float, clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> FailureReason | None:
    """Until GKE grants the bundle's ProvisioningRequest (None), marks it Failed, or `capacity_timeout_s` passes
    (both NoCapacity: no machines in time, for the one capacity kind queued provisioning offers)."""
    if bundle.provisioning_request is None:
        return None
    timeout_s = bundle.capacity_timeout_s or 0.0
    started, state = clock(), "no conditions yet"
    while True:
        try:
            request = apis.custom.get_namespaced_custom_object(
                group=PROVREQ_GROUP, version=PROVREQ_VERSION, namespace=bundle.namespace, plural=PROVREQ_PLURAL,
                name=bundle.name)
            verdict, state = request_state(request)
        except ApiException as error:
            if error.status is None or error.status < 500:
                raise
            verdict = "pending"  # an API server hiccup; poll again
        if verdict == "provisioned":
            return None
        if verdict == "failed":
            return FailureReason(FailureKind.NO_CAPACITY, redact(f"ProvisioningRequest {bundle.name} {state}"))
        elapsed = clock() - started
        if elapsed >= timeout_s:
            return FailureReason(FailureKind.NO_CAPACITY, redact(
                f"ProvisioningRequest {bundle.name} not granted after {timeout_s:.0f}s "
                f"(gke.capacity.queued.timeout_s; {state})"))
        sleep(min(poll_s, timeout_s - elapsed))


def apply_bundle(apis: KubeApis, bundle: ServerBundle) -> list[str]:
    """Create the Deployment, Service and PodMonitoring; returns notes on what was skipped."""
    for manifest in bundle.manifests():
        validate_manifest(manifest)
    apis.apps.create_namespaced_deployment(bundle.namespace, bundle.deployment)
    apis.core.create_namespaced_service(bundle.namespace, bundle.service)
    if bundle.pod_monitoring is None:
        return []
    try:
        apis.custom.create_namespaced_custom_object(
            PODMONITORING_GROUP, PODMONITORING_VERSION, bundle.namespace, PODMONITORING_PLURAL,
            bundle.pod_monitoring,
        )
    except ApiException as error:
        if error.status != 404:
            raise
        # Managed Prometheus is off in this cluster; the benchmark still scrapes /metrics itself.
        return ["PodMonitoring CRD not installed: server metrics are not exported to Cloud Monitoring"]
    return []


def deploy_server(
    apis: KubeApis,
    bundle: ServerBundle,
    *,
    timeout_s: float,
    poll_s: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DeployOutcome:
    started = clock()
    try:
        for manifest in bundle.manifests():
            validate_manifest(manifest)
        request_capacity(apis, bundle)
        no_capacity = wait_for_capacity(apis, bundle, poll_s=max(poll_s, 10.0), clock=clock, sleep=sleep)
        if no_capacity is not None:
            _clean_up(apis, bundle)
            return DeployOutcome(bundle, Readiness(False, clock() - started, no_capacity))
        notes = apply_bundle(apis, bundle)
    except ApiException as error:
        readiness = Readiness(False, clock() - started, _rejected(error))
        _clean_up(apis, bundle)
        return DeployOutcome(bundle, readiness)
    readiness = wait_until_ready(
        apis.apps, apis.core, namespace=bundle.namespace, name=bundle.name,
        label_selector=selector(bundle.labels), timeout_s=timeout_s, poll_s=poll_s, clock=clock, sleep=sleep,
    )
    if not readiness.ready:
        _clean_up(apis, bundle)
    return DeployOutcome(bundle, readiness, tuple(notes))


def _clean_up(apis: KubeApis, bundle: ServerBundle) -> None:
    teardown_selected(apis.apps, apis.core, apis.custom, bundle.namespace, selector(bundle.labels))


def _rejected(error: ApiException) -> FailureReason:
    message = error.reason or ""
    with contextlib.suppress(TypeError, ValueError, AttributeError):  # a body that is not a Status object
        message = json.loads(error.body).get("message", message)
    return FailureReason(FailureKind.REJECTED, redact(f"{error.status}: {message}"))


def manifests_json(bundle: ServerBundle) -> str:
    """The bundle as the JSON `kubectl apply -f -` accepts (a List), for dry runs and debugging."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": bundle.manifests()}, indent=2)

