"""Per-chunk CPU cost of StreamingConnection's receive path: a vLLM-like token chunk fed to data_received_at.

`python benchmarks/loadgen/bench_fast_path.py [capture]`: the fast path as every request takes it, or with the
stream kept (a conversation turn's answer). Timers are stubbed: only the read path is measured."""

from __future__ import annotations

import statistics
import sys
import time

from servesweep.loadgen.client import RequestRecord, StreamingConnection

TOKENS = 256


def _chunk(payload: bytes) -> bytes:
    event = b"data: " + payload + b"\n\n"
    return f"{len(event):x}\r\n".encode() + event + b"\r\n"


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
TOKEN = _chunk(b'{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,'
               b'"text":" word","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}')
USAGE = _chunk(b'{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[],'
               b'"usage":{"prompt_tokens":10,"completion_tokens":256,"total_tokens":266}}')
END = _chunk(b"[DONE]") + b"0\r\n\r\n"


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        pass


class _Loop:
    def call_later(self, delay: float, callback: object) -> _Timer:
        return _Timer()


class _Timer:
    def cancel(self) -> None:
        pass


def one_stream(connection: StreamingConnection, capture: bool) -> float:
    record = RequestRecord(0, False, 10, TOKENS)
    if capture and hasattr(record, "answer_chunks"):
        record.answer_chunks = []
    connection.send(b"", record, lambda c, r, t: None, 60.0)
    connection.data_received_at(HEAD, 0.0)
    start = time.process_time()  # CPU time: a shared machine's descheduling is not the path's cost
    for _ in range(TOKENS):
        connection.data_received_at(TOKEN, 0.0)
    elapsed = time.process_time() - start
    connection.data_received_at(USAGE + END, 0.0)
    assert len(record.token_times) == TOKENS, len(record.token_times)
    return elapsed / TOKENS


def main() -> None:
    import asyncio

    capture = "capture" in sys.argv[1:]
    asyncio.get_running_loop = lambda: _Loop()  # type: ignore[assignment]  # timers are not what is measured
    connection = StreamingConnection(0.0)
    connection.connection_made(_Transport())  # type: ignore[arg-type]
    for _ in range(200):
        one_stream(connection, capture)
    runs = [statistics.mean(one_stream(connection, capture) for _ in range(200)) for _ in range(15)]
    print(f"{'capture' if capture else 'fast path'}: {statistics.median(runs) * 1e9:.0f} ns/chunk "
          f"(median of 15 x 200 streams x {TOKENS} chunks; min {min(runs) * 1e9:.0f})")


if __name__ == "__main__":
    main()
