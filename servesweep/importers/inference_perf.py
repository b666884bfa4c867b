"""inference-perf's lifecycle reports (inference_perf/reportgen/base.py: `summarize_requests` builds a
ResponsesSummary {benchmark_time_seconds, load_summary, successes, failures}; `generate_reports` writes
`stage_{N}_lifecycle_metrics.json` per load stage and `summary_lifecycle_metrics.json` over all of them, and
`config.yaml` beside them).

FILE is one report, or the results folder: every `stage_*_lifecycle_metrics.json` in it (the summary when there
are no stage files). Each report is one point; the model name comes from `config.yaml` (server.model_name)
when it sits beside the reports. Against the lake's definitions:

- successes.latency.* are in seconds (`summarize`: mean, min, max, median, p90, p95, p99 ... from the config's
  percentiles); converted to ms. time_to_first_token = TTFT; time_per_output_token = (last - first token) /
  (output - 1) = the lake's TPOT (inference-perf counts output tokens on the client unless
  use_server_output_tokens); inter_token_latency = every gap between token chunks pooled = the lake's ITL;
  request_latency = E2E. normalized_time_per_output_token (e2e / output) has no lake column.
- Throughput: successes.throughput (tokens of successful requests / benchmark_time_seconds, the last end -
  the first start of the stage's requests: the lake's duration). Counts: load_summary.count requests sent,
  failures.count failed.
- Load: load_summary.concurrency (a concurrent stage) is a closed loop of that many; requested_rate an open
  loop at that rate (config.yaml's load.type: poisson arrivals, or constant pacing, which has no lake arrival
  name), its batch the cap on requests in flight, load.num_workers x load.worker_max_concurrency from
  config.yaml (without it the report has no batch size: refused). schedule_delay (seconds) is the lake's
  schedule lag; achieved_rate carries over.
- input_tokens / output_tokens: the largest prompt and (server-counted) output of the stage's successes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from servesweep.importers.base import (
    STATS_KEYS,
    Imported,
    ImportFailed,
    as_dict,
    need,
    number,
    point_row,
    read_json,
    scaled,
    status_of,
)

TOOL = "inference-perf"
_WHAT = "an inference-perf lifecycle report (*_lifecycle_metrics.json)"
_STAGE = re.compile(r"^stage_(\d+)_lifecycle_metrics\.json$")
_SUMMARY = "summary_lifecycle_metrics.json"
_LATENCIES = {"ttft": "time_to_first_token", "tpot": "time_per_output_token", "itl": "inter_token_latency",
              "e2e": "request_latency"}
_THEIR_STAT = {"p50": "median", "p90": "p90", "p95": "p95", "p99": "p99", "mean": "mean"}


def read(path: Path) -> dict[str, Any]:
    """The reports (name -> JSON) of a report file or a results folder, and config.yaml when beside them."""
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        stages = sorted((p for p in path.iterdir() if _STAGE.match(p.name)),
                        key=lambda p: int(_STAGE.match(p.name).group(1)))  # type: ignore[union-attr]
        files = stages or ([path / _SUMMARY] if (path / _SUMMARY).is_file() else [])
        if not files:
            raise ImportFailed(f"{path}: no stage_*_lifecycle_metrics.json or {_SUMMARY} in this folder")
    else:
        files = [path]
    config = None
    if (folder / "config.yaml").is_file():
        try:
            config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise ImportFailed(f"{folder / 'config.yaml'}: not readable YAML: {str(error).splitlines()[0]}") from error
    return {"reports": {file.name: read_json(file) for file in files}, "config": config}


def parse(data: Any, path: Path) -> Imported:
    config = as_dict(data.get("config"))
    server = as_dict(config.get("server"))
    model = server.get("model_name")
    load = as_dict(config.get("load"))
    points = [_point(report, name, i, model, load, path) for i, (name, report) in enumerate(data["reports"].items())]
    notes = [f"inference-perf reports: {', '.join(data['reports'])}",
             "model name from config.yaml" if model else "no config.yaml beside the reports: model unknown"]
    return Imported(TOOL, points, [], notes, model_name=model)


def _point(report: Any, name: str, index: int, model: str | None, load_config: dict[str, Any],
           path: Path) -> dict[str, Any]:
    where = path / name if path.is_dir() else path
    load = need(report, "load_summary", where, _WHAT)
    successes = need(report, "successes", where, _WHAT)
    failures = need(report, "failures", where, _WHAT)
    duration = number(need(report, "benchmark_time_seconds", where, _WHAT), where, "benchmark_time_seconds")
    sent = int(number(need(load, "count", where, _WHAT), where, "load_summary.count") or 0)
    failed = int(number(failures.get("count", 0), where, "failures.count") or 0)
    throughput = successes.get("throughput") or {}
    latency = successes.get("latency") or {}
    return point_row(
        TOOL, f"imported-{index:03d}", status=status_of(sent - failed, failed),
        failure_reason="every request failed" if sent == failed else None, run_name=Path(name).stem,
        model_name=model, num_requests=sent, num_errors=failed, duration_s=duration,
        achieved_rate=number(load.get("achieved_rate"), where, "achieved_rate"),
        request_throughput=number(throughput.get("requests_per_sec"), where, "requests_per_sec"),
        input_token_throughput=number(throughput.get("input_tokens_per_sec"), where, "input_tokens_per_sec"),
        output_token_throughput=number(throughput.get("output_tokens_per_sec"), where, "output_tokens_per_sec"),
        total_token_throughput=number(throughput.get("total_tokens_per_sec"), where, "total_tokens_per_sec"),
        input_tokens=_largest(successes.get("prompt_tokens")), output_tokens=_largest(successes.get("output_tokens")),
        schedule_lag_p50_ms=_seconds_stat(load.get("schedule_delay"), "median", where),
        schedule_lag_p99_ms=_seconds_stat(load.get("schedule_delay"), "p99", where), repeats=1,
        **_load(load, load_config, where), **_latencies(latency, where))


def _largest(usage: Any) -> int | None:
    return round(usage["max"]) if isinstance(usage, dict) and usage.get("max") is not None else None


def _seconds_stat(summary: Any, key: str, where: Path) -> float | None:
    return scaled(number(summary.get(key), where, key), 1000.0) if isinstance(summary, dict) else None


def _latencies(latency: dict[str, Any], where: Path) -> dict[str, float | None]:
    return {f"{metric}_{stat}_ms": _seconds_stat(latency.get(theirs), _THEIR_STAT[stat], where)
            for metric, theirs in _LATENCIES.items() for stat in STATS_KEYS}


def _load(load: dict[str, Any], config: dict[str, Any], where: Path) -> dict[str, Any]:
    concurrency, rate = load.get("concurrency"), load.get("requested_rate")
    if concurrency:
        return {"load_kind": "closed", "sweep_mode": "client_concurrency", "batch_size": int(concurrency),
                "concurrency": int(concurrency)}
    if rate is None:
        raise ImportFailed(f"{where}: the summary over all stages has no load of its own: import the results "
                           "folder or a stage_N file")
    workers, per_worker = config.get("num_workers"), config.get("worker_max_concurrency")
    if not (workers and per_worker):
        raise ImportFailed(f"{where}: a rate stage ({rate} req/s) and no config.yaml beside it with load.num_workers "
                           "and load.worker_max_concurrency: no batch size to file it under")
    return {"load_kind": "open", "sweep_mode": "client_concurrency", "batch_size": int(workers) * int(per_worker),
            "request_rate": number(rate, where, "requested_rate"),
            "arrival": "poisson" if config.get("type") == "poisson" else None}
