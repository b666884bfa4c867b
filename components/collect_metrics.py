"""Collect metrics step: turn raw sweep output into the lake's three tables.

Every planned point gets a `points` row, failed ones included (status 'failed' with the reason),
so a sweep that broke half-way still says what it measured and what it could not. A point the
circuit breaker stopped is failed, with the requests it completed kept in `requests`. A point's
repeats (one sweep's grid again, or a repeated server_max_seqs deployment) pool into its one row;
the `runs` row is the fingerprint of the first deployment whose server started.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import servesweep
from servesweep.fingerprint import Fingerprint
from servesweep.identity import config_hash
from servesweep.lake.schema import TABLES
from servesweep.lake.store import read_table, to_table
from servesweep.metrics.intervals import by_repeat, point_intervals, seed_for
from servesweep.metrics.summary import client_limited, is_measured, summarise_requests, summarise_server
from servesweep.platform.types import ModelInfo
from servesweep.quantize import QuantizeResult, runs_columns
from servesweep.secrets import HF_TOKEN_PATTERN, MASK, mask, secret_values
from servesweep.spec import REQUEST_LIMITS, BenchmarkSpec
from servesweep.sweep_plan import PointWindow, ReusedPoint, SweepManifest, SweepPoint, read_sweep, workload_of


def merged_window(windows: list[PointWindow]) -> PointWindow:
    """One window for a point's repeats: the first start, the last end, the first failure, the worst client."""
    first = windows[0]
    if len(windows) == 1:
        return first

    def worst(name: str) -> float | None:
        values = [getattr(w, name) for w in windows if getattr(w, name) is not None]
        return max(values) if values else None

    starts = [w.started_unix for w in windows if w.started_unix is not None]
    ends = [w.ended_unix for w in windows if w.ended_unix is not None]
    return first.model_copy(update={
        "started_unix": min(starts) if starts else None, "ended_unix": max(ends) if ends else None,
        "failure_reason": next((w.failure_reason for w in windows if w.failure_reason), None),
        "stop_reason": next((w.stop_reason for w in windows if w.stop_reason), None),
        "client_loop_lag_p99_ms": worst("client_loop_lag_p99_ms"),
        "client_loop_lag_max_ms": worst("client_loop_lag_max_ms"),
        "client_read_lag_p99_ms": worst("client_read_lag_p99_ms"),
    })


def point_row(spec: BenchmarkSpec, model: ModelInfo, manifest: SweepManifest, point: SweepPoint,
              window: PointWindow, requests: list[dict[str, Any]], samples: list[dict[str, Any]]) -> dict[str, Any]:
    summary = summarise_requests(requests) if requests else {"status": "failed", "num_requests": 0, "num_errors": 0}
    failure = window.failure_reason
    if failure is not None:  # stopped (circuit breaker) or never run: whatever it measured, it did not finish
        summary["status"] = "failed"
    elif summary["status"] == "failed":
        errors = sorted({r["error"] for r in requests if r["error"]})
        failure = "all requests failed: " + "; ".join(errors)[:400] if errors else "no requests completed"
    if failure is not None:  # a server's log tail or error text may quote a server.env value
        failure = mask(failure, secret_values(spec.server.env))
    started = datetime.fromtimestamp(window.started_unix, UTC) if window.started_unix else None
    client = {"client_loop_lag_p99_ms": window.client_loop_lag_p99_ms, "client_workers": window.client_workers,
              "client_loop_lag_max_ms": window.client_loop_lag_max_ms,
              "client_read_lag_p99_ms": window.client_read_lag_p99_ms, "client_timing": window.client_timing,
              "client_limited": client_limited(summary, point.load_kind == "open", window.client_loop_lag_p99_ms,
                                               window.client_read_lag_p99_ms) if requests else None}
    return {
        "run_id": spec.run_id, "point_id": point.point_id, "deployment_id": point.deployment_id,
        "source": "measured", "failure_reason": failure, "stop_reason": window.stop_reason, "run_name": spec.name,
        "started_at": started,
        "model_name": spec.model.name, "model_preset": spec.model.preset, "model_parameters": model.parameters,
        "model_dtype": model.dtype, "quantization": spec.quantization, "server_kind": spec.server.kind,
        "server_max_num_seqs": manifest.deployment.max_num_seqs, "server_start_s": manifest.endpoint.start_seconds,
        "accelerator": spec.accelerator.type, "accelerator_count": spec.accelerator.count,
        "sweep_mode": point.sweep_mode, "load_kind": point.load_kind, "batch_size": point.batch_size,
        "stage": point.stage, "ramp_to_rate": point.ramp_to_rate, "trace": point.trace,
        "arrival": spec.sweep.arrival if point.load_kind == "open" else None,
        "burstiness": spec.sweep.burstiness if point.load_kind == "open" else None,
        "concurrency": point.concurrency, "request_rate": point.request_rate,
        "input_tokens": point.input_tokens, "output_tokens": point.output_tokens,
        **summary, **client, **summarise_server(samples), "servesweep_version": servesweep.__version__,
        **_settings(spec, point), **_intervals(spec, point, requests),
        "config_hash": config_hash(spec, point, manifest.fingerprint.server_version if manifest.fingerprint
                                   else None),
    }


def _settings(spec: BenchmarkSpec, point: SweepPoint) -> dict[str, Any]:
    """What every request of the point asked for, how its edges were excluded, the per-request SLO."""
    workload = workload_of(spec, point)
    sweep = spec.sweep
    return {
        "api": workload.api, "workload_name": workload.name, "workload_source": workload.source,
        "temperature": workload.temperature, "top_p": workload.top_p, "top_k": workload.top_k,
        "min_output_tokens": workload.min_output_tokens, "ignore_eos": workload.ignore_eos,
        "stop": list(workload.stop), "extra_request_fields": json.dumps(workload.extra_body, sort_keys=True),
        "warmup_requests": sweep.warmup_requests, "warmup_s": sweep.warmup_s, "cooldown_s": sweep.cooldown_s,
        **{f"slo_{name}": getattr(spec.slo, name) for name in REQUEST_LIMITS},
    }


def _intervals(spec: BenchmarkSpec, point: SweepPoint, requests: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in requests if is_measured(r) and r["ok"]]
    if not ok:
        return {}
    return point_intervals(by_repeat(ok), seed_for(point.point_id, spec.model.seed))


def collect_metrics(spec: BenchmarkSpec, model: ModelInfo, sweep_dirs: list[str],
                    quantized: QuantizeResult | None = None) -> dict[str, pa.Table]:
    """The lake's tables of one run; `quantized`: the quantize step's result (the runs row's quantize columns)."""
    requests_tables, samples_tables, manifests = [], [], []
    by_point: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    samples_by_point: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    planned: dict[str, tuple[SweepManifest, SweepPoint]] = {}  # point id -> its first deployment
    windows: dict[str, list[PointWindow]] = defaultdict(list)
    for sweep_dir in sweep_dirs:
        manifest, requests, samples = read_sweep(sweep_dir)
        manifests.append(manifest)
        requests_tables.append(to_table("requests", requests))  # an older sweep's rows get the new columns
        samples_tables.append(samples)
        for row in requests.to_pylist():
            by_point[row["point_id"]].append(row)
        for row in samples.select(["point_id", "metric", "labels", "value"]).to_pylist():
            samples_by_point[row["point_id"]].append(row)
        for point in manifest.deployment.points:
            planned.setdefault(point.point_id, (manifest, point))
        for window in manifest.windows:
            windows[window.point_id].append(window)
    reused = {r.point_id: r for m in manifests for r in m.reused}
    points = []
    for point_id, (manifest, point) in planned.items():
        if point_id in reused:
            continue  # measured already: its rows come from the lake (reused_rows)
        window = merged_window(windows[point_id]) if windows[point_id] else PointWindow(
            point_id=point_id, failure_reason="not run")
        points.append(point_row(spec, model, manifest, point, window, by_point[point_id], samples_by_point[point_id]))
    if reused:
        copied = reused_rows(spec, list(reused.values()), {pid: planned[pid][1] for pid in reused})
        points += copied["points"]
        requests_tables.append(to_table("requests", copied["requests"]))
        samples_tables.append(to_table("server_metrics", copied["server_metrics"]))
    requests = pa.concat_tables(requests_tables) if requests_tables else None
    return {
        "requests": to_table("requests", _masked_errors(requests, secret_values(spec.server.env))
                             if requests is not None else []),
        "points": to_table("points", points),
        "server_metrics": to_table("server_metrics", pa.concat_tables(samples_tables) if samples_tables else []),
        "runs": to_table("runs", [row | runs_columns(spec.quantization, quantized)
                                  for row in run_rows(spec, manifests, points)]),
    }


def reused_rows(spec: BenchmarkSpec, reused: list[ReusedPoint], points: dict[str, SweepPoint]
                ) -> dict[str, list[dict[str, Any]]]:
    """The lake's rows of points measured already (resume), as this run's: run id, point id and deployment
    rewritten, `reused_from_run` naming the run that measured them. Read before write-lake replaces this run's
    partition, so a run resumed under its own id keeps what it had."""
    by_run: dict[str, list[ReusedPoint]] = defaultdict(list)
    for item in reused:
        by_run[item.run_id].append(item)
    copied: dict[str, list[dict[str, Any]]] = {"points": [], "requests": [], "server_metrics": []}
    for run_id, items in by_run.items():
        source = {item.source_point_id: item for item in items}
        for table in copied:
            data = read_table(spec.lake_uri, table, [run_id])
            rows = data.filter(pc.is_in(data["point_id"], pa.array(list(source)))).to_pylist()
            for row in rows:
                item = source[row["point_id"]]
                point = points[item.point_id]
                row.update(run_id=spec.run_id, point_id=item.point_id)
                if "deployment_id" in row:
                    row["deployment_id"] = point.deployment_id
                if table == "points":
                    row.update(run_name=spec.name, reused_from_run=row.get("reused_from_run") or run_id)
                row.pop("schema_version", None)
                copied[table].append(row)
    return copied


def run_rows(spec: BenchmarkSpec, manifests: list[SweepManifest], points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run's fingerprint row: the first started deployment's, else the first one taken; none without."""
    taken = [m for m in manifests if m.fingerprint is not None]
    if not taken:
        return []
    chosen = next((m for m in taken if not m.endpoint.error), taken[0]).fingerprint
    assert chosen is not None
    starts = [p["started_at"] for p in points if p.get("started_at") is not None]
    return [fingerprint_row(spec.run_id, spec.name, chosen, min(starts) if starts else None)]


def fingerprint_row(run_id: str, run_name: str, fingerprint: Fingerprint, started: datetime | None) -> dict[str, Any]:
    fields = fingerprint.model_dump()
    fields["notes"] = "; ".join(fields["notes"]) or None
    return {"run_id": run_id, "run_name": run_name, "started_at": started, **fields}


def _masked_errors(requests: pa.Table, secrets: list[str]) -> pa.Table:
    """The requests' `error` column with every secret value masked (a server may echo one in an error body)."""
    errors = requests["error"]
    for value in secrets:
        errors = pc.replace_substring(errors, value, MASK)
    errors = pc.replace_substring_regex(errors, HF_TOKEN_PATTERN, MASK)
    return requests.set_column(requests.schema.get_field_index("error"), "error", errors)


def save_tables(tables: dict[str, pa.Table], out_dir: str | Path) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        pq.write_table(table, out / f"{name}.parquet")


def load_tables(out_dir: str | Path) -> dict[str, pa.Table]:
    """The tables a step saved; one it did not make (another step's, such as accuracy) is left out."""
    files = {name: Path(out_dir) / f"{name}.parquet" for name in TABLES}
    return {name: pq.read_table(file) for name, file in files.items() if file.exists()}
