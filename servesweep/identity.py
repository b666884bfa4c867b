"""What a sweep point measured, independent of the run that measured it: the configuration hash.

Two points with the same `config_hash` measured the same thing: the same model (architecture, dtype, weights,
seed), quantization, server (kind, version, context, extra flags; an external endpoint's served model),
accelerator type and count, workload (lengths, API, data source, sampling, prefixes, conversations), and the
point's load (mode, batch, concurrency, rate, arrivals, stage or trace, requests and warm-up). Left out:
the run id and name, the lake, the SLO (a judgement, not a measurement), the deployment's batch cap in
client_concurrency mode (extending batch_sizes does not change what batch 4 measured), secrets, timeouts and
where the load generator ran. `points.config_hash` holds it; resuming a sweep skips points whose hash the lake
already has (components/sweep.py). It identifies a point, batch and load included: the analysis views group points
into configurations by `point_costs.config_id` instead (servesweep/sql/point_costs.sql), which leaves the load out.

Bump IDENTITY_VERSION when a field is added: an old hash then no longer matches a new one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from servesweep.spec import BenchmarkSpec
from servesweep.sweep_plan import SweepPoint, requests_for, workload_of

IDENTITY_VERSION = 1
_WORKLOAD_LABELS = ("name", "requests_per_point")  # a label, and a count judged per point below


def measured_identity(spec: BenchmarkSpec, point: SweepPoint, server_version: str | None,
                      requests: int | None) -> dict[str, Any]:
    """The fields that define what `point` measures (`requests`: its measured request count, None: by time)."""
    workload = workload_of(spec, point).model_dump(mode="json", exclude=set(_WORKLOAD_LABELS))
    server = spec.server
    sweep = spec.sweep
    open_loop = point.load_kind == "open"
    return {
        "identity_version": IDENTITY_VERSION,
        "model": {"name": spec.model.name, "shape": spec.model.resolved_shape().model_dump(mode="json"),
                  "dtype": spec.model.dtype, "weights": spec.model.weights, "seed": spec.model.seed},
        "quantization": spec.quantization,
        "server": {"kind": server.kind, "version": server_version, "max_model_len": server.max_model_len,
                   "extra_args": list(server.extra_args), "cpu_kv_cache_gib": server.cpu_kv_cache_gib,
                   "gpu_memory_utilization": server.gpu_memory_utilization,
                   "served_model": server.external.served_model_name if server.external else None},
        "accelerator": {"type": spec.accelerator.type, "count": spec.accelerator.count},
        "workload": workload,
        "point": {"mode": point.sweep_mode, "batch_size": point.batch_size, "concurrency": point.concurrency,
                  "max_num_seqs": point.batch_size if point.sweep_mode == "server_max_seqs" else None,
                  "request_rate": point.request_rate, "ramp_to_rate": point.ramp_to_rate, "stage": point.stage,
                  "stage_duration_s": point.duration_s,
                  "trace": sweep.trace.model_dump(mode="json") if point.trace and sweep.trace else None,
                  "arrival": sweep.arrival if open_loop else None,
                  "burstiness": sweep.burstiness if open_loop else None},
        "measurement": {"requests": requests, "duration_s": None if point.duration_s else sweep.duration_s,
                        "warmup_requests": sweep.warmup_requests, "warmup_s": sweep.warmup_s,
                        "cooldown_s": sweep.cooldown_s, "repeats": sweep.repeats},
    }


def config_hash(spec: BenchmarkSpec, point: SweepPoint, server_version: str | None) -> str:
    """sha256 of the point's measured identity as canonical JSON (sorted keys)."""
    identity = measured_identity(spec, point, server_version, requests_for(spec, point))
    return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def measured_in_lake(lake_uri: str, hashes: dict[str, str], prefer_run: str) -> dict[str, dict[str, Any]]:
    """For each point id of `hashes` (point id -> config hash), the lake's measured row with that hash (status
    ok or partial: a failed point is measured again), preferring run `prefer_run`, else the latest; an absent
    lake has none."""
    from servesweep.lake.store import LakeError, read_table

    if not hashes:
        return {}
    try:
        table = read_table(lake_uri, "points")
    except (LakeError, FileNotFoundError):
        return {}
    if "config_hash" not in table.column_names:
        return {}
    wanted = set(hashes.values())
    columns = ["run_id", "point_id", "config_hash", "status", "source", "started_at", "output_token_throughput",
               "num_requests", "num_errors", "duration_s", "ttft_p99_ms", "tpot_p99_ms", "e2e_p99_ms"]
    rows = [r for r in table.select([c for c in columns if c in table.column_names]).to_pylist()
            if r["config_hash"] in wanted and r["source"] == "measured" and r["status"] in ("ok", "partial")]
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row["config_hash"]
        rank = (row["run_id"] == prefer_run, row["started_at"] is not None, row["started_at"] or 0)
        if key not in best or rank > best[key]["_rank"]:
            best[key] = dict(row, _rank=rank)
    return {point_id: {k: v for k, v in best[h].items() if k != "_rank"} for point_id, h in hashes.items() if h in best}
