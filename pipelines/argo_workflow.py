"""The benchmark as an Argo Workflow (hera): the KFP pipeline's DAG, step for step.

    resolve-spec -> plan -> provision -> load-model -> quantize, plan-sweep
        -> for each deployment (one at a time): deploy-server -> sweep -> accuracy -> teardown-server
        -> collect-metrics -> write-lake (with the accuracy rows) -> report
        -> check-points (exit code 3 or 4 when points failed)
    onExit: teardown-all

Every template is a container running `python -m pipelines.argo_steps STEP` in the servesweep image,
so both orchestrators call the same step functions. Parameters and small JSON travel as Argo
parameters; files (model metadata, Parquet) as artifacts through the workflow's artifact repository,
which must be GCS: each sweep writes its raw tables under a key of its own (a key-only artifact)
and collect-metrics reads that whole prefix back, the fan-in Argo has no other way to express.
"""

from __future__ import annotations

import json
import math
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
from servesweep.k8s.accelerators import GPU_RESOURCE, StepGPU, quantize_gpu
from servesweep.spec import BenchmarkSpec, PipelineParams, spec_to_params
from servesweep.sweep_plan import plan_deployments

IMAGE = os.environ.get("SERVESWEEP_IMAGE", "us-docker.pkg.dev/servesweep/servesweep/servesweep:0.1.0")
OUTPUTS = "/tmp/outputs"
INPUTS = "/tmp/inputs"
RAWS_KEY = "servesweep/{{workflow.uid}}/raws"
SCORES_KEY = "servesweep/{{workflow.uid}}/scores"  # the accuracy steps' rows, one folder per deployment
# Parameters of the KFP pipeline that are not part of the spec (the report's), with the same defaults.
REPORT_PARAMETERS = {"baseline_accelerator": "nvidia-l4"}

# Retries (argo-workflows docs/retries.md, Backoff in the Workflow CRD schema): no backoff.maxDuration, since once a
# step has failed Argo replaces the retry pod's deadline with what is left of maxDuration, so a step longer than it is
# never retried and a retry is killed part way; `cap` bounds the wait between attempts instead. A preempted or
# shut-down node ends the pod as Failed (reason Shutdown/Terminated), not Error, so `OnError` alone misses it: the
# policy is Always and the expression says which failures qualify.
# Integer-or-string fields (limit, factor, activeDeadlineSeconds) are written as strings: Argo reads both, and its
# published JSON schema (api/jsonschema/schema.json, as its own examples/retry-backoff.yaml) allows only strings.
_BACKOFF = m.Backoff(duration="30s", factor="2", cap="5m")
# Lost to the platform, not to the step: an Argo/pod-level Error, or a node taken away or the pod evicted.
_INFRA = ('lastRetry.status == "Error" || lastRetry.message matches '
          "'(?i)(preempt|shutdown|evict|pod deleted|node.*(lost|not ready)|terminated)'")
# Steps that only call the Kubernetes/GKE/GCS APIs: any failure but a bad spec (exit 2) is worth another go.
API_CALLS = RetryStrategy(limit="3", retry_policy="Always",
                          expression=f"asInt(lastRetry.exitCode) != 2 || {_INFRA}", backoff=_BACKOFF)
# The sweep measures: its failed points are results, so only a lost pod is retried, never its own failure.
INFRA_ONLY = RetryStrategy(limit="2", retry_policy="Always", expression=_INFRA, backoff=_BACKOFF)
# Which steps retry how; check-points is absent on purpose: its verdict (exit 3 or 4) stands.
RETRIES: dict[str, RetryStrategy] = {
    "resolve-spec": INFRA_ONLY, "plan": INFRA_ONLY, "plan-sweep": INFRA_ONLY, "collect-metrics": INFRA_ONLY,
    "report": INFRA_ONLY, "sweep": INFRA_ONLY, "accuracy": INFRA_ONLY,
    "provision": API_CALLS, "load-model": API_CALLS, "deploy-server": API_CALLS, "teardown-server": API_CALLS,
    "write-lake": API_CALLS, "teardown-all": API_CALLS, "quantize": INFRA_ONLY,
}
# activeDeadlineSeconds of steps whose length the spec does not set.
QUICK_S = 15 * 60
PROVISION_S = 45 * 60  # the node-pool operation's own timeout (servesweep/k8s/provision.py, 30 min) and margin
LOAD_MODEL_S = 2 * 3600  # a model download into the bucket
POD_START_S = 15 * 60  # scheduling, image pull and node scale-up before the step's own clock starts
ACCURACY_S = 45 * 60  # lm-eval's own bound (servesweep.accuracy_scoring, 30 min) and the perplexity requests


def _sweep_seconds(spec: BenchmarkSpec) -> float:
    """The longest a deployment's points can take: each point at most its duration plus one request, or every
    request round hitting the request timeout."""
    sweep = spec.sweep
    longest = 0.0
    for deployment in plan_deployments(spec):
        total = 0.0
        for point in deployment.points:
            batch = point.batch_size
            if point.trace and sweep.trace is not None:  # the replay's length is the file's: a day at most
                total += 86_400.0
                continue
            if point.duration_s or sweep.duration_s:
                total += (point.duration_s or sweep.duration_s or 0.0) + sweep.request_timeout_s
                continue
            requests = max(sweep.requests_per_point or batch, batch * sweep.rounds_per_point) + sweep.warmup_requests
            total += math.ceil(requests / batch) * sweep.request_timeout_s
        longest = max(longest, total)
    return longest


def step_deadlines(spec: BenchmarkSpec | None) -> dict[str, int]:
    """activeDeadlineSeconds per step: from the spec's timeouts where it sets them, else generous fixed bounds."""
    deadlines = dict.fromkeys(RETRIES, QUICK_S) | {"check-points": QUICK_S, "provision": PROVISION_S,
                                                   "load-model": LOAD_MODEL_S, "quantize": LOAD_MODEL_S,
                                                   "accuracy": ACCURACY_S}
    if spec is not None:
        # Queued provisioning first waits up to its own capacity timeout for GKE to grant the node.
        queued = spec.gke.capacity.queued if spec.gke and spec.gke.provisioning == "node_pool" else None
        deadlines["deploy-server"] = int(spec.server.startup_timeout_s) + POD_START_S + (queued.timeout_s if queued
                                                                                           else 0)
        deadlines["sweep"] = int(_sweep_seconds(spec)) + POD_START_S
    return deadlines


def _in(name: str) -> Parameter:
    return Parameter(name=name)


def _out(name: str) -> Parameter:
    return Parameter(name=name, value_from=m.ValueFrom(path=f"{OUTPUTS}/{name}"))


def _in_file(name: str) -> Artifact:
    return Artifact(name=name, path=f"{INPUTS}/{name}")


def _out_file(name: str) -> Artifact:
    return Artifact(name=name, path=f"{OUTPUTS}/{name}")


def _step(name: str, inputs: list, outputs: list, image: str, **template: Any) -> Container:
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


def _endpoint_token_env(spec: BenchmarkSpec | None) -> list[SecretEnv]:
    """An external endpoint's token from its Secret, for the steps that send it requests."""
    external = spec.server.external if spec else None
    if external is None or external.auth_secret is None or external.token_env is None:
        return []
    return [SecretEnv(name=external.token_env, secret_name=external.auth_secret.secret,
                      secret_key=external.auth_secret.key)]


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


def _gpu_pod(gpu: StepGPU | None, gke: GKESpec | None) -> dict[str, Any]:
    """A step template's GPU: one of it requested, on a node of that accelerator, tolerating the GPU taint."""
    if gpu is None:
        return {}
    key, operator, effect = gpu.toleration
    runner = [m.Toleration(key=t.key, operator=t.operator, value=t.value, effect=t.effect)
              for t in (gke.runner.tolerations if gke else [])]
    return {"resources": m.ResourceRequirements(limits={GPU_RESOURCE: "1"}), "node_selector": gpu.node_selector,
            "tolerations": [*runner, m.Toleration(key=key, operator=operator, effect=effect)]}


def build_workflow(spec: BenchmarkSpec | None = None, image: str = IMAGE, *, withhold_env: bool = True) -> Workflow:
    """The workflow, its parameters' defaults taken from `spec` (the built-in defaults without one).

    server.env values are withheld unless `withhold_env` is False (a submission: the server needs them).
    """
    params = spec_to_params(spec, withhold_env=withhold_env) if spec else PipelineParams()
    gke = spec.gke if spec else None
    deadlines = step_deadlines(spec)

    def step(name: str, inputs: list, outputs: list, image: str, **template: Any) -> Container:
        return _step(name, inputs, outputs, image, retry_strategy=RETRIES.get(name),
                     active_deadline_seconds=str(deadlines[name]), **template)

    spec_json, owner, deployment = _in("spec_json"), _in("owner"), _in("deployment")

    with Workflow(
        generate_name="servesweep-", entrypoint="servesweep", on_exit="teardown-all",
        arguments=workflow_parameters(params), labels={"app.kubernetes.io/name": "servesweep"},
        **_runner_pod_settings(gke),
    ) as workflow:
        resolve_spec = step("resolve-spec", [_in(name) for name in PipelineParams.model_fields] + [_in("job_id")],
                            [_out("spec_json")], image)
        plan = step("plan", [spec_json], [_out_file("predicted")], image)
        provision = step("provision", [spec_json, owner], [_out("capacity_json")], image)
        load_model = step("load-model", [spec_json], [_out_file("model")], image, env=_hf_token_env(gke) or None)
        quantize = step("quantize", [spec_json, _in_file("model")], [_out_file("quantized")], image,
                        **_gpu_pod(quantize_gpu(spec.accelerator.type, gke) if spec else None, gke))
        plan_sweep = step("plan-sweep", [spec_json], [_out("deployments")], image)
        endpoint_env = _endpoint_token_env(spec) or None
        deploy_server = step("deploy-server", [spec_json, _in("capacity_json"), deployment, owner, _in_file("model")],
                             [_out("endpoint_json")], image, env=endpoint_env)
        raw = GCSArtifact(name="raw", path=f"{OUTPUTS}/raw", key=RAWS_KEY + "/{{inputs.parameters.deployment_id}}",
                          archive=NoneArchiveStrategy())
        sweep = step("sweep", [spec_json, deployment, _in("deployment_id"), _in("endpoint_json"), _in_file("model")],
                     [raw], image, env=endpoint_env)
        scores = GCSArtifact(name="scores", path=f"{OUTPUTS}/scores",
                             key=SCORES_KEY + "/{{inputs.parameters.deployment_id}}", archive=NoneArchiveStrategy())
        accuracy = step("accuracy", [spec_json, deployment, _in("deployment_id"), _in("endpoint_json")], [scores],
                        image, env=endpoint_env)
        teardown_server = step("teardown-server", [_in("endpoint_json"), owner], [], image)
        raws = GCSArtifact(name="raws", path=f"{INPUTS}/raws", key=RAWS_KEY)
        # optional: a run whose accuracy steps all crashed still writes the sweep's tables
        all_scores = GCSArtifact(name="scores", path=f"{INPUTS}/scores", key=SCORES_KEY, optional=True)
        collect_metrics = step("collect-metrics", [spec_json, _in_file("model"), raws, _in_file("predicted")],
                               [_out_file("tables")], image)
        write_lake = step("write-lake", [spec_json, _in_file("tables"), all_scores], [], image)
        report = step("report", [spec_json, _in("baseline_accelerator")], [_out_file("html"), _out_file("markdown")],
                      image)
        check_points = step("check-points", [_in_file("tables")], [], image)  # never retried: its verdict stands
        step("teardown-all", [Parameter(name="owner", value="{{workflow.uid}}"),
                              Parameter(name="spec_yaml", value="{{workflow.parameters.spec_yaml}}")],
             [], image)

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
            scored = accuracy(arguments=_pick(given, "spec_json", "deployment", "deployment_id")
                              | {"endpoint_json": endpoint})
            down = teardown_server(arguments={"endpoint_json": endpoint, "owner": given["owner"]})
            server >> swept
            # After the sweep, passed or failed: scoring beside its load would skew both.
            scored.depends = _finished(swept.name)
            # Whatever the sweep and the scoring did, the accelerators go back before the next deployment.
            down.depends = f"({_finished(swept.name)}) && ({_finished(scored.name)})"

        # parallelism 1: one deployment at a time, as every server wants the same accelerators.
        with DAG(name="servesweep", parallelism=1):
            job = "{{workflow.uid}}"
            # job_id is no workflow parameter: a resubmitted workflow (a new one, with its own uid) derives a new
            # run id, as KFP's resolve-spec does from KFP's run id; a retried one (same uid) keeps its run id.
            resolved = resolve_spec(arguments={name: f"{{{{workflow.parameters.{name}}}}}"
                                               for name in PipelineParams.model_fields} | {"job_id": job})
            spec_out = resolved.get_parameter("spec_json")
            predictions = plan(arguments={"spec_json": spec_out})
            capacity = provision(arguments={"spec_json": spec_out, "owner": job})
            model_task = load_model(arguments={"spec_json": spec_out})
            variant = quantize(arguments={"spec_json": spec_out, "model": model_task.get_artifact("model")})
            deployments = plan_sweep(arguments={"spec_json": spec_out})
            swept_all = one_deployment(
                name="deployments", with_param=deployments.get_parameter("deployments"),
                arguments={"spec_json": spec_out, "capacity_json": capacity.get_parameter("capacity_json"),
                           "deployment": "{{item}}", "deployment_id": "{{item.deployment_id}}", "owner": job,
                           "model": variant.get_artifact("quantized")},
            )
            collected = collect_metrics(arguments={"spec_json": spec_out, "model": variant.get_artifact("quantized"),
                                                   "predicted": predictions.get_artifact("predicted")})
            lake = write_lake(arguments={"spec_json": spec_out, "tables": collected.get_artifact("tables")})
            summary = report(arguments={"spec_json": spec_out,
                                        "baseline_accelerator": "{{workflow.parameters.baseline_accelerator}}"})
            verdict = check_points(arguments={"tables": collected.get_artifact("tables")})

            resolved >> predictions >> capacity >> [model_task, deployments]
            model_task >> variant
            [variant, deployments] >> swept_all >> collected >> lake >> summary >> verdict
    return workflow


def _finished(task: str) -> str:
    return f"{task}.Succeeded || {task}.Failed || {task}.Errored"


def _pick(values: dict[str, str], *names: str) -> dict[str, str]:
    return {name: values[name] for name in names}
