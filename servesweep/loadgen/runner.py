"""Load patterns: closed loop at a fixed concurrency, open loop at a Poisson arrival rate."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from pydantic import BaseModel, Field, model_validator

from servesweep.loadgen.client import RequestRecord, completion_payload, stream_completion


class LoadPlan(BaseModel):
    """What to send at one sweep point."""

    base_url: str
    model: str
    input_tokens: int = Field(ge=2)
    output_tokens: int = Field(ge=1)
    concurrency: int | None = Field(None, ge=1, description="In-flight cap; required for closed loop.")
    rate: float | None = Field(None, gt=0, description="Poisson arrivals per second (open loop).")
    num_requests: int | None = Field(None, ge=1)
    duration_s: float | None = Field(None, gt=0)
    warmup_requests: int = Field(0, ge=0)
    timeout_s: float = Field(300.0, gt=0)
    seed: int = 0
    dialect: str = Field("vllm", description="Server kind whose request fields to use (see completion_payload).")

    @model_validator(mode="after")
    def _shape(self) -> LoadPlan:
        if self.rate is None and self.concurrency is None:
            raise ValueError("closed loop needs a concurrency, open loop a rate")
        if self.num_requests is None and self.duration_s is None:
            raise ValueError("give num_requests or duration_s")
        return self

    @property
    def load_kind(self) -> str:
        return "open" if self.rate is not None else "closed"


@dataclass
class LoadResult:
    records: list[RequestRecord]
    started_unix: float  # wall clock at the point's origin (offset 0 of every record time, warm-up included)


def run_load(plan: LoadPlan, make_prompt: Callable[[int], str]) -> LoadResult:
    """Run one point to completion (blocking); uses uvloop when installed."""
    try:
        import uvloop

        return uvloop.run(_run(plan, make_prompt))
    except ImportError:
        return asyncio.run(_run(plan, make_prompt))


async def _run(plan: LoadPlan, make_prompt: Callable[[int], str]) -> LoadResult:
    url = plan.base_url.rstrip("/") + "/v1/completions"
    timeout = aiohttp.ClientTimeout(total=plan.timeout_s)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        total = plan.num_requests or _upper_bound(plan)
        prompts = [make_prompt(plan.input_tokens) for _ in range(total)]
        started_unix, origin = time.time(), time.perf_counter()
        warmup = await _warmup(session, url, plan, make_prompt, origin)
        origin_after_warmup = time.perf_counter()
        if plan.rate is None:
            records = await _closed_loop(session, url, plan, prompts, origin, origin_after_warmup)
        else:
            records = await _open_loop(session, url, plan, prompts, origin, origin_after_warmup)
    return LoadResult(records=warmup + records, started_unix=started_unix)


def _upper_bound(plan: LoadPlan) -> int:
    """Prompts to pre-build for a duration-bound point (generous; unused ones are never sent)."""
    assert plan.duration_s is not None
    if plan.rate is not None:
        return max(1, int(plan.rate * plan.duration_s * 1.5) + 10)
    return max(1, (plan.concurrency or 1) * int(plan.duration_s * 20) + 10)


def _record(plan: LoadPlan, index: int, warmup: bool = False) -> RequestRecord:
    return RequestRecord(index, warmup, plan.input_tokens, plan.output_tokens)


async def _warmup(session, url: str, plan: LoadPlan, make_prompt, origin: float) -> list[RequestRecord]:
    records = []
    for i in range(plan.warmup_requests):
        record = _record(plan, -(i + 1), warmup=True)
        payload = completion_payload(plan.model, make_prompt(plan.input_tokens), plan.output_tokens, plan.dialect)
        await stream_completion(session, url, payload, record, origin)
        records.append(record)
    return records


async def _closed_loop(
    session, url: str, plan: LoadPlan, prompts: list[str], origin: float, start: float
) -> list[RequestRecord]:
    """`concurrency` workers, each sending its next request as soon as the last one finishes."""
    records: list[RequestRecord] = []
    next_index = 0
    deadline = start + plan.duration_s if plan.duration_s else None

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(prompts) and (deadline is None or time.perf_counter() < deadline):
            index = next_index
            next_index += 1
            record = _record(plan, index)
            records.append(record)
            payload = completion_payload(plan.model, prompts[index], plan.output_tokens, plan.dialect)
            await stream_completion(session, url, payload, record, origin)

    await asyncio.gather(*(worker() for _ in range(plan.concurrency or 1)))
    records.sort(key=lambda r: r.index)
    return records


def poisson_schedule(rate: float, count: int, seed: int) -> list[float]:
    """Send offsets (s) of `count` Poisson arrivals at `rate`/s, the first at 0."""
    generator = random.Random(seed)
    times, now = [], 0.0
    for _ in range(count):
        times.append(now)
        now += generator.expovariate(rate)
    return times


async def _open_loop(
    session, url: str, plan: LoadPlan, prompts: list[str], origin: float, start: float
) -> list[RequestRecord]:
    """Send at Poisson times regardless of completions (capped at `concurrency` in flight if set)."""
    assert plan.rate is not None
    schedule = poisson_schedule(plan.rate, len(prompts), plan.seed)
    if plan.duration_s:
        schedule = [t for t in schedule if t < plan.duration_s]
    slots = asyncio.Semaphore(plan.concurrency) if plan.concurrency else None
    records: list[RequestRecord] = []
    tasks = []

    async def send(record: RequestRecord, prompt: str) -> None:
        payload = completion_payload(plan.model, prompt, plan.output_tokens, plan.dialect)
        if slots is None:
            await stream_completion(session, url, payload, record, origin)
            return
        async with slots:
            await stream_completion(session, url, payload, record, origin)

    base = start - origin  # schedule offsets count from the end of warm-up
    for index, offset in enumerate(schedule):
        delay = start + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        record = _record(plan, index)
        record.scheduled_at = base + offset
        records.append(record)
        tasks.append(asyncio.create_task(send(record, prompts[index])))
    await asyncio.gather(*tasks)
    return records
