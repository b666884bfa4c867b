"""guidellm's benchmark report JSON (`--output kind=json`): a GenerativeBenchmarksReport
(src/guidellm/benchmark/schemas/report.py: metadata, config, benchmarks[]), each benchmark a GenerativeBenchmark
(schemas/benchmark.py: config.strategy, config.backend, scheduler_metrics, metrics, requests by status), each
metric a StatusDistributionSummary (src/guidellm/schemas/statistics.py: successful/incomplete/errored/total,
each with mean, min, max, count, total_sum and percentiles p50, p90, p95, p99...).

Every benchmark of the report is one point. Against the lake's definitions:

- guidellm's `time_to_first_token_ms` is the lake's TTFT. Its `inter_token_latency_ms` per request is
  (last token - first token) / (output - 1): the lake's **TPOT**; its summary weights each request by its
  output tokens - 1, so the lake's per-request statistics are computed from the report's request list when it
  holds every successful request, and taken from the weighted summary (noted) otherwise. guidellm's
  `time_per_output_token_ms` includes the first token (last token - start) / output: no lake column.
- `request_latency` (seconds) is end of response - start: the lake's E2E (the response ends with its last
  chunk) in ms. The lake's ITL (every gap between chunks) is not in the report: null.
- Tokens: the server's usage counts. Throughput: successful requests' tokens / the measured window
  (measure_end_time - measure_start_time, warm-up and cool-down excluded). Errored requests count as errors;
  incomplete ones (cancelled when the benchmark ended) are left out, as the lake leaves out cool-down.
- Load: synchronous is a closed loop of 1, concurrent one of `streams`, throughput one of its max_concurrency
  (else the peak measured concurrency); constant and poisson are open loops at `rate` (poisson arrivals; the
  constant pacing has no lake arrival name, so arrival is null), batch = max_concurrency, else the peak.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from servesweep.importers.base import (
    STATS_KEYS,
    Imported,
    ImportFailed,
    as_dict,
    as_list,
    need,
    number,
    point_row,
    scaled,
    stats_ms,
    status_of,
    unix_time,
)

TOOL = "guidellm"
_WHAT = "a guidellm benchmarks report (--output kind=json)"


def parse(data: Any, path: Path) -> Imported:
    benchmarks = need(data, "benchmarks", path, _WHAT)
    if not isinstance(benchmarks, list):
        raise ImportFailed(f"{path}: not {_WHAT}: 'benchmarks' is not a list")
    notes: list[str] = []
    version = as_dict(data.get("metadata")).get("guidellm_version")
    notes.append(f"guidellm {version or '(version not recorded)'}")
    points = [_point(b, i, path, notes) for i, b in enumerate(benchmarks)]
    model = next((p["model_name"] for p in points if p["model_name"]), None)
    return Imported(TOOL, points, [], notes, model_name=model,
                    started_at=min((p["started_at"] for p in points if p["started_at"]), default=None))


def _summary(metrics: Any, name: str, path: Path) -> dict[str, Any]:
    """The `successful` DistributionSummary of a metric."""
    summary = need(need(metrics, name, path, _WHAT), "successful", path, _WHAT)
    if not isinstance(summary, dict):
        raise ImportFailed(f"{path}: not {_WHAT}: {name}.successful is not an object")
    return summary


def _stats(summary: dict[str, Any], metric: str, factor: float, path: Path) -> dict[str, float | None]:
    """{metric}_{stat}_ms from a DistributionSummary (scaled to ms); a summary of no values is all null."""
    if not summary.get("count"):
        return {f"{metric}_{stat}_ms": None for stat in STATS_KEYS}
    percentiles = summary.get("percentiles") or {}
    result = {f"{metric}_{stat}_ms": scaled(number(percentiles.get(stat), path, f"{metric} {stat}"), factor)
              for stat in STATS_KEYS if stat != "mean"}
    result[f"{metric}_mean_ms"] = scaled(number(summary.get("mean"), path, f"{metric} mean"), factor)
    return result


def _point(benchmark: Any, index: int, path: Path, notes: list[str]) -> dict[str, Any]:
    config = need(benchmark, "config", path, _WHAT)
    metrics = need(benchmark, "metrics", path, _WHAT)
    window = need(benchmark, "scheduler_metrics", path, _WHAT)
    totals = need(metrics, "request_totals", path, _WHAT)
    succeeded, errored = int(totals.get("successful") or 0), int(totals.get("errored") or 0)
    start = number(window.get("measure_start_time"), path, "measure_start_time")
    end = number(window.get("measure_end_time"), path, "measure_end_time")
    duration = end - start if start is not None and end is not None else None
    prompt, output = _summary(metrics, "prompt_token_count", path), _summary(metrics, "output_token_count", path)
    input_sum, output_sum = float(prompt.get("total_sum") or 0.0), float(output.get("total_sum") or 0.0)
    backend = as_dict(config.get("backend"))
    if incomplete := int(totals.get("incomplete") or 0):
        notes.append(f"benchmark {index}: {incomplete} incomplete requests left out")
    return point_row(
        TOOL, f"imported-{index:03d}", status=status_of(succeeded, errored),
        failure_reason="every request failed" if succeeded == 0 else None, run_name=path.stem,
        started_at=unix_time(start), model_name=backend.get("model"),
        api={"/v1/completions": "completions", "/v1/chat/completions": "chat"}.get(str(backend.get("request_format"))),
        num_requests=succeeded + errored, num_errors=errored, duration_s=duration,
        request_throughput=succeeded / duration if duration else None,
        input_token_throughput=input_sum / duration if duration else None,
        output_token_throughput=output_sum / duration if duration else None,
        total_token_throughput=(input_sum + output_sum) / duration if duration else None,
        input_tokens=_int(prompt.get("max")), output_tokens=_int(output.get("max")), repeats=1,
        **_load(config.get("strategy"), metrics, path),
        **_stats(_summary(metrics, "time_to_first_token_ms", path), "ttft", 1.0, path),
        **_stats(_summary(metrics, "request_latency", path), "e2e", 1000.0, path),
        **_tpot(benchmark, metrics, succeeded, index, path, notes),
        **{f"itl_{stat}_ms": None for stat in STATS_KEYS})


def _int(value: Any) -> int | None:
    return None if value is None else round(float(value))


def _tpot(benchmark: dict[str, Any], metrics: Any, succeeded: int, index: int, path: Path,
          notes: list[str]) -> dict[str, float | None]:
    """The lake's TPOT (guidellm's per-request ITL): per request when the report kept every successful one."""
    kept = as_list(as_dict(benchmark.get("requests")).get("successful"))
    if succeeded and len(kept) == succeeded:
        values = [number(r.get("inter_token_latency_ms"), path, "inter_token_latency_ms") for r in kept]
        return stats_ms([v for v in values if v is not None], "tpot")
    notes.append(f"benchmark {index}: TPOT from guidellm's output-token-weighted ITL summary (the report sampled "
                 f"{len(kept)} of {succeeded} requests)")
    return _stats(_summary(metrics, "inter_token_latency_ms", path), "tpot", 1.0, path)


def _load(strategy: Any, metrics: Any, path: Path) -> dict[str, Any]:
    if not isinstance(strategy, dict) or "type_" not in strategy:
        raise ImportFailed(f"{path}: not {_WHAT}: a benchmark's config.strategy has no type_")
    kind, cap = strategy["type_"], strategy.get("max_concurrency")
    peak = _int(_summary(metrics, "request_concurrency", path).get("max"))
    if kind == "synchronous":
        return {"load_kind": "closed", "sweep_mode": "client_concurrency", "batch_size": 1, "concurrency": 1}
    if kind in ("concurrent", "throughput"):
        batch = int(strategy.get("streams") or cap or peak or 0)
        return {"load_kind": "closed", "sweep_mode": "client_concurrency", "batch_size": batch,
                "concurrency": batch}
    if kind in ("constant", "poisson"):
        return {"load_kind": "open", "sweep_mode": "client_concurrency", "batch_size": int(cap or peak or 0),
                "concurrency": cap, "request_rate": number(strategy.get("rate"), path, "strategy.rate"),
                "arrival": "poisson" if kind == "poisson" else None}
    raise ImportFailed(f"{path}: strategy {kind!r} is not imported (synchronous, concurrent, throughput, constant "
                       "and poisson are)")
