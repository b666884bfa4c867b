"""The load generator against servers that misbehave: silent, stalled mid-stream, closing idle
keep-alive connections, gone, failing. Every test has a generous wall-clock bound far below what
the old behaviour (waiting the whole request timeout, request after request) would take."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable

from servesweep.loadgen.engine import Engine, WorkerJob
from servesweep.loadgen.runner import LoadPlan, LoadResult, run_load

TOKENS = 3
REQUEST_TIMEOUT_S = 60.0  # what each of these requests would wait without the shorter bounds
BOUND_S = 20.0  # generous: every test here needs a few seconds at most

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "FakeServer"], Awaitable[None]]


class FakeServer:
    """An asyncio TCP server on a thread of its own; `handler` decides what each connection gets."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *_) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _stop(self) -> None:
        await self._shut()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    def go_down(self) -> None:
        """Stop listening and drop every connection, as a crashed server does (callable from the handler's loop)."""
        self._loop.create_task(self._shut())

    async def _shut(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            await self.handler(reader, writer, self)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


async def read_request(reader: asyncio.StreamReader, idle_s: float | None = None) -> dict:
    """One HTTP request's JSON body; TimeoutError when none starts within `idle_s`."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), idle_s)
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length"))
    return json.loads(await reader.readexactly(length))


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def token_event(i: int) -> bytes:
    return chunk(b'data: {"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":" w%d",'
                 b'"finish_reason":null}]}\n\n' % i)


def full_response(tokens: int) -> bytes:
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":%d}}\n\ndata: [DONE]\n\n' % tokens
    return HEAD + b"".join(token_event(i) for i in range(tokens)) + chunk(usage) + b"0\r\n\r\n"


async def silent(reader, writer, server: FakeServer) -> None:
    """Accepts and reads, never answers."""
    await read_request(reader)
    server.requests += 1
    await asyncio.sleep(3600)


async def stalls_mid_stream(reader, writer, server: FakeServer) -> None:
    """Headers and two tokens, then nothing."""
    await read_request(reader)
    server.requests += 1
    writer.write(HEAD + token_event(0) + token_event(1))
    await asyncio.sleep(3600)


async def closes_idle_connections(reader, writer, server: FakeServer) -> None:
    """Whole responses on a keep-alive connection, closed after 0.1 s without a request (uvicorn does it after 5 s)."""
    while True:
        try:
            body = await read_request(reader, idle_s=0.1)
        except TimeoutError:
            return
        server.requests += 1
        writer.write(full_response(body["max_tokens"]))
        await writer.drain()


async def answers_once_then_crashes(reader, writer, server: FakeServer) -> None:
    body = await read_request(reader)
    server.requests += 1
    writer.write(full_response(body["max_tokens"]))
    await writer.drain()
    server.go_down()
    await asyncio.sleep(3600)


async def fails_two_of_three(reader, writer, server: FakeServer) -> None:
    """HTTP 500 for two requests of every three, so failures never run three in a row."""
    while True:
        body = await read_request(reader)
        server.requests += 1
        if server.requests % 3:
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops")
        else:
            writer.write(full_response(body["max_tokens"]))
        await writer.drain()


def _plan(server: FakeServer, **overrides) -> LoadPlan:
    fields = dict(base_url=server.base_url, model="m", input_tokens=2, output_tokens=TOKENS, concurrency=2,
                  num_requests=4, timeout_s=REQUEST_TIMEOUT_S, first_byte_timeout_s=0.5, idle_timeout_s=0.5,
                  max_consecutive_failures=None, max_error_rate=None)
    return LoadPlan(**{**fields, **overrides})


def _run(plan: LoadPlan) -> tuple[LoadResult, float]:
    started = time.monotonic()
    result = run_load(plan, lambda tokens: "ba " * tokens)
    return result, time.monotonic() - started


def _run_schedule(server: FakeServer, schedule: list[float]) -> list:
    """Requests sent at fixed offsets (open loop, one at a time) on one engine, so pooled connections sit idle."""
    job = WorkerJob(base_url=server.base_url, model="m", input_tokens=2, output_tokens=TOKENS,
                    timeout_s=REQUEST_TIMEOUT_S, prompts=["ba"] * len(schedule), indices=list(range(len(schedule))),
                    request_ids=[f"r{i}" for i in range(len(schedule))], concurrency=1, schedule=schedule,
                    connect_timeout_s=2.0)

    async def main() -> list:
        engine = Engine(job, time.perf_counter())
        try:
            return await engine.run()
        finally:
            engine.close()

    return asyncio.run(main())


def test_a_server_that_never_answers_costs_the_first_byte_timeout_not_the_request_timeout():
    with FakeServer(silent) as server:
        result, seconds = _run(_plan(server))
    assert seconds < BOUND_S
    assert server.requests == 4 and len(result.records) == 4
    assert all(r.error == "TimeoutError: no response byte in 0.5 s" for r in result.records)
    assert result.stopped is None  # the breaker was off


def test_a_stream_that_stalls_mid_way_fails_on_the_idle_timeout_and_keeps_its_tokens():
    with FakeServer(stalls_mid_stream) as server:
        result, seconds = _run(_plan(server))
    assert seconds < BOUND_S
    assert all(r.error == "TimeoutError: stream idle for 0.5 s" for r in result.records)
    assert all(len(r.token_times) == 2 and not r.ok for r in result.records)


def test_a_connect_that_is_never_answered_fails_on_the_connect_timeout():
    # A listener whose accept queue is full: Linux drops further SYNs, so a connect hangs.
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        time.sleep(0.2)
        plan = LoadPlan(base_url=f"http://127.0.0.1:{port}", model="m", input_tokens=2, output_tokens=TOKENS,
                        concurrency=2, num_requests=2, timeout_s=REQUEST_TIMEOUT_S, connect_timeout_s=0.5,
                        max_consecutive_failures=None, max_error_rate=None)
        result, seconds = _run(plan)
    assert seconds < BOUND_S
    assert [r.error for r in result.records] == ["connect: no connection in 0.5 s"] * 2


def test_the_circuit_breaker_stops_a_point_after_consecutive_failures():
    with FakeServer(silent) as server:
        result, seconds = _run(_plan(server, num_requests=40, max_consecutive_failures=3, first_byte_timeout_s=0.3))
    assert seconds < BOUND_S
    assert result.stopped is not None and result.stopped.startswith("circuit breaker: 3 consecutive requests failed")
    assert "no response byte in 0.3 s" in result.stopped
    # Two slots: the third failure trips it while the fourth request is still in flight; nothing after is sent.
    assert len(result.records) == server.requests == 4 and all(r.error for r in result.records)


def test_worker_processes_bring_the_timeouts_and_the_breaker_s_verdict_back():
    with FakeServer(silent) as server:
        result, seconds = _run(_plan(server, workers=2, num_requests=40, max_consecutive_failures=2,
                                     first_byte_timeout_s=0.3))
    assert seconds < BOUND_S and result.workers == 2
    assert result.stopped is not None and result.stopped.startswith("circuit breaker: 2 consecutive requests failed")
    assert 4 <= len(result.records) < 40 and all("no response byte in 0.3 s" in r.error for r in result.records)


def test_the_circuit_breaker_stops_a_point_on_its_error_rate():
    with FakeServer(fails_two_of_three) as server:
        result, _ = _run(_plan(server, concurrency=1, num_requests=30, max_consecutive_failures=3, max_error_rate=0.5))
    assert result.stopped is not None and "error rate above 0.5" in result.stopped and "HTTP 500" in result.stopped
    # Never three failures in a row; judged on a failure once three requests have ended: 3 of 4 failed.
    assert result.stopped.startswith("circuit breaker: 3 of 4 requests failed")
    assert [r.ok for r in result.records] == [False, False, True, False]


def test_the_circuit_breaker_drops_open_loop_arrivals_it_never_sent():
    with FakeServer(silent) as server:
        result, seconds = _run(_plan(server, concurrency=1, rate=50.0, num_requests=40, max_consecutive_failures=2,
                                     first_byte_timeout_s=0.3))
    assert seconds < BOUND_S and result.stopped is not None
    # Arrivals queued behind the one slot were never sent: no record, not a record with no error.
    assert len(result.records) == server.requests == 2 and all(r.error for r in result.records)


def test_an_idle_connection_the_server_closed_is_not_reused():
    started = time.monotonic()
    with FakeServer(closes_idle_connections) as server:
        records = _run_schedule(server, [0.0, 0.5, 1.0])
    assert time.monotonic() - started < BOUND_S
    assert [r.error for r in records] == [None] * 3 and all(r.ok for r in records)
    assert server.connections == 3  # each request after a pause reconnected


def test_requests_fail_fast_while_the_server_is_down():
    started = time.monotonic()
    with FakeServer(answers_once_then_crashes) as server:
        records = _run_schedule(server, [0.0, 0.5, 0.6])
    assert time.monotonic() - started < BOUND_S
    assert records[0].ok
    assert all(r.error and r.error.startswith("connect: ") for r in records[1:]), [r.error for r in records]
