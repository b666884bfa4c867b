"""Entry point of the Argo Workflow's containers: `python -m pipelines.argo_steps STEP --name value ...`.

The Argo twin of the KFP wrappers in kfp_pipeline.py: each step turns the strings and file paths
its template hands over into the typed step functions of `components`, and writes its outputs to
the paths named by the `out_*` arguments (Argo reads output parameters and artifacts from there).
Exit codes (servesweep.outcome): 0 done, 1 failed (Argo may retry), 2 bad spec or arguments (a retry
cannot help); check-points, the last step: 3 some points failed, 4 every point failed.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import get_origin

from servesweep.lake.uri import LakeError, validate_lake_uri
from servesweep.outcome import BAD_INPUT, run_outcome
from servesweep.spec import PipelineParams, SpecError, parse_spec, spec_from_params


class _ArgumentError(ValueError):
    pass


class _PointsFailed(RuntimeError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _write(path: str, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def _spec(spec_json: str):
    return parse_spec(json.loads(spec_json), source="spec_json")


def resolve_spec(out_spec_json: str, job_id: str = "", **params: str) -> None:
    """Workflow parameters (all strings; lists as JSON) -> the spec with a concrete run id.

    `job_id`: the workflow's uid ({{workflow.uid}}); an empty run_id becomes the spec's name and its first 8
    characters, so a resubmitted workflow cannot land in the old run's lake partition.
    """
    lists = {name for name, field in PipelineParams.model_fields.items() if get_origin(field.annotation) is list}
    typed = {name: _json_list(name, value) if name in lists else value for name, value in params.items()}
    spec = spec_from_params(typed).with_run_id(job_id)
    try:
        validate_lake_uri(spec.lake_uri)  # fail here, not at write-lake after the sweep
    except LakeError as error:
        raise SpecError(f"lake_uri: {error}") from None  # bad input: exit 2, a retry cannot help
    _write(out_spec_json, spec.model_dump_json())


def _json_list(name: str, value: str) -> object:
    try:
        return json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        raise _ArgumentError(f"parameter {name}: expected a JSON list such as [1, 2], got {value[:80]!r}") from None


def plan(spec_json: str, out_predicted: str) -> None:
    import pyarrow.parquet as pq

    from components.plan import plan as plan_spec
    from servesweep.lake.store import to_table

    result = plan_spec(_spec(spec_json))
    Path(out_predicted).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table("points", result.rows), out_predicted)


def provision(spec_json: str, owner: str, out_capacity_json: str) -> None:
    from components.provision import provision as ensure

    _write(out_capacity_json, ensure(_spec(spec_json), owner).model_dump_json(exclude_none=True))


def load_model(spec_json: str, out_model: str) -> None:
    from components.load_model import prepare_model

    info = prepare_model(_spec(spec_json), out_model)
    print(f"model {info.served_name}: {info.parameters:,} parameters at {info.path}")


def quantize(spec_json: str, model: str, out_quantized: str) -> None:
    from components.quantize import quantize_model

    result = quantize_model(_spec(spec_json), model, out_quantized)
    print(f"quantize {result.method}: {result.how}, {result.weight_bytes} weight bytes")


def plan_sweep(spec_json: str, out_deployments: str) -> None:
    from servesweep.sweep_plan import plan_deployments

    deployments = [d.model_dump(mode="json", exclude_none=True) for d in plan_deployments(_spec(spec_json))]
    _write(out_deployments, json.dumps(deployments))


def deploy_server(spec_json: str, capacity_json: str, deployment: str, owner: str, model: str,
                  out_endpoint_json: str) -> None:
    from components.deploy_server import deploy_server as deploy
    from servesweep.platform.types import Capacity
    from servesweep.sweep_plan import Deployment

    planned = Deployment.model_validate_json(deployment)
    capacity = Capacity.model_validate_json(capacity_json)
    endpoint = deploy(_spec(spec_json), model, planned.deployment_id, planned.max_num_seqs, owner,
                      sweep_mode=planned.sweep_mode, node_selector=capacity.node_selector)
    print(f"deployment {endpoint.deployment_id}: " + (f"FAILED: {endpoint.error}" if endpoint.error
          else f"ready at {endpoint.base_url}" + (f" in {endpoint.start_seconds:.1f} s"
                                                    if endpoint.start_seconds is not None else " (running already)")))
    _write(out_endpoint_json, endpoint.model_dump_json())


def sweep(spec_json: str, deployment: str, deployment_id: str, endpoint_json: str, model: str, out_raw: str) -> None:
    """`deployment_id` names the raw artifact's key; it must be the deployment's own."""
    from components.sweep import run_sweep
    from servesweep.platform.types import Endpoint
    from servesweep.sweep_plan import Deployment

    planned = Deployment.model_validate_json(deployment)
    if planned.deployment_id != deployment_id:
        raise _ArgumentError(f"deployment_id {deployment_id!r} is not the deployment's ({planned.deployment_id!r})")
    run_sweep(_spec(spec_json), planned, Endpoint.model_validate_json(endpoint_json), model, out_raw)


def accuracy(spec_json: str, deployment: str, deployment_id: str, endpoint_json: str, out_scores: str) -> None:
    """`deployment_id` names the scores artifact's key; it must be the deployment's own."""
    import pyarrow.parquet as pq

    from components.accuracy import score_accuracy
    from servesweep.platform.types import Endpoint
    from servesweep.sweep_plan import Deployment

    planned = Deployment.model_validate_json(deployment)
    if planned.deployment_id != deployment_id:
        raise _ArgumentError(f"deployment_id {deployment_id!r} is not the deployment's ({planned.deployment_id!r})")
    rows = score_accuracy(_spec(spec_json), Endpoint.model_validate_json(endpoint_json), planned)
    Path(out_scores).mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, Path(out_scores) / "accuracy.parquet")


def teardown_server(endpoint_json: str, owner: str) -> None:
    from components.deploy_server import teardown_server as teardown
    from servesweep.platform.types import Endpoint

    teardown(Endpoint.model_validate_json(endpoint_json), owner)


def collect_metrics(spec_json: str, model: str, raws: str, predicted: str, out_tables: str) -> None:
    """`raws` holds one folder per deployment (the sweeps' key-only artifacts under one prefix)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from components.collect_metrics import collect_metrics as collect
    from components.collect_metrics import save_tables
    from components.load_model import read_model_info
    from components.quantize import read_quantize_result

    sweep_dirs = sorted(str(p) for p in Path(raws).iterdir() if (p / "manifest.json").is_file())
    result = collect(_spec(spec_json), read_model_info(model), sweep_dirs, read_quantize_result(model))
    result["points"] = pa.concat_tables([result["points"], pq.read_table(predicted)])
    save_tables(result, out_tables)


def write_lake(spec_json: str, tables: str, scores: str) -> None:
    """`scores` holds one folder per deployment (the accuracy steps' key-only artifacts under one prefix)."""
    from components.collect_metrics import load_tables
    from components.write_lake import with_accuracy
    from components.write_lake import write_lake as write

    spec = _spec(spec_json)
    files = sorted(Path(scores).glob("*/accuracy.parquet")) if Path(scores).is_dir() else []
    written = write(spec.lake_uri, spec.run_id, with_accuracy(load_tables(tables), files))
    print(f"lake {spec.lake_uri} run {spec.run_id}: {written}")


def report(spec_json: str, baseline_accelerator: str, out_html: str, out_markdown: str) -> None:
    """Headline and recommendations of the run just written: an HTML page and a Markdown summary."""
    from servesweep.analysis.report import build_report, headline_metrics, write_kfp_artifacts

    spec = _spec(spec_json)
    result = build_report(spec.lake_uri, [spec.run_id], spec.slo, baseline_accelerator)
    charts = write_kfp_artifacts(result, out_html, out_markdown)
    print(f"{result.headline.summary} ({len(charts)} charts)")
    print(json.dumps(headline_metrics(result)))


def check_points(tables: str) -> None:
    """Last: the lake and the report are written, so a run with failed points can fail without losing them."""
    from components.collect_metrics import load_tables

    outcome = run_outcome(load_tables(tables)["points"].to_pylist())
    if outcome.code:
        raise _PointsFailed(outcome.message, outcome.code)
    print(outcome.message)


def teardown_all(owner: str, spec_yaml: str) -> None:
    from components.teardown_all import teardown_all as teardown

    print(f"stopped: {teardown(owner, spec_yaml) or 'nothing left running'}")


STEPS: dict[str, Callable[..., None]] = {
    "resolve-spec": resolve_spec, "plan": plan, "provision": provision, "load-model": load_model,
    "quantize": quantize, "plan-sweep": plan_sweep, "deploy-server": deploy_server, "sweep": sweep,
    "accuracy": accuracy, "teardown-server": teardown_server,
    "collect-metrics": collect_metrics, "write-lake": write_lake, "report": report, "check-points": check_points,
    "teardown-all": teardown_all,
}


def parse_args(argv: list[str]) -> tuple[Callable[..., None], dict[str, str]]:
    """STEP --name value ... -> (step function, keyword arguments)."""
    if not argv or argv[0] not in STEPS:
        raise _ArgumentError(f"first argument must be a step: {', '.join(STEPS)}")
    step, pairs = STEPS[argv[0]], argv[1:]
    if len(pairs) % 2 or not all(name.startswith("--") for name in pairs[::2]):
        raise _ArgumentError("arguments after the step must be --name value pairs")
    kwargs = {name[2:].replace("-", "_"): value for name, value in zip(pairs[::2], pairs[1::2], strict=True)}
    try:
        inspect.signature(step).bind(**kwargs)
    except TypeError as error:
        raise _ArgumentError(f"{argv[0]}: {error}") from None
    return step, kwargs


def main(argv: list[str] | None = None) -> int:
    """Run one step; any other exception ends it with a traceback and exit code 1 (retryable)."""
    try:
        step, kwargs = parse_args(sys.argv[1:] if argv is None else argv)
        step(**kwargs)
    except (SpecError, _ArgumentError) as error:
        print(f"error: {error}", file=sys.stderr)
        return BAD_INPUT
    except _PointsFailed as error:
        print(error, file=sys.stderr)
        return error.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
