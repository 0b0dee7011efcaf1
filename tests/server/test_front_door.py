"""Issue #18's wrong answers, against the real gateway process over raw sockets and the SDKs:
pipelining, trailers, hostile JSON and upstream headers, key limits, ``n``, large answers."""

from __future__ import annotations

import json
import socket
import time

import anthropic
import httpx2 as httpx
import openai
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.e2e.gateway import ADMIN_KEY, Gateway
from tests.server.hostile import gw, hostile, records

pytestmark = pytest.mark.e2e
__all__ = ["gw", "hostile"]  # the module's fixtures


def _key(gw: Gateway, index: int = 0) -> str:
    return list(gw.keys.values())[index]


def _exchange(gw: Gateway, raw: bytes, answers: int) -> list[bytes]:
    """Send raw bytes; read until ``answers`` whole responses (content-length framed) or EOF."""
    out: list[bytes] = []
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(raw)
        buf = b""
        while len(out) < answers:
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    return out
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(buf) < length:
                buf += sock.recv(65536)
            out.append(head + b"\r\n\r\n" + buf[:length])
            buf = buf[length:]
    return out


def _until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "never reached the expected state"
        time.sleep(0.02)


def test_pipelined_requests_before_a_bad_one_each_get_their_answer(gw: Gateway) -> None:
    auth = f"authorization: Bearer {_key(gw)}\r\n"
    raw = (
        b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n"
        + f"GET /v1/models HTTP/1.1\r\nhost: gw\r\n{auth}\r\n".encode()
        + b"GET /bad\x01 HTTP/1.1\r\n\r\n"
    )
    answers = _exchange(gw, raw, 3)
    assert [a.split(b" ", 2)[1] for a in answers] == [b"200", b"200", b"400"]
    assert b'"object":"list"' in answers[1]


def test_a_trailer_never_sets_the_recorded_user(gw: Gateway) -> None:
    body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"trailer test"}]}'
    raw = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {_key(gw)}\r\n"
        "content-type: application/json\r\ntransfer-encoding: chunked\r\nx-sluice-user: alice\r\n\r\n"
    ).encode() + b"%x\r\n%s\r\n0\r\nX-Sluice-User: mallory\r\nX-Sluice-Tags: evil\r\n\r\n" % (len(body), body)
    (answer,) = _exchange(gw, raw, 1)
    assert answer.startswith(b"HTTP/1.1 200 ")
    rid = answer.split(b"x-request-id: ")[1].split(b"\r\n")[0].decode()
    _until(lambda: bool(records(gw, "id = ?", rid)))
    (row,) = records(gw, "id = ?", rid)
    assert row["user_id"] == "alice"
    assert "evil" not in row["tags"]


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_json_nested_past_the_parser_limit_is_a_recorded_400_in_the_dialect(
    gw: Gateway, dialect: str
) -> None:
    deep = "[" * 5000 + "]" * 5000
    payload = f'{{"model":"gpt-4o-mini","max_tokens":5,"messages":[{{"role":"user","content":{deep}}}]}}'
    path = "/v1/chat/completions" if dialect == "openai" else "/v1/messages"
    resp = httpx.post(
        gw.base_url + path, content=payload.encode(), timeout=10,
        headers={"authorization": f"Bearer {_key(gw)}", "content-type": "application/json"},
    )  # fmt: skip
    assert resp.status_code == 400
    body = resp.json()
    if dialect == "openai":
        assert "nested too deeply" in body["error"]["message"]
    else:
        assert body["type"] == "error" and "nested too deeply" in body["error"]["message"]
    rid = resp.headers["x-request-id"]
    _until(lambda: bool(records(gw, "id = ?", rid)))
    assert records(gw, "id = ?", rid)[0]["status"] == 400


def test_an_infinite_upstream_retry_after_is_a_clean_429(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=_key(gw), max_retries=0, timeout=20)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="retry-inf", messages=[{"role": "user", "content": "hi"}])
    wait = info.value.response.headers["retry-after"]
    assert wait.isdigit() and int(wait) <= 86_400


def test_an_upstream_redirect_is_named_not_followed(gw: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=_key(gw), max_retries=0, timeout=20)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="redirect", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502
    assert "upstream redirected" in str(info.value) and "not followed" in str(info.value)


def test_a_key_limit_past_what_the_store_holds_is_a_400(gw: Gateway) -> None:
    resp = httpx.post(
        gw.base_url + "/admin/keys", json={"team": "eng", "rpm": 10**30},
        headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=10,
    )  # fmt: skip
    assert resp.status_code == 400
    assert "rpm" in resp.json()["error"]["message"]


def test_n_is_capped_by_server_max_n(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=_key(gw), max_retries=0, timeout=20)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="gpt-4o-mini", n=200, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert "server.max_n" in str(info.value)


def test_n_completions_are_reserved_against_the_token_limit(gw: Gateway) -> None:
    limited = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=_key(gw, 1), max_retries=0, timeout=20)
    msgs = [{"role": "user", "content": "hi"}]
    # 8 x 2000 = 16,000 output tokens reserved: over the key's 10,000 tokens a minute.
    with pytest.raises(openai.RateLimitError):
        limited.chat.completions.create(model="gpt-4o-mini", n=8, max_tokens=2000, messages=msgs)  # type: ignore[arg-type]
    assert limited.chat.completions.create(model="gpt-4o-mini", n=2, max_tokens=2000, messages=msgs)  # type: ignore[arg-type]


def test_multi_megabyte_answers_in_a_row_never_hang(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=_key(gw), max_retries=0, timeout=10)
    for _ in range(16):
        out = client.chat.completions.create(model="big", messages=[{"role": "user", "content": "hi"}])
        assert len(out.choices[0].message.content or "") == 3 * 1024 * 1024


async def test_the_demo_upstream_keeps_nothing() -> None:
    async with FakeOpenAI(keep_requests=False) as demo:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{demo.port}") as client:
            body = {"model": "demo", "messages": [{"role": "user", "content": "secret prompt"}]}
            assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
            assert (await client.get("/_requests")).status_code == 404
            assert (await client.post("/_script", json={"model": "m", "steps": []})).status_code in (404, 405)
        assert demo.requests == []
    assert json.dumps(demo.requests) == "[]"
