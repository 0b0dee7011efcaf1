"""The HTTP/1.1 server connection (server/protocol.py), driven over real sockets with exact bytes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from email.utils import parsedate_to_datetime

from sluice.errors import BadRequest
from sluice.server.wire import Request, Response, StreamResponse
from tests.server.harness import http_request, ok, reading

# -- streamed responses -------------------------------------------------------------------------------


def streaming(parts: list[bytes], status: int = 200):
    async def handler(request: Request) -> StreamResponse:
        resp = StreamResponse(status, headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for part in parts:
            await resp.write(part)
        return resp

    return handler


async def test_stream_response_uses_chunked_encoding_and_ends_with_a_last_chunk(serve) -> None:
    h = await serve(streaming([b"hello", b"", b" world", b"x" * 300]))
    c = await h.connect()
    await c.send(http_request("GET", "/stream"))
    r = await c.response()
    assert r.status == 200
    assert r.header("transfer-encoding") == "chunked"
    assert r.header("content-length") is None
    assert r.header("connection") is None
    assert r.header("content-type") == "text/event-stream"
    assert r.raw_body == b"5\r\nhello\r\n6\r\n world\r\n12c\r\n" + b"x" * 300 + b"\r\n0\r\n\r\n"
    assert r.raw_body.endswith(b"0\r\n\r\n")
    # Keep-alive holds after a stream.
    await c.send(http_request("GET", "/again"))
    assert (await c.response()).body == b"hello world" + b"x" * 300


async def test_stream_response_to_a_closing_http11_client(serve) -> None:
    h = await serve(streaming([b"abc"]))
    c = await h.connect()
    await c.send(http_request("GET", "/", headers={"connection": "close"}))
    r = await c.response()
    assert r.header("transfer-encoding") == "chunked"
    assert r.header("connection") == "close"
    assert r.raw_body == b"3\r\nabc\r\n0\r\n\r\n"
    assert await c.closed()


async def test_stream_response_to_http10_is_not_chunked_and_closes(serve) -> None:
    h = await serve(streaming([b"hello", b" world"]))
    c = await h.connect()
    await c.send(http_request("GET", "/stream", version="1.0"))
    head = await c.head()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert b"content-length" not in head.lower()
    assert b"\r\nconnection: close\r\n" in head
    rest = await asyncio.wait_for(c.reader.read(), 1.0)  # the body ends when the connection does
    assert rest == b"hello world"


async def test_unprepared_stream_response_is_an_empty_answer(serve) -> None:
    async def handler(request: Request) -> StreamResponse:
        return StreamResponse(202, headers={"x-kind": "empty"})

    h = await serve(handler)
    c = await h.connect()
    await c.send(http_request("GET", "/"))
    r = await c.response()
    assert (r.status, r.body) == (202, b"")
    assert r.header("content-length") == "0"
    assert r.header("transfer-encoding") is None
    assert r.header("x-kind") == "empty"
    assert await c.stays_open()


async def test_stream_write_after_the_client_disconnected_raises(serve) -> None:
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def handler(request: Request) -> StreamResponse:
        resp = StreamResponse(200)
        await resp.prepare(request)
        await resp.write(b"first")
        try:
            for _ in range(200):
                await asyncio.sleep(0.005)
                await resp.write(b"more")
        except BaseException as exc:
            outcome.set_result(exc)
            raise
        else:
            outcome.set_result(None)
        return resp

    h = await serve(handler)
    c = await h.connect()
    await c.send(http_request("GET", "/stream"))
    await c.head()
    assert await c.reader.readexactly(10) == b"5\r\nfirst\r\n"
    c.close()
    exc = await asyncio.wait_for(outcome, 2.0)
    # The handler is cancelled as soon as the caller is gone, or its next write fails.
    assert isinstance(exc, ConnectionError | asyncio.CancelledError), exc
    await h.until(lambda: not h.state.connections)


async def test_prepare_after_the_client_disconnected_raises(serve) -> None:
    gone = asyncio.Event()
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def handler(request: Request) -> StreamResponse:
        # The caller left, so the handler is cancelled; this one carries on regardless.
        with contextlib.suppress(asyncio.CancelledError):
            await gone.wait()
        resp = StreamResponse(200)
        try:
            await resp.prepare(request)
        except Exception as exc:
            outcome.set_result(exc)
        else:
            outcome.set_result(None)
        return resp

    h = await serve(handler)
    c = await h.connect()
    await c.send(http_request("GET", "/"))
    await h.until(lambda: len(h.state.connections) == 1)
    c.close()
    await h.until(lambda: not h.state.connections)
    gone.set()
    assert isinstance(await asyncio.wait_for(outcome, 1.0), ConnectionResetError)


async def test_reading_a_body_the_client_abandoned_raises_bad_request(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen))
    c = await h.connect()
    await c.send(http_request("POST", "/", headers={"content-length": "100"}) + b"partial")
    await h.until(lambda: any(p._current is not None for p in h.protocols()))
    c.close()
    await h.until(lambda: len(seen) == 1)
    assert isinstance(seen[0], BadRequest)


async def test_handler_failing_mid_stream_does_not_write_a_second_response(serve) -> None:
    async def handler(request: Request) -> StreamResponse:
        resp = StreamResponse(200)
        await resp.prepare(request)
        await resp.write(b"partial")
        raise RuntimeError("upstream went wrong")

    h = await serve(handler)
    c = await h.connect()
    await c.send(http_request("GET", "/"))
    await c.head()
    rest = await asyncio.wait_for(c.reader.read(), 0.3)  # the stream must end with the connection
    assert b"HTTP/1.1" not in rest
    assert not rest.endswith(b"0\r\n\r\n")  # truncated, so the client cannot take it for complete


# -- response headers ---------------------------------------------------------------------------------


async def test_header_with_cr_or_lf_from_a_handler_is_dropped(serve) -> None:
    async def handler(request: Request) -> Response:
        return Response(
            200,
            b"{}",
            headers={
                "x-ok": "fine",
                "x-crlf": "a\r\nx-injected: 1",
                "x-lf": "a\nx-injected: 2",
                "x-cr": "a\rb",
                "x-evil\r\nx-injected": "3",
                "x-after": "also fine",
            },
        )

    h = await serve(handler)
    c = await h.connect()
    await c.send(http_request("GET", "/"))
    r = await c.response()
    names = [n for n, _ in r.headers]
    assert r.header("x-ok") == "fine"
    assert r.header("x-after") == "also fine"
    assert "x-injected" not in names
    assert not {"x-crlf", "x-lf", "x-cr", "x-evil"} & set(names)
    assert r.body == b"{}"
    await c.send(http_request("GET", "/"))
    assert (await c.response()).status == 200  # framing intact


async def test_header_name_with_a_colon_from_a_handler_is_dropped(serve) -> None:
    async def handler(request: Request) -> Response:
        return Response(200, b"{}", headers={"x-ok": "fine", "set-cookie: forged=1; x": "v"})

    h = await serve(handler)
    c = await h.connect()
    await c.send(http_request("GET", "/"))
    r = await c.response()
    assert r.header("x-ok") == "fine"
    assert r.header("set-cookie") is None


async def test_header_injection_is_dropped_from_a_stream_head_too(serve) -> None:
    async def handler(request: Request) -> StreamResponse:
        resp = StreamResponse(200, headers={"x-bad": "v\r\n\r\nHTTP/1.1 200 OK", "x-ok": "1"})
        await resp.prepare(request)
        await resp.write(b"data")
        return resp

    h = await serve(handler)
    c = await h.connect()
    await c.send(http_request("GET", "/"))
    r = await c.response()
    assert r.header("x-ok") == "1"
    assert r.header("x-bad") is None
    assert r.body == b"data"


async def test_date_header_is_present_and_current(serve) -> None:
    h = await serve(ok)
    c = await h.connect()
    await c.send(http_request("GET", "/"))
    r = await c.response()
    date = r.header("date")
    assert date is not None
    assert date.endswith(" GMT")
    assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 5


async def test_refusals_carry_a_date_too(serve) -> None:
    h = await serve(ok)
    c = await h.connect()
    await c.send(b"NOT HTTP\r\n\r\n")
    r = await c.response()
    assert r.header("date") is not None
