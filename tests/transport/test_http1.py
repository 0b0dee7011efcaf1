"""The lean HTTP/1.1 client against raw loopback servers that answer byte for byte."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sluice.transport.http1 import ConnectionFailed, HostPool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


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


async def test_keep_alive_reuses_one_connection(serve) -> None:  # type: ignore[no-untyped-def]
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-up: 1\r\n\r\nok")

    pool = _pool(await serve(handler))
    for _ in range(5):
        resp = await pool.request(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n", b"hi")
        assert (resp.status, resp.headers["x-up"], await resp.read()) == (200, "1", b"ok")
    assert connections == 1
    pool.close()


async def test_chunked_body_streams_in_pieces(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for part in (b"data: a\n\n", b"data: b\n\n"):
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")

    pool = _pool(await serve(handler))
    resp = await pool.request(b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n", b"")
    assert [c async for c in resp.iter_chunks()] == [b"data: a\n\n", b"data: b\n\n"]


async def test_body_until_close(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    pool = _pool(await serve(handler))
    resp = await pool.request(b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n", b"")
    assert await resp.read() == b"all of it"


async def test_cut_body_raises(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly some")
        await writer.drain()
        writer.close()

    pool = _pool(await serve(handler))
    resp = await pool.request(b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n", b"")
    with pytest.raises(ConnectionFailed):
        await resp.read()


async def test_refused_and_garbage(serve) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")

    with pytest.raises(ConnectionFailed, match="cannot connect"):
        await _pool(9).request(b"GET / HTTP/1.1\r\n\r\n", b"")
    pool = _pool(await serve(handler))
    with pytest.raises(ConnectionFailed, match="malformed"):
        await pool.request(b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n", b"")


async def test_pool_limit_queues_instead_of_failing(serve) -> None:  # type: ignore[no-untyped-def]
    open_now = 0
    peak = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        try:
            while True:
                await _read_request(reader)
                await asyncio.sleep(0.01)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n.")
        except asyncio.IncompleteReadError:
            pass
        finally:
            open_now -= 1

    pool = _pool(await serve(handler), limit=3)

    async def one() -> bytes:
        resp = await pool.request(b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n", b"")
        return await resp.read()

    assert await asyncio.gather(*(one() for _ in range(20))) == [b"."] * 20
    assert peak <= 3


async def test_abandoned_stream_closes_connection(serve) -> None:  # type: ignore[no-untyped-def]
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await reader.read()  # returns at EOF: the client hung up
        closed.set()

    pool = _pool(await serve(handler))
    resp = await pool.request(b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n", b"")
    assert await resp.next_chunk() == b"first"
    resp.close()
    await asyncio.wait_for(closed.wait(), 2)
