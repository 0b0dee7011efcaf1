"""Request and response objects (server/wire.py), without a socket: a fake connection records writes."""

from __future__ import annotations

import asyncio
import types

import pytest

from sluice.errors import BadRequest, PayloadTooLarge
from sluice.server import wire
from sluice.server.wire import CONTINUE, Request, Response, StreamResponse, encode_head, status_line

DATE_LINE = b"date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"


class FakeConn:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False
        self.drains = 0

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    async def drain(self) -> None:
        self.drains += 1

    @property
    def data(self) -> bytes:
        return b"".join(self.sent)


class FixedDate:
    def header(self) -> bytes:
        return DATE_LINE


@pytest.fixture
def fixed_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "DATE", FixedDate())


def make_request(
    target: str = "/", headers: dict[str, str] | None = None, *, method: str = "POST", conn: FakeConn | None = None,
    keep_alive: bool = True, http11: bool = True, max_body: int = 100,
) -> Request:  # fmt: skip
    return Request(
        conn if conn is not None else FakeConn(), types.SimpleNamespace(),  # type: ignore[arg-type]
        method, target, headers if headers is not None else {}, keep_alive=keep_alive, http11=http11,
        max_body=max_body,
    )  # fmt: skip


# -- status lines, heads, the date --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (200, b"HTTP/1.1 200 OK\r\n"),
        (404, b"HTTP/1.1 404 Not Found\r\n"),
        (431, b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        (529, b"HTTP/1.1 529 Overloaded\r\n"),
        (418, b"HTTP/1.1 418 Status 418\r\n"),
        (299, b"HTTP/1.1 299 Status 299\r\n"),
        (599, b"HTTP/1.1 599 Status 599\r\n"),
    ],
)
def test_status_line(status: int, line: bytes) -> None:
    assert status_line(status) == line


def test_continue_is_a_complete_interim_response() -> None:
    assert CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert status_line(100) == b"HTTP/1.1 100 Continue\r\n"


def test_date_cache_formats_rfc_9110_dates(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = wire._DateCache()
    now = [1700000000.25]
    monkeypatch.setattr(wire.time, "time", lambda: now[0])
    assert cache.header() == DATE_LINE
    now[0] = 1700000000.9  # same second: the cached value
    assert cache.header() is cache.header()
    assert cache.header() == DATE_LINE
    now[0] = 1700000001.0
    assert cache.header() == b"date: Tue, 14 Nov 2023 22:13:21 GMT\r\n"


def test_encode_head_orders_status_date_headers_extra(fixed_date: None) -> None:
    head = encode_head(201, {"x-a": "1", "X-B": "two words"}, b"content-length: 0\r\n\r\n")
    assert head == (
        b"HTTP/1.1 201 Created\r\n" + DATE_LINE + b"x-a: 1\r\nX-B: two words\r\ncontent-length: 0\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-inject", "a\r\nset-cookie: evil=1"),
        ("x-inject", "a\nset-cookie: evil=1"),
        ("x-inject", "a\rb"),
        ("x-inject\r\nset-cookie", "evil=1"),
        ("x-inject\n", "v"),
        pytest.param(
            "x-in:ject",
            "v",
        ),
    ],
)
def test_encode_head_drops_a_header_that_could_split_the_response(
    fixed_date: None, name: str, value: str
) -> None:
    head = encode_head(200, {"x-before": "1", name: value, "x-after": "2"}, b"\r\n")
    assert head == b"HTTP/1.1 200 OK\r\n" + DATE_LINE + b"x-before: 1\r\nx-after: 2\r\n\r\n"


def test_encode_head_non_latin1_value_cannot_break_framing(fixed_date: None) -> None:
    head = encode_head(200, {"x-name": "caf\u00e9 \u2028 \u65e5"}, b"\r\n")
    assert head.count(b"\r\n") == 4  # status, date, the header, the blank line
    assert b"x-name: caf\xe9 ? ?\r\n" in head


# -- Response -----------------------------------------------------------------------------------------


def test_response_encode_keep_alive(fixed_date: None) -> None:
    resp = Response(200, b'{"ok":true}')
    assert resp.encode(keep_alive=True) == (
        b"HTTP/1.1 200 OK\r\n" + DATE_LINE + b"content-type: application/json\r\ncontent-length: 11\r\n\r\n"
        b'{"ok":true}'
    )


def test_response_encode_closing(fixed_date: None) -> None:
    resp = Response(503, b"{}", headers={"retry-after": "1"})
    assert resp.encode(keep_alive=False) == (
        b"HTTP/1.1 503 Service Unavailable\r\n" + DATE_LINE
        + b"retry-after: 1\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
    )  # fmt: skip


def test_response_without_content_type_or_body(fixed_date: None) -> None:
    resp = Response(204, content_type=None)
    assert resp.headers == {}
    assert (
        resp.encode(keep_alive=True)
        == b"HTTP/1.1 204 No Content\r\n" + DATE_LINE + b"content-length: 0\r\n\r\n"
    )


def test_response_with_unknown_status_and_other_content_type(fixed_date: None) -> None:
    resp = Response(299, b"hi", content_type="text/plain; charset=utf-8")
    assert resp.encode(keep_alive=True).startswith(b"HTTP/1.1 299 Status 299\r\n" + DATE_LINE)
    assert b"content-type: text/plain; charset=utf-8\r\ncontent-length: 2\r\n\r\nhi" in resp.encode(True)


def test_response_defaults() -> None:
    resp = Response()
    assert (resp.status, resp.body, resp.headers) == (200, b"", {"content-type": "application/json"})


# -- Request: what handlers read ----------------------------------------------------------------------


def test_request_splits_path_and_query() -> None:
    req = make_request("/v1/models?limit=10&after=m%2F1&q=a+b", method="GET")
    assert req.method == "GET"
    assert req.path == "/v1/models"
    assert req.query_string == "limit=10&after=m%2F1&q=a+b"
    assert req.query == {"limit": "10", "after": "m/1", "q": "a b"}


@pytest.mark.parametrize(
    ("target", "query"),
    [
        ("/x", {}),
        ("/x?", {}),
        ("/x?a=1&a=2", {"a": "2"}),  # the last value of a repeated name
        ("/x?a=&b=1", {"b": "1"}),  # blank values are left out
        ("/x?flag", {}),
        ("/x?a=1?b=2", {"a": "1?b=2"}),  # only the first "?" starts the query
        ("/x?caf%C3%A9=%E2%9C%93", {"café": "✓"}),
    ],
)
def test_request_query(target: str, query: dict[str, str]) -> None:
    assert make_request(target).query == query


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, ""),
        ("application/json", "application/json"),
        ("application/json; charset=utf-8", "application/json"),
        ("Application/JSON ;charset=UTF-8", "application/json"),
        ("  text/plain  ", "text/plain"),
        ('multipart/form-data; boundary="a;b"', "multipart/form-data"),
        ("", ""),
    ],
)
def test_request_content_type_ignores_parameters(header: str | None, expected: str) -> None:
    headers = {} if header is None else {"content-type": header}
    assert make_request(headers=headers).content_type == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("0", 0), ("42", 42), ("-1", None), ("4x", None), ("", None), (" 5", None)],
)
def test_request_content_length(header: str | None, expected: int | None) -> None:
    headers = {} if header is None else {"content-length": header}
    assert make_request(headers=headers).content_length == expected


def test_request_param_is_percent_decoded() -> None:
    req = make_request("/v1/models/a%2Fb%20c")
    req.match_info["model"] = "a%2Fb%20c"
    assert req.param("model") == "a/b c"
    with pytest.raises(KeyError):
        req.param("missing")


# -- Request: the body --------------------------------------------------------------------------------


async def test_read_returns_the_fed_body_and_can_be_repeated() -> None:
    req = make_request(headers={"content-length": "11"})
    req.feed(b"hello")
    req.feed(b" world")
    req.finish()
    assert req.complete
    assert await req.read() == b"hello world"
    assert await req.read() == b"hello world"


async def test_read_waits_for_the_body() -> None:
    req = make_request()
    reading = asyncio.create_task(req.read())
    await asyncio.sleep(0)
    assert not reading.done()
    req.feed(b"abc")
    await asyncio.sleep(0)
    assert not reading.done()
    req.finish()
    assert await asyncio.wait_for(reading, 1.0) == b"abc"


async def test_empty_body() -> None:
    req = make_request(method="GET")
    req.finish()
    assert await req.read() == b""


async def test_body_over_max_body_raises_payload_too_large() -> None:
    req = make_request(max_body=5)
    reading = asyncio.create_task(req.read())
    req.feed(b"12345")  # exactly the limit: fine so far
    await asyncio.sleep(0)
    assert not reading.done()
    req.feed(b"6")
    with pytest.raises(PayloadTooLarge) as info:
        await asyncio.wait_for(reading, 1.0)
    assert info.value.status == 413
    assert info.value.code == "request_too_large"
    assert req.keep_alive is False  # the rest of the body cannot be told from the next request
    req.feed(b"more")  # ignored
    req.finish()
    with pytest.raises(PayloadTooLarge):
        await req.read()


async def test_declared_length_over_max_body_fails_before_any_byte() -> None:
    req = make_request(headers={"content-length": "6"}, max_body=5)
    assert req.keep_alive is False
    with pytest.raises(PayloadTooLarge, match="6 bytes; the limit is 5"):
        await req.read()


async def test_declared_length_at_max_body_is_fine() -> None:
    req = make_request(headers={"content-length": "5"}, max_body=5)
    assert req.keep_alive is True
    req.feed(b"12345")
    req.finish()
    assert await req.read() == b"12345"


async def test_abort_before_the_body_is_complete_fails_the_read() -> None:
    req = make_request()
    reading = asyncio.create_task(req.read())
    req.feed(b"part")
    await asyncio.sleep(0)
    req.abort()
    with pytest.raises(BadRequest, match="closed the connection"):
        await asyncio.wait_for(reading, 1.0)


async def test_abort_after_the_body_is_complete_changes_nothing() -> None:
    req = make_request()
    req.feed(b"whole")
    req.finish()
    req.abort()
    assert await req.read() == b"whole"


async def test_discard_drops_the_rest_of_the_body() -> None:
    req = make_request(max_body=3)
    req.feed(b"ab")
    req.discard()
    req.feed(b"cdefgh")  # past max_body, but discarded: no error
    req.finish()
    assert await req.read() == b""
    assert req.keep_alive is True


# -- Request: Expect: 100-continue --------------------------------------------------------------------


async def test_100_continue_is_written_once_when_reading_starts() -> None:
    conn = FakeConn()
    req = make_request(headers={"expect": "100-continue", "content-length": "2"}, conn=conn)
    assert req.body_unread
    assert conn.sent == []  # nothing until the handler reads
    reading = asyncio.create_task(req.read())
    await asyncio.sleep(0)
    assert conn.sent == [CONTINUE]
    assert not req.body_unread
    req.feed(b"ok")
    req.finish()
    assert await reading == b"ok"
    await req.read()
    assert conn.sent == [CONTINUE]


async def test_100_continue_is_case_insensitive() -> None:
    conn = FakeConn()
    req = make_request(headers={"expect": "100-Continue"}, conn=conn)
    req.finish()
    await req.read()
    assert conn.sent == []  # the body was already complete: no interim response needed
    assert not req.body_unread


async def test_no_100_continue_when_the_body_is_refused() -> None:
    conn = FakeConn()
    req = make_request(headers={"expect": "100-continue", "content-length": "500"}, conn=conn, max_body=10)
    with pytest.raises(PayloadTooLarge):
        await req.read()
    assert conn.sent == []


def test_without_expect_the_body_is_never_unread() -> None:
    assert not make_request(headers={"content-length": "5"}).body_unread
    assert not make_request(headers={"expect": "something-else"}).body_unread


# -- StreamResponse -----------------------------------------------------------------------------------


async def test_stream_response_chunked(fixed_date: None) -> None:
    conn = FakeConn()
    req = make_request(conn=conn, method="GET")
    resp = StreamResponse(200, headers={"content-type": "text/event-stream"})
    assert not resp.prepared
    await resp.prepare(req)
    assert resp.prepared
    assert req.responded
    assert conn.data == (
        b"HTTP/1.1 200 OK\r\n"
        + DATE_LINE
        + b"content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    conn.sent.clear()
    await resp.write(b"data: 10\n\n")
    await resp.write(b"")  # nothing: an empty chunk would end the body
    await resp.write(b"x" * 17)
    assert not resp.finished
    await resp.write_eof()
    await resp.write_eof()  # once only
    assert resp.finished
    assert conn.data == b"a\r\ndata: 10\n\n\r\n11\r\n" + b"x" * 17 + b"\r\n0\r\n\r\n"
    assert conn.drains == 2  # back-pressure honoured on every chunk
    assert req.keep_alive is True


async def test_stream_response_to_a_request_that_will_close(fixed_date: None) -> None:
    conn = FakeConn()
    req = make_request(conn=conn, keep_alive=False)
    await StreamResponse(200).prepare(req)
    assert conn.data.endswith(b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n")


async def test_stream_response_to_http10_is_raw_and_closes(fixed_date: None) -> None:
    conn = FakeConn()
    req = make_request(conn=conn, http11=False, keep_alive=True)
    resp = StreamResponse(200)
    await resp.prepare(req)
    assert req.keep_alive is False  # the body ends when the connection does
    assert conn.data == b"HTTP/1.1 200 OK\r\n" + DATE_LINE + b"connection: close\r\n\r\n"
    conn.sent.clear()
    await resp.write(b"abc")
    await resp.write_eof()
    assert conn.data == b"abc"


async def test_stream_response_on_a_closed_connection_raises() -> None:
    conn = FakeConn()
    conn.closed = True
    with pytest.raises(ConnectionResetError):
        await StreamResponse(200).prepare(make_request(conn=conn))
    assert conn.sent == []

    conn = FakeConn()
    resp = StreamResponse(200)
    await resp.prepare(make_request(conn=conn))
    conn.closed = True
    sent = len(conn.sent)
    with pytest.raises(ConnectionResetError):
        await resp.write(b"late")
    await resp.write_eof()  # quietly nothing
    assert len(conn.sent) == sent


async def test_write_eof_before_prepare_does_nothing() -> None:
    resp = StreamResponse(200)
    await resp.write_eof()
    assert not resp.finished
    assert not resp.prepared


# -- a lower body limit for one endpoint ---------------------------------------------------------------


async def test_limit_body_refuses_a_declared_length_over_the_lower_limit() -> None:
    req = make_request(headers={"content-length": "50"}, max_body=100)
    req.limit_body(10)
    with pytest.raises(PayloadTooLarge, match="50 bytes; the limit is 10"):
        await req.read()
    assert req.keep_alive is False


async def test_limit_body_counts_what_already_arrived() -> None:
    req = make_request(max_body=100)  # chunked: no declared length
    req.feed(b"x" * 20)
    req.limit_body(10)
    req.finish()
    with pytest.raises(PayloadTooLarge, match="over the limit of 10 bytes"):
        await req.read()


async def test_limit_body_applies_to_what_arrives_later_and_never_raises_the_limit() -> None:
    req = make_request(max_body=100)
    req.limit_body(500)
    assert req.max_body == 100
    req.limit_body(8)
    req.feed(b"12345")
    req.finish()
    assert await req.read() == b"12345"
    late = make_request(max_body=100)
    late.limit_body(8)
    late.feed(b"123456789")
    with pytest.raises(PayloadTooLarge):
        await late.read()
