"""Least-privilege RBAC for the identity the pipeline runs as.

One namespaced Role covers a run: create, watch and delete its servers, read pods, logs and events
to explain failures, keep one ConfigMap per job recording the capacity its exit handler
releases, and (queued provisioning) a ProvisioningRequest and its PodTemplate per server. On KFP
every step's pod also runs KFP's driver and launcher as this account, and Argo's
executor under both; `COMPONENT_CALLS` lists the API calls of each, and the Role is exactly their
union (tests/unit/k8s/test_k8s_rbac.py). Secrets only by name, and only for an object store that is not
reached through Workload Identity: a pod that references the token Secret is created without read
access to it (the kubelet fetches it). ComputeClasses are cluster-scoped, so `compute_class`
mode adds a ClusterRole limited to the class names the run may create. A ClusterRole to `get` Nodes (on by
default, `gke.read_nodes`) lets the fingerprint record the server node's machine type and accelerator.

Node pools are not Kubernetes objects: `node_pool` mode needs, on the GCP side, a service account
(bound through Workload Identity, see `workload_identity_sa`) with container.clusters.get,
container.clusters.update and container.operations.get.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from servesweep.k8s.manifests import MANAGED_BY, MANAGED_BY_LABEL, PODMONITORING_GROUP, PODMONITORING_PLURAL, to_dict
from servesweep.k8s.provision import COMPUTE_CLASS_GROUP, COMPUTE_CLASS_PLURAL
from servesweep.k8s.queued import PROVREQ_GROUP, PROVREQ_PLURAL

RBAC_API = "rbac.authorization.k8s.io/v1"
ROLE_NAME = "servesweep-runner"

KFP_LAUNCHER_CONFIGMAP = "kfp-launcher"


@dataclass(frozen=True)
class Call:
    group: str
    resource: str
    verb: str
    name: str | None = None  # the one object it touches, when the caller always knows its name


# Checked against kubeflow/pipelines backend/src/v2 (the driver and launcher images KFP 2.x runs in every step pod):
#   config/env.go FromConfigMap: ConfigMaps(namespace).Get("kfp-launcher"), by driver and launcher (a missing one
#     is fine, a Forbidden one fails the step);
#   objectstore/object_store.go getGCSTokenClient / getS3BucketCredential: Secrets(namespace).Get(secretName), unless
#     the provider is `fromEnv` (GCS through Workload Identity: no Secret); the default minio root reads
#     "mlpipeline-minio-artifact";
#   component/pod_failure.go: Pods(namespace).Get(own pod) to explain a failed step;
#   component/launcher_v2.go creates PVCs only for kfp-kubernetes CreatePVC, which servesweep does not use.
# The driver reaches MLMD and the KFP API over gRPC, not the Kubernetes API.
KFP_CALLS = (
    Call("", "configmaps", "get", KFP_LAUNCHER_CONFIGMAP),
    Call("", "pods", "get"),
)
# Argo 3.4+ executor: outputs reported as WorkflowTaskResults (it runs KFP's steps too).
ARGO_EXECUTOR_CALLS = (Call("argoproj.io", "workflowtaskresults", "create"),
                       Call("argoproj.io", "workflowtaskresults", "patch"))
# servesweep's own, from the kubernetes client calls in servesweep/k8s and servesweep/platform/gke (a test scans
# them).
SERVESWEEP_CALLS = (
    *(Call("", "configmaps", verb) for verb in ("create", "list", "delete")),  # capacity records
    *(Call("apps", "deployments", verb) for verb in ("create", "get", "list", "delete")),
    *(Call("", "services", verb) for verb in ("create", "list", "delete")),
    Call("", "pods", "list"), Call("", "pods/log", "get"), Call("", "events", "list"),
    *(Call(PODMONITORING_GROUP, PODMONITORING_PLURAL, verb) for verb in ("create", "list", "delete")),
    # Queued provisioning (servesweep/k8s/queued.py): the request for a server's node, polled until granted, and the
    # PodTemplate it names; listed and deleted by label at teardown.
    *(Call(PROVREQ_GROUP, PROVREQ_PLURAL, verb) for verb in ("create", "get", "list", "delete")),
    *(Call("", "podtemplates", verb) for verb in ("create", "list", "delete")),
)
# Cluster-scoped: the fingerprint reads the server's Node (servesweep/k8s/facts.py) for its machine type and
# accelerator labels. Node names are not known before scheduling, so `get` cannot be limited by name.
NODE_CALLS = (Call("", "nodes", "get"),)
NODE_READER_ROLE = "servesweep-node-reader"
COMPONENT_CALLS: dict[str, tuple[Call, ...]] = {
    "kfp-driver-launcher": KFP_CALLS, "argo-executor": ARGO_EXECUTOR_CALLS, "servesweep": SERVESWEEP_CALLS,
}


def object_store_calls(secret: str | None) -> tuple[Call, ...]:
    return (Call("", "secrets", "get", secret),) if secret else ()


# (API group, resources, verbs): the calls provision, deploy, readiness and teardown make, and the launcher's.
RUNNER_RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("", ("configmaps",), ("create", "list", "delete")),
    ("", ("pods",), ("get", "list")),
    ("apps", ("deployments",), ("create", "get", "list", "delete")),
    ("", ("services",), ("create", "list", "delete")),
    ("", ("pods/log",), ("get",)),
    ("", ("events",), ("list",)),
    (PODMONITORING_GROUP, (PODMONITORING_PLURAL,), ("create", "list", "delete")),
    (PROVREQ_GROUP, (PROVREQ_PLURAL,), ("create", "get", "list", "delete")),
    ("", ("podtemplates",), ("create", "list", "delete")),
)


def _labels() -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY}


def service_account(namespace: str, name: str, workload_identity_sa: str | None = None) -> k8s.V1ServiceAccount:
    annotations = {"iam.gke.io/gcp-service-account": workload_identity_sa} if workload_identity_sa else None
    return k8s.V1ServiceAccount(
        api_version="v1", kind="ServiceAccount",
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels=_labels(), annotations=annotations),
    )


def _named_rules(object_store_secret: str | None) -> list[k8s.V1PolicyRule]:
    """get by name: `create` and `list` cannot be limited that way, `get` can."""
    named = [Call("", "configmaps", "get", KFP_LAUNCHER_CONFIGMAP), *object_store_calls(object_store_secret)]
    return [k8s.V1PolicyRule(api_groups=[c.group], resources=[c.resource], resource_names=[c.name], verbs=[c.verb])
            for c in named]


def runner_role(namespace: str, name: str = ROLE_NAME, object_store_secret: str | None = None) -> k8s.V1Role:
    rules = [k8s.V1PolicyRule(api_groups=[group], resources=list(resources), verbs=list(verbs))
             for group, resources, verbs in RUNNER_RULES] + _named_rules(object_store_secret)
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


def cluster_role_binding(namespace: str, account: str, role: str = ROLE_NAME,
                         name: str | None = None) -> k8s.V1ClusterRoleBinding:
    # Named after the namespace (default `<role>-<namespace>`): cluster-scoped names are shared, so one binding
    # name for every namespace would let applying a second namespace's RBAC (KFP's `kubeflow` beside Argo's)
    # replace the first one's subject.
    return k8s.V1ClusterRoleBinding(
        api_version=RBAC_API, kind="ClusterRoleBinding",
        metadata=k8s.V1ObjectMeta(name=name or f"{role}-{namespace}", labels=_labels()),
        role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role),
        subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name=account, namespace=namespace)],
    )


def node_reader_role(name: str = NODE_READER_ROLE) -> k8s.V1ClusterRole:
    return k8s.V1ClusterRole(
        api_version=RBAC_API, kind="ClusterRole", metadata=k8s.V1ObjectMeta(name=name, labels=_labels()),
        rules=[k8s.V1PolicyRule(api_groups=[c.group], resources=[c.resource], verbs=[c.verb]) for c in NODE_CALLS],
    )


def rbac_manifests(
    namespace: str,
    account: str = "servesweep-runner",
    *,
    workload_identity_sa: str | None = None,
    compute_classes: Sequence[str] = (),
    object_store_secret: str | None = None,
    read_nodes: bool = True,
) -> list[dict[str, Any]]:
    """Everything to `kubectl apply` once per namespace, as plain dicts (ready for YAML).

    `object_store_secret`: the Secret KFP's launcher reads object-store credentials from, when the
    kfp-launcher ConfigMap's provider is not `fromEnv` (e.g. "mlpipeline-minio-artifact"): the spec's
    `gke.object_store_secret` (pipelines/compile.py runner_rbac). `read_nodes`: a ClusterRole to `get` Nodes,
    so runs record the node's machine type and accelerator (without it those fields stay null, with a note).
    """
    objects: list[Any] = [
        service_account(namespace, account, workload_identity_sa),
        runner_role(namespace, object_store_secret=object_store_secret),
        runner_role_binding(namespace, account),
    ]
    if compute_classes:
        # The ClusterRole names this namespace's classes, so it is per namespace as well.
        role = f"{ROLE_NAME}-{namespace}"
        objects += [compute_class_role(compute_classes, role), cluster_role_binding(namespace, account, role, role)]
    if read_nodes:
        objects += [node_reader_role(), cluster_role_binding(namespace, account, NODE_READER_ROLE)]
    return [to_dict(obj) for obj in objects]


ARGO_EXECUTOR_ROLE = "servesweep-argo-executor"


def argo_executor_manifests(namespace: str, account: str = "servesweep-runner") -> list[dict[str, Any]]:
    """What Argo (3.4+) needs of a workflow pod's account: report the step's outputs as WorkflowTaskResults.

    KFP runs its steps on Argo, so a KFP runner needs it as much as an Argo one.
    """
    role = k8s.V1Role(
        api_version=RBAC_API, kind="Role",
        metadata=k8s.V1ObjectMeta(name=ARGO_EXECUTOR_ROLE, namespace=namespace, labels=_labels()),
        rules=[k8s.V1PolicyRule(api_groups=["argoproj.io"], resources=["workflowtaskresults"],
                                verbs=[call.verb for call in ARGO_EXECUTOR_CALLS])],
    )
    return [to_dict(role), to_dict(runner_role_binding(namespace, account, ARGO_EXECUTOR_ROLE))]
