"""The `servesweep` command: run the pipeline locally, compile it, query the lake."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from servesweep.lake.schema import SCHEMA_VERSION, SCHEMAS, describe
from servesweep.lake.uri import LakeError, validate_lake_uri
from servesweep.spec import SLOSpec, SpecError, load_spec

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
# Piped output (CI logs, files) gets room for wide tables instead of an 80-column squeeze.
console = Console(width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True)

OUTPUT_FORMATS = ("table", "csv", "json")
_POINT_COLUMNS = [
    ("point_id", "point"), ("status", "status"), ("batch_size", "batch"), ("num_requests", "reqs"),
    ("num_errors", "errs"), ("request_throughput", "req/s"), ("output_token_throughput", "out tok/s"),
    ("ttft_p50_ms", "TTFT p50 ms"), ("ttft_p99_ms", "TTFT p99 ms"), ("tpot_p50_ms", "TPOT p50 ms"),
    ("itl_p99_ms", "ITL p99 ms"), ("e2e_p99_ms", "E2E p99 ms"), ("server_start_s", "start s"),
]


def _fail(message: str, code: int = 2) -> None:
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _cell(value: object) -> Text:
    """Cell text as data: a Text is never read as rich markup or emoji codes (`[/v1/completions]`, `:x:`)."""
    if value is None:
        return Text("-")
    if isinstance(value, float):
        return Text(f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}")
    return Text(str(value))


def print_arrow(table, title: str | None = None) -> None:
    """Render any Arrow table as a rich table."""
    view = Table(title=Text(title) if title else None, show_lines=False)
    for name in table.column_names:
        view.add_column(Text(name), overflow="fold")
    for row in table.to_pylist():
        view.add_row(*(_cell(v) for v in row.values()))
    console.print(view)


def print_points(lake_uri: str, run_id: str) -> None:
    from servesweep.lake.query import query

    columns = ", ".join(f'{name} AS "{label}"' for name, label in _POINT_COLUMNS)
    where = f"run_id = '{run_id}' AND source = 'measured'"
    table = query(lake_uri, f"SELECT {columns} FROM points WHERE {where} ORDER BY point_id")
    print_arrow(table, title=f"run {run_id}")


@app.command()
def run(
    spec_path: Annotated[Path, typer.Argument(help="Benchmark spec (YAML).")],
    run_id: Annotated[str, typer.Option(help="Override the spec's run id.")] = "",
    lake: Annotated[str, typer.Option(help="Override the spec's lake URI (directory or gs://).")] = "",
    pipeline_root: Annotated[Path, typer.Option(help="Where KFP keeps task artifacts.")] = Path("local_outputs"),
) -> None:
    """Run the benchmark pipeline locally (KFP local runner) against a real server."""
    from pipelines.local import PipelineFailed, run_locally

    try:
        spec = load_spec(spec_path)
    except SpecError as error:
        _fail(str(error))
    if spec.gke is not None:
        _fail(f"{spec_path} runs on GKE (it has a `gke` section): start it with `servesweep submit --kfp HOST` "
              "or `--argo HOST`")
    overrides = {k: v for k, v in {"run_id": run_id, "lake_uri": lake}.items() if v}
    spec = spec.model_copy(update=overrides).with_run_id()
    try:
        validate_lake_uri(spec.lake_uri, reach=True)  # now, not after the sweep has been paid for
    except LakeError as error:
        _fail(str(error))
    console.print(f"[bold]servesweep[/] run [cyan]{spec.run_id}[/] -> lake [cyan]{spec.lake_uri}[/]")
    try:
        lake_uri = run_locally(spec, pipeline_root)
    except PipelineFailed as error:
        _fail(f"{error}\nServers started by this run were stopped.", code=1)
    except KeyboardInterrupt:
        _fail("interrupted; servers started by this run were stopped.", code=130)
    print_points(lake_uri, spec.run_id)
    console.print(f"lake: [cyan]{lake_uri}[/]  (query it: servesweep query \"select * from points\" --lake {lake_uri})")
    console.print(f"report: servesweep report {spec.run_id} --lake {lake_uri}{_slo_flags(spec.slo)}", highlight=False)


def _slo_flags(slo: SLOSpec) -> str:
    """The `report` flags that judge a run by the SLO its spec set (the lake does not keep the SLO)."""
    flags = (("--slo-ttft-ms", slo.ttft_p99_ms), ("--slo-tpot-ms", slo.tpot_p99_ms), ("--slo-e2e-ms", slo.e2e_p99_ms))
    return "".join(f" {flag} {int(value) if value.is_integer() else value}" for flag, value in flags
                   if value is not None)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL over requests, points, server_metrics and the analysis views "
                                            "(servesweep views lists them); several statements print each result.")],
    lake: Annotated[str, typer.Option(help="Lake URI (directory or gs://).")] = "./lake",
    output: Annotated[str, typer.Option(help="table, csv or json")] = "table",
) -> None:
    """Run DuckDB SQL over the lake, read-only: no files, network, extensions or settings (see README)."""
    import duckdb

    from servesweep.lake.query import QueryRefused, returns_rows, run_sql, statements

    if output not in OUTPUT_FORMATS:
        _fail(f"unknown --output {output!r}: use {', '.join(OUTPUT_FORMATS)}")
    try:
        if output != "table" and sum(map(returns_rows, statements(sql))) > 1:
            _fail(f"--output {output} prints one result; this SQL has several statements that return rows")
        results = run_sql(lake, sql)
    except (QueryRefused, LakeError) as error:
        _fail(str(error))
    except duckdb.Error as error:
        _fail(f"query failed: {error}")
    for result in results:
        _print_result(result, output)


def _print_result(result, output: str) -> None:
    if output == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(result, sys.stdout.buffer)
    elif output == "json":
        import json

        typer.echo(json.dumps(result.to_pylist(), default=str, indent=2))
    else:
        print_arrow(result)


@app.command()
def schema(table: Annotated[str, typer.Argument(help="requests, points or server_metrics")] = "points") -> None:
    """Print a lake table's columns with their definitions."""
    if table not in SCHEMAS:
        _fail(f"unknown table {table!r}; tables: {', '.join(SCHEMAS)}")
    view = Table(title=f"{table} (schema v{SCHEMA_VERSION})")
    for column in ("column", "type", "definition"):
        view.add_column(column, overflow="fold")
    for row in describe(table):
        view.add_row(*row)
    console.print(view)


@app.command(name="compile")
def compile_(
    out: Annotated[Path, typer.Option(help="Output directory of the pipeline definitions.")] = Path("pipelines"),
    gke_spec: Annotated[Path, typer.Option(help="GKE spec: defaults and runner settings of the cluster "
                                                "definitions, RBAC subjects.")] = Path("specs/gke.yaml"),
    deploy_out: Annotated[Path, typer.Option(help="Output directory of the RBAC manifests.")] = Path("deploy"),
) -> None:
    """Compile the KFP pipeline (local and GKE), the Argo Workflow and the runner's RBAC to YAML."""
    from pipelines.compile import compile_all

    try:
        spec = load_spec(gke_spec)
    except SpecError as error:
        _fail(str(error))
    if spec.gke is None:
        _fail(f"{gke_spec} has no `gke` section; --gke-spec needs a GKE spec (see specs/gke.yaml)")
    for path in compile_all(out, spec, deploy_out):
        console.print(f"wrote {path}")


@app.command()
def submit(
    spec_path: Annotated[Path, typer.Option("--spec", help="Benchmark spec with a `gke` section.")] = Path(
        "specs/gke.yaml"),
    kfp: Annotated[str, typer.Option("--kfp", help="Kubeflow Pipelines host, e.g. https://kfp.example.com")] = "",
    argo: Annotated[str, typer.Option("--argo", help="Argo server, e.g. https://argo.example.com:2746 "
                                                     "(token from $ARGO_TOKEN)")] = "",
    experiment: Annotated[str, typer.Option(help="KFP experiment to file the run under.")] = "",
    namespace: Annotated[str, typer.Option(help="Argo namespace (default: the spec's gke.namespace).")] = "",
    verify_ssl: Annotated[bool, typer.Option(help="Verify the Argo server's TLS certificate.")] = True,
) -> None:
    """Start the benchmark on a cluster through KFP or Argo; prints the run id its lake rows will carry."""
    from pipelines.submit import SubmitError, submit_argo, submit_kfp

    if bool(kfp) == bool(argo):
        _fail("give exactly one of --kfp HOST or --argo HOST")
    try:
        spec = load_spec(spec_path)
        submitted = (submit_kfp(spec, kfp, experiment or None) if kfp
                     else submit_argo(spec, argo, namespace or None, verify_ssl))
    except (SpecError, SubmitError) as error:
        _fail(str(error))
    where = f"KFP run {submitted.reference}" if kfp else f"Argo workflow {submitted.reference}"
    console.print(f"submitted [cyan]{submitted.run_id}[/] as {where}")
    console.print(f"results: servesweep query \"select * from points where run_id = '{submitted.run_id}'\" "
                  f"--lake {spec.lake_uri}")


@app.command(name="plan")
def plan_command(
    model: Annotated[str, typer.Argument(help="Catalog name, Hugging Face id, spec preset, or path to a config.json.")],
    dtype: Annotated[str, typer.Option(help="Weights dtype: fp32, bf16, fp16, fp8, int8, int4.")] = "bf16",
    context: Annotated[int | None, typer.Option(help="Context length (default: the model's maximum).")] = None,
    input_tokens: Annotated[int, typer.Option(help="Prompt length for predictions.")] = 1024,
    output_tokens: Annotated[int, typer.Option(help="Output length for predictions.")] = 256,
    accelerator: Annotated[list[str] | None, typer.Option(help="Limit to these accelerators (repeatable).")] = None,
    slo_ttft_ms: Annotated[float | None, typer.Option(help="p99 TTFT target, ms.")] = None,
    slo_tpot_ms: Annotated[float | None, typer.Option(help="p99 TPOT target, ms.")] = None,
) -> None:
    """Memory fit, cheapest GPU and roofline predictions for a model, before spending money."""
    from servesweep.catalog import CatalogError
    from servesweep.planner import plan_report, render_plan

    try:
        result = plan_report(model, accelerator or None, dtype, context, input_tokens=input_tokens,
                             output_tokens=output_tokens, slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms)
    except (CatalogError, KeyError, ValueError, FileNotFoundError) as error:
        _fail(str(error).strip("'\""))
    console.print(render_plan(result))


@app.command()
def report(
    run_ids: Annotated[list[str], typer.Argument(help="Run ids to report on together (compare GPUs across runs).")],
    lake: Annotated[str, typer.Option(help="Lake URI (directory or gs://).")] = "./lake",
    out: Annotated[Path | None, typer.Option(help="Output directory (default: reports/<first run id>).")] = None,
    slo_ttft_ms: Annotated[float | None, typer.Option(help="p99 TTFT target, ms.")] = None,
    slo_tpot_ms: Annotated[float | None, typer.Option(help="p99 TPOT target, ms.")] = None,
    slo_e2e_ms: Annotated[float | None, typer.Option(help="p99 end-to-end latency target, ms.")] = None,
    baseline: Annotated[str, typer.Option(help="Accelerator whose best tokens per dollar = 1.0.")] = "nvidia-l4",
) -> None:
    """Charts and a Markdown/HTML summary: quantize? which GPU? which batch size? prefill- or decode-heavy?"""
    from pydantic import ValidationError

    from servesweep.analysis.report import ReportError, build_report, write_report
    from servesweep.catalog import CatalogError

    try:
        slo = SLOSpec(ttft_p99_ms=slo_ttft_ms, tpot_p99_ms=slo_tpot_ms, e2e_p99_ms=slo_e2e_ms)
        result = build_report(lake, run_ids, slo, baseline)
    except ValidationError as error:
        _fail(f"invalid SLO: {error.errors()[0]['loc'][0]} {error.errors()[0]['msg']}")
    except (ReportError, CatalogError, LakeError) as error:
        _fail(str(error))
    suffix = f"-and-{len(run_ids) - 1}-more" if len(run_ids) > 1 else ""
    paths = write_report(result, out or Path("reports") / f"{run_ids[0]}{suffix}")
    console.print(f"[bold]{result.headline.summary}[/]", highlight=False)
    view = Table(show_lines=True)
    for column in ("question", "scope", "status", "answer"):
        view.add_column(column, overflow="fold")
    for item in result.recommendations:
        view.add_row(*(Text(cell) for cell in (item.question.value, item.scope, item.status.value, item.answer)))
    console.print(view)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(f"wrote {paths.markdown}, {paths.html}, {paths.json_path} and {len(paths.charts)} charts")


@app.command()
def views(name: Annotated[str, typer.Argument(help="A view name; empty lists them all.")] = "") -> None:
    """The analysis views `servesweep query` can use, with their columns (the SQL files' header comments)."""
    from servesweep.analysis.views import VIEWS, view_doc

    if name and name not in VIEWS:
        _fail(f"unknown view {name!r}; views: {', '.join(VIEWS)}")
    for view_name in [name] if name else VIEWS:
        console.rule(view_name)
        console.print(view_doc(view_name), highlight=False, markup=False)


@app.command()
def salvage(
    run_dir: Annotated[Path | None, typer.Argument(help="A KFP local run folder (default: the latest).")] = None,
    pipeline_root: Annotated[Path, typer.Option(help="Where KFP keeps task artifacts.")] = Path("local_outputs"),
    lake: Annotated[str, typer.Option(help="Override the spec's lake URI.")] = "",
) -> None:
    """Publish the points a cut-short local run finished (the sweep saves after every point)."""
    from pipelines.salvage import NothingToSalvage, latest_run_dir
    from pipelines.salvage import salvage as salvage_run

    try:
        lake_uri, run_id, written = salvage_run(run_dir or latest_run_dir(pipeline_root), lake or None)
    except (NothingToSalvage, LakeError) as error:
        _fail(str(error))
    console.print(f"salvaged run [cyan]{run_id}[/] into [cyan]{lake_uri}[/]: {written}")
    print_points(lake_uri, run_id)


@app.command()
def validate(spec_path: Annotated[Path, typer.Argument(help="Benchmark spec (YAML).")]) -> None:
    """Check a spec without running anything; print the sweep it would run."""
    from components.sweep import plan_deployments

    try:
        spec = load_spec(spec_path)
    except SpecError as error:
        _fail(str(error))
    for deployment in plan_deployments(spec):
        points = ", ".join(p.point_id for p in deployment.points)
        console.print(f"deployment [cyan]{deployment.deployment_id}[/] (max_num_seqs={deployment.max_num_seqs}): "
                      f"{points}")


if __name__ == "__main__":
    app()
