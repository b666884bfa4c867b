"""Per-request latencies and per-point summaries. Definitions: servesweep/lake/schema.py's docstring."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from servesweep.lake.schema import STATS
from servesweep.lake.sketch import RELATIVE_ACCURACY, sketch
from servesweep.metrics.intervals import by_repeat

if TYPE_CHECKING:
    from servesweep.spec import SLOSpec

_QUANTILES = {"p50": 50, "p90": 90, "p95": 95, "p99": 99}
RATE_FRACTION = 0.95  # achieved below this share of the scheduled rate: the client fell behind
CLIENT_LAG_LIMIT_MS = 5.0  # schedule or loop lag (p99) above this: the client was the bottleneck
FEW_FOR_P99 = 100  # fewer successful requests: the p99 is an interpolation between the top few values


def request_latencies(sent_at: float, token_times: Sequence[float], output_tokens: int | None) -> dict[str, Any]:
    """TTFT, E2E, TPOT (ms) and the inter-token gaps of one request from its chunk arrival times (s)."""
    if len(token_times) == 0:
        return {"ttft_ms": None, "e2e_ms": None, "tpot_ms": None, "itl_ms": []}
    ttft = (token_times[0] - sent_at) * 1000.0
    e2e = (token_times[-1] - sent_at) * 1000.0
    tpot = (e2e - ttft) / (output_tokens - 1) if output_tokens and output_tokens > 1 else None
    gaps = np.diff(np.asarray(token_times, dtype=np.float64)) * 1000.0
    return {"ttft_ms": ttft, "e2e_ms": e2e, "tpot_ms": tpot, "itl_ms": gaps.tolist()}


def stats(values: Iterable[float | None], prefix: str) -> dict[str, float | None]:
    """p50/p90/p95/p99/mean of the non-null values (linear interpolation), keyed `{prefix}_{stat}_ms`."""
    array = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if array.size == 0:
        return {f"{prefix}_{stat}_ms": None for stat in STATS}
    result: dict[str, float | None] = {f"{prefix}_{name}_ms": float(np.percentile(array, q))
                                       for name, q in _QUANTILES.items()}
    result[f"{prefix}_mean_ms"] = float(array.mean())
    return result


def request_meets_slo(ok: bool, latencies: Mapping[str, Any], slo: SLOSpec | None) -> bool | None:
    """Did one request meet every per-request limit of `slo`? None when no per-request limit is set.

    A failed request misses; TPOT and the largest gap are met vacuously by a one-token response."""
    if slo is None or not slo.has_request_limits:
        return None
    if not ok:
        return False
    gaps = latencies.get("itl_ms") or ()
    checks = ((slo.request_ttft_ms, latencies["ttft_ms"]), (slo.request_tpot_ms, latencies.get("tpot_ms")),
              (slo.request_itl_ms, max(gaps) if len(gaps) else None), (slo.request_e2e_ms, latencies["e2e_ms"]))
    return all(limit is None or value is None or value <= limit for limit, value in checks)


def is_measured(row: Mapping[str, Any]) -> bool:
    """Neither a warm-up nor a cool-down request."""
    return not row["warmup"] and not row.get("cooldown")


def _rate(sends_by_repeat: Iterable[Sequence[float]]) -> float | None:
    """Sends per second over each repeat's own send window, pooled: (n - 1) per repeat / their spans."""
    gaps = spread = 0.0
    for sends in sends_by_repeat:
        if len(sends) > 1:
            gaps += len(sends) - 1
            spread += max(sends) - min(sends)
    return gaps / spread if spread > 0 else None


def _duration(ok: Sequence[Mapping[str, Any]]) -> float:
    """Sum over repeats of (last end - first send) of the successful measured requests."""
    total = 0.0
    for rows in by_repeat(ok):
        total += max(r["sent_at_s"] + r["e2e_ms"] / 1000.0 for r in rows) - min(r["sent_at_s"] for r in rows)
    return total


def summarise_requests(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Throughput and latency statistics of one point's request rows, its repeats pooled (warm-up and
    cool-down rows are ignored; windows and rates are per repeat, summed)."""
    measured = [r for r in rows if is_measured(r)]
    ok = [r for r in measured if r["ok"]]
    summary: dict[str, Any] = {"num_requests": len(measured), "num_errors": len(measured) - len(ok),
                               "num_warmup": sum(bool(r["warmup"]) for r in rows),
                               "num_cooldown": sum(bool(r.get("cooldown")) for r in rows),
                               "repeats": len(by_repeat(rows)) or None,
                               "p99_few_requests": len(ok) < FEW_FOR_P99 if ok else None}
    summary["achieved_rate"] = _rate([r["sent_at_s"] for r in group] for group in by_repeat(measured))
    if ok:
        duration = _duration(ok)
        input_tokens = sum(r["input_tokens"] or 0 for r in ok)
        output_tokens = sum(r["output_tokens"] or 0 for r in ok)
        summary.update(
            duration_s=duration,
            request_throughput=len(ok) / duration if duration > 0 else None,
            input_token_throughput=input_tokens / duration if duration > 0 else None,
            output_token_throughput=output_tokens / duration if duration > 0 else None,
            total_token_throughput=(input_tokens + output_tokens) / duration if duration > 0 else None,
        )
    for metric in ("ttft", "tpot", "e2e"):
        summary.update(stats((r[f"{metric}_ms"] for r in ok), metric))
    summary.update(stats((gap for r in ok for gap in (r["itl_ms"] or ())), "itl"))
    for metric in ("ttft", "tpot", "e2e"):
        summary[f"{metric}_sketch"] = sketch(r[f"{metric}_ms"] for r in ok)
    summary["itl_sketch"] = sketch(gap for r in ok for gap in (r["itl_ms"] or ()))
    summary["sketch_relative_accuracy"] = RELATIVE_ACCURACY if ok else None
    lags = stats((r["schedule_lag_ms"] for r in measured), "schedule_lag")
    summary["schedule_lag_p50_ms"] = lags["schedule_lag_p50_ms"]
    summary["schedule_lag_p99_ms"] = lags["schedule_lag_p99_ms"]
    summary["scheduled_rate"] = _rate([r["scheduled_at_s"] for r in group if r.get("scheduled_at_s") is not None]
                                      for group in by_repeat(measured))
    summary |= _goodput(measured, summary.get("duration_s"))
    summary["status"] = "failed" if not ok else ("partial" if len(ok) < len(measured) else "ok")
    return summary


def _goodput(measured: Sequence[Mapping[str, Any]], duration: float | None) -> dict[str, float | None]:
    """Requests meeting every per-request SLO per second, and their share; None without such an SLO."""
    verdicts = [r.get("slo_met") for r in measured]
    if not measured or all(v is None for v in verdicts):
        return {"goodput": None, "slo_attainment": None}
    met = sum(bool(v) for v in verdicts)
    return {"goodput": met / duration if duration else None, "slo_attainment": met / len(measured)}


def client_limited(summary: Mapping[str, Any], open_loop: bool, loop_lag_p99_ms: float | None,
                   read_lag_p99_ms: float | None = None) -> bool:
    """Did the load generator, not the server, set the pace of this point? (schema: points.client_limited)"""
    behind = (open_loop and summary.get("scheduled_rate") is not None and summary.get("achieved_rate") is not None
              and summary["achieved_rate"] < RATE_FRACTION * summary["scheduled_rate"])
    lags = (summary.get("schedule_lag_p99_ms"), loop_lag_p99_ms, read_lag_p99_ms)
    return bool(behind or any(lag is not None and lag > CLIENT_LAG_LIMIT_MS for lag in lags))


PREFIX_QUERIES, PREFIX_HITS = "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"


def increase(samples: Sequence[Mapping[str, Any]], metric: str) -> float | None:
    """How much a counter grew over a point's samples: last - first of each series (label set), summed; None
    when the server has no such counter or it was scraped fewer than twice. Samples are in scrape order."""
    series: dict[tuple[tuple[str, str], ...], list[float]] = {}
    for sample in samples:
        if sample["metric"] == metric:
            labels = sample.get("labels") or ()
            key = tuple(sorted(labels.items() if isinstance(labels, dict) else labels))
            series.setdefault(key, []).append(sample["value"])
    grown = [max(0.0, values[-1] - values[0]) for values in series.values() if len(values) > 1]
    return float(sum(grown)) if grown else None


def summarise_server(samples: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Server-side summary of one point's samples: KV cache, running/waiting requests, GPU (NVML)."""

    def values(metric: str) -> list[float]:
        return [s["value"] for s in samples if s["metric"] == metric]

    def mean(metric: str) -> float | None:
        found = values(metric)
        return float(np.mean(found)) if found else None

    def peak(metric: str) -> float | None:
        found = values(metric)
        return max(found) if found else None

    memory = peak("gpu:memory_used_bytes")
    queries, hits = increase(samples, PREFIX_QUERIES), increase(samples, PREFIX_HITS)
    return {
        "prefix_cache_queries": queries, "prefix_cache_hits": hits,
        "prefix_cache_hit_rate": hits / queries if queries and hits is not None else None,
        "kv_cache_usage_max": peak("vllm:kv_cache_usage_perc"),
        "running_requests_mean": mean("vllm:num_requests_running"),
        "running_requests_max": peak("vllm:num_requests_running"),
        "waiting_requests_max": peak("vllm:num_requests_waiting"),
        # GPU samples pool all GPUs of the server: mean utilisation/power per GPU, peak memory of any.
        "gpu_utilization_mean": mean("gpu:utilization_percent"),
        "gpu_memory_used_max_gib": memory / 1024**3 if memory is not None else None,
        "gpu_power_mean_w": mean("gpu:power_watts"),
    }
