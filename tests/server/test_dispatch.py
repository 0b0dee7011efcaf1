"""Routing (server/dispatch.py): exact and templated paths, 404 and 405, and errors as responses."""

from __future__ import annotations

import json
import types

import pytest

from sluice.errors import BadRequest, NotFound, RateLimited
from sluice.server.dispatch import Dispatcher, Route, RouteTable
from sluice.server.wire import Request, Response, StreamResponse
from sluice.store.base import StoreUnavailable
from tests.server.harness import http_request


class FakeConn:
    closed = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    async def drain(self) -> None:
        return None


def make_request(method: str, target: str) -> Request:
    return Request(
        FakeConn(), types.SimpleNamespace(), method, target, {"host": "test"},  # type: ignore[arg-type]
        keep_alive=True, http11=True, max_body=1024,
    )  # fmt: skip


def answer(tag: str):
    """A handler that says which route it is and what it matched."""

    async def handler(request: Request) -> Response:
        params = {name: request.param(name) for name in request.match_info}
        payload = {"route": tag, "params": params, "raw": dict(request.match_info)}
        return Response(200, json.dumps(payload).encode())

    return handler


def routes() -> RouteTable:
    table = RouteTable()
    table.get("/v1/models")(answer("list-models"))
    table.get("/v1/models/{model:.+}")(answer("get-model"))
    table.post("/admin/keys")(answer("create-key"))
    table.get("/admin/keys")(answer("list-keys"))
    table.delete("/admin/keys/{key_id}")(answer("delete-key"))
    table.get("/healthz")(answer("healthz"))
    return table


@pytest.fixture
def dispatcher() -> Dispatcher:
    return Dispatcher(routes())


async def call(dispatcher: Dispatcher, method: str, target: str) -> tuple[Response, dict]:
    resp = await dispatcher(make_request(method, target))
    assert isinstance(resp, Response)
    return resp, json.loads(resp.body)


# -- matching -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "route"),
    [
        ("GET", "/v1/models", "list-models"),
        ("GET", "/healthz", "healthz"),
        ("GET", "/healthz?verbose=1", "healthz"),  # the query is not part of the path
        ("POST", "/admin/keys", "create-key"),
        ("GET", "/admin/keys", "list-keys"),
    ],
)
async def test_exact_routes(dispatcher: Dispatcher, method: str, target: str, route: str) -> None:
    resp, body = await call(dispatcher, method, target)
    assert resp.status == 200
    assert body == {"route": route, "params": {}, "raw": {}}


async def test_single_segment_parameter(dispatcher: Dispatcher) -> None:
    resp, body = await call(dispatcher, "DELETE", "/admin/keys/key_123")
    assert resp.status == 200
    assert body["route"] == "delete-key"
    assert body["params"] == {"key_id": "key_123"}


async def test_single_segment_parameter_is_percent_decoded(dispatcher: Dispatcher) -> None:
    _, body = await call(dispatcher, "DELETE", "/admin/keys/a%20b%2Fc")
    assert body["raw"] == {"key_id": "a%20b%2Fc"}  # matched on the raw path...
    assert body["params"] == {"key_id": "a b/c"}  # ...and decoded by request.param


@pytest.mark.parametrize("target", ["/admin/keys/a/b", "/admin/keys/"])
async def test_single_segment_parameter_takes_one_nonempty_segment(
    dispatcher: Dispatcher, target: str
) -> None:
    resp, body = await call(dispatcher, "DELETE", target)
    assert resp.status == 404
    assert body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("target", "model"),
    [
        ("/v1/models/gpt-4o", "gpt-4o"),
        ("/v1/models/openai/gpt-4o", "openai/gpt-4o"),
        ("/v1/models/accounts/fireworks/models/llama%2Dv3", "accounts/fireworks/models/llama-v3"),
        ("/v1/models/my%20model%3Alatest", "my model:latest"),
        ("/v1/models/caf%C3%A9", "café"),
    ],
)
async def test_rest_of_path_parameter_is_percent_decoded(
    dispatcher: Dispatcher, target: str, model: str
) -> None:
    resp, body = await call(dispatcher, "GET", target)
    assert resp.status == 200
    assert body["route"] == "get-model"
    assert body["params"] == {"model": model}
    assert body["raw"] == {"model": target.removeprefix("/v1/models/")}


async def test_rest_of_path_parameter_must_not_be_empty(dispatcher: Dispatcher) -> None:
    resp, _ = await call(dispatcher, "GET", "/v1/models/")
    assert resp.status == 404


async def test_exact_route_wins_over_a_template(dispatcher: Dispatcher) -> None:
    _, body = await call(dispatcher, "GET", "/v1/models")
    assert body["route"] == "list-models"


async def test_tables_are_merged(dispatcher: Dispatcher) -> None:
    a, b = RouteTable(), RouteTable()
    a.get("/x")(answer("a-get"))
    b.post("/x")(answer("b-post"))
    b.get("/y/{id}")(answer("b-y"))
    merged = Dispatcher(a, b)
    assert (await call(merged, "GET", "/x"))[1]["route"] == "a-get"
    assert (await call(merged, "POST", "/x"))[1]["route"] == "b-post"
    assert (await call(merged, "GET", "/y/1"))[1]["params"] == {"id": "1"}
    resp, _ = await call(merged, "PUT", "/x")
    assert resp.headers["allow"] == "GET, HEAD, POST"


def test_decorators_register_and_return_the_handler() -> None:
    table = RouteTable()
    handler = answer("h")
    assert table.get("/a")(handler) is handler
    assert table.post("/a")(handler) is handler
    assert table.delete("/b/{id}")(handler) is handler
    assert table.exact == {"/a": {"GET": Route(handler), "POST": Route(handler)}}
    assert table.templates == {("/b/", "id", False): {"DELETE": Route(handler)}}
    table.add("GET", "/c/{rest:.+}", handler)
    assert ("/c/", "rest", True) in table.templates


@pytest.mark.parametrize(
    "path",
    [
        "/a/{id}/b",  # a parameter that is not the last segment
        "/a/{id:[0-9]+}",  # a pattern other than .+
        "/a/{id",  # unclosed
    ],
)
def test_unsupported_templates_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="unsupported route"):
        RouteTable().add("GET", path, answer("x"))


# -- 404 and 405 --------------------------------------------------------------------------------------


async def test_unknown_path_is_404_json(dispatcher: Dispatcher) -> None:
    resp, body = await call(dispatcher, "GET", "/nope?x=1")
    assert resp.status == 404
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["x-sluice-error-source"] == "gateway"
    assert body["error"]["message"] == "no such endpoint: GET /nope"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["source"] == "gateway"


@pytest.mark.parametrize(
    ("method", "target", "allow"),
    [
        ("POST", "/v1/models", "GET, HEAD"),
        ("DELETE", "/admin/keys", "GET, HEAD, POST"),
        ("GET", "/admin/keys/k1", "DELETE"),
        ("HEAD", "/admin/keys/k1", "DELETE"),  # HEAD only where there is a GET
        ("POST", "/v1/models/gpt-4o", "GET, HEAD"),
    ],
)
async def test_wrong_method_is_405_with_allow(
    dispatcher: Dispatcher, method: str, target: str, allow: str
) -> None:
    resp, body = await call(dispatcher, method, target)
    assert resp.status == 405
    assert resp.headers["allow"] == allow
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"] == f"method not allowed on this endpoint: {method} {target}"


async def test_head_is_answered_by_the_get_handler(dispatcher: Dispatcher) -> None:
    """The server leaves the body out (tested in test_protocol_lifecycle); the dispatcher picks GET's."""
    resp, body = await call(dispatcher, "HEAD", "/v1/models/gpt-4o")
    assert resp.status == 200
    assert body["route"] == "get-model"


# -- errors raised by handlers ------------------------------------------------------------------------


def raising(exc: BaseException):
    async def handler(request: Request) -> Response:
        raise exc

    return handler


def dispatcher_raising(exc: BaseException) -> Dispatcher:
    table = RouteTable()
    table.post("/x")(raising(exc))
    return Dispatcher(table)


async def test_bad_request_from_a_handler_becomes_a_400() -> None:
    resp, body = await call(
        dispatcher_raising(BadRequest("messages must not be empty", param="messages")), "POST", "/x"
    )
    assert resp.status == 400
    assert body["error"]["message"] == "messages must not be empty"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == "messages"
    assert resp.headers["x-sluice-error-source"] == "gateway"


async def test_other_sluice_errors_keep_their_status_and_headers() -> None:
    resp, body = await call(dispatcher_raising(NotFound("no such model")), "POST", "/x")
    assert resp.status == 404
    assert body["error"]["message"] == "no such model"

    resp, body = await call(dispatcher_raising(RateLimited("slow down", retry_after=2.5)), "POST", "/x")
    assert resp.status == 429
    assert resp.headers["retry-after"] == "3"
    assert body["error"]["type"] == "rate_limit_error"


async def test_store_unavailable_becomes_a_503() -> None:
    resp, body = await call(dispatcher_raising(StoreUnavailable("db down: password=hunter2")), "POST", "/x")
    assert resp.status == 503
    assert body["error"]["message"] == "the gateway's store is unavailable"
    assert "hunter2" not in resp.body.decode()
    assert resp.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    "exc",
    [ConnectionResetError("peer"), TimeoutError(), RuntimeError("secret detail"), KeyError("k")],
    ids=["connection", "timeout", "runtime", "keyerror"],
)
async def test_unexpected_errors_become_a_500_without_details(exc: Exception) -> None:
    resp, body = await call(dispatcher_raising(exc), "POST", "/x")
    assert resp.status == 500
    assert body["error"]["message"] == "internal gateway error"
    assert body["error"]["type"] == "server_error"
    assert "secret" not in resp.body.decode()


async def test_a_handlers_own_response_passes_through() -> None:
    stream = StreamResponse(200)

    async def handler(request: Request) -> StreamResponse:
        return stream

    table = RouteTable()
    table.get("/s")(handler)
    assert await Dispatcher(table)(make_request("GET", "/s")) is stream


# -- over the wire ------------------------------------------------------------------------------------


async def test_dispatcher_behind_the_server(serve) -> None:
    table = routes()

    @table.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.read()
        if not body:
            raise BadRequest("empty body")
        return Response(200, body)

    h = await serve(Dispatcher(table))
    c = await h.connect()
    await c.send(
        http_request("GET", "/v1/models/org/m%2Bx")
        + http_request("PUT", "/v1/models")
        + http_request("GET", "/missing")
        + http_request("POST", "/v1/chat/completions", b"")
        + http_request("POST", "/v1/chat/completions", b'{"a":1}')
    )
    r = await c.response()
    assert (r.status, r.json()["params"]) == (200, {"model": "org/m+x"})
    r = await c.response()
    assert (r.status, r.reason, r.header("allow")) == (405, "Method Not Allowed", "GET, HEAD")
    r = await c.response()
    assert (r.status, r.reason) == (404, "Not Found")
    assert r.json()["error"]["message"] == "no such endpoint: GET /missing"
    r = await c.response()
    assert (r.status, r.json()["error"]["message"]) == (400, "empty body")
    r = await c.response()
    assert (r.status, r.body) == (200, b'{"a":1}')
    assert await c.stays_open()  # errors answered by the dispatcher keep the connection


async def test_an_unexpected_failure_is_a_500_that_is_recorded_once() -> None:
    from sluice.schema.context import RequestContext

    recorded: list[tuple[RequestContext, int]] = []

    def fail(ctx: RequestContext, exc: Exception) -> None:
        ctx.finished_at = 1.0
        recorded.append((ctx, getattr(exc, "status", 0)))

    table = RouteTable()

    @table.post("/boom")
    async def boom(request: Request) -> Response:
        request.context = RequestContext("req_1", "openai", "chat", None)
        raise RecursionError("deep")

    @table.post("/late")
    async def late(request: Request) -> Response:
        ctx = RequestContext("req_2", "openai", "chat", None)
        ctx.finished_at = 1.0  # already recorded (by the accounting middleware)
        request.context = ctx
        raise RuntimeError("after the record")

    dispatcher = Dispatcher(table)
    for path in ("/boom", "/late"):
        req = make_request("POST", path)
        req.services = types.SimpleNamespace(accounting=types.SimpleNamespace(fail=fail))  # type: ignore[assignment]
        resp = await dispatcher(req)
        assert resp.status == 500
    assert [(ctx.request_id, status) for ctx, status in recorded] == [("req_1", 500)]
