"""Load patterns: closed loop at a fixed concurrency; open loop with Poisson or gamma (bursty) arrivals at a
rate that may ramp linearly, or at the times of a recorded trace.

One worker runs in this process. With `workers` > 1 the point is split across worker processes,
each with its own event loop (uvloop when installed): the concurrency (closed loop) or the arrivals
(open loop, round robin) are divided, the parent only builds prompts, picks the common start time
and merges the records. Every process reads the same CLOCK_MONOTONIC (perf_counter on Linux), so
record times from all workers share the parent's origin.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import multiprocessing
import random
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import numpy as np
from pydantic import BaseModel, Field, model_validator

from servesweep.loadgen.client import GREEDY, ROUTES, Prompt, RequestRecord, Sampling, Target, as_prompt
from servesweep.loadgen.engine import COOLDOWN, MEASURED, WARMUP, Engine, WorkerJob

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

_GO_MARGIN_S = 0.05  # workers are told to start this far in the future, so all start together
_T = TypeVar("_T")
# A worker process's end of its pipe: it sends "ready", then its columns (or "error:..."); it receives the start.
_WorkerEnd: TypeAlias = "Connection[str | dict[str, Any], float]"


class LoadPlan(BaseModel):
    """What to send at one sweep point."""

    base_url: str
    model: str
    input_tokens: int = Field(ge=2)
    output_tokens: int = Field(ge=1)
    concurrency: int | None = Field(None, ge=1, description="In-flight cap; required for closed loop.")
    rate: float | None = Field(None, gt=0, description="Arrivals per second (open loop); a ramp's starting rate.")
    rate_end: float | None = Field(None, gt=0, description="Open loop: the rate reached linearly at duration_s "
                                   "(a ramp), then held; None: `rate` throughout.")
    arrival: str = Field("poisson", description="poisson (exponential gaps) or gamma (gaps of shape burstiness).")
    burstiness: float = Field(1.0, gt=0, description="Gamma arrivals' shape: 1 Poisson, < 1 burstier.")
    schedule: list[float] | None = Field(None, description="Open loop: explicit arrival offsets (s, ascending; a "
                                         "trace replay) in place of a rate.", repr=False)
    lengths: list[tuple[int, int]] | None = Field(None, description="With a schedule: each arrival's (input, "
                                                  "output) tokens.", repr=False)
    num_requests: int | None = Field(None, ge=1)
    duration_s: float | None = Field(None, gt=0)
    warmup_requests: int = Field(0, ge=0, description="Requests sent one at a time before the point.")
    warmup_s: float = Field(0.0, ge=0, description="Seconds of the point's own load before the measured requests; "
                            "what is sent then is marked warmup.")
    cooldown_s: float = Field(0.0, ge=0, description="Open loop: seconds of arrivals after the measured ones, "
                              "marked cooldown.")
    sampling: Sampling = Field(GREEDY, description="What each request asks for besides prompt and length.")
    timeout_s: float = Field(300.0, gt=0, description="Longest wait for a whole response, s.")
    connect_timeout_s: float = Field(10.0, gt=0, description="Longest wait for a TCP connection, s.")
    first_byte_timeout_s: float = Field(60.0, gt=0, description="Longest wait from send to the response's "
                                        "first byte, s.")
    idle_timeout_s: float = Field(60.0, gt=0, description="Longest silence between reads once the response "
                                  "has begun (the wait for the first token included), s.")
    max_consecutive_failures: int | None = Field(10, ge=1, description="Circuit breaker: stop the point after "
                                                 "this many failed requests in a row; None: off.")
    max_error_rate: float | None = Field(0.5, gt=0, le=1, description="Circuit breaker: stop the point when more "
                                         "than this fraction of its ended requests failed; None: off.")
    seed: int = 0
    workers: int = Field(1, ge=1, le=256, description="Client processes; use more when one core cannot keep up.")
    request_id_prefix: str = Field("r", description="X-Request-Id = prefix + request index.")
    dialect: str = Field("vllm", description="Server kind whose request fields to use (see completion_payload).")
    api: str = Field("completions", description="completions (/v1/completions) or chat (/v1/chat/completions).")
    headers: tuple[tuple[str, str], ...] = Field((), description="Sent with every request (an external "
                                                 "endpoint's auth header); never recorded.", repr=False)

    @model_validator(mode="after")
    def _shape(self) -> LoadPlan:
        if self.rate is None and self.concurrency is None and self.schedule is None:
            raise ValueError("closed loop needs a concurrency, open loop a rate or a schedule")
        if self.num_requests is None and self.duration_s is None and self.schedule is None:
            raise ValueError("give num_requests or duration_s")
        if self.rate_end is not None and (self.rate is None or self.duration_s is None):
            raise ValueError("a ramp needs a starting rate and duration_s")
        if self.arrival not in ("poisson", "gamma"):
            raise ValueError("arrival must be poisson or gamma")
        if self.lengths is not None and (self.schedule is None or len(self.lengths) != len(self.schedule)):
            raise ValueError("lengths go with a schedule, one per arrival")
        return self

    @property
    def load_kind(self) -> str:
        return "open" if self.rate is not None or self.schedule is not None else "closed"


@dataclass
class LoadResult:
    records: list[RequestRecord]
    started_unix: float  # wall clock at the point's origin (offset 0 of every record time, warm-up included)
    loop_lag_p99_ms: float | None = None  # p99 lateness of a 10 ms timer in the client loop(s)
    workers: int = 1
    origin_perf: float = 0.0  # perf_counter (CLOCK_MONOTONIC) at offset 0: joins records to same-host logs
    loop_lags_ms: list[float] = field(default_factory=list, repr=False)
    read_lag_p99_ms: float | None = None  # p99 kernel receive -> read; None when reads were not kernel-stamped
    timing: str = "loop"  # what timed token arrivals: "kernel" receive stamps or the client "loop"
    stopped: str | None = None  # why the circuit breaker stopped the point early; None: it ran to its end

    @property
    def loop_lag_max_ms(self) -> float | None:
        """The loop's longest stall: what a p99 over a few hundred timer samples can miss."""
        return max(self.loop_lags_ms) if self.loop_lags_ms else None


@dataclass
class WorkerOutput:
    """What one worker's run leaves: its records and its health samples (seconds)."""

    records: list[RequestRecord]
    loop_lags: list[float]
    read_lags: list[float]
    stopped: str | None = None


PromptMaker = Callable[[int], "str | Prompt"]  # (the point's input_tokens) -> the next request's input


def run_load(plan: LoadPlan, make_prompt: PromptMaker) -> LoadResult:
    """Run one point to completion (blocking). `make_prompt` gives each request's input in turn: a string
    asks for the plan's lengths, a Prompt (a dataset's) for its own."""
    if plan.api not in ROUTES:
        raise ValueError(f"api must be one of {', '.join(ROUTES)}")
    open_loop = plan.load_kind == "open"
    total = len(open_schedule(plan)[0]) if open_loop else plan.num_requests or _upper_bound(plan)
    make = _prompts(plan, make_prompt)
    if plan.lengths is not None:  # a trace's own lengths, arrival by arrival
        warmups = tuple(make() for _ in range(plan.warmup_requests))
        prompts = [_sized(make_prompt, *plan.lengths[i]) for i in range(total)]
    else:
        first = make()
        made = itertools.chain([first], iter(make, None))  # make never returns None: an endless stream
        if first.conversation is None:
            warmups = tuple(itertools.islice(made, plan.warmup_requests))
            prompts = list(itertools.islice(made, total))
        else:  # a conversation's turns go to the measured requests first: a warm-up sent alone begins no lane
            prompts = list(itertools.islice(made, total))
            warmups = tuple(_alone(p) for p in itertools.islice(made, plan.warmup_requests))
    conversations = _conversational(prompts)
    jobs = split_jobs(plan, prompts, warmups, (lambda: _alone(make())) if conversations else make)
    started_unix, origin = time.time(), time.perf_counter()
    output = _run_loop(_in_process(jobs[0], origin)) if len(jobs) == 1 else _run_processes(jobs, origin)
    warm = sorted((r for r in output.records if r.warmup), key=lambda r: r.sent_at)
    for position, record in enumerate(warm):  # one numbering over every worker's warm-ups, in order of issue
        record.index = position - len(warm)
    measured = sorted((r for r in output.records if not r.warmup), key=lambda r: r.index)
    lags_ms = [lag * 1000.0 for lag in output.loop_lags]
    kernel_timed = Target.from_base_url(plan.base_url).kernel_stamps
    return LoadResult(warm + measured, started_unix, _p99_ms(output.loop_lags), len(jobs), origin, lags_ms,
                      read_lag_p99_ms=_p99_ms(output.read_lags) if kernel_timed else None,
                      timing="kernel" if kernel_timed else "loop", stopped=output.stopped)


def _prompts(plan: LoadPlan, make_prompt: PromptMaker) -> Callable[[], Prompt]:
    return lambda: as_prompt(make_prompt(plan.input_tokens), plan.input_tokens, plan.output_tokens)


def _sized(make_prompt: PromptMaker, input_tokens: int, output_tokens: int) -> Prompt:
    made = as_prompt(make_prompt(input_tokens), input_tokens, output_tokens)
    return replace(made, output_tokens=output_tokens)  # a conversation's turn stays one


def _alone(prompt: Prompt) -> Prompt:
    """A conversation turn sent as a request of its own (a warm-up): just its user message."""
    return replace(prompt, conversation=None, turn=0, lane=0)


def _p99_ms(seconds: list[float]) -> float | None:
    return float(np.percentile(seconds, 99)) * 1000.0 if len(seconds) else None


MAX_PREBUILT_CLOSED_LOOP = 8  # rounds of `concurrency` requests a duration-bound closed loop may send


def _upper_bound(plan: LoadPlan) -> int:
    """Prompts to pre-build for a duration-bound closed loop (unused ones are never sent; an open loop
    builds one per arrival of its schedule).

    A closed loop's count depends on the server's speed, so it is capped: at most 20 requests per
    slot and second, and at most MAX_PREBUILT_CLOSED_LOOP rounds (or 512 requests): long prompts for
    a large batch would otherwise take minutes to build. The point ends when either runs out.
    """
    assert plan.duration_s is not None
    concurrency = plan.concurrency or 1
    by_speed = concurrency * int(plan.duration_s * 20) + 10
    return max(1, min(by_speed, max(MAX_PREBUILT_CLOSED_LOOP * concurrency, 512)))


def _arrivals(rate: float, seed: int) -> Iterator[float]:
    """Poisson arrival offsets (s) at `rate`/s, the first at 0, without end."""
    generator = random.Random(seed)
    now = 0.0
    while True:
        yield now
        now += generator.expovariate(rate)


def arrival_times(plan: LoadPlan) -> Iterator[float]:
    """An open-loop point's arrival offsets (s), the first at 0: the plan's schedule, else a renewal process
    (exponential gaps, or gamma gaps of shape `burstiness` and mean 1) in operational time mapped onto the
    clock through the rate's integral, so a ramp from `rate` to `rate_end` over duration_s bends the spacing
    and the mean rate is the rate at every moment."""
    if plan.schedule is not None:
        yield from plan.schedule
        return
    assert plan.rate is not None
    if plan.arrival == "poisson" and plan.rate_end is None:
        yield from _arrivals(plan.rate, plan.seed)  # the plain Poisson stream, as it always was
        return
    generator, shape = random.Random(plan.seed), plan.burstiness
    operational = 0.0
    while True:
        yield clock_time(operational, plan.rate, plan.rate_end, plan.duration_s)
        operational += generator.expovariate(1.0) if plan.arrival == "poisson" else \
            generator.gammavariate(shape, 1.0 / shape)


def clock_time(operational: float, rate: float, rate_end: float | None, ramp_s: float | None) -> float:
    """The time t at which the arrivals expected by t (the rate's integral) reach `operational`; the rate goes
    linearly from `rate` to `rate_end` over `ramp_s`, then stays."""
    if rate_end is None or not ramp_s:
        return operational / rate
    ramped = ramp_s * (rate + rate_end) / 2.0  # arrivals expected during the ramp
    if operational > ramped:
        return ramp_s + (operational - ramped) / rate_end
    a = (rate_end - rate) / (2.0 * ramp_s)
    if abs(a) < 1e-12:
        return operational / rate
    return (-rate + math.sqrt(max(0.0, rate * rate + 4.0 * a * operational))) / (2.0 * a)


def poisson_schedule(rate: float, count: int, seed: int) -> list[float]:
    """Send offsets (s) of `count` Poisson arrivals at `rate`/s, the first at 0."""
    return list(itertools.islice(_arrivals(rate, seed), count))


def open_schedule(plan: LoadPlan) -> tuple[list[float], list[int]]:
    """An open-loop point's arrival offsets and their phases: warm-up (the first `warmup_s`), measured
    (`num_requests` of them, those of the next `duration_s`, whichever ends first), cool-down (those of the
    `cooldown_s` after the measured window: the last measured arrival, or the window's end)."""
    times: list[float] = []
    phases: list[int] = []
    measured, window_end = 0, plan.warmup_s + (plan.duration_s or float("inf"))
    tail_end: float | None = None
    for t in arrival_times(plan):
        if tail_end is None and (t >= window_end or measured == plan.num_requests):
            tail_end = (min(window_end, times[-1]) if measured == plan.num_requests else window_end) + plan.cooldown_s
        if tail_end is not None and t >= tail_end:
            break
        phase = WARMUP if t < plan.warmup_s else COOLDOWN if tail_end is not None else MEASURED
        measured += phase == MEASURED
        times.append(t)
        phases.append(phase)
    return times, phases


def split_jobs(plan: LoadPlan, prompts: list[Prompt], warmups: tuple[Prompt, ...] = (),
               make_prompt: Callable[[], Prompt] | None = None) -> list[WorkerJob]:
    """Divide a point across `plan.workers` jobs (fewer when there is not enough work for each)."""
    ids = [f"{plan.request_id_prefix}{i}" for i in range(len(prompts))]
    common: dict[str, Any] = dict(
        base_url=plan.base_url, model=plan.model, input_tokens=plan.input_tokens, dialect=plan.dialect,
        output_tokens=plan.output_tokens, timeout_s=plan.timeout_s, duration_s=plan.duration_s,
        connect_timeout_s=plan.connect_timeout_s, first_byte_timeout_s=plan.first_byte_timeout_s,
        idle_timeout_s=plan.idle_timeout_s, max_consecutive_failures=plan.max_consecutive_failures,
        max_error_rate=plan.max_error_rate, sampling=plan.sampling, headers=plan.headers, api=plan.api)
    if plan.load_kind == "closed":
        return _split_closed(plan, prompts, warmups, common, make_prompt)
    schedule, phases = open_schedule(plan)
    indices = _open_indices(phases)
    ids = [f"{plan.request_id_prefix}{i}" if i >= 0 else f"{plan.request_id_prefix}t{-i - 1}" for i in indices]
    workers = max(1, min(plan.workers, len(schedule), plan.concurrency or len(schedule)))
    jobs = []
    for w in range(workers):
        picks = _worker_picks(prompts, w, workers)
        jobs.append(WorkerJob(prompts=[prompts[i] for i in picks], indices=[indices[i] for i in picks],
                              request_ids=[ids[i] for i in picks], schedule=[schedule[i] for i in picks],
                              phases=[phases[i] for i in picks],
                              concurrency=_share(plan.concurrency, workers, w) if plan.concurrency else None,
                              warmup_prompts=warmups if w == 0 else (), **common))
    return jobs


def _worker_picks(prompts: list[Prompt], worker: int, workers: int) -> range | list[int]:
    """Open loop: arrivals round robin; a conversation's turns all with the worker of their lane (its answers
    build the next turns)."""
    if workers == 1 or not _conversational(prompts):
        return range(worker, len(prompts), workers)
    return [i for i, p in enumerate(prompts) if p.lane % workers == worker]


def _conversational(prompts: Sequence[Prompt | str]) -> bool:
    """Conversation turns (a caller's own job may give plain strings)."""
    return any(isinstance(p, Prompt) and p.conversation is not None for p in prompts)


def _open_indices(phases: list[int]) -> list[int]:
    """Measured and cool-down arrivals count from 0, warm-up arrivals up to -1."""
    warm = sum(phase == WARMUP for phase in phases)
    return [i - warm for i in range(len(phases))]


def _split_closed(plan: LoadPlan, prompts: list[Prompt], warmups: tuple[Prompt, ...], common: dict[str, Any],
                  make_prompt: Callable[[], Prompt] | None) -> list[WorkerJob]:
    ids = [f"{plan.request_id_prefix}{i}" for i in range(len(prompts))]
    concurrency = plan.concurrency or 1
    workers = max(1, min(plan.workers, concurrency, len(prompts)))
    if workers > 1 and _conversational(prompts):
        return _split_lanes(plan, prompts, warmups, common, workers)
    jobs, start = [], 0
    for w in range(workers):
        slots = _share(concurrency, workers, w)
        count = len(prompts) - start if w == workers - 1 else round(len(prompts) * slots / concurrency)
        picks = range(start, start + count)
        start += count
        # Timed warm-ups cycle through a pool of their own: one fresh prompt per slot, at least a few.
        pool = tuple(make_prompt() for _ in range(max(slots, 4))) \
            if plan.warmup_s and make_prompt is not None else ()
        jobs.append(WorkerJob(prompts=prompts[picks.start : picks.stop], indices=list(picks),
                              request_ids=ids[picks.start : picks.stop], concurrency=slots,
                              warmup_prompts=warmups if w == 0 else (), warmup_s=plan.warmup_s,
                              timed_warmup_prompts=pool, warmup_id_prefix=f"{plan.request_id_prefix}t{w}-",
                              **common))
    return jobs


def _split_lanes(plan: LoadPlan, prompts: list[Prompt], warmups: tuple[Prompt, ...], common: dict[str, Any],
                 workers: int) -> list[WorkerJob]:
    """Closed loop of conversations: each worker takes whole lanes (lane % workers) and its share of the slots."""
    concurrency = plan.concurrency or 1
    jobs = []
    for w in range(workers):
        picks = [i for i, p in enumerate(prompts) if p.lane % workers == w]
        jobs.append(WorkerJob(prompts=[prompts[i] for i in picks], indices=picks,
                              request_ids=[f"{plan.request_id_prefix}{i}" for i in picks],
                              concurrency=_share(concurrency, workers, w), warmup_prompts=warmups if w == 0 else (),
                              **common))
    return [job for job in jobs if job.prompts]


def _share(total: int, parts: int, part: int) -> int:
    return total // parts + (1 if part < total % parts else 0)


def _run_loop(coroutine: Coroutine[Any, Any, _T]) -> _T:
    try:
        import uvloop

        result: _T = uvloop.run(coroutine)  # mypy skips uvloop (its run is Any): keep the result typed
        return result
    except ImportError:
        return asyncio.run(coroutine)


async def _in_process(job: WorkerJob, origin: float) -> WorkerOutput:
    engine = Engine(job, origin)
    try:
        warm = await engine.warmup()
        await engine.connect()
        records = await engine.run()
    finally:
        engine.close()
    return WorkerOutput(warm + records, list(engine.monitor.lags), list(engine.read_lags), engine.stopped)


def _run_processes(jobs: list[WorkerJob], origin: float) -> WorkerOutput:
    context = multiprocessing.get_context("spawn")  # no fork: the parent may hold threads (metrics sampler)
    pipes, processes = [], []
    for job in jobs:
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_worker_main, args=(job, origin, child_end), daemon=True)
        process.start()
        pipes.append(parent_end)
        processes.append(process)
    try:
        for pipe in pipes:
            _expect(pipe.recv(), "ready")
        go = time.perf_counter() + _GO_MARGIN_S
        for pipe in pipes:
            pipe.send(go)
        outputs = [pipe.recv() for pipe in pipes]
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    merged = WorkerOutput([], [], [])
    for output in outputs:
        _expect(output, dict)
        merged.records.extend(records_from_columns(output))
        merged.loop_lags.extend(output["lags"])
        merged.read_lags.extend(output["read_lags"])
        merged.stopped = merged.stopped or output["stopped"]
    return merged


def _expect(message: object, kind: str | type) -> None:
    if isinstance(message, str) and message.startswith("error:"):
        raise RuntimeError(f"load worker failed: {message[6:]}")
    if (isinstance(kind, str) and message != kind) or (isinstance(kind, type) and not isinstance(message, kind)):
        raise RuntimeError(f"load worker protocol: expected {kind}, got {type(message).__name__}")


def _worker_main(job: WorkerJob, origin: float, pipe: _WorkerEnd) -> None:
    async def main() -> None:
        engine = Engine(job, origin)
        try:
            warm = await engine.warmup()
            await engine.connect()
            pipe.send("ready")
            records = await engine.run(pipe.recv())  # blocking recv: nothing else runs before the start
        finally:
            engine.close()
        pipe.send(records_to_columns(warm + records, list(engine.monitor.lags), engine.read_lags, engine.stopped))

    try:
        _run_loop(main())
    except Exception as error:  # reported to the parent, which raises it
        pipe.send(f"error:{error!r}"[:1000])


def records_to_columns(records: list[RequestRecord], lags: list[float], read_lags: Sequence[float] = (),
                       stopped: str | None = None) -> dict[str, Any]:
    """Columnar form of records for the trip between processes (one array per field)."""
    counts = np.array([len(r.token_times) for r in records], dtype=np.int64)
    times = [np.asarray(r.token_times, dtype=np.float64) for r in records]
    return {
        "index": np.array([r.index for r in records], dtype=np.int64),
        "warmup": np.array([r.warmup for r in records], dtype=bool),
        "cooldown": np.array([r.cooldown for r in records], dtype=bool),
        "conversation": np.array([[_int(r.conversation), _int(r.turn)] for r in records],
                                 dtype=np.int64).reshape(-1, 2),
        "min_output": np.array([_int(r.min_output_tokens) for r in records], dtype=np.int64),
        "requested": np.array([[r.requested_input_tokens, r.requested_output_tokens] for r in records],
                              dtype=np.int64).reshape(-1, 2),
        "scheduled_at": np.array([np.nan if r.scheduled_at is None else r.scheduled_at for r in records]),
        "sent_at": np.array([r.sent_at for r in records], dtype=np.float64),
        "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "token_times": np.concatenate(times) if times else np.zeros(0),
        "tokens": np.array([[_int(r.input_tokens), _int(r.output_tokens)] for r in records],
                           dtype=np.int64).reshape(-1, 2),
        "error": [r.error for r in records], "request_id": [r.request_id for r in records], "lags": lags,
        "read_lags": np.asarray(read_lags, dtype=np.float64), "stopped": stopped,
    }


def records_from_columns(columns: Mapping[str, Any]) -> list[RequestRecord]:
    offsets, times = columns["offsets"], columns["token_times"]
    records = []
    for i, index in enumerate(columns["index"].tolist()):
        scheduled = float(columns["scheduled_at"][i])
        input_tokens, output_tokens = (int(v) for v in columns["tokens"][i])
        min_output = int(columns["min_output"][i])
        records.append(RequestRecord(
            index=index, warmup=bool(columns["warmup"][i]), requested_input_tokens=int(columns["requested"][i, 0]),
            requested_output_tokens=int(columns["requested"][i, 1]),
            scheduled_at=None if np.isnan(scheduled) else scheduled, sent_at=float(columns["sent_at"][i]),
            token_times=times[offsets[i] : offsets[i + 1]], input_tokens=None if input_tokens < 0 else input_tokens,
            output_tokens=None if output_tokens < 0 else output_tokens, error=columns["error"][i],
            request_id=columns["request_id"][i], min_output_tokens=None if min_output < 0 else min_output,
            cooldown=bool(columns["cooldown"][i]), conversation=_or_none(int(columns["conversation"][i, 0])),
            turn=_or_none(int(columns["conversation"][i, 1])),
        ))
    return records


def _int(value: int | None) -> int:
    return -1 if value is None else value


def _or_none(value: int) -> int | None:
    return None if value < 0 else value
