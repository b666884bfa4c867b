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
