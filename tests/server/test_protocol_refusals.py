"""The HTTP/1.1 server connection (server/protocol.py), driven over real sockets with exact bytes."""

from __future__ import annotations

import asyncio

import pytest

from sluice.errors import PayloadTooLarge
from sluice.server.protocol import MAX_HEAD_BYTES
from sluice.server.wire import Request, Response
from tests.server.harness import echo, http_request, ok, reading

# -- limits: body and head ----------------------------------------------------------------------------


async def test_declared_content_length_over_max_body_raises_payload_too_large(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen), max_body=10)
    c = await h.connect()
    await c.send(http_request("POST", "/", b"x" * 11))
    r = await c.response()
    assert r.status == 413
    assert r.header("connection") == "close"
    assert len(seen) == 1
    assert isinstance(seen[0], PayloadTooLarge)
    assert seen[0].code == "request_too_large"
    assert "11 bytes" in seen[0].message
    assert await c.closed()


async def test_chunked_body_growing_past_max_body_raises_payload_too_large(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen), max_body=10)
    c = await h.connect()
    await c.send(http_request("POST", "/", headers={"transfer-encoding": "chunked"}) + b"6\r\nabcdef\r\n")
    await h.until(lambda: any(p._current is not None and p._current._size == 6 for p in h.protocols()))
    assert seen == []  # under the limit so far: the handler is still waiting
    await c.send(b"5\r\nghijk\r\n0\r\n\r\n")
    r = await c.response()
    assert r.status == 413
    assert r.header("connection") == "close"
    assert len(seen) == 1
    assert isinstance(seen[0], PayloadTooLarge)
    assert await c.closed()


async def test_chunked_body_over_max_body_in_one_write(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen), max_body=4)
    c = await h.connect()
    await c.send(
        http_request("POST", "/", headers={"transfer-encoding": "chunked"}) + b"5\r\nabcde\r\n0\r\n\r\n"
    )
    r = await c.response()
    assert r.status == 413
    assert isinstance(seen[0], PayloadTooLarge)
    assert await c.closed()


def _assert_gateway_refusal(r, status: int) -> dict:
    assert r.status == status
    assert r.header("connection") == "close"
    assert r.header("content-type") == "application/json"
    assert r.header("x-sluice-error-source") == "gateway"
    assert r.header("date") is not None
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert isinstance(err["message"], str)
    return err


async def test_head_over_64_kib_of_headers_gets_431_and_close(serve) -> None:
    calls: list[str] = []

    async def handler(request: Request) -> Response:
        calls.append(request.path)
        return Response(200)

    h = await serve(handler)
    c = await h.connect()
    value = "v" * 1000
    headers = {f"x-h{i}": value for i in range(MAX_HEAD_BYTES // 1000 + 2)}
    await c.send(http_request("GET", "/", headers=headers))
    err = _assert_gateway_refusal(await c.response(), 431)
    assert "64 KiB" in err["message"]
    assert calls == []
    assert await c.closed()


async def test_request_target_over_64_kib_gets_431(serve) -> None:
    h = await serve(ok)
    c = await h.connect()
    await c.send(http_request("GET", "/" + "a" * (MAX_HEAD_BYTES + 1)))
    _assert_gateway_refusal(await c.response(), 431)
    assert await c.closed()


async def test_head_just_under_the_limit_is_accepted(serve) -> None:
    h = await serve(ok)
    c = await h.connect()
    await c.send(http_request("GET", "/", headers={"x-big": "v" * (MAX_HEAD_BYTES - 200)}))
    assert (await c.response()).status == 200


async def test_one_unterminated_header_over_64_kib_is_refused_at_once(serve) -> None:
    h = await serve(ok)
    c = await h.connect()
    await c.send(b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"v" * (MAX_HEAD_BYTES * 2))
    r = await c.response(timeout=0.3)
    assert r.status == 431


# -- malformed and ambiguous requests -----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"GARBAGE\r\n\r\n", id="no-target-no-version"),
        pytest.param(b"GET / HTTP/1.1 extra\r\nhost: x\r\n\r\n", id="junk-after-version"),
        pytest.param(b"GET /a b HTTP/1.1\r\nhost: x\r\n\r\n", id="space-in-target"),
        pytest.param(b"G\x01T / HTTP/1.1\r\nhost: x\r\n\r\n", id="control-char-in-method"),
        pytest.param(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", id="header-without-colon"),
        pytest.param(b"GET / HTTP/1.1\r\ncontent-length : 1\r\n\r\nx", id="space-before-colon"),
        pytest.param(b"POST / HTTP/1.1\r\ncontent-length: abc\r\n\r\n", id="bad-content-length"),
    ],
)
async def test_malformed_request_gets_400_json_and_close(serve, raw: bytes) -> None:
    calls: list[str] = []

    async def handler(request: Request) -> Response:
        calls.append(request.path)
        await request.read()
        return Response(200)

    h = await serve(handler)
    c = await h.connect()
    await c.send(raw)
    err = _assert_gateway_refusal(await c.response(), 400)
    assert err["message"].startswith("malformed HTTP request")
    assert await c.closed()
    if raw.startswith(b"GET"):
        assert calls == []


async def test_bad_chunk_size_in_a_body_nobody_reads_closes_after_the_answer(serve) -> None:
    h = await serve(ok)
    c = await h.connect()
    await c.send(http_request("POST", "/", headers={"transfer-encoding": "chunked"}) + b"zz\r\nabc\r\n")
    r = await c.response()
    assert r.status == 200
    assert r.header("connection") == "close"  # the body's framing broke: nothing more is read
    assert await c.closed()


async def test_bad_chunk_size_while_the_handler_reads_the_body_fails_the_read(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen))
    c = await h.connect()
    await c.send(http_request("POST", "/", headers={"transfer-encoding": "chunked"}) + b"3\r\nabc\r\nzz\r\n")
    r = await c.response(timeout=0.5)
    assert r.status == 400
    assert r.header("connection") == "close"
    assert await c.closed(0.5)


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param(b"content-length: 5\r\ntransfer-encoding: chunked\r\n", id="cl-then-te"),
        pytest.param(b"transfer-encoding: chunked\r\ncontent-length: 5\r\n", id="te-then-cl"),
        pytest.param(b"content-length: 5\r\ncontent-length: 6\r\n", id="two-lengths"),
        pytest.param(b"transfer-encoding: chunked, identity\r\n", id="te-not-ending-in-chunked"),
    ],
)
async def test_ambiguous_framing_is_refused(serve, framing: bytes) -> None:
    """Request smuggling: a body whose length two parsers could read differently is never accepted."""
    calls: list[str] = []

    async def handler(request: Request) -> Response:
        calls.append(request.path)
        return Response(200)

    h = await serve(handler)
    c = await h.connect()
    smuggled = b"GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n"
    await c.send(b"POST /a HTTP/1.1\r\nhost: x\r\n" + framing + b"\r\n0\r\n\r\n" + smuggled)
    _assert_gateway_refusal(await c.response(), 400)
    assert await c.closed()
    assert "/smuggled" not in calls


async def test_malformed_request_after_one_in_flight_waits_for_its_answer(serve) -> None:
    release = asyncio.Event()
    calls: list[str] = []

    async def handler(request: Request) -> Response:
        calls.append(request.path)
        await release.wait()
        return Response(200, b'{"path":"%s"}' % request.path.encode())

    h = await serve(handler)
    c = await h.connect()
    await c.send(http_request("GET", "/a") + http_request("GET", "/b") + b"BAD REQUEST\r\n\r\n")
    await h.until(lambda: calls == ["/a"])
    release.set()
    r = await c.response()
    assert (r.status, r.json()) == (200, {"path": "/a"})
    assert r.header("connection") is None
    # Every request parsed before the bad one gets its own answer, in order (issue #18, item 9) ...
    r = await c.response()
    assert (r.status, r.json()) == (200, {"path": "/b"})
    assert r.header("connection") is None
    # ... and then the bad one its refusal, and the connection closes.
    r = await c.response()
    assert r.status == 400
    assert r.header("connection") == "close"
    assert await c.closed()
    assert calls == ["/a", "/b"]


# -- HTTP/1.0 and Connection: close -------------------------------------------------------------------


async def test_http10_request_gets_connection_close_and_the_connection_closes(serve) -> None:
    h = await serve(echo)
    c = await h.connect()
    await c.send(http_request("GET", "/old", version="1.0"))
    r = await c.response()
    assert r.version == "HTTP/1.1"
    assert r.status == 200
    assert r.header("connection") == "close"
    assert r.json()["http11"] is False
    assert r.json()["keep_alive"] is False
    assert await c.closed()
    await h.until(lambda: not h.state.connections)
    assert h.state.idle.is_set()


async def test_http10_post_with_body(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen))
    c = await h.connect()
    await c.send(http_request("POST", "/", b"payload", version="1.0"))
    r = await c.response()
    assert (r.status, r.body) == (200, b"payload")
    assert await c.closed()


@pytest.mark.parametrize("value", ["close", "Close", "keep-alive, close"])
async def test_connection_close_from_the_client_is_honoured(serve, value: str) -> None:
    h = await serve(echo)
    c = await h.connect()
    await c.send(http_request("GET", "/", headers={"connection": value}))
    r = await c.response()
    assert r.status == 200
    assert r.header("connection") == "close"
    assert r.json()["path"] == "/"
    assert r.json()["keep_alive"] is False
    assert await c.closed()


async def test_request_sent_after_connection_close_is_not_answered(serve) -> None:
    paths: list[str] = []

    async def handler(request: Request) -> Response:
        paths.append(request.path)
        return Response(200, b"{}")

    h = await serve(handler)
    c = await h.connect()
    await c.send(http_request("GET", "/", headers={"connection": "close"}) + http_request("GET", "/ignored"))
    r = await c.response()
    assert (r.status, r.header("connection")) == (200, "close")
    # llhttp refuses data after "Connection: close"; a refusal may follow, never a second answer.
    rest = await asyncio.wait_for(c.reader.read(), 1.0)
    assert b"HTTP/1.1 200" not in rest
    assert paths == ["/"]
