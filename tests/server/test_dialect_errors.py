"""Every path of every dialect, asked for each error class, answers in that dialect's format.

The real services and the real route list (``app.route_tables``) behind a real listener; the
requests are raw bytes over loopback, so the protocol's own refusals (431, malformed requests)
are covered as well as what the dispatcher and the handlers raise.
"""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.app import dispatcher, route_tables, running
from sluice.config.loader import parse_config
from sluice.server.dispatch import Dispatcher
from sluice.server.protocol import HttpProtocol, ServerState
from sluice.server.wire import Request
from sluice.store.keys import new_key

ADMIN = "admin-test-key-0123456789"
#: The error types of Anthropic's API reference (errors page).
ANTHROPIC_TYPES = {
    "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
    "request_too_large", "rate_limit_error", "api_error", "overloaded_error", "timeout_error",
}  # fmt: skip
MAX_BODY = 4096
CONFIG = f"""
server: {{{{admin_key: "env:DIALECT_TEST_ADMIN", max_body_bytes: {MAX_BODY}}}}}
store: {{{{url: "sqlite:///{{db}}"}}}}
providers:
  up: {{{{type: openai, base_url: "http://127.0.0.1:9/v1", api_key: "env:DIALECT_TEST_UP"}}}}
models:
  m: {{{{targets: [{{{{provider: up, model: m}}}}]}}}}
teams:
  eng: {{{{}}}}
"""


@dataclass
class Live:
    port: int
    key: str
    dispatcher: Dispatcher
    services: Any

    async def send(self, raw: bytes) -> tuple[int, dict[str, str], Any]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(raw)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
        finally:
            writer.close()
        return status, headers, json.loads(body)


@pytest.fixture
async def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Live]:
    monkeypatch.setenv("DIALECT_TEST_ADMIN", ADMIN)
    monkeypatch.setenv("DIALECT_TEST_UP", "sk-up")
    config = parse_config(yaml.safe_load(CONFIG.format(db=tmp_path / "t.db")))
    async with running(config) as svc:
        secret, record = new_key(svc.hmac_key, team="eng")
        await svc.store.create_key(record)
        await svc.keys.reload(force=True)
        routes = dispatcher()
        state = ServerState(svc, routes, max_body=MAX_BODY, refusal_body=routes.refusal_body)
        server = await asyncio.get_running_loop().create_server(lambda: HttpProtocol(state), "127.0.0.1", 0)
        try:
            yield Live(server.sockets[0].getsockname()[1], secret, routes, svc)
        finally:
            server.close()
            for conn in list(state.connections):
                conn.cancel()


def expected_dialect(path: str) -> str:
    """Written out here, independently of the code under test."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "anthropic"
    if path == "/v1/responses" or path.startswith("/v1/responses/"):
        return "responses"  # the Responses API's errors are OpenAI's error object
    return "openai"


def assert_shape(dialect: str, status: int, body: Any, what: str) -> None:
    if dialect == "anthropic":
        assert body.get("type") == "error", what
        err = body["error"]
        assert err["type"] in ANTHROPIC_TYPES, what
        assert isinstance(err["message"], str) and err["message"], what
        assert "param" not in err, what
    else:
        assert set(body) == {"error"}, what
        err = body["error"]
        assert {"message", "type", "param", "code"} <= set(err), what
        assert isinstance(err["message"], str) and err["message"], what
        assert isinstance(err["type"], str), what


def concrete(path: str) -> str:
    return (
        path.replace("{model:.+}", "m").replace("{key_id}", "key_x").replace("{id}", "x")
        .replace("{request_id}", "req_x").replace("{name}", "console.js")
        .replace("{response_id}", "resp_x")
    )  # fmt: skip


def all_routes() -> list[tuple[str, str, bool]]:
    """(method, path, is an API route) of every route the gateway serves."""
    out = []
    for table in route_tables():
        for method, path in table.paths():
            out.append((method, concrete(path), table.dialect is not None))
    return out


def request(method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    hdrs = {"host": "t", "content-length": str(len(body)), **(headers or {})}
    head = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    return f"{method} {path} HTTP/1.1\r\n{head}connection: close\r\n\r\n".encode() + body


def auth(live: Live, path: str) -> dict[str, str]:
    token = ADMIN if path.startswith("/admin/") else live.key
    return {"authorization": f"Bearer {token}"}


#: Public by design: the probes, /metrics (unless metrics.auth), the console's files, and its
#: sign-in / who-am-I / sign-out.
UNAUTHENTICATED = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/ui",
    "/ui/",
    "/ui/static/console.js",
    "/ui/api/session",
}


async def test_route_list_covers_both_dialects() -> None:
    paths = {p for _, p, _ in all_routes()}
    assert {"/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/admin/keys"} <= paths
    assert {
        ("POST", "/v1/responses"),
        ("GET", "/v1/responses/resp_x"),
        ("DELETE", "/v1/responses/resp_x"),
    } <= {(m, p) for m, p, api in all_routes() if api}


async def test_each_path_is_owned_by_its_dialect() -> None:
    routes = dispatcher()
    for method, path, _api in all_routes():
        assert routes.dialect_of(path).name == expected_dialect(path), (method, path)
    for path in ["/v1/responses/resp_x/input_items", "/v1/responsesx", "/v1/messages/batches"]:
        assert routes.dialect_of(path).name == expected_dialect(path), path


async def test_every_path_answers_every_error_class_in_its_dialect(live: Live) -> None:
    checked = 0
    for method, path, _api in all_routes():
        dialect = expected_dialect(path)
        cases: list[tuple[str, int, bytes]] = []
        # 405: a method the path does not take.
        cases.append(("405", 405, request("PUT", path)))
        # 404: an unknown endpoint under the path (where no template takes it).
        below = path + "/no-such-endpoint"
        probe = Request(
            types.SimpleNamespace(), None, "GET", below, {}, keep_alive=False, http11=True, max_body=1
        )  # type: ignore[arg-type]
        if live.dispatcher.resolve(probe) is None:
            cases.append(("404", 404, request("GET", below)))
        # 431: a head over 64 KiB, refused by the protocol before any handler.
        cases.append(("431", 431, request(method, path, headers={"x-big": "a" * 70_000})))
        # 400: a malformed head (a Content-Length that is not a number).
        cases.append(
            ("400 head", 400, f"{method} {path} HTTP/1.1\r\nhost: t\r\ncontent-length: 1x\r\n\r\n".encode())
        )
        if path not in UNAUTHENTICATED:
            # 401: no key (on the admin API: no admin key).
            body = b"{}" if method == "POST" else b""
            cases.append(
                ("401", 401, request(method, path, headers={"content-type": "application/json"}, body=body))
            )
        if method == "POST":
            ok = {**auth(live, path), "content-type": "application/json"}
            cases.append(("400 json", 400, request(method, path, headers=ok, body=b"{not json")))
            cases.append(
                ("415", 415, request(method, path, headers={**ok, "content-type": "text/plain"}, body=b"x"))
            )
            cases.append(("413", 413, request(method, path, headers=ok, body=b"x" * (MAX_BODY + 1))))
        for what, status, raw in cases:
            label = f"{what} on {method} {path}"
            got, headers, body = await live.send(raw)
            assert got == status, (label, body)
            assert headers["content-type"] == "application/json", label
            assert headers["x-sluice-error-source"] == "gateway", label
            assert_shape(dialect, got, body, label)
            checked += 1
    assert checked > 50


async def test_unknown_paths_belong_to_the_dialect_of_their_prefix(live: Live) -> None:
    for path, dialect in [
        ("/v1/messages/batches", "anthropic"),
        ("/v1/messages/batches/abc/results", "anthropic"),
        ("/v1/messagesx", "openai"),
        ("/v1/responses/resp_x/input_items", "responses"),
        ("/v1/responses/resp_x/cancel", "responses"),
        ("/v1/responsesx", "openai"),
        ("/v1/nosuch", "openai"),
        ("/nosuch", "openai"),
        ("/admin/nosuch", "openai"),
    ]:
        status, _, body = await live.send(request("GET", path))
        assert status == 404
        assert_shape(dialect, status, body, path)


async def test_a_request_arriving_while_draining_is_still_answered(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that reached this replica before its listener closed is served, not refused: a
    load balancer cannot resend a refused POST (the HA suite's rolling restart fails no request)."""
    for method, path, api in all_routes():
        if not api or method != "POST":
            continue
        ok = {**auth(live, path), "content-type": "application/json"}
        with monkeypatch.context() as m:
            m.setattr(live.services, "draining", True)
            status, _, body = await live.send(request(method, path, headers=ok, body=b"{}"))
        assert status != 503 and status < 500, (path, body)  # {} is a client error, answered as usual
        assert_shape(expected_dialect(path), status, body, path)


async def test_errors_of_api_routes_carry_the_request_id(live: Live) -> None:
    for path in ["/v1/chat/completions", "/v1/messages", "/v1/responses"]:
        status, headers, _ = await live.send(
            request("POST", path, headers={"content-type": "application/json"}, body=b"{}")
        )
        assert status == 401
        assert headers["x-request-id"].startswith("req_")


async def test_anthropic_errors_are_typed_by_status(live: Live) -> None:
    ok = {**auth(live, "/v1/messages"), "content-type": "application/json"}
    cases = {
        401: request("POST", "/v1/messages", headers={"content-type": "application/json"}, body=b"{}"),
        404: request("GET", "/v1/messages/batches"),
        405: request("GET", "/v1/messages"),
        413: request("POST", "/v1/messages", headers=ok, body=b"x" * (MAX_BODY + 1)),
        431: request("POST", "/v1/messages", headers={"x-big": "a" * 70_000}),
    }
    want = {
        401: "authentication_error",
        404: "not_found_error",
        405: "invalid_request_error",
        413: "request_too_large",
        431: "request_too_large",
    }
    for status, raw in cases.items():
        got, _, body = await live.send(raw)
        assert got == status
        assert body["error"]["type"] == want[status], (status, body)


async def test_responses_errors_raised_by_its_handlers(live: Live) -> None:
    """What the Responses routes raise themselves is rendered by the dispatcher, in OpenAI's shape,
    with the request's id."""
    ok = {**auth(live, "/v1/responses"), "content-type": "application/json"}
    post = b'{"model": "m", "input": "hi", "previous_response_id": "resp_gone"}'
    cases = [
        (request("GET", "/v1/responses/resp_gone", headers=ok), 404, "response_id", None),
        (request("GET", "/v1/responses/resp_gone?stream=true", headers=ok), 400, "stream", None),
        (request("DELETE", "/v1/responses/resp_gone", headers=ok), 404, "response_id", None),
        (request("POST", "/v1/responses", headers=ok, body=post), 404, "previous_response_id",
         "previous_response_not_found"),
        (request("POST", "/v1/responses", headers=ok, body=b'{"model": "m", "input": "x", "background": true}'),
         400, "background", None),
    ]  # fmt: skip
    for raw, status, param, code in cases:
        got, headers, body = await live.send(raw)
        label = raw.split(b"\r\n")[0].decode()
        assert got == status, (label, body)
        assert headers["x-request-id"].startswith("req_"), label
        assert_shape("responses", got, body, label)
        assert body["error"]["param"] == param, (label, body)
        if code is not None:
            assert body["error"]["code"] == code, (label, body)
