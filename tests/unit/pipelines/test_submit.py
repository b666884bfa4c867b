"""servesweep submit with the HTTP layer faked: the right package, parameters, namespace and token go
out, and a server that cannot be reached or refuses is one line, never a traceback or a token."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import yaml
from typer.testing import CliRunner

import pipelines.submit as submit
from servesweep.cli import app
from servesweep.spec import load_spec, spec_to_params
from tests.support.paths import REPO
from tests.support.pipeline_structure import kfp_structure

GKE_SPEC = REPO / "specs" / "gke.yaml"


class FakeKfpClient:
    """Stands in for kfp.Client: keeps what it was given, package included (its temp dir is gone later)."""

    calls: list[dict] = []
    fail: Exception | None = None

    def __init__(self, host: str | None = None, existing_token: str | None = None, **_) -> None:
        self.host, self.token = host, existing_token

    def create_run_from_pipeline_package(self, pipeline_file: str, **kwargs) -> SimpleNamespace:
        if self.fail:
            raise self.fail
        package = Path(pipeline_file).parent / "sent.yaml"
        package.write_text(Path(pipeline_file).read_text())
        FakeKfpClient.calls.append({"host": self.host, "token": self.token, "package": kfp_structure(package),
                                    **kwargs})
        return SimpleNamespace(run_id="kfp-run-42")


@pytest.fixture
def kfp_client(monkeypatch):
    FakeKfpClient.calls, FakeKfpClient.fail = [], None
    monkeypatch.setattr(submit.kfp, "Client", FakeKfpClient)
    return FakeKfpClient


def test_kfp_gets_the_gke_package_the_spec_as_parameters_and_the_runner_account(kfp_client, monkeypatch):
    monkeypatch.setenv("KFP_TOKEN", "kfp-secret")
    result = CliRunner().invoke(app, ["submit", "--kfp", "https://kfp.example.com", "--spec", str(GKE_SPEC),
                                      "--experiment", "l4"])
    assert result.exit_code == 0, result.output
    [call] = kfp_client.calls
    spec = load_spec(GKE_SPEC)
    assert (call["host"], call["token"]) == ("https://kfp.example.com", "kfp-secret")
    assert call["service_account"] == spec.gke.runner_service_account and call["experiment_name"] == "l4"
    arguments = call["arguments"]
    # No run id sent: resolve-spec takes it from KFP's run id, so a clone of this run cannot reuse it.
    assert arguments["run_id"] == "" and call["run_name"].startswith("l4-llama3-8b-vllm-")
    assert arguments["accelerator"] == "nvidia-l4" and arguments["batch_sizes"] == [1, 4, 16, 64]
    assert yaml.safe_load(arguments["spec_yaml"])["gke"]["cluster"] == spec.gke.cluster
    assert set(call["package"]["kubernetes"]) == set(call["package"]["executors"])  # runner settings on every pod
    assert "l4-llama3-8b-vllm-kfprun42" in result.output and "kfp-run-42" in result.output


def test_kfp_run_goes_to_the_profile_namespace_on_multi_user_kubeflow(kfp_client):
    result = CliRunner().invoke(app, ["submit", "--kfp", "https://kfp.example.com", "--spec", str(GKE_SPEC),
                                      "--namespace", "servesweep", "--experiment", "team-a"])
    assert result.exit_code == 0, result.output
    [call] = kfp_client.calls
    assert (call["namespace"], call["experiment_name"]) == ("servesweep", "team-a")


def test_kfp_single_user_gets_no_namespace_and_a_foreign_one_is_refused(kfp_client):
    CliRunner().invoke(app, ["submit", "--kfp", "https://kfp.example.com", "--spec", str(GKE_SPEC)])
    assert kfp_client.calls[0]["namespace"] is None
    result = CliRunner().invoke(app, ["submit", "--kfp", "https://kfp.example.com", "--spec", str(GKE_SPEC),
                                      "--namespace", "someone-else"])
    assert result.exit_code != 0 and "gke.namespace" in result.output and len(kfp_client.calls) == 1


def test_ci_submits_to_kfp_with_a_namespace_and_experiment():
    ci = yaml.safe_load((GKE_SPEC.parent.parent / ".github" / "workflows" / "ci.yaml").read_text())
    [step] = [s for s in ci["jobs"]["trigger"]["steps"] if s.get("name") == "Submit to Kubeflow Pipelines"]
    assert '--namespace "$KFP_NAMESPACE"' in step["run"] and "--experiment" in step["run"]
    assert ci["jobs"]["trigger"]["env"]["KFP_NAMESPACE"] == "${{ vars.KFP_NAMESPACE }}"


def test_an_unreachable_kfp_is_one_line(kfp_client, monkeypatch):
    monkeypatch.setenv("KFP_TOKEN", "kfp-secret")
    kfp_client.fail = requests.ConnectionError(
        "HTTPConnectionPool(host='kfp', port=80): Max retries exceeded (Caused by NewConnectionError("
        "'<urllib3.connection.HTTPConnection>: Failed to establish a new connection: [Errno 111] Connection refused'))")
    result = CliRunner().invoke(app, ["submit", "--kfp", "http://kfp", "--spec", str(GKE_SPEC)])
    assert result.exit_code == 2
    assert "cannot connect: [Errno 111] Connection refused" in result.output
    assert "Traceback" not in result.output and "kfp-secret" not in result.output


class FakeArgoServer:
    """Answers requests.Session.request as the Argo server's create-workflow API would."""

    def __init__(self, status: int = 200, message: str = "") -> None:
        self.status, self.message, self.requests = status, message, []

    def __call__(self, method, url, headers=None, data=None, **_):
        self.requests.append({"method": method, "url": url, "headers": headers, "body": json.loads(data)})
        response = requests.Response()
        response.status_code = self.status
        workflow = json.loads(data)["workflow"]
        metadata = {**workflow["metadata"], "name": "servesweep-x7k2p", "uid": "9c4e1b2a-0000-4000-8000-00000000000a"}
        body = ({"metadata": metadata, "spec": workflow["spec"]}
                if self.status == 200 else {"code": 7, "message": self.message})
        response._content = json.dumps(body).encode()
        return response


def serve(monkeypatch, server: FakeArgoServer) -> FakeArgoServer:
    monkeypatch.setattr(requests.Session, "request", lambda session, method, **kwargs: server(method, **kwargs))
    return server


def test_argo_gets_the_workflow_in_the_namespace_with_the_token(monkeypatch):
    server = serve(monkeypatch, FakeArgoServer())
    monkeypatch.setenv("ARGO_TOKEN", "argo-secret")
    result = CliRunner().invoke(app, ["submit", "--argo", "https://argo.example.com:2746", "--spec", str(GKE_SPEC),
                                      "--namespace", "bench"])
    assert result.exit_code == 0, result.output
    [sent] = server.requests
    assert (sent["method"], sent["url"]) == ("post", "https://argo.example.com:2746/api/v1/workflows/bench")
    assert sent["headers"]["Authorization"] == "Bearer argo-secret"
    workflow = sent["body"]["workflow"]
    parameters = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    # No run id sent: resolve-spec takes it from the workflow's uid, so a resubmit cannot reuse it.
    assert parameters["run_id"] == "" and parameters["batch_sizes"] == "[1, 4, 16, 64]"
    assert "job_id" not in parameters
    assert workflow["spec"]["onExit"] == "teardown-all" and workflow["metadata"]["namespace"] == "bench"
    assert "servesweep-x7k2p" in result.output and "argo-secret" not in result.output
    assert "l4-llama3-8b-vllm-9c4e1b2a" in result.output  # the run id resolve-spec will derive from the uid


def test_argo_refusing_is_one_line_without_the_token(monkeypatch):
    serve(monkeypatch, FakeArgoServer(403, "token argo-secret is not authorized"))
    monkeypatch.setenv("ARGO_TOKEN", "argo-secret")
    result = CliRunner().invoke(app, ["submit", "--argo", "https://argo.example.com", "--spec", str(GKE_SPEC)])
    assert result.exit_code == 2
    assert "Argo at https://argo.example.com did not take the workflow" in result.output
    assert "403" in result.output and "argo-secret" not in result.output and "Traceback" not in result.output


def test_submit_needs_one_target_and_a_gke_spec(tmp_path):
    runner = CliRunner()
    both = runner.invoke(app, ["submit", "--kfp", "http://a", "--argo", "http://b"])
    assert both.exit_code == 2 and "exactly one of --kfp HOST or --argo HOST" in both.output
    local = runner.invoke(app, ["submit", "--kfp", "http://a", "--spec", str(GKE_SPEC.parent / "local.yaml")])
    assert local.exit_code == 2 and "has no `gke` section" in local.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("gke: {project: p}\n")
    invalid = runner.invoke(app, ["submit", "--argo", "http://a", "--spec", str(bad)])
    assert invalid.exit_code == 2 and "gke.location" in invalid.output


def test_run_refuses_a_gke_spec():
    result = CliRunner().invoke(app, ["run", str(GKE_SPEC)])
    assert result.exit_code == 2 and "servesweep submit" in result.output


def test_kfp_resolve_spec_takes_the_run_id_from_the_kfp_run_so_a_clone_gets_its_own():
    from pipelines.kfp_pipeline import resolve_spec

    arguments = spec_to_params(load_spec(GKE_SPEC)).model_dump()
    first = json.loads(resolve_spec.python_func(**arguments, job_id="3f2a9c1e-0000-4000-8000-000000000001"))
    clone = json.loads(resolve_spec.python_func(**arguments, job_id="77b1d0aa-0000-4000-8000-000000000002"))
    assert (first["run_id"], clone["run_id"]) == ("l4-llama3-8b-vllm-3f2a9c1e", "l4-llama3-8b-vllm-77b1d0aa")


def test_argo_resolve_spec_takes_the_run_id_from_the_workflow_uid_so_a_resubmit_gets_its_own(tmp_path):
    from pipelines.argo_steps import main
    from pipelines.argo_workflow import build_workflow

    workflow = build_workflow(load_spec(GKE_SPEC)).build()
    [template] = [t for t in workflow.spec.templates if t.name == "resolve-spec"]
    [task] = [task for t in workflow.spec.templates if t.dag for task in t.dag.tasks if task.name == "resolve-spec"]
    given = {p.name: p.value for p in task.arguments.parameters}
    assert given["job_id"] == "{{workflow.uid}}"  # the workflow's own id, not a parameter a resubmit copies
    assert "job_id" not in {p.name for p in workflow.spec.arguments.parameters}
    defaults = {p.name: p.value for p in workflow.spec.arguments.parameters}
    run_ids = []
    for uid in ("3f2a9c1e-0000-4000-8000-000000000001", "77b1d0aa-0000-4000-8000-000000000002"):
        out = tmp_path / uid
        args = [arg.replace("/tmp/outputs/spec_json", str(out)) for arg in template.container.args]
        args = [uid if arg == "{{inputs.parameters.job_id}}" else arg for arg in args]
        args = [defaults.get(arg[len("{{inputs.parameters."):-2], arg) if arg.startswith("{{inputs.") else arg
                for arg in args]
        assert main(args) == 0
        run_ids.append(json.loads(out.read_text())["run_id"])
    assert run_ids == ["l4-llama3-8b-vllm-3f2a9c1e", "l4-llama3-8b-vllm-77b1d0aa"]
