"""Streaming client for OpenAI-compatible /v1/completions: every token chunk timed, nothing more.

A lean HTTP/1.1 client on a raw asyncio protocol (uvloop when installed): one keep-alive connection
streams one response at a time, chunked bodies are decoded in place, SSE events are classified by
byte search (`TokenScanner`), and a read's arrival time is stored once per token chunk in an
`array('d')`. On Linux over plain HTTP that arrival time is the kernel's receive stamp of the bytes
(`stamped.StampedTransport`), so a loop busy with other streams delays the reading, not the timing.
No per-token Python objects and no JSON parse per token: on a small machine the client's CPU time per
token is the limit of how many streams it can keep up with (benchmarks/loadgen/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from servesweep.loadgen.sse import TokenScanner, is_plain_token
from servesweep.loadgen.stamped import open_stamped, rx_timestamps_supported

_clock = time.perf_counter  # CLOCK_MONOTONIC on Linux: one time line for every process of the machine


@dataclass(slots=True)
class RequestRecord:
    """Timings of one request, in seconds since the point's start (perf_counter based)."""

    index: int
    warmup: bool
    requested_input_tokens: int
    requested_output_tokens: int  # max_tokens
    scheduled_at: float | None = None
    sent_at: float = 0.0
    token_times: Sequence[float] = field(default_factory=lambda: array("d"))
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    request_id: str = ""  # sent as X-Request-Id: joins the record to server-side logs
    stream: TokenScanner | None = field(default=None, repr=False)  # read by `settle`, after the point
    min_output_tokens: int | None = None  # fewest tokens an ok response has; None: requested_output_tokens
    cooldown: bool = False  # sent in an open loop's cool-down tail: excluded like a warm-up
    conversation: int | None = None  # which conversation the request is a turn of; None: not a conversation's
    turn: int | None = None  # its 0-based turn in that conversation
    # A conversation turn's token events (raw SSE payloads), kept to rebuild the answer for the next turn;
    # None (every other request): the stream is not kept and the fast path stays as lean as before.
    answer_chunks: list[bytes] | None = field(default=None, repr=False)

    def settle(self) -> None:
        """Token counts from the stream's `usage`, and why the request is not ok if it is not. Deferred
        until the point ends: JSON parsing while hundreds of streams are live would delay their reads."""
        stream, self.stream = self.stream, None
        if stream is None or self.error is not None:
            return
        if stream.error is not None:
            self.error = stream.error
        elif stream.usage is None:
            self.error = "stream ended without usage"
        else:
            self.input_tokens = stream.usage.get("prompt_tokens")
            self.output_tokens = stream.usage.get("completion_tokens")
            if not self._length_ok():
                self.error = f"server produced {self.output_tokens} of {self._asked()} tokens"

    def _length_ok(self) -> bool:
        fewest = self.requested_output_tokens if self.min_output_tokens is None else self.min_output_tokens
        return self.output_tokens is not None and fewest <= self.output_tokens <= self.requested_output_tokens

    def _asked(self) -> str:
        fewest = self.min_output_tokens
        if fewest is None or fewest == self.requested_output_tokens:
            return str(self.requested_output_tokens)
        return f"{fewest}-{self.requested_output_tokens}"

    @property
    def ok(self) -> bool:
        return self.error is None and self._length_ok() and len(self.token_times) > 0

    def answer(self) -> str:
        """The generated text of a request whose stream was kept (`answer_chunks`), in stream order."""
        return "".join(_event_text(payload) for payload in self.answer_chunks or ())


def _event_text(payload: bytes) -> str:
    """The text one token event carries: a completion's choices[0].text or a chat delta's content."""
    try:
        event = json.loads(payload)
        choice = event["choices"][0]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError):
        return ""
    text = choice.get("text")
    if text is None:
        text = (choice.get("delta") or {}).get("content")
    return text if isinstance(text, str) else ""


@dataclass(frozen=True)
class Sampling:
    """What each request asks the server for besides its prompt and length (picklable: crosses to workers).

    The defaults measure a fixed amount of work per request: greedy, exactly max_tokens tokens.
    `min_tokens` None: max_tokens.
    """

    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    min_tokens: int | None = None
    ignore_eos: bool = True
    stop: tuple[str, ...] = ()
    extra: tuple[tuple[str, object], ...] = ()  # further request fields, sent as given

    def min_for(self, output_tokens: int) -> int:
        """min_tokens of a request asking for `output_tokens` at most (never above it)."""
        return output_tokens if self.min_tokens is None else min(self.min_tokens, output_tokens)


GREEDY = Sampling()

Api = str  # "completions" (/v1/completions, a prompt) or "chat" (/v1/chat/completions, messages)
ROUTES = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


@dataclass(frozen=True, slots=True)
class Prompt:
    """One request's input (picklable: crosses to workers): a prompt text, or chat messages (role, content),
    with the lengths it asks for: its prompt's tokens as built or counted, and its max_tokens."""

    input_tokens: int
    output_tokens: int
    text: str = ""
    messages: tuple[tuple[str, str], ...] = ()
    # A conversation's turn (servesweep.loadgen.lanes): text is only the new user message; the engine adds the
    # earlier turns and the server's own answers when it sends it. None: a request of its own.
    conversation: int | None = None
    turn: int = 0  # 0-based turn within the conversation
    lane: int = 0  # turns of one lane go one after another, each once the one before it was answered


def as_prompt(made: str | Prompt, input_tokens: int, output_tokens: int) -> Prompt:
    """A prompt maker's result as a Prompt: a plain string asks for the point's own lengths."""
    return made if isinstance(made, Prompt) else Prompt(input_tokens, output_tokens, text=made)


def request_payload(model: str, prompt: Prompt, api: Api = "completions", dialect: str = "vllm",
                    sampling: Sampling = GREEDY) -> dict[str, Any]:
    """The streaming body of one request: completions with `prompt.text`, or chat with `prompt.messages`
    (a text prompt becomes one user message). Chat asks for usage in the stream like completions does."""
    payload = completion_payload(model, prompt.text, prompt.output_tokens, dialect, sampling)
    if api != "chat":
        return payload
    del payload["prompt"]
    messages = prompt.messages or (("user", prompt.text),)
    return {"model": model, "messages": [{"role": role, "content": content} for role, content in messages],
            **{k: v for k, v in payload.items() if k != "model"}}


def completion_payload(model: str, prompt: str, output_tokens: int, dialect: str = "vllm",
                       sampling: Sampling = GREEDY) -> dict[str, Any]:
    """A streaming /v1/completions body asking for `output_tokens` tokens at most, sampled as `sampling` says.

    Servers differ in how to forbid an early end of sequence: vLLM takes `ignore_eos`/`min_tokens`
    and needs `stream_options` for usage; `transformers serve` rejects unknown fields, takes a
    GenerationConfig as JSON, and always reports usage in its last chunk.
    """
    payload: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": output_tokens, "stream": True}
    if sampling.stop:
        payload["stop"] = list(sampling.stop)
    if dialect == "transformers":
        config: dict[str, Any] = {"min_new_tokens": sampling.min_for(output_tokens),
                                  "do_sample": sampling.temperature > 0}
        if sampling.temperature > 0:
            config |= {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k}
        payload["generation_config"] = json.dumps({k: v for k, v in config.items() if v is not None})
        return payload | dict(sampling.extra)
    payload |= {"min_tokens": sampling.min_for(output_tokens), "ignore_eos": sampling.ignore_eos,
                "temperature": sampling.temperature}
    if sampling.top_p is not None:
        payload["top_p"] = sampling.top_p
    if sampling.top_k is not None:
        payload["top_k"] = sampling.top_k
    return payload | {"stream_options": {"include_usage": True}} | dict(sampling.extra)


@dataclass(frozen=True)
class Target:
    """Where requests go, parsed once from the base URL."""

    host: str
    port: int
    tls: bool
    path: str
    kernel_stamps: bool = False  # time reads by the kernel's receive stamp (plain HTTP on Linux)

    @classmethod
    def from_base_url(cls, base_url: str, route: str = ROUTES["completions"]) -> Target:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port][/prefix], got {base_url!r}")
        tls = parts.scheme == "https"
        return cls(parts.hostname, parts.port or (443 if tls else 80), tls, parts.path.rstrip("/") + route,
                   kernel_stamps=not tls and rx_timestamps_supported())

    def request_bytes(self, payload: dict[str, Any], request_id: str, headers: Sequence[tuple[str, str]] = ()) -> bytes:
        """The complete HTTP request, built before the clock starts so a send is one write; `headers` are
        added as given (an external endpoint's auth header)."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
        head = (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Accept: text/event-stream\r\nX-Request-Id: {request_id}\r\n{extra}Content-Length: {len(body)}"
                "\r\n\r\n")
        return head.encode() + body

    async def connect(self, origin: float, read_lags: array[float] | None = None,
                      timeout_s: float | None = None) -> StreamingConnection:
        """Open a keep-alive connection within `timeout_s` (a SYN that is never answered would otherwise hang
        for the kernel's minutes of retries); with kernel stamps, each read's kernel wait goes to `read_lags`."""
        try:
            return await asyncio.wait_for(self._open(origin, read_lags), timeout_s)
        except TimeoutError as error:
            if error.errno is not None or timeout_s is None:  # the kernel's own ETIMEDOUT
                raise
            raise TimeoutError(f"no connection in {timeout_s:g} s") from None

    async def _open(self, origin: float, read_lags: array[float] | None) -> StreamingConnection:
        if self.kernel_stamps:
            protocol = StreamingConnection(origin)
            await open_stamped(self.host, self.port, protocol, read_lags)
            return protocol
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if self.tls else None
        _, protocol = await loop.create_connection(
            lambda: StreamingConnection(origin), self.host, self.port, ssl=context,
            server_hostname=self.host if self.tls else None)
        return protocol


# HTTP body framing states
_HEAD, _CHUNKED, _LENGTH, _UNTIL_CLOSE, _IDLE = range(5)
_NEVER = float("inf")
_TIMER_SLACK_S = 0.002  # libuv timers are ms-granular and may fire a little early: no second timer for that

Done = Callable[["StreamingConnection", RequestRecord, float], None]


class StreamingConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; `send` starts a request, `on_done` fires when it ends.

    A request in flight has three bounds: the whole response (`timeout_s`), its first byte
    (`first_byte_s`) and the silence between reads once bytes flow (`idle_s`). One timer per request
    serves all three: a read only stores its time, and the timer, when it fires, either fails the
    request or re-arms itself for the next bound that could be due.
    """

    def __init__(self, origin: float) -> None:
        self._origin = origin
        self._transport: asyncio.Transport | None = None
        self.open = False
        self._state = _IDLE
        self._record: RequestRecord | None = None
        self._on_done: Done | None = None
        self._raw = b""
        self._left = 0  # bytes left in the current chunk (chunked) or body (content-length)
        self._status = 0
        self._keep_alive = True
        self._scanner = TokenScanner()
        self._error_body = b""
        self._timer: asyncio.TimerHandle | None = None
        self._limits = (0.0, _NEVER, _NEVER)  # (whole response, first byte, idle) in seconds
        self._last_read = -1.0  # time of the request's latest read; < 0: nothing received yet

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.open = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self._record is None:
            return
        if self._state == _UNTIL_CLOSE:
            self._finish(_clock() - self._origin)
        else:
            self._fail(f"connection lost: {exc or 'closed by server'}"[:300])

    def send(self, request: bytes, record: RequestRecord, on_done: Done, timeout_s: float,
             first_byte_s: float = _NEVER, idle_s: float = _NEVER) -> None:
        assert self._transport is not None and self._record is None
        self._record, self._on_done = record, on_done
        self._state, self._raw, self._status, self._keep_alive = _HEAD, b"", 0, True
        self._scanner, self._error_body = TokenScanner(record.answer_chunks), b""
        self._limits, self._last_read = (timeout_s, first_byte_s, idle_s), -1.0
        self._timer = asyncio.get_running_loop().call_later(min(timeout_s, first_byte_s), self._check)
        record.sent_at = _clock() - self._origin
        self._transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.data_received_at(data, _clock())

    def data_received_at(self, data: bytes, arrived: float) -> None:
        """`data` reached this host at perf_counter time `arrived`."""
        arrived -= self._origin
        if self._record is None:
            return  # bytes after a finished response (a misbehaving server): ignore
        self._last_read = arrived  # all a read does for the timeouts (see `_check`)
        if self._state == _CHUNKED and self._left == -1 and not self._raw and self._status == 200 \
                and self._scanner.idle and _is_token_chunk(data):
            record = self._record
            record.token_times.append(arrived)  # type: ignore[attr-defined]
            if record.answer_chunks is not None:  # a conversation turn: its text is the next turn's history
                record.answer_chunks.append(data[data.find(b"\r\n") + 8 : -4])
            return
        if self._state == _HEAD:
            rest = self._read_head(data)
            if rest is None:
                return
            data = rest
        if self._state == _CHUNKED:
            body, complete = self._dechunk(data)
        elif self._state == _LENGTH:
            body, complete = data[: self._left], len(data) >= self._left
            self._left -= len(body)
        else:
            body, complete = data, False
        self._consume(body, arrived)
        if complete:
            self._finish(arrived)

    def _read_head(self, data: bytes) -> bytes | None:
        raw = self._raw + data
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            self._raw = raw
            return None
        headers = _headers(raw[:end])
        self._status = int(headers[":status"])
        self._keep_alive = headers.get("connection") != "close"
        self._raw = b""
        if "chunked" in headers.get("transfer-encoding", ""):
            self._state, self._left = _CHUNKED, -1
        elif "content-length" in headers:
            self._state, self._left = _LENGTH, int(headers["content-length"])
        else:
            self._state, self._keep_alive = _UNTIL_CLOSE, False
        return raw[end + 4 :]

    def _dechunk(self, data: bytes) -> tuple[bytes, bool]:
        """Decode chunked framing. `_left`: bytes left in a chunk, -1 size line next, -3 CRLF after data
        next, -2 trailer lines until the empty one that ends the body. A whole chunk in the buffer is
        taken in one step: one token per chunk makes that the common case."""
        raw = self._raw + data if self._raw else data
        parts, pos, size = [], 0, len(raw)
        while pos < size:
            left = self._left
            if left > 0:
                piece = raw[pos : pos + left]
                parts.append(piece)
                pos += len(piece)
                self._left = left - len(piece) or -3
                continue
            line_end = raw.find(b"\r\n", pos)
            if line_end < 0:
                break
            line, pos = raw[pos:line_end], line_end + 2
            if left == -3:
                self._left = -1
            elif left == -1:
                try:
                    chunk_size = int(line, 16)
                except ValueError:  # chunk extensions
                    chunk_size = int(line.split(b";", 1)[0], 16)
                end = pos + chunk_size
                if chunk_size and raw[end : end + 2] == b"\r\n":
                    parts.append(raw[pos:end])
                    pos = end + 2
                else:
                    self._left = chunk_size or -2
            elif not line:
                self._raw = b""
                return b"".join(parts) if len(parts) != 1 else parts[0], True
        self._raw = raw[pos:]
        return b"".join(parts) if len(parts) != 1 else parts[0], False

    def _consume(self, body: bytes, arrived: float) -> None:
        if not body:
            return
        if self._status != 200:
            self._error_body += body
            return
        tokens = self._scanner.feed(body)
        if tokens:
            record = self._record
            assert record is not None
            times = record.token_times
            for _ in range(tokens):
                times.append(arrived)  # type: ignore[attr-defined]

    def _finish(self, arrived: float) -> None:
        record = self._record
        assert record is not None
        if self._status == 200:
            tokens = self._scanner.close()
            for _ in range(tokens):
                record.token_times.append(arrived)  # type: ignore[attr-defined]
            record.stream = self._scanner
        else:
            record.error = f"HTTP {self._status}: {self._error_body[:300].decode(errors='replace')}"
        self._complete(arrived)

    def _fail(self, error: str) -> None:
        record = self._record
        assert record is not None
        record.error = record.error or error
        self._keep_alive = False
        self._complete(_clock() - self._origin)

    def _check(self) -> None:
        """The request's timer: fail it if a bound has passed, else re-arm for the earliest one left."""
        record = self._record
        if record is None:
            return
        total_s, first_byte_s, idle_s = self._limits
        now = _clock() - self._origin + _TIMER_SLACK_S
        end = record.sent_at + total_s
        if self._last_read < 0:
            due, why = record.sent_at + first_byte_s, f"no response byte in {first_byte_s:g} s"
        else:
            due, why = self._last_read + idle_s, f"stream idle for {idle_s:g} s"
        if now >= end:
            self._fail(f"TimeoutError: no complete response in {total_s:g} s")
        elif now >= due:
            self._fail(f"TimeoutError: {why}")
        else:
            self._timer = asyncio.get_running_loop().call_later(min(due, end) - now, self._check)

    def _complete(self, arrived: float) -> None:
        record, on_done = self._record, self._on_done
        assert record is not None and on_done is not None
        if self._timer is not None:
            self._timer.cancel()
        self._record, self._on_done, self._state = None, None, _IDLE
        if not self._keep_alive and self._transport is not None:
            self.open = False
            self._transport.abort()
        on_done(self, record, arrived)


def _headers(head: bytes) -> dict[str, str]:
    """Status (as ":status") and lower-cased header names and values of a response head."""
    lines = head.decode("latin-1").lower().split("\r\n")
    headers = {":status": lines[0].split(" ", 2)[1]}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return headers


def _is_token_chunk(data: bytes) -> bool:
    """Exactly one whole HTTP chunk holding one single-line SSE event that carries a token and nothing
    to parse: the shape of nearly every read of a stream that keeps up. Checked with a handful of byte
    searches, so such a read skips the general decoder and scanner (same verdict, less CPU)."""
    size_end = data.find(b"\r\n", 0, 10)
    if size_end <= 0 or not data.endswith(b"\n\n\r\n") or not data.startswith(b"data: ", size_end + 2):
        return False
    try:
        if int(data[:size_end], 16) != len(data) - size_end - 4:
            return False
    except ValueError:  # a chunk extension: the general decoder's job
        return False
    payload = data[size_end + 8 : -4]
    return b"\n" not in payload and b"\r" not in payload and is_plain_token(payload)
