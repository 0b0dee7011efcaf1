"""The SSE decoder against hostile upstreams: an event is capped, and work is linear in the bytes
fed however they are split (issue #18, item 5)."""

from __future__ import annotations

import time

import pytest

from sluice.errors import ProviderError
from sluice.schema.sse import MAX_EVENT_BYTES, SSEDecoder, SSEEvent


def test_an_endless_line_is_refused_once_past_the_cap() -> None:
    dec = SSEDecoder("up")
    dec.feed(b"data: ")
    piece = b"a" * 65536
    with pytest.raises(ProviderError) as info:
        for _ in range(MAX_EVENT_BYTES // len(piece) + 2):
            dec.feed(piece)
    assert info.value.kind == "bad_response"
    assert info.value.provider == "up"
    assert dec._pending_len == 0  # nothing kept once refused


def test_an_event_of_many_data_lines_is_capped_too() -> None:
    dec = SSEDecoder()
    line = b"data: " + b"b" * 65536 + b"\n"
    with pytest.raises(ProviderError, match="SSE event is over"):
        for _ in range(MAX_EVENT_BYTES // 65536 + 2):
            dec.feed(line)


def test_a_long_line_fed_in_small_pieces_is_decoded_in_linear_time() -> None:
    def cost(size: int) -> float:
        dec = SSEDecoder()
        dec.feed(b"data: ")
        piece = b"c" * 1024
        start = time.perf_counter()
        for _ in range(size // 1024):
            assert dec.feed(piece) == []
        events = dec.feed(b"\n\n")
        elapsed = time.perf_counter() - start
        assert events == [SSEEvent(None, b"c" * (size // 1024 * 1024))]
        return elapsed

    small, large = cost(1 << 20), cost(8 << 20)
    # Quadratic work would be 64x; linear 8x. Generous for a shared, noisy machine.
    assert large < small * 30 + 0.05


@pytest.mark.parametrize("split", range(1, 12))
def test_crlf_split_anywhere_decodes_the_same(split: int) -> None:
    raw = b"event: a\r\ndata: x\r\n\r\ndata: y\r\r"
    dec = SSEDecoder()
    events = dec.feed(raw[:split]) + dec.feed(raw[split:])
    assert events == [SSEEvent("a", b"x"), SSEEvent(None, b"y")]
