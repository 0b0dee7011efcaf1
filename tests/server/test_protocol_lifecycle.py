"""The HTTP/1.1 server connection (server/protocol.py), driven over real sockets with exact bytes."""

from __future__ import annotations

import asyncio

import pytest

from sluice.errors import RequestTimeout
from sluice.runner import drain
from sluice.server.wire import Request, Response, StreamResponse
from tests.server.harness import http_request, ok, reading

# -- expiry: idle keep-alive and slow clients ---------------------------------------------------------


async def test_idle_keep_alive_connection_is_closed_by_sweep(serve) -> None:
    h = await serve(ok, keepalive_s=5.0, slow_client_s=60.0)
    c = await h.connect()
    await c.send(http_request("GET", "/"))
    await c.response()
    loop = asyncio.get_running_loop()
    h.state.sweep(loop.time() + 1)  # not idle long enough
    assert await c.stays_open()
    h.state.sweep(loop.time() + 1000)
    assert await c.closed()
    await h.until(lambda: not h.state.connections)


async def test_connection_that_never_sent_a_byte_expires_as_idle(serve) -> None:
    h = await serve(ok, keepalive_s=5.0, slow_client_s=1000.0)
    c = await h.connect()
    await h.until(lambda: len(h.state.connections) == 1)
    h.state.sweep(asyncio.get_running_loop().time() + 10)
    assert await c.closed()


async def test_sweep_does_not_close_a_connection_being_answered(serve) -> None:
    release = asyncio.Event()

    async def slow(request: Request) -> Response:
        await release.wait()
        return Response(200, b'{"late":true}')

    h = await serve(slow, keepalive_s=1.0, slow_client_s=1.0)
    c = await h.connect()
    await c.send(http_request("GET", "/"))
    await h.until(lambda: all(p._active is not None for p in h.protocols()) and bool(h.protocols()))
    h.state.sweep(asyncio.get_running_loop().time() + 1000)
    assert await c.stays_open()
    release.set()
    assert (await c.response()).json() == {"late": True}


async def test_slow_client_with_a_half_sent_head_is_aborted_by_sweep(serve) -> None:
    calls: list[str] = []

    async def handler(request: Request) -> Response:
        calls.append(request.path)
        return Response(200)

    h = await serve(handler, keepalive_s=1000.0, slow_client_s=10.0)
    slow = await h.connect()
    idle = await h.connect()
    await slow.send(b"GET /slow HTTP/1.1\r\nhost: x\r\nx-partial: ab")
    await h.until(lambda: any(p._in_head for p in h.protocols()))
    await h.until(lambda: len(h.state.connections) == 2)
    loop = asyncio.get_running_loop()
    h.state.sweep(loop.time() + 5)  # within the slow-client allowance
    assert await slow.stays_open()
    h.state.sweep(loop.time() + 20)  # past it, but not past the keep-alive timeout
    r = await slow.response()
    assert r.status == 408
    assert r.header("connection") == "close"
    assert await slow.closed()
    assert await idle.stays_open()
    assert calls == []


async def test_slow_client_with_a_half_sent_body_is_aborted_and_the_read_fails(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen), keepalive_s=1000.0, slow_client_s=10.0)
    c = await h.connect()
    await c.send(http_request("POST", "/", headers={"content-length": "10"}) + b"12345")
    await h.until(lambda: any(p._current is not None for p in h.protocols()))
    h.state.sweep(asyncio.get_running_loop().time() + 20)
    r = await c.response()
    assert r.status == 408  # the handler's read failed, and it answered
    assert r.header("connection") == "close"
    assert await c.closed()
    await h.until(lambda: len(seen) == 1)
    assert isinstance(seen[0], RequestTimeout)


# -- upgrades -----------------------------------------------------------------------------------------


async def test_upgrade_request_is_answered_over_http11_then_closed(serve) -> None:
    calls: list[tuple[str, str | None]] = []

    async def handler(request: Request) -> Response:
        calls.append((request.path, request.headers.get("upgrade")))
        return Response(200, b'{"upgraded":false}')

    h = await serve(handler)
    c = await h.connect()
    await c.send(
        b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\n"
        b"http2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # what an h2c client would send next
    )
    r = await c.response()
    assert r.version == "HTTP/1.1"
    assert r.status == 200  # not 101 Switching Protocols
    assert r.header("upgrade") is None
    assert r.header("connection") == "close"
    assert r.json() == {"upgraded": False}
    assert await c.closed()
    assert calls == [("/v1/models", "h2c")]


async def test_websocket_upgrade_is_answered_then_closed(serve) -> None:
    h = await serve(ok)
    c = await h.connect()
    await c.send(
        b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n"
        b"sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    r = await c.response()
    assert r.status == 200
    assert r.header("connection") == "close"
    assert await c.closed()


async def test_pipelined_request_before_an_upgrade_is_answered_and_the_connection_closes(serve) -> None:
    calls: list[str] = []

    async def handler(request: Request) -> Response:
        calls.append(request.path)
        return Response(200, request.path.encode(), content_type="text/plain")

    h = await serve(handler)
    c = await h.connect()
    await c.send(
        http_request("GET", "/a")
        + b"GET /b HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n"
    )
    r = await c.response()
    assert r.body == b"/a"
    if r.header("connection") != "close":
        r2 = await c.response()
        assert (r2.body, r2.header("connection")) == (b"/b", "close")
    assert await c.closed()


# -- errors in handlers -------------------------------------------------------------------------------


async def test_handler_exception_gives_500_json_and_the_server_keeps_serving(serve, caplog) -> None:
    async def handler(request: Request) -> Response:
        if request.path == "/boom":
            raise RuntimeError("kaboom")
        return Response(200, b'{"fine":true}')

    h = await serve(handler)
    c1 = await h.connect()
    await c1.send(http_request("GET", "/boom"))
    r = await c1.response()
    assert r.status == 500
    assert r.reason == "Internal Server Error"
    assert r.header("content-type") == "application/json"
    assert r.json() == {"error": {"message": "internal gateway error", "type": "server_error"}}
    assert "kaboom" not in r.body.decode()
    assert any("unhandled error answering GET /boom" in rec.getMessage() for rec in caplog.records)

    c2 = await h.connect()
    await c2.send(http_request("GET", "/fine"))
    assert (await c2.response()).json() == {"fine": True}
    # ...and the connection that saw the 500 is still usable.
    await c1.send(http_request("GET", "/fine"))
    assert (await c1.response()).status == 200


async def test_connection_bookkeeping(serve) -> None:
    h = await serve(ok)
    assert not h.state.connections
    c1 = await h.connect()
    c2 = await h.connect()
    await h.until(lambda: len(h.state.connections) == 2)
    assert not h.state.idle.is_set()
    c1.close()
    await h.until(lambda: len(h.state.connections) == 1)
    assert not h.state.idle.is_set()
    c2.close()
    await h.until(lambda: not h.state.connections)
    assert h.state.idle.is_set()


# -- graceful drain -----------------------------------------------------------------------------------


async def test_drain_answers_in_flight_closes_idle_and_returns(serve) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def handler(request: Request) -> Response:
        if request.path == "/slow":
            started.set()
            await release.wait()
        return Response(200, b'{"path":"%s"}' % request.path.encode())

    h = await serve(handler)
    idle = await h.connect()
    await idle.send(http_request("GET", "/quick"))
    assert (await idle.response()).header("connection") is None
    busy = await h.connect()
    await busy.send(http_request("GET", "/slow"))
    await asyncio.wait_for(started.wait(), 1.0)

    draining = asyncio.create_task(drain(h.server, h.state, grace_s=5.0))
    assert await idle.closed()  # idle keep-alive connection: closed at once
    assert h.services.draining is True
    assert h.state.draining is True
    assert not draining.done()  # still waiting for /slow

    release.set()
    r = await busy.response()
    assert r.status == 200
    assert r.json() == {"path": "/slow"}
    assert r.header("connection") == "close"
    assert await busy.closed()
    await asyncio.wait_for(draining, 1.0)
    assert not h.state.connections

    with pytest.raises(OSError):  # no longer listening
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", h.port), 1.0)


async def test_drain_with_no_connections_returns_at_once(serve) -> None:
    h = await serve(ok)
    await asyncio.wait_for(drain(h.server, h.state, grace_s=5.0), 0.5)
    assert h.state.draining


async def test_request_arriving_during_drain_is_answered_with_close(serve) -> None:
    release = asyncio.Event()

    async def handler(request: Request) -> Response:
        if request.path == "/slow":
            await release.wait()
        return Response(200, b"{}")

    h = await serve(handler)
    busy = await h.connect()
    await busy.send(http_request("GET", "/slow"))
    await h.until(lambda: any(p._active is not None for p in h.protocols()))
    # A connection in the middle of sending its head is not idle: it is closed at once.
    partial = await h.connect()
    await partial.send(b"GET / HTTP/1.1\r\n")
    await h.until(lambda: any(p._in_head for p in h.protocols()))
    draining = asyncio.create_task(drain(h.server, h.state, grace_s=5.0))
    assert await partial.closed()
    release.set()
    assert (await busy.response()).header("connection") == "close"
    await asyncio.wait_for(draining, 1.0)


async def test_drain_grace_over_cancels_busy_handlers(serve) -> None:
    cancelled = asyncio.Event()

    async def stuck(request: Request) -> Response:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Response(200)

    h = await serve(stuck)
    c = await h.connect()
    await c.send(http_request("GET", "/"))
    await h.until(lambda: any(p._active is not None for p in h.protocols()))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.wait_for(drain(h.server, h.state, grace_s=0.1), 1.0)
    assert 0.09 <= loop.time() - t0 < 0.5
    assert await c.closed()
    await asyncio.wait_for(cancelled.wait(), 1.0)
    await h.until(lambda: not h.state.connections)


async def test_drain_closes_a_stream_after_its_last_chunk(serve) -> None:
    release = asyncio.Event()

    async def handler(request: Request) -> StreamResponse:
        resp = StreamResponse(200)
        await resp.prepare(request)
        await resp.write(b"one")
        await release.wait()
        await resp.write(b"two")
        return resp

    h = await serve(handler)
    c = await h.connect()
    await c.send(http_request("GET", "/"))
    await c.head()
    draining = asyncio.create_task(drain(h.server, h.state, grace_s=5.0))
    await asyncio.sleep(0.01)
    release.set()
    rest = await asyncio.wait_for(c.reader.read(), 1.0)
    assert rest == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"
    await asyncio.wait_for(draining, 1.0)


# -- HEAD ---------------------------------------------------------------------------------------------


async def test_head_response_has_no_body(serve) -> None:
    async def handler(request: Request) -> Response:
        return Response(200, b'{"hello":"world"}')

    h = await serve(handler)
    c = await h.connect()
    await c.send(http_request("HEAD", "/") + http_request("GET", "/"))
    head = await c.response(method="HEAD")
    assert head.status == 200
    second = await c.response()
    assert second.body == b'{"hello":"world"}'


async def test_drain_closes_a_connection_once_an_already_answered_body_ends(serve) -> None:
    async def refuse(request: Request) -> Response:
        return Response(401, b"{}")  # answers without reading the body

    h = await serve(refuse)
    c = await h.connect()
    await c.send(http_request("POST", "/", headers={"content-length": "10"}) + b"01234")
    r = await c.response()
    assert (r.status, r.header("connection")) == (401, None)
    draining = asyncio.create_task(drain(h.server, h.state, grace_s=5.0))
    await asyncio.sleep(0.01)
    await c.send(b"56789")  # the rest of the body: the connection is now idle
    try:
        assert await c.closed(0.5)
        await asyncio.wait_for(draining, 0.5)
    finally:
        for conn in h.protocols():
            conn.cancel()
        await asyncio.wait_for(draining, 1.0)
