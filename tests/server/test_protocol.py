"""The HTTP/1.1 server connection (server/protocol.py), driven over real sockets with exact bytes."""

from __future__ import annotations

import asyncio
import json
import time
from email.utils import parsedate_to_datetime

import pytest

from sluice.errors import BadRequest, PayloadTooLarge
from sluice.server.protocol import MAX_HEAD_BYTES, MAX_PIPELINE
from sluice.server.runner import drain
from sluice.server.wire import CONTINUE, Request, Response, StreamResponse
from tests.server.harness import http_request


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
        except (PayloadTooLarge, BadRequest) as exc:
            seen.append(exc)
            return Response(exc.status, b'{"error":"%s"}' % exc.kind.encode())
        seen.append(body)
        return Response(200, body, content_type="text/plain")

    return handler


async def ok(request: Request) -> Response:
    return Response(200, b'{"ok":true}')


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
    assert r.header("connection") == "close"  # nothing after it on this connection is answered
    # Whatever follows a "connection: close" answer is not read by a client; /b was never started.
    await asyncio.sleep(0.01)
    assert calls == ["/a"]
    rest = await asyncio.wait_for(c.reader.read(), 1.0)
    assert b"HTTP/1.1 200" not in rest


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
        except Exception as exc:
            outcome.set_result(exc)
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
    assert isinstance(exc, ConnectionError), exc
    await h.until(lambda: not h.state.connections)


async def test_prepare_after_the_client_disconnected_raises(serve) -> None:
    gone = asyncio.Event()
    outcome: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def handler(request: Request) -> StreamResponse:
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
    assert await c.closed()
    await h.until(lambda: len(seen) == 1)
    assert isinstance(seen[0], BadRequest)


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
