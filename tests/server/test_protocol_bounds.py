"""Issue #18's server-side defects, each over a raw socket: every buffer bounded, every wait timed,
refused bodies answered with a lingering close, pipelined answers in order, RFC 9112 head rules."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sluice.errors import PayloadTooLarge
from sluice.server import protocol
from sluice.server.protocol import MAX_HEAD_BYTES, MIN_BODY_RATE
from sluice.server.wire import Request, Response, StreamResponse
from tests.server.harness import echo, http_request, ok, reading

CHUNKED = {"transfer-encoding": "chunked"}


def _buffered(h) -> int:
    """Bytes the server holds for the connection's request(s): body chunks and header pieces."""
    total = 0
    for p in h.protocols():
        for req in (p._current, p._active, *p._queue):
            if req is not None:
                total += sum(len(c) for c in req._chunks)
        total += sum(len(k) + len(v) for k, v in p._headers.items())
    return total


# -- 1. trailers and chunk framing are bounded ------------------------------------------------------


async def test_an_endless_trailer_line_is_refused_with_431_and_never_buffered(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen), max_body=1 << 20)
    c = await h.connect()
    await c.send(http_request("POST", "/", headers=CHUNKED) + b"3\r\nabc\r\n0\r\nX-Trailer: ")
    for _ in range(40):  # 2.5 MiB of one trailer line, far past the 64 KiB bound
        try:
            await c.send(b"a" * 65536)
        except ConnectionError:
            break
    r = await c.response()
    assert r.status == 431
    assert "trailers" in seen[0].message  # type: ignore[attr-defined]
    assert _buffered(h) < 2 * MAX_HEAD_BYTES


async def test_an_endless_trailer_after_an_early_answer_is_not_read_forever(serve) -> None:
    h = await serve(lambda request: _answer_401(), max_body=1 << 20)
    c = await h.connect()
    await c.send(http_request("POST", "/", headers=CHUNKED) + b"0\r\nX-Trailer: ")
    r = await c.response()
    assert r.status == 401
    assert r.header("connection") == "close"
    sent = await _send_until_cut(c, 64 * 1024 * 1024)
    assert sent < 32 * 1024 * 1024  # the lingering close read a bounded amount, then cut


async def test_tiny_chunks_with_endless_extensions_are_refused(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen), max_body=1 << 20)
    c = await h.connect()
    await c.send(http_request("POST", "/", headers=CHUNKED))
    ext = b"1;" + b"e" * 4000 + b"\r\nx\r\n"
    for _ in range(40):
        try:
            await c.send(ext * 4)
        except ConnectionError:
            break
    r = await c.response()
    assert r.status == 431


# -- 10. trailers are never merged into the headers -------------------------------------------------


async def test_trailer_fields_never_become_request_headers(serve) -> None:
    seen: list[dict[str, str]] = []

    async def handler(request: Request) -> Response:
        await request.read()
        seen.append(dict(request.headers))
        return Response(204, content_type=None)

    h = await serve(handler)
    c = await h.connect()
    await c.send(
        http_request("POST", "/", headers=CHUNKED)
        + b"3\r\nabc\r\n0\r\nX-Sluice-User: mallory\r\nX-Sluice-Tags: evil\r\nHost: other\r\n\r\n"
    )
    assert (await c.response()).status == 204
    assert "x-sluice-user" not in seen[0]
    assert "x-sluice-tags" not in seen[0]
    assert seen[0]["host"] == "test"
    assert await c.stays_open()


# -- 2 and 8. a refused body: a bounded lingering close, and the caller reads its answer ------------


async def _answer_401() -> Response:
    return Response(401, b'{"error":"no key"}')


async def _send_until_cut(c, limit: int) -> int:
    """Send body bytes until the server cuts the connection (or ``limit``); the bytes sent."""
    sent = 0
    block = b"x" * 65536
    while sent < limit:
        try:
            c.writer.write(block)
            await asyncio.wait_for(c.writer.drain(), 3.0)
        except (ConnectionError, TimeoutError):
            return sent
        sent += len(block)
    return sent


async def test_a_refused_chunked_body_is_read_a_bounded_amount_then_the_connection_closes(serve) -> None:
    h = await serve(lambda request: _answer_401(), max_body=1 << 20)
    c = await h.connect()
    await c.send(http_request("POST", "/", headers=CHUNKED) + b"10000\r\n")
    r = await c.response()
    assert r.status == 401
    assert r.header("connection") == "close"
    sent = await _send_until_cut(c, 256 * 1024 * 1024)
    assert sent < h.state.linger_bytes + 16 * 1024 * 1024  # socket buffers included
    await h.until(lambda: not h.state.connections, timeout=5)


async def test_a_body_over_max_body_gets_413_the_caller_can_read_not_a_reset(serve) -> None:
    """The official SDKs upload the whole body before they read: with an immediate close they see
    a reset and retry, uploading it three times. A lingering close lets them read the 413."""
    seen: list[object] = []
    h = await serve(reading(seen), max_body=1 << 20)
    body = b"x" * (3 << 20)  # three times the limit, more than the socket buffers hold

    def upload_then_read() -> bytes:
        # As a blocking client does: the whole upload first, then the answer.
        with socket.create_connection(("127.0.0.1", h.port), timeout=5) as sock:
            sock.sendall(http_request("POST", "/", body))
            answer = b""
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
            return answer

    answer = await asyncio.to_thread(upload_then_read)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in answer
    assert isinstance(seen[0], PayloadTooLarge)


async def test_a_refused_body_that_trickles_is_cut_when_the_linger_time_is_over(serve) -> None:
    h = await serve(lambda request: _answer_401(), max_body=1 << 20)
    c = await h.connect()
    await c.send(http_request("POST", "/", headers=CHUNKED) + b"10000\r\n")
    assert (await c.response()).status == 401
    await c.send(b"x")
    await h.until(lambda: any(p._lingering for p in h.protocols()))
    loop = asyncio.get_running_loop()
    h.state.sweep(loop.time() + protocol.LINGER_S + 1)
    await h.until(lambda: not h.state.connections)


async def test_a_short_declared_rest_of_a_body_is_dropped_and_the_connection_kept(serve) -> None:
    h = await serve(lambda request: _answer_401(), max_body=1 << 20)
    c = await h.connect()
    await c.send(http_request("POST", "/", headers={"content-length": "1000"}) + b"x" * 10)
    r = await c.response()
    assert r.status == 401
    assert r.header("connection") is None
    await c.send(b"x" * 990 + http_request("GET", "/next"))
    assert (await c.response()).status == 401


# -- 3. a slow body and a slow head are timed as a whole --------------------------------------------


async def test_a_body_trickling_a_byte_at_a_time_gets_408_however_often_it_sends(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen), max_body=1 << 20, slow_client_s=10.0)
    c = await h.connect()
    await c.send(http_request("POST", "/", headers={"content-length": "100000"}))
    await h.until(lambda: any(p._current is not None for p in h.protocols()))
    (conn,) = h.protocols()
    start = conn._body_started
    for i in range(1, 10):  # a byte a second: each resets the idle clock, never the rate's
        await c.send(b"x")
        await h.until(lambda: conn._body_bytes == i)
        conn.last_active = start + i
        h.state.sweep(start + i)
    assert await c.stays_open()
    await c.send(b"x")
    await h.until(lambda: conn._body_bytes == 10)
    conn.last_active = start + 11
    h.state.sweep(start + 11)  # 10 bytes in 11 s: under the rate once the 10 s of grace are over
    r = await c.response()
    assert r.status == 408
    assert r.header("connection") == "close"
    assert f"{MIN_BODY_RATE} bytes/s" in seen[0].message  # type: ignore[attr-defined]


async def test_a_body_keeping_up_the_minimum_rate_is_not_cut(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen), max_body=1 << 20, slow_client_s=10.0)
    c = await h.connect()
    await c.send(http_request("POST", "/", headers={"content-length": str(40 * MIN_BODY_RATE)}))
    await h.until(lambda: any(p._current is not None for p in h.protocols()))
    (conn,) = h.protocols()
    start = conn._body_started
    await c.send(b"x" * (20 * MIN_BODY_RATE))
    await h.until(lambda: conn._body_bytes == 20 * MIN_BODY_RATE)
    conn.last_active = start + 25
    h.state.sweep(start + 25)  # 25 s in: allowed 10 + 20 = 30 s for what arrived
    assert await c.stays_open()
    await c.send(b"x" * (20 * MIN_BODY_RATE))
    assert (await c.response()).status == 200


async def test_a_head_trickling_past_the_client_timeout_gets_408(serve) -> None:
    h = await serve(ok, slow_client_s=10.0)
    c = await h.connect()
    await c.send(b"GET / HTTP/1.1\r\nhost: x\r\n")
    await h.until(lambda: any(p._in_head for p in h.protocols()))
    (conn,) = h.protocols()
    start = asyncio.get_running_loop().time()
    for i in range(1, 4):
        await c.send(b"x-a: b\r\n")
        conn.last_active = start + 4 * i
        h.state.sweep(start + 4 * i)
    r = await c.response()
    assert r.status == 408
    assert await c.closed()


# -- 7. a client that does not read is cut; one that leaves cancels its work -----------------------


async def test_a_stream_client_that_never_reads_is_cut_and_its_handler_cancelled(serve) -> None:
    outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(request: Request) -> StreamResponse:
        resp = StreamResponse(200)
        await resp.prepare(request)
        try:
            while True:
                await resp.write(b"y" * 65536)
        except BaseException as exc:
            outcome.set_result(exc)
            raise

    h = await serve(handler, slow_client_s=10.0)
    c = await h.connect()
    await c.send(http_request("GET", "/stream"))
    await h.until(lambda: any(p._write_paused for p in h.protocols()), timeout=5)
    h.state.sweep(asyncio.get_running_loop().time() + 5)
    assert not outcome.done()  # within the allowance
    h.state.sweep(asyncio.get_running_loop().time() + 11)
    exc = await asyncio.wait_for(outcome, 2)
    assert isinstance(exc, ConnectionError | asyncio.CancelledError)
    await h.until(lambda: not h.state.connections)


async def test_a_client_that_disconnects_cancels_its_handler_at_once(serve) -> None:
    started = asyncio.Event()
    outcome: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def handler(request: Request) -> Response:
        started.set()
        try:
            await asyncio.sleep(60)  # an upstream call that takes its time
        except BaseException as exc:
            outcome.set_result(exc)
            raise
        return Response(200)

    h = await serve(handler)
    c = await h.connect()
    await c.send(http_request("GET", "/slow"))
    await asyncio.wait_for(started.wait(), 1)
    c.close()
    assert isinstance(await asyncio.wait_for(outcome, 1), asyncio.CancelledError)


# -- 9. pipelining: every request before a bad one gets its answer, in order ------------------------


async def test_pipelined_requests_before_a_bad_one_are_all_answered_in_order(serve) -> None:
    h = await serve(echo)
    c = await h.connect()
    await c.send(http_request("GET", "/healthz") + http_request("GET", "/v1/models") + b"BAD\r\n\r\n")
    first, second, third = (await c.response(), await c.response(), await c.response())
    assert (first.status, first.json()["path"]) == (200, "/healthz")
    assert (second.status, second.json()["path"]) == (200, "/v1/models")
    assert third.status == 400
    assert third.header("connection") == "close"
    assert await c.closed()


async def test_a_pipelined_request_whose_body_is_malformed_is_the_one_refused(serve) -> None:
    release = asyncio.Event()

    async def handler(request: Request) -> Response:
        await release.wait()
        body = await request.read()
        return Response(200, b'{"path":"%s","body":"%s"}' % (request.path.encode(), body))

    h = await serve(handler)
    c = await h.connect()
    await c.send(
        http_request("POST", "/a", b"aa")
        + http_request("POST", "/b", headers=CHUNKED)
        + b"2\r\nbb\r\nZZ\r\n"  # not a chunk size
    )
    await asyncio.sleep(0.02)
    release.set()
    r = await c.response()
    assert (r.status, r.json()) == (200, {"path": "/a", "body": "aa"})
    r = await c.response()
    assert r.status == 400
    assert await c.closed()


# -- 13. RFC 9112 head rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", 400),  # two Host
        (b"GET / HTTP/1.0\r\nhost: a\r\nhost: a\r\n\r\n", 400),
        (b"POST / HTTP/1.0\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nhost: a\r\n\r\n", 505),
        (b"GET / HTTP/3.0\r\nhost: a\r\n\r\n", 505),
    ],
)
async def test_head_rules_of_rfc_9112(serve, raw: bytes, status: int) -> None:
    calls: list[str] = []

    async def handler(request: Request) -> Response:
        calls.append(request.path)
        return Response(200)

    h = await serve(handler)
    c = await h.connect()
    await c.send(raw)
    r = await c.response()
    assert r.status == status
    assert r.header("connection") == "close"
    assert await c.closed()
    assert calls == []


async def test_http10_without_host_is_accepted(serve) -> None:
    h = await serve(ok)
    c = await h.connect()
    await c.send(b"GET / HTTP/1.0\r\n\r\n")
    assert (await c.response()).status == 200


async def test_a_raw_refusal_on_the_anthropic_path_is_in_anthropics_format(serve) -> None:
    h = await serve(ok)
    c = await h.connect()
    await c.send(b"POST /v1/messages HTTP/1.1\r\n\r\n")  # no Host
    r = await c.response()
    assert r.status == 400
    assert r.json()["type"] == "error"
    assert "Host" in r.json()["error"]["message"]
    c2 = await h.connect()
    await c2.send(b"POST /v1/chat/completions HTTP/1.1\r\n\r\n")
    assert "Host" in (await c2.response()).json()["error"]["message"]
