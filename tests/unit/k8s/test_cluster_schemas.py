"""Every compiled manifest checked the way a cluster would check it.

- Kubernetes objects: kubernetes-validate in strict mode (unknown fields are errors), against the oldest and the
  newest Kubernetes minor GKE serves (tests/support/gke_versions.py, from GKE's release notes of late 2026: 1.31 in
  the Extended channel, 1.37 in Rapid; kubernetes-validate 1.37 ships schemas 1.25..1.37).
- CRDs (PodMonitoring, ComputeClass, ProvisioningRequest) have no schema in kubernetes-validate; servesweep.k8s.validate
  checks them, and the ProvisioningRequest also meets its CRD's schema (tests/fixtures/k8s).
- The Argo Workflow: against Argo's published JSON schema (api/jsonschema/schema.json of argoproj/argo-workflows
  v3.7.0, the version docs/gke.md installs; tests/fixtures/argo), made strict the way kubernetes-validate is (an
  object's unknown keys are errors), and structurally against hera's models, which are generated from the same
  OpenAPI spec: every key must be a field of its model, recursively, and the document must parse into them.
- The KFP IR: compiled, then loaded back by the KFP SDK as a component.
"""

from __future__ import annotations

import gzip
import json
import typing
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from hera.workflows import models as m
from kfp import components
from pydantic import BaseModel
from typer.testing import CliRunner

from pipelines.compile import ARGO, KFP_GKE, KFP_LOCAL
from servesweep.cli import app
from servesweep.gke_spec import CapacitySpec, GKESpec
from servesweep.k8s.manifests import build_server_bundle, to_dict
from servesweep.k8s.rbac import argo_executor_manifests, rbac_manifests
from servesweep.k8s.servers import SERVERS, ServerOptions
from servesweep.spec import PipelineParams
from tests.support.gke_versions import GKE_NEWEST, GKE_OLDEST
from tests.support.paths import REPO

ROOT = REPO

GKE = GKESpec(project="bench-project", location="us-central1", cluster="bench",
              model={"source": "huggingface", "repo_id": "meta-llama/Llama-3.1-8B-Instruct", "token_secret": "hf"},
              images={"transformers": "us-docker.pkg.dev/bench-project/servers/transformers:4.57"})
ACCELERATOR = {"gpu": "nvidia-l4", "tpu": "tpu-v5-lite-podslice"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compiled")
    result = CliRunner().invoke(app, ["compile", "--out", str(out), "--gke-spec", str(ROOT / "specs" / "gke.yaml"),
                                      "--deploy-out", str(out / "deploy")])
    assert result.exit_code == 0, result.output
    return out


def _server_manifests() -> list[dict[str, Any]]:
    manifests = []
    for kind, info in SERVERS.items():
        accelerator = ACCELERATOR[info.accelerator_kind]
        selector = {"cloud.google.com/gke-accelerator": accelerator}
        bundle = build_server_bundle(gke=GKE, run_id="run-1", deployment_id=f"{kind}-b8", kind=kind,
                                     options=ServerOptions(), served_name="llama3-8b",
                                     accelerator=accelerator, node_selector=selector, owner="job-1",
                                     secret_env={"API_KEY": ("server-key", "key")})
        manifests += [to_dict(bundle.deployment), to_dict(bundle.service)]
    # Flex-start with queued provisioning: the Deployment, its PodTemplate (and the ProvisioningRequest, checked
    # against its CRD's schema below).
    queued = GKE.model_copy(update={"provisioning": "node_pool", "capacity": CapacitySpec(
        kinds=["flex_start"], queued={"timeout_s": 600, "max_run_duration_s": 86_400})})
    bundle = build_server_bundle(gke=queued, run_id="run-1", deployment_id="vllm-q", kind="vllm",
                                 options=ServerOptions(tensor_parallel=8), served_name="llama3-8b",
                                 accelerator="nvidia-h100-80gb", node_selector={}, owner="job-1")
    return manifests + [m for m in bundle.manifests() if m["kind"] in ("Deployment", "PodTemplate")]


def _crd_manifests() -> list[dict[str, Any]]:
    queued = GKE.model_copy(update={"provisioning": "node_pool", "capacity": CapacitySpec(
        kinds=["flex_start"], queued={"timeout_s": 600, "max_run_duration_s": 86_400})})
    bundle = build_server_bundle(gke=queued, run_id="run-1", deployment_id="vllm-q", kind="vllm",
                                 options=ServerOptions(tensor_parallel=8), served_name="llama3-8b",
                                 accelerator="nvidia-h100-80gb", node_selector={}, owner="job-1")
    return [m for m in bundle.manifests() if m["kind"] == "ProvisioningRequest"]


def test_provisioning_request_validates_against_its_crd_schema():
    # tests/fixtures/k8s/provisioningrequest_v1.schema.json: the v1 CRD's openAPIV3Schema (kubernetes/autoscaler).
    schema = json.loads((ROOT / "tests" / "fixtures" / "k8s" / "provisioningrequest_v1.schema.json").read_text())
    [request] = _crd_manifests()
    jsonschema.validate(request, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**request, "spec": {**request["spec"], "podSet": request["spec"]["podSets"]}}, schema)


def _builtin_manifests(compiled: Path) -> list[dict[str, Any]]:
    deployed = [doc for path in sorted((compiled / "deploy").glob("*.yaml"))
                for doc in yaml.safe_load_all(path.read_text()) if doc]
    extra = rbac_manifests("servesweep", compute_classes=["servesweep-nvidia-l4-x1"],
                           object_store_secret="mlpipeline-minio-artifact") + argo_executor_manifests("servesweep")
    return deployed + extra + _server_manifests()


@pytest.mark.parametrize("version", [GKE_OLDEST, GKE_NEWEST])
def test_every_kubernetes_manifest_validates_strictly(compiled, version):
    manifests = _builtin_manifests(compiled)
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "PodTemplate"} <= kinds
    for manifest in manifests:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_kubernetes_validate_has_the_oldest_and_newest_gke_versions():
    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"  # v1.25.0-local-strict, ...
    shipped = {tuple(map(int, d.name[1:].split("-")[0].split(".")[:2])) for d in schemas.glob("v*-local-strict")}
    assert {(1, 31), (1, 37)} <= shipped, f"kubernetes-validate {kubernetes_validate.latest_version()} lacks one"
    assert tuple(map(int, GKE_NEWEST.split(".")[:2])) == max(shipped)  # nothing newer to check against


def test_strict_validation_catches_a_misspelt_field():
    [deployment, _] = _server_manifests()[:2]
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, GKE_NEWEST, strict=True)


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside Optional[...], List[...], Dict[str, ...] and Annotated[...]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        args = args[:1]
    return [model for arg in args for model in _models(arg)]


def _unknown_keys(value: Any, annotation: Any, path: str) -> list[str]:
    if isinstance(value, list):
        return [key for i, item in enumerate(value) for key in _unknown_keys(item, annotation, f"{path}[{i}]")]
    models = _models(annotation)
    if not isinstance(value, dict) or not models:
        return []
    model = models[0]
    if not model.model_fields:  # a free-form map in the schema (e.g. labels)
        return []
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    if set(fields) == {"__root__"} or "root" in model.model_fields:
        return []
    unknown = [f"{path}.{key}" for key in value if key not in fields]
    return unknown + [k for key, item in value.items() if key in fields
                      for k in _unknown_keys(item, fields[key].annotation, f"{path}.{key}")]


def test_argo_workflow_matches_argos_schema_structurally(compiled):
    document = yaml.safe_load((compiled / ARGO).read_text())
    assert (document["apiVersion"], document["kind"]) == ("argoproj.io/v1alpha1", "Workflow")
    m.Workflow.model_validate(document)
    assert _unknown_keys(document, m.Workflow, "Workflow") == []
    misspelt = document | {"spec": document["spec"] | {"entryPoint": "servesweep"}}
    assert _unknown_keys(misspelt, m.Workflow, "Workflow") == ["Workflow.spec.entryPoint"]
    deep = yaml.safe_load((compiled / ARGO).read_text())
    deep["spec"]["templates"][0]["container"]["imagee"] = "x"
    assert _unknown_keys(deep, m.Workflow, "Workflow") == ["Workflow.spec.templates[0].container.imagee"]


ARGO_SCHEMA = ROOT / "tests" / "fixtures" / "argo" / "schema-v3.7.0.json.gz"


def _strict(node: Any) -> Any:
    """The schema with every object that lists its properties closed to others (kubernetes-validate's strict)."""
    if isinstance(node, dict):
        closed = {key: _strict(value) for key, value in node.items()}
        if node.get("type") == "object" and "properties" in node:
            closed.setdefault("additionalProperties", False)
        return closed
    return [_strict(item) for item in node] if isinstance(node, list) else node


@pytest.fixture(scope="module")
def argo_validator() -> jsonschema.Draft7Validator:
    with gzip.open(ARGO_SCHEMA) as handle:
        return jsonschema.Draft7Validator(_strict(json.load(handle)))


def test_argo_workflow_validates_against_argos_published_schema(compiled, argo_validator):
    document = yaml.safe_load((compiled / ARGO).read_text())
    assert [error.message for error in argo_validator.iter_errors(document)] == []
    # The checks bite: an unknown key, and an integer where the schema's int-or-string fields take strings.
    misspelt = yaml.safe_load((compiled / ARGO).read_text())
    misspelt["spec"]["templates"][0]["container"]["imagee"] = "x"
    assert not argo_validator.is_valid(misspelt)
    integer = yaml.safe_load((compiled / ARGO).read_text())
    integer["spec"]["templates"][0]["retryStrategy"]["limit"] = 2
    assert not argo_validator.is_valid(integer)


@pytest.mark.parametrize("package", [KFP_LOCAL, KFP_GKE])
def test_kfp_ir_loads_back_as_a_component(compiled, package):
    loaded = components.load_component_from_file(str(compiled / package))
    assert loaded.name == "servesweep"
    assert set(loaded.component_spec.inputs) == set(PipelineParams.model_fields) | {"baseline_accelerator"}

