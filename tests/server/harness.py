"""A raw-socket HTTP/1.1 client for the server under test, so tests see exact bytes on the wire."""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sluice.errors import GatewayError
from sluice.server.protocol import HttpProtocol, ServerState
from sluice.server.wire import Request, Response, StreamResponse

Handler = Callable[[Request], Awaitable[Response | StreamResponse]]

#: How long a test waits for something that should happen at once.
TIMEOUT = 1.0


@dataclass
class RawResponse:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]  # names lower-cased, in the order sent
    head: bytes  # status line and headers, up to and including the blank line
    body: bytes  # de-chunked
    raw_body: bytes  # as sent (chunk framing included)

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One raw connection to the server under test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def head(self, timeout: float = TIMEOUT) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)

    async def response(self, *, method: str = "GET", timeout: float = TIMEOUT) -> RawResponse:
        """Read one whole response; ``method="HEAD"`` reads none of a body, as a client must."""
        return await asyncio.wait_for(self._response(method), timeout)

    async def _response(self, method: str) -> RawResponse:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        version, status, reason = lines[0].split(" ", 2)
        assert version == "HTTP/1.1", f"not a status line: {lines[0]!r}"
        assert len(status) == 3 and status.isdigit(), f"not a status line: {lines[0]!r}"
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            assert sep, f"malformed header line {line!r}"
            headers.append((name.lower(), value.strip()))
        resp = RawResponse(int(status), reason, version, headers, head, b"", b"")
        if method == "HEAD" or resp.status in (100, 204, 304):
            return resp
        te = resp.header("transfer-encoding")
        length = resp.header("content-length")
        if te is not None:
            assert te == "chunked", te
            raw, body = [], []
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                raw.append(size_line)
                size = int(size_line.split(b";")[0], 16)
                data = await self.reader.readexactly(size + 2)
                raw.append(data)
                assert data.endswith(b"\r\n"), data
                if size == 0:
                    break
                body.append(data[:-2])
            resp.raw_body = b"".join(raw)
            resp.body = b"".join(body)
        elif length is not None:
            resp.body = resp.raw_body = await self.reader.readexactly(int(length))
        else:
            resp.body = resp.raw_body = await self.reader.read()  # until the connection closes
        return resp

    async def closed(self, timeout: float = TIMEOUT) -> bool:
        """True when the server closes (or resets) the connection within ``timeout``; False when it
        stays open. Any byte that arrives instead fails the test."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        assert data == b"", f"expected the connection to close, got {data[:200]!r}"
        return True

    async def stays_open(self, timeout: float = 0.05) -> bool:
        return not await self.closed(timeout)

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


@dataclass
class Harness:
    state: ServerState
    server: asyncio.AbstractServer
    port: int
    services: types.SimpleNamespace
    clients: list[Client] = field(default_factory=list)

    async def connect(self) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        client = Client(reader, writer)
        self.clients.append(client)
        return client

    def protocols(self) -> list[HttpProtocol]:
        return list(self.state.connections)

    async def until(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        """Wait (briefly polling) until the server side reaches a state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError("the server never reached the expected state")
            await asyncio.sleep(0.005)


def http_request(
    method: str = "GET", path: str = "/", body: bytes | None = None, *, version: str = "1.1",
    headers: dict[str, str] | None = None,
) -> bytes:  # fmt: skip
    """The exact bytes of one request; a body gets a content-length unless the headers frame it."""
    lines = [f"{method} {path} HTTP/{version}", "host: test"]
    hdrs = dict(headers or {})
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k in hdrs):
        hdrs["content-length"] = str(len(body))
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


# -- handlers shared by the protocol tests ------------------------------------------------------------


async def echo(request: Request) -> Response:
    """Says what it was asked: method, path, query string, body and a few headers."""
    body = await request.read()
    payload = {
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "body": body.decode("latin-1"),
        "http11": request.http11,
        "keep_alive": request.keep_alive,
    }
    return Response(200, json.dumps(payload).encode())


def reading(seen: list[object]):
    """A handler that reads the body and records the body or the error it got."""

    async def handler(request: Request) -> Response:
        try:
            body = await request.read()
        except GatewayError as exc:
            seen.append(exc)
            return Response(exc.status, b'{"error":"%s"}' % exc.kind.encode())
        seen.append(body)
        return Response(200, body, content_type="text/plain")

    return handler


async def ok(request: Request) -> Response:
    return Response(200, b'{"ok":true}')
