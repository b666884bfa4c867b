"""Delete what a run deployed, found by its labels, whatever state it is in.

Safe to call twice and after a partial deploy: objects already gone are skipped, and a failure to
delete one object does not stop the others; the report lists what failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from servesweep.k8s.manifests import (
    PODMONITORING_GROUP,
    PODMONITORING_PLURAL,
    PODMONITORING_VERSION,
    deployment_labels,
    owner_labels,
    run_labels,
    selector,
)
from servesweep.k8s.queued import PROVREQ_GROUP, PROVREQ_PLURAL, PROVREQ_VERSION


@dataclass
class TeardownReport:
    deleted: list[str] = field(default_factory=list)  # "Kind/name"
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def teardown_run(
    apps: k8s.AppsV1Api, core: k8s.CoreV1Api, custom: k8s.CustomObjectsApi, namespace: str, run_id: str
) -> TeardownReport:
    """Delete every Deployment, Service and PodMonitoring of the run."""
    return teardown_selected(apps, core, custom, namespace, selector(run_labels(run_id)))


def teardown_owner(
    apps: k8s.AppsV1Api, core: k8s.CoreV1Api, custom: k8s.CustomObjectsApi, namespace: str, owner: str
) -> TeardownReport:
    """Delete every server object one pipeline job created (its exit handler), whatever run id it got."""
    return teardown_selected(apps, core, custom, namespace, selector(owner_labels(owner)))


def teardown_deployment(
    apps: k8s.AppsV1Api, core: k8s.CoreV1Api, custom: k8s.CustomObjectsApi, namespace: str, run_id: str,
    deployment_id: str,
) -> TeardownReport:
    """Delete one server of the run (between redeploys of a server-side sweep)."""
    return teardown_selected(apps, core, custom, namespace, selector(deployment_labels(run_id, deployment_id)))


def teardown_selected(
    apps: k8s.AppsV1Api, core: k8s.CoreV1Api, custom: k8s.CustomObjectsApi, namespace: str, label_selector: str
) -> TeardownReport:
    """Delete the Deployments, Services, PodMonitorings and (queued provisioning) ProvisioningRequests and
    PodTemplates that match `label_selector`."""
    report = TeardownReport()
    pod_monitorings = dict(group=PODMONITORING_GROUP, version=PODMONITORING_VERSION, namespace=namespace,
                           plural=PODMONITORING_PLURAL)
    provisioning_requests = dict(group=PROVREQ_GROUP, version=PROVREQ_VERSION, namespace=namespace,
                                 plural=PROVREQ_PLURAL)
    kinds: list[tuple[str, Callable[[], list[str]], Callable[[str], object]]] = [
        ("Deployment",
         lambda: _names(apps.list_namespaced_deployment(namespace, label_selector=label_selector).items),
         lambda name: apps.delete_namespaced_deployment(name, namespace, propagation_policy="Background")),
        ("Service",
         lambda: _names(core.list_namespaced_service(namespace, label_selector=label_selector).items),
         lambda name: core.delete_namespaced_service(name, namespace)),
        ("PodMonitoring",
         lambda: [item["metadata"]["name"] for item in custom.list_namespaced_custom_object(
             **pod_monitorings, label_selector=label_selector).get("items", [])],
         lambda name: custom.delete_namespaced_custom_object(**pod_monitorings, name=name)),
        # The request before its template: a granted request gives its node back once deleted.
        ("ProvisioningRequest",
         lambda: [item["metadata"]["name"] for item in custom.list_namespaced_custom_object(
             **provisioning_requests, label_selector=label_selector).get("items", [])],
         lambda name: custom.delete_namespaced_custom_object(**provisioning_requests, name=name)),
        ("PodTemplate",
         lambda: _names(core.list_namespaced_pod_template(namespace, label_selector=label_selector).items),
         lambda name: core.delete_namespaced_pod_template(name, namespace)),
    ]
    for kind, list_names, delete in kinds:
        _delete_all(kind, list_names, delete, report)
    return report


def _names(items: list[Any]) -> list[str]:
    return [item.metadata.name for item in items]


def _delete_all(
    kind: str, list_names: Callable[[], list[str]], delete: Callable[[str], object], report: TeardownReport
) -> None:
    try:
        names = list_names()
    except ApiException as error:
        if error.status != 404:  # 404: the PodMonitoring or ProvisioningRequest CRD is absent: nothing to delete
            report.errors.append(f"{kind}: list failed: {error.status} {error.reason}")
        return
    for name in names:
        try:
            delete(name)
            report.deleted.append(f"{kind}/{name}")
        except ApiException as error:
            if error.status != 404:
                report.errors.append(f"{kind}/{name}: {error.status} {error.reason}")
