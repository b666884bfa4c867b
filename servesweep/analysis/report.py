"""The report: recommendations with the numbers behind them, from the analysis views over chosen runs.

``build_report`` reads the views into typed rows and answers the questions; ``render_markdown`` and
``render_html`` draw the same document (the HTML embeds its charts, one self-contained file for the KFP UI);
``write_report`` writes charts, Markdown, HTML and JSON to a directory.
"""

from __future__ import annotations

import base64
import html
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import duckdb

from servesweep.analysis.charts import render_charts
from servesweep.analysis.interactive import interactive_html
from servesweep.analysis.machines import machine_options
from servesweep.analysis.models import (
    ChartSpec,
    IdealBatch,
    MachineOption,
    ParetoPoint,
    PointSummary,
    PrefillDecode,
    QuantizeVariant,
    Report,
    ReportPaths,
    RunFingerprint,
)
from servesweep.analysis.recommend import headline, recommend, variant_verdict
from servesweep.analysis.variants import quantize_variants
from servesweep.analysis.views import DEFAULT_BASELINE, connect
from servesweep.catalog import Catalog, load_catalog
from servesweep.lake import store
from servesweep.spec import SLOSpec

M = TypeVar("M", IdealBatch, PointSummary, PrefillDecode, ParetoPoint, RunFingerprint)


class ReportError(ValueError):
    """The report cannot be built as asked (unknown run id, unknown baseline accelerator)."""


# --- build ----------------------------------------------------------------------------------------------

def build_report(
    lake_uri: str,
    run_ids: Sequence[str],
    slo: SLOSpec | None = None,
    baseline: str = DEFAULT_BASELINE,
    catalog: Catalog | None = None,
    pricing: str = "on-demand",
) -> Report:
    """The report over `run_ids` (every run when empty), judged against `slo`, costs relative to `baseline`, at
    the catalog's `pricing` prices (on-demand, spot, cud-1y, cud-3y)."""
    catalog = (catalog or load_catalog()).with_pricing(pricing)
    slo = slo or SLOSpec()
    run_ids = _checked_runs(lake_uri, run_ids, baseline, catalog)
    connection = connect(lake_uri, slo, baseline, run_ids, catalog)
    try:
        ideals = _rows(connection, IdealBatch, "ideal_batch")
        points = _rows(connection, PointSummary, _POINTS_SQL)
        balance = _rows(connection, PrefillDecode, "prefill_decode")
        pareto = _rows(connection, ParetoPoint, "pareto_frontier")
        fingerprints = _rows(connection, RunFingerprint, _RUNS_SQL)
        machines, machine_notes = machine_options(connection, ideals, slo, catalog)
        variants = quantize_variants(connection, ideals, catalog)
        measured_prices = connection.sql(_PRICES_USED_SQL).fetchall()
        prices_used = [_price_text(*row) for row in measured_prices]
        prices_used += _machine_option_prices(machines, catalog, {row[0] for row in measured_prices})
        notes = (_notes(connection, ideals, baseline) + _measurement_notes(points, fingerprints, run_ids)
                 + machine_notes)
    finally:
        connection.close()
    return Report(
        run_ids=list(run_ids), lake_uri=lake_uri, generated_at=datetime.now(UTC), slo=slo,
        baseline_accelerator=baseline, catalog_version=catalog.catalog_version, pricing=catalog.pricing,
        prices_used=prices_used, headline=headline(ideals),
        recommendations=recommend(ideals, balance, baseline, machines, variants), ideal_batches=ideals, points=points,
        prefill_decode=balance, pareto=pareto, fingerprints=fingerprints, machine_options=machines,
        quantize_variants=variants, notes=notes,
    )


def _checked_runs(lake_uri: str, run_ids: Sequence[str], baseline: str, catalog: Catalog) -> list[str]:
    if baseline not in catalog.accelerators:
        raise ReportError(f"unknown baseline accelerator {baseline!r}; known: {', '.join(catalog.accelerators)}")
    present = store.run_ids(lake_uri)
    missing = sorted(set(run_ids) - set(present))
    if missing:
        raise ReportError(f"run(s) not in lake {lake_uri}: {', '.join(missing)}; present: "
                          f"{', '.join(present) or 'none'}")
    return list(run_ids) or present


# Points as the charts need them: latency and cost columns of one point side by side.
_POINTS_SQL = """
    SELECT l.*, n.output_token_throughput, n.output_tokens_per_dollar, n.usd_per_million_output_tokens,
           n.vs_baseline_best, n.is_config_best
    FROM latency_by_batch AS l JOIN throughput_per_dollar_normalised AS n USING (config_id, point_id)
"""


# The query of each table, as printed under it: run after the report's params (`reproduce_sql`) it gives the
# table's rows; tests/unit/analysis/test_report_tracing.py re-runs each and compares the numbers.
IDEAL_MEASURED_SQL = "SELECT * FROM ideal_batch WHERE source = 'measured' ORDER BY comparison_group, config_label"
IDEAL_PREDICTED_SQL = "SELECT * FROM ideal_batch WHERE source <> 'measured' ORDER BY comparison_group, config_label"
PREFILL_DECODE_SQL = "SELECT * FROM prefill_decode ORDER BY comparison_group, config_label"
PARETO_E2E_SQL = ("SELECT * FROM pareto_frontier WHERE latency_metric = 'e2e_p99_ms' "
                  "ORDER BY comparison_group, latency_ms")
MACHINES_SOURCE = ("servesweep.analysis.machines: the planner's fit and roofline over the catalog; the rows marked "
                   "measured are view ideal_batch's rows (by point_id)")
FIGURES_SOURCE = "views ideal_batch and prefill_decode (and the machine types above) of this group"

_PRICES_USED_SQL = """
    SELECT DISTINCT c.machine_type, c.accelerator, p.price_per_hour, p.pricing, p.price_source, p.price_date
    FROM point_costs AS c JOIN prices AS p ON p.accelerator = c.accelerator AND p.machine_type = c.machine_type
    WHERE c.source = 'measured' ORDER BY 1
"""
_REMEASURED_SQL = """
    SELECT config_label, batch_size, measured_by_runs, run_id FROM point_costs
    WHERE source = 'measured' AND len(measured_by_runs) > 1 ORDER BY config_label, batch_size
"""
_RUNS_SQL = """
    SELECT * FROM runs
    WHERE run_id IN (SELECT run_id FROM selected_runs) OR NOT EXISTS (SELECT 1 FROM selected_runs)
    ORDER BY run_id
"""
# Fingerprint fields worth saying "these runs differ in" about (not the run's own id, hash text or notes).
_COMPARED = ("servesweep_version", "git_commit", "spec_hash", "server_version", "server_image_digest",
             "node_machine_type", "gpu_name", "gpu_count", "gpu_driver_version", "cuda_driver_version",
             "host_cpu_model", "host_cpu_count", "python_version")


def _rows(connection: duckdb.DuckDBPyConnection, model: type[M], source: str) -> list[M]:
    relation = source if source.isidentifier() else f"({source})"
    table = connection.sql(f"SELECT {model.columns()} FROM {relation}").to_arrow_table()
    return [model.model_validate(row) for row in table.to_pylist()]


def _price_text(machine: str, accelerator: str, price: float | None, chosen: str, source: str, date: str) -> str:
    if price is None:
        return f"{machine} ({accelerator}): no {chosen} price in the catalog"
    return f"{machine} ({accelerator}): ${price:.4g}/h {chosen}, {source}, read {date}"


def _machine_option_prices(options: Sequence[MachineOption], catalog: Catalog, listed: set[str]) -> list[str]:
    """The prices the machine-type table costs its other machine types at (the measured ones are listed already)."""
    texts: list[str] = []
    for option in options:
        if option.machine_type is None or option.machine_type in listed:
            continue
        listed.add(option.machine_type)
        entry = catalog.accelerators.get(option.accelerator)
        machine = next((m for m in entry.machines if m.machine_type == option.machine_type), None) if entry else None
        if machine is not None:
            texts.append(_price_text(machine.machine_type, option.accelerator, machine.price_per_hour,
                                     machine.pricing, machine.price_source, machine.price_date)
                         + " (machine-type table)")
    return texts


_REASON_CHARS = 120  # a server's error message repeats per point with only its counts changed: cut to its gist
_REASONS_SHOWN = 3


def _reasons(reasons: Sequence[str]) -> str:
    """Distinct failure reasons, each cut to its first words, with how many points gave each (3 at most)."""
    counts: dict[str, int] = {}
    for reason in reasons:
        gist = reason if len(reason) <= _REASON_CHARS else reason[:_REASON_CHARS].rstrip() + "..."
        counts[gist] = counts.get(gist, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = "; ".join(f"{gist} (x{count})" if count > 1 else gist for gist, count in ranked[:_REASONS_SHOWN])
    rest = len(ranked) - _REASONS_SHOWN
    return shown + (f"; and {rest} other reason(s), in the points table's failure_reason" if rest > 0 else "")


def _notes(connection: duckdb.DuckDBPyConnection, ideals: Sequence[IdealBatch], baseline: str) -> list[str]:
    notes = [f"{n} {source} point(s) did not complete and are left out (reasons recorded: {_reasons(reasons)})"
             for source, n, reasons in connection.sql(
        "SELECT source, count(*), list(coalesce(failure_reason, 'no reason recorded') "
        "ORDER BY coalesce(failure_reason, 'no reason recorded')) "
        "FROM points WHERE status NOT IN ('ok', 'partial') "
        "AND (run_id IN (SELECT run_id FROM selected_runs) OR NOT EXISTS (SELECT 1 FROM selected_runs)) "
        "GROUP BY source ORDER BY source").fetchall()]
    remeasured = connection.sql(_REMEASURED_SQL).fetchall()
    if remeasured:
        notes.append("measured by more than one run (same configuration, same load), the newest measurement is used "
                     "(view point_costs, column measured_by_runs): "
                     + "; ".join(f"{label} batch {batch} (runs {', '.join(runs)}; used: {run})"
                                 for label, batch, runs, run in remeasured))
    unpriced = sorted({row.placement for row in ideals if row.cost_per_hour is None and row.meets_slo})
    if unpriced:
        notes.append(f"no catalog price for {', '.join(unpriced)}: their cost columns are empty")
    if ideals and not any(row.accelerator == baseline for row in ideals):
        notes.append(f"baseline {baseline} is not in these runs: tokens per dollar are shown unnormalised")
    if any(row.source != "measured" for row in ideals):
        notes.append("planner predictions (source 'predicted') are listed apart and never answer a question")
    return notes


def _measurement_notes(points: Sequence[PointSummary], fingerprints: Sequence[RunFingerprint],
                       run_ids: Sequence[str]) -> list[str]:
    """What the numbers rest on: thin p99s, noisy repeats, runs without or with differing fingerprints."""
    notes = []
    measured = [p for p in points if p.source == "measured"]
    few = sorted({f"{p.config_label} batch {p.batch_size}" for p in measured if p.p99_few_requests})
    if few:
        notes.append(f"p99 from fewer than 100 requests (an interpolation between the largest few values, not a "
                     f"tail estimate; marked † in the tables): {', '.join(few)}")
    noisy = sorted({f"{p.config_label} batch {p.batch_size}" for p in measured if p.noisy})
    if noisy:
        notes.append(f"noisy points, whose repeats disagree by more than their intervals allow: {', '.join(noisy)}")
    missing = sorted(set(run_ids) - {f.run_id for f in fingerprints})
    if missing:
        notes.append(f"no fingerprint for {', '.join(missing)} (written before lake schema v4)")
    differ = [name for name in _COMPARED if len({getattr(f, name) for f in fingerprints}) > 1]
    if differ:
        notes.append(f"the runs differ in: {', '.join(differ)} (table 'Runs')")
    return notes


# --- KFP headline ----------------------------------------------------------------------------------------

def headline_metrics(report: Report) -> dict[str, float]:
    """Scalar metrics for KFP's Metrics artifact; unknown values are left out rather than faked as 0."""
    top = report.headline
    values = {
        "meets_slo": 1.0 if top.meets_slo else 0.0,
        "best_output_tokens_per_s_within_slo": top.output_token_throughput,
        "ideal_batch_size": top.ideal_batch_size,
        "usd_per_million_output_tokens": top.usd_per_million_output_tokens,
        "output_tokens_per_dollar": top.output_tokens_per_dollar,
        "max_output_tokens_per_s": top.max_output_token_throughput,
    }
    return {name: float(value) for name, value in values.items() if value is not None}


def write_kfp_artifacts(report: Report, html_path: str | Path, markdown_path: str | Path) -> list[ChartSpec]:
    """The self-contained HTML (charts embedded) and the Markdown summary, at the paths KFP gives."""
    with tempfile.TemporaryDirectory() as charts_dir:
        charts = render_charts(report, charts_dir)
        _write(html_path, render_html(report, charts))
    _write(markdown_path, render_markdown(report))
    return charts


def _write(path: str | Path, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


# --- the document, once, for both renderers -----------------------------------------------------------------

@dataclass(frozen=True)
class _Heading:
    level: int
    text: str


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class _Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    source: str = ""  # the SQL over the views that gives these rows (run with the report's params), or where from
    columns: tuple[str | None, ...] = ()  # per header, the query's column the cell shows (None: composed)
    key: int = 1  # the leading cells that identify a row among the query's rows


@dataclass(frozen=True)
class _Chart:
    chart: ChartSpec


_Block = _Heading | _Text | _Bullets | _Table | _Chart


def _fmt(value: object, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if unit == "fraction":
            return f"{value:.1%}"
        text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    elif isinstance(value, list):
        text = ", ".join(str(v) for v in value) or "-"
    else:
        text = str(value)
    return f"{text} {unit}" if unit and unit != "fraction" else text


def _slo_text(slo: SLOSpec, goodput: bool = False) -> str:
    bounds = [f"p99 {name} <= {value:g} ms" for name, value in
              (("TTFT", slo.ttft_p99_ms), ("TPOT", slo.tpot_p99_ms), ("E2E", slo.e2e_p99_ms)) if value is not None]
    if goodput:
        bounds.append(f"points measured with a per-request SLO: at least {slo.min_attainment:.0%} of requests within "
                      "it, ranked by goodput")
    return ", ".join(bounds) or "none set (the ideal batch is the one with the highest throughput)"


def _document(report: Report, charts: Sequence[ChartSpec]) -> list[_Block]:
    goodput = any(row.ranked_by == "goodput" for row in report.ideal_batches)
    blocks: list[_Block] = [
        _Heading(1, "servesweep report"),
        _Text(f"Runs: {', '.join(report.run_ids) or '-'} | lake: {report.lake_uri} | "
              f"generated {report.generated_at:%Y-%m-%d %H:%M} UTC"),
        _Text(f"SLO: {_slo_text(report.slo, goodput)} | cost baseline: {report.baseline_accelerator} | "
              f"prices: {report.pricing}, catalog {report.catalog_version}"),
        _Text("Prices used: " + ("; ".join(report.prices_used) or "none (no measured point on a catalogued machine)")
              + ". Input and output tokens are priced apart by the share of each request's time before its first "
                "token (TTFT / E2E, view point_costs)."),
        _Text("Every table names its query; run it after the report's parameters to get the same rows: "
              f"servesweep query \"{reproduce_sql(report)} <query>\" --lake {report.lake_uri}"
              + ("" if report.pricing == "on-demand" else
                 f" (the views price on-demand; this report used {report.pricing} prices)")),
        _Heading(2, "Answer"),
        _Text(report.headline.summary),
        _Heading(2, "Recommendations"),
    ]
    for item in report.recommendations:
        blocks += [_Heading(3, f"{item.question.value} ({item.scope})"), _Text(f"[{item.status.value}] {item.answer}")]
        if item.figures:
            blocks.append(_Table(("number", "value"),
                                 tuple((f.label, _fmt(f.value, f.unit)) for f in item.figures), FIGURES_SOURCE))
    blocks += _tables(report)
    if report.fingerprints:
        blocks += [_Heading(2, "Runs: what each measured on"), _fingerprint_table(report.fingerprints)]
    if charts:
        blocks.append(_Heading(2, "Charts"))
        blocks += [_Chart(chart) for chart in charts]
    if report.notes:
        blocks += [_Heading(2, "Notes"), _Bullets(tuple(report.notes))]
    return blocks


def reproduce_sql(report: Report) -> str:
    """The SQL that sets `servesweep query`'s views to this report's SLO, baseline and runs."""
    slo = report.slo

    def number(value: float | None) -> str:
        return "NULL" if value is None else repr(float(value))

    runs = ", ".join("('" + run.replace("'", "''") + "')" for run in report.run_ids)
    return (f"UPDATE params SET slo_ttft_p99_ms = {number(slo.ttft_p99_ms)}, slo_tpot_p99_ms = "
            f"{number(slo.tpot_p99_ms)}, slo_e2e_p99_ms = {number(slo.e2e_p99_ms)}, slo_min_attainment = "
            f"{number(slo.min_attainment)}, baseline_accelerator = '{report.baseline_accelerator}';"
            + (f" INSERT INTO selected_runs VALUES {runs};" if runs else ""))


def _tables(report: Report) -> list[_Block]:
    measured = [row for row in report.ideal_batches if row.source == "measured"]
    predicted = [row for row in report.ideal_batches if row.source != "measured"]
    blocks: list[_Block] = []
    if measured:
        blocks += [_Heading(2, "Ideal batch size per config (measured)"), _ideal_table(measured, IDEAL_MEASURED_SQL)]
    if report.machine_options:
        blocks += [_Heading(2, "Machine types (fit by the 80 % weights rule; measured where the lake has it, else "
                               "predicted)"), _machine_table(report.machine_options)]
    if len({v.quantization for v in report.quantize_variants}) > 1:
        blocks += [_Heading(2, "Quantization variants (weights, GPUs needed, cost at the ideal batch, accuracy)"),
                   _variant_table(report.quantize_variants, report.ideal_batches)]
    if report.prefill_decode:
        blocks += [_Heading(2, "Prefill vs decode"), _balance_table(report.prefill_decode)]
    frontier = [p for p in report.pareto if p.latency_metric == "e2e_p99_ms"]
    if frontier:
        blocks += [_Heading(2, "Pareto frontier: throughput vs p99 E2E"), _pareto_table(frontier)]
    if predicted:
        blocks += [_Heading(2, "Planner predictions (roofline, not measured)"),
                   _ideal_table(predicted, IDEAL_PREDICTED_SQL)]
    return blocks


def _ideal_table(rows: Sequence[IdealBatch], source: str) -> _Table:
    goodput = any(r.ranked_by == "goodput" for r in rows)
    headers = ("config", "meets SLO", "ideal batch", "out tok/s (95 % CI)", *(("goodput req/s",) if goodput else ()),
               "p99 TTFT ms", "p99 TPOT ms", "p99 E2E ms", "$/M out tokens (all time)", "$/M in tokens (split)",
               "$/M out tokens (split)", "tok/$ vs baseline", "batches tested", "why")
    return _Table(headers, tuple(
        (r.config_label, _fmt(r.meets_slo), _fmt(r.ideal_batch_size),
         _with_interval(r.output_token_throughput, r.output_token_throughput_ci_low, r.output_token_throughput_ci_high),
         *((_fmt(r.goodput),) if goodput else ()),
         _p99(r.ttft_p99_ms, r.p99_few_requests), _p99(r.tpot_p99_ms, r.p99_few_requests),
         _p99(r.e2e_p99_ms, r.p99_few_requests), _fmt(r.usd_per_million_output_tokens),
         _fmt(r.usd_per_million_input_tokens_split), _fmt(r.usd_per_million_output_tokens_split),
         _fmt(r.tokens_per_dollar_vs_baseline), _fmt(r.batch_sizes_tested), r.reason) for r in rows),
        source, ("config_label", "meets_slo", "ideal_batch_size", "output_token_throughput",
                 *(("goodput",) if goodput else ()), "ttft_p99_ms", "tpot_p99_ms", "e2e_p99_ms",
                 "usd_per_million_output_tokens", "usd_per_million_input_tokens_split",
                 "usd_per_million_output_tokens_split", "tokens_per_dollar_vs_baseline", "batch_sizes_tested",
                 "reason"))


def _with_interval(value: float | None, low: float | None, high: float | None) -> str:
    if value is None or low is None or high is None:
        return _fmt(value)
    return f"{_fmt(value)} ({_fmt(low)}-{_fmt(high)})"


def _p99(value: float | None, few: bool | None) -> str:
    return _fmt(value) + (" †" if few and value is not None else "")


_FINGERPRINT_FIELDS = (
    ("servesweep", "servesweep_version"), ("git commit", "git_commit"), ("uncommitted changes", "git_dirty"),
    ("spec hash", "spec_hash"), ("server", "server_kind"), ("server version", "server_version"),
    ("server image", "server_image"), ("image digest", "server_image_digest"), ("node type", "node_machine_type"),
    ("GPU", "gpu_name"), ("GPUs", "gpu_count"), ("driver", "gpu_driver_version"), ("CUDA", "cuda_driver_version"),
    ("client CPU", "host_cpu_model"), ("client CPUs", "host_cpu_count"), ("Python", "python_version"),
    ("OS", "os_platform"), ("not recorded", "notes"),
)


def _fingerprint_table(runs: Sequence[RunFingerprint]) -> _Table:
    """One row per fingerprint field, one column per run: what differed between runs reads across."""
    def cell(run: RunFingerprint, field: str) -> str:
        value = getattr(run, field)
        if field in ("git_commit", "spec_hash") and value:
            return str(value)[:12]
        return "-" if value is None else _fmt(value)

    return _Table(("", *(run.run_id for run in runs)),
                  tuple((label, *(cell(run, field) for run in runs)) for label, field in _FINGERPRINT_FIELDS),
                  " ".join(_RUNS_SQL.split()))


def _machine_table(rows: Sequence[MachineOption]) -> _Table:
    headers = ("group", "series", "machine type", "GPU", "GPUs (TP)", "weights GB/GPU (limit)", "KV share",
               "fits", "source", "batch", "out tok/s", "$/hour", "$/M in tokens (split)", "$/M out tokens (split)",
               "$/M out tokens (all time)")
    return _Table(headers, tuple(
        (r.comparison_group, r.series, r.machine_type or "-", r.accelerator, str(r.gpus),
         f"{r.weights_per_gpu_gb:.1f} ({r.weight_limit_gb:.1f})", _fmt(r.kv_share, "fraction"),
         "yes" if r.fits else r.fit_reason, r.source, _fmt(r.batch_size), _fmt(r.output_token_throughput),
         _fmt(r.cost_per_hour), _fmt(r.usd_per_million_input_tokens), _fmt(r.usd_per_million_output_tokens_split),
         _fmt(r.usd_per_million_output_tokens))
        for r in rows), MACHINES_SOURCE)


VARIANTS_SOURCE = ("`SELECT * FROM quantize_variants WHERE source = 'measured'` (variant, weight bytes, accuracy "
                   "and its comparison), with ideal_batch (batch, throughput, cost) and the planner (weight GB of "
                   "dummy weights, GPUs needed); the verdict is the guide's rule (servesweep.analysis.variants)")


def _variant_table(rows: Sequence[QuantizeVariant], ideals: Sequence[IdealBatch]) -> _Table:
    """One row per variant config and accuracy result; the verdict is the guide's rule for that variant alone."""
    by_config = {row.config_id: row for row in ideals}
    headers = ("config", "variant", "weights", "weight GB (source)", "GPUs needed", "ideal batch", "out tok/s",
               "$/M out tokens", "accuracy", "delta (95 % CI)", "threshold", "verdict")
    table = []
    for v in rows:
        verdict = variant_verdict(by_config[v.config_id], v).why
        common = (v.config_label, v.quantization, f"{v.weight_dtype} ({v.weight_bits} bits)",
                  f"{_fmt(v.weight_gb)} ({v.weight_source})", _fmt(v.gpus_needed) if v.gpus_needed else v.gpus_reason,
                  _fmt(v.ideal_batch_size), _fmt(v.output_token_throughput), _fmt(v.usd_per_million_output_tokens))
        if not v.accuracy:
            table.append((*common, "not measured", "-", "-", verdict))
        for a in v.accuracy:
            table.append((*common, f"{a.metric} {a.task}: {_fmt(a.value)} (baseline {_fmt(a.baseline_value)})",
                          _with_interval(a.delta, a.delta_low, a.delta_high), _fmt(a.threshold), verdict))
    return _Table(headers, tuple(table), VARIANTS_SOURCE)


def _balance_table(rows: Sequence[PrefillDecode]) -> _Table:
    headers = ("config", "prefill tok/s", "decode tok/s/seq", "decode tok/s all seqs (max batch)", "TTFT share of E2E",
               "balance")
    return _Table(headers, tuple(
        (r.config_label, _fmt(r.prefill_tokens_per_s), _fmt(r.decode_tokens_per_s),
         _fmt(r.decode_tokens_per_s_all_sequences_max_batch), _fmt(r.ttft_share_of_e2e, "fraction"),
         _fmt(r.workload_balance)) for r in rows), PREFILL_DECODE_SQL,
        ("config_label", "prefill_tokens_per_s", "decode_tokens_per_s", "decode_tokens_per_s_all_sequences_max_batch",
         "ttft_share_of_e2e", "workload_balance"))


def _pareto_table(rows: Sequence[ParetoPoint]) -> _Table:
    headers = ("group", "config", "batch", "p99 E2E ms", "out tok/s", "$/M out tokens", "meets SLO")
    return _Table(headers, tuple(
        (r.comparison_group, r.config_label, str(r.batch_size), _fmt(r.latency_ms), _fmt(r.output_token_throughput),
         _fmt(r.usd_per_million_output_tokens), _fmt(r.meets_slo)) for r in rows), PARETO_E2E_SQL,
        ("comparison_group", "config_label", "batch_size", "latency_ms", "output_token_throughput",
         "usd_per_million_output_tokens", "meets_slo"), key=3)


# --- Markdown ------------------------------------------------------------------------------------------------

def render_markdown(report: Report, charts: Sequence[ChartSpec] = (), chart_dir: str | Path | None = None) -> str:
    """Markdown; charts are linked relative to `chart_dir` (the report's directory) when given."""
    base = Path(chart_dir) if chart_dir is not None else None
    return "\n\n".join(_markdown_block(block, base) for block in _document(report, charts)) + "\n"


def _markdown_block(block: _Block, base: Path | None) -> str:
    if isinstance(block, _Heading):
        return f"{'#' * block.level} {block.text}"
    if isinstance(block, _Text):
        return block.text
    if isinstance(block, _Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, _Chart):
        path = Path(block.chart.path)
        link = path.relative_to(base) if base is not None and path.is_relative_to(base) else path
        caption = f"\n\nSource: `{block.chart.source}`" if block.chart.source else ""
        return f"![{block.chart.title}]({link.as_posix()}){caption}"
    lines = [_md_row(block.headers), "|" + "---|" * len(block.headers)]
    source = [f"\nSource: `{block.source}`"] if block.source.startswith("SELECT") else \
        ([f"\nSource: {block.source}"] if block.source else [])
    return "\n".join(lines + [_md_row(row) for row in block.rows] + source)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"


# --- HTML ----------------------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f3f3f3}.source{font-size:.75em;color:#555;margin-top:-1em}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}"""


def render_html(report: Report, charts: Sequence[ChartSpec] = (), interactive: bool = True) -> str:
    """One self-contained HTML page: the charts are embedded as base64 PNG and, with plotly installed, an
    interactive version beside them (plotly.js inline: no network when the page is viewed)."""
    body = "\n".join(_html_block(block) for block in _document(report, charts))
    live = interactive_html(report) if interactive and charts else ""
    if live:
        body += "\n<h2>Interactive charts</h2>\n<p>Hover for the numbers; click a legend entry to hide a config.</p>\n"
        body += live
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>servesweep report</title>"
            f"<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def _html_block(block: _Block) -> str:
    if isinstance(block, _Heading):
        return f"<h{block.level}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, _Text):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, _Bullets):
        return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, _Chart):
        data = base64.b64encode(Path(block.chart.path).read_bytes()).decode()
        title = html.escape(block.chart.title)
        image = f'<img alt="{title}" src="data:image/png;base64,{data}">'
        source = (f'<br><span class="source">Source: <code>{html.escape(block.chart.source)}</code></span>'
                  if block.chart.source else "")
        return f"<figure>{image}<figcaption>{title}{source}</figcaption></figure>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows)
    source = f'<p class="source">Source: <code>{html.escape(block.source)}</code></p>' if block.source else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{source}"


# --- files ---------------------------------------------------------------------------------------------------

def write_report(report: Report, out_dir: str | Path) -> ReportPaths:
    """charts/*.png, report.md (linking them), report.html (embedding them) and report.json in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    charts = render_charts(report, out / "charts")
    paths = ReportPaths(markdown=str(out / "report.md"), html=str(out / "report.html"),
                        json_path=str(out / "report.json"), charts=charts)
    _write(paths.markdown, render_markdown(report, charts, out))
    _write(paths.html, render_html(report, charts))
    _write(paths.json_path, report.model_dump_json(indent=2))
    return paths
