"""Streaming client for OpenAI-compatible /v1/completions: one request, every token chunk timed."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import aiohttp

from servesweep.loadgen.sse import SSEParser


@dataclass(slots=True)
class RequestRecord:
    """Timings of one request, in seconds since the point's start (perf_counter based)."""

    index: int
    warmup: bool
    requested_input_tokens: int
    requested_output_tokens: int
    scheduled_at: float | None = None
    sent_at: float = 0.0
    token_times: list[float] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.output_tokens == self.requested_output_tokens and bool(self.token_times)


def completion_payload(model: str, prompt: str, output_tokens: int, dialect: str = "vllm") -> dict:
    """A streaming /v1/completions body asking for exactly `output_tokens` tokens.

    Servers differ in how to forbid an early end of sequence: vLLM takes `ignore_eos`/`min_tokens`
    and needs `stream_options` for usage; `transformers serve` rejects unknown fields, takes a
    GenerationConfig as JSON, and always reports usage in its last chunk.
    """
    payload = {"model": model, "prompt": prompt, "max_tokens": output_tokens, "stream": True}
    if dialect == "transformers":
        payload["generation_config"] = json.dumps({"min_new_tokens": output_tokens, "do_sample": False})
        return payload
    return payload | {
        "min_tokens": output_tokens,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream_options": {"include_usage": True},
    }


async def stream_completion(
    session: aiohttp.ClientSession, url: str, payload: dict, record: RequestRecord, origin: float
) -> None:
    """Send one streaming request, filling `record` (errors are recorded, never raised)."""
    parser = SSEParser()
    clock = time.perf_counter
    record.sent_at = clock() - origin
    try:
        async with session.post(url, json=payload) as response:
            if response.status != 200:
                body = (await response.text())[:300]
                record.error = f"HTTP {response.status}: {body}"
                return
            async for chunk in response.content.iter_any():
                arrived = clock() - origin
                for data in parser.feed(chunk):
                    _handle_event(data, arrived, record)
            for data in parser.close():
                _handle_event(data, clock() - origin, record)
        if record.error is None and record.output_tokens is None:
            record.error = "stream ended without usage"
        elif record.error is None and record.output_tokens != record.requested_output_tokens:
            record.error = f"server produced {record.output_tokens} of {record.requested_output_tokens} tokens"
    except (aiohttp.ClientError, TimeoutError) as error:
        record.error = f"{type(error).__name__}: {error}"[:300]


def _handle_event(data: bytes, arrived: float, record: RequestRecord) -> None:
    if data == b"[DONE]":
        return
    try:
        event = json.loads(data)
    except json.JSONDecodeError:
        record.error = f"malformed event: {data[:100]!r}"
        return
    if "error" in event:
        record.error = str(event["error"].get("message", event["error"]))[:300]
        return
    choices = event.get("choices") or ()
    if choices and choices[0].get("text"):
        record.token_times.append(arrived)
    usage = event.get("usage")
    if usage:
        record.input_tokens = usage.get("prompt_tokens")
        record.output_tokens = usage.get("completion_tokens")
