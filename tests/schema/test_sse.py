from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sluice.schema.sse import SSEDecoder, SSEEvent

STREAM = (
    b'event: message_start\ndata: {"a": 1}\n\n'
    b": a comment\n\n"
    b"data: line one\ndata: line two\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent("message_start", b'{"a": 1}'),
    SSEEvent(None, b"line one\nline two"),
    SSEEvent(None, b"[DONE]"),
]


def test_whole_stream() -> None:
    assert SSEDecoder().feed(STREAM) == EXPECTED


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), unique=True))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    prev = 0
    for cut in [*sorted(cuts), len(STREAM)]:
        events += decoder.feed(STREAM[prev:cut])
        prev = cut
    assert events == EXPECTED


@given(st.lists(st.integers(min_value=1, max_value=60), unique=True))
def test_crlf_framing_any_split(cuts: list[int]) -> None:
    data = b'data: {"x": 1}\r\n\r\ndata: {"y": 2}\r\n\r\n'
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    prev = 0
    for cut in [*sorted(c for c in cuts if c < len(data)), len(data)]:
        events += decoder.feed(data[prev:cut])
        prev = cut
    assert events == [SSEEvent(None, b'{"x": 1}'), SSEEvent(None, b'{"y": 2}')]


def test_flush_returns_unterminated_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: tail") == []
    assert decoder.pending
    assert decoder.flush() == [SSEEvent(None, b"tail")]
