"""A zero-work OpenAI-compatible streaming server: the ground truth for load-generator accuracy.

It answers `POST /v1/completions` (and `/v1/chat/completions`) with `max_tokens` SSE chunks, one
token per chunk like vLLM, on a fixed schedule: the first token `ttft_ms` after the request arrived,
then one every `itl_ms`. It does no model work, so on a core of its own it serves far more tokens/s
than a Python client can read, and it logs when it really sent every chunk.

Clock: every timestamp is `time.perf_counter_ns()`, which on Linux reads CLOCK_MONOTONIC. That clock
is system-wide, so servesweep's client (also perf_counter) shares the server's time line on the same
machine. Peer tools are compared on durations only (their TTFT/ITL against the server's), which
needs no shared clock. A chunk's time is taken just before its `write`, so client arrival - server
send includes the loopback and both sides' overheads: exactly the error a client adds.

Request identity: the `X-Request-Id` header when given (servesweep sends one), else the server's
arrival counter. It comes back as the completion `id` ("cmpl-<key>"), which the peers record, so
every client request can be matched to the server's log.

Arrival: a request's `received_ns` is the kernel's receive stamp of its bytes (`SO_TIMESTAMPNS`, via
servesweep's `StampedTransport`), not when this loop got round to reading them, so a busy server
neither shifts its schedule nor blames its own read lag on the client. Chunks go out through the same
transport, one `send` each.

Timer resolution: libuv timers tick in milliseconds, so a chunk may leave up to ~1 ms after its
scheduled time. That is jitter in the schedule, not in the truth: the log holds actual send times.

Run: `python -m benchmarks.loadgen.zero_server --port 8000 --log out/server.npz` (127.0.0.1 only);
SIGTERM/SIGINT writes the log and exits. `start_subprocess()` does the same for tests and benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from servesweep.loadgen.stamped import StampedTransport

HOST = "127.0.0.1"
_FIRST_WORDS = 1000  # chunk texts cycle through the tokenizer's first words: one token each


@dataclass(frozen=True)
class ServerConfig:
    ttft_ms: float = 20.0
    itl_ms: float = 10.0
    model: str = "zero"
    vocab_size: int = 1024  # of the benchmark tokenizer (servesweep.platform.checkpoint.train_tokenizer)


@dataclass(slots=True)
class StreamLog:
    """One request as the server saw it (perf_counter_ns)."""

    key: str
    received_ns: int
    sent_ns: array = field(default_factory=lambda: array("q"))
    scheduled_ns: array = field(default_factory=lambda: array("q"))


def token_words(vocab_size: int) -> list[str]:
    from servesweep.platform.checkpoint import SPECIAL_TOKENS, synthetic_words

    return synthetic_words(min(_FIRST_WORDS, vocab_size - len(SPECIAL_TOKENS)))


class ZeroServer:
    """Holds the config, the pre-encoded chunk parts and the log of finished streams."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.log: list[StreamLog] = []
        self._counter = 0
        self._text_tails = [json.dumps(" " + w)[1:].encode() for w in token_words(config.vocab_size)]

    def next_key(self) -> str:
        self._counter += 1
        return str(self._counter)

    def chunk_tail(self, index: int, chat: bool, last: bool) -> bytes:
        """The bytes after `"text":"` (or `"content":"`) for token `index`."""
        finish = b'"length"' if last else b"null"
        word = self._text_tails[index % len(self._text_tails)]
        if chat:
            return word + b'},"finish_reason":' + finish + b"}]}\n\n"
        return word + b',"logprobs":null,"finish_reason":' + finish + b"}]}\n\n"

    def write_log(self, path: str | Path) -> None:
        write_log(self.log, path, self.config)


def write_log(streams: list[StreamLog], path: str | Path, config: ServerConfig) -> None:
    """Columnar log: one row per stream, chunk times flattened with offsets."""
    counts = np.array([len(s.sent_ns) for s in streams], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def flat(attr: str) -> np.ndarray:
        arrays = [np.frombuffer(getattr(s, attr), dtype=np.int64) for s in streams]
        return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path, keys=np.array([s.key for s in streams], dtype=str),
        received_ns=np.array([s.received_ns for s in streams], dtype=np.int64), offsets=offsets,
        sent_ns=flat("sent_ns"), scheduled_ns=flat("scheduled_ns"),
        ttft_ms=config.ttft_ms, itl_ms=config.itl_ms,
    )


@dataclass
class ServerLog:
    keys: np.ndarray
    received_ns: np.ndarray
    offsets: np.ndarray
    sent_ns: np.ndarray
    scheduled_ns: np.ndarray

    def sends(self, row: int) -> np.ndarray:
        return self.sent_ns[self.offsets[row] : self.offsets[row + 1]]

    def index(self) -> dict[str, int]:
        return {str(key): row for row, key in enumerate(self.keys)}


def read_log(path: str | Path) -> ServerLog:
    with np.load(path) as data:
        return ServerLog(data["keys"], data["received_ns"], data["offsets"], data["sent_ns"], data["scheduled_ns"])


class _Connection(asyncio.Protocol):
    """HTTP/1.1 keep-alive connection; requests are handled one after another."""

    def __init__(self, server: ZeroServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True

    def data_received_at(self, data: bytes, arrived: float) -> None:
        """`data` reached this host at perf_counter time `arrived` (the kernel's stamp)."""
        received = round(arrived * 1e9)
        self._buffer += data
        while True:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            method, path, headers = _parse_head(bytes(self._buffer[:head_end]))
            length = int(headers.get("content-length", "0"))
            end = head_end + 4 + length
            if len(self._buffer) < end:
                return
            body = bytes(self._buffer[head_end + 4 : end])
            del self._buffer[:end]
            self._route(method, path, headers, body, received)

    def _route(self, method: str, path: str, headers: dict[str, str], body: bytes, received: int) -> None:
        path = path.split("?", 1)[0]
        if method == "GET" and path in ("/health", "/ping"):
            self._reply(200, b"{}")
        elif method == "GET" and path == "/v1/models":
            model = self._server.config.model
            self._reply(200, json.dumps({"object": "list", "data": [{"id": model, "object": "model",
                                                                    "owned_by": "zero"}]}).encode())
        elif method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
            self._generate(json.loads(body or b"{}"), path.endswith("chat/completions"), headers, received)
        else:
            self._reply(404, b'{"error": {"message": "not found"}}')

    def _reply(self, status: int, body: bytes) -> None:
        assert self._transport is not None
        head = f"HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        self._transport.write(head.encode() + body)

    def _generate(self, request: dict, chat: bool, headers: dict[str, str], received: int) -> None:
        server = self._server
        tokens = int(request.get("max_tokens") or request.get("max_completion_tokens") or 16)
        key = headers.get("x-request-id") or server.next_key()
        log = StreamLog(key=key, received_ns=received)
        stream = _Stream(self, server, log, tokens, chat, request)
        if request.get("stream"):
            assert self._transport is not None
            self._transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                  b"transfer-encoding: chunked\r\n\r\n")
            stream.schedule_next()
        else:
            delay_ms = server.config.ttft_ms + (tokens - 1) * server.config.itl_ms
            asyncio.get_running_loop().call_later(delay_ms / 1000.0, stream.finish_unary)


class _Stream:
    """Emits one request's chunks at received + ttft + k * itl (absolute schedule: no drift)."""

    __slots__ = ("_conn", "_server", "_log", "_tokens", "_chat", "_head", "_sent", "_start_ns", "_itl_ns",
                 "_loop", "_prompt_tokens")

    def __init__(self, conn: _Connection, server: ZeroServer, log: StreamLog, tokens: int, chat: bool,
                 request: dict) -> None:
        self._conn, self._server, self._log, self._tokens, self._chat = conn, server, log, tokens, chat
        model = json.dumps(request.get("model") or server.config.model)
        kind = "chat.completion.chunk" if chat else "text_completion"
        choice = '{"index":0,"delta":{"content":"' if chat else '{"index":0,"text":"'
        self._head = (f'data: {{"id":"cmpl-{log.key}","object":"{kind}","created":0,"model":{model},'
                      f'"choices":[{choice}').encode()
        self._sent = 0
        self._start_ns = log.received_ns + int(server.config.ttft_ms * 1e6)
        self._itl_ns = int(server.config.itl_ms * 1e6)
        self._loop = asyncio.get_running_loop()
        self._prompt_tokens = _prompt_words(request)

    def schedule_next(self) -> None:
        due = self._start_ns + self._sent * self._itl_ns
        self._log.scheduled_ns.append(due)
        self._loop.call_later(max(0.0, (due - time.perf_counter_ns()) / 1e9), self._emit)

    def _emit(self) -> None:
        transport = self._conn._transport
        if self._conn._closed or transport is None:
            return  # the client went away: the stream is not logged as complete
        last = self._sent == self._tokens - 1
        payload = self._head + self._server.chunk_tail(self._sent, self._chat, last)
        self._log.sent_ns.append(time.perf_counter_ns())
        transport.write(b"%x\r\n%b\r\n" % (len(payload), payload))
        self._sent += 1
        if not last:
            self.schedule_next()
            return
        usage = self._usage()
        tail = b'data: {"id":"cmpl-%b","object":"text_completion","created":0,"choices":[],"usage":%b}\n\n' % (
            self._log.key.encode(), usage)
        done = b"data: [DONE]\n\n"
        transport.write(b"%x\r\n%b\r\n%x\r\n%b\r\n0\r\n\r\n" % (len(tail), tail, len(done), done))
        self._server.log.append(self._log)

    def finish_unary(self) -> None:
        transport = self._conn._transport
        if self._conn._closed or transport is None:
            return
        words = self._server._text_tails
        text = "".join(json.loads(b'"' + words[i % len(words)]) for i in range(self._tokens))
        body = json.dumps({"id": f"cmpl-{self._log.key}", "object": "text_completion", "created": 0,
                           "choices": [{"index": 0, "text": text, "finish_reason": "length"}],
                           "usage": json.loads(self._usage())}).encode()
        self._log.scheduled_ns.append(self._start_ns + (self._tokens - 1) * self._itl_ns)
        self._log.sent_ns.append(time.perf_counter_ns())
        self._conn._reply(200, body)
        self._server.log.append(self._log)

    def _usage(self) -> bytes:
        prompt = self._prompt_tokens
        return b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}' % (
            prompt, self._tokens, prompt + self._tokens)


def _prompt_words(request: dict) -> int:
    """Prompt tokens as the benchmark tokenizer counts them: words + the BOS token."""
    prompt = request.get("prompt")
    if prompt is None:
        prompt = " ".join(str(m.get("content", "")) for m in request.get("messages", []))
    if isinstance(prompt, list):
        prompt = " ".join(map(str, prompt))
    return len(str(prompt).split()) + 1


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, path, headers


class Listener:
    """Accepts connections on 127.0.0.1 in the running loop, each one a stamped transport."""

    def __init__(self, state: ZeroServer, port: int = 0) -> None:
        self._state = state
        self._loop = asyncio.get_running_loop()
        self.socket = socket.socket()
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((HOST, port))
        self.socket.listen(4096)
        self.socket.setblocking(False)
        self.port: int = self.socket.getsockname()[1]
        self._loop.add_reader(self.socket.fileno(), self._accept)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            StampedTransport(sock, _Connection(self._state), self._loop)

    def close(self) -> None:
        self._loop.remove_reader(self.socket.fileno())
        self.socket.close()


async def serve(config: ServerConfig, port: int = 0) -> tuple[ZeroServer, Listener]:
    """Start listening on 127.0.0.1 in the running loop; returns the state and the listener."""
    state = ZeroServer(config)
    return state, Listener(state, port)


async def _main(config: ServerConfig, port: int, log_path: str | None, announce: Callable[[int], None]) -> None:
    state, listener = await serve(config, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    announce(listener.port)
    await stop.wait()
    listener.close()
    if log_path:
        state.write_log(log_path)


def _run(coroutine) -> None:
    try:
        import uvloop

        uvloop.run(coroutine)
    except ImportError:
        asyncio.run(coroutine)


class ServerProcess:
    """A zero server in a subprocess; `stop()` makes it write its log and waits for it."""

    def __init__(self, process: subprocess.Popen, port: int, log_path: str | None) -> None:
        self.process, self.port, self.log_path = process, port, log_path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self, timeout_s: float = 30.0) -> ServerLog | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout_s)
        return read_log(self.log_path) if self.log_path else None


def start_subprocess(config: ServerConfig, log_path: str | Path | None = None, cpu: int | None = None,
                     port: int = 0) -> ServerProcess:
    """Start a server process (pinned to `cpu` when given) and wait until it listens."""
    command = [sys.executable, "-m", "benchmarks.loadgen.zero_server", "--port", str(port),
               "--ttft-ms", str(config.ttft_ms), "--itl-ms", str(config.itl_ms), "--model", config.model,
               "--vocab-size", str(config.vocab_size)]
    if log_path:
        command += ["--log", str(log_path)]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=root)
    assert process.stdout is not None
    line = process.stdout.readline()  # "listening <port>"; empty when it died
    if not line.startswith("listening"):
        process.kill()
        raise RuntimeError(f"zero server did not start (exit {process.wait()})")
    return ServerProcess(process, int(line.split()[1]), str(log_path) if log_path else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ttft-ms", type=float, default=ServerConfig.ttft_ms)
    parser.add_argument("--itl-ms", type=float, default=ServerConfig.itl_ms)
    parser.add_argument("--model", default=ServerConfig.model)
    parser.add_argument("--vocab-size", type=int, default=ServerConfig.vocab_size)
    parser.add_argument("--log", help="write the send-time log here (.npz) on SIGTERM/SIGINT")
    args = parser.parse_args(argv)
    config = ServerConfig(ttft_ms=args.ttft_ms, itl_ms=args.itl_ms, model=args.model, vocab_size=args.vocab_size)
    _run(_main(config, args.port, args.log, lambda port: print(f"listening {port}", flush=True)))


if __name__ == "__main__":
    main()
