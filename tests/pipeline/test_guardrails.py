"""The guardrails middleware over its real parts: detectors, scanner, the gateway's Transport to a
loopback guardrail service. ``call_next`` stands for the rest of the pipeline (cache, routing)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sluice.config import parse_config
from sluice.errors import GuardrailBlocked, GuardrailUnavailable
from sluice.guardrails import inbound
from sluice.pipeline.accounting import Accounting
from sluice.pipeline.guardrails import HEADER, Guardrails, transport_post
from sluice.pricing import PriceBook
from sluice.schema.chat import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    Message,
    ResponseFormat,
    ResponseMessage,
)
from sluice.schema.context import ChunkStream, RequestContext, Result
from sluice.store.writer import RecordWriter
from sluice.transport.client import Transport
from tests.store.test_writer import FlakyStore

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def _gr(
    guardrails: dict[str, Any], *, payloads: str = "none", default: list[str] | None = None
) -> Guardrails:
    cfg = parse_config({
        "guardrails": guardrails, "routing": {"guardrails": default or list(guardrails)},
        "logging": {"payloads": payloads},
    }, {})  # fmt: skip
    return Guardrails(cfg, transport_post(Transport()))


def _ctx(text: str, *, schema: bool = False, stream: bool = False) -> RequestContext:
    fmt = ResponseFormat(type="json_schema", json_schema={"name": "x", "schema": SCHEMA}) if schema else None
    chat = ChatRequest(
        model="m", messages=[Message(role="user", content=text)], response_format=fmt, stream=stream
    )
    return RequestContext(request_id="r", dialect="openai", endpoint="chat", presented_key=None, chat=chat)


def _answer(*texts: str) -> Any:
    calls: list[RequestContext] = []
    replies = list(texts)

    async def call_next(ctx: RequestContext) -> Result:
        calls.append(ctx)
        text = replies.pop(0) if len(replies) > 1 else replies[0]
        return ChatResponse(choices=[Choice(message=ResponseMessage(content=text), finish_reason="stop")])

    call_next.calls = calls  # type: ignore[attr-defined]
    return call_next


@pytest.fixture
async def service() -> AsyncIterator[tuple[str, list[Any]]]:
    """A loopback guardrail service: flags texts containing 'evil'; 'slow' makes it wait 1 s."""
    seen: list[Any] = []

    async def check(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        if any("slow" in t for t in body["texts"]):
            await asyncio.sleep(1.0)
        if any("broken" in t for t in body["texts"]):
            return web.Response(status=500)
        return web.json_response(
            {"flagged": any("evil" in t for t in body["texts"]), "categories": ["custom"]}
        )

    app = web.Application()
    app.router.add_post("/check", check)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/check", seen
    await runner.cleanup()


async def test_webhook_verdicts_through_the_transport(service: tuple[str, list[Any]]) -> None:
    url, seen = service
    gr = _gr({"svc": {"type": "webhook", "url": url, "timeout_s": 0.3}})
    ctx = _ctx("a fine request")
    await gr.middleware(ctx, _answer("ok"))
    assert seen[-1] == {"guardrail": "svc", "direction": "input", "texts": ["a fine request"]}
    assert ctx.response_headers[HEADER] == "svc"
    with pytest.raises(GuardrailBlocked) as err:
        await gr.middleware(_ctx("something evil"), _answer("ok"))
    assert err.value.status == 400 and err.value.guardrail == "svc"


@pytest.mark.parametrize("text", ["slow please", "broken please"])
async def test_a_failing_webhook_fails_closed_unless_on_error_allow(
    service: tuple[str, list[Any]], text: str
) -> None:
    url, _ = service
    closed = _gr({"svc": {"type": "webhook", "url": url, "timeout_s": 0.2}})
    call_next = _answer("ok")
    with pytest.raises(GuardrailUnavailable) as err:
        await closed.middleware(_ctx(text), call_next)
    assert err.value.status == 503 and "'svc'" in err.value.message and not call_next.calls
    ctx = _ctx(text)
    allowed = _gr({"svc": {"type": "webhook", "url": url, "timeout_s": 0.2, "on_error": "allow"}})
    await allowed.middleware(ctx, _answer("ok"))
    assert json.loads(ctx.guardrails or "[]")[0]["outcome"] == "error"


async def test_an_unreachable_webhook_fails_closed() -> None:
    gr = _gr({"svc": {"type": "webhook", "url": "http://127.0.0.1:9/check", "timeout_s": 0.5}})
    with pytest.raises(GuardrailUnavailable):
        await gr.middleware(_ctx("hi"), _answer("ok"))


async def test_output_schema_blocks_with_the_validation_error() -> None:
    gr = _gr({"json": {"type": "output_schema", "action": "block"}})
    with pytest.raises(GuardrailBlocked) as err:
        await gr.middleware(_ctx("give json", schema=True), _answer('{"n": "x"}'))
    assert err.value.status == 502 and "'type' failed at $.n" in err.value.message
    ok = await gr.middleware(_ctx("give json", schema=True), _answer('{"n": 1}'))
    assert isinstance(ok, ChatResponse)
    plain = await gr.middleware(_ctx("no schema asked"), _answer("free text"))
    assert isinstance(plain, ChatResponse)


async def test_output_schema_may_retry_once() -> None:
    gr = _gr({"json": {"type": "output_schema", "action": "block", "retry": True}})
    call_next = _answer("not json", '{"n": 2}')
    ctx = _ctx("give json", schema=True)
    resp = await gr.middleware(ctx, call_next)
    assert isinstance(resp, ChatResponse) and resp.choices[0].message.content == '{"n": 2}'
    assert len(call_next.calls) == 2
    assert [v["outcome"] for v in json.loads(ctx.guardrails or "[]")] == ["retried"]


def _streamed(*pieces: str, last_with_finish: bool = False) -> Any:
    async def chunks() -> AsyncIterator[ChatChunk]:
        for n, p in enumerate(pieces):
            finish = "stop" if last_with_finish and n == len(pieces) - 1 else None
            yield ChatChunk(id="s", choices=[ChunkChoice(delta=Delta(content=p), finish_reason=finish)])
        if not last_with_finish:
            yield ChatChunk(id="s", choices=[ChunkChoice(delta=Delta(), finish_reason="stop")])

    async def call_next(ctx: RequestContext) -> Result:
        return ChunkStream(chunks())

    return call_next


async def test_output_schema_on_a_stream_holds_the_answer_until_it_validates() -> None:
    gr = _gr({"json": {"type": "output_schema", "action": "block"}})
    result = await gr.middleware(_ctx("j", schema=True, stream=True), _streamed('{"n": ', '"x"}'))
    assert isinstance(result, ChunkStream)
    released: list[str] = []
    with pytest.raises(GuardrailBlocked):
        async for chunk in result.chunks:
            released.extend(c.delta.content or "" for c in chunk.choices)
    assert released == []
    for last_with_finish in (False, True):
        good = await gr.middleware(
            _ctx("j", schema=True, stream=True), _streamed('{"n": ', "3}", last_with_finish=last_with_finish)
        )
        assert isinstance(good, ChunkStream)
        assert "".join([c.delta.content or "" async for ch in good.chunks for c in ch.choices]) == '{"n": 3}'


async def test_redacted_payloads_run_every_detector_whatever_the_route_action() -> None:
    gr = _gr({"pii-log": {"type": "pii", "action": "log", "entities": ["email"]}}, payloads="redacted")
    ctx = _ctx("mail bob@example.com, ssn 123-45-6789, key sk-proj-abcdefghijklmnopqrstuvwxyz0123")
    await gr.middleware(ctx, _answer("call +1 415 555 0100"))
    body, answer = ctx.request_body or "", ctx.response_body or ""
    for raw in ("bob@example.com", "123-45-6789", "sk-proj-abcdefghij"):
        assert raw not in body
    assert "[EMAIL_1]" in body and "[SSN_1]" in body and "[OPENAI_KEY_1]" in body
    assert "+1 415 555 0100" not in answer and "[PHONE_1]" in answer
    assert (
        ctx.chat is not None and "bob@example.com" in ctx.chat.messages[0].text()
    )  # log: the provider gets it


async def test_full_payloads_keep_the_bodies_and_none_keeps_nothing() -> None:
    full = _gr({}, payloads="full")
    ctx = _ctx("mail bob@example.com")
    await full.middleware(ctx, _answer("hi bob@example.com"))
    assert "bob@example.com" in (ctx.request_body or "") and "bob@example.com" in (ctx.response_body or "")
    none = _gr({"p": {"type": "pii"}})
    ctx = _ctx("hello")
    await none.middleware(ctx, _answer("hi"))
    assert ctx.request_body is None and ctx.response_body is None


async def test_the_spool_file_holds_no_planted_value(tmp_path: Path) -> None:
    """Records of guarded requests, spooled while the database is down: scan the file's bytes."""
    store = FlakyStore(str(tmp_path / "g.db"))
    await store.open()
    store.down = True
    spool_file = tmp_path / "spool.jsonl"
    writer = RecordWriter(store, spool_file, flush_interval_s=0.01, batch_size=10)
    await writer.start()
    accounting = Accounting(writer, PriceBook.load({}), {}, log_access=True)
    gr = _gr({"pii": {"type": "pii", "action": "redact"}, "no-secrets": {"type": "secrets", "action": "block"}},
             payloads="redacted")  # fmt: skip
    planted = ["bob@example.com", "123-45-6789", "sk-proj-abcdefghijklmnopqrstuvwxyz0123"]

    async def inner(ctx: RequestContext) -> Result:
        return await gr.middleware(ctx, _answer("your ssn 123-45-6789 and bob@example.com"))

    await accounting.middleware(_ctx("mail bob@example.com ssn 123-45-6789"), inner)
    with pytest.raises(GuardrailBlocked):
        await accounting.middleware(_ctx(f"key {planted[2]}"), inner)
    await writer.close(timeout_s=0.2)
    data = spool_file.read_bytes()
    assert data.count(b"\n") == 2 and b"guardrail_blocked" in data and b"[EMAIL_1]" in data
    for value in planted:
        assert value.encode() not in data
    await store.close()


async def test_a_large_request_is_scanned_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    scan = inbound._entities

    def spy(*args: Any) -> None:
        threads.append(threading.get_ident())
        scan(*args)

    monkeypatch.setattr(inbound, "_entities", spy)
    gr = _gr({"pii": {"type": "pii", "action": "redact"}})
    ctx = _ctx("filler text. " * 4000 + "mail bob@example.com")
    await gr.middleware(ctx, _answer("ok"))
    assert ctx.chat is not None and ctx.chat.messages[0].text().endswith("mail [EMAIL_1]")
    await gr.middleware(_ctx("small"), _answer("ok"))
    assert threads[0] != threading.get_ident() and threads[1] == threading.get_ident()
