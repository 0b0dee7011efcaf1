"""A fast fixed-response OpenAI-compatible upstream on raw asyncio (uvloop when present).

Run as ``python -m sluice_bench.upstream --port P``. Routes (any method, body ignored except for the
``stream`` flag on the plain route):

* ``/v1/chat/completions`` -- fixed ``chat.completion`` JSON, or the fixed SSE body when the request
  has ``"stream": true``.
* ``/stream/v1/chat/completions`` -- always the fixed SSE body (the path nginx uses too).
* ``/pace/{interval_ms}/{chunks}/v1/chat/completions`` -- a paced stream: headers, the role chunk and
  the first content chunk at once, then one content chunk every ``interval_ms``; chunked encoding,
  as OpenAI sends it. One timer per stream, so 1,000 slow streams cost next to nothing.
* ``/v1/models`` -- a one-model list.

It is the fallback for machines without nginx and the paced upstream in every mode.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import socket
from typing import cast

from sluice_bench import payloads

_STREAM_FLAG = re.compile(rb'"stream"\s*:\s*true')
_FIXED_JSON = payloads.chat_completion()
_FIXED_SSE = payloads.sse_body()
_MODELS = payloads.models_list()


def _response(status: str, ctype: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status.encode()
        + b"\r\ncontent-type: "
        + ctype
        + b"\r\nx-request-id: req_bench\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


_RESP_JSON = _response("200 OK", b"application/json", _FIXED_JSON)
_RESP_SSE = _response("200 OK", b"text/event-stream; charset=utf-8", _FIXED_SSE)
_RESP_MODELS = _response("200 OK", b"application/json", _MODELS)
_RESP_404 = _response("404 Not Found", b"application/json", b'{"error":{"message":"no such route"}}')
_PACED_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"x-request-id: req_bench\r\ntransfer-encoding: chunked\r\n\r\n"
)
_PACE_RE = re.compile(rb"^/pace/(\d+)/(\d+)/v1/chat/completions$")
_paced_cache: dict[int, list[bytes]] = {}


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _paced_events(n: int) -> list[bytes]:
    events = _paced_cache.get(n)
    if events is None:
        events = [_chunked(e) for e in payloads.sse_events(n)]
        _paced_cache[n] = events
    return events


class _Paced:
    """Writes one paced stream; owns its timer so a closed connection stops it at once."""

    def __init__(self, proto: UpstreamProtocol, interval: float, n: int) -> None:
        self.proto = proto
        self.interval = interval
        events = _paced_events(n)
        # role + first content chunk together, then one content chunk per interval; the finish,
        # usage and [DONE] events follow the last content chunk without a pause.
        tail = b"".join(events[n + 1 :]) + b"0\r\n\r\n"
        self.steps: list[bytes] = [events[0] + events[1], *events[2 : n + 1]]
        self.steps[-1] += tail
        self.i = 0
        self.handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.proto.write(_PACED_HEAD)
        self._tick()

    def _tick(self) -> None:
        if self.proto.closed:
            return
        self.proto.write(self.steps[self.i])
        self.i += 1
        if self.i >= len(self.steps):
            self.proto.paced_done()
            return
        self.handle = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


class UpstreamProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.paced: _Paced | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they quack the same.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.paced is not None:
            self.paced.cancel()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def paced_done(self) -> None:
        self.paced = None
        if self.buf:
            self._drain()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.paced is None:
            self._drain()

    def _drain(self) -> None:
        while self.paced is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            length = 0
            lower = head.lower()
            pos = lower.find(b"\r\ncontent-length:")
            if pos >= 0:
                stop = lower.find(b"\r\n", pos + 2)
                length = int(head[pos + 17 : stop if stop >= 0 else len(head)].strip())
            total = end + 4 + length
            if len(self.buf) < total:
                return
            body = self.buf[end + 4 : total]
            self.buf = self.buf[total:]
            self._handle(head, body)

    def _handle(self, head: bytes, body: bytes) -> None:
        line_end = head.find(b"\r\n")
        request_line = head if line_end < 0 else head[:line_end]
        parts = request_line.split(b" ")
        path = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b"/"
        if path == b"/v1/chat/completions":
            self.write(_RESP_SSE if _STREAM_FLAG.search(body) else _RESP_JSON)
        elif path == b"/stream/v1/chat/completions":
            self.write(_RESP_SSE)
        elif path == b"/v1/models":
            self.write(_RESP_MODELS)
        else:
            m = _PACE_RE.match(path)
            if m is None:
                self.write(_RESP_404)
                return
            self.paced = _Paced(self, int(m.group(1)) / 1000.0, max(1, int(m.group(2))))
            self.paced.start()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, host, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"upstream listening on {host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop ships with the gateway's venv
        pass
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
