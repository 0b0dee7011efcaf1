"""Issue #18's upstream-side defects against raw loopback upstreams: a bounded response head, a
connection pooled only in a readable state, redirects named, bounded error bodies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sluice.errors import ProviderError
from sluice.schema.upstream import UpstreamRequest
from sluice.transport.client import MAX_ERROR_BYTES, Deadline, Transport
from sluice.transport.http1 import MAX_HEAD_BYTES, BadResponse, HostPool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
GET = b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for s in servers:
        s.close()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def _pool(port: int, limit: int = 10) -> HostPool:
    return HostPool("http", "127.0.0.1", port, limit=limit, connect_timeout_s=2)


# -- 4. the upstream's head is bounded --------------------------------------------------------------


async def test_an_endless_upstream_header_is_refused_quickly_and_never_buffered(serve) -> None:  # type: ignore[no-untyped-def]
    sent = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nx-huge: ")
        try:
            for _ in range(1600):  # 100 MiB, if anyone read it
                writer.write(b"a" * 65536)
                await writer.drain()
                sent += 65536
        except ConnectionError:
            return

    pool = _pool(await serve(handler))
    start = time.perf_counter()
    with pytest.raises(BadResponse, match="head is over 64 KiB"):
        await asyncio.wait_for(pool.request(GET, b""), 5)
    assert time.perf_counter() - start < 2
    await asyncio.sleep(0.1)
    assert sent < 16 * 1024 * 1024  # cut at once: what was sent is the socket buffers, not the header
    pool.close()


async def test_a_head_just_under_the_bound_is_accepted(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (MAX_HEAD_BYTES - 200) + b"\r\ncontent-length: 2\r\n\r\nok"
        )

    pool = _pool(await serve(handler))
    resp = await pool.request(GET, b"")
    assert await resp.read() == b"ok"
    pool.close()


async def test_a_huge_upstream_head_is_a_502_bad_response(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nx-huge: " + b"a" * (4 * MAX_HEAD_BYTES))
        await writer.drain()

    port = await serve(handler)
    transport = Transport()
    req = UpstreamRequest("p", "POST", f"http://127.0.0.1:{port}/v1/x", {}, b"{}")
    with pytest.raises(ProviderError) as info:
        await transport.send(req, Deadline(5))
    assert (info.value.kind, info.value.status) == ("bad_response", 502)
    await transport.close()


# -- 14. a connection is pooled only readable -------------------------------------------------------


async def test_multi_megabyte_answers_never_leave_a_paused_connection_in_the_pool(serve) -> None:  # type: ignore[no-untyped-def]
    body = b"z" * (3 * 1024 * 1024)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()

    pool = _pool(await serve(handler), limit=2)
    for _ in range(12):
        resp = await asyncio.wait_for(pool.request(GET, b""), 5)
        await asyncio.sleep(0.02)  # the consumer lags: reading pauses past the high-water mark
        assert len(await asyncio.wait_for(resp.read(), 5)) == len(body)
        assert all(not conn._paused for conn in pool._idle)
    pool.close()


async def test_an_answer_completing_past_the_high_water_mark_leaves_a_readable_connection(serve) -> None:  # type: ignore[no-untyped-def]
    # One byte over the mark: reading pauses on the very read that completes the answer.
    body = b"z" * ((1 << 20) + 1)
    served = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        while True:
            try:
                await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            served += 1
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()

    pool = _pool(await serve(handler), limit=1)
    for _ in range(3):
        resp = await asyncio.wait_for(pool.request(GET, b""), 2)
        await asyncio.sleep(0.2)  # the consumer lags until the whole answer has arrived
        assert len(await resp.read()) == len(body)
    assert served == 3
    pool.close()


async def test_bytes_after_the_answer_are_never_read_as_the_next_answer(serve) -> None:  # type: ignore[no-untyped-def]
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        n = connections
        while True:
            try:
                await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            # One request, two answers: the second must not answer the next request.
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n%d" % n)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nbogus")
            await writer.drain()

    pool = _pool(await serve(handler))
    first = await pool.request(GET, b"")
    assert await first.read() == b"1"
    await asyncio.sleep(0.05)
    second = await pool.request(GET, b"")
    assert await second.read() == b"2"  # a fresh connection, not "bogus"
    pool.close()


# -- 13. a redirect is named; an error body is bounded ----------------------------------------------


async def test_an_upstream_redirect_is_reported_as_not_followed(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            writer.write(b"HTTP/1.1 302 Found\r\nlocation: http://evil.example/\r\ncontent-length: 0\r\n\r\n")

    port = await serve(handler)
    transport = Transport()
    req = UpstreamRequest("p", "POST", f"http://127.0.0.1:{port}/v1/x", {}, b"{}")
    for call in (transport.send(req, Deadline(5)), transport.open_stream(req, Deadline(5, 5, 5))):
        with pytest.raises(ProviderError) as info:
            await call
        assert "upstream redirected" in info.value.message
        assert "not followed" in info.value.message
        assert info.value.upstream_status == 302
    await transport.close()


async def test_a_stream_error_body_is_read_only_up_to_its_bound(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            for _ in range(1000):
                writer.write(b"10000\r\n" + b"e" * 65536 + b"\r\n")
                await writer.drain()
        except ConnectionError:
            return

    port = await serve(handler)
    transport = Transport()
    stream = await transport.open_stream(
        UpstreamRequest("p", "POST", f"http://127.0.0.1:{port}/v1/x", {}, b"{}"), Deadline(5, 5, 5)
    )
    with pytest.raises(ProviderError, match="too large"):
        await stream.read_all()
    assert MAX_ERROR_BYTES == 1024 * 1024
    await transport.close()
