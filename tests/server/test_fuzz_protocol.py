"""Hypothesis drives the server's request parser (``HttpProtocol`` on httptools) with hostile
byte streams, split at random: no exception escapes, nothing buffered grows past its cap, and
everything written is an HTTP/1.1 answer.

Bounded in the suite; a longer run: ``SLUICE_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest
tests/server/test_fuzz_protocol.py tests/transport/test_fuzz_http1.py tests/schema/test_fuzz_sse.py``.
"""

from __future__ import annotations

import asyncio
import os
import types

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.server.protocol import MAX_HEAD_BYTES, HttpProtocol, ServerState
from sluice.server.wire import Request, Response

EXAMPLES = int(os.environ.get("SLUICE_FUZZ_EXAMPLES", "150"))
MAX_BODY = 4096

PIECES = [
    b"GET / HTTP/1.1\r\n", b"POST /v1/chat/completions HTTP/1.1\r\n", b"GET / HTTP/1.0\r\n",
    b"GET / HTTP/2.0\r\n", b"host: x\r\n", b"Host: y\r\n", b"content-length: 5\r\n",
    b"content-length: 99999\r\n", b"Content-Length: -1\r\n", b"transfer-encoding: chunked\r\n",
    b"transfer-encoding: gzip, chunked\r\n", b"Transfer-Encoding: chunked\r\n", b"expect: 100-continue\r\n",
    b"connection: close\r\n", b"connection: keep-alive\r\n", b"upgrade: h2c\r\nconnection: upgrade\r\n",
    b"\r\n", b"\r\n\r\n", b"\n", b"5\r\nhello\r\n", b"0\r\n\r\n", b"0\r\nx-t: 1\r\n\r\n", b"fffffff\r\n",
    b"1;ext=" + b"e" * 300 + b"\r\n", b"x-long: " + b"v" * 2000, b"hello", b" \t", b"\x00", b"\xff",
]  # fmt: skip

stream = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=48)), max_size=40).map(b"".join)
splits = st.lists(st.integers(min_value=1, max_value=4096), min_size=1, max_size=20)


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closing = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def close(self) -> None:
        self.closing = True

    abort = close

    def is_closing(self) -> bool:
        return self.closing

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


async def _handler(request: Request) -> Response:
    try:
        body = await request.read()
    except Exception as exc:  # the refusals a handler sees: bad body, too large, timeout
        return Response(getattr(exc, "status", 400), b"{}")
    return Response(200, b'{"n":%d}' % len(body))


def _buffered(conn: HttpProtocol) -> int:
    total = sum(len(k) + len(v) for k, v in conn._headers.items()) + len(conn._url)
    for req in (conn._current, conn._active, *conn._queue):
        if req is not None:
            total += sum(len(c) for c in req._chunks)
    return total


async def _drive(data: bytes, cuts: list[int]) -> None:
    state = ServerState(types.SimpleNamespace(draining=False), _handler, max_body=MAX_BODY)  # type: ignore[arg-type]
    conn = HttpProtocol(state)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    pos = 0
    for cut in [*cuts, len(data)]:
        if pos >= len(data) or transport.closing:
            break
        piece, pos = data[pos : pos + cut], pos + cut
        if transport.reading or conn._lingering:
            conn.data_received(piece)  # must never raise
        assert _buffered(conn) <= MAX_BODY + 2 * MAX_HEAD_BYTES + 4096
        for _ in range(3):
            await asyncio.sleep(0)
    conn.expire(asyncio.get_running_loop().time() + 1000)  # every timer fires: still nothing raises
    for _ in range(3):
        await asyncio.sleep(0)
    conn.connection_lost(None)
    await asyncio.sleep(0)
    written = b"".join(transport.out)
    assert not written or written.startswith(b"HTTP/1.1 "), written[:80]
    assert b"HTTP/1.1 500" not in written


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=stream, cuts=splits)
def test_no_byte_stream_breaks_the_request_parser(data: bytes, cuts: list[int]) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_drive(data, cuts))
    finally:
        loop.close()


@settings(max_examples=max(20, EXAMPLES // 5), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(min_value=MAX_HEAD_BYTES, max_value=4 * MAX_HEAD_BYTES),
    where=st.sampled_from(["url", "header", "trailer"]),
)
def test_endless_lines_anywhere_stay_bounded(size: int, where: str) -> None:
    if where == "url":
        data = b"GET /" + b"a" * size
    elif where == "header":
        data = b"GET / HTTP/1.1\r\nhost: x\r\nx: " + b"a" * size
    else:
        data = (
            b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\nt: "
            + b"a" * size
        )
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_drive(data, [65536] * (len(data) // 65536 + 1)))
    finally:
        loop.close()
