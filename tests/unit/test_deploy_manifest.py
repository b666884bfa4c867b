"""`servesweep deploy-manifest` on the committed H200 lake: the report's recommendation, rendered as it was measured,
valid for the Kubernetes versions GKE serves; one-line refusals when nothing meets the SLO or the choice is unclear."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from servesweep.analysis.recommend import group_headlines
from servesweep.analysis.report import build_report
from servesweep.cli import app
from servesweep.deploy_manifest import DeployManifestError, build, recommend
from servesweep.importers import import_file
from servesweep.spec import SLOSpec, load_spec
from tests.support.committed_lakes import H200
from tests.support.gke_versions import GKE_NEWEST, GKE_OLDEST
from tests.support.paths import REPO, TESTS

LAKE, RUNS, SLO, _ = H200
GROUP = "llama3-8b-dummy 128/2048 measured"
GKE_SPEC = load_spec(REPO / "specs" / "gke.yaml")


def _args(manifests: list[dict], kind: str) -> list[str]:
    [deployment] = [m for m in manifests if m["kind"] == kind]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container["args"]


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.fixture(scope="module")
def h200():
    recommendation = recommend(LAKE, RUNS, SLO, GROUP)
    return recommendation, build(recommendation, GKE_SPEC)


def test_the_recommendation_is_the_reports_headline(h200):
    recommendation, _ = h200
    headline = group_headlines(build_report(LAKE, RUNS, SLO).ideal_batches)[GROUP]
    assert headline.meets_slo
    assert (recommendation.row.config_label, recommendation.row.ideal_batch_size) == (
        headline.config_label, headline.ideal_batch_size)


def test_the_server_flags_are_what_was_measured(h200):
    recommendation, result = h200
    row = recommendation.row
    args = _args(result.manifests, "Deployment")
    assert _flag(args, "--max-num-seqs") == str(row.ideal_batch_size)
    assert _flag(args, "--quantization") == row.quantization == "fp8"
    assert _flag(args, "--served-model-name") == row.model_name
    assert _flag(args, "--tensor-parallel-size") == str(row.accelerator_count)
    [deployment] = [m for m in result.manifests if m["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": row.accelerator}
    assert deployment["metadata"]["labels"]["servesweep.dev/run-id"] == row.run_id


def test_the_autoscaler_scales_the_deployment_on_the_queue(h200):
    _, result = h200
    [hpa] = [m for m in result.manifests if m["kind"] == "HorizontalPodAutoscaler"]
    [deployment] = [m for m in result.manifests if m["kind"] == "Deployment"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "prometheus.googleapis.com|vllm:num_requests_waiting|gauge"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "1"}  # peak queue measured: 0
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)


@pytest.mark.parametrize("version", [GKE_OLDEST, GKE_NEWEST])
def test_the_manifests_validate_strictly(h200, version):
    _, result = h200
    assert [m["kind"] for m in result.manifests] == ["Deployment", "Service", "PodMonitoring",
                                                     "HorizontalPodAutoscaler"]
    for manifest in result.manifests:
        if manifest["kind"] != "PodMonitoring":  # a CRD: servesweep.k8s.validate checked it in build()
            kubernetes_validate.validate(manifest, version, strict=True)


def test_a_run_with_its_spec_deploys_its_own_server_settings():
    recommendation = recommend(LAKE, ["h200-llama3-8b-int8"], SLO, GROUP)
    assert recommendation.measured is not None
    result = build(recommendation, GKE_SPEC, queue_target=8, max_replicas=2)
    args = _args(result.manifests, "Deployment")
    assert _flag(args, "--max-model-len") == str(recommendation.measured.server.max_model_len) == "2304"
    assert "--max-num-seqs" in args and _flag(args, "--max-num-seqs") == str(recommendation.row.ideal_batch_size)
    assert any("checkpoint method" in note for note in result.notes)
    assert any("VLLM_USE_FLASHINFER_SAMPLER" in note for note in result.notes)  # withheld, so named


def test_cli_writes_the_manifests(tmp_path):
    out = tmp_path / "deploy"
    result = CliRunner().invoke(app, ["deploy-manifest", "--lake", LAKE, "--config", GROUP, "--slo-ttft-ms", "2000",
                                      "--slo-tpot-ms", "100", "--gke-spec", str(REPO / "specs" / "gke.yaml"),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all((out / "manifests.yaml").read_text()))
    assert [d["kind"] for d in documents] == ["Deployment", "Service", "PodMonitoring", "HorizontalPodAutoscaler"]


@pytest.mark.parametrize(("flags", "message"), [
    (["--config", GROUP, "--slo-ttft-ms", "5"], "error: no configuration meets the SLO (p99 TTFT <= 5 ms)"),
    ([], "error: 6 comparison groups (models or workloads) in these runs: choose one with --config"),
    (["--config", "no-such-config"], "error: no measured configuration 'no-such-config' in these runs"),
    (["--config", GROUP, "--min-replicas", "3", "--max-replicas", "2"], "error: replicas: need 1 <= min (3)"),
])
def test_refusals_are_one_line_and_write_nothing(tmp_path, flags, message):
    out = tmp_path / "deploy"
    result = CliRunner().invoke(app, ["deploy-manifest", "--lake", LAKE, "--out", str(out),
                                      "--gke-spec", str(REPO / "specs" / "gke.yaml"), *flags])
    assert result.exit_code == 2
    assert result.output.startswith(message) and len(result.output.splitlines()) == 1, result.output
    assert not out.exists()


def test_an_imported_run_cannot_be_deployed(tmp_path):
    lake = str(tmp_path / "lake")
    imported = import_file("vllm-bench", TESTS / "fixtures" / "importers" / "vllm-bench.json", lake)
    with pytest.raises(DeployManifestError, match="kept no spec and its points do not name the model, server"):
        build(recommend(lake, [imported.run_id], SLOSpec()), GKE_SPEC)
