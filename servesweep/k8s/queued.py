"""Flex-start with queued provisioning: a ProvisioningRequest, and the PodTemplate it names, for one server.

GKE's queued provisioning (Dynamic Workload Scheduler; docs.cloud.google.com/kubernetes-engine/docs/how-to/
provisioningrequest) grants a node pool created with `--enable-queued-provisioning --flex-start` only to a
ProvisioningRequest of class `queued-provisioning.gke.io`: the request's podSets name a PodTemplate shaped like the
pods that will consume it, the cluster autoscaler sets the request's `Provisioned` condition once the nodes exist
(or `Failed`), and a pod annotated with the request's name then schedules on them.

The API is the cluster autoscaler's CRD `provisioningrequests.autoscaling.x-k8s.io`, version v1 (kubernetes/
autoscaler cluster-autoscaler/apis/config/crd/autoscaling.x-k8s.io_provisioningrequests.yaml: v1 served and
stored, v1beta1 deprecated; GKE serves v1 on the versions flex-start needs, 1.32.2-gke.1652000 and later, GKE
"About flex-start provisioning mode"). Its spec: provisioningClassName (immutable), podSets (1..32 of {count >= 1,
podTemplateRef.name}) and parameters (string values of at most 255 characters; GKE's class reads
maxRunDurationSeconds). tests/fixtures/k8s/provisioningrequest_v1.schema.json holds that schema for the tests.

Pure rendering and status reading here; deploy.py creates the objects and waits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client as k8s

from servesweep.gke_spec import QueuedProvisioningSpec

PROVREQ_GROUP = "autoscaling.x-k8s.io"
PROVREQ_VERSION = "v1"
PROVREQ_PLURAL = "provisioningrequests"
QUEUED_CLASS = "queued-provisioning.gke.io"

# The annotations that make a pod consume a granted request. kubernetes/autoscaler reads the autoscaling.x-k8s.io
# keys (apis/provisioningrequest/autoscaling.x-k8s.io/v1/types.go: ProvisioningRequestPodAnnotationKey,
# ProvisioningClassPodAnnotationKey) and still the older cluster-autoscaler.kubernetes.io ones
# (provisioningrequest/pods/pods.go: DeprecatedProvisioningRequestPodAnnotationKey, ...ClassPodAnnotationKey), which
# older GKE autoscalers know alone: the pods carry both.
CONSUME_ANNOTATIONS = ("autoscaling.x-k8s.io/consume-provisioning-request",
                       "cluster-autoscaler.kubernetes.io/consume-provisioning-request")
CLASS_ANNOTATIONS = ("autoscaling.x-k8s.io/provisioning-class-name",
                     "cluster-autoscaler.kubernetes.io/provisioning-class-name")
# GKE taints queued-provisioning nodes with this (NoSchedule); a pod that should run there tolerates it.
QUEUED_TAINT = "cloud.google.com/gke-queued"


def consume_annotations(request: str) -> dict[str, str]:
    return {**dict.fromkeys(CONSUME_ANNOTATIONS, request), **dict.fromkeys(CLASS_ANNOTATIONS, QUEUED_CLASS)}


def queued_toleration() -> k8s.V1Toleration:
    return k8s.V1Toleration(key=QUEUED_TAINT, operator="Equal", value="true", effect="NoSchedule")


def render_pod_template(name: str, namespace: str, labels: Mapping[str, str],
                        template: k8s.V1PodTemplateSpec) -> k8s.V1PodTemplate:
    """The PodTemplate the request names: the server Deployment's own pod template, so the scheduling fields the
    autoscaler sizes the node by (resources, node selector, tolerations) are the consuming pod's."""
    return k8s.V1PodTemplate(
        api_version="v1", kind="PodTemplate",
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels=dict(labels)),
        template=template,
    )


def render_provisioning_request(name: str, namespace: str, labels: Mapping[str, str], pod_template: str,
                                queued: QueuedProvisioningSpec, count: int = 1) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "provisioningClassName": QUEUED_CLASS,
        "podSets": [{"count": count, "podTemplateRef": {"name": pod_template}}],
    }
    if queued.max_run_duration_s is not None:
        spec["parameters"] = {"maxRunDurationSeconds": str(queued.max_run_duration_s)}
    return {
        "apiVersion": f"{PROVREQ_GROUP}/{PROVREQ_VERSION}",
        "kind": "ProvisioningRequest",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": spec,
    }


def request_state(request: Mapping[str, Any]) -> tuple[str, str]:
    """("provisioned" | "failed" | "pending", what the conditions say): Provisioned=True is granted, Failed=True
    (or the booking expired, or the capacity was revoked) will not be, anything else is still in the queue."""
    conditions = {c.get("type"): c for c in request.get("status", {}).get("conditions", []) or []}

    def true(kind: str) -> bool:
        return bool(conditions.get(kind, {}).get("status") == "True")

    def said(kind: str) -> str:
        condition = conditions.get(kind, {})
        text = condition.get("message") or condition.get("reason") or kind
        return f"{kind}: {text}"

    if true("Failed"):
        return "failed", said("Failed")
    if true("Provisioned"):
        return "provisioned", said("Provisioned")
    for kind in ("BookingExpired", "CapacityRevoked"):
        if true(kind):
            return "failed", said(kind)
    latest = max(conditions.values(), key=lambda c: c.get("lastTransitionTime", ""), default=None)
    return "pending", said(latest["type"]) if latest else "no conditions yet"
