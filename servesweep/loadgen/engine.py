"""The send/receive engine of one worker process: callbacks on one event loop, no task per token.

Closed loop: each of `concurrency` connections sends its next request from the callback that
finished the last one, so no request waits for a scheduler. Open loop: one timer chain walks the
arrival schedule; a request that finds all `concurrency` slots busy waits in a FIFO queue (that wait
is its schedule lag). A loop-lag monitor records how late a 10 ms timer fires: when the loop is
saturated, the client and not the server is the limit, whatever the load pattern.

Every network wait is bounded (connect, first byte, silence between reads, the whole response), and
a circuit breaker stops a point whose requests keep failing: after `max_consecutive_failures` in a
row, or once that many have ended, when more than `max_error_rate` of them failed. Stopping means no
new requests; those in flight end within their own bounds. `Engine.stopped` says why.

An idle pooled connection the server closed (keep-alive timeout, a crash) is never reused: its EOF
marks it closed and the next request opens a fresh one, which fails at once while the server is down.

The cyclic garbage collector is off while a point runs: a full collection over thousands of live
connections and records stalls the loop for milliseconds, long enough for a stream's chunks to pile
up unread. What the hot path allocates per request and per chunk is freed by reference counting, so
nothing piles up meanwhile; collection resumes when the point ends.
"""

from __future__ import annotations

import asyncio
import gc
import time
from array import array
from collections import deque
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypedDict, Unpack

from servesweep.loadgen.client import (
    GREEDY,
    ROUTES,
    Done,
    Prompt,
    RequestRecord,
    Sampling,
    StreamingConnection,
    Target,
    as_prompt,
    request_payload,
)
from servesweep.loadgen.lanes import Lanes

_clock = time.perf_counter
LAG_PROBE_S = 0.010
MEASURED, WARMUP, COOLDOWN = 0, 1, 2  # phases of an open loop's arrivals


class _RecordFields(TypedDict, total=False):
    """The RequestRecord fields a worker sets as it creates a record (the rest come from the prompt)."""

    scheduled_at: float | None
    request_id: str
    cooldown: bool
    conversation: int | None
    turn: int | None


@dataclass
class WorkerJob:
    """One worker's share of a point (picklable: sent to worker processes)."""

    base_url: str
    model: str
    input_tokens: int
    output_tokens: int
    timeout_s: float
    prompts: list[Prompt]
    indices: list[int]
    request_ids: list[str]
    concurrency: int | None
    schedule: list[float] | None = None  # open loop: send offsets (s) after the go time, one per prompt
    duration_s: float | None = None
    warmup_prompts: tuple[Prompt, ...] = ()
    dialect: str = "vllm"
    api: str = "completions"  # completions or chat (servesweep.loadgen.client.ROUTES)
    connect_timeout_s: float | None = None
    first_byte_timeout_s: float = float("inf")
    idle_timeout_s: float = float("inf")
    max_consecutive_failures: int | None = None  # circuit breaker; None: off
    max_error_rate: float | None = None  # circuit breaker, judged once max_consecutive_failures (or 1) ended
    sampling: Sampling = GREEDY
    phases: list[int] | None = None  # open loop: MEASURED, WARMUP or COOLDOWN per prompt; None: all measured
    warmup_s: float = 0.0  # closed loop: seconds at the point's concurrency before the measured requests
    timed_warmup_prompts: tuple[Prompt, ...] = ()  # closed loop: cycled through during warmup_s
    warmup_id_prefix: str = "t"  # X-Request-Id prefix of those timed warm-up requests
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request (an external endpoint's auth)


class LagMonitor:
    """Samples event-loop lag: how late a timer meant for now + 10 ms really fires."""

    def __init__(self) -> None:
        self.lags = array("d")
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        self._due = _clock() + LAG_PROBE_S
        self._handle = asyncio.get_running_loop().call_later(LAG_PROBE_S, self._tick)

    def _tick(self) -> None:
        now = _clock()
        self.lags.append(max(0.0, now - self._due))
        self._due = now + LAG_PROBE_S
        self._handle = asyncio.get_running_loop().call_later(LAG_PROBE_S, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


@contextmanager
def _collector_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()  # what exists now is never scanned again this point
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


class Engine:
    """Runs one WorkerJob on the running loop; all times are seconds since `origin` (perf_counter)."""

    def __init__(self, job: WorkerJob, origin: float) -> None:
        self.job = job
        self.origin = origin
        self.target = Target.from_base_url(job.base_url, ROUTES[job.api])
        self.monitor = LagMonitor()
        self.read_lags = array("d")  # kernel receive -> read, per read (kernel-stamped connections only)
        # A plain string (a caller's own WorkerJob) asks for the job's lengths.
        self._prompts = [as_prompt(p, job.input_tokens, job.output_tokens) for p in job.prompts]
        # Conversation turns are built when they go (their prompt holds the answers before them).
        self._lanes = Lanes() if any(p.conversation is not None for p in self._prompts) else None
        self._requests = [b"" if self._lanes else self._request(prompt, rid)
                          for prompt, rid in zip(self._prompts, job.request_ids, strict=True)]
        self._in_lane: dict[int, int] = {}  # id(record) -> its index, for the conversation turns in flight
        self._free: deque[float] = deque()  # closed loop with lanes: times slots fell idle, waiting for an answer
        self._idle: list[StreamingConnection] = []
        self._records: list[RequestRecord] = []
        self._next = 0
        self._in_flight = 0
        self._waiting: deque[tuple[RequestRecord, bytes]] = deque()
        self._deadline = float("inf")
        self._go = 0.0
        self._finished: asyncio.Future[None] | None = None
        self._arrival: asyncio.TimerHandle | None = None
        self._ended = self._failed = self._consecutive = 0
        self._warm_end = -float("inf")  # closed loop: perf_counter time the timed warm-up ends
        self._warm_sent = 0
        self.stopped: str | None = None  # why the circuit breaker stopped the point

    def _request(self, prompt: Prompt, request_id: str) -> bytes:
        job = self.job
        payload = request_payload(job.model, prompt, job.api, job.dialect, job.sampling)
        return self.target.request_bytes(payload, request_id, job.headers)

    def _record(self, index: int, warmup: bool, prompt: Prompt, **fields: Unpack[_RecordFields]) -> RequestRecord:
        # min_tokens never above this request's own max_tokens (a dataset's output may be shorter)
        fewest = min(self.job.sampling.min_for(prompt.output_tokens), prompt.output_tokens)
        return RequestRecord(index, warmup, prompt.input_tokens, prompt.output_tokens, min_output_tokens=fewest,
                             **fields)

    async def connect(self) -> None:
        """Open the connections a closed loop needs before the clock starts (no connect in TTFT). Called
        after the warm-up, so that a server's keep-alive timeout has no time to close them before the start."""
        self._idle = [c for c in self._idle if c.open]
        wanted = min(self.job.concurrency or 0, len(self._requests)) - len(self._idle)
        opened = await asyncio.gather(*(self._open() for _ in range(max(0, wanted))), return_exceptions=True)
        # A failed connect is not fatal here: the request that needs it retries and records the error.
        self._idle += [c for c in opened if isinstance(c, StreamingConnection)]

    def _open(self) -> Coroutine[None, None, StreamingConnection]:
        return self.target.connect(self.origin, self.read_lags, self.job.connect_timeout_s)

    def _pooled(self) -> StreamingConnection | None:
        """An idle connection still open: one the server closed would swallow the request until its timeout."""
        idle = self._idle
        while idle:
            connection = idle.pop()
            if connection.open:
                return connection
        return None

    def _send(self, connection: StreamingConnection, request: bytes, record: RequestRecord, on_done: Done) -> None:
        job = self.job
        connection.send(request, record, on_done, job.timeout_s, job.first_byte_timeout_s, job.idle_timeout_s)

    async def warmup(self) -> list[RequestRecord]:
        records = []
        job = self.job
        for i, made in enumerate(job.warmup_prompts):
            prompt = as_prompt(made, job.input_tokens, job.output_tokens)
            record = self._record(-(i + 1), True, prompt,
                                  request_id=f"{self.job.request_ids[0] if self.job.request_ids else 'w'}-w{i}")
            await self._one(self._request(prompt, record.request_id), record)
            records.append(record)
        return records

    async def _one(self, request: bytes, record: RequestRecord) -> None:
        done = asyncio.get_running_loop().create_future()
        try:
            connection = self._pooled() or await self._open()
        except OSError as error:
            record.error = f"connect: {error}"[:300]
            return
        self._send(connection, request, record, lambda c, r, t: done.set_result(c))
        connection = await done
        record.settle()
        if connection.open:
            self._idle.append(connection)

    async def run(self, go: float | None = None) -> list[RequestRecord]:
        """Send this job's requests from perf_counter time `go` (None: as soon as ready); returns when
        every one has ended."""
        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        with _collector_paused():  # before the start: its last collection takes milliseconds
            go = _clock() if go is None else go
            if go > _clock():
                await asyncio.sleep(go - _clock())
            self._go = go - self.origin
            warm_s = self.job.warmup_s if self.job.timed_warmup_prompts else 0.0
            self._warm_end = go + warm_s if warm_s else -float("inf")  # -inf: no timed warm-up at all
            if self.job.duration_s:
                self._deadline = go + warm_s + self.job.duration_s
            self.monitor.start()
            del self.read_lags[:]  # warm-up reads are not the point's
            if not self._requests:
                self._finished.set_result(None)
            elif self.job.schedule is None:
                self._start_closed()
            else:
                self._arrive()
            await self._finished
        self.monitor.stop()
        for record in self._records:
            record.settle()
        return self._records

    # -- closed loop -------------------------------------------------------------------------------
    def _start_closed(self) -> None:
        slots = min(self.job.concurrency or 1, len(self._requests))
        if self._lanes is None:
            for _ in range(slots):
                taken = self._next_closed(self._go)
                assert taken is not None  # without lanes there is always a next request
                self._issue(*taken)
            return
        for k, prompt in enumerate(self._prompts):
            self._lanes.add(k, prompt.lane, self._go)
        self._free.extend([self._go] * slots)
        self._fill_slots()

    def _fill_slots(self) -> None:
        """Closed loop with lanes: each idle slot takes a ready turn, at max(slot idle, turn ready)."""
        while self._free and (self._warming() or self._more()):
            taken = self._next_closed(self._free[0])
            if taken is None:
                return  # every pending turn waits for an answer still streaming
            self._free.popleft()
            self._issue(*taken)

    def _next_closed(self, scheduled: float) -> tuple[RequestRecord, bytes] | None:
        """A timed warm-up request while the warm-up lasts, then the next measured one (with lanes: None
        when no turn is ready)."""
        if _clock() >= self._warm_end:
            return self._take(scheduled) if self._lanes is None else self._take_turn(scheduled)
        pool, j = self.job.timed_warmup_prompts, self._warm_sent
        self._warm_sent += 1
        request_id = f"{self.job.warmup_id_prefix}{j}"
        prompt = as_prompt(pool[j % len(pool)], self.job.input_tokens, self.job.output_tokens)
        record = self._record(-(j + 1), True, prompt, scheduled_at=scheduled, request_id=request_id)
        self._records.append(record)
        return record, self._request(prompt, request_id)

    def _take(self, scheduled: float) -> tuple[RequestRecord, bytes]:
        k = self._next
        self._next += 1
        job = self.job
        phase = job.phases[k] if job.phases is not None else MEASURED
        record = self._record(job.indices[k], phase == WARMUP, self._prompts[k], scheduled_at=scheduled,
                              request_id=job.request_ids[k], cooldown=phase == COOLDOWN)
        self._records.append(record)
        return record, self._requests[k]

    def _more(self) -> bool:
        left = self._lanes.pending if self._lanes is not None else self._next < len(self._requests)
        return self.stopped is None and left and _clock() < self._deadline

    # -- conversation lanes (servesweep.loadgen.lanes) ---------------------------------------------
    def _take_turn(self, slot_free: float) -> tuple[RequestRecord, bytes] | None:
        """The next ready turn, sent at max(`slot_free`, when it became ready); turns of conversations that
        ended are recorded as not sent on the way."""
        lanes = self._lanes
        assert lanes is not None
        while lanes.ready:
            k, due = lanes.ready.popleft()
            taken = self._turn(k, max(slot_free, due))
            if taken is not None:
                return taken
        return None

    def _turn(self, k: int, scheduled: float) -> tuple[RequestRecord, bytes] | None:
        lanes, job, prompt = self._lanes, self.job, self._prompts[k]
        assert lanes is not None and prompt.conversation is not None
        phase = job.phases[k] if job.phases is not None else MEASURED
        record = self._record(job.indices[k], phase == WARMUP, prompt, scheduled_at=scheduled,
                              request_id=job.request_ids[k], cooldown=phase == COOLDOWN,
                              conversation=prompt.conversation, turn=prompt.turn)
        self._records.append(record)
        why = lanes.ended.get(prompt.conversation)
        if why is not None:  # recorded, never sent: the conversation broke off
            record.sent_at, record.error = scheduled, f"not sent: conversation ended ({why})"[:300]
            lanes.release(prompt.lane, scheduled)
            return None
        record.answer_chunks = []
        self._in_lane[id(record)] = k
        return record, self._request(lanes.compose(prompt), record.request_id)

    def _turn_ended(self, record: RequestRecord, arrived: float) -> None:
        k = self._in_lane.pop(id(record), None)
        if k is not None and self._lanes is not None:
            self._lanes.answered(record)
            self._lanes.release(self._prompts[k].lane, arrived)

    def _open_turns(self) -> None:
        """Open loop: each ready turn goes at max(its arrival, its predecessor's answer), or waits for a slot."""
        lanes = self._lanes
        assert lanes is not None
        while lanes.ready and self.stopped is None:
            k, due = lanes.ready.popleft()
            taken = self._turn(k, due)
            if taken is None:
                continue
            if self.job.concurrency and self._in_flight >= self.job.concurrency:
                self._waiting.append(taken)
            else:
                self._issue(*taken)

    def _warming(self) -> bool:
        return self.stopped is None and _clock() < self._warm_end

    # -- open loop ---------------------------------------------------------------------------------
    def _arrive(self) -> None:
        """Issue every arrival that is due, then arm a timer for the next one."""
        schedule = self.job.schedule
        assert schedule is not None
        if self.stopped is not None:
            return
        now = _clock() - self.origin
        while self._next < len(schedule) and self._go + schedule[self._next] <= now:
            if self._lanes is not None:
                self._lanes.add(self._next, self._prompts[self._next].lane, self._go + schedule[self._next])
                self._next += 1
                self._open_turns()
                continue
            taken = self._take(self._go + schedule[self._next])
            if self.job.concurrency and self._in_flight >= self.job.concurrency:
                self._waiting.append(taken)
            else:
                self._issue(*taken)
        if self._next < len(schedule):
            delay = self._go + schedule[self._next] - (_clock() - self.origin)
            self._arrival = asyncio.get_running_loop().call_later(max(0.0, delay), self._arrive)
        else:
            self._maybe_finish()

    # -- shared ------------------------------------------------------------------------------------
    def _issue(self, record: RequestRecord, request: bytes) -> None:
        self._in_flight += 1
        connection = self._pooled()
        if connection is not None:
            self._send(connection, request, record, self._done)
        else:
            asyncio.ensure_future(self._connect_and_send(record, request))

    async def _connect_and_send(self, record: RequestRecord, request: bytes) -> None:
        try:
            connection = await self._open()
        except OSError as error:
            record.sent_at = _clock() - self.origin
            record.error = f"connect: {error}"[:300]
            self._in_flight -= 1
            self._after(record, record.sent_at)
            return
        self._send(connection, request, record, self._done)

    def _done(self, connection: StreamingConnection, record: RequestRecord, arrived: float) -> None:
        self._in_flight -= 1
        if connection.open:
            self._idle.append(connection)
        self._after(record, arrived)

    def _after(self, record: RequestRecord, arrived: float) -> None:
        if self._lanes is not None:
            self._turn_ended(record, arrived)  # before the breaker: a failed stream body is known now
        self._count(record)
        if self.job.schedule is None:
            if self._lanes is not None:
                self._free.append(arrived)
                self._fill_slots()
            elif self._warming() or self._more():  # the slot is free from the moment the response ended
                taken = self._next_closed(arrived)
                assert taken is not None
                self._issue(*taken)
        else:
            if self._lanes is not None:
                self._open_turns()
            if self._waiting:
                self._issue(*self._waiting.popleft())
        self._maybe_finish()

    def _count(self, record: RequestRecord) -> None:
        """The circuit breaker. It sees the failures known as a request ends (connect, timeouts, lost
        connections, HTTP errors); a bad stream body is found only when the point is settled."""
        self._ended += 1
        if record.error is None:
            self._consecutive = 0
            return
        self._failed += 1
        self._consecutive += 1
        if self.stopped is not None:
            return
        limit, rate = self.job.max_consecutive_failures, self.job.max_error_rate
        if limit is not None and self._consecutive >= limit:
            self._stop(f"{self._consecutive} consecutive requests failed", record.error)
        elif rate is not None and self._ended >= (limit or 1) and self._failed > rate * self._ended:
            self._stop(f"{self._failed} of {self._ended} requests failed (error rate above {rate:g})", record.error)

    def _stop(self, why: str, last_error: str) -> None:
        """No new requests; arrivals queued for a slot were never sent, so they leave no record."""
        self.stopped = f"circuit breaker: {why}; last error: {last_error}"[:500]
        if self._arrival is not None:
            self._arrival.cancel()
        if self._waiting:
            unsent = {id(record) for record, _ in self._waiting}
            self._records = [r for r in self._records if id(r) not in unsent]
            self._waiting.clear()

    def _maybe_finish(self) -> None:
        arrivals_left = (self._warming() or self._more()) if self.job.schedule is None else (
            self.stopped is None and self._next < len(self.job.schedule))
        if self._in_flight == 0 and not self._waiting and not arrivals_left:
            assert self._finished is not None
            if not self._finished.done():
                self._finished.set_result(None)

    def close(self) -> None:
        for connection in self._idle:
            if connection.open and connection._transport is not None:
                connection._transport.close()
        self._idle = []
