"""The runner Role against the API calls each component in a step pod makes: KFP's driver and launcher,
Argo's executor and servesweep itself. Every call allowed, every grant used by some call."""

from __future__ import annotations

import re

import pytest

from servesweep.k8s.manifests import PODMONITORING_GROUP, PODMONITORING_PLURAL
from servesweep.k8s.rbac import (
    COMPONENT_CALLS,
    KFP_LAUNCHER_CONFIGMAP,
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
             "custom_object": (PODMONITORING_GROUP, PODMONITORING_PLURAL)}
VERBS = {"create": "create", "read": "get", "list": "list", "delete": "delete", "patch": "patch"}
CALL = re.compile(r"\.(create|read|list|delete|patch)_namespaced_([a-z_]+?)\(")


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
    found = {(verb, kind) for path in sources for verb, kind in CALL.findall(path.read_text())}
    assert found, "the scan found no kubernetes client calls"
    in_code = {(*RESOURCES[kind], VERBS[verb]) for verb, kind in found}
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
