"""Sluice's HTTP/1.1 server connection: an asyncio protocol on httptools (llhttp).

Why not a framework: aiohttp's server was most of the gateway's own cost per request. This is
the part of it the gateway needs: keep-alive, pipelining (answered in order), chunked request
bodies, ``Expect: 100-continue``, streamed responses with back-pressure, limits on the head and
the body, idle and slow-client timeouts, and a graceful drain. llhttp rejects malformed and
ambiguous framing (both Content-Length and Transfer-Encoding, bad chunk sizes), so one
connection's requests cannot be confused with each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias, cast

import httptools

from sluice.errors import BadRequest
from sluice.server.wire import Handler, Request, Response, StreamResponse, encode_head

if TYPE_CHECKING:
    from sluice.server.services import Services

log = logging.getLogger("sluice.server")

#: Most bytes a request line plus headers may take.
MAX_HEAD_BYTES = 64 * 1024
#: Pipelined requests buffered per connection before reading pauses.
MAX_PIPELINE = 16

#: (request target as far as it arrived, status, message) -> the error body, in the path's dialect.
RefusalBody: TypeAlias = Callable[[str, int, str], bytes]


def openai_refusal(target: str, status: int, message: str) -> bytes:
    """The refusal body when the server is given no dialect-aware renderer."""
    return b'{"error":{"message":"%s","type":"invalid_request_error","code":null,"param":null}}' % (
        message.replace("\\", "\\\\").replace('"', "'").encode("ascii", "replace")
    )


class ServerState:
    """What every connection of one listening server shares."""

    def __init__(
        self, services: Services, handler: Handler, *, max_body: int, keepalive_s: float = 75.0,
        slow_client_s: float = 60.0, refusal_body: RefusalBody = openai_refusal,
    ) -> None:  # fmt: skip
        self.services = services
        self.handler = handler
        self.refusal_body = refusal_body
        self.max_body = max_body
        self.keepalive_s = keepalive_s
        self.slow_client_s = slow_client_s
        self.connections: set[HttpProtocol] = set()
        self.idle = asyncio.Event()  # set whenever no connection is open

    @property
    def draining(self) -> bool:
        """One flag for the routes (new requests get 503) and the connections (answers close)."""
        return self.services.draining

    def sweep(self, now: float) -> None:
        """Close connections idle past the keep-alive timeout, and callers too slow to send a
        request they have started (slowloris)."""
        for conn in list(self.connections):
            conn.expire(now)


class _HeadTooLarge(Exception):
    pass


class HttpProtocol(asyncio.Protocol):
    __slots__ = (
        "_active",
        "_chunk_start",
        "_closed",
        "_current",
        "_drain_waiter",
        "_head_mark",
        "_head_size",
        "_head_started",
        "_headers",
        "_in_head",
        "_loop",
        "_parser",
        "_queue",
        "_read_paused",
        "_received",
        "_refusal",
        "_state",
        "_task",
        "_transport",
        "_url",
        "_write_paused",
        "last_active",
    )  # fmt: skip

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_size = 0
        self._current: Request | None = None  # being received
        self._active: Request | None = None  # being answered
        self._queue: deque[Request] = deque()  # pipelined, waiting their turn
        self._closed = False
        self._write_paused = False
        self._read_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._in_head = False
        self._task: asyncio.Task[None] | None = None
        self._refusal: bytes | None = None
        self.last_active = self._loop.time()
        self._received = 0  # bytes, for the head bound
        self._chunk_start = 0
        self._head_mark = 0
        self._head_started = 0.0

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._state.connections.add(self)
        self._state.idle.clear()

    def data_received(self, data: bytes) -> None:
        self.last_active = self._loop.time()
        self._chunk_start = self._received  # -1 once a message ended inside this read
        self._received += len(data)
        try:
            self._parser.feed_data(data)
            # llhttp buffers a header until its line ends, so on_header cannot see one endless
            # header: the bytes received since the head began are counted as well.
            if self._in_head and self._received - self._head_mark > MAX_HEAD_BYTES:
                self._refuse(431, "the request line and headers are over 64 KiB")
        except httptools.HttpParserUpgrade:
            # Upgrades (h2c, websocket) are not offered: the request is answered over HTTP/1.1
            # and the connection closes after it, since what follows is not HTTP/1.1.
            for req in (self._active, *self._queue):
                if req is not None:
                    req.keep_alive = False
            self._pause_reading()
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse(431, "the request line and headers are over 64 KiB")
            else:
                log.exception("error in the HTTP parser callbacks")
                self._refuse(400, "malformed HTTP request")
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed HTTP request: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._state.connections.discard(self)
        if not self._state.connections:
            self._state.idle.set()
        for req in (self._current, self._active, *self._queue):
            if req is not None:
                req.abort()
        self._queue.clear()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the caller closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        # The head began where this read did, unless a message ended inside the read (pipelining):
        # then where is unknown, and only later reads count (at most one read, 256 KiB, more).
        self._head_mark = self._chunk_start if self._chunk_start >= 0 else self._received
        self._head_started = self.last_active
        self._url = b""
        self._headers = {}
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > MAX_HEAD_BYTES:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD_BYTES:
            raise _HeadTooLarge
        key = name.decode("latin-1").lower()
        text = value.decode("utf-8", "replace")
        seen = self._headers.get(key)
        self._headers[key] = text if seen is None else f"{seen}, {text}"

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        req = Request(
            self, self._state.services, parser.get_method().decode("ascii", "replace"),
            self._url.decode("utf-8", "replace"), self._headers,
            keep_alive=bool(parser.should_keep_alive()) and not self._state.draining,
            http11=parser.get_http_version() == "1.1", max_body=self._state.max_body,
        )  # fmt: skip
        self._current = req
        if self._active is None:
            self._start(req)
        else:
            self._queue.append(req)
            if len(self._queue) >= MAX_PIPELINE:
                self._pause_reading()

    def on_body(self, body: bytes) -> None:
        if self._current is not None:
            self._current.feed(body)

    def on_message_complete(self) -> None:
        self._chunk_start = -1
        if self._current is not None:
            self._current.finish()
            self._current = None
            if self._active is None and self._state.draining:
                self.close()  # answered before its body had all arrived; now it has

    # -- what requests and responses use (wire.Connection) --------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, data: bytes) -> None:
        if not self._closed and self._transport is not None:
            self._transport.write(data)

    async def drain(self) -> None:
        if self._closed:
            raise ConnectionResetError("the caller closed the connection")
        if not self._write_paused:
            return
        self._drain_waiter = self._loop.create_future()
        try:
            await self._drain_waiter
        finally:
            self._drain_waiter = None

    # -- answering ------------------------------------------------------------------------------

    def _start(self, req: Request) -> None:
        self._active = req
        self._task = self._loop.create_task(self._answer(req))

    async def _answer(self, req: Request) -> None:
        try:
            resp = await self._state.handler(req)
        except asyncio.CancelledError:
            self.close()
            raise
        except Exception:  # the dispatcher answers every error; this is the last resort
            log.exception("unhandled error answering %s %s", req.method, req.path)
            resp = Response(500, b'{"error":{"message":"internal gateway error","type":"server_error"}}')
        if self._state.draining:
            req.keep_alive = False
        if req.body_unread:
            req.keep_alive = False
        head_only = req.method == "HEAD"
        if req.responded and not (isinstance(resp, StreamResponse) and resp.prepared):
            # Failed after its stream's head was sent: cut the stream (no final chunk, so the
            # caller sees it incomplete) rather than put a second response inside the first.
            req.keep_alive = False
        elif isinstance(resp, Response):
            self.write(resp.encode(req.keep_alive, head_only=head_only))
        elif not resp.prepared:
            # A handler that returns an unstarted stream has nothing to say: an empty answer.
            empty = Response(resp.status, headers=resp.headers, content_type=None)
            self.write(empty.encode(req.keep_alive, head_only=head_only))
        else:
            await resp.write_eof()
        self._active = None
        self._task = None
        self.last_active = self._loop.time()
        if self._closed:
            return
        if not req.keep_alive:
            if self._refusal is not None:
                self.write(self._refusal)
            self.close()
            return
        req.discard()
        if self._queue:
            self._start(self._queue.popleft())
        if self._read_paused and len(self._queue) < MAX_PIPELINE:
            self._read_paused = False
            if self._transport is not None:
                self._transport.resume_reading()

    def _refuse(self, status: int, message: str) -> None:
        """A request that cannot be parsed: answer it (after any request still being answered)
        and close, since nothing after it on this connection can be trusted."""
        self._pause_reading()
        self._queue.clear()
        current = self._current
        target = current.path if current is not None else self._url.decode("utf-8", "replace")
        body = self._state.refusal_body(target, status, message)
        raw = encode_head(
            status, {"content-type": "application/json", "x-sluice-error-source": "gateway"},
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body),
        ) + body  # fmt: skip
        if self._active is None:
            self.write(raw)
            self.close()
        elif current is self._active and not current.complete:
            # Its body is what failed to parse: its handler's read fails and it answers the 400.
            current.abort(BadRequest(message))
        else:
            self._refusal = raw
            self._active.keep_alive = False

    def _pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None and not self._closed:
            self._read_paused = True
            self._transport.pause_reading()

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def close_if_idle(self) -> bool:
        """For a drain: close now if nothing is being answered; else after the current answer."""
        if self._active is None and self._current is None:
            self.close()
            return True
        if self._active is not None:
            self._active.keep_alive = False
        return False

    def cancel(self) -> None:
        """The drain's grace is over: stop answering and close."""
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            self._transport.abort()

    def expire(self, now: float) -> None:
        idle = now - self.last_active
        limit = self._state.slow_client_s
        if self._in_head:  # the whole head must arrive in time, however it trickles (slowloris)
            if now - self._head_started > limit and self._transport is not None:
                self._transport.abort()
        elif self._current is not None and not self._current.complete:
            if idle > limit and self._transport is not None:
                self._transport.abort()  # a body that stopped arriving
        elif self._active is None and idle > self._state.keepalive_s:
            self.close()
