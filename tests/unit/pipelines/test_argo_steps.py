"""The Argo Workflow's containers, run here the way Argo runs them: each template's own command line
(from the built workflow), parameters substituted, artifacts copied between pod sandboxes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pipelines.argo_steps import BAD_INPUT, main
from pipelines.argo_workflow import build_workflow
from servesweep.lake.query import query
from servesweep.outcome import NOTHING_MEASURED
from servesweep.spec import BenchmarkSpec

_PARAMETER = re.compile(r"\{\{inputs\.parameters\.(\w+)\}\}")


class FakeArgo:
    """Runs templates by name; every run gets a sandbox standing in for its pod's filesystem."""

    def __init__(self, root: Path, spec: BenchmarkSpec) -> None:
        workflow = build_workflow(spec).build()
        self.templates = {t.name: t for t in workflow.spec.templates}
        self.defaults = {p.name: p.value for p in workflow.spec.arguments.parameters}
        self.root = root
        self.runs = 0

    def run(self, template: str, params: dict[str, str], artifacts: dict[str, Path] | None = None,
            exit_code: int = 0) -> Path:
        self.runs += 1
        pod = self.root / f"{self.runs:02d}-{template}"
        for name, source in (artifacts or {}).items():
            target = pod / "tmp" / "inputs" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
        args = [self._substitute(arg, params, pod) for arg in self.templates[template].container.args]
        assert main(args) == exit_code, template
        return pod

    @staticmethod
    def _substitute(arg: str, params: dict[str, str], pod: Path) -> str:
        if arg.startswith("/tmp/"):
            return str(pod) + arg
        return _PARAMETER.sub(lambda match: params[match.group(1)], arg)


def output(pod: Path, name: str) -> Path:
    return pod / "tmp" / "outputs" / name


def test_the_workflow_runs_end_to_end_through_its_own_command_lines(tmp_path, capsys):
    # A server kind with no local launcher: every step runs for real, deploy fails cleanly, no server starts.
    spec = BenchmarkSpec.model_validate({"name": "argo-steps", "server": {"kind": "tgi"},
                                         "lake_uri": str(tmp_path / "lake"), "accuracy": {"enabled": True}})
    argo, owner = FakeArgo(tmp_path / "pods", spec), "wf-uid-1"

    resolved = argo.run("resolve-spec", argo.defaults | {"job_id": owner})  # the workflow's own parameter strings
    spec_json = output(resolved, "spec_json").read_text()
    run_id = json.loads(spec_json)["run_id"]
    predictions = argo.run("plan", {"spec_json": spec_json})
    capacity = argo.run("provision", {"spec_json": spec_json, "owner": owner})
    model = argo.run("load-model", {"spec_json": spec_json})
    planned = argo.run("plan-sweep", {"spec_json": spec_json})
    raws, scores = tmp_path / "bucket" / "raws", tmp_path / "bucket" / "scores"
    for deployment in json.loads(output(planned, "deployments").read_text()):
        item = {"spec_json": spec_json, "capacity_json": output(capacity, "capacity_json").read_text(),
                "deployment": json.dumps(deployment), "deployment_id": deployment["deployment_id"], "owner": owner}
        server = argo.run("deploy-server", item, {"model": output(model, "model")})
        item["endpoint_json"] = output(server, "endpoint_json").read_text()
        swept = argo.run("sweep", item, {"model": output(model, "model")})
        shutil.copytree(output(swept, "raw"), raws / deployment["deployment_id"])  # the key-only artifact
        scored = argo.run("accuracy", item)
        shutil.copytree(output(scored, "scores"), scores / deployment["deployment_id"])
        argo.run("teardown-server", item)
    collected = argo.run("collect-metrics", {"spec_json": spec_json}, {
        "model": output(model, "model"), "raws": raws, "predicted": output(predictions, "predicted")})
    argo.run("write-lake", {"spec_json": spec_json}, {"tables": output(collected, "tables"), "scores": scores})
    assert "accuracy: not scored, the server failed" in capsys.readouterr().out
    baseline = argo.defaults["baseline_accelerator"]
    summary = argo.run("report", {"spec_json": spec_json, "baseline_accelerator": baseline})
    assert "<html" in output(summary, "html").read_text().lower() and output(summary, "markdown").is_file()
    # Last: no point could be measured, so the workflow fails, after the lake and the report were written.
    argo.run("check-points", {}, {"tables": output(collected, "tables")}, exit_code=NOTHING_MEASURED)
    assert "3 of 3 points failed: server start: server kind 'tgi' has no local launcher" in capsys.readouterr().err
    argo.run("teardown-all", {"owner": owner, "spec_yaml": argo.defaults["spec_yaml"]})

    rows = query(str(tmp_path / "lake"), f"select source, status, failure_reason from points "
                                         f"where run_id = '{run_id}' order by source").to_pylist()
    measured = [r for r in rows if r["source"] == "measured"]
    assert len(measured) == 3 and all(r["status"] == "failed" for r in measured)
    assert all("server kind 'tgi' has no local launcher" in r["failure_reason"] for r in measured)
    assert [r["source"] for r in rows].count("predicted") == 3
    assert query(str(tmp_path / "lake"), "select count(*) as n from accuracy").to_pylist() == [{"n": 0}]


@pytest.mark.parametrize(("argv", "message"), [
    ([], "first argument must be a step"),
    (["no-such-step"], "first argument must be a step"),
    (["plan", "--spec_json"], "--name value pairs"),
    (["plan", "--spec_json", "{}"], "missing a required argument: 'out_predicted'"),
    (["teardown-server", "--endpoint_json", "{}", "--owner", "x", "--colour", "red"], "unexpected keyword"),
])
def test_bad_command_lines_exit_2_without_a_traceback(argv, message, capsys):
    assert main(argv) == BAD_INPUT
    assert message in capsys.readouterr().err


def test_a_bad_spec_exits_2_so_argo_does_not_retry(tmp_path, capsys):
    assert main(["plan-sweep", "--spec_json", '{"sweep": {"batch_sizes": [0]}}',
                 "--out_deployments", str(tmp_path / "d")]) == BAD_INPUT
    assert "batch sizes must be >= 1" in capsys.readouterr().err


def test_list_parameters_arrive_as_json(tmp_path):
    params = build_workflow().build().spec.arguments.parameters
    values = {p.name: p.value for p in params if p.name != "baseline_accelerator"}
    values |= {"batch_sizes": "[2, 8]", "sweep_modes": '["server_max_seqs"]'}
    args = ["resolve-spec", "--out_spec_json", str(tmp_path / "spec")]
    for name, value in values.items():
        args += [f"--{name}", value]
    assert main(args) == 0
    spec = json.loads((tmp_path / "spec").read_text())
    assert spec["sweep"]["batch_sizes"] == [2, 8] and spec["sweep"]["modes"] == ["server_max_seqs"]
