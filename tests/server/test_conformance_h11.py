"""Differential conformance: the same corpus of framing cases (issue #18's, and the classic
request-smuggling set) fed to Sluice's server and to ``h11`` as the reference state machine.
The accept/reject outcome (and how many requests were answered first) matches on every case,
except the differences listed in ``DIFFERENCES``, each justified here and in docs/security.md."""

from __future__ import annotations

import asyncio
import re
import types

import h11
import pytest

from sluice.server.protocol import HttpProtocol, ServerState
from sluice.server.wire import Request, Response
from tests.server.test_fuzz_protocol import FakeTransport

H = b"host: x\r\n"

CORPUS: dict[str, bytes] = {
    "get": b"GET / HTTP/1.1\r\n" + H + b"\r\n",
    "post-content-length": b"POST / HTTP/1.1\r\n" + H + b"content-length: 5\r\n\r\nhello",
    "post-chunked": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "chunk-extension": b"POST / HTTP/1.1\r\n"
    + H
    + b"transfer-encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n",
    "trailers": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: chunked\r\n\r\n0\r\nx-t: 1\r\n\r\n",
    "http10": b"GET / HTTP/1.0\r\n\r\n",
    "absolute-form": b"GET http://x/ HTTP/1.1\r\n" + H + b"\r\n",
    "cl-te": b"POST / HTTP/1.1\r\n" + H + b"content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-cl": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n",
    "cl-cl-different": b"POST / HTTP/1.1\r\n" + H + b"content-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
    "cl-list-different": b"POST / HTTP/1.1\r\n" + H + b"content-length: 5, 6\r\n\r\nhello!",
    "cl-negative": b"POST / HTTP/1.1\r\n" + H + b"content-length: -1\r\n\r\n",
    "cl-plus": b"POST / HTTP/1.1\r\n" + H + b"content-length: +5\r\n\r\nhello",
    "cl-hex": b"POST / HTTP/1.1\r\n" + H + b"content-length: 0x5\r\n\r\nhello",
    "te-xchunked": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te-gzip-chunked": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te-chunked-gzip": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "te-twice": b"POST / HTTP/1.1\r\n"
    + H
    + b"transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-http10": b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-space-before-colon": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding : chunked\r\n\r\n0\r\n\r\n",
    "te-obs-fold": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "chunk-size-overflow": b"POST / HTTP/1.1\r\n"
    + H
    + b"transfer-encoding: chunked\r\n\r\nfffffffffffffffff1\r\n",
    "chunk-size-not-hex": b"POST / HTTP/1.1\r\n" + H + b"transfer-encoding: chunked\r\n\r\nzz\r\n",
    "chunk-bad-terminator": b"POST / HTTP/1.1\r\n"
    + H
    + b"transfer-encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
    "http2-request-line": b"GET / HTTP/2.0\r\n" + H + b"\r\n",
    "http-version-garbage": b"GET / HTTP/x.y\r\n" + H + b"\r\n",
    "bare-lf": b"GET / HTTP/1.1\n" + H.replace(b"\r\n", b"\n") + b"\n",
    "space-in-header-name": b"GET / HTTP/1.1\r\n" + H + b"x y: z\r\n\r\n",
    "nul-in-header-value": b"GET / HTTP/1.1\r\n" + H + b"x: a\x00b\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\n" + H + b"x: a\r\n b\r\n\r\n",
    "lowercase-method": b"get / HTTP/1.1\r\n" + H + b"\r\n",
    "header-line-20k": b"GET / HTTP/1.1\r\n" + H + b"x: " + b"a" * 20_000 + b"\r\n\r\n",
    "header-line-100k": b"GET / HTTP/1.1\r\n" + H + b"x: " + b"a" * 100_000 + b"\r\n\r\n",
    "pipelined-then-bad": b"GET /a HTTP/1.1\r\n" + H + b"\r\nGET /b HTTP/1.1\r\n" + H + b"\r\nBAD\r\n\r\n",
    "pipelined-smuggle-cl-te": (
        b"POST / HTTP/1.1\r\n" + H + b"content-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"
    ),
}

#: Where Sluice and h11 differ, and why Sluice's answer is the one it gives.
DIFFERENCES: dict[str, str] = {
    # RFC 9112 §6.3: a request with both is an attack or an error; the server MAY reject it and
    # MUST close after it. llhttp (and Sluice) reject it; h11 lets Transfer-Encoding win.
    "cl-te": "Sluice rejects Content-Length with Transfer-Encoding (400); h11 lets chunked win",
    "te-cl": "Sluice rejects Content-Length with Transfer-Encoding (400); h11 lets chunked win",
    "pipelined-smuggle-cl-te": "as cl-te: nothing after the ambiguous request is read",
    # RFC 9112 §2.2: a recipient MAY accept a bare LF as a line terminator; llhttp does, h11 not.
    "bare-lf": "Sluice accepts bare LF line endings (RFC 9112 §2.2 allows it); h11 rejects them",
    # h11 caps only an incomplete head (16 KiB by default); Sluice caps every head at 64 KiB.
    "header-line-100k": "Sluice refuses a head over 64 KiB (431); h11 caps only heads still arriving",
    # RFC 9110 §15.6.6: 505 for a major version the server does not support; h11 takes any 1.x-like.
    "http2-request-line": "Sluice answers 505 to HTTP/2.0 in a request line; h11 accepts it",
    # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 MUST be treated as faulty framing.
    "te-http10": "Sluice answers 400 to Transfer-Encoding in HTTP/1.0 and closes; h11 decodes it",
    # RFC 9112 §5.2: obs-fold MAY be replaced by a space; h11 does that, llhttp rejects it.
    "obs-fold": "Sluice rejects obsolete line folding (400); h11 unfolds it",
    "te-obs-fold": "as obs-fold, in the Transfer-Encoding header",
    # RFC 9110 §9.1: methods are case-sensitive tokens; llhttp only knows the registered ones.
    "lowercase-method": "Sluice rejects an unknown method token (400); h11 passes any token",
}


def h11_outcome(raw: bytes) -> tuple[int, bool]:
    """(requests completed, rejected) as h11 sees it."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    conn.receive_data(b"")
    done = 0
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            return done, True
        if isinstance(event, h11.EndOfMessage):
            done += 1
            conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
            conn.send(h11.EndOfMessage())
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return done, False
        elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            # Bytes left over that do not make a request are a rejection when they are not empty.
            return done, bool(conn.trailing_data[0].strip()) and event is not h11.PAUSED


async def _sluice(raw: bytes) -> tuple[int, bool]:
    answered: list[str] = []

    async def handler(request: Request) -> Response:
        await request.read()
        answered.append(request.path)
        return Response(200, b"{}")

    state = ServerState(types.SimpleNamespace(draining=False), handler, max_body=1 << 20)  # type: ignore[arg-type]
    conn = HttpProtocol(state)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.data_received(raw)
    for _ in range(50):
        await asyncio.sleep(0)
    written = b"".join(transport.out)
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", written)]
    refused = any(s >= 400 for s in statuses)
    conn.connection_lost(None)
    return len(answered), refused


def sluice_outcome(raw: bytes) -> tuple[int, bool]:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_sluice(raw))
    finally:
        loop.close()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_sluice_and_h11_agree_or_the_difference_is_listed(name: str) -> None:
    raw = CORPUS[name]
    ours, theirs = sluice_outcome(raw), h11_outcome(raw)
    if name in DIFFERENCES:
        assert ours != theirs, f"{name}: no longer differs from h11; drop it from DIFFERENCES"
    else:
        assert ours == theirs, f"{name}: Sluice {ours} vs h11 {theirs}"


def test_every_listed_difference_is_a_corpus_case() -> None:
    assert set(DIFFERENCES) <= set(CORPUS)
