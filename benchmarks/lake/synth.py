"""A synthetic fleet lake: runs of points of requests shaped like real sweeps (numpy, seeded)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from servesweep.lake import sketch, store
from servesweep.lake.schema import STATS

MODELS = ("llama3-8b", "llama3-70b", "qwen2-7b", "mistral-7b")
ACCELERATORS = ("nvidia-h100-80gb", "nvidia-h200-141gb", "nvidia-l4", "nvidia-a100-80gb")
_Q = {"p50": 50, "p90": 90, "p95": 95, "p99": 99}


@dataclass(frozen=True)
class Shape:
    runs: int
    points: int  # per run
    requests: int  # per point
    mean_output_tokens: int = 128

    @property
    def rows(self) -> int:
        return self.runs * self.points * self.requests


def run_tables(shape: Shape, run: int, seed: int = 0) -> dict[str, pa.Table]:
    """The requests and points tables of one run (points summarised from its requests, as the pipeline does)."""
    rng = np.random.default_rng([seed, run])
    run_id = f"fleet-{run:05d}"
    n = shape.points * shape.requests
    point = np.repeat(np.arange(shape.points), shape.requests)
    batch = 2 ** (np.arange(shape.points) % 9)
    ok = rng.random(n) > 0.005
    out = rng.integers(shape.mean_output_tokens // 2, shape.mean_output_tokens * 3 // 2, n).astype(np.int32)
    gaps_n = np.where(ok, out - 1, 0)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(gaps_n, out=offsets[1:])
    itl_base = (8.0 + 2.0 * np.log2(batch))[point]
    gaps = (rng.lognormal(0.0, 0.25, int(offsets[-1])) * np.repeat(itl_base, gaps_n)).astype(np.float32)
    ttft = (rng.lognormal(0.0, 0.4, n) * (40.0 + 15.0 * batch[point])).astype(np.float32)
    sums = np.add.reduceat(gaps.astype(np.float64), offsets[:-1]) if gaps.size else np.zeros(n)
    sums = np.where(gaps_n > 0, sums, 0.0)
    e2e = (ttft + sums).astype(np.float32)
    tpot = np.where(ok & (out > 1), (e2e - ttft) / np.maximum(out - 1, 1), np.nan).astype(np.float32)
    index = np.tile(np.arange(shape.requests, dtype=np.int32), shape.points)
    sent = index * 0.05 + rng.random(n) * 0.01
    nullable = ~ok
    ids = np.array([f"p{i:03d}-b{batch[i]}" for i in range(shape.points)])
    itl = pa.ListArray.from_arrays(pa.array(offsets), pa.array(gaps), mask=pa.array(nullable))
    requests = pa.table({
        "run_id": pa.array(np.full(n, run_id)), "point_id": pa.array(ids[point]),
        "deployment_id": pa.array(np.full(n, f"{run_id}-d0")), "request_index": pa.array(index),
        "warmup": pa.array(np.zeros(n, bool)), "cooldown": pa.array(np.zeros(n, bool)),
        "repeat": pa.array(np.zeros(n, np.int32)), "ok": pa.array(ok),
        "error": pa.array(np.where(ok, None, "HTTP 500: overloaded")),
        "scheduled_at_s": pa.array(index * 0.05), "sent_at_s": pa.array(sent),
        "sent_at_unix": pa.array(1.7e9 + run * 1e4 + sent),
        "ttft_ms": pa.array(np.where(ok, ttft, np.nan), mask=nullable),
        "e2e_ms": pa.array(e2e, mask=nullable), "tpot_ms": pa.array(tpot, mask=np.isnan(tpot)), "itl_ms": itl,
        "schedule_lag_ms": pa.array((sent - index * 0.05) * 1000.0, pa.float32()),
        "requested_input_tokens": pa.array(np.full(n, 512, np.int32)),
        "requested_output_tokens": pa.array(np.full(n, shape.mean_output_tokens, np.int32)),
        "input_tokens": pa.array(np.full(n, 512, np.int32)), "output_tokens": pa.array(out),
        "output_chunks": pa.array(out),
    })
    points = _points(run, run_id, ids, batch, point, ok, ttft, tpot, e2e, gaps, offsets, out)
    return {"requests": store.to_table("requests", requests), "points": store.to_table("points", points)}


def _stats(values: np.ndarray, prefix: str) -> dict[str, float | None]:
    values = values[~np.isnan(values)].astype(np.float64)
    if values.size == 0:
        return {f"{prefix}_{s}_ms": None for s in STATS}
    found = np.percentile(values, list(_Q.values()))
    result: dict[str, float | None] = {f"{prefix}_{k}_ms": float(v) for k, v in zip(_Q, found, strict=True)}
    result[f"{prefix}_mean_ms"] = float(values.mean())
    return result


def _points(run: int, run_id: str, ids: np.ndarray, batch: np.ndarray, point: np.ndarray, ok: np.ndarray,
            ttft: np.ndarray, tpot: np.ndarray, e2e: np.ndarray, gaps: np.ndarray, offsets: np.ndarray,
            out: np.ndarray) -> list[dict]:
    n_points = len(ids)
    good = np.flatnonzero(ok)
    sketches = {m: sketch.grouped(point[good], v[good].astype(np.float64), n_points)
                for m, v in (("ttft", ttft), ("tpot", tpot), ("e2e", e2e))}
    gap_point = np.repeat(point, np.diff(offsets))
    sketches["itl"] = sketch.grouped(gap_point, gaps.astype(np.float64), n_points)
    rows = []
    for i in range(n_points):
        mine = point == i
        good_i = mine & ok
        lo, hi = np.searchsorted(gap_point, [i, i + 1])
        duration = float(mine.sum() * 0.05)
        row = {"run_id": run_id, "point_id": str(ids[i]), "deployment_id": f"{run_id}-d0", "source": "measured",
               "status": "ok" if good_i.all() else "partial", "run_name": f"fleet-{run % 7}",
               "model_name": MODELS[run % len(MODELS)], "quantization": ("none", "fp8")[run % 2],
               "server_kind": "vllm", "accelerator": ACCELERATORS[(run // 2) % len(ACCELERATORS)],
               "accelerator_count": 1 + run % 2, "sweep_mode": "client_concurrency", "load_kind": "closed",
               "batch_size": int(batch[i]), "concurrency": int(batch[i]), "input_tokens": 512,
               "output_tokens": 128, "num_requests": int(mine.sum()), "num_errors": int((mine & ~ok).sum()),
               "duration_s": duration, "request_throughput": float(good_i.sum()) / duration,
               "output_token_throughput": float(out[good_i].sum()) / duration,
               "sketch_relative_accuracy": sketch.RELATIVE_ACCURACY}
        row |= _stats(ttft[good_i], "ttft") | _stats(tpot[good_i], "tpot") | _stats(e2e[good_i], "e2e")
        row |= _stats(gaps[lo:hi], "itl")
        row |= {f"{m}_sketch": sketches[m][i] for m in sketches}
        rows.append(row)
    return rows
