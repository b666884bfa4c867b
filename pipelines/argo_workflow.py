"""The benchmark as an Argo Workflow (hera): the KFP pipeline's DAG, step for step.

    resolve-spec -> plan -> provision -> load-model, plan-sweep
        -> for each deployment (one at a time): deploy-server -> sweep -> teardown-server
        -> collect-metrics -> write-lake -> report -> check-points (exit code 3 or 4 when points failed)
    onExit: teardown-all

Every template is a container running `python -m pipelines.argo_steps STEP` in the servesweep image,
so both orchestrators call the same step functions. Parameters and small JSON travel as Argo
parameters; files (model metadata, Parquet) as artifacts through the workflow's artifact repository,
which must be GCS: each sweep writes its raw tables under a key of its own (a key-only artifact)
and collect-metrics reads that whole prefix back, the fan-in Argo has no other way to express.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hera.workflows import (
    DAG,
    Artifact,
    Container,
    GCSArtifact,
    NoneArchiveStrategy,
    Parameter,
    RetryStrategy,
    SecretEnv,
    Workflow,
)
from hera.workflows import models as m

from servesweep.gke_spec import GKESpec, HuggingFaceModel
from servesweep.spec import BenchmarkSpec, PipelineParams, spec_to_params

IMAGE = os.environ.get("SERVESWEEP_IMAGE", "us-docker.pkg.dev/servesweep/servesweep/servesweep:0.1.0")
OUTPUTS = "/tmp/outputs"
INPUTS = "/tmp/inputs"
RAWS_KEY = "servesweep/{{workflow.uid}}/raws"
# Parameters of the KFP pipeline that are not part of the spec (the report's), with the same defaults.
REPORT_PARAMETERS = {"baseline_accelerator": "nvidia-l4"}

# Transient: an evicted or preempted pod, an API server hiccup. Exit code 2 is a bad spec: never retried.
TRANSIENT = RetryStrategy(
    limit=2, retry_policy="Always", expression="asInt(lastRetry.exitCode) != 2",
    backoff=m.Backoff(duration="30s", factor=2, max_duration="10m"),
)


def _in(name: str) -> Parameter:
    return Parameter(name=name)


def _out(name: str) -> Parameter:
    return Parameter(name=name, value_from=m.ValueFrom(path=f"{OUTPUTS}/{name}"))


def _in_file(name: str) -> Artifact:
    return Artifact(name=name, path=f"{INPUTS}/{name}")


def _out_file(name: str) -> Artifact:
    return Artifact(name=name, path=f"{OUTPUTS}/{name}")


def step(name: str, inputs: list, outputs: list, image: str, **template: Any) -> Container:
    """A container template calling one step; every input and output becomes a --name argument."""
    args = [name]
    for item in inputs:
        value = f"{{{{inputs.parameters.{item.name}}}}}" if isinstance(item, Parameter) else item.path
        args += [f"--{item.name}", value]
    for item in outputs:
        args += [f"--out_{item.name}", item.value_from.path if isinstance(item, Parameter) else item.path]
    return Container(name=name, image=image, command=["python", "-m", "pipelines.argo_steps"], args=args,
                     inputs=inputs or None, outputs=outputs or None, **template)


def workflow_parameters(params: PipelineParams) -> list[Parameter]:
    """The pipeline parameters, as strings (lists as JSON), mirroring the KFP pipeline's signature."""
    values = params.model_dump() | REPORT_PARAMETERS
    return [Parameter(name=name, value=json.dumps(value) if isinstance(value, list) else str(value))
            for name, value in values.items()]


def _hf_token_env(gke: GKESpec | None) -> list[SecretEnv]:
    source = gke.model if gke else None
    if isinstance(source, HuggingFaceModel) and source.token_secret:
        return [SecretEnv(name="HF_TOKEN", secret_name=source.token_secret, secret_key=source.token_key)]
    return []


def _runner_pod_settings(gke: GKESpec | None) -> dict[str, Any]:
    if gke is None:
        return {}
    runner = gke.runner
    tolerations = [m.Toleration(key=t.key, operator=t.operator, value=t.value, effect=t.effect)
                   for t in runner.tolerations]
    return {
        "service_account_name": gke.runner_service_account,
        "namespace": gke.namespace,
        "node_selector": dict(runner.node_selector) or None,
        "tolerations": tolerations or None,
        "image_pull_secrets": list(runner.image_pull_secrets) or None,
    }


def build_workflow(spec: BenchmarkSpec | None = None, image: str = IMAGE, *, withhold_env: bool = True) -> Workflow:
    """The workflow, its parameters' defaults taken from `spec` (the built-in defaults without one).

    server.env values are withheld unless `withhold_env` is False (a submission: the server needs them).
    """
    params = spec_to_params(spec, withhold_env=withhold_env) if spec else PipelineParams()
    gke = spec.gke if spec else None
    spec_json, owner, deployment = _in("spec_json"), _in("owner"), _in("deployment")

    with Workflow(
        generate_name="servesweep-", entrypoint="servesweep", on_exit="teardown-all",
        arguments=workflow_parameters(params), labels={"app.kubernetes.io/name": "servesweep"},
        **_runner_pod_settings(gke),
    ) as workflow:
        resolve_spec = step("resolve-spec", [_in(name) for name in PipelineParams.model_fields],
                            [_out("spec_json")], image)
        plan = step("plan", [spec_json], [_out_file("predicted")], image)
        provision = step("provision", [spec_json, owner], [_out("capacity_json")], image)
        load_model = step("load-model", [spec_json], [_out_file("model")], image, env=_hf_token_env(gke) or None)
        plan_sweep = step("plan-sweep", [spec_json], [_out("deployments")], image)
        deploy_server = step("deploy-server", [spec_json, _in("capacity_json"), deployment, owner, _in_file("model")],
                             [_out("endpoint_json")], image, retry_strategy=TRANSIENT)
        raw = GCSArtifact(name="raw", path=f"{OUTPUTS}/raw", key=RAWS_KEY + "/{{inputs.parameters.deployment_id}}",
                          archive=NoneArchiveStrategy())
        sweep = step("sweep", [spec_json, deployment, _in("deployment_id"), _in("endpoint_json"), _in_file("model")],
                     [raw], image, retry_strategy=TRANSIENT)
        teardown_server = step("teardown-server", [_in("endpoint_json"), owner], [], image,
                               retry_strategy=TRANSIENT)
        raws = GCSArtifact(name="raws", path=f"{INPUTS}/raws", key=RAWS_KEY)
        collect_metrics = step("collect-metrics", [spec_json, _in_file("model"), raws, _in_file("predicted")],
                               [_out_file("tables")], image)
        write_lake = step("write-lake", [spec_json, _in_file("tables")], [], image, retry_strategy=TRANSIENT)
        report = step("report", [spec_json, _in("baseline_accelerator")], [_out_file("html"), _out_file("markdown")],
                      image)
        check_points = step("check-points", [_in_file("tables")], [], image)  # never retried: its verdict stands
        step("teardown-all", [Parameter(name="owner", value="{{workflow.uid}}"),
                              Parameter(name="spec_yaml", value="{{workflow.parameters.spec_yaml}}")],
             [], image, retry_strategy=TRANSIENT)

        with DAG(name="deployment", inputs=[spec_json, _in("capacity_json"), deployment, _in("deployment_id"),
                                            owner, _in_file("model")]) as one_deployment:
            given = {name: f"{{{{inputs.parameters.{name}}}}}" for name in
                     ("spec_json", "capacity_json", "deployment", "deployment_id", "owner")}
            model = Artifact(name="model", from_="{{inputs.artifacts.model}}")
            server = deploy_server(arguments=_pick(given, "spec_json", "capacity_json", "deployment", "owner")
                                   | {"model": model})
            endpoint = server.get_parameter("endpoint_json")
            swept = sweep(arguments=_pick(given, "spec_json", "deployment", "deployment_id")
                          | {"endpoint_json": endpoint, "model": model})
            down = teardown_server(arguments={"endpoint_json": endpoint, "owner": given["owner"]})
            server >> swept
            # Whether the sweep passed or failed, the accelerators go back before the next deployment.
            down.depends = f"{swept.name}.Succeeded || {swept.name}.Failed || {swept.name}.Errored"

        # parallelism 1: one deployment at a time, as every server wants the same accelerators.
        with DAG(name="servesweep", parallelism=1):
            job = "{{workflow.uid}}"
            resolved = resolve_spec(arguments={name: f"{{{{workflow.parameters.{name}}}}}"
                                               for name in PipelineParams.model_fields})
            spec_out = resolved.get_parameter("spec_json")
            predictions = plan(arguments={"spec_json": spec_out})
            capacity = provision(arguments={"spec_json": spec_out, "owner": job})
            model_task = load_model(arguments={"spec_json": spec_out})
            deployments = plan_sweep(arguments={"spec_json": spec_out})
            swept_all = one_deployment(
                name="deployments", with_param=deployments.get_parameter("deployments"),
                arguments={"spec_json": spec_out, "capacity_json": capacity.get_parameter("capacity_json"),
                           "deployment": "{{item}}", "deployment_id": "{{item.deployment_id}}", "owner": job,
                           "model": model_task.get_artifact("model")},
            )
            collected = collect_metrics(arguments={"spec_json": spec_out, "model": model_task.get_artifact("model"),
                                                   "predicted": predictions.get_artifact("predicted")})
            lake = write_lake(arguments={"spec_json": spec_out, "tables": collected.get_artifact("tables")})
            summary = report(arguments={"spec_json": spec_out,
                                        "baseline_accelerator": "{{workflow.parameters.baseline_accelerator}}"})
            verdict = check_points(arguments={"tables": collected.get_artifact("tables")})

            resolved >> predictions >> capacity >> [model_task, deployments]
            [model_task, deployments] >> swept_all >> collected >> lake >> summary >> verdict
    return workflow


def _pick(values: dict[str, str], *names: str) -> dict[str, str]:
    return {name: values[name] for name in names}
