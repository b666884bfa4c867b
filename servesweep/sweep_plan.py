"""The sweep as the steps hand it to each other: planned deployments and their points, the window each point
ran in, and the raw folder a sweep step leaves for collect-metrics (manifest.json, requests.parquet,
server_metrics.parquet).

Batch size is swept two ways: `client_concurrency` keeps one deployment (server cap = the largest
batch size) and varies the client's concurrency; `server_max_seqs` redeploys with
`--max-num-seqs` = batch size and loads it at that concurrency.

Strategy `grid` runs every batch size, `sweep.repeats` times: the whole grid once, then again (one
deployment's grid in client_concurrency mode; in server_max_seqs mode the deployments themselves
repeat, `sm-b4`, then `sm-b4-r1`, so a repeat includes a fresh server start).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from servesweep.fingerprint import Fingerprint
from servesweep.lake.store import to_table
from servesweep.loadgen.adaptive import AdaptiveResult
from servesweep.platform.types import Endpoint
from servesweep.spec import BenchmarkSpec, SweepMode, WorkloadShape

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
    workload: str | None = None  # the workload's name, when it has one (WorkloadShape.name)
    stage: int | None = None  # sweep.stages: which stage (0-based) the point is
    ramp_to_rate: float | None = None  # a ramping stage's rate at its end
    duration_s: float | None = None  # a stage's own duration (in place of sweep.duration_s)
    trace: bool = False  # sweep.trace: the point replays the trace's arrivals

    @property
    def load_kind(self) -> str:
        """closed (a fixed concurrency) or open (arrivals on a schedule)."""
        return "open" if self.request_rate is not None or self.trace else "closed"


class Deployment(BaseModel):
    deployment_id: str
    sweep_mode: SweepMode
    max_num_seqs: int
    points: list[SweepPoint]
    first_repeat: int = 0  # the grid runs repeats first_repeat .. first_repeat + repeats - 1
    repeats: int = 1


class PointWindow(BaseModel):
    """When a point ran, and why it failed if it did."""

    point_id: str
    repeat: int = 0
    started_unix: float | None = None
    ended_unix: float | None = None
    failure_reason: str | None = None
    stop_reason: str | None = None  # a stop constraint ended the climb after this point (sweep.stop)
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


class ReusedPoint(BaseModel):
    """A point the lake had measured already for the same configuration (resume): not run again, its rows
    copied into this run by collect-metrics."""

    point_id: str
    run_id: str  # the run that measured it (this run's own earlier write, or another run)
    source_point_id: str
    config_hash: str


class SweepManifest(BaseModel):
    deployment: Deployment
    endpoint: Endpoint
    windows: list[PointWindow]
    searches: list[AdaptiveSearch] = []
    reused: list[ReusedPoint] = []
    fingerprint: Fingerprint | None = None  # what the sweep ran on (the lake's `runs` row)


def plan_deployments(spec: BenchmarkSpec) -> list[Deployment]:
    """Every deployment the spec asks for, with its points in run order."""
    deployments = []
    if spec.sweep.shaped:
        return [shaped_deployment(spec)]
    for mode in spec.sweep.modes:
        if mode == "client_concurrency":
            deployments.append(_deployment(spec, mode, MODE_TAG[mode], max(spec.sweep.batch_sizes),
                                           spec.sweep.batch_sizes, repeats=spec.sweep.repeats))
            continue
        for repeat in range(spec.sweep.repeats):  # each repeat redeploys every batch size, in grid order
            for b in spec.sweep.batch_sizes:
                suffix = f"-r{repeat}" if repeat else ""
                deployments.append(_deployment(spec, mode, f"{MODE_TAG[mode]}-b{b}{suffix}", b, [b],
                                               first_repeat=repeat))
    return deployments


def _deployment(spec: BenchmarkSpec, mode: SweepMode, deployment_id: str, cap: int, batch_sizes: list[int],
                first_repeat: int = 0, repeats: int = 1) -> Deployment:
    points = [plan_point(spec, mode, deployment_id, b, shape.input_tokens, shape.output_tokens, shape.name)
              for shape in spec.workloads for b in batch_sizes]
    return Deployment(deployment_id=deployment_id, sweep_mode=mode, max_num_seqs=cap, points=points,
                      first_repeat=first_repeat, repeats=repeats)


def plan_point(spec: BenchmarkSpec, mode: SweepMode, deployment_id: str, batch: int, isl: int,
               osl: int, workload: str | None = None) -> SweepPoint:
    """One point; its id is (mode, batch, the workload's name or its input and output lengths), unique because
    the spec refuses repeats of each."""
    rate = None
    if spec.sweep.load == "open":
        rate = spec.sweep.request_rates[spec.sweep.batch_sizes.index(batch)]
    # Open loop against a server cap sends without a client limit: the server's queue is the subject.
    concurrency = None if (rate is not None and mode == "server_max_seqs") else batch
    return SweepPoint(
        point_id=f"{MODE_TAG[mode]}-b{batch}-{workload or f'i{isl}-o{osl}'}", deployment_id=deployment_id,
        sweep_mode=mode, batch_size=batch, concurrency=concurrency, request_rate=rate, input_tokens=isl,
        output_tokens=osl, workload=workload,
    )


def shaped_deployment(spec: BenchmarkSpec) -> Deployment:
    """The one deployment of a multi-stage load or a trace replay: for each workload, a point per stage (in
    order, back to back) or one replaying the trace. The server's cap, and an open-loop point's in-flight
    limit, is the largest of the batch sizes and the stages' concurrencies."""
    sweep = spec.sweep
    cap = max([*sweep.batch_sizes, *(s.concurrency for s in sweep.stages if s.concurrency)])
    points = []
    for shape in spec.workloads:
        if sweep.trace is not None:
            points.append(SweepPoint(point_id=f"cc-trace-{shape.key}", deployment_id="cc",
                                     sweep_mode="client_concurrency", batch_size=cap, concurrency=cap,
                                     input_tokens=shape.input_tokens, output_tokens=shape.output_tokens,
                                     workload=shape.name, trace=True))
        for i, stage in enumerate(sweep.stages):
            batch = stage.concurrency or cap
            points.append(SweepPoint(
                point_id=f"cc-s{i}-{shape.key}", deployment_id="cc", sweep_mode="client_concurrency",
                batch_size=batch, concurrency=batch, request_rate=stage.rate, input_tokens=shape.input_tokens,
                output_tokens=shape.output_tokens, workload=shape.name, stage=i, ramp_to_rate=stage.ramp_to_rate,
                duration_s=stage.duration_s))
    return Deployment(deployment_id="cc", sweep_mode="client_concurrency", max_num_seqs=cap, points=points)


def requests_for(spec: BenchmarkSpec, point: SweepPoint) -> int | None:
    """Measured requests of a point: requests_per_point (the workload's own, else the sweep's), raised to
    rounds x batch size (None: by duration; a stage always is, a trace replays its arrivals)."""
    if point.stage is not None or point.trace:
        return None
    by_rounds = spec.sweep.rounds_per_point * (point.concurrency or point.batch_size)
    workload = workload_of(spec, point)
    counts = [n for n in (workload.requests_per_point or spec.sweep.requests_per_point, by_rounds) if n]
    return max(counts) if counts else None


def workload_of(spec: BenchmarkSpec, point: SweepPoint) -> WorkloadShape:
    """The workload shape a point measures."""
    return next(w for w in spec.workloads
                if (w.input_tokens, w.output_tokens, w.name) == (point.input_tokens, point.output_tokens,
                                                                 point.workload))


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
