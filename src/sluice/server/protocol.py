"""Sluice's HTTP/1.1 server connection: an asyncio protocol on httptools (llhttp).

Why not a framework: aiohttp's server was most of the gateway's own cost per request. This is
the part of it the gateway needs: keep-alive, pipelining (answered in order), chunked request
bodies, ``Expect: 100-continue``, streamed responses with back-pressure, limits on the head and
the body, idle and slow-client timeouts, and a graceful drain. llhttp rejects malformed and
ambiguous framing (both Content-Length and Transfer-Encoding, bad chunk sizes), so one
connection's requests cannot be confused with each other; ``framing.py`` adds the RFC 9112 rules
llhttp leaves to the server.

Every byte a peer sends is bounded: the head (and the trailers, and chunk framing) by
``MAX_HEAD_BYTES``, a body by ``max_body``, a body being read by a minimum rate, a body that was
refused by the lingering close (``LINGER_*``), a caller that stops reading its answer by
``slow_client_s``. A caller that leaves cancels the work done for it at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import cast

import httptools

from sluice.errors import BadRequest, RequestTimeout
from sluice.server.bounds import (
    LINGER_IDLE_S,
    LINGER_S,
    MAX_HEAD_BYTES,
    MAX_PIPELINE,
    MIN_BODY_RATE,
    YIELD_EVERY,
    ServerState,
)  # fmt: skip
from sluice.server.framing import Refused, check_head, parse_error_status, refusal
from sluice.server.wire import Request, Response, StreamResponse

__all__ = ["LINGER_S", "MAX_HEAD_BYTES", "MAX_PIPELINE", "MIN_BODY_RATE", "HttpProtocol", "ServerState"]

log = logging.getLogger("sluice.server")


class HttpProtocol(asyncio.Protocol):
    __slots__ = (
        "_active", "_body_bytes", "_body_mark", "_body_started", "_chunk_start", "_closed", "_current",
        "_drain_waiter", "_head_mark", "_head_size", "_head_started", "_headers", "_hosts", "_in_head",
        "_linger_left", "_linger_until", "_lingering", "_loop", "_parser", "_queue", "_read_paused",
        "_received", "_refusal", "_state", "_task", "_transport", "_url", "_write_paused",
        "_write_paused_at", "_writes", "last_active",
    )  # fmt: skip

    def __init__(self, state: ServerState) -> None:
        self._state = state
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_size = 0
        self._hosts = 0
        self._current: Request | None = None  # being received
        self._active: Request | None = None  # being answered
        self._queue: deque[Request] = deque()  # pipelined, waiting their turn
        self._closed = False
        self._write_paused = False
        self._write_paused_at = 0.0
        self._writes = 0  # stream writes since the last yield to the loop
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
        self._body_mark = 0
        self._body_bytes = 0
        self._body_started = 0.0
        self._lingering = False
        self._linger_left = 0
        self._linger_until = 0.0

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._state.connections.add(self)
        self._state.idle.clear()

    def data_received(self, data: bytes) -> None:
        self.last_active = self._loop.time()
        if self._lingering:  # a refused body: counted and dropped, never parsed
            self._linger_left -= len(data)
            if self._linger_left < 0:
                self.abort()
            return
        self._chunk_start = self._received  # -1 once a message ended inside this read
        self._received += len(data)
        try:
            self._parser.feed_data(data)
            if self._in_head or self._current is not None:
                self._check_bounds()
        except httptools.HttpParserUpgrade:
            # Upgrades (h2c, websocket) are not offered: the request is answered over HTTP/1.1
            # and the connection closes after it, since what follows is not HTTP/1.1.
            for req in (self._active, *self._queue):
                if req is not None:
                    req.keep_alive = False
            self._pause_reading()
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, Refused):
                self._refuse(refused.status, refused.message)
            else:
                log.exception("error in the HTTP parser callbacks")
                self._refuse(400, "malformed HTTP request")
        except httptools.HttpParserError as exc:
            self._refuse(parse_error_status(str(exc)), f"malformed HTTP request: {exc}")

    def _check_bounds(self) -> None:
        """llhttp buffers nothing, but httptools joins a header's pieces until its line ends, so
        the callbacks cannot see one endless header or trailer: the bytes received are counted."""
        if self._in_head:
            if self._received - self._head_mark > MAX_HEAD_BYTES:
                self._refuse(431, "the request line and headers are over 64 KiB")
        elif self._current is not None:
            # Bytes of the body's reads that were not body data: chunk sizes, extensions, trailers.
            framing = self._received - self._body_mark - self._body_bytes
            if framing > MAX_HEAD_BYTES + 8 * self._body_bytes:
                self._refuse(431, "the chunk framing or trailers of the body are over 64 KiB")

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._state.connections.discard(self)
        if not self._state.connections:
            self._state.idle.set()
        active = self._active
        task = self._task
        if active is not None and active.complete and task is not None and not task.done():
            # Nobody is left to answer: stop the work (an upstream call, a stream) at once; the
            # request's record says 499. (A handler still reading the body has its read fail.)
            task.cancel()
        for req in (self._current, active, *self._queue):
            if req is not None:
                req.abort()
        self._queue.clear()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("the caller closed the connection"))

    def pause_writing(self) -> None:
        self._write_paused = True
        self._write_paused_at = self._loop.time()

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
        self._hosts = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > MAX_HEAD_BYTES:
            raise Refused(431, "the request line and headers are over 64 KiB")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD_BYTES:
            raise Refused(431, "the request line and headers are over 64 KiB")
        if not self._in_head:
            return  # a trailer field: never merged into the headers (RFC 9110 §6.5.1)
        key = name.decode("latin-1").lower()
        if key == "host":
            self._hosts += 1
        text = value.decode("utf-8", "replace")
        seen = self._headers.get(key)
        self._headers[key] = text if seen is None else f"{seen}, {text}"

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        version = parser.get_http_version()
        if self._hosts != 1 or version != "1.1" or "transfer-encoding" in self._headers:
            check_head(version, self._headers, self._hosts)  # the common case needs no check
        self._head_size = 0  # from here on it counts the trailers
        req = Request(
            self, self._state.services, parser.get_method().decode("ascii", "replace"),
            self._url.decode("utf-8", "replace"), self._headers,
            keep_alive=bool(parser.should_keep_alive()) and not self._state.draining,
            http11=version == "1.1", max_body=self._state.max_body,
        )  # fmt: skip
        self._current = req
        self._body_mark = self._received
        self._body_bytes = 0
        self._body_started = self.last_active
        if self._active is None:
            self._start(req)
        else:
            self._queue.append(req)
            if len(self._queue) >= MAX_PIPELINE:
                self._pause_reading()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
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
        """Wait while the caller's socket is full. A caller that reads nothing for
        ``slow_client_s`` is cut by the sweep, which ends this wait with ConnectionResetError.

        Every ``YIELD_EVERY`` writes it also yields to the loop: a stream relaying an upstream's
        buffered burst (thousands of events, none of which awaits I/O) must not keep every
        other connection waiting until the burst is through."""
        if self._closed:
            raise ConnectionResetError("the caller closed the connection")
        if not self._write_paused:
            self._writes += 1
            if self._writes >= YIELD_EVERY:
                self._writes = 0
                await asyncio.sleep(0)
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
        if self._state.draining or req.body_unread or not (req.complete or self._short_rest(req)):
            # A body still arriving cannot be told from the next request without reading all of
            # it: unless little of it is left, the connection ends after this answer (a bounded
            # lingering close).
            req.keep_alive = False
        if self._send(req, resp):
            assert isinstance(resp, StreamResponse)
            await resp.write_eof()
        self._active = None
        self._task = None
        self.last_active = self._loop.time()
        if self._closed:
            return
        if not req.keep_alive:
            self._end(linger=req is self._current or req.body_unread)
            return
        req.discard()
        if self._queue:
            self._start(self._queue.popleft())
        elif self._refusal is not None:
            # Every request parsed before the bad one has had its answer, in order; now its own.
            self.write(self._refusal)
            self._end(linger=True)
        elif self._read_paused and len(self._queue) < MAX_PIPELINE:
            self._read_paused = False
            if self._transport is not None:
                self._transport.resume_reading()

    def _short_rest(self, req: Request) -> bool:
        """The unread rest of this body is declared, and short enough to parse and drop."""
        length = req.content_length
        return req is self._current and length is not None and length - self._body_bytes <= MAX_HEAD_BYTES

    def _send(self, req: Request, resp: Response | StreamResponse) -> bool:
        """Write the answer; True when it is a started stream that still needs its end."""
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
            return True
        return False

    def _refuse(self, status: int, message: str) -> None:
        """A request that cannot be parsed: answer it after every request parsed before it, and
        close, since nothing after it on this connection can be trusted."""
        self._pause_reading()
        current = self._current
        target = current.path if current is not None else self._url.decode("utf-8", "replace")
        raw = refusal(status, self._state.refusal_body(target, status, message))
        if current is not None and current is not self._active and not current.complete:
            # A queued request whose body failed: it is the bad one, dropped from the queue.
            if current in self._queue:
                self._queue.remove(current)
            current.abort()
            self._current = current = None
        if self._active is None:
            self.write(raw)
            self._end(linger=True)
        elif current is self._active and not current.complete:
            # Its body is what failed to parse: its handler's read fails and it answers.
            error = BadRequest(message)
            error.status = status
            current.abort(error)
        else:
            self._refusal = raw

    def _pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None and not self._closed:
            self._read_paused = True
            self._transport.pause_reading()

    # -- lifecycle ------------------------------------------------------------------------------

    def _end(self, *, linger: bool) -> None:
        """Close after the last answer. ``linger``: the caller may still be sending (a refused or
        unread body): stop writing, then read and drop a bounded amount for a bounded time, so
        the caller sees the answer rather than a reset (what nginx calls a lingering close)."""
        transport = self._transport
        if not linger or transport is None or transport.is_closing() or not transport.can_write_eof():
            self.close()
            return
        self._lingering = True
        self._current = None
        self._linger_left = self._state.linger_bytes
        self._linger_until = self._loop.time() + LINGER_S
        transport.write_eof()
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def close_if_idle(self) -> bool:
        """For a drain: close now if nothing is being answered; else after the current answer."""
        if self._lingering or (self._active is None and self._current is None):
            self.close()
            return True
        if self._active is not None:
            self._active.keep_alive = False
        return False

    def cancel(self) -> None:
        """The drain's grace is over: stop answering and close."""
        if self._task is not None:
            self._task.cancel()
        self.abort()

    def expire(self, now: float) -> None:
        idle = now - self.last_active
        limit = self._state.slow_client_s
        if self._lingering:
            if now > self._linger_until or idle > LINGER_IDLE_S:
                self.abort()
        elif self._write_paused and now - self._write_paused_at > limit:
            self.abort()  # a caller that stopped reading its answer; its work is cancelled
        elif self._in_head:  # the whole head must arrive in time, however it trickles (slowloris)
            if now - self._head_started > limit:
                self._refuse(408, f"the request head did not arrive within {limit:g}s")
        elif self._current is not None and not self._current.complete:
            allowed = limit + self._body_bytes / MIN_BODY_RATE
            if idle > limit or now - self._body_started > allowed:
                self._body_too_slow(limit)
        elif self._active is None and idle > self._state.keepalive_s:
            self.close()

    def _body_too_slow(self, limit: float) -> None:
        """A body that stopped arriving, or trickles below ``MIN_BODY_RATE``: the handler waiting
        for it answers 408; one queued behind another answer just loses its connection."""
        current = self._current
        if current is not None and current is self._active:
            self._pause_reading()
            current.abort(RequestTimeout(
                f"the request body did not arrive in time (no byte for {limit:g}s, or under "
                f"{MIN_BODY_RATE} bytes/s)"
            ))  # fmt: skip
        else:
            self.abort()
