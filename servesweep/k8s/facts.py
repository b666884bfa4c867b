"""What a ready server ran as, read back from the cluster: its pod's image and digest, its node's type.

For the run's fingerprint (servesweep.fingerprint): a tag such as `vllm/vllm-openai:latest` names no
fixed image, the digest the node pulled does. Whatever cannot be read stays out (None): the facts are a
record, never a reason to fail a deployment. The machine type is a label of the node, a cluster-scoped
object: the runner's namespaced Role (servesweep.k8s.rbac) does not grant `nodes get`, so where it is not
granted otherwise the type stays null and `node_note` says why.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from servesweep.k8s.manifests import to_dict

_UNREADABLE = (ApiException, HTTPError)  # refused, or the API server did not answer
SERVER_CONTAINER = "server"
_MACHINE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"


def server_facts(core: k8s.CoreV1Api, namespace: str, label_selector: str) -> dict[str, str | None]:
    """server_image, server_image_digest, node_machine_type and node_accelerator of the server's pod."""
    try:
        pods = [to_dict(pod) for pod in core.list_namespaced_pod(namespace, label_selector=label_selector).items]
    except _UNREADABLE:
        return {}
    running = [pod for pod in pods if pod.get("status", {}).get("phase") == "Running"] or pods
    if not running:
        return {}
    pod = running[0]
    container, status = _server_container(pod)
    labels, note = _node_labels(core, pod.get("spec", {}).get("nodeName"))
    return {
        "server_image": container.get("image") or status.get("image"),
        "server_image_digest": image_digest(status.get("imageID")),
        "node_machine_type": next((labels[key] for key in _MACHINE_TYPE_LABELS if labels.get(key)), None),
        "node_accelerator": labels.get(_ACCELERATOR_LABEL),
        "node_note": note,
    }


def image_digest(image_id: str | None) -> str | None:
    """`sha256:...` of a container status's imageID (`registry/repo@sha256:...`)."""
    if not image_id or "@" not in image_id:
        return image_id or None
    return image_id.rsplit("@", 1)[1]


def _server_container(pod: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    containers = pod.get("spec", {}).get("containers") or [{}]
    container = next((c for c in containers if c.get("name") == SERVER_CONTAINER), containers[0])
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    status = next((s for s in statuses if s.get("name") == container.get("name", SERVER_CONTAINER)), statuses[0])
    return container, status


def _node_labels(core: k8s.CoreV1Api, node: str | None) -> tuple[dict[str, str], str | None]:
    """The node's labels, or why there are none."""
    if not node:
        return {}, "the pod names no node"
    try:
        return to_dict(core.read_node(node)).get("metadata", {}).get("labels") or {}, None
    except ApiException as error:
        return {}, f"reading node {node} failed: HTTP {error.status} (the runner needs RBAC nodes get: gke.read_nodes)"
    except HTTPError as error:
        return {}, f"reading node {node} failed: {error}"[:300]
