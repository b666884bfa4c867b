"""The sweep as the steps hand it to each other: planned deployments and their points, the window each point
ran in, and the raw folder a sweep step leaves for collect-metrics (manifest.json, requests.parquet,
server_metrics.parquet).

Batch size is swept two ways: `client_concurrency` keeps one deployment (server cap = the largest
batch size) and varies the client's concurrency; `server_max_seqs` redeploys with
`--max-num-seqs` = batch size and loads it at that concurrency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from servesweep.lake.store import to_table
from servesweep.loadgen.adaptive import AdaptiveResult
from servesweep.platform.types import Endpoint
from servesweep.spec import BenchmarkSpec, SweepMode

MODE_TAG = {"client_concurrency": "cc", "server_max_seqs": "sm"}


class SweepPoint(BaseModel):
    point_id: str
    deployment_id: str
    sweep_mode: SweepMode
    batch_size: int
    concurrency: int | None = None
    request_rate: float | None = None
    input_tokens: int
    output_tokens: int


class Deployment(BaseModel):
    deployment_id: str
    sweep_mode: SweepMode
    max_num_seqs: int
    points: list[SweepPoint]


class PointWindow(BaseModel):
    """When a point ran, and why it failed if it did."""

    point_id: str
    started_unix: float | None = None
    ended_unix: float | None = None
    failure_reason: str | None = None
    client_loop_lag_p99_ms: float | None = None  # lateness of a 10 ms timer in the load generator
    client_loop_lag_max_ms: float | None = None  # its longest stall
    client_read_lag_p99_ms: float | None = None  # kernel receive -> read (kernel-timed points only)
    client_timing: str | None = None  # "kernel" or "loop": what timed token arrivals
    client_workers: int | None = None


class AdaptiveSearch(BaseModel):
    """One adaptive batch-size search (per workload shape)."""

    input_tokens: int
    output_tokens: int
    result: AdaptiveResult


class SweepManifest(BaseModel):
    deployment: Deployment
    endpoint: Endpoint
    windows: list[PointWindow]
    searches: list[AdaptiveSearch] = []


def plan_deployments(spec: BenchmarkSpec) -> list[Deployment]:
    """Every deployment the spec asks for, with its points in run order."""
    deployments = []
    for mode in spec.sweep.modes:
        groups = (
            [(MODE_TAG[mode], max(spec.sweep.batch_sizes), spec.sweep.batch_sizes)]
            if mode == "client_concurrency"
            else [(f"{MODE_TAG[mode]}-b{b}", b, [b]) for b in spec.sweep.batch_sizes]
        )
        for deployment_id, cap, batch_sizes in groups:
            points = [plan_point(spec, mode, deployment_id, b, shape.input_tokens, shape.output_tokens)
                      for shape in spec.workloads for b in batch_sizes]
            deployments.append(Deployment(deployment_id=deployment_id, sweep_mode=mode, max_num_seqs=cap,
                                          points=points))
    return deployments


def plan_point(spec: BenchmarkSpec, mode: SweepMode, deployment_id: str, batch: int, isl: int,
               osl: int) -> SweepPoint:
    """One point; its id is (mode, batch, input, output), unique because the spec refuses repeats of each."""
    rate = None
    if spec.sweep.load == "open":
        rate = spec.sweep.request_rates[spec.sweep.batch_sizes.index(batch)]
    # Open loop against a server cap sends without a client limit: the server's queue is the subject.
    concurrency = None if (rate is not None and mode == "server_max_seqs") else batch
    return SweepPoint(
        point_id=f"{MODE_TAG[mode]}-b{batch}-i{isl}-o{osl}", deployment_id=deployment_id, sweep_mode=mode,
        batch_size=batch, concurrency=concurrency, request_rate=rate, input_tokens=isl, output_tokens=osl,
    )


def requests_for(spec: BenchmarkSpec, point: SweepPoint) -> int | None:
    """Measured requests of a point: requests_per_point (the workload's own, else the sweep's), raised to
    rounds x batch size (None: by duration)."""
    by_rounds = spec.sweep.rounds_per_point * (point.concurrency or point.batch_size)
    workload = next(w for w in spec.workloads
                    if (w.input_tokens, w.output_tokens) == (point.input_tokens, point.output_tokens))
    counts = [n for n in (workload.requests_per_point or spec.sweep.requests_per_point, by_rounds) if n]
    return max(counts) if counts else None


def write_sweep(out: Path, manifest: SweepManifest, requests: list[dict[str, Any]],
                samples: list[dict[str, Any]]) -> SweepManifest:
    """The raw folder of one deployment's sweep, rewritten whole (the sweep step saves after every point)."""
    pq.write_table(to_table("requests", requests), out / "requests.parquet")
    pq.write_table(to_table("server_metrics", samples), out / "server_metrics.parquet")
    (out / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    return manifest


def read_sweep(out_dir: str | Path) -> tuple[SweepManifest, pa.Table, pa.Table]:
    out = Path(out_dir)
    manifest = SweepManifest.model_validate_json((out / "manifest.json").read_text())
    return manifest, pq.read_table(out / "requests.parquet"), pq.read_table(out / "server_metrics.parquet")
