"""Load-generator benchmark: servesweep vs guidellm vs inference-perf against the zero server.

Every client runs closed loop at the same concurrency levels with the same token counts, pinned to
its own core (`taskset`), against a fresh zero server pinned to the other core. Per point:

- requested rate = concurrency / ideal request time (ttft + (out - 1) * itl); achieved rate =
  requests / the server-side window (first request received -> last chunk sent). A point is
  *sustained* when achieved >= 95 % of requested, every request succeeded and the client was not
  saturated (below 95 % of its core and, where it reports them, its event loop's lag and its reads'
  lag behind the kernel's receive stamps under one inter-token interval at p99, and its loop's longest
  stall under one interval too: one stall, missed by any p99, merges the chunks of every stream it
  spans). The rate alone cannot see a saturated client in a closed loop: a stream read 40 ms late
  still ends within 3 % of its 1.3 s. A shortfall while the server itself ran > 5 ms (p99) behind
  its own schedule is marked server-bound: it says nothing about the client.
- capacity: the ladder of levels runs until two in a row are not sustained; then the gap between the
  highest sustained level and the next one is bisected (`refine_steps` times), and the client runs
  once more at 80 % of the capacity found, the point the accuracy target is judged at.
- client (server) CPU = CPU seconds of the client's (server's) whole process tree inside that window
  (sampled from /proc every 100 ms); tokens per core-second = streamed tokens / client CPU seconds.
- errors against the server's log, request by request (matched by the completion id): TTFT error =
  client TTFT - (first chunk sent - request received), where the server's "received" is the kernel's
  receive stamp of the request, in steady state (the opening burst, sent before any request
  finished, is reported apart: a client that connects per request queues in the server's accept
  backlog, which no receive stamp can see); ITL error = client mean ITL - server mean
  ITL per request, and per chunk gap where the client records chunk times.

Run: `python benchmarks/loadgen/run_bench.py` (after `bash benchmarks/loadgen/setup_peers.sh`);
writes benchmarks/loadgen/results.json and RESULTS.md. `--report-only` rebuilds RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.loadgen.zero_server import ServerConfig, ServerLog, start_subprocess  # noqa: E402

VENVS = HERE / ".venvs"
SUSTAIN_FRACTION = 0.95
SERVER_LATE_LIMIT_MS = 5.0
CLIENTS = ("servesweep", "guidellm", "inference-perf")


CAPACITY_FRACTION = 0.8


class BenchConfig(BaseModel):
    levels: list[int] = Field(default_factory=lambda: [4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536])
    rounds: int = Field(3, ge=1, description="Requests per point = rounds x concurrency.")
    input_tokens: int = 128
    output_tokens: int = 128
    ttft_ms: float = 20.0
    itl_ms: float = 10.0
    server_cpu: int = 0
    client_cpu: int = 1
    run_timeout_s: float = 240.0
    stop_after_failures: int = Field(2, description="Skip a client's higher levels after this many unsustained.")
    refine_steps: int = Field(2, ge=0, description="Bisections between the last sustained and next level.")
    saturated_cores: float = Field(0.95, description="A client using this much of its core is saturated.")
    clients: list[str] = Field(default_factory=lambda: list(CLIENTS))

    @property
    def ideal_request_s(self) -> float:
        return (self.ttft_ms + (self.output_tokens - 1) * self.itl_ms) / 1000.0


class PointResult(BaseModel):
    client: str
    concurrency: int
    requests_expected: int
    requests_matched: int
    errors: int
    requested_rate: float
    achieved_rate: float | None = None
    tokens_per_s: float | None = None
    client_cpu_s: float | None = None
    client_cores: float | None = None
    tokens_per_core_s: float | None = None
    ttft_err_p50_ms: float | None = None
    ttft_err_p99_ms: float | None = None
    burst_ttft_err_p50_ms: float | None = None  # the opening burst, before the first request finished
    request_way_in_p99_ms: float | None = None  # shared clock only: server receive - client send
    first_token_way_out_p99_ms: float | None = None  # shared clock only: client arrival - server send
    burst_ttft_err_p99_ms: float | None = None
    itl_err_p50_ms: float | None = None
    itl_err_p99_ms: float | None = None
    gap_err_p50_ms: float | None = None
    gap_err_p99_ms: float | None = None
    server_late_p99_ms: float | None = None
    client_loop_lag_p99_ms: float | None = None
    client_loop_lag_max_ms: float | None = None  # servesweep: the loop's longest stall
    client_read_lag_p99_ms: float | None = None  # servesweep: kernel receive -> read
    client_timing: str | None = None  # servesweep: kernel (receive stamps) or loop
    server_cores: float | None = None
    client_saturated: bool = False
    sustained: bool = False
    role: str = "ladder"  # ladder | refine | 80% of capacity
    note: str = ""


@dataclass
class Measured:
    """One request as a client measured it, keyed like the server's log."""

    key: str
    ttft_ms: float
    itl_mean_ms: float | None
    gaps_ms: np.ndarray | None  # every chunk gap, when the client records them
    # Absolute CLOCK_MONOTONIC seconds, for a client on the server's clock (servesweep): they split the
    # TTFT error into the request's way in (server receive - client send: the server's read lag) and
    # the first token's way out (client arrival - server send: what the client itself adds).
    sent_s: float | None = None
    first_arrival_s: float | None = None


# -- client CPU ------------------------------------------------------------------------------------

class TreeCPU:
    """Samples the CPU seconds of a process and its descendants (reaped children included)."""

    def __init__(self, pid: int, period_s: float = 0.1) -> None:
        self.pid, self.period_s = pid, period_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> TreeCPU:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        # Niced, and the full /proc scan only every 10th sample: the driver shares the server's core.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        tree, count = [self.pid], 0
        while not self._stop.is_set():
            if count % 10 == 0:
                tree = self._tree()
            count += 1
            self.samples.append((time.perf_counter(), sum(self._seconds(pid) for pid in tree)))
            self._stop.wait(self.period_s)

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    text = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                children.setdefault(int(text[text.rindex(")") + 2 :].split()[1]), []).append(int(entry))
        tree, stack = [], [self.pid]
        while stack:
            tree.append(stack.pop())
            stack.extend(children.get(tree[-1], ()))
        return tree

    def _seconds(self, pid: int) -> float:
        """utime + stime + cutime + cstime of one process (reaped children count in their parent)."""
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return 0.0
        return sum(int(v) for v in text[text.rindex(")") + 2 :].split()[11:15]) / self._tick

    def between(self, start: float, end: float) -> float | None:
        if len(self.samples) < 2:
            return None
        times, values = zip(*self.samples, strict=True)
        return float(np.interp(end, times, values) - np.interp(start, times, values))


# -- clients ---------------------------------------------------------------------------------------

def servesweep_command(cfg: BenchConfig, url: str, level: int, out: Path, tokenizer: Path) -> list[str]:
    return [sys.executable, str(HERE / "servesweep_client.py"), "--base-url", url, "--tokenizer", str(tokenizer),
            "--concurrency", str(level), "--requests", str(level * cfg.rounds), "--input-tokens",
            str(cfg.input_tokens), "--output-tokens", str(cfg.output_tokens), "--out", str(out / "records.npz")]


def guidellm_command(cfg: BenchConfig, url: str, level: int, out: Path, tokenizer: Path) -> list[str]:
    # Prompts from a file: guidellm's synthetic text cannot be built from the word-level tokenizer.
    return [str(VENVS / "guidellm/bin/guidellm"), "run",
            "--backend", f"kind=openai_http,target={url},request_format=/v1/completions",
            "--profile", f"kind=concurrent,streams={level}",
            "--constraint", f"kind=max_requests,count={level * cfg.rounds}",
            "--data", f"kind=json_file,path={out.parents[1] / 'prompts.jsonl'}",
            "--tokenizer", f"kind=huggingface_auto,model={tokenizer}",
            "--output", f"kind=json,path={out / 'guidellm.json'}", "--disable-console-interactive"]


def inference_perf_command(cfg: BenchConfig, url: str, level: int, out: Path, tokenizer: Path) -> list[str]:
    fixed = []
    for side, tokens in (("input", cfg.input_tokens), ("output", cfg.output_tokens)):
        for key, value in (("type", "fixed"), ("mean", tokens), ("min", tokens), ("max", tokens)):
            fixed += [f"--data.{side}_distribution.{key}", str(value)]
    stages = json.dumps([{"num_requests": level * cfg.rounds, "concurrency_level": level}])
    fields = "--report.request_lifecycle.per_request_fields."
    return [str(VENVS / "inference-perf/bin/inference-perf"), "--server.type", "vllm", "--server.base_url", url,
            "--server.model_name", "zero", "--server.ignore_eos", "true", "--api.type", "completion",
            "--api.streaming", "true", "--tokenizer.pretrained_model_name_or_path", str(tokenizer),
            "--data.type", "random", *fixed, "--load.type", "concurrent", "--load.stages", stages,
            "--report.request_lifecycle.per_request", "true",
            "--report.request_lifecycle.use_server_output_tokens", "true",
            f"{fields}request", "false", f"{fields}response", "false",
            "--storage.local_storage.path", str(out / "ip")]


@dataclass
class Health:
    """What a client says of its own state (servesweep only; the peers report none)."""

    loop_lag_p99_ms: float | None = None
    loop_lag_max_ms: float | None = None
    read_lag_p99_ms: float | None = None
    timing: str | None = None


def parse_servesweep(out: Path) -> tuple[list[Measured], int, Health]:
    with np.load(out / "records.npz") as data:
        offsets, times = data["offsets"], data["token_times"]
        measured, errors = [], int((~data["ok"]).sum())
        for i, key in enumerate(data["request_id"]):
            if not data["ok"][i]:
                continue
            chunks = times[offsets[i] : offsets[i + 1]]
            gaps = np.diff(chunks) * 1000.0
            measured.append(Measured(str(key), (chunks[0] - data["sent_at"][i]) * 1000.0,
                                     float(gaps.mean()) if gaps.size else None, gaps,
                                     float(data["sent_at"][i]), float(chunks[0])))
        def optional(name: str) -> float | None:
            value = float(data[name]) if name in data else float("nan")
            return None if np.isnan(value) else value

        return measured, errors, Health(float(data["loop_lag_p99_ms"]), optional("loop_lag_max_ms"),
                                        optional("read_lag_p99_ms"), str(data["timing"]) if "timing" in data else None)


def parse_guidellm(out: Path) -> tuple[list[Measured], int, Health]:
    report = json.loads((out / "guidellm.json").read_text())
    requests = report["benchmarks"][0]["requests"]
    measured = []
    for item in requests["successful"]:
        timings = item["info"]["timings"]
        tokens = item["output_metrics"]["text_tokens"] or timings["token_iterations"]
        first, last = timings["first_token_iteration"], timings["last_token_iteration"]
        itl = (last - first) * 1000.0 / (tokens - 1) if tokens and tokens > 1 else None
        measured.append(Measured(_key(item["response_id"]), (first - timings["request_start"]) * 1000.0, itl, None))
    return measured, len(requests["errored"]) + len(requests["incomplete"]), Health()


def parse_inference_perf(out: Path) -> tuple[list[Measured], int, Health]:
    entries = json.loads((out / "ip/per_request_lifecycle_metrics.json").read_text())
    measured, errors = [], 0
    for entry in entries:
        metrics = (entry.get("info") or {}).get("response_metrics") or {}
        chunks = metrics.get("response_chunks") or []
        if entry.get("error") or not chunks:
            errors += 1
            continue
        times = np.asarray(metrics["chunk_times"], dtype=np.float64)
        gaps = np.diff(times) * 1000.0
        measured.append(Measured(_key(json.loads(chunks[0])["id"]), (times[0] - entry["start_time"]) * 1000.0,
                                 float(gaps.mean()) if gaps.size else None, gaps))
    return measured, errors, Health()


def _key(completion_id: str | None) -> str:
    return (completion_id or "").removeprefix("cmpl-")


@dataclass(frozen=True)
class Client:
    name: str
    command: Callable[[BenchConfig, str, int, Path, Path], list[str]]
    parse: Callable[[Path], tuple[list[Measured], int, Health]]


CLIENT_TABLE = {
    "servesweep": Client("servesweep", servesweep_command, parse_servesweep),
    "guidellm": Client("guidellm", guidellm_command, parse_guidellm),
    "inference-perf": Client("inference-perf", inference_perf_command, parse_inference_perf),
}


# -- one point -------------------------------------------------------------------------------------

def run_point(cfg: BenchConfig, client: Client, level: int, out_root: Path, tokenizer: Path) -> PointResult:
    out = out_root / client.name / f"c{level}"
    out.mkdir(parents=True, exist_ok=True)
    expected = level * cfg.rounds
    result = PointResult(client=client.name, concurrency=level, requests_expected=expected, requests_matched=0,
                         errors=expected, requested_rate=level / cfg.ideal_request_s)
    server = start_subprocess(ServerConfig(ttft_ms=cfg.ttft_ms, itl_ms=cfg.itl_ms), out / "server.npz",
                              cpu=cfg.server_cpu)
    command = ["taskset", "-c", str(cfg.client_cpu), *client.command(cfg, server.base_url, level, out, tokenizer)]
    (out / "command.txt").write_text(shlex.join(command) + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT)}
    with (out / "client.log").open("w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=out)
        with TreeCPU(process.pid) as cpu, TreeCPU(server.process.pid) as server_cpu:
            try:
                process.wait(timeout=cfg.run_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                result.note = f"timed out after {cfg.run_timeout_s:g} s"
    log = server.stop()
    assert log is not None
    try:
        measured, errors, health = client.parse(out)
    except (OSError, KeyError, IndexError, ValueError) as error:
        result.note = (result.note + f"; no parsable output: {error!r}").strip("; ")[:300]
        return result
    return score(cfg, result, measured, errors, health, log, cpu, server_cpu)


def score(cfg: BenchConfig, result: PointResult, measured: list[Measured], errors: int, health: Health,
          log: ServerLog, cpu: TreeCPU, server_cpu: TreeCPU | None = None) -> PointResult:
    rows = log.index()
    matched = [(m, rows[m.key]) for m in measured if m.key in rows]
    result.requests_matched, result.errors = len(matched), errors + (len(measured) - len(matched))
    result.client_loop_lag_p99_ms, result.client_loop_lag_max_ms = health.loop_lag_p99_ms, health.loop_lag_max_ms
    result.client_read_lag_p99_ms, result.client_timing = health.read_lag_p99_ms, health.timing
    if not matched:
        result.note = "no request matched the server log"
        return result
    start = min(log.received_ns[row] for _, row in matched) / 1e9
    end = max(log.sends(row)[-1] for _, row in matched) / 1e9
    window = end - start
    tokens = sum(len(log.sends(row)) for _, row in matched)
    result.achieved_rate = len(matched) / window
    result.tokens_per_s = tokens / window
    cpu_s = cpu.between(start, end)
    if cpu_s:
        result.client_cpu_s, result.client_cores = cpu_s, cpu_s / window
        result.tokens_per_core_s = tokens / cpu_s
    server_cpu_s = server_cpu.between(start, end) if server_cpu else None
    if server_cpu_s:
        result.server_cores = server_cpu_s / window
    ttft_err, burst_err, itl_err, gap_err = [], [], [], []
    way_in, way_out = [], []
    first_done = min(log.sends(row)[-1] for _, row in matched)
    for m, row in matched:
        sends_ms = log.sends(row) / 1e6
        error = m.ttft_ms - (sends_ms[0] - log.received_ns[row] / 1e6)
        # The opening burst (received before any request finished) waits in the server's accept and
        # read queue, which its receive timestamp cannot see: reported apart from the steady state.
        steady = log.received_ns[row] >= first_done
        (ttft_err if steady else burst_err).append(error)
        if steady and m.sent_s is not None and m.first_arrival_s is not None:
            way_in.append(log.received_ns[row] / 1e6 - m.sent_s * 1000.0)
            way_out.append(m.first_arrival_s * 1000.0 - sends_ms[0])
        server_gaps = np.diff(sends_ms)
        if m.itl_mean_ms is not None and server_gaps.size:
            itl_err.append(m.itl_mean_ms - float(server_gaps.mean()))
        if m.gaps_ms is not None and m.gaps_ms.size == server_gaps.size:
            gap_err.append(m.gaps_ms - server_gaps)
    result.ttft_err_p50_ms, result.ttft_err_p99_ms = _abs_percentiles(ttft_err)
    if way_in:
        result.request_way_in_p99_ms = float(np.percentile(way_in, 99))
        result.first_token_way_out_p99_ms = float(np.percentile(way_out, 99))
    result.burst_ttft_err_p50_ms, result.burst_ttft_err_p99_ms = _abs_percentiles(burst_err)
    result.itl_err_p50_ms, result.itl_err_p99_ms = _abs_percentiles(itl_err)
    if gap_err:
        result.gap_err_p50_ms, result.gap_err_p99_ms = _abs_percentiles(np.concatenate(gap_err))
    late = (log.sent_ns - log.scheduled_ns[: len(log.sent_ns)]) / 1e6 if len(log.sent_ns) else np.zeros(1)
    result.server_late_p99_ms = float(np.percentile(late, 99))
    return judge(result, cfg)


def judge(result: PointResult, cfg: BenchConfig) -> PointResult:
    """Sustained: every request matched and ok, achieved >= 95 % of requested, client not saturated.
    A shortfall while the server itself ran behind its schedule is the server's (server-bound)."""
    on_rate = result.achieved_rate is not None and result.achieved_rate >= SUSTAIN_FRACTION * result.requested_rate
    busy = result.client_cores is not None and result.client_cores >= cfg.saturated_cores
    lagging = result.client_loop_lag_p99_ms is not None and result.client_loop_lag_p99_ms > cfg.itl_ms
    stalled = result.client_loop_lag_max_ms is not None and result.client_loop_lag_max_ms > cfg.itl_ms
    reading_late = result.client_read_lag_p99_ms is not None and result.client_read_lag_p99_ms > cfg.itl_ms
    result.client_saturated = bool(busy or lagging or stalled or reading_late)
    result.sustained = bool(result.errors == 0 and result.requests_matched == result.requests_expected and on_rate
                            and not result.client_saturated)
    saturated_tag = "client saturated"
    if result.client_saturated and saturated_tag not in result.note:
        why = [f"{result.client_cores:.2f} cores"] if busy else []
        why += [f"loop lag p99 {result.client_loop_lag_p99_ms:.1f} ms > ITL"] if lagging else []
        why += [f"loop stalled {result.client_loop_lag_max_ms:.1f} ms > ITL"] if stalled and not lagging else []
        why += [f"read lag p99 {result.client_read_lag_p99_ms:.1f} ms > ITL"] if reading_late else []
        result.note = (result.note + f"; {saturated_tag} ({', '.join(why)})").strip("; ")
    server_late = result.server_late_p99_ms is not None and result.server_late_p99_ms > SERVER_LATE_LIMIT_MS
    tag = "server-bound (server behind its schedule)"
    if server_late and not on_rate and tag not in result.note:
        result.note = (result.note + "; " + tag).strip("; ")
    return result


def _without_verdicts(note: str) -> str:
    """A note less the parts `judge` writes, so judging again does not repeat them."""
    return "; ".join(part for part in note.split("; ") if not part.startswith(("client saturated", "server-bound")))


def _abs_percentiles(values) -> tuple[float | None, float | None]:
    array = np.abs(np.asarray(values, dtype=np.float64))
    if array.size == 0:
        return None, None
    return float(np.percentile(array, 50)), float(np.percentile(array, 99))


# -- whole run -------------------------------------------------------------------------------------

def make_inputs(cfg: BenchConfig, out_root: Path) -> Path:
    """The shared tokenizer (word-level, every word one token) and a prompt file for guidellm."""
    from servesweep.platform.checkpoint import synthetic_words, train_tokenizer

    tokenizer = out_root / "tokenizer"
    if not (tokenizer / "tokenizer.json").exists():
        train_tokenizer(1024, tokenizer)
    words, rng = synthetic_words(1000), random.Random(0)
    with (out_root / "prompts.jsonl").open("w") as handle:
        for _ in range(max(cfg.levels) * cfg.rounds):
            prompt = " ".join(rng.choices(words, k=cfg.input_tokens - 1))  # + BOS = input_tokens
            handle.write(json.dumps({"prompt": prompt, "output_tokens_count": cfg.output_tokens}) + "\n")
    return tokenizer


def run(cfg: BenchConfig, out_root: Path) -> list[PointResult]:
    tokenizer = make_inputs(cfg, out_root)
    results = []
    for name in cfg.clients:
        results += run_client(cfg, CLIENT_TABLE[name], out_root, tokenizer)
    return results


def run_client(cfg: BenchConfig, client: Client, out_root: Path, tokenizer: Path) -> list[PointResult]:
    """The ladder, then bisection of the gap above the highest sustained level, then 80 % of it."""
    points: list[PointResult] = []

    def measure(level: int, role: str) -> PointResult:
        point = run_point(cfg, client, level, out_root, tokenizer)
        point.role = role
        points.append(point)
        print(f"{client.name:15s} c={level:5d} {role:16s} sustained={point.sustained!s:5s} "
              f"achieved={point.achieved_rate or 0:8.1f}/{point.requested_rate:8.1f} req/s "
              f"tok/s={point.tokens_per_s or 0:9.0f} cores={point.client_cores or 0:.2f} "
              f"server={point.server_cores or 0:.2f} ttft_err_p99={_ms(point.ttft_err_p99_ms)} {point.note}",
              flush=True)
        return point

    failures = 0
    for level in cfg.levels:
        if failures >= cfg.stop_after_failures:
            break
        failures = 0 if measure(level, "ladder").sustained else failures + 1
    for _ in range(cfg.refine_steps):
        low, high = capacity_bracket(points)
        if low is None or high is None or high - low <= max(1, low // 16):
            break
        measure((low + high) // 2, "refine")
    capacity, _ = capacity_bracket(points)
    if capacity:
        measure(max(1, round(CAPACITY_FRACTION * capacity)), "80% of capacity")
    return points


def capacity_bracket(points: list[PointResult]) -> tuple[int | None, int | None]:
    """The highest sustained level, and the lowest level above it that was not sustained."""
    sustained = [p.concurrency for p in points if p.sustained]
    low = max(sustained) if sustained else None
    above = [p.concurrency for p in points if not p.sustained and (low is None or p.concurrency > low)]
    return low, min(above) if above else None


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f} ms"


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu_model": model, "cpus": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "out"), help="raw per-point outputs (git-ignored)")
    parser.add_argument("--clients", nargs="+", choices=CLIENTS, default=list(CLIENTS))
    parser.add_argument("--levels", type=int, nargs="+")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--refine-steps", type=int)
    parser.add_argument("--report-only", action="store_true", help="rebuild RESULTS.md from results.json")
    args = parser.parse_args(argv)
    results_path = HERE / "results.json"
    if not args.report_only:
        overrides = {k: v for k, v in (("levels", args.levels), ("rounds", args.rounds),
                                       ("refine_steps", args.refine_steps)) if v is not None}
        cfg = BenchConfig(clients=args.clients, **overrides)
        os.sched_setaffinity(0, {cfg.server_cpu})  # the driver stays off the client's core
        started = time.time()
        points = run(cfg, Path(args.out))
        payload = {"config": cfg.model_dump(), "machine": machine(), "started_unix": started,
                   "elapsed_s": time.time() - started, "command": "python benchmarks/loadgen/run_bench.py "
                   + shlex.join(argv if argv is not None else sys.argv[1:]),
                   "points": [p.model_dump() for p in points]}
        results_path.write_text(json.dumps(payload, indent=2) + "\n")
    from benchmarks.loadgen.report import write_report

    results = json.loads(results_path.read_text())
    config = BenchConfig.model_validate(results["config"])
    results["points"] = [judge(PointResult.model_validate({**p, "note": _without_verdicts(p["note"])}),
                               config).model_dump()
                         for p in results["points"]]  # re-judged with the current rule (report-only runs too)
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    write_report(results, HERE / "RESULTS.md")


if __name__ == "__main__":
    main()
