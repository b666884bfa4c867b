"""A lean Server-Sent Events parser: bytes in, `data:` payloads out.

Network reads split events anywhere (mid-line, mid-field) and may carry several events at once, so
the parser keeps the unfinished tail between feeds. Only `data` fields matter for OpenAI streams;
comments (`:`), `event:`, `id:` and `retry:` lines are skipped. Multi-line data joins with '\n'.
"""

from __future__ import annotations

import json
from typing import Any


class SSEParser:
    __slots__ = ("_buffer", "_data")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """Return the data payload of every event completed by this chunk."""
        buffer = self._buffer + chunk
        events: list[bytes] = []
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        self._buffer = buffer[start:]
        return events

    def close(self) -> list[bytes]:
        """Flush an event the stream ended without a blank line after."""
        events = self.feed(b"\n\n") if (self._buffer or self._data) else []
        return events


class TokenScanner:
    """Counts the token-bearing events of an OpenAI completions (or chat) SSE stream without a JSON parse per chunk.

    A token chunk is found with a byte search for a non-empty `"text"` (chat: delta `"content"`) value; JSON
    keys cannot occur inside an encoded string (its quotes are escaped), so the search does not misfire on generated
    text. Only the rare events that carry `usage` or `error` are parsed with `json.loads`. The fast
    path handles `data: {...}\\n\\n` events; anything else (CRLF, comments, multi-line data) falls back
    to the general `SSEParser` for the rest of the stream.
    """

    __slots__ = ("_tail", "_parser", "_usage", "_usage_payload", "_error", "done", "_kept")

    def __init__(self, kept: list[bytes] | None = None) -> None:
        self._kept = kept  # where to append the payload of each token event; None: nowhere (the default)
        self._tail = b""
        self._parser: SSEParser | None = None
        self._usage: dict[str, Any] | None = None
        self._usage_payload: bytes | None = None  # parsed on first look: the stream's end stays cheap
        self._error: str | None = None
        self.done = False

    @property
    def usage(self) -> dict[str, Any] | None:
        """The stream's `usage` object (its JSON is parsed here, on first access, not while streaming)."""
        if self._usage_payload is not None:
            payload, self._usage_payload = self._usage_payload, None
            self._parse(payload)
        return self._usage

    @property
    def error(self) -> str | None:
        """A server error event's message, or why the usage event could not be read."""
        self.usage  # noqa: B018 - a pending usage payload may be malformed
        return self._error

    def feed(self, chunk: bytes) -> int:
        """Scan a piece of the body; return how many token-bearing events it completed."""
        if self._parser is not None:
            return self._count(self._parser.feed(chunk))
        if not self._tail and chunk.startswith(b"data: ") and chunk.find(b"\n") == len(chunk) - 2 \
                and chunk.endswith(b"\n\n") and b"\r" not in chunk:
            return self._classify(chunk[6:-2])  # fast path: exactly one single-line event
        buffer = self._tail + chunk if self._tail else chunk
        if b"\r" in buffer:
            self._parser = SSEParser()
            self._tail = b""
            return self._count(self._parser.feed(buffer))
        events = buffer.split(b"\n\n")
        self._tail = events.pop()
        tokens = 0
        for event in events:
            if event.startswith(b"data: ") and b"\n" not in event:
                tokens += self._classify(event[6:])
            elif event:
                tokens += self._count(SSEParser().feed(event + b"\n\n"))
        return tokens

    @property
    def idle(self) -> bool:
        """Between events on the fast path: a whole event may be classified without `feed`."""
        return not self._tail and self._parser is None

    def close(self) -> int:
        """Flush an event the stream ended without a blank line after."""
        if self._parser is not None:
            return self._count(self._parser.close())
        tail, self._tail = self._tail, b""
        return self._count(SSEParser().feed(tail + b"\n\n")) if tail.strip() else 0

    def _count(self, payloads: list[bytes]) -> int:
        return sum(self._classify(payload) for payload in payloads)

    def _classify(self, payload: bytes) -> int:
        token = _has_text(payload)
        if token and self._kept is not None:
            self._kept.append(payload)
        if _has_usage(payload):
            self._usage_payload = payload
        elif b'"error"' in payload and not token:
            self._parse(payload)
        elif payload == b"[DONE]":
            self.done = True
        return token

    def _parse(self, payload: bytes) -> None:
        try:
            event = json.loads(payload)
        except json.JSONDecodeError:
            self._error = f"malformed event: {payload[:100]!r}"
            return
        if not isinstance(event, dict):
            return
        if "error" in event:
            error = event["error"]
            self._error = str(error.get("message", error) if isinstance(error, dict) else error)[:300]
        if isinstance(event.get("usage"), dict):
            self._usage = event["usage"]


def is_plain_token(payload: bytes) -> bool:
    """The payload of one event that `TokenScanner` counts as a token and need not parse (no usage)."""
    return _has_text(payload) == 1 and not _has_usage(payload)


def _has_usage(payload: bytes) -> bool:
    """The event carries a `usage` object (servers send `"usage":null` on every other event)."""
    return b'"usage"' in payload and b'"usage":null' not in payload


_JSON_SPACE = (b" ", b"\n", b"\r", b"\t")


def _has_text(payload: bytes) -> int:
    """1 when the event carries a non-empty `"text"` (completions) or delta `"content"` (chat) value, compact
    or spaced JSON, else 0."""
    at = payload.find(b'"text":"')
    if at >= 0:  # compact JSON, as servers send it
        return 0 if payload[at + 8 : at + 9] == b'"' else 1
    at = payload.find(b'"content":"')
    if at >= 0:
        return 0 if payload[at + 11 : at + 12] == b'"' else 1
    if b'"content":' in payload and b'"text":' not in payload:
        return _spaced(payload, payload.find(b'"content":') + 10)
    at = payload.find(b'"text":')
    if at < 0:
        return 0
    return _spaced(payload, at + 7)


def _spaced(payload: bytes, at: int) -> int:
    """1 when a non-empty string starts at `at` after optional JSON space."""
    while payload[at : at + 1] in _JSON_SPACE:
        at += 1
    return 1 if payload[at : at + 1] == b'"' and payload[at + 1 : at + 2] != b'"' else 0
