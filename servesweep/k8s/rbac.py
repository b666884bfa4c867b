"""Least-privilege RBAC for the identity the pipeline runs as.

One namespaced Role covers a run: create, watch and delete its servers, read pods, logs and events
to explain failures, and keep one ConfigMap per job recording the capacity its exit handler
releases. Nothing on Secrets: a pod that references the token Secret is created without read
access to it (the kubelet fetches it). ComputeClasses are cluster-scoped, so `compute_class`
mode adds a ClusterRole limited to the class names the run may create.

Node pools are not Kubernetes objects: `node_pool` mode needs, on the GCP side, a service account
(bound through Workload Identity, see `workload_identity_sa`) with container.clusters.get,
container.clusters.update and container.operations.get.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubernetes import client as k8s

from servesweep.k8s.manifests import MANAGED_BY, MANAGED_BY_LABEL, PODMONITORING_GROUP, PODMONITORING_PLURAL, to_dict
from servesweep.k8s.provision import COMPUTE_CLASS_GROUP, COMPUTE_CLASS_PLURAL

RBAC_API = "rbac.authorization.k8s.io/v1"
ROLE_NAME = "servesweep-runner"

# (API group, resources, verbs): exactly the calls provision, deploy, readiness and teardown make.
RUNNER_RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("", ("configmaps",), ("create", "list", "delete")),
    ("apps", ("deployments",), ("create", "get", "list", "delete")),
    ("", ("services",), ("create", "list", "delete")),
    ("", ("pods",), ("list",)),
    ("", ("pods/log",), ("get",)),
    ("", ("events",), ("list",)),
    (PODMONITORING_GROUP, (PODMONITORING_PLURAL,), ("create", "list", "delete")),
)


def _labels() -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY}


def service_account(namespace: str, name: str, workload_identity_sa: str | None = None) -> k8s.V1ServiceAccount:
    annotations = {"iam.gke.io/gcp-service-account": workload_identity_sa} if workload_identity_sa else None
    return k8s.V1ServiceAccount(
        api_version="v1", kind="ServiceAccount",
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels=_labels(), annotations=annotations),
    )


def runner_role(namespace: str, name: str = ROLE_NAME) -> k8s.V1Role:
    rules = [k8s.V1PolicyRule(api_groups=[group], resources=list(resources), verbs=list(verbs))
             for group, resources, verbs in RUNNER_RULES]
    return k8s.V1Role(
        api_version=RBAC_API, kind="Role",
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels=_labels()), rules=rules,
    )


def runner_role_binding(namespace: str, account: str, role: str = ROLE_NAME) -> k8s.V1RoleBinding:
    return k8s.V1RoleBinding(
        api_version=RBAC_API, kind="RoleBinding",
        metadata=k8s.V1ObjectMeta(name=role, namespace=namespace, labels=_labels()),
        role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=role),
        subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name=account, namespace=namespace)],
    )


def compute_class_role(class_names: Sequence[str], name: str = ROLE_NAME) -> k8s.V1ClusterRole:
    # `create` cannot be limited by name in RBAC; get/delete can, to the classes this run owns.
    return k8s.V1ClusterRole(
        api_version=RBAC_API, kind="ClusterRole",
        metadata=k8s.V1ObjectMeta(name=name, labels=_labels()),
        rules=[
            k8s.V1PolicyRule(api_groups=[COMPUTE_CLASS_GROUP], resources=[COMPUTE_CLASS_PLURAL], verbs=["create"]),
            k8s.V1PolicyRule(api_groups=[COMPUTE_CLASS_GROUP], resources=[COMPUTE_CLASS_PLURAL],
                             resource_names=list(class_names), verbs=["get", "delete"]),
        ],
    )


def compute_class_role_binding(namespace: str, account: str, role: str = ROLE_NAME) -> k8s.V1ClusterRoleBinding:
    return k8s.V1ClusterRoleBinding(
        api_version=RBAC_API, kind="ClusterRoleBinding",
        metadata=k8s.V1ObjectMeta(name=role, labels=_labels()),
        role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role),
        subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name=account, namespace=namespace)],
    )


def rbac_manifests(
    namespace: str,
    account: str = "servesweep-runner",
    *,
    workload_identity_sa: str | None = None,
    compute_classes: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Everything to `kubectl apply` once per namespace, as plain dicts (ready for YAML)."""
    objects: list[Any] = [
        service_account(namespace, account, workload_identity_sa),
        runner_role(namespace),
        runner_role_binding(namespace, account),
    ]
    if compute_classes:
        objects += [compute_class_role(compute_classes), compute_class_role_binding(namespace, account)]
    return [to_dict(obj) for obj in objects]


ARGO_EXECUTOR_ROLE = "servesweep-argo-executor"


def argo_executor_manifests(namespace: str, account: str = "servesweep-runner") -> list[dict[str, Any]]:
    """What Argo (3.4+) needs of a workflow pod's account: report the step's outputs as WorkflowTaskResults."""
    role = k8s.V1Role(
        api_version=RBAC_API, kind="Role",
        metadata=k8s.V1ObjectMeta(name=ARGO_EXECUTOR_ROLE, namespace=namespace, labels=_labels()),
        rules=[k8s.V1PolicyRule(api_groups=["argoproj.io"], resources=["workflowtaskresults"],
                                verbs=["create", "patch"])],
    )
    return [to_dict(role), to_dict(runner_role_binding(namespace, account, ARGO_EXECUTOR_ROLE))]
