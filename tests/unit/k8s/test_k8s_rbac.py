"""The runner Role against the API calls each component in a step pod makes: KFP's driver and launcher,
Argo's executor and servesweep itself. Every call allowed, every grant used by some call."""

from __future__ import annotations

import re

import pytest

from servesweep.k8s.manifests import PODMONITORING_GROUP, PODMONITORING_PLURAL
from servesweep.k8s.queued import PROVREQ_GROUP, PROVREQ_PLURAL
from servesweep.k8s.rbac import (
    COMPONENT_CALLS,
    KFP_LAUNCHER_CONFIGMAP,
    NODE_CALLS,
    NODE_READER_ROLE,
    SERVESWEEP_CALLS,
    Call,
    argo_executor_manifests,
    object_store_calls,
    rbac_manifests,
)
from tests.support.paths import REPO

ROOT = REPO
# kubernetes-client method name -> (group, resource): the resources the code touches.
RESOURCES = {"config_map": ("", "configmaps"), "deployment": ("apps", "deployments"), "service": ("", "services"),
             "pod": ("", "pods"), "pod_log": ("", "pods/log"), "event": ("", "events"),
             "pod_template": ("", "podtemplates")}
# A namespaced custom-object call names its kind by the plural constant (or the dict of them teardown spreads).
CUSTOM_PLURALS = {"PODMONITORING_PLURAL": (PODMONITORING_GROUP, PODMONITORING_PLURAL),
                  "pod_monitorings": (PODMONITORING_GROUP, PODMONITORING_PLURAL),
                  "PROVREQ_PLURAL": (PROVREQ_GROUP, PROVREQ_PLURAL),
                  "provisioning_requests": (PROVREQ_GROUP, PROVREQ_PLURAL)}
VERBS = {"create": "create", "read": "get", "get": "get", "list": "list", "delete": "delete", "patch": "patch"}
CALL = re.compile(r"\.(create|read|get|list|delete|patch)_namespaced_([a-z_]+?)\(")


def _calls(text: str) -> list[tuple[str, str, str]]:
    """(verb, kind, the call's argument text) for every namespaced client call in `text`."""
    found = []
    for match in CALL.finditer(text):
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        found.append((match.group(1), match.group(2), text[match.end():end - 1]))
    return found


def _roles(secret: str | None = None) -> list[dict]:
    manifests = rbac_manifests("servesweep", object_store_secret=secret) + argo_executor_manifests("servesweep")
    return [m for m in manifests if m["kind"] == "Role"]


def _allows(rules: list[dict], call: Call) -> bool:
    return any(call.group in r["apiGroups"] and call.resource in r["resources"] and call.verb in r["verbs"]
               and (not r.get("resourceNames") or call.name in r["resourceNames"]) for r in rules)


def _grants(rules: list[dict]) -> set[tuple[str, str, str, str | None]]:
    return {(group, resource, verb, name) for r in rules for group in r["apiGroups"] for resource in r["resources"]
            for verb in r["verbs"] for name in (r.get("resourceNames") or [None])}


@pytest.mark.parametrize("secret", [None, "mlpipeline-minio-artifact"])
def test_role_allows_every_call_of_every_component_and_nothing_else(secret):
    rules = [rule for role in _roles(secret) for rule in role["rules"]]
    calls = [call for calls in COMPONENT_CALLS.values() for call in calls] + list(object_store_calls(secret))
    denied = [call for call in calls if not _allows(rules, call)]
    assert denied == []
    assert _grants(rules) == {(c.group, c.resource, c.verb, c.name) for c in calls}


def test_kfp_launcher_reads_its_configmap_by_name_and_secrets_only_when_named():
    rules = [rule for role in _roles() for rule in role["rules"]]
    assert _allows(rules, Call("", "configmaps", "get", KFP_LAUNCHER_CONFIGMAP))
    assert not _allows(rules, Call("", "configmaps", "get", "someone-elses"))
    assert not any("secrets" in r["resources"] for r in rules)
    named = [r for role in _roles("mlpipeline-minio-artifact") for r in role["rules"] if "secrets" in r["resources"]]
    assert named == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["mlpipeline-minio-artifact"],
                      "verbs": ["get"]}]


def test_servesweep_calls_list_every_namespaced_call_in_the_code():
    sources = [*sorted((ROOT / "servesweep" / "k8s").glob("*.py")),
               *sorted((ROOT / "servesweep" / "platform" / "gke").glob("*.py"))]
    in_code = set()
    for path in sources:
        for verb, kind, arguments in _calls(path.read_text()):
            if kind != "custom_object":
                in_code.add((*RESOURCES[kind], VERBS[verb]))
                continue
            named = [resource for token, resource in CUSTOM_PLURALS.items() if re.search(rf"\b{token}\b", arguments)]
            assert len(named) == 1, f"{path.name}: a {verb}_namespaced_custom_object call naming {named or 'no kind'}"
            in_code.add((*named[0], VERBS[verb]))
    assert in_code, "the scan found no kubernetes client calls"
    assert in_code == {(c.group, c.resource, c.verb) for c in SERVESWEEP_CALLS}


def _gke(**fields):
    from servesweep.gke_spec import GKESpec

    return GKESpec(project="bench-project", location="us-central1", cluster="bench",
                   model={"source": "huggingface", "repo_id": "org/model"}, **fields)


def test_object_store_secret_is_a_spec_field_that_reaches_the_compiled_role():
    from pipelines.compile import runner_rbac

    def secret_rules(gke):
        [role] = [m for m in runner_rbac(gke, "nvidia-l4", 1) if m["kind"] == "Role"]
        return [r for r in role["rules"] if "secrets" in r["resources"]]

    assert secret_rules(_gke()) == []  # Workload Identity: no Secret readable
    assert secret_rules(_gke(object_store_secret="mlpipeline-minio-artifact")) == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["mlpipeline-minio-artifact"], "verbs": ["get"]}]


@pytest.mark.parametrize("name", ["Not_A_Name", "-minio", "a" * 254, ""])
def test_object_store_secret_must_be_a_secret_name(name):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="object_store_secret"):
        _gke(object_store_secret=name)


def test_the_node_reader_grants_exactly_the_fingerprint_s_node_read():
    source = (ROOT / "servesweep" / "k8s" / "facts.py").read_text()
    assert re.findall(r"\.(read|list|get)_node\(", source) == ["read"]  # the one cluster-scoped call
    manifests = rbac_manifests("servesweep")
    role = next(m for m in manifests if m["kind"] == "ClusterRole" and m["metadata"]["name"] == NODE_READER_ROLE)
    assert _grants(role["rules"]) == {(c.group, c.resource, c.verb, c.name) for c in NODE_CALLS}
    binding = next(m for m in manifests if m["kind"] == "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == NODE_READER_ROLE
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "servesweep-runner", "namespace": "servesweep"}]
    assert not [m for m in rbac_manifests("servesweep", read_nodes=False) if m["kind"].startswith("Cluster")]


def test_read_nodes_false_in_the_gke_spec_leaves_the_cluster_role_out():
    from pipelines.compile import runner_rbac

    kinds = [m["kind"] for m in runner_rbac(_gke(read_nodes=False), "nvidia-l4", 1)]
    assert "ClusterRole" not in kinds and "Role" in kinds
    assert "ClusterRole" in [m["kind"] for m in runner_rbac(_gke(), "nvidia-l4", 1)]


def test_two_namespaces_keep_their_own_cluster_grants():
    """Argo's runner in one namespace and standalone KFP's in `kubeflow` (docs/gke.md): applying the second's RBAC
    must not replace the first's cluster-scoped bindings, whose names the cluster shares."""
    def cluster_scoped(namespace: str) -> dict[tuple[str, str], dict]:
        manifests = rbac_manifests(namespace, compute_classes=["servesweep-nvidia-l4-x1"])
        return {(m["kind"], m["metadata"]["name"]): m for m in manifests if m["kind"].startswith("Cluster")}

    first, second = cluster_scoped("servesweep"), cluster_scoped("kubeflow")
    bindings = [key for key in first if key[0] == "ClusterRoleBinding"]
    assert len(bindings) == 2 and not set(bindings) & set(second)
    for key in bindings:
        assert first[key]["subjects"][0]["namespace"] == "servesweep"
    # The one ClusterRole they may share grants the same thing to both: get nodes.
    shared = set(first) & set(second)
    assert shared == {("ClusterRole", NODE_READER_ROLE)} and first[("ClusterRole", NODE_READER_ROLE)] == \
        second[("ClusterRole", NODE_READER_ROLE)]
