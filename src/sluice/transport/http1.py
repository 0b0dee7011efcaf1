"""A lean HTTP/1.1 client on asyncio protocols, for the gateway's upstream calls.

Why not aiohttp's client: on the request path it was the largest single cost in the profile
(about a third of the event loop's time per proxied request: request/response objects, cookie
jars, tracing hooks, timers). Upstream calls need far less: keep-alive pools, one write per
request, a C parser (httptools), streaming bodies with back-pressure, and exact timeouts.

Contract: ``HostPool.request`` sends one request and returns a :class:`Response` once the status
line and headers arrived; the body is read with ``Response.read()`` or iterated with
``Response.iter_chunks()``; ``Response.close()`` must be called when the caller stops early (it
drops the connection; a fully read response returns its connection to the pool by itself).
Failures raise :class:`ConnectionFailed`; timeouts are the caller's (``asyncio.timeout``).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from typing import cast

import httptools

#: Stop reading from the socket while this many body bytes wait for the consumer.
_HIGH_WATER = 1 << 20
#: Most bytes an upstream's status line and headers may take (httptools joins a header's pieces
#: until its line ends, so an endless header would be buffered, and joined quadratically).
MAX_HEAD_BYTES = 64 * 1024


class ConnectionFailed(Exception):
    """The connection could not be made, or broke before the response was complete."""


class BadResponse(ConnectionFailed):
    """The upstream's answer is not acceptable HTTP: malformed, or a head over the cap."""


class Response:
    __slots__ = (
        "_chunks", "_conn", "_done", "_error", "_head", "_size", "_waiter", "headers", "keep_alive", "status",
    )  # fmt: skip

    def __init__(self, conn: _Conn) -> None:
        self._conn: _Conn | None = conn
        self._head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._done = False
        self._error: BaseException | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = False

    # -- fed by the protocol

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _HIGH_WATER and self._conn is not None:
            self._conn.pause()
        self._wake()

    def _finish(self, error: BaseException | None = None) -> None:
        if self._done:
            return
        self._done = True
        self._error = error
        if not self._head.done():
            if error is not None:
                self._head.set_exception(error)
            else:
                self._head.set_result(None)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- used by the caller

    async def wait_head(self) -> None:
        await self._head

    def iter_chunks(self) -> _ChunkIter:
        return _ChunkIter(self)

    async def next_chunk(self) -> bytes:
        """The next body bytes, or b"" at the end. Raises ConnectionFailed if the body was cut."""
        while not self._chunks:
            if self._done:
                if self._error is not None:
                    raise self._error
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._chunks.popleft()
        self._size -= len(data)
        if self._size <= _HIGH_WATER // 2 and self._conn is not None:
            self._conn.resume()
        return data

    async def read(self) -> bytes:
        parts: list[bytes] = []
        while data := await self.next_chunk():
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        """Abandon the response: the connection is closed unless the body was complete."""
        conn, self._conn = self._conn, None
        if conn is not None and not self._done:
            conn.abort()


class _ChunkIter:
    __slots__ = ("_resp",)

    def __init__(self, resp: Response) -> None:
        self._resp = resp

    def __aiter__(self) -> _ChunkIter:
        return self

    async def __anext__(self) -> bytes:
        data = await self._resp.next_chunk()
        if not data:
            raise StopAsyncIteration
        return data


def _reads_until_close(headers: dict[str, str]) -> bool:
    return "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "")


class _Conn(asyncio.Protocol):
    def __init__(self, pool: HostPool) -> None:
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._resp: Response | None = None
        self._paused = False
        self._head_bytes = 0  # received while the response head is incomplete
        self.closed = False

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same interface.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        resp = self._resp
        if resp is None:
            self.abort()  # bytes nobody asked for: the connection cannot be trusted with the next
            return
        if not resp._head.done():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES + len(data):  # checked before parsing this read
                self._fail(BadResponse(f"the response head is over {MAX_HEAD_BYTES // 1024} KiB"))
                self.abort()
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BadResponse(f"malformed HTTP response ({exc})"))
            self.abort()
            return
        if self._resp is not None and not self._resp._head.done() and self._head_bytes > MAX_HEAD_BYTES:
            self._fail(BadResponse(f"the response head is over {MAX_HEAD_BYTES // 1024} KiB"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        resp = self._resp
        if resp is not None and resp._head.done() and _reads_until_close(resp.headers):
            self._resp = None
            resp._finish()  # a body delimited by the connection's end (no length, not chunked)
        else:
            self._fail(ConnectionFailed("connection closed by the upstream"))
        self._pool.forget(self)

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        if self._resp is None:
            raise BadResponse("a response nobody asked for")  # more than one answer to a request

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._resp is not None:
            self._resp.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        resp = self._resp
        if resp is not None:
            resp.status = self._parser.get_status_code()
            resp.keep_alive = self._parser.should_keep_alive()
            if not resp._head.done():
                resp._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._resp is not None:
            self._resp._feed(body)

    def on_message_complete(self) -> None:
        resp, self._resp = self._resp, None
        if resp is None:
            return
        reusable = resp.keep_alive and not self.closed
        resp._conn = None
        resp._finish()
        if reusable:
            # Pooled only readable: the consumer's back-pressure paused this socket for a body
            # that is now all buffered in ``resp``; the next request on it must be heard.
            self.resume()
            self._pool.release(self)
        else:
            self.abort()

    # -- used by the pool and responses

    def send(self, data: bytes) -> Response:
        assert self._transport is not None
        self._resp = Response(self)
        self._head_bytes = 0
        self._transport.write(data)
        return self._resp

    def _fail(self, error: ConnectionFailed) -> None:
        resp, self._resp = self._resp, None
        if resp is not None:
            resp._finish(error)

    def pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self._transport is not None and not self.closed:
            self._paused = False
            self._transport.resume_reading()

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()


class HostPool:
    """Keep-alive connections to one (scheme, host, port), at most ``limit`` open at once."""

    def __init__(self, scheme: str, host: str, port: int, *, limit: int, connect_timeout_s: float) -> None:
        self._host = host
        self._port = port
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if scheme == "https" else None
        self._limit = limit
        self._connect_timeout_s = connect_timeout_s
        self._idle: list[_Conn] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        host_header = host if ":" not in host else f"[{host}]"
        default_port = 443 if scheme == "https" else 80
        self.host_header = host_header if port == default_port else f"{host_header}:{port}"

    async def request(self, head: bytes, body: bytes) -> Response:
        """Send ``head`` (request line + headers + blank line) and ``body``; await the response head."""
        # No silent resend on a broken kept-alive connection: the upstream may have acted on the
        # request, and a request is never sent more times than its route allows. An idle
        # connection the upstream closed is normally seen (connection_lost) before it is reused.
        conn = await self._acquire()
        resp = conn.send(head + body)
        try:
            await resp.wait_head()
        except BaseException:
            conn.abort()
            raise
        return resp

    async def _acquire(self) -> _Conn:
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
            if self._open < self._limit:
                break
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        self._open += 1
        try:
            return await self._connect()
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _Conn(self), self._host, self._port, ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                )  # fmt: skip
        except TimeoutError:
            raise ConnectionFailed(f"connect timed out after {self._connect_timeout_s:g}s") from None
        except OSError as exc:
            raise ConnectionFailed(f"cannot connect ({exc.strerror or type(exc).__name__})") from None
        return conn

    def release(self, conn: _Conn) -> None:
        self._idle.append(conn)
        self._wake_one()

    def forget(self, conn: _Conn) -> None:
        if conn in self._idle:
            self._idle.remove(conn)
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for conn in self._idle:
            conn.abort()
        self._idle.clear()
