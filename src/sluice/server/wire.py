"""The HTTP/1.1 request and response objects of Sluice's own server (``server/protocol.py``).

Small on purpose: a request is its method, path, query, lower-cased headers and a body read on
demand (so a handler authenticates before a byte of the body is buffered); a response is either
whole (:class:`Response`, one ``write`` for head and body) or streamed (:class:`StreamResponse`,
chunked transfer encoding with back-pressure from the socket).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Protocol, TypeAlias
from urllib.parse import parse_qsl, unquote

from sluice.errors import BadRequest, PayloadTooLarge

if TYPE_CHECKING:
    from sluice.server.services import Services

_REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 413: "Payload Too Large", 415: "Unsupported Media Type",
    422: "Unprocessable Entity", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    499: "Client Closed Request", 500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
    529: "Overloaded",
}  # fmt: skip
_STATUS_LINES = {code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in _REASONS.items()}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
JSON = "application/json"


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else f"HTTP/1.1 {status} Status {status}\r\n".encode()


class _DateCache:
    """The ``date`` header, formatted once a second rather than once a request."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def header(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = f"date: {formatdate(now, usegmt=True)}\r\n".encode()
        return self._value


DATE = _DateCache()


def encode_head(status: int, headers: dict[str, str], extra: bytes) -> bytes:
    """Status line and headers. A CR or LF anywhere, or a colon in a name, would forge or split
    headers (injection), so such a header is dropped rather than sent."""
    text = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    n = len(headers)
    if text.count("\n") != n or text.count("\r") != n or any(":" in name for name in headers):
        text = "".join([f"{k}: {v}\r\n" for k, v in headers.items() if _safe_header(k, v)])
    return b"".join((status_line(status), DATE.header(), text.encode("latin-1", "replace"), extra))


def _safe_header(name: str, value: str) -> bool:
    return not any(c in name for c in "\r\n:") and "\r" not in value and "\n" not in value


class Connection(Protocol):
    """What a request and a streamed response need of the connection they arrived on."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    @property
    def closed(self) -> bool: ...


class Request:
    """One request. ``read()`` returns the whole body, waiting for it to arrive."""

    __slots__ = (
        "_chunks",
        "_complete",
        "_conn",
        "_discard",
        "_error",
        "_expect_continue",
        "_read_started",
        "_size",
        "_waiter",
        "context",
        "headers",
        "http11",
        "keep_alive",
        "match_info",
        "max_body",
        "method",
        "path",
        "query_string",
        "responded",
        "services",
    )  # fmt: skip

    def __init__(
        self, conn: Connection, services: Services, method: str, target: str, headers: dict[str, str],
        *, keep_alive: bool, http11: bool, max_body: int,
    ) -> None:  # fmt: skip
        path, _, query = target.partition("?")
        self.method = method
        self.path = path
        self.query_string = query
        self.headers = headers
        self.match_info: dict[str, str] = {}
        self.services = services
        self.keep_alive = keep_alive
        self.http11 = http11
        self.max_body = max_body
        self.responded = False
        #: The route's request context once it has one: the dispatcher records a request that
        #: failed unexpectedly with it, so every answer is in the request log.
        self.context: object | None = None
        self._conn = conn
        self._chunks: list[bytes] = []
        self._size = 0
        self._complete = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None
        self._read_started = False
        # HTTP/1.0 has no 100 Continue: the expectation is ignored (RFC 9110 §10.1.1).
        self._expect_continue = http11 and headers.get("expect", "").lower() == "100-continue"
        self._discard = False
        self._check_declared_length()

    # -- what handlers use ----------------------------------------------------------------------

    @property
    def content_type(self) -> str:
        raw = self.headers.get("content-type", "")
        return raw.partition(";")[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        raw = self.headers.get("content-length")
        return int(raw) if raw is not None and raw.isdigit() else None

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.query_string)) if self.query_string else {}

    def param(self, name: str) -> str:
        return unquote(self.match_info[name])

    async def read(self) -> bytes:
        """The whole body; ``PayloadTooLarge`` past ``max_body``, ``BadRequest`` if the caller
        went away before sending all of it."""
        if not self._read_started:
            self._read_started = True
            if self._expect_continue and not self._complete and self._error is None:
                self._conn.write(CONTINUE)
        while not self._complete and self._error is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._error is not None:
            raise self._error
        if len(self._chunks) == 1:
            return self._chunks[0]
        body = b"".join(self._chunks)
        self._chunks = [body]
        return body

    # -- what the protocol uses -----------------------------------------------------------------

    @property
    def complete(self) -> bool:
        return self._complete

    @property
    def body_unread(self) -> bool:
        """The handler answered without reading a body the caller announced with 100-continue:
        the caller may or may not send it, so the connection cannot be reused."""
        return self._expect_continue and not self._read_started

    def feed(self, data: bytes) -> None:
        if self._error is not None or self._discard:
            return
        self._size += len(data)
        if self._size > self.max_body:
            self._too_large()
            return
        self._chunks.append(data)

    def limit_body(self, max_body: int) -> None:
        """A lower limit for this request's body than the server's (an endpoint that only takes
        small bodies); applied to what was declared and to what has already arrived."""
        if max_body >= self.max_body:
            return
        self.max_body = max_body
        self._check_declared_length()
        if self._error is None and self._size > max_body:
            self._too_large()

    def _check_declared_length(self) -> None:
        length = self.content_length
        if length is not None and length > self.max_body:
            self._fail(PayloadTooLarge(
                f"request body is {length} bytes; the limit is {self.max_body}", code="request_too_large"
            ))  # fmt: skip

    def _too_large(self) -> None:
        self._chunks.clear()
        self._fail(PayloadTooLarge(
            f"request body is over the limit of {self.max_body} bytes", code="request_too_large"
        ))  # fmt: skip

    def discard(self) -> None:
        """The answer is sent: whatever of the body still arrives is dropped."""
        self._discard = True
        self._chunks = []

    def finish(self) -> None:
        self._complete = True
        self._wake()

    def abort(self, error: Exception | None = None) -> None:
        """The body will not complete: the caller left, or (``error``) it could not be parsed."""
        if not self._complete:
            self._fail(error or BadRequest("the caller closed the connection before sending the whole body"))

    def _fail(self, exc: Exception) -> None:
        self._error = exc
        self.keep_alive = False  # the rest of the body cannot be told from the next request
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Response:
    """A whole response: head and body leave in one write."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, status: int = 200, body: bytes = b"", *, content_type: str | None = JSON,
        headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else {}
        if content_type is not None:
            self.headers["content-type"] = content_type

    def encode(self, keep_alive: bool, *, head_only: bool = False) -> bytes:
        """``head_only`` for HEAD: the headers a GET would get, no body (RFC 9110 §9.3.2)."""
        extra = b"content-length: %d\r\n%s\r\n" % (
            len(self.body),
            b"" if keep_alive else b"connection: close\r\n",
        )
        head = encode_head(self.status, self.headers, extra)
        return head if head_only else head + self.body


class StreamResponse:
    """A streamed response: ``prepare`` sends the head, each ``write`` one chunk. Writing after
    the caller went away raises ``ConnectionResetError``."""

    __slots__ = ("_chunked", "_conn", "_finished", "_prepared", "headers", "status")

    def __init__(self, status: int = 200, *, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers if headers is not None else {}
        self._conn: Connection | None = None
        self._chunked = True
        self._prepared = False
        self._finished = False

    @property
    def prepared(self) -> bool:
        return self._prepared

    async def prepare(self, request: Request) -> None:
        conn = request._conn
        if conn.closed:
            raise ConnectionResetError("the caller closed the connection")
        self._conn = conn
        self._prepared = True
        request.responded = True
        # HTTP/1.0 has no chunked encoding: the body ends when the connection does.
        self._chunked = request.http11
        if not self._chunked:
            request.keep_alive = False
        extra = b"transfer-encoding: chunked\r\n" if self._chunked else b""
        if not request.keep_alive:
            extra += b"connection: close\r\n"
        conn.write(encode_head(self.status, self.headers, extra + b"\r\n"))

    async def write(self, data: bytes) -> None:
        conn = self._conn
        assert conn is not None, "prepare() first"
        if conn.closed:
            raise ConnectionResetError("the caller closed the connection")
        if not data:
            return
        conn.write(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)
        await conn.drain()

    async def write_eof(self) -> None:
        conn = self._conn
        if conn is None or self._finished:
            return
        self._finished = True
        if self._chunked and not conn.closed:
            conn.write(b"0\r\n\r\n")

    @property
    def finished(self) -> bool:
        return self._finished


AnyResponse = Response | StreamResponse
#: What answers a request (a route's handler, or the dispatcher in front of them all).
Handler: TypeAlias = Callable[[Request], Awaitable[AnyResponse]]
