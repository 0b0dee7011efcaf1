"""Hypothesis drives the upstream client's response parser (``transport/http1.py``) with hostile
answers, split at random: the caller sees a response or a ``ConnectionFailed``, never another
exception; the head stays under its cap; a connection goes back to the pool only readable.
A longer run: see tests/server/test_fuzz_protocol.py."""

from __future__ import annotations

import asyncio
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.transport.http1 import MAX_HEAD_BYTES, ConnectionFailed, HostPool, _Conn

EXAMPLES = int(os.environ.get("SLUICE_FUZZ_EXAMPLES", "150"))

PIECES = [
    b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 500 Oops\r\n", b"HTTP/1.1 302 Found\r\n", b"HTTP/1.0 200 OK\r\n",
    b"HTTP/2 200\r\n", b"content-length: 3\r\n", b"content-length: 999999\r\n", b"transfer-encoding: chunked\r\n",
    b"connection: close\r\n", b"retry-after: inf\r\n", b"\r\n", b"abc", b"3\r\nabc\r\n", b"0\r\n\r\n",
    b"data: x\n\n", b"x-long: " + b"v" * 3000, b"\x00", b"\xff",
]  # fmt: skip
stream = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=48)), max_size=40).map(b"".join)
splits = st.lists(st.integers(min_value=1, max_value=65536), min_size=1, max_size=20)


class FakeTransport:
    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        pass

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.conn.connection_lost, None)

    close = abort

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


async def _drive(data: bytes, cuts: list[int]) -> None:
    pool = HostPool("http", "127.0.0.1", 9, limit=1, connect_timeout_s=1)
    pool._open = 1
    conn = _Conn(pool)
    transport = FakeTransport(conn)
    conn.connection_made(transport)  # type: ignore[arg-type]
    resp = conn.send(b"GET / HTTP/1.1\r\n\r\n")
    pos = 0
    for cut in [*cuts, len(data)]:
        if pos >= len(data) or transport.closed:
            break
        if transport.reading:
            conn.data_received(data[pos : pos + cut])  # must never raise
        pos += cut
        assert sum(len(v) + len(k) for k, v in resp.headers.items()) <= 2 * MAX_HEAD_BYTES + 65536
        await asyncio.sleep(0)
    if not transport.closed:
        transport.abort()
    await asyncio.sleep(0)
    try:
        await asyncio.wait_for(resp.wait_head(), 1)
        await asyncio.wait_for(resp.read(), 1)
    except ConnectionFailed:
        pass
    for idle in pool._idle:
        assert not idle._paused


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=stream, cuts=splits)
def test_no_answer_breaks_the_response_parser(data: bytes, cuts: list[int]) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_drive(data, cuts))
    finally:
        loop.close()
