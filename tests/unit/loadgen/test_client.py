"""The streaming client's HTTP framing, fed by hand: chunked bodies split anywhere, extensions, trailers."""

import asyncio

import pytest

from servesweep.loadgen.client import RequestRecord, StreamingConnection

TOKENS = 5
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        pass


def _event(i: int) -> bytes:
    return (b'data: {"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":" w%d",'
            b'"finish_reason":null}]}\n\n' % i)


USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":%d}}\n\ndata: [DONE]\n\n' % TOKENS


def _chunked(pieces: list[bytes], extension: bytes = b"", trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x%b\r\n%b\r\n" % (len(p), extension, p) for p in pieces)
    return HEAD + body + b"0\r\n" + trailer + b"\r\n"


def _feed(stream: bytes, cuts: list[int]) -> tuple[RequestRecord, list[float]]:
    """Send one request on a fresh connection and feed `stream` cut at `cuts`; each piece arrives at t=index."""
    ended: list[float] = []

    async def run() -> RequestRecord:
        connection = StreamingConnection(origin=0.0)
        connection.connection_made(_Transport())
        record = RequestRecord(0, False, 3, TOKENS)
        connection.send(b"GET", record, lambda c, r, t: ended.append(t), timeout_s=10)
        bounds = [0, *cuts, len(stream)]
        for i, (start, end) in enumerate(zip(bounds, bounds[1:], strict=False)):
            connection.data_received_at(stream[start:end], float(i + 1))
        record.settle()  # as the engine does once the point is over
        return record

    return asyncio.run(run()), ended


def test_one_token_per_chunk_split_at_every_byte_gives_the_same_record():
    stream = _chunked([_event(i) for i in range(TOKENS)] + [USAGE])
    for cut in range(1, len(stream)):
        record, ended = _feed(stream, [cut])
        assert record.ok, (cut, record.error)
        assert len(record.token_times) == TOKENS and len(ended) == 1


def test_arrival_time_of_each_token_is_the_read_that_completed_it():
    events = [_event(i) for i in range(TOKENS)]
    stream = _chunked([*events, USAGE])
    first_chunk_end = len(HEAD) + len(b"%x\r\n" % len(events[0])) + len(events[0]) + 2
    # head alone, then the first chunk short of its event's closing newline, then everything else
    record, ended = _feed(stream, [len(HEAD), first_chunk_end - 3])
    assert record.ok
    assert list(record.token_times) == [3.0] * TOKENS and ended == [3.0]
    record, _ = _feed(stream, [len(HEAD), first_chunk_end])
    assert list(record.token_times) == [2.0] + [3.0] * (TOKENS - 1)


@pytest.mark.parametrize("extension, trailer", [(b";name=value", b""), (b"", b"x-trailer: 1\r\n")])
def test_chunk_extensions_and_trailers(extension, trailer):
    stream = _chunked([_event(i) for i in range(TOKENS)] + [USAGE], extension, trailer)
    for cuts in ([], [len(stream) - 3], list(range(1, len(stream)))):
        record, ended = _feed(stream, cuts)
        assert record.ok and len(record.token_times) == TOKENS and len(ended) == 1


def test_several_events_in_one_chunk_and_one_event_across_chunks():
    events = b"".join(_event(i) for i in range(TOKENS))
    pieces = [events[:7], events[7:150], events[150:], USAGE]
    record, _ = _feed(_chunked(pieces), [])
    assert record.ok and len(record.token_times) == TOKENS


def test_http_error_status_keeps_the_body():
    body = b'{"error": {"message": "model not loaded"}}'
    stream = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body)
    record, ended = _feed(stream, [10])
    assert not record.ok and record.error == f"HTTP 503: {body.decode()}" and len(ended) == 1
