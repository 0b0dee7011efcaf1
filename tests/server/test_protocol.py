"""The HTTP/1.1 server connection (server/protocol.py), driven over real sockets with exact bytes."""

from __future__ import annotations

import asyncio

from sluice.errors import PayloadTooLarge
from sluice.server.protocol import MAX_PIPELINE
from sluice.server.wire import CONTINUE, Request, Response
from tests.server.harness import echo, http_request, reading

# -- basics: keep-alive, bodies, pipelining -----------------------------------------------------------


async def test_get_then_post_on_one_keep_alive_connection(serve) -> None:
    h = await serve(echo)
    c = await h.connect()

    await c.send(http_request("GET", "/v1/models?limit=2"))
    r1 = await c.response()
    assert (r1.version, r1.status, r1.reason) == ("HTTP/1.1", 200, "OK")
    assert r1.header("content-type") == "application/json"
    assert r1.header("content-length") == str(len(r1.body))
    assert r1.header("connection") is None
    assert r1.json() == {
        "method": "GET", "path": "/v1/models", "query": "limit=2", "body": "", "http11": True,
        "keep_alive": True,
    }  # fmt: skip

    await c.send(http_request("POST", "/v1/chat/completions", b'{"model":"m"}'))
    r2 = await c.response()
    assert r2.status == 200
    assert r2.json()["method"] == "POST"
    assert r2.json()["body"] == '{"model":"m"}'
    assert await c.stays_open()
    assert len(h.state.connections) == 1


async def test_body_of_exactly_max_body_is_accepted(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen), max_body=16)
    c = await h.connect()
    await c.send(http_request("POST", "/", b"x" * 16))
    r = await c.response()
    assert r.status == 200
    assert r.body == b"x" * 16
    assert seen == [b"x" * 16]
    assert await c.stays_open()


async def test_body_sent_in_pieces_is_read_whole(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen))
    c = await h.connect()
    head = http_request("POST", "/", b"0123456789")[:-10]
    await c.send(head)
    await c.send(b"0123")
    await asyncio.sleep(0.02)
    await c.send(b"456789")
    r = await c.response()
    assert r.body == b"0123456789"
    assert seen == [b"0123456789"]


async def test_pipelined_requests_are_answered_in_order(serve) -> None:
    started: list[str] = []
    delays = {"/slow": 0.05, "/fast": 0.0, "/body": 0.01}

    async def handler(request: Request) -> Response:
        started.append(request.path)
        body = await request.read()
        await asyncio.sleep(delays[request.path])
        return Response(200, request.path.encode() + b":" + body, content_type="text/plain")

    h = await serve(handler)
    c = await h.connect()
    await c.send(
        http_request("GET", "/slow") + http_request("GET", "/fast") + http_request("POST", "/body", b"abc")
    )
    bodies = [(await c.response()).body for _ in range(3)]
    assert bodies == [b"/slow:", b"/fast:", b"/body:abc"]
    assert started == ["/slow", "/fast", "/body"]  # one at a time, in the order they arrived
    assert await c.stays_open()


async def test_many_pipelined_requests_past_the_pipeline_limit_are_all_answered(serve) -> None:
    n = MAX_PIPELINE * 3

    async def handler(request: Request) -> Response:
        await asyncio.sleep(0)
        return Response(200, request.path.encode(), content_type="text/plain")

    h = await serve(handler)
    c = await h.connect()
    await c.send(b"".join(http_request("GET", f"/{i}") for i in range(n)))
    bodies = [(await c.response()).body for _ in range(n)]
    assert bodies == [f"/{i}".encode() for i in range(n)]
    await c.send(http_request("GET", "/after"))
    assert (await c.response()).body == b"/after"


async def test_unread_body_is_skipped_and_the_next_request_parsed(serve) -> None:
    paths: list[str] = []

    async def handler(request: Request) -> Response:
        paths.append(request.path)
        return Response(200, b"{}")  # never reads the body

    h = await serve(handler)
    c = await h.connect()
    body = b"GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n"
    await c.send(http_request("POST", "/first", body) + http_request("GET", "/second"))
    assert (await c.response()).status == 200
    assert (await c.response()).status == 200
    assert paths == ["/first", "/second"]
    assert await c.stays_open()


async def test_body_arriving_after_an_early_answer_is_discarded(serve) -> None:
    paths: list[str] = []

    async def handler(request: Request) -> Response:
        paths.append(request.path)
        return Response(401, b'{"error":"no key"}')

    h = await serve(handler)
    c = await h.connect()
    await c.send(http_request("POST", "/first", b"0123456789")[:-10])
    r = await c.response()
    assert r.status == 401
    assert r.header("connection") is None
    await c.send(b"0123456789" + http_request("GET", "/second"))
    assert (await c.response()).status == 401
    assert paths == ["/first", "/second"]


async def test_headers_are_lower_cased_and_repeats_joined(serve) -> None:
    seen: list[dict[str, str]] = []

    async def handler(request: Request) -> Response:
        seen.append(dict(request.headers))
        return Response(204, content_type=None)

    h = await serve(handler)
    c = await h.connect()
    await c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Thing: a\r\nx-thing: b\r\nAuthorization: Bearer k\r\n\r\n")
    r = await c.response()
    assert r.status == 204
    assert seen == [{"host": "x", "x-thing": "a, b", "authorization": "Bearer k"}]


# -- chunked request bodies ---------------------------------------------------------------------------


async def test_chunked_request_body_is_dechunked(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen))
    c = await h.connect()
    await c.send(http_request("POST", "/", headers={"transfer-encoding": "chunked"}))
    await c.send(b"5\r\nhello\r\n")
    await asyncio.sleep(0.01)
    await c.send(b"1;ext=1\r\n \r\n5\r\nwor")  # a chunk extension, and a chunk split across writes
    await c.send(b"ld\r\n0\r\n\r\n")
    r = await c.response()
    assert r.status == 200
    assert r.body == b"hello world"
    assert seen == [b"hello world"]
    await c.send(http_request("GET", "/next"))
    assert (await c.response()).status == 200


async def test_chunked_body_with_trailers_then_a_pipelined_request(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen))
    c = await h.connect()
    body = b"3\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n"
    await c.send(
        http_request("POST", "/", headers={"transfer-encoding": "chunked"})
        + body
        + http_request("POST", "/", b"z")
    )
    assert (await c.response()).body == b"abc"
    assert (await c.response()).body == b"z"
    assert seen == [b"abc", b"z"]


# -- Expect: 100-continue -----------------------------------------------------------------------------


async def test_100_continue_is_sent_when_the_handler_reads(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen))
    c = await h.connect()
    await c.send(http_request("POST", "/", headers={"content-length": "5", "expect": "100-continue"}))
    interim = await c.head()
    assert interim == CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"
    await c.send(b"hello")
    r = await c.response()
    assert (r.status, r.body) == (200, b"hello")
    assert r.header("connection") is None
    assert await c.stays_open()
    await c.send(http_request("GET", "/"))
    assert (await c.response()).status == 200


async def test_100_continue_is_not_sent_when_the_body_already_arrived(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen))
    c = await h.connect()
    await c.send(
        http_request("POST", "/", b"hello", headers={"content-length": "5", "Expect": "100-Continue"})
    )
    r = await c.response()
    assert (r.status, r.body) == (200, b"hello")  # the first thing back is the final answer


async def test_handler_answering_without_reading_gets_no_100_and_the_connection_closes(serve) -> None:
    async def refuse(request: Request) -> Response:
        await asyncio.sleep(0.01)
        return Response(401, b'{"error":"no key"}')

    h = await serve(refuse)
    c = await h.connect()
    await c.send(http_request("POST", "/", headers={"content-length": "1000", "expect": "100-continue"}))
    r = await c.response()
    assert r.status == 401  # not 100
    assert r.header("connection") == "close"
    assert await c.closed()


async def test_no_100_continue_when_the_declared_length_is_over_the_limit(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen), max_body=10)
    c = await h.connect()
    await c.send(http_request("POST", "/", headers={"content-length": "11", "expect": "100-continue"}))
    r = await c.response()
    assert r.status == 413
    assert r.header("connection") == "close"
    assert isinstance(seen[0], PayloadTooLarge)
    assert await c.closed()


async def test_100_continue_is_ignored_for_http10(serve) -> None:
    seen: list[object] = []
    h = await serve(reading(seen))
    c = await h.connect()
    await c.send(
        http_request("POST", "/", version="1.0", headers={"content-length": "5", "expect": "100-continue"})
    )
    await asyncio.sleep(0.05)
    await c.send(b"hello")
    r = await c.response()
    assert r.status == 200  # the first (and only) response is the final one
