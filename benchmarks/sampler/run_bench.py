"""Sampler benchmark: how much scraping the server's /metrics delays the load generator's event loop.

A real vLLM /metrics page (`vllm_metrics.txt`, 52.6 KB, captured from vLLM 0.32's CPU build after a
few requests) is served by a process of its own. In this process an event loop (uvloop when installed,
as the load generator's) runs the load generator's own loop-lag probe (servesweep.loadgen.engine.
LagMonitor: how late a 10 ms timer fires) for `--seconds` per condition, while the page is sampled every
`--interval` seconds by:

- `none`: nothing (the loop's own lag on this machine),
- `thread-full`: a thread of this process parsing the whole page (the sampler before issue 12),
- `thread-filtered`: a thread of this process parsing the filtered page (servesweep.metrics.prometheus),
- `process`: servesweep's SamplerProcess, the samplers in a child process (what the sweep uses now).

Conditions are interleaved over `--rounds` rounds, so machine noise (a shared machine) hits each alike;
each cell reports the median over rounds of the loop lag's p50, p99 and max, the p99 added over `none`
as the median of the rounds' paired differences, and the CPU time the load generator's own process
spent per scrape (its process_time over `none`'s, per scrape): the GIL time sampling takes from the
loop, free of the noise other processes add to lag. The parse cost per scrape (full vs filtered page)
is timed apart. Target: sampling at the default interval adds < 0.1 ms to the loop's p99 lag.

Run: `python benchmarks/sampler/run_bench.py` (or `make bench-sampler`); writes results.json and
RESULTS.md next to this file.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import multiprocessing
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from servesweep.loadgen.engine import LagMonitor
from servesweep.metrics.prometheus import MetricsSampler, parse_samples
from servesweep.metrics.remote import SamplerConfig, SamplerProcess

HERE = Path(__file__).resolve().parent
PAGE = HERE / "vllm_metrics.txt"
CONDITIONS = ("none", "thread-full", "thread-filtered", "process")
TARGET_MS = 0.1


class FullParseSampler(MetricsSampler):
    """The sampler as it was: every family of the page through prometheus_client, then filtered."""

    def parse(self, text: str) -> list[tuple[str, dict[str, str], float]]:
        return [(s.name, dict(s.labels), float(s.value)) for family in text_string_to_metric_families(text)
                if family.name.startswith(self.prefixes)
                for s in family.samples if not s.name.endswith(("_created", "_bucket"))]


def _serve_page(port_pipe) -> None:
    body = PAGE.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_pipe.send(server.server_address[1])
    server.serve_forever()


async def _probe(seconds: float) -> list[float]:
    monitor = LagMonitor()
    monitor.start()
    await asyncio.sleep(seconds)
    monitor.stop()
    return [lag * 1000.0 for lag in monitor.lags]


def _run_loop(seconds: float) -> list[float]:
    try:
        import uvloop

        return uvloop.run(_probe(seconds))
    except ImportError:
        return asyncio.run(_probe(seconds))


def measure(condition: str, url: str, seconds: float, interval: float) -> tuple[list[float], float]:
    """Loop lags (ms) over `seconds` while `condition` samples `url` every `interval`, and the CPU seconds
    this process used meanwhile."""
    started = time.process_time()
    if condition == "none":
        lags = _run_loop(seconds)
        return lags, time.process_time() - started
    if condition == "process":
        sampler = SamplerProcess([SamplerConfig("prometheus", "bench", interval, url=url)])
    else:
        kind = FullParseSampler if condition == "thread-full" else MetricsSampler
        sampler = kind(url, "bench", interval)
    with sampler:
        sampler.begin("bench")
        started = time.process_time()  # the child's start-up and the begin scrape are not the loop's time
        lags = _run_loop(seconds)
        cpu = time.process_time() - started
        sampler.end()
    if not sampler.rows:
        raise RuntimeError(f"{condition}: no sample was taken")
    return lags, cpu


def parse_cost_ms(repeat: int = 50) -> dict[str, float]:
    """Median CPU time of one parse of the page, full and filtered (ms)."""
    text = PAGE.read_text()

    def full() -> None:
        list(text_string_to_metric_families(text))

    def filtered() -> None:
        parse_samples(text)

    return {name: _median_ms(fn, repeat) for name, fn in (("full", full), ("filtered", filtered))}


def _median_ms(fn: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.process_time()
        fn()
        times.append((time.process_time() - started) * 1000.0)
    return float(np.median(times))


def run(seconds: float, interval: float, rounds: int) -> dict:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe()
    server = context.Process(target=_serve_page, args=(send,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{receive.recv()}/metrics"
    cells: dict[str, list[dict[str, float]]] = {c: [] for c in CONDITIONS}
    try:
        for round_index in range(rounds):
            order = CONDITIONS if round_index % 2 == 0 else tuple(reversed(CONDITIONS))
            for condition in order:
                measured, cpu = measure(condition, url, seconds, interval)
                lags = np.asarray(measured)
                cells[condition].append({"p50": float(np.percentile(lags, 50)),
                                         "p99": float(np.percentile(lags, 99)), "max": float(lags.max()),
                                         "ticks": int(lags.size), "cpu_s": cpu})
                print(f"round {round_index + 1}/{rounds} {condition}: p99 {cells[condition][-1]['p99']:.3f} ms",
                      flush=True)
    finally:
        server.kill()
    summary = {c: {stat: float(np.median([r[stat] for r in rows])) for stat in ("p50", "p99", "max", "ticks")}
               for c, rows in cells.items()}
    scrapes = seconds / interval
    for condition in CONDITIONS:
        pairs = zip(cells[condition], cells["none"], strict=True)
        rounds_ = [(mine["p99"] - base["p99"], (mine["cpu_s"] - base["cpu_s"]) * 1000.0 / scrapes)
                   for mine, base in pairs]
        summary[condition]["p99_added"] = float(np.median([added for added, _ in rounds_]))
        summary[condition]["cpu_ms_per_scrape"] = float(np.median([cpu for _, cpu in rounds_]))
    return {"seconds": seconds, "interval_s": interval, "rounds": rounds, "page_bytes": PAGE.stat().st_size,
            "machine": _machine(), "parse_ms": parse_cost_ms(), "summary": summary, "rounds_raw": cells}


def _machine() -> dict[str, object]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_average_1m": os.getloadavg()[0]}


def render(results: dict) -> str:
    summary, parse = results["summary"], results["parse_ms"]
    machine = results["machine"]
    lines = [
        "# Sampler benchmark: what scraping /metrics costs the load generator's event loop",
        "",
        f"`python benchmarks/sampler/run_bench.py` (`make bench-sampler`). Page: vLLM's /metrics, "
        f"{results['page_bytes']:,} bytes; scraped every {results['interval_s']:g} s (the default "
        f"`sweep.scrape_interval_s`); {results['seconds']:g} s per cell, {results['rounds']} interleaved rounds, "
        f"medians over rounds. Machine: {machine['cpu']}, {machine['cores']} cores (shared; 1-min load "
        f"{machine['load_average_1m']:.2f} at the end), Python {machine['python']}.",
        "",
        "Loop lag = how late the load generator's 10 ms probe timer fires (servesweep.loadgen.engine.LagMonitor), "
        "the number behind `client_loop_lag_p99_ms` and `client_limited` (over 5 ms: flagged).",
        "",
        "| sampler | loop lag p50 ms | loop lag p99 ms | p99 added ms (paired) | loop lag max ms | "
        "load generator CPU per scrape ms |",
        "|---|---|---|---|---|---|",
    ]
    for condition in CONDITIONS:
        cell = summary[condition]
        lines.append(f"| {condition} | {cell['p50']:.3f} | {cell['p99']:.3f} | {cell['p99_added']:+.3f} | "
                     f"{cell['max']:.3f} | {cell['cpu_ms_per_scrape']:+.2f} |")
    added, cpu = summary["process"]["p99_added"], summary["process"]["cpu_ms_per_scrape"]
    verdict = "met" if added < TARGET_MS else "NOT met"
    lines += [
        "",
        f"Parse of one page, CPU time: full {parse['full']:.2f} ms, filtered {parse['filtered']:.2f} ms "
        f"(servesweep.metrics.prometheus.kept_lines drops other families, buckets and `_created` before "
        f"prometheus_client parses; the same samples, tested).",
        "",
        f"**Target: sampling adds < {TARGET_MS} ms to the loop's p99 lag — {verdict}** "
        f"(the sampler process: {added:+.3f} ms, the median of the rounds' paired differences; the load "
        f"generator's process spends {cpu:+.2f} ms of CPU per scrape on it, zero within the noise of an idle "
        f"loop's own CPU time: nothing crosses the pipe while a point runs). The in-process thread with the "
        f"full parse (as before) holds the GIL for the whole parse, once per scrape: with a 10 ms probe, 2 % of "
        f"the probes fall in a scrape, so its p99 carries the parse time, and a real run's client_limited flag "
        f"went up with it.",
        "",
        "On a shared machine the p99 of an idle loop moves by a millisecond between rounds (other processes "
        "take the cores); the paired difference and the CPU column are what separate the sampler from that "
        "noise. `results.json` has every round.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="loop-lag probe time per cell")
    parser.add_argument("--interval", type=float, default=0.5, help="scrape interval, s")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    results = run(args.seconds, args.interval, args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "RESULTS.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
