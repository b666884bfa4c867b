"""The benchmark as a Kubeflow Pipelines (v2) DAG: thin wrappers around the plain steps in `components`.

    resolve-spec -> plan (roofline predictions) -> provision -> load-model -> quantize, plan-sweep
        -> for each deployment (one at a time): deploy-server -> sweep -> accuracy -> teardown-server
        -> collect-metrics -> write-lake (with the accuracy rows)
        -> report (Metrics, HTML and Markdown shown on the KFP run page)
        -> check-points (fails the run, exit code 3 or 4, when any point failed; servesweep.outcome)
    exit handler: teardown-all (stops whatever this job left running, on success, failure or cancel)

The same function compiles for both platforms: each step calls the platform its spec names
(servesweep.platform: `gke` in spec_yaml, else local). Kubernetes settings of the step pods are added at compile time
(pipelines/kfp_platform.py), not here.

Each wrapper only converts between KFP types (strings, dicts, artifacts) and the typed step
functions; every import is inside the function because KFP ships the function's source alone.
"""


import os

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

IMAGE = os.environ.get("SERVESWEEP_IMAGE", "us-docker.pkg.dev/servesweep/servesweep/servesweep:0.1.0")
# KFP caches every task by default: a cached resolve-spec hands a rerun the old run's id (from the clock), and
# write-lake would overwrite that run's lake partition; cached deploy/sweep steps would report a server that is
# gone. Only functions of their inputs alone may be cached.
CACHEABLE = frozenset({"plan", "plan-sweep", "collect-metrics"})


def _cached(task: dsl.PipelineTask) -> dsl.PipelineTask:
    return task.set_caching_options(task.name in CACHEABLE)


@dsl.component(base_image=IMAGE)
def resolve_spec(
    run_name: str, run_id: str, model_preset: str, model_dtype: str, server_kind: str, quantization: str,
    accelerator: str, accelerator_count: int, batch_sizes: list, sweep_modes: list, input_tokens: int,
    output_tokens: int, requests_per_point: int, slo_ttft_p99_ms: float, slo_tpot_p99_ms: float,
    temperature: float, top_p: float, top_k: int, min_tokens: int, ignore_eos: bool, stop: list,
    lake_uri: str, spec_yaml: str, job_id: str = "",
) -> str:
    params = dict(locals())  # before the imports below add names to locals()
    del params["job_id"]
    from servesweep.lake.uri import validate_lake_uri
    from servesweep.spec import spec_from_params

    # An empty run_id becomes name + this KFP run's id, so a rerun or clone writes a partition of its own.
    spec = spec_from_params(params).with_run_id(job_id)
    validate_lake_uri(spec.lake_uri)  # fail here, not at write-lake after the sweep
    return spec.model_dump_json()


@dsl.component(base_image=IMAGE)
def plan_sweep(spec_json: str, capacity_json: str) -> list:
    from pipelines.kfp_io import json_param
    from servesweep.spec import parse_spec
    from servesweep.sweep_plan import plan_deployments

    # Each item carries the spec so the loop body needs no outside parameter (KFP 2.17's local runner
    # replaces a loop body's upstream-task parameters with the loop item). KFP parameters carry no
    # nulls: unset fields are left out and come back as defaults.
    spec = parse_spec(json_param(spec_json))
    return [{"spec_json": spec_json, "capacity_json": capacity_json,
             "deployment": d.model_dump(mode="json", exclude_none=True)}
            for d in plan_deployments(spec)]


@dsl.component(base_image=IMAGE)
def provision(spec_json: str, owner: str) -> str:
    from components.provision import provision as ensure
    from pipelines.kfp_io import json_param
    from servesweep.spec import parse_spec

    return ensure(parse_spec(json_param(spec_json)), owner).model_dump_json(exclude_none=True)


@dsl.component(base_image=IMAGE)
def plan(spec_json: str, predicted: Output[Dataset]):
    import pyarrow.parquet as pq

    from components.plan import plan as plan_spec
    from pipelines.kfp_io import json_param
    from servesweep.lake.store import to_table
    from servesweep.spec import parse_spec

    result = plan_spec(parse_spec(json_param(spec_json)))
    pq.write_table(to_table("points", result.rows), predicted.path)
    predicted.metadata.update({"rows": len(result.rows), "fits": any(p.fit.fits for p in result.placements)})


@dsl.component(base_image=IMAGE)
def load_model(spec_json: str, model: Output[Model]):
    from components.load_model import prepare_model
    from pipelines.kfp_io import json_param
    from servesweep.spec import parse_spec

    info = prepare_model(parse_spec(json_param(spec_json)), model.path)  # writes servesweep-model.json too
    model.metadata.update({"parameters": info.parameters, "dtype": info.dtype, "bytes": info.bytes_on_disk,
                           "seconds": round(info.seconds, 3)})


@dsl.component(base_image=IMAGE)
def quantize(spec_json: str, model: Input[Model], quantized: Output[Model]):
    from components.quantize import quantize_model
    from pipelines.kfp_io import json_param
    from servesweep.spec import parse_spec

    result = quantize_model(parse_spec(json_param(spec_json)), model.path, quantized.path)
    print(f"quantize {result.method}: {result.how}{' (cached)' if result.cached else ''}, "
          f"{result.weight_bytes} weight bytes, {result.quantize_seconds:.1f} s")
    quantized.metadata.update({"method": result.method, "how": result.how, "weight_bytes": result.weight_bytes,
                               "seconds": round(result.quantize_seconds, 3), "tool_version": result.tool_version})


@dsl.component(base_image=IMAGE)
def deploy_server(spec_json: str, capacity_json: str, deployment: dict, owner: str, model: Input[Model]) -> str:
    from components.deploy_server import deploy_server as deploy
    from pipelines.kfp_io import json_param
    from servesweep.platform.types import Capacity
    from servesweep.spec import parse_spec
    from servesweep.sweep_plan import Deployment

    planned = Deployment.model_validate(deployment)
    capacity = Capacity.model_validate(json_param(capacity_json))
    endpoint = deploy(parse_spec(json_param(spec_json)), model.path, planned.deployment_id, planned.max_num_seqs,
                      owner, sweep_mode=planned.sweep_mode, node_selector=capacity.node_selector)
    print(f"deployment {endpoint.deployment_id}: " + (f"FAILED: {endpoint.error}" if endpoint.error
          else f"ready at {endpoint.base_url}" + (f" in {endpoint.start_seconds:.1f} s"
                                                    if endpoint.start_seconds is not None else " (running already)")))
    return endpoint.model_dump_json()


@dsl.component(base_image=IMAGE)
def sweep(spec_json: str, deployment: dict, endpoint_json: str, model: Input[Model], raw: Output[Dataset]):
    from components.sweep import run_sweep
    from pipelines.kfp_io import json_param
    from servesweep.platform.types import Endpoint
    from servesweep.spec import parse_spec
    from servesweep.sweep_plan import Deployment

    run_sweep(parse_spec(json_param(spec_json)), Deployment.model_validate(deployment),
              Endpoint.model_validate(json_param(endpoint_json)), model.path, raw.path)


@dsl.component(base_image=IMAGE)
def accuracy(spec_json: str, deployment: dict, endpoint_json: str, scores: Output[Dataset]):
    import pyarrow.parquet as pq

    from components.accuracy import score_accuracy
    from pipelines.kfp_io import json_param
    from servesweep.platform.types import Endpoint
    from servesweep.spec import parse_spec
    from servesweep.sweep_plan import Deployment

    rows = score_accuracy(parse_spec(json_param(spec_json)), Endpoint.model_validate(json_param(endpoint_json)),
                          Deployment.model_validate(deployment))
    pq.write_table(rows, scores.path)
    scores.metadata.update({"rows": len(rows)})


@dsl.component(base_image=IMAGE)
def teardown_server(endpoint_json: str, owner: str):
    from components.deploy_server import teardown_server as teardown
    from pipelines.kfp_io import json_param
    from servesweep.platform.types import Endpoint

    teardown(Endpoint.model_validate(json_param(endpoint_json)), owner)


@dsl.component(base_image=IMAGE)
def collect_metrics(spec_json: str, model: Input[Model], raws: Input[list[Dataset]], predicted: Input[Dataset],
                    tables: Output[Dataset]):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from components.collect_metrics import collect_metrics as collect
    from components.collect_metrics import save_tables
    from components.load_model import read_model_info
    from components.quantize import read_quantize_result
    from pipelines.kfp_io import json_param
    from servesweep.spec import parse_spec

    # The model artifact is the quantize step's output: its servesweep-quantize.json fills the runs row.
    result = collect(parse_spec(json_param(spec_json)), read_model_info(model.path), [raw.path for raw in raws],
                     read_quantize_result(model.path))
    result["points"] = pa.concat_tables([result["points"], pq.read_table(predicted.path)])
    save_tables(result, tables.path)
    tables.metadata.update({name: len(table) for name, table in result.items()})


@dsl.component(base_image=IMAGE)
def write_lake(spec_json: str, tables: Input[Dataset], scores: Input[list[Dataset]]) -> str:
    from components.collect_metrics import load_tables
    from components.write_lake import with_accuracy
    from components.write_lake import write_lake as write
    from pipelines.kfp_io import json_param
    from servesweep.spec import parse_spec

    spec = parse_spec(json_param(spec_json))
    written = write(spec.lake_uri, spec.run_id,
                    with_accuracy(load_tables(tables.path), [score.path for score in scores]))
    print(f"lake {spec.lake_uri} run {spec.run_id}: {written}")
    return spec.lake_uri


@dsl.component(base_image=IMAGE)
def report(spec_json: str, lake_uri: str, baseline_accelerator: str, metrics: Output[Metrics], html: Output[HTML],
           markdown: Output[Markdown]):
    from pipelines.kfp_io import json_param
    from servesweep.analysis.report import build_report, headline_metrics, write_kfp_artifacts
    from servesweep.spec import parse_spec

    spec = parse_spec(json_param(spec_json))
    result = build_report(lake_uri, [spec.run_id], spec.slo, baseline_accelerator)
    for name, value in headline_metrics(result).items():
        metrics.log_metric(name, value)
    charts = write_kfp_artifacts(result, html.path, markdown.path)
    print(f"{result.headline.summary} ({len(charts)} charts)")


@dsl.component(base_image=IMAGE)
def check_points(tables: Input[Dataset]):
    """Last: the lake and the report are written, so a run with failed points can fail without losing them."""
    from components.collect_metrics import load_tables
    from servesweep.outcome import run_outcome

    outcome = run_outcome(load_tables(tables.path)["points"].to_pylist())
    print(outcome.message)
    if outcome.code:
        raise SystemExit(outcome.code)  # no traceback: the line above says why


@dsl.component(base_image=IMAGE)
def teardown_all(owner: str, spec_yaml: str):
    from components.teardown_all import teardown_all as teardown

    print(f"stopped: {teardown(owner, spec_yaml) or 'nothing left running'}")


@dsl.pipeline(name="servesweep", description="Sweep batch sizes against a real LLM server; write the Parquet lake.")
def servesweep_pipeline(
    run_name: str = "local-smoke",
    run_id: str = "",
    model_preset: str = "tiny",
    model_dtype: str = "bfloat16",
    server_kind: str = "vllm",
    quantization: str = "none",
    accelerator: str = "cpu",
    accelerator_count: int = 1,
    batch_sizes: list = [1, 2, 4],  # noqa: B006 - KFP reads defaults from the signature
    sweep_modes: list = ["client_concurrency"],  # noqa: B006
    input_tokens: int = 64,
    output_tokens: int = 32,
    requests_per_point: int = 8,
    slo_ttft_p99_ms: float = 0.0,
    slo_tpot_p99_ms: float = 0.0,
    temperature: float = 0.0,
    top_p: float = 0.0,
    top_k: int = 0,
    min_tokens: int = -1,
    ignore_eos: bool = True,
    stop: list = [],  # noqa: B006
    lake_uri: str = "./lake",
    spec_yaml: str = "",
    baseline_accelerator: str = "nvidia-l4",
):
    owner = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    cleanup = _cached(teardown_all(owner=owner, spec_yaml=spec_yaml)).set_display_name("teardown-all")
    with dsl.ExitHandler(cleanup, name="always-teardown"):
        spec = _cached(resolve_spec(
            run_name=run_name, run_id=run_id, model_preset=model_preset, model_dtype=model_dtype,
            server_kind=server_kind, quantization=quantization, accelerator=accelerator,
            accelerator_count=accelerator_count, batch_sizes=batch_sizes, sweep_modes=sweep_modes,
            input_tokens=input_tokens, output_tokens=output_tokens, requests_per_point=requests_per_point,
            slo_ttft_p99_ms=slo_ttft_p99_ms, slo_tpot_p99_ms=slo_tpot_p99_ms, temperature=temperature,
            top_p=top_p, top_k=top_k, min_tokens=min_tokens, ignore_eos=ignore_eos, stop=stop, lake_uri=lake_uri,
            spec_yaml=spec_yaml, job_id=owner,
        ))
        spec_json = spec.output
        predictions = _cached(plan(spec_json=spec_json))
        capacity = _cached(provision(spec_json=spec_json, owner=owner)).after(predictions)
        model = _cached(load_model(spec_json=spec_json)).after(capacity)
        variant = _cached(quantize(spec_json=spec_json, model=model.outputs["model"]))
        deployments = _cached(plan_sweep(spec_json=spec_json, capacity_json=capacity.output))
        with dsl.ParallelFor(deployments.output, parallelism=1, name="deployments") as item:
            server = _cached(deploy_server(spec_json=item.spec_json, capacity_json=item.capacity_json,
                                           deployment=item.deployment, owner=owner,
                                           model=variant.outputs["quantized"]))
            swept = _cached(sweep(spec_json=item.spec_json, deployment=item.deployment, endpoint_json=server.output,
                                  model=variant.outputs["quantized"]))
            # After the sweep (scoring beside its load would skew both), on the same server, before teardown.
            scored = _cached(accuracy(spec_json=item.spec_json, deployment=item.deployment,
                                      endpoint_json=server.output)).after(swept)
            _cached(teardown_server(endpoint_json=server.output, owner=owner)).after(swept, scored)
        collected = _cached(collect_metrics(spec_json=spec_json, model=variant.outputs["quantized"],
                                            raws=dsl.Collected(swept.outputs["raw"]),
                                            predicted=predictions.outputs["predicted"]))
        written = _cached(write_lake(spec_json=spec_json, tables=collected.outputs["tables"],
                                     scores=dsl.Collected(scored.outputs["scores"])))
        summary = _cached(report(spec_json=spec_json, lake_uri=written.output,
                                 baseline_accelerator=baseline_accelerator))
        _cached(check_points(tables=collected.outputs["tables"])).after(summary)
