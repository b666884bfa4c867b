"""A lean Server-Sent Events parser: bytes in, `data:` payloads out.

Network reads split events anywhere (mid-line, mid-field) and may carry several events at once, so
the parser keeps the unfinished tail between feeds. Only `data` fields matter for OpenAI streams;
comments (`:`), `event:`, `id:` and `retry:` lines are skipped. Multi-line data joins with '\n'.
"""

from __future__ import annotations


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
