"""servesweep's load generator beside vLLM's own client (`vllm bench serve`) against one vLLM server.

The server is started by servesweep's deploy-step code (`components.deploy_server.deploy_server`, the
same command line as the sweep), and stays up while both clients take turns at the same points: same
input/output lengths, concurrency, request count, `ignore_eos` (both send it), no warm-up, greedy
sampling where vLLM's client lets us say so. The order alternates per point so neither client always
gets the warmer server. Around each client's turn the server's own histograms (TTFT, TPOT, E2E:
sum/count deltas from /metrics) are read, so each client can be checked against what the server saw.

    device:  python3 benchmarks/gpu/compare_clients.py run SPEC OUT.json 128:128:1:16 2048:128:16:64 ...
             (POINT = input:output:concurrency:requests)
    here:    python3 benchmarks/gpu/compare_clients.py table OUT.json > benchmarks/results/h200/clients.md
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

# Server histograms (seconds): name stems as vLLM exports them; the first one present is used.
_SERVER_HISTOGRAMS = {
    "ttft": ("vllm:time_to_first_token_seconds",),
    "tpot": ("vllm:request_time_per_output_token_seconds", "vllm:time_per_output_token_seconds"),
    "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "e2e": ("vllm:e2e_request_latency_seconds",),
}


def parse_point(text: str) -> tuple[int, int, int, int]:
    isl, osl, conc, requests = (int(part) for part in text.split(":"))
    return isl, osl, conc, requests


def server_sums(metrics_url: str) -> dict[str, float]:
    """`{name}_sum` and `{name}_count` of the server's histograms, summed over label sets."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")):
                totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    return totals


def server_means(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    """Mean of each histogram over the requests between two scrapes, in ms."""
    means: dict[str, float | None] = {}
    for metric, names in _SERVER_HISTOGRAMS.items():
        means[f"mean_{metric}_ms"] = None
        for name in names:
            count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
            if count > 0:
                total = after[f"{name}_sum"] - before.get(f"{name}_sum", 0.0)
                means[f"mean_{metric}_ms"] = total / count * 1e3
                break
    return means


def run_servesweep(endpoint, model_dir: str, point: tuple[int, int, int, int], seed: int) -> dict[str, Any]:
    from components.sweep import request_rows
    from servesweep.loadgen.datagen import PromptFactory
    from servesweep.loadgen.runner import LoadPlan, run_load
    from servesweep.metrics.summary import summarise_requests
    from servesweep.sweep_plan import SweepPoint

    isl, osl, conc, requests = point
    plan = LoadPlan(base_url=endpoint.base_url, model=endpoint.served_name, input_tokens=isl, output_tokens=osl,
                    concurrency=conc, num_requests=requests, timeout_s=600, seed=seed, dialect="vllm")
    result = run_load(plan, PromptFactory(model_dir, seed=seed).make)
    sweep_point = SweepPoint(point_id="compare", deployment_id="compare", sweep_mode="client_concurrency",
                             batch_size=conc, concurrency=conc, input_tokens=isl, output_tokens=osl)
    rows = request_rows("compare", sweep_point, result.records, result.started_unix)
    summary = summarise_requests(rows)
    ok = [r for r in rows if r["ok"]]
    gaps = np.concatenate([np.asarray(r["itl_ms"]) for r in ok]) if ok else np.array([])
    return {
        "completed": len(ok), "num_prompts": len(rows), "output_throughput": summary.get("output_token_throughput"),
        "mean_ttft_ms": summary["ttft_mean_ms"], "median_ttft_ms": summary["ttft_p50_ms"],
        "p99_ttft_ms": summary["ttft_p99_ms"], "mean_tpot_ms": summary["tpot_mean_ms"],
        "median_tpot_ms": summary["tpot_p50_ms"], "p99_tpot_ms": summary["tpot_p99_ms"],
        "mean_itl_ms": float(gaps.mean()) if gaps.size else None,
        "p99_itl_ms": float(np.percentile(gaps, 99)) if gaps.size else None,
        "client_loop_lag_p99_ms": result.loop_lag_p99_ms, "client_timing": result.timing,
    }


def run_vllm_bench(endpoint, model_dir: str, point: tuple[int, int, int, int], seed: int, result_dir: Path):
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    isl, osl, conc, requests = point
    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    name = f"vllm-in{isl}-out{osl}-c{conc}.json"
    argv = ["--backend", "vllm", "--base-url", endpoint.base_url, "--model", endpoint.served_name,
            "--tokenizer", model_dir, "--dataset-name", "random", "--random-input-len", str(isl),
            "--random-output-len", str(osl), "--ignore-eos", "--num-prompts", str(requests),
            "--max-concurrency", str(conc), "--seed", str(seed), "--percentile-metrics", "ttft,tpot,itl,e2el",
            "--metric-percentiles", "50,99", "--disable-tqdm", "--save-result", "--result-dir", str(result_dir),
            "--result-filename", name]
    options = parser._option_string_actions  # only flags this vLLM version knows
    for flag, value in (("--num-warmups", "0"), ("--temperature", "0"), ("--random-range-ratio", "0")):
        if flag in options:
            argv += [flag, value]
    main(parser.parse_args(argv))
    return json.loads((result_dir / name).read_text())


_KEYS = ("completed", "num_prompts", "output_throughput", "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms",
         "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms", "mean_itl_ms", "p99_itl_ms")


def run(spec_path: str, out_path: str, points: list[str]) -> None:
    from components.deploy_server import deploy_server, teardown_server
    from components.load_model import prepare_model
    from servesweep.spec import load_spec

    spec = load_spec(spec_path).with_run_id()
    work = Path("/root/compare-clients")
    model = prepare_model(spec, work / "model")
    parsed = [parse_point(p) for p in points]
    cap = max(spec.sweep.batch_sizes)
    endpoint = deploy_server(spec, model.path, "compare", cap, "compare-clients", work / "logs")
    if endpoint.error:
        raise SystemExit(f"server did not start: {endpoint.error}")
    results: dict[str, Any] = {"spec": spec.name, "server_start_s": endpoint.start_seconds, "points": []}
    try:
        for index, point in enumerate(parsed):
            order = ("servesweep", "vllm") if index % 2 == 0 else ("vllm", "servesweep")
            entry: dict[str, Any] = {"input_tokens": point[0], "output_tokens": point[1], "concurrency": point[2],
                                     "requests": point[3], "order": list(order)}
            for client in order:
                before = server_sums(endpoint.metrics_url)
                started = time.perf_counter()
                if client == "servesweep":
                    measured = run_servesweep(endpoint, model.path, point, seed=1000 + index)
                else:
                    raw = run_vllm_bench(endpoint, model.path, point, 2000 + index, work / "vllm-results")
                    measured = {key: raw.get(key) for key in _KEYS}
                measured["wall_s"] = time.perf_counter() - started
                measured["server"] = server_means(before, server_sums(endpoint.metrics_url))
                entry[client] = measured
                print(f"{client:10s} in={point[0]} out={point[1]} c={point[2]} n={point[3]}: "
                      f"{measured['output_throughput']:.0f} tok/s, TTFT mean {measured['mean_ttft_ms']:.1f} ms, "
                      f"TPOT mean {measured['mean_tpot_ms']:.2f} ms", flush=True)
            results["points"].append(entry)
            Path(out_path).write_text(json.dumps(results, indent=2))
    finally:
        teardown_server(endpoint, "compare-clients")


# --- the side-by-side table (dev machine) ----------------------------------------------------------------

_TABLE_METRICS = (("output_throughput", "out tok/s"), ("mean_ttft_ms", "TTFT mean"), ("median_ttft_ms", "TTFT p50"),
                  ("p99_ttft_ms", "TTFT p99"), ("mean_tpot_ms", "TPOT mean"), ("median_tpot_ms", "TPOT p50"),
                  ("p99_tpot_ms", "TPOT p99"))


def difference(ours: float | None, theirs: float | None) -> float | None:
    """servesweep relative to vLLM's client, in percent."""
    if ours is None or theirs in (None, 0):
        return None
    return (ours - theirs) / theirs * 100


def table(results: dict[str, Any]) -> str:
    lines = ["| in/out | c | n | metric | servesweep | vllm bench | diff | server (servesweep's turn / vllm's) |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |"]
    for p in results["points"]:
        ours, theirs = p["servesweep"], p["vllm"]
        for key, label in _TABLE_METRICS:
            diff = difference(ours.get(key), theirs.get(key))
            server = ""
            if key.startswith("mean_"):
                stem = key
                a, b = ours["server"].get(stem), theirs["server"].get(stem)
                server = f"{_fmt(a)} / {_fmt(b)}"
            lines.append(f"| {p['input_tokens']}/{p['output_tokens']} | {p['concurrency']} | {p['requests']} | "
                         f"{label} | {_fmt(ours.get(key))} | {_fmt(theirs.get(key))} | "
                         f"{'' if diff is None else f'{diff:+.1f} %'} | {server} |")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) == 3 and sys.argv[1] == "table":
        print(table(json.loads(Path(sys.argv[2]).read_text())))
    else:
        raise SystemExit(__doc__)
