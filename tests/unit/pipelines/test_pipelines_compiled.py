"""Golden-file tests of the compiled definitions: `servesweep compile` into a temporary directory, the
structure of each file (tests/support/pipeline_structure.py) against tests/golden/*.json, and the properties
that must hold whatever the golden files say: one DAG on both orchestrators, an exit handler, runner
pod settings on GKE, RBAC that validates.

Regenerate the golden files after an intended change:
SERVESWEEP_UPDATE_GOLDEN=1 pytest tests/unit/pipelines/test_pipelines_compiled.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.compile import ARGO, KFP_GKE, KFP_LOCAL, RBAC, RBAC_ARGO
from servesweep.cli import app
from servesweep.k8s.validate import validate_manifest
from servesweep.spec import BenchmarkSpec, PipelineParams, load_spec
from tests.support.paths import REPO, TESTS
from tests.support.pipeline_structure import argo_step_ancestors, argo_structure, kfp_step_ancestors, kfp_structure

ROOT = REPO
GOLDEN = TESTS / "golden"
GKE_SPEC = ROOT / "specs" / "gke.yaml"
UPDATE = os.environ.get("SERVESWEEP_UPDATE_GOLDEN") == "1"

STEPS = {"resolve-spec", "plan", "provision", "load-model", "quantize", "plan-sweep", "deploy-server", "sweep",
         "accuracy", "teardown-server", "collect-metrics", "write-lake", "report", "check-points"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("compiled")
    result = CliRunner().invoke(app, ["compile", "--out", str(out), "--gke-spec", str(GKE_SPEC),
                                      "--deploy-out", str(out / "deploy")])
    assert result.exit_code == 0, result.output
    return {name: out / name for name in (KFP_LOCAL, KFP_GKE, ARGO)} | {
        name: out / "deploy" / name for name in (RBAC, RBAC_ARGO)}


def _check_golden(name: str, structure: dict) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(structure, indent=1, sort_keys=True, default=sorted) + "\n"
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}; run with SERVESWEEP_UPDATE_GOLDEN=1"
    assert json.loads(text) == json.loads(path.read_text()), f"{name} changed; if intended, SERVESWEEP_UPDATE_GOLDEN=1"


@pytest.mark.parametrize(("file", "golden"), [(KFP_LOCAL, "kfp_local"), (KFP_GKE, "kfp_gke")])
def test_kfp_structure_matches_golden(compiled, file, golden):
    _check_golden(golden, kfp_structure(compiled[file]))


def test_argo_structure_matches_golden(compiled):
    _check_golden("argo", argo_structure(compiled[ARGO]))


def test_both_orchestrators_run_the_same_dag(compiled):
    kfp = kfp_step_ancestors(kfp_structure(compiled[KFP_GKE]))
    argo = argo_step_ancestors(argo_structure(compiled[ARGO]))
    assert kfp.pop("teardown-all") == STEPS  # KFP's exit handler waits for everything
    assert set(kfp) == set(argo) == STEPS
    assert kfp == argo
    assert argo["load-model"] == {"resolve-spec", "plan", "provision"}
    assert argo["quantize"] == {"resolve-spec", "plan", "provision", "load-model"}
    assert argo["accuracy"] == {"resolve-spec", "plan", "provision", "load-model", "quantize", "plan-sweep",
                                "deploy-server", "sweep"}  # after the sweep, on its server
    assert argo["teardown-server"] == argo["accuracy"] | {"accuracy"}
    assert "accuracy" in argo["write-lake"]  # its rows go into the lake with the sweep's
    assert argo["report"] == STEPS - {"report", "check-points"}
    assert argo["check-points"] == STEPS - {"check-points"}  # the verdict comes after the lake and the report


def test_exit_handler_and_one_deployment_at_a_time(compiled):
    kfp = kfp_structure(compiled[KFP_GKE])
    teardown = kfp["dags"]["root"]["teardown-all"]
    assert teardown["trigger"] == "ALL_UPSTREAM_TASKS_COMPLETED" and teardown["after"] == ["exit-handler-1"]
    loops = [t for dag in kfp["dags"].values() for t in dag.values() if "loop_parallelism" in t]
    assert [t["loop_parallelism"] for t in loops] == [1]

    argo = argo_structure(compiled[ARGO])
    assert argo["on_exit"] == "teardown-all" and "teardown-all" in argo["steps"]
    assert argo["dags"][argo["entrypoint"]]["parallelism"] == 1
    finished = "{0}.Succeeded || {0}.Failed || {0}.Errored"
    assert argo["dags"]["deployment"]["tasks"]["accuracy"]["depends"] == finished.format("sweep")
    assert argo["dags"]["deployment"]["tasks"]["teardown-server"]["depends"] == (
        f"({finished.format('sweep')}) && ({finished.format('accuracy')})")
    retried = {name for name, step in argo["steps"].items() if step["retry"]}
    assert {"deploy-server", "sweep", "teardown-server", "teardown-all"} <= retried
    assert argo["steps"]["sweep"]["keyed_artifacts"]["raw"].startswith(
        argo["steps"]["collect-metrics"]["keyed_artifacts"]["raws"] + "/")
    assert argo["steps"]["accuracy"]["keyed_artifacts"]["scores"].startswith(
        argo["steps"]["write-lake"]["keyed_artifacts"]["scores"] + "/")


def test_parameters_are_typed_and_the_same_on_both(compiled):
    local = kfp_structure(compiled[KFP_LOCAL])["parameters"]
    gke = kfp_structure(compiled[KFP_GKE])["parameters"]
    argo = argo_structure(compiled[ARGO])["parameters"]
    assert set(local) == set(gke) == set(argo) == set(PipelineParams.model_fields) | {"baseline_accelerator"}
    assert {local[name]["type"] for name in ("batch_sizes", "sweep_modes")} == {"LIST"}
    assert local["accelerator_count"]["type"] == "NUMBER_INTEGER"
    assert local["slo_ttft_p99_ms"]["type"] == "NUMBER_DOUBLE"
    assert local["accelerator"]["default"] == "cpu"  # the local package keeps the local defaults
    assert local["baseline_accelerator"]["default"] == gke["baseline_accelerator"]["default"] == argo[
        "baseline_accelerator"]
    spec = load_spec(GKE_SPEC)
    assert gke["accelerator"]["default"] == argo["accelerator"] == spec.accelerator.type
    assert gke["spec_yaml"]["default"]["gke"] == argo["spec_yaml"]["gke"] == spec.model_dump(mode="json")["gke"]


def test_gke_pods_get_the_runner_settings(compiled):
    spec = load_spec(GKE_SPEC)
    runner = spec.gke.runner
    kubernetes = kfp_structure(compiled[KFP_GKE])["kubernetes"]
    assert set(kubernetes) == set(kfp_structure(compiled[KFP_GKE])["executors"])  # every step pod
    for name, config in kubernetes.items():
        if name == "exec-quantize":  # a GPU node of the run's accelerator (test_quantize_gpu.py)
            assert [t["key"] for t in config["tolerations"]] == [t.key for t in runner.tolerations] + ["nvidia.com/gpu"]
            continue
        assert config["nodeSelector"]["labels"] == runner.node_selector
        assert [t["key"] for t in config["tolerations"]] == [t.key for t in runner.tolerations]
    assert kfp_structure(compiled[KFP_LOCAL])["kubernetes"] == {}

    argo = argo_structure(compiled[ARGO])
    assert argo["service_account"] == spec.gke.runner_service_account
    assert argo["namespace"] == spec.gke.namespace
    assert argo["node_selector"] == runner.node_selector
    assert [t["key"] for t in argo["tolerations"]] == [t.key for t in runner.tolerations]


def test_a_hub_model_gives_load_model_the_token_and_only_load_model(tmp_path):
    from pipelines.compile import compile_argo, compile_kfp

    data = load_spec(GKE_SPEC).model_dump(mode="json")
    data["gke"]["model"] = {"source": "huggingface", "repo_id": "meta-llama/Llama-3.1-8B-Instruct",
                            "token_secret": "hf-token"}
    spec = BenchmarkSpec.model_validate(data)
    kubernetes = kfp_structure(compile_kfp(tmp_path / "kfp.yaml", spec))["kubernetes"]
    with_secret = {label for label, config in kubernetes.items() if "secretAsEnv" in config}
    assert with_secret == {"exec-load-model"}
    secret = kubernetes["exec-load-model"]["secretAsEnv"][0]
    assert secret["secretName"] == "hf-token" and secret["keyToEnv"] == [{"secretKey": "token", "envVar": "HF_TOKEN"}]
    steps = argo_structure(compile_argo(tmp_path / "argo.yaml", spec))["steps"]
    assert {name for name, step in steps.items() if step["env"]} == {"load-model"}


def test_rbac_manifests_validate_and_match_the_spec(compiled):
    spec = load_spec(GKE_SPEC)
    manifests = list(yaml.safe_load_all(compiled[RBAC].read_text()))
    argo = list(yaml.safe_load_all(compiled[RBAC_ARGO].read_text()))
    for manifest in manifests + argo:
        validate_manifest(manifest)
    assert [m["kind"] for m in manifests] == ["ServiceAccount", "Role", "RoleBinding"] + (
        ["ClusterRole", "ClusterRoleBinding"] if spec.gke.read_nodes else [])
    account = manifests[0]["metadata"]
    assert (account["name"], account["namespace"]) == (spec.gke.runner_service_account, spec.gke.namespace)
    assert account["annotations"]["iam.gke.io/gcp-service-account"] == spec.gke.runner_gcp_service_account
    assert manifests[2]["subjects"][0]["name"] == spec.gke.runner_service_account
    assert argo[0]["rules"] == [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
                                 "verbs": ["create", "patch"]}]
    assert argo[1]["subjects"] == manifests[2]["subjects"]


@pytest.mark.parametrize("name", [RBAC, RBAC_ARGO])
def test_checked_in_rbac_is_current(compiled, name):
    assert (ROOT / "deploy" / name).read_text() == compiled[name].read_text(), "run `make compile`"


def test_compile_refuses_a_spec_without_gke():
    result = CliRunner().invoke(app, ["compile", "--gke-spec", str(ROOT / "specs" / "local.yaml")])
    assert result.exit_code == 2 and "has no `gke` section" in result.output


def _kfp_tasks(path: Path) -> dict[str, dict]:
    ir = next(yaml.safe_load_all(path.read_text()))
    dags = [ir["root"]["dag"]] + [c["dag"] for c in ir["components"].values() if "dag" in c]
    return {name: task for dag in dags for name, task in dag["tasks"].items() if "componentRef" in task
            and not name.startswith(("for-loop", "exit-handler"))}


@pytest.mark.parametrize("package", [KFP_LOCAL, KFP_GKE])
def test_kfp_caches_only_the_pure_steps(compiled, package):
    """A cached resolve-spec would hand a rerun the old run id, and write-lake would overwrite its partition."""
    tasks = _kfp_tasks(compiled[package])
    assert set(tasks) == STEPS | {"teardown-all"}
    cached = {name for name, task in tasks.items() if task.get("cachingOptions", {}).get("enableCache")}
    assert cached == {"plan", "plan-sweep", "collect-metrics"}


@pytest.mark.parametrize("package", [KFP_LOCAL, KFP_GKE])
def test_kfp_ir_parameters_have_their_types_and_integer_defaults(compiled, package):
    ir = next(yaml.safe_load_all(compiled[package].read_text()))
    parameters = ir["root"]["inputDefinitions"]["parameters"]
    types = {name: p["parameterType"] for name, p in parameters.items()}
    kfp_type = {int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", bool: "BOOLEAN", str: "STRING", list[int]: "LIST",
                list[str]: "LIST"}
    expected = {name: kfp_type[field.annotation] for name, field in PipelineParams.model_fields.items()}
    assert types == expected | {name: "STRING" for name in types if name not in expected}
    assert types["top_k"] == "NUMBER_INTEGER" and types["ignore_eos"] == "BOOLEAN" and types["stop"] == "LIST"
    spec = load_spec(GKE_SPEC) if package == KFP_GKE else None
    batches = spec.sweep.batch_sizes if spec else PipelineParams().batch_sizes
    defaults = {name: p["defaultValue"] for name, p in parameters.items()}
    assert defaults["batch_sizes"] == batches and all(type(b) is int for b in defaults["batch_sizes"])
    for name, kind in types.items():
        if kind == "NUMBER_INTEGER":
            assert type(defaults[name]) is int, name
        if kind == "NUMBER_DOUBLE":
            assert type(defaults[name]) is float, name
    header = compiled[package].read_text().split("\ncomponents:")[0]
    assert f"batch_sizes: list [Default: {batches}]" in header and "accelerator_count: int [Default: 1]" in header
