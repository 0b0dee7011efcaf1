"""Hypothesis drives the SSE decoder: however a stream is split, it decodes to the same events;
nothing but a ``ProviderError`` (an event over the cap) escapes; nothing is kept past the cap.
A longer run: see tests/server/test_fuzz_protocol.py."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.errors import ProviderError
from sluice.schema.sse import MAX_EVENT_BYTES, SSEDecoder, SSEEvent

EXAMPLES = int(os.environ.get("SLUICE_FUZZ_EXAMPLES", "300"))
PIECES = [
    b"data: ",
    b"data:",
    b"event: e",
    b": comment",
    b"id: 1",
    b"retry: 5",
    b"\n",
    b"\r\n",
    b"\r",
    b"x",
    b"{}",
]
stream = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=16)), max_size=60).map(b"".join)


def _decode(data: bytes, cuts: list[int]) -> list[SSEEvent]:
    dec = SSEDecoder()
    events: list[SSEEvent] = []
    pos = 0
    for cut in [*cuts, len(data)]:
        events += dec.feed(data[pos : pos + cut])
        pos += cut
        assert dec._pending_len + dec._size <= MAX_EVENT_BYTES
        if pos >= len(data):
            break
    return events + dec.flush()


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=stream, cuts=st.lists(st.integers(min_value=1, max_value=64), max_size=30))
def test_any_split_decodes_to_the_same_events(data: bytes, cuts: list[int]) -> None:
    try:
        whole = _decode(data, [])
    except ProviderError:
        return
    assert _decode(data, cuts) == whole
