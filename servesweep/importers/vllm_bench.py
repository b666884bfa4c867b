"""vLLM's `vllm bench serve --save-result` JSON (vllm/benchmarks/serve.py: `main_async` builds `result_json`, the
benchmark's `result` dict and `process_one_metric` add the statistics).

One file is one point. What it means, against the lake's definitions (servesweep/lake/schema.py):

- TTFT, TPOT, ITL, E2E: the same definitions (vLLM's TPOT is (E2E - TTFT) / (output - 1), its ITL every gap
  between chunks pooled, its E2EL the last chunk's arrival); the summary is in ms (`{mean,p*}_{metric}_ms`,
  `e2el` for E2E), the per-request lists (`--save-detailed`: ttfts, itls, latencies) in seconds.
- Percentiles the run did not ask for (`--metric-percentiles`, default 99 only) are computed from the
  per-request lists with numpy's linear interpolation, vLLM's own; without those lists they stay null.
- Throughput: the file's own (tokens / benchmark duration). Output tokens: `usage.completion_tokens`
  (vLLM falls back to its tokenizer when a server reports none); input tokens: the client's prompt length.
- Load: `--max-concurrency` N with `--request-rate inf` is a closed loop of N (batch N); a finite rate is an
  open loop (Poisson, or gamma with `--burstiness`), its batch the concurrency cap, else the peak concurrency
  vLLM reports (`max_concurrent_requests`); no cap and rate inf: every prompt at once (batch = num_prompts).
- Requests (with `--save-detailed`): send times are perf_counter seconds, so sent_at_unix stays null; the
  requested output length is not in the file (null). `date` is local time without a zone: not used as
  started_at, kept in the notes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from servesweep.importers.base import (
    DEPLOYMENT_ID,
    PERCENTILES,
    Imported,
    ImportFailed,
    need,
    number,
    point_row,
    scaled,
    stats_ms,
    status_of,
)

TOOL = "vllm-bench"
_METRICS = {"ttft": "ttft", "tpot": "tpot", "itl": "itl", "e2e": "e2el"}  # lake name -> vLLM's
_WHAT = "a vLLM bench serve result (--save-result)"


def parse(data: Any, path: Path) -> Imported:
    completed = int(number(need(data, "completed", path, _WHAT), path, "completed") or 0)
    failed = int(number(data.get("failed", 0), path, "failed") or 0)
    duration = number(need(data, "duration", path, _WHAT), path, "duration")
    requests = _requests(data, path)
    load = _load(data, path, completed + failed)
    point = point_row(
        TOOL, "imported-000", status=status_of(completed, failed),
        failure_reason="every request failed" if completed == 0 else None,
        run_name=path.stem, model_name=data.get("model_id"), api=_api(data.get("endpoint_type")),
        num_requests=completed + failed, num_errors=failed, duration_s=duration,
        request_throughput=number(data.get("request_throughput"), path, "request_throughput"),
        input_token_throughput=_per_s(data.get("total_input_tokens"), duration, path),
        output_token_throughput=number(data.get("output_throughput"), path, "output_throughput"),
        total_token_throughput=number(data.get("total_token_throughput"), path, "total_token_throughput"),
        input_tokens=_longest(data.get("input_lens")), output_tokens=_longest(data.get("output_lens")),
        repeats=1, **load, **_latencies(data, requests, path))
    notes = [f"vLLM bench's backend {data.get('backend')!r}, run date {data.get('date')!r} (local time, zone "
             "unknown)", "input_tokens/output_tokens: the longest prompt and output of the file's requests"
             if requests else "no per-request lists (--save-detailed): percentiles the run did not ask for are null"]
    return Imported(TOOL, [point], requests, notes, model_name=data.get("model_id"))


def _api(endpoint_type: Any) -> str | None:
    return {"openai": "completions", "vllm": "completions", "openai-chat": "chat"}.get(str(endpoint_type))


def _per_s(total: Any, duration: float | None, path: Path) -> float | None:
    value = number(total, path, "total_input_tokens")
    return value / duration if value is not None and duration else None


def _longest(lengths: Any) -> int | None:
    return max(lengths) if isinstance(lengths, list) and lengths else None


def _load(data: dict[str, Any], path: Path, sent: int) -> dict[str, Any]:
    rate = data.get("request_rate")
    cap = data.get("max_concurrency")
    if rate == "inf" or rate is None:
        batch = int(cap) if cap else int(data.get("num_prompts") or sent)
        return {"load_kind": "closed", "sweep_mode": "client_concurrency", "batch_size": batch, "concurrency": batch}
    rate_value = number(rate, path, "request_rate")
    burstiness = number(data.get("burstiness", 1.0), path, "burstiness")
    peak = data.get("max_concurrent_requests")
    batch = int(cap) if cap else int(peak or 0)
    if not batch:
        raise ImportFailed(f"{path}: an open-loop run without --max-concurrency or max_concurrent_requests: no "
                           "batch size to file it under")
    return {"load_kind": "open", "sweep_mode": "client_concurrency", "batch_size": batch,
            "concurrency": int(cap) if cap else None, "request_rate": rate_value,
            "arrival": "poisson" if burstiness == 1.0 else "gamma", "burstiness": burstiness}


def _latencies(data: dict[str, Any], requests: list[dict[str, Any]], path: Path) -> dict[str, float | None]:
    """The file's summary statistics; a percentile it lacks from the per-request lists, else null."""
    ok = [r for r in requests if r["ok"]]
    measured = {"ttft": [r["ttft_ms"] for r in ok], "e2e": [r["e2e_ms"] for r in ok],
                "tpot": [r["tpot_ms"] for r in ok if r["tpot_ms"] is not None],
                "itl": [gap for r in ok for gap in r["itl_ms"]]}
    result: dict[str, float | None] = {}
    for metric, theirs in _METRICS.items():
        computed = stats_ms(measured[metric], metric)
        for stat in (*PERCENTILES, "mean"):
            keys = [f"{stat}_{theirs}_ms"] + ([f"median_{theirs}_ms"] if stat == "p50" else [])
            value = next((number(data[key], path, key) for key in keys if data.get(key) is not None), None)
            result[f"{metric}_{stat}_ms"] = value if value is not None else computed[f"{metric}_{stat}_ms"]
    return result


def _requests(data: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """Per-request rows from --save-detailed's lists (empty without them)."""
    names = ("ttfts", "itls", "latencies", "start_times", "input_lens", "output_lens", "errors")
    if not all(isinstance(data.get(name), list) for name in names):
        return []
    columns = [data[name] for name in names]
    if len({len(column) for column in columns}) != 1:
        raise ImportFailed(f"{path}: the per-request lists ({', '.join(names)}) differ in length")
    first_start = min(data["start_times"], default=0.0)
    rows = zip(*columns, strict=True)
    return [_request(i, *values, first_start=first_start, path=path) for i, values in enumerate(rows)]


def _request(index: int, ttft: Any, itl: Any, latency: Any, start: Any, input_len: Any, output_len: Any, error: Any,
             *, first_start: float, path: Path) -> dict[str, Any]:
    ok = not error
    ttft_ms = scaled(number(ttft, path, "ttfts[]"), 1000.0) if ok else None
    e2e_ms = scaled(number(latency, path, "latencies[]"), 1000.0) if ok else None
    gaps = [1000.0 * float(number(g, path, "itls[][]") or 0.0) for g in itl] if ok and isinstance(itl, list) else None
    tokens = int(output_len) if ok and output_len is not None else None
    tpot = ((e2e_ms - ttft_ms) / (tokens - 1) if ok and tokens and tokens > 1 and e2e_ms is not None
            and ttft_ms is not None else None)
    sent = float(number(start, path, "start_times[]") or 0.0) - first_start
    return {"point_id": "imported-000", "deployment_id": DEPLOYMENT_ID, "request_index": index, "warmup": False,
            "cooldown": False, "repeat": 0, "ok": ok, "error": str(error) if error else None, "sent_at_s": sent,
            "ttft_ms": ttft_ms, "e2e_ms": e2e_ms, "tpot_ms": tpot, "itl_ms": gaps,
            "requested_input_tokens": int(input_len), "output_tokens": tokens,
            "output_chunks": len(gaps) + 1 if gaps is not None and ttft_ms is not None and not math.isnan(ttft_ms)
            else None}
