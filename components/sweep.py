"""Sweep step: drive one deployed server through its sweep points while scraping its metrics.

The deployments and points come from the plan-sweep step (servesweep.sweep_plan.plan_deployments).

Strategy `grid` runs every batch size, `sweep.repeats` times: the whole grid once, then again (one
deployment's grid in client_concurrency mode; in server_max_seqs mode the deployments themselves
repeat, `sm-b4`, then `sm-b4-r1`, so a repeat includes a fresh server start).

Strategy `adaptive` (client_concurrency, closed loop) searches 1..max(batch_sizes) for the largest
batch meeting the spec's SLO (servesweep.loadgen.adaptive); the manifest records the points it
measured and how many it used, next to the grid's count.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from pathlib import Path
from typing import Any, Protocol

from rich.progress import Progress

from servesweep.catalog import load_catalog
from servesweep.fingerprint import Fingerprint
from servesweep.fingerprint import take as take_fingerprint
from servesweep.identity import config_hash, measured_in_lake
from servesweep.loadgen.adaptive import PointResult, find_largest_batch, level_of, rejudge
from servesweep.loadgen.client import RequestRecord, Sampling
from servesweep.loadgen.constraints import Constraint, Level, constraints_for, first_stop
from servesweep.loadgen.datagen import PromptFactory
from servesweep.loadgen.runner import LoadPlan, run_load
from servesweep.loadgen.sources import SourceError, request_source
from servesweep.loadgen.trace import TraceError, read_trace
from servesweep.metrics.remote import SamplerConfig, SamplerProcess
from servesweep.metrics.summary import request_latencies, request_meets_slo, summarise_requests
from servesweep.platform.types import Endpoint, EndpointAuthError
from servesweep.spec import BenchmarkSpec, SLOSpec, WorkloadShape
from servesweep.sweep_plan import (
    AdaptiveSearch,
    Deployment,
    PointWindow,
    ReusedPoint,
    SweepManifest,
    SweepPoint,
    plan_point,
    requests_for,
    workload_of,
    write_sweep,
)

RequestRow = dict[str, Any]  # one requests row (heterogeneous columns)
ClimbKey = tuple[str | None, int, int]  # a workload's climb: its name, input and output tokens


class RunPoint(Protocol):
    """Runs one point (of one repeat) and records it; returns its window and request rows."""

    def __call__(self, point: SweepPoint, repeat: int = ...) -> tuple[PointWindow, list[RequestRow]]: ...


def request_rows(run_id: str, point: SweepPoint, records: list[RequestRecord], started_unix: float,
                 repeat: int = 0, slo: SLOSpec | None = None) -> list[RequestRow]:
    rows: list[RequestRow] = []
    for record in records:
        latencies = request_latencies(record.sent_at, record.token_times, record.output_tokens)
        lag = (record.sent_at - record.scheduled_at) * 1000.0 if record.scheduled_at is not None else None
        rows.append({
            "run_id": run_id, "point_id": point.point_id, "deployment_id": point.deployment_id,
            "request_index": record.index, "warmup": record.warmup, "cooldown": record.cooldown,
            "repeat": repeat, "ok": record.ok, "slo_met": request_meets_slo(record.ok, latencies, slo),
            "error": record.error, "scheduled_at_s": record.scheduled_at, "sent_at_s": record.sent_at,
            "sent_at_unix": started_unix + record.sent_at, **latencies, "schedule_lag_ms": lag,
            "requested_input_tokens": record.requested_input_tokens,
            "requested_output_tokens": record.requested_output_tokens,
            "input_tokens": record.input_tokens, "output_tokens": record.output_tokens,
            "output_chunks": len(record.token_times), "conversation": record.conversation, "turn": record.turn,
        })
    return rows


def sampling_of(workload: WorkloadShape) -> Sampling:
    """The load generator's form of a workload's sampling fields."""
    return Sampling(temperature=workload.temperature, top_p=workload.top_p, top_k=workload.top_k,
                    min_tokens=workload.min_tokens, ignore_eos=workload.ignore_eos, stop=tuple(workload.stop),
                    extra=tuple(workload.extra_body.items()))


def run_sweep(spec: BenchmarkSpec, deployment: Deployment, endpoint: Endpoint, tokenizer_dir: str,
              out_dir: str | Path) -> SweepManifest:
    """Run every point of a deployment; write requests/server_metrics Parquet and a manifest to out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    requests: list[dict[str, Any]] = []
    windows: list[PointWindow] = []
    samples: list[dict[str, Any]] = []
    searches: list[AdaptiveSearch] = []
    reused_points: list[ReusedPoint] = []
    try:
        headers = tuple(endpoint.request_headers().items())
        auth_error = None
    except EndpointAuthError as error:
        headers, auth_error = (), str(error)
    fingerprint = take_fingerprint(spec, "" if endpoint.error else endpoint.base_url, endpoint.gke_facts or None,
                                   headers=dict(headers), metrics_note=no_metrics_note(endpoint))
    if endpoint.error or endpoint.api != "openai" or auth_error:
        reason = (f"server start: {endpoint.error}" if endpoint.error else auth_error
                  or f"load generator speaks the OpenAI API, the server speaks {endpoint.api}")
        repeats = range(deployment.first_repeat, deployment.first_repeat + deployment.repeats)
        windows = [PointWindow(point_id=p.point_id, repeat=r, failure_reason=reason)
                   for r in repeats for p in deployment.points]
    else:
        prompts = PromptFactory(tokenizer_dir, seed=spec.model.seed)
        samplers = _samplers(spec, deployment, endpoint)

        def run(point: SweepPoint, repeat: int = deployment.first_repeat) -> tuple[PointWindow, list[RequestRow]]:
            for sampler in samplers:
                sampler.begin(point.point_id)
            window, rows = _run_point(spec, point, endpoint, prompts, repeat, headers)
            for sampler in samplers:
                sampler.end()
            windows.append(window)
            requests.extend(rows)
            # Saved after every point, so a sweep cut short (a timeout, a lost node) keeps what it measured.
            samples = [dict(row, run_id=spec.run_id) for sampler in samplers for row in list(sampler.rows)]
            _save(out, spec, deployment, endpoint, windows, requests, samples, searches, fingerprint, reused_points)
            return window, rows

        with contextlib.ExitStack() as stack:
            if note := no_metrics_note(endpoint):
                print(f"warning: {note}")
            for sampler in samplers:
                stack.enter_context(sampler)
                for reason in sampler.unavailable:
                    print(f"warning: no metrics from the {reason}")
            constraints = stop_constraints(spec)
            if spec.sweep.strategy == "adaptive":
                # Resume: every batch the search might probe, looked up once; a probe the lake has is not run.
                candidates = deployment.model_copy(update={"points": _search_candidates(spec, deployment)})
                reused = _reusable(spec, candidates, fingerprint, announce=False)
                measured, searches = _adaptive(spec, deployment, run, constraints, reused)
                reused_points += [_reused_point(p.point_id, reused[p.point_id]) for p in measured
                                  if p.point_id in reused]
                if reused_points:
                    print(f"resume {deployment.deployment_id}: {len(reused_points)} of the search's "
                          f"{len(measured)} probes measured already, not run again; --force measures them anew",
                          flush=True)
                deployment = deployment.model_copy(update={"points": measured})
            else:
                reused = _reusable(spec, deployment, fingerprint)
                reused_points += [_reused_point(pid, row) for pid, row in reused.items()]
                reached = _grid(deployment, run, spec.slo, constraints, reused)
                deployment = deployment.model_copy(update={"points": reached})
        samples = [dict(row, run_id=spec.run_id) for sampler in samplers for row in sampler.rows]
    return _save(out, spec, deployment, endpoint, windows, requests, samples, searches, fingerprint, reused_points)


def _save(out: Path, spec: BenchmarkSpec, deployment: Deployment, endpoint: Endpoint, windows: list[PointWindow],
          requests: list[RequestRow], samples: list[dict[str, Any]], searches: list[AdaptiveSearch],
          fingerprint: Fingerprint | None = None, reused: list[ReusedPoint] | None = None) -> SweepManifest:
    manifest = SweepManifest(deployment=deployment, endpoint=endpoint, windows=windows, searches=searches,
                             reused=reused or [],
                             fingerprint=fingerprint)
    return write_sweep(out, manifest, requests, samples)


def no_metrics_note(endpoint: Endpoint) -> str | None:
    """Why the server's own metrics are not scraped, when they are not (an external endpoint without a
    metrics_url): said on the console and in the run's notes, so null server columns are explained."""
    if endpoint.metrics_url:
        return None
    return "server metrics: not scraped (no server.external.metrics_url), the points' server columns are null"


def _samplers(spec: BenchmarkSpec, deployment: Deployment, endpoint: Endpoint) -> list[SamplerProcess]:
    """The server's Prometheus endpoint, plus NVML on GPU accelerators (when NVML is there), sampled in a
    process of their own (servesweep.metrics.remote): in this one, parsing stalls the load generator."""
    interval = spec.sweep.scrape_interval_s
    configs = [SamplerConfig("prometheus", deployment.deployment_id, interval, url=endpoint.metrics_url,
                             prefixes=(endpoint.metric_prefix,))] if endpoint.metrics_url else []
    if spec.accelerator.type != "cpu" and spec.server.kind != "external":  # an endpoint's GPUs are not here
        configs.append(SamplerConfig("gpu", deployment.deployment_id, interval))
    return [SamplerProcess(configs)] if configs else []


def _reused_point(point_id: str, row: dict[str, Any]) -> ReusedPoint:
    """This run's point `point_id`, taken from the lake row that measured it (resume)."""
    return ReusedPoint(point_id=point_id, run_id=row["run_id"], source_point_id=row["point_id"],
                       config_hash=row["config_hash"])


def _reusable(spec: BenchmarkSpec, deployment: Deployment, fingerprint: Fingerprint,
              announce: bool = True) -> dict[str, dict[str, Any]]:
    """The points of `deployment` the lake has measured already for this configuration (resume), by point id."""
    if not spec.sweep.resume:
        return {}
    hashes = {p.point_id: config_hash(spec, p, fingerprint.server_version) for p in deployment.points}
    found = measured_in_lake(spec.lake_uri, hashes, spec.run_id)
    if found and announce:
        runs = sorted({row["run_id"] for row in found.values()})
        print(f"resume {deployment.deployment_id}: {len(found)} of {len(hashes)} points measured already (run "
              f"{', '.join(runs)}), not run again; --force measures them anew", flush=True)
    return found


def stop_constraints(spec: BenchmarkSpec) -> list[Constraint]:
    """The spec's early-stop rules; a dollar budget is priced from the catalog (said when it cannot be)."""
    stop = spec.sweep.stop
    if stop is None:
        return []
    price = None
    if stop.max_dollars is not None:
        price = load_catalog().price_per_gpu_hour(spec.accelerator.type) if spec.accelerator.type != "cpu" else None
        if price is None:
            print(f"warning: sweep.stop.max_dollars: the catalog has no price for {spec.accelerator.type}; "
                  "the dollar budget is not applied")
    return constraints_for(stop, spec.accelerator.count, price)


def _climb_key(point: SweepPoint) -> ClimbKey:
    return point.workload, point.input_tokens, point.output_tokens


def _grid(deployment: Deployment, run: RunPoint, slo: SLOSpec | None = None,
          constraints: list[Constraint] | None = None,
          reused: dict[str, dict[str, Any]] | None = None) -> list[SweepPoint]:
    """Every point, then every point again for each further repeat (interleaved: never back to back). With
    stop constraints, a workload's climb ends at the first level one of them stops (judged in the first
    repeat); its later levels are not run, in any repeat. Points in `reused` (measured already, by point id)
    are not run; the constraints see their lake rows. Returns the points that ran or were reused."""
    reused = reused or {}
    # No auto-refresh: a render thread competes for CPU with the client and the server and
    # measurably slows streaming on small machines. The bar moves between points only.
    repeats = range(deployment.first_repeat, deployment.first_repeat + deployment.repeats)
    history: dict[ClimbKey, list[Level]] = {}
    stopped: dict[ClimbKey, int] = {}  # climb -> the batch size of the level its stop rule fired after
    reached: list[SweepPoint] = []
    with Progress(auto_refresh=False) as progress:
        task = progress.add_task(f"sweep {deployment.deployment_id}", total=len(deployment.points) * len(repeats))
        for repeat in repeats:
            for point in deployment.points:
                if point.batch_size > stopped.get(_climb_key(point), point.batch_size):
                    continue
                if repeat == deployment.first_repeat:
                    reached.append(point)
                if point.point_id in reused:
                    row = reused[point.point_id]
                    if constraints:  # the lake's row stands for the level
                        history.setdefault(_climb_key(point), []).append(Level(
                            point.batch_size, row.get("output_token_throughput"),
                            (row.get("num_errors") or 0) / (row.get("num_requests") or 1), 0.0,
                            row.get("duration_s") or 0.0))
                    continue
                window, rows = run(point, repeat)
                if constraints and repeat == deployment.first_repeat:
                    levels = history.setdefault(_climb_key(point), [])
                    levels.append(level_of(point_result(point.batch_size, rows, window.failure_reason, window),
                                           slo or SLOSpec()))
                    if reason := first_stop(constraints, levels):
                        window.stop_reason = reason
                        stopped[_climb_key(point)] = point.batch_size
                        print(f"stopped climbing after {point.point_id}: {reason}", flush=True)
                tag = f" (repeat {repeat})" if deployment.repeats > 1 or repeat else ""
                progress.update(task, advance=1,
                                description=f"sweep {deployment.deployment_id}: {point.point_id}{tag}")
                progress.refresh()
    return reached


def _search_candidates(spec: BenchmarkSpec, deployment: Deployment) -> list[SweepPoint]:
    """Every point an adaptive search over the spec's batch range could measure."""
    return [plan_point(spec, "client_concurrency", deployment.deployment_id, batch, shape.input_tokens,
                       shape.output_tokens, shape.name)
            for shape in spec.workloads for batch in range(1, max(spec.sweep.batch_sizes) + 1)]


def _adaptive(spec: BenchmarkSpec, deployment: Deployment, run: RunPoint,
              constraints: list[Constraint] | None = None,
              reused: dict[str, dict[str, Any]] | None = None) -> tuple[list[SweepPoint], list[AdaptiveSearch]]:
    """Search each workload shape for its largest batch meeting the SLO; returns the measured points. A probe in
    `reused` (the lake's row, by point id) is judged on that row, not run. Further repeats re-run every probed
    batch of every search, interleaved, and rejudge the answer on the pool."""
    reused = reused or {}
    measured: list[SweepPoint] = []
    windows: list[PointWindow] = []
    searches: list[AdaptiveSearch] = []
    rows_of: dict[str, list[RequestRow]] = {}
    failed_of: dict[str, str | None] = {}
    for shape in spec.workloads:
        def measure(batch: int, isl: int = shape.input_tokens, osl: int = shape.output_tokens,
                    name: str | None = shape.name) -> PointResult:
            point = plan_point(spec, "client_concurrency", deployment.deployment_id, batch, isl, osl, name)
            measured.append(point)
            if point.point_id in reused:
                return lake_point_result(batch, reused[point.point_id])
            window, rows = run(point)
            windows.append(window)
            rows_of[point.point_id], failed_of[point.point_id] = list(rows), window.failure_reason
            return point_result(batch, rows, window.failure_reason, window)

        result = find_largest_batch(measure, spec.slo, max(spec.sweep.batch_sizes), constraints=constraints)
        if result.stop_reason and windows:
            windows[-1].stop_reason = result.stop_reason  # the point after which the search stopped
            print(f"stopped the search after {windows[-1].point_id}: {result.stop_reason}", flush=True)
        searches.append(AdaptiveSearch(input_tokens=shape.input_tokens, output_tokens=shape.output_tokens,
                                       result=result))
    for repeat in range(deployment.first_repeat + 1, deployment.first_repeat + spec.sweep.repeats):
        for point in measured:
            if point.point_id in reused:
                continue  # the lake's row pools its own repeats
            window, rows = run(point, repeat)
            rows_of[point.point_id] += rows
            failed_of[point.point_id] = failed_of[point.point_id] or window.failure_reason
    for search in searches:
        if spec.sweep.repeats > 1:
            probes = [p for p in measured if (p.input_tokens, p.output_tokens)
                      == (search.input_tokens, search.output_tokens)]
            pooled = [lake_point_result(p.batch_size, reused[p.point_id]) if p.point_id in reused
                      else point_result(p.batch_size, rows_of[p.point_id], failed_of[p.point_id]) for p in probes]
            _rejudge(spec, search, pooled)
        result = search.result
        print(f"adaptive {deployment.deployment_id} i{search.input_tokens}-o{search.output_tokens}: largest batch "
              f"meeting the SLO = {result.best_batch} ({result.points_used} points"
              f"{f' x {result.repeats} repeats' if result.repeats > 1 else ''}; grid: {result.grid_points})"
              + (f", first repeat alone: {result.first_repeat_batch}"
                 if result.first_repeat_batch != result.best_batch else ""), flush=True)
    return measured, searches


def lake_point_result(batch: int, row: dict[str, Any]) -> PointResult:
    """What the search needs of a point measured before (its lake row: resume)."""
    return PointResult(batch_size=batch, ttft_p99_ms=row.get("ttft_p99_ms"), tpot_p99_ms=row.get("tpot_p99_ms"),
                       e2e_p99_ms=row.get("e2e_p99_ms"), output_throughput=row.get("output_token_throughput"),
                       error_rate=(row.get("num_errors") or 0) / (row.get("num_requests") or 1),
                       seconds=row.get("duration_s") or 0.0)


def _rejudge(spec: BenchmarkSpec, search: AdaptiveSearch, pooled: list[PointResult]) -> None:
    search.result = search.result.model_copy(update={
        "repeats": spec.sweep.repeats, "first_repeat_batch": search.result.best_batch, "pooled": pooled,
        "best_batch": rejudge(pooled, spec.slo)})


def point_result(batch: int, rows: list[RequestRow], failure: str | None = None,
                 window: PointWindow | None = None) -> PointResult:
    """The SLO metrics of one point's request rows (a point without a successful request, or one stopped
    for a `failure`, has failed), with its throughput, error rate and wall time for the stop constraints."""
    seconds = (window.ended_unix - window.started_unix) if window and window.started_unix and window.ended_unix \
        else 0.0
    if not rows or failure is not None:
        return PointResult(batch_size=batch, failed=True, error_rate=1.0, seconds=seconds)
    summary = summarise_requests(rows)
    measured = summary["num_requests"] or 1
    return PointResult(batch_size=batch, ttft_p99_ms=summary["ttft_p99_ms"], tpot_p99_ms=summary["tpot_p99_ms"],
                       e2e_p99_ms=summary["e2e_p99_ms"], failed=summary["status"] == "failed",
                       output_throughput=summary.get("output_token_throughput"),
                       error_rate=summary["num_errors"] / measured, seconds=seconds)


def _run_point(spec: BenchmarkSpec, point: SweepPoint, endpoint: Endpoint, tokenizer: PromptFactory,
               repeat: int = 0, headers: tuple[tuple[str, str], ...] = ()) -> tuple[PointWindow, list[RequestRow]]:
    workload = workload_of(spec, point)
    sweep = spec.sweep
    shape: dict[str, Any] = {"arrival": sweep.arrival, "burstiness": sweep.burstiness,
                             "rate_end": point.ramp_to_rate}
    try:
        if point.trace and sweep.trace is not None:
            trace = read_trace(sweep.trace)
            shape |= {"schedule": trace.offsets, "lengths": [
                (min(i or point.input_tokens, point.input_tokens), min(o or point.output_tokens, point.output_tokens))
                for i, o in trace.lengths]}
    except TraceError as error:
        return PointWindow(point_id=point.point_id, repeat=repeat, failure_reason=str(error)[:500]), []
    plan = LoadPlan(
        base_url=endpoint.base_url, model=endpoint.served_name, input_tokens=point.input_tokens,
        output_tokens=point.output_tokens, concurrency=point.concurrency, rate=point.request_rate,
        num_requests=requests_for(spec, point), duration_s=point.duration_s or spec.sweep.duration_s, **shape,
        warmup_requests=spec.sweep.warmup_requests, timeout_s=spec.sweep.request_timeout_s, seed=spec.model.seed,
        dialect=spec.server.kind, workers=spec.sweep.client_workers, request_id_prefix=f"{point.point_id}-",
        connect_timeout_s=spec.sweep.connect_timeout_s, first_byte_timeout_s=spec.sweep.first_byte_timeout_s,
        idle_timeout_s=spec.sweep.idle_timeout_s, max_consecutive_failures=spec.sweep.max_consecutive_failures,
        max_error_rate=spec.sweep.max_error_rate, warmup_s=spec.sweep.warmup_s, cooldown_s=spec.sweep.cooldown_s,
        sampling=sampling_of(workload), headers=headers, api=workload.api,
    )
    try:
        # Each point and repeat draws its own order (a dataset's prompts met again would hit the prefix cache).
        seed = (spec.model.seed + zlib.crc32(f"{point.point_id}/{repeat}".encode())) % 2**32
        make_prompt = request_source(workload, tokenizer, seed, spec.server.max_model_len)
        result = run_load(plan, make_prompt)
    except SourceError as error:  # a dataset that gives no requests: its own one-line reason
        return PointWindow(point_id=point.point_id, repeat=repeat, failure_reason=str(error)[:500]), []
    except Exception as error:  # a broken point is recorded, the rest of the sweep goes on
        return PointWindow(point_id=point.point_id, repeat=repeat,
                           failure_reason=f"load generator: {error!r}"[:500]), []
    rows = request_rows(spec.run_id, point, result.records, result.started_unix, repeat, spec.slo)
    window = PointWindow(point_id=point.point_id, repeat=repeat, started_unix=result.started_unix,
                         ended_unix=time.time(),
                         failure_reason=result.stopped,
                         client_loop_lag_p99_ms=result.loop_lag_p99_ms, client_workers=result.workers,
                         client_loop_lag_max_ms=result.loop_lag_max_ms,
                         client_read_lag_p99_ms=result.read_lag_p99_ms, client_timing=result.timing)
    return window, rows
