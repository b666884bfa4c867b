"""The `servesweep` command: run the pipeline locally, compile it, query the lake.

Exit codes (servesweep.outcome): 0 ok, 1 crash, 2 bad input, 3 some points failed, 4 every point
failed, 130 interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

if TYPE_CHECKING:
    import pyarrow as pa

from servesweep.lake.schema import SCHEMA_VERSION, SCHEMAS, describe
from servesweep.lake.uri import LakeError, validate_lake_uri
from servesweep.outcome import BAD_INPUT, CRASH, INTERRUPTED, run_outcome
from servesweep.spec import (
    MAX_SLO_MS,
    MAX_TOKENS,
    RUN_ID_RULE,
    BenchmarkSpec,
    SLOSpec,
    SpecError,
    load_spec,
    valid_run_id,
)

# Piped output (CI logs, files) gets room for wide tables instead of an 80-column squeeze.
console = Console(width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True)


# Click's UsageError as typer raises it (recent typer vendors click, so `import click` would be another class).
_UsageError: Any = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")


class _OneLineErrors(TyperGroup):
    """A bad flag or argument as one `error:` line, like every other refusal (typer's panel wraps it)."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:  # the group's own flags (a click Context)
        try:
            return super().make_context(*args, **kwargs)
        except _UsageError as error:
            if type(error).__name__ == "NoArgsIsHelpError":  # bare `servesweep`: the help, as typer shows it
                raise
            _usage_error(error)

    def invoke(self, ctx: Any) -> object:  # the subcommands' arguments and flags
        try:
            return super().invoke(ctx)
        except _UsageError as error:
            _usage_error(error)


def _usage_error(error: Any) -> NoReturn:  # a click UsageError
    where = error.ctx.command_path if getattr(error, "ctx", None) else "servesweep"
    errors.print(f"[bold red]error:[/] {escape(error.format_message())} (see {escape(where)} --help)",
                 highlight=False, soft_wrap=True)
    raise typer.Exit(error.exit_code) from None


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True, help=__doc__)

OUTPUT_FORMATS = ("table", "csv", "json")
_POINT_COLUMNS = [
    ("point_id", "point"), ("status", "status"), ("batch_size", "batch"), ("num_requests", "reqs"),
    ("num_errors", "errs"), ("request_throughput", "req/s"), ("output_token_throughput", "out tok/s"),
    ("ttft_p50_ms", "TTFT p50 ms"), ("ttft_p99_ms", "TTFT p99 ms"), ("tpot_p50_ms", "TPOT p50 ms"),
    ("itl_p99_ms", "ITL p99 ms"), ("e2e_p99_ms", "E2E p99 ms"), ("server_start_s", "start s"),
    ("reused_from_run", "measured by"),
]


def _fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _need(*needs: tuple[str, str], purpose: str) -> None:
    """Fail in one line, naming the extra to install, unless every (module, extra) is installed."""
    from servesweep.extras import MissingExtra, require_installed

    try:
        for module, extra in needs:
            require_installed(module, extra, purpose)
    except MissingExtra as error:
        _fail(str(error))


def _cell(value: object) -> Text:
    """Cell text as data: a Text is never read as rich markup or emoji codes (`[/v1/completions]`, `:x:`)."""
    if value is None:
        return Text("-")
    if isinstance(value, float):
        return Text(f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}")
    return Text(str(value))


def print_arrow(table: pa.Table, title: str | None = None) -> None:
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


def _exit_with_outcome(lake_uri: str, run_id: str) -> None:
    """Exit 3 (some points failed) or 4 (all did) after saying which and why; return when all were measured."""
    from servesweep.lake.query import query

    points = query(lake_uri, f"SELECT point_id, source, status, failure_reason FROM points "
                             f"WHERE run_id = '{run_id}' AND source = 'measured'").to_pylist()
    outcome = run_outcome(points)
    if outcome.code:
        _fail(outcome.message, code=outcome.code)


@app.command()
def run(
    spec_path: Annotated[Path, typer.Argument(help="Benchmark spec (YAML).")],
    run_id: Annotated[str, typer.Option(help="Override the spec's run id.")] = "",
    lake: Annotated[str, typer.Option(help="Override the spec's lake URI (directory or gs://).")] = "",
    pipeline_root: Annotated[Path, typer.Option(help="Where KFP keeps task artifacts.")] = Path("local_outputs"),
    force: Annotated[bool, typer.Option("--force", help="Measure every point, also those the lake already has for "
                                        "the same configuration (sweep.resume: false).")] = False,
) -> None:
    """Run the benchmark pipeline locally (KFP local runner) against a real server. Points the lake has measured
    for the same configuration are not run again (resume) unless --force."""
    _need(("kfp", "kfp"), ("transformers", "local"), purpose="servesweep run")
    from pipelines.local import PipelineFailed, run_locally
    from servesweep.runlock import LockError, run_lock
    from servesweep.secrets import hand_over, mask, secret_values

    try:
        spec = load_spec(spec_path)
        # Flags are validated like the spec (a --run-id of ../../x would put files outside the run's folders).
        flags = {"run_id": ("--run-id", run_id), "lake_uri": ("--lake", lake)}
        overrides: dict[str, Any] = {field: value for field, (_, value) in flags.items() if value}
        if force:
            overrides["sweep"] = spec.sweep.model_dump(mode="json") | {"resume": False}
            flags["sweep"] = ("--force", "")
        if overrides:
            spec = spec.with_fields(" ".join(flags[field][0] for field in overrides), **overrides)
    except SpecError as error:
        _fail(str(error))
    if spec.gke is not None:
        _fail(f"{spec_path} runs on GKE (it has a `gke` section): start it with `servesweep submit --kfp HOST` "
              "or `--argo HOST`")
    spec = spec.with_run_id()
    try:
        validate_lake_uri(spec.lake_uri, reach=True)  # now, not after the sweep has been paid for
    except LakeError as error:
        _fail(str(error))
    if spec.variants:
        _run_variants(spec, pipeline_root)
        return
    console.print(f"[bold]servesweep[/] run [cyan]{spec.run_id}[/] -> lake [cyan]{spec.lake_uri}[/]")
    try:
        # server.env reaches the deploy step through the environment, never through pipeline parameters.
        with run_lock(spec.lake_uri, spec.run_id), hand_over(spec.server.env):
            lake_uri = run_locally(spec, pipeline_root)
    except LockError as error:
        _fail(str(error))
    except PipelineFailed as error:
        _fail(f"{mask(str(error), secret_values(spec.server.env))}\nServers started by this run were stopped.",
              code=CRASH)
    except KeyboardInterrupt:
        _fail("interrupted; servers started by this run were stopped.", code=INTERRUPTED)
    print_points(lake_uri, spec.run_id)
    console.print(f"lake: [cyan]{lake_uri}[/]  (query it: servesweep query \"select * from points\" --lake {lake_uri})")
    console.print(f"report: servesweep report {spec.run_id} --lake {lake_uri}{_slo_flags(spec.slo)}", highlight=False)
    _exit_with_outcome(lake_uri, spec.run_id)


def _run_variants(spec: BenchmarkSpec, pipeline_root: Path) -> None:
    """One run per variant (pipelines.variants), one summary, the worst variant's exit code."""
    import pyarrow as pa

    from pipelines.variants import overall_code, run_variants, summary_rows

    console.print(f"[bold]servesweep[/] {len(spec.variants)} variants of [cyan]{spec.run_id}[/] -> lake "
                  f"[cyan]{spec.lake_uri}[/]")
    try:
        runs = run_variants(spec, pipeline_root, lambda line: console.print(line, highlight=False))
    except KeyboardInterrupt:
        _fail("interrupted; servers started by this run were stopped.", code=INTERRUPTED)
    print_arrow(pa.Table.from_pylist(summary_rows(spec.lake_uri, runs)), title=f"variants of {spec.run_id}")
    run_ids = " ".join(run.run_id for run in runs)
    console.print(f"report: servesweep report {run_ids} --lake {spec.lake_uri}{_slo_flags(spec.slo)}",
                  highlight=False)
    if code := overall_code(runs):
        _fail("; ".join(f"{run.variant}: {run.message}" for run in runs if run.code), code=code)


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

    from servesweep.analysis.views import run_sql
    from servesweep.lake.query import QueryRefused, returns_rows, statements

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


def _print_result(result: pa.Table, output: str) -> None:
    if output == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(result, sys.stdout.buffer)
    elif output == "json":
        import json

        typer.echo(json.dumps(result.to_pylist(), default=str, indent=2))
    else:
        print_arrow(result)


@app.command()
def pooled(
    metric: Annotated[str, typer.Argument(help="ttft, tpot, itl or e2e")] = "itl",
    where: Annotated[str, typer.Option(help="SQL over points choosing the points to pool (default: all).")] = "",
    quantile: Annotated[list[float] | None, typer.Option("-q", help="Quantiles in [0, 1]; repeatable.")] = None,
    lake: Annotated[str, typer.Option(help="Lake URI (directory or gs://).")] = "./lake",
) -> None:
    """Latency percentiles pooled over any set of points, from their stored DDSketches (within 1 %)."""
    import duckdb
    import pyarrow

    from servesweep.analysis.pooled import DEFAULT_QUANTILES, as_rows
    from servesweep.analysis.pooled import pooled as pool
    from servesweep.extras import MissingExtra

    try:
        result = pool(lake, metric, where or None, tuple(quantile or DEFAULT_QUANTILES))
    except (ValueError, LakeError, MissingExtra) as error:
        _fail(str(error))
    except duckdb.Error as error:
        _fail(f"query failed: {error}")
    print_arrow(pyarrow.Table.from_pylist(as_rows(result)))


@app.command(name="lake")
def lake_maintenance(
    action: Annotated[str, typer.Argument(help="migrate (rewrite older runs as the current schema) or compact "
                                               "(points, runs, server_metrics of every run into one file each)")],
    lake: Annotated[str, typer.Option(help="Lake URI (directory or gs://).")] = "./lake",
) -> None:
    """Maintain a long-lived lake; both are safe beside readers (each change is a commit)."""
    from servesweep.lake import store

    try:
        if action == "migrate":
            done = store.migrate(lake)
            typer.echo(f"migrated {len(done)} runs to schema v{SCHEMA_VERSION}" + "".join(
                f"\n  {run}: v{version}" for run, version in sorted(done.items())))
        elif action == "compact":
            compaction = store.compact(lake)
            typer.echo("nothing to compact" if compaction is None else
                       f"compacted {len(compaction.runs)} runs: {', '.join(sorted(compaction.files))}")
        else:
            _fail(f"unknown action {action!r}: use migrate or compact")
    except LakeError as error:
        _fail(str(error))


@app.command()
def schema(table: Annotated[str, typer.Argument(help="requests, points, server_metrics or runs")] = "points") -> None:
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
    _need(("kfp", "kfp"), ("kfp.kubernetes", "kfp"), ("hera", "argo"), ("kubernetes", "gke"),
          purpose="servesweep compile")
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
    namespace: Annotated[str, typer.Option(help="KFP: the profile namespace on multi-user Kubeflow (must be the "
                                                "spec's gke.namespace). Argo: default the spec's gke.namespace.")] = "",
    verify_ssl: Annotated[bool, typer.Option(help="Verify the Argo server's TLS certificate.")] = True,
) -> None:
    """Start the benchmark on a cluster through KFP or Argo; prints the run id its lake rows will carry."""
    if bool(kfp) == bool(argo):
        _fail("give exactly one of --kfp HOST or --argo HOST")
    # Submitting compiles the definitions first, KFP's or Argo's, with the cluster's RBAC subjects.
    _need(("kfp", "kfp"), ("kfp.kubernetes", "kfp"), ("hera", "argo"), ("kubernetes", "gke"),
          purpose="servesweep submit")
    from pipelines.submit import SubmitError, submit_argo, submit_kfp
    try:
        spec = load_spec(spec_path)
        for variant in spec.variant_specs():  # one pipeline run per variant: a pipeline runs one
            submitted = (submit_kfp(variant, kfp, experiment or None, namespace or None) if kfp
                         else submit_argo(variant, argo, namespace or None, verify_ssl))
            where = f"KFP run {submitted.reference}" if kfp else f"Argo workflow {submitted.reference}"
            console.print(f"submitted [cyan]{submitted.run_id}[/] ({variant.quantization}) as {where}")
            console.print(f"results: servesweep query \"select * from points where run_id = '{submitted.run_id}'\" "
                          f"--lake {spec.lake_uri}")
    except (SpecError, SubmitError) as error:
        _fail(str(error))


@app.command(name="plan")
def plan_command(
    model: Annotated[str, typer.Argument(help="Catalog name, Hugging Face id, spec preset, or path to a config.json.")],
    dtype: Annotated[str, typer.Option(help="Weights dtype: fp32, bf16, fp16, fp8, int8, int4.")] = "bf16",
    context: Annotated[int | None, typer.Option(help="Context length (default: the model's maximum).",
                                                min=1, max=MAX_TOKENS)] = None,
    input_tokens: Annotated[int, typer.Option(help="Prompt length for predictions.", min=1, max=MAX_TOKENS)] = 1024,
    output_tokens: Annotated[int, typer.Option(help="Output length for predictions.", min=1, max=MAX_TOKENS)] = 256,
    accelerator: Annotated[list[str] | None, typer.Option(help="Limit to these accelerators (repeatable).")] = None,
    slo_ttft_ms: Annotated[float | None, typer.Option(help="p99 TTFT target, ms.")] = None,
    slo_tpot_ms: Annotated[float | None, typer.Option(help="p99 TPOT target, ms.")] = None,
) -> None:
    """Memory fit, the fewest GPUs (tensor/pipeline parallel) per weight dtype, cheapest GPU and roofline
    predictions for a model, before spending money."""
    from servesweep.catalog import CatalogError
    from servesweep.planner import plan_report, render_minimum_gpus, render_plan
    from servesweep.planner.report import minimum_gpus_lines

    _check_slo_flags({"--slo-ttft-ms": slo_ttft_ms, "--slo-tpot-ms": slo_tpot_ms})
    try:
        result = plan_report(model, accelerator or None, dtype, context, input_tokens=input_tokens,
                             output_tokens=output_tokens, slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms)
    except (CatalogError, KeyError, ValueError, FileNotFoundError) as error:
        _fail(str(error).strip("'\""))
    console.print(render_minimum_gpus(result))
    for line in minimum_gpus_lines(result):
        console.print(line, highlight=False)
    console.print(render_plan(result))


def _check_slo_flags(flags: dict[str, float | None]) -> None:
    for flag, value in flags.items():
        if value is not None and not 0 < value <= MAX_SLO_MS:  # also false for NaN
            _fail(f"{flag} must be > 0 and <= {MAX_SLO_MS:.0f} ms, got {value}")


def _check_run_ids(run_ids: list[str]) -> None:
    """Run ids name report folders and SQL literals: the spec's rule applies to them too."""
    for run_id in run_ids:
        if not valid_run_id(run_id):
            _fail(f"run id {run_id!r}: {RUN_ID_RULE}")


@app.command()
def report(
    run_ids: Annotated[list[str], typer.Argument(help="Run ids to report on together (compare GPUs across runs).")],
    lake: Annotated[str, typer.Option(help="Lake URI (directory or gs://).")] = "./lake",
    out: Annotated[Path | None, typer.Option(help="Output directory (default: reports/<first run id>).")] = None,
    slo_ttft_ms: Annotated[float | None, typer.Option(help="p99 TTFT target, ms.")] = None,
    slo_tpot_ms: Annotated[float | None, typer.Option(help="p99 TPOT target, ms.")] = None,
    slo_e2e_ms: Annotated[float | None, typer.Option(help="p99 end-to-end latency target, ms.")] = None,
    baseline: Annotated[str, typer.Option(help="Accelerator whose best tokens per dollar = 1.0.")] = "nvidia-l4",
    pricing: Annotated[str, typer.Option(
        help="Which catalog prices cost the tokens: on-demand, spot, cud-1y or cud-3y (1-/3-year committed use). "
             "A machine without that price is left unpriced, and the report says so.")] = "on-demand",
) -> None:
    """Charts and a Markdown/HTML summary: quantize? which machine type? which GPU? which batch size? prefill- or
    decode-heavy?"""
    import duckdb
    from pydantic import ValidationError

    _need(("matplotlib", "report"), purpose="servesweep report")
    from servesweep.analysis.report import ReportError, build_report, write_report
    from servesweep.catalog import PRICINGS, CatalogError

    _check_run_ids(run_ids)
    _check_slo_flags({"--slo-ttft-ms": slo_ttft_ms, "--slo-tpot-ms": slo_tpot_ms, "--slo-e2e-ms": slo_e2e_ms})
    if pricing not in PRICINGS:
        _fail(f"--pricing {pricing!r}: choose one of {', '.join(PRICINGS)}")
    if out is not None and out.exists() and not out.is_dir():
        _fail(f"--out {out} is a file; give a directory (it receives report.md, report.html and charts/)")
    try:
        slo = SLOSpec(ttft_p99_ms=slo_ttft_ms, tpot_p99_ms=slo_tpot_ms, e2e_p99_ms=slo_e2e_ms)
        result = build_report(lake, run_ids, slo, baseline, pricing=pricing)
    except ValidationError as error:
        _fail(f"invalid SLO: {error.errors()[0]['loc'][0]} {error.errors()[0]['msg']}")
    except (ReportError, CatalogError, LakeError) as error:
        _fail(str(error))
    except duckdb.Error as error:  # a damaged file in the lake: say which, in one line
        _fail(f"cannot read the lake {lake}: {str(error).splitlines()[0]}")
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
    _exit_with_outcome(lake_uri, run_id)  # a salvaged run is judged like a finished one (points "not run" failed)


@app.command()
def validate(
    spec_path: Annotated[Path, typer.Argument(help="Benchmark spec (YAML).")],
    explain: Annotated[bool, typer.Option("--explain", help="Also print every field of the resolved spec (defaults "
                                                            "filled in) with its meaning.")] = False,
) -> None:
    """Check a spec without running anything; print the sweep it would run and what the planner warns of
    (e.g. too few GPUs for the model: the plan step's predicted rows would all be failed)."""
    from components.plan import plan
    from servesweep.sweep_plan import plan_deployments

    try:
        spec = load_spec(spec_path)
    except SpecError as error:
        _fail(str(error))
    if explain:
        _print_explained(spec)
    if spec.variants:
        runs = ", ".join(v.quantization for v in spec.with_run_id().variant_specs())
        console.print(f"variants: {runs} (one run each, in this order, run id <run_id>-<variant>)", highlight=False)
    for deployment in plan_deployments(spec):
        points = ", ".join(p.point_id for p in deployment.points)
        times = f", x{deployment.repeats}" if deployment.repeats > 1 else ""
        console.print(f"deployment [cyan]{deployment.deployment_id}[/] (max_num_seqs={deployment.max_num_seqs}"
                      f"{times}): {points}")
    try:
        warnings = plan(spec).warnings
    except ValueError as error:  # CatalogError too (a broken $SERVESWEEP_CATALOG): the spec itself is fine
        warnings = [f"no plan: {error}"]
    for warning in warnings:
        console.print(f"planner warning: {escape(warning)}", highlight=False)


def _print_explained(spec: BenchmarkSpec) -> None:
    from servesweep.docs import explain

    view = Table(title=Text(f"{spec.name}: the resolved spec (server.env values withheld)"), show_lines=False)
    for column in ("field", "value", "meaning"):
        view.add_column(column, overflow="fold")
    for path, value, meaning in explain(spec):
        view.add_row(Text(path), Text(value), Text(meaning))
    console.print(view)


@app.command()
def docs(
    out: Annotated[Path, typer.Option(help="Directory of the generated reference docs.")] = Path("docs"),
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 when a file is stale.")] = False,
) -> None:
    """Generate docs/spec.md (from the spec's models) and docs/metrics.md (from the lake schema)."""
    from servesweep.docs import stale_docs, write_docs

    if check:
        stale = stale_docs(out)
        if stale:
            _fail(f"stale under {out}: {', '.join(stale)}; run `servesweep docs` (make docs)", code=1)
        console.print(f"{out}: up to date")
        return
    for path in write_docs(out):
        console.print(f"wrote {path}")


@app.command(name="compare")
def compare_command(
    a: Annotated[str, typer.Argument(help="Run id, or configuration id (point_costs.config_id), of side A.")],
    b: Annotated[str, typer.Argument(help="Run id, or configuration id, of side B.")],
    lake: Annotated[str, typer.Option(help="Lake URI (directory or gs://).")] = "./lake",
    output: Annotated[str, typer.Option(help="table or json")] = "table",
) -> None:
    """What differs between two runs (or two configurations): fingerprint, spec and identity, and per load on
    both sides the throughput, TTFT and TPOT changes, each outside the noise, within it, or unqualified."""
    import duckdb

    from servesweep.analysis.compare import CompareError, compare, delta_rows, summary

    if output not in ("table", "json"):
        _fail(f"unknown --output {output!r}: use table or json")
    try:
        result = compare(lake, a, b)
    except (CompareError, LakeError) as error:
        _fail(str(error))
    except duckdb.Error as error:
        _fail(f"cannot read the lake {lake}: {str(error).splitlines()[0]}")
    if output == "json":
        typer.echo(result.model_dump_json(indent=2))
        return
    console.print(Text(f"A: {result.a_label} (runs {', '.join(result.a_runs)})\n"
                       f"B: {result.b_label} (runs {', '.join(result.b_runs)})"))
    changed = Table(title="What differs", show_lines=False)
    for column in ("field", "A", "B"):
        changed.add_column(column, overflow="fold")
    for difference in result.differences:
        changed.add_row(Text(difference.field), Text(difference.a), Text(difference.b))
    console.print(changed if result.differences else Text("What differs: nothing recorded"))
    headers, rows = delta_rows(result)
    deltas = Table(title="Per load measured on both sides", show_lines=False)
    for column in headers:
        deltas.add_column(column, overflow="fold")
    for row in rows:
        deltas.add_row(*(Text(cell) for cell in row))
    console.print(deltas)
    console.print(Text(summary(result)))
    for side, loads in (("A", result.only_a), ("B", result.only_b)):
        if loads:
            console.print(Text(f"only in {side}: {'; '.join(loads)}"))
    for note in result.notes:
        console.print(Text(f"note: {note}"))


@app.command(name="import")
def import_(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="vllm-bench (vllm bench serve --save-result JSON), "
                                       "guidellm (its benchmarks report JSON) or inference-perf (a "
                                       "*_lifecycle_metrics.json, or its results folder)")],
    file: Annotated[Path, typer.Argument(help="The result file (inference-perf: or its folder).")],
    lake: Annotated[str, typer.Option(help="Lake URI (directory or gs://).")] = "./lake",
    run_id: Annotated[str, typer.Option(help="Run id of the imported run (default: import-FORMAT-<file digest>).")]
    = "",
    accelerator: Annotated[str, typer.Option(help="What it ran on (a catalog accelerator, e.g. nvidia-l4), which "
                                                  "the file does not record; unset: null.")] = "",
    accelerator_count: Annotated[int | None, typer.Option(help="Accelerators per server.")] = None,
    server_kind: Annotated[str, typer.Option(help="The server it measured (vllm, tgi, sglang...).")] = "",
    quantization: Annotated[str, typer.Option(help="The variant served (none, fp8, w8a8-int8...).")] = "",
) -> None:
    """Import a peer tool's results into the lake as a run of its own, beside the runs servesweep measured. What
    the file does not record stays null unless stated here (the run's notes say which were stated)."""
    from servesweep.importers import ImportFailed, Stated, import_file

    if run_id:
        _check_run_ids([run_id])
    stated = Stated(accelerator or None, accelerator_count, server_kind or None, quantization or None)
    try:
        result = import_file(fmt, file, lake, run_id or None, stated)
    except (ImportFailed, LakeError) as error:
        _fail(str(error))
    console.print(f"imported [cyan]{result.run_id}[/] into [cyan]{lake}[/]: {result.rows['points']} points, "
                  f"{result.rows['requests']} requests")
    print_points(lake, result.run_id)


@app.command(name="deploy-manifest")
def deploy_manifest(
    out: Annotated[Path, typer.Option(help="Directory that receives manifests.yaml.")],
    lake: Annotated[str, typer.Option(help="Lake URI (directory or gs://).")] = "./lake",
    run_ids: Annotated[list[str] | None, typer.Option("--run", help="Runs to choose from (repeatable; default: all).")]
    = None,
    config: Annotated[str, typer.Option(help="A config id, label or comparison group (the report's ideal_batch "
                                             "view); needed when the runs hold several models or workloads.")] = "",
    slo_ttft_ms: Annotated[float | None, typer.Option(help="p99 TTFT target, ms.")] = None,
    slo_tpot_ms: Annotated[float | None, typer.Option(help="p99 TPOT target, ms.")] = None,
    slo_e2e_ms: Annotated[float | None, typer.Option(help="p99 end-to-end latency target, ms.")] = None,
    gke_spec: Annotated[Path, typer.Option(help="GKE spec whose `gke` section places the server (namespace, images, "
                                                "model bucket, provisioning).")] = Path("specs/gke.yaml"),
    min_replicas: Annotated[int, typer.Option(help="Autoscaler's fewest replicas.")] = 1,
    max_replicas: Annotated[int, typer.Option(help="Autoscaler's most replicas.")] = 4,
    queue_target: Annotated[float | None, typer.Option(help="Waiting requests per pod the autoscaler holds "
                                                            "(default: the peak measured at the recommended "
                                                            "point).")] = None,
) -> None:
    """Kubernetes Deployment, Service, PodMonitoring and a queue-length HorizontalPodAutoscaler for the report's
    recommended configuration (the cheapest at its ideal batch under the SLO), as it was measured."""
    import duckdb

    _need(("kubernetes", "gke"), purpose="servesweep deploy-manifest")
    from servesweep.analysis.report import ReportError
    from servesweep.deploy_manifest import DeployManifestError, build, header, recommend

    _check_run_ids(run_ids or [])
    _check_slo_flags({"--slo-ttft-ms": slo_ttft_ms, "--slo-tpot-ms": slo_tpot_ms, "--slo-e2e-ms": slo_e2e_ms})
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} is a file; give a directory")
    try:
        slo = SLOSpec(ttft_p99_ms=slo_ttft_ms, tpot_p99_ms=slo_tpot_ms, e2e_p99_ms=slo_e2e_ms)
        cluster = load_spec(gke_spec)
        result = build(recommend(lake, run_ids or [], slo, config or None), cluster, min_replicas=min_replicas,
                       max_replicas=max_replicas, queue_target=queue_target)
    except (DeployManifestError, ReportError, SpecError, LakeError) as error:
        _fail(str(error))
    except duckdb.Error as error:
        _fail(f"cannot read the lake {lake}: {str(error).splitlines()[0]}")
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    path = out / "manifests.yaml"
    path.write_text(header(result, slo) + yaml.safe_dump_all(result.manifests, sort_keys=False))
    for line in header(result, slo).splitlines():
        console.print(line.removeprefix("# "), highlight=False, markup=False)
    console.print(f"wrote {path}: {', '.join(m['kind'] for m in result.manifests)}", highlight=False)


if __name__ == "__main__":
    app()
