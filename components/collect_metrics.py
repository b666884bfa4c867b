"""Collect metrics step: turn raw sweep output into the lake's three tables.

Every planned point gets a `points` row, failed ones included (status 'failed' with the reason),
so a sweep that broke half-way still says what it measured and what it could not. A point the
circuit breaker stopped is failed, with the requests it completed kept in `requests`.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import servesweep
from servesweep.lake.schema import TABLES
from servesweep.lake.store import to_table
from servesweep.metrics.summary import client_limited, summarise_requests, summarise_server
from servesweep.platform.types import ModelInfo
from servesweep.secrets import HF_TOKEN_PATTERN, MASK, mask, secret_values
from servesweep.spec import BenchmarkSpec
from servesweep.sweep_plan import PointWindow, SweepManifest, SweepPoint, read_sweep


def point_row(spec: BenchmarkSpec, model: ModelInfo, manifest: SweepManifest, point: SweepPoint,
              window: PointWindow, requests: list[dict], samples: list[dict]) -> dict[str, Any]:
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
              "client_limited": client_limited(summary, spec.sweep.load == "open", window.client_loop_lag_p99_ms,
                                               window.client_read_lag_p99_ms) if requests else None}
    return {
        "run_id": spec.run_id, "point_id": point.point_id, "deployment_id": point.deployment_id,
        "source": "measured", "failure_reason": failure, "run_name": spec.name, "started_at": started,
        "model_name": spec.model.name, "model_preset": spec.model.preset, "model_parameters": model.parameters,
        "model_dtype": model.dtype, "quantization": spec.quantization, "server_kind": spec.server.kind,
        "server_max_num_seqs": manifest.deployment.max_num_seqs, "server_start_s": manifest.endpoint.start_seconds,
        "accelerator": spec.accelerator.type, "accelerator_count": spec.accelerator.count,
        "sweep_mode": point.sweep_mode, "load_kind": spec.sweep.load, "batch_size": point.batch_size,
        "concurrency": point.concurrency, "request_rate": point.request_rate,
        "input_tokens": point.input_tokens, "output_tokens": point.output_tokens,
        **summary, **client, **summarise_server(samples), "servesweep_version": servesweep.__version__,
    }


def collect_metrics(spec: BenchmarkSpec, model: ModelInfo, sweep_dirs: list[str]) -> dict[str, pa.Table]:
    requests_tables, samples_tables, points = [], [], []
    for sweep_dir in sweep_dirs:
        manifest, requests, samples = read_sweep(sweep_dir)
        requests_tables.append(requests)
        samples_tables.append(samples)
        by_point: dict[str | None, list[dict]] = defaultdict(list)
        for row in requests.to_pylist():
            by_point[row["point_id"]].append(row)
        samples_by_point: dict[str | None, list[dict]] = defaultdict(list)
        for row in samples.select(["point_id", "metric", "value"]).to_pylist():
            samples_by_point[row["point_id"]].append(row)
        windows = {w.point_id: w for w in manifest.windows}
        for point in manifest.deployment.points:
            window = windows.get(point.point_id, PointWindow(point_id=point.point_id, failure_reason="not run"))
            points.append(point_row(spec, model, manifest, point, window, by_point[point.point_id],
                                    samples_by_point[point.point_id]))
    requests = pa.concat_tables(requests_tables) if requests_tables else None
    return {
        "requests": to_table("requests", _masked_errors(requests, secret_values(spec.server.env))
                             if requests is not None else []),
        "points": to_table("points", points),
        "server_metrics": to_table("server_metrics", pa.concat_tables(samples_tables) if samples_tables else []),
    }


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
    return {name: pq.read_table(Path(out_dir) / f"{name}.parquet") for name in TABLES}
