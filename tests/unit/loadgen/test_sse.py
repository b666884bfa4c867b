from servesweep.loadgen.sse import SSEParser

STREAM = (
    b'data: {"a": 1}\n\ndata: {"b": 2}\r\n\r\n: keep-alive comment\n\n'
    b"event: x\ndata: line1\ndata: line2\n\ndata: [DONE]\n\n"
)
EXPECTED = [b'{"a": 1}', b'{"b": 2}', b"line1\nline2", b"[DONE]"]


def test_whole_stream_in_one_chunk():
    assert SSEParser().feed(STREAM) == EXPECTED


def test_every_split_point_gives_the_same_events():
    for cut in range(len(STREAM) + 1):
        parser = SSEParser()
        assert parser.feed(STREAM[:cut]) + parser.feed(STREAM[cut:]) + parser.close() == EXPECTED, cut


def test_byte_at_a_time():
    parser = SSEParser()
    events = [event for i in range(len(STREAM)) for event in parser.feed(STREAM[i : i + 1])]
    assert events == EXPECTED


def test_event_without_trailing_blank_line_is_flushed_on_close():
    parser = SSEParser()
    assert parser.feed(b"data: tail") == []
    assert parser.close() == [b"tail"]
    assert parser.close() == []


def test_data_without_space_after_colon():
    assert SSEParser().feed(b"data:{}\n\n") == [b"{}"]


# --- TokenScanner: the client's fast path (byte search, JSON only for usage/error events) ---------

from servesweep.loadgen.sse import TokenScanner  # noqa: E402


def _event(text: str, spaced: bool = False) -> bytes:
    sep = ": " if spaced else ":"
    return (f'data: {{"id"{sep}"c","choices"{sep}[{{"index"{sep}0,"text"{sep}"{text}","finish_reason"{sep}null}}]}}'
            "\n\n").encode()


COMPLETION = (
    _event(" a") + _event("") + _event(' say \\"text\\":\\"x\\"') + _event(" b", spaced=True)
    + b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}\n\n'
    + b"data: [DONE]\n\n"
)


def test_scanner_counts_token_events_and_reads_usage():
    scanner = TokenScanner()
    assert scanner.feed(COMPLETION) == 3  # the empty-text event is not a token chunk
    assert scanner.usage == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert scanner.done and scanner.error is None


def test_scanner_every_split_point_gives_the_same_count():
    for cut in range(len(COMPLETION) + 1):
        scanner = TokenScanner()
        tokens = scanner.feed(COMPLETION[:cut]) + scanner.feed(COMPLETION[cut:]) + scanner.close()
        assert tokens == 3 and scanner.usage["completion_tokens"] == 3, cut


def test_scanner_byte_at_a_time_and_crlf_fallback():
    for stream in (COMPLETION, COMPLETION.replace(b"\n", b"\r\n")):
        scanner = TokenScanner()
        tokens = sum(scanner.feed(stream[i : i + 1]) for i in range(len(stream))) + scanner.close()
        assert tokens == 3 and scanner.usage["prompt_tokens"] == 5


def test_scanner_multi_event_chunk_with_comments_and_multiline_data():
    stream = b": ping\n\n" + _event(" a") + b'data: {"choices":[{"text":\ndata: " b"}]}\n\n' + _event(" c")
    assert TokenScanner().feed(stream) == 3


def test_scanner_reports_server_errors_and_malformed_usage():
    scanner = TokenScanner()
    scanner.feed(b'data: {"error": {"message": "overloaded"}}\n\n')
    assert scanner.error == "overloaded"
    scanner = TokenScanner()
    scanner.feed(b'data: {"usage": {broken\n\n')
    assert scanner.error.startswith("malformed event")


def test_scanner_flushes_an_unterminated_last_event():
    scanner = TokenScanner()
    assert scanner.feed(_event(" a")[:-2]) == 0
    assert scanner.close() == 1
