"""Accounting records every outcome: answers, streams (however they end) and errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.errors import ProviderError
from sluice.pipeline.accounting import CLIENT_CLOSED, Accounting
from sluice.pricing import PriceBook
from sluice.schema.chat import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    Message,
    ResponseMessage,
    Usage,
)
from sluice.schema.context import ChunkStream, Principal, RequestContext, Result
from sluice.store.records import RequestRecord
from sluice.store.sqlite import SQLiteStore
from sluice.store.writer import RecordWriter


class Capture(RecordWriter):
    def __init__(self) -> None:
        super().__init__(SQLiteStore(":memory:"), Path("/nonexistent/spool"))
        self.records: list[RequestRecord] = []

    def submit(self, record: RequestRecord) -> None:
        self.records.append(record)


def _ctx(stream: bool = False) -> RequestContext:
    ctx = RequestContext(request_id="req_1", dialect="openai", endpoint="chat", presented_key="sk-x")
    ctx.chat = ChatRequest(model="m", messages=[Message(role="user", content="hi")], stream=stream)
    ctx.requested_model = "m"
    ctx.principal = Principal(key_id="key_1", team="eng", user="u", name=None, models=None)
    ctx.provider, ctx.served_model = "up", "gpt-4o-mini"
    return ctx


USAGE = Usage(prompt_tokens=100, completion_tokens=50, total_tokens=150)


def _accounting() -> tuple[Accounting, Capture]:
    cap = Capture()
    return Accounting(cap, PriceBook.load(), {"up": "openai"}, log_access=False), cap


async def test_plain_answer_recorded_with_cost() -> None:
    acc, cap = _accounting()

    async def terminal(ctx: RequestContext) -> Result:
        return ChatResponse(choices=[Choice(message=ResponseMessage(content="x"))], usage=USAGE)

    await acc.middleware(_ctx(), terminal)
    (r,) = cap.records
    assert (r.key_id, r.team, r.prompt_tokens, r.completion_tokens, r.status) == (
        "key_1",
        "eng",
        100,
        50,
        200,
    )
    assert r.cost_usd == pytest.approx(100 * 1.5e-7 + 50 * 6e-7)
    assert "sk-x" not in repr(r)


async def _chunks(n: int, fail: bool = False) -> AsyncIterator[ChatChunk]:
    for i in range(n):
        await asyncio.sleep(0)
        yield ChatChunk(choices=[ChunkChoice(delta=Delta(content=str(i)))])
    if fail:
        raise ProviderError("connection", "cut", provider="up")
    yield ChatChunk(choices=[], usage=USAGE)


async def test_stream_metered_to_the_end() -> None:
    acc, cap = _accounting()

    async def terminal(ctx: RequestContext) -> Result:
        return ChunkStream(_chunks(3))

    ctx = _ctx(stream=True)
    result = await acc.middleware(ctx, terminal)
    assert isinstance(result, ChunkStream)
    assert len([c async for c in result.chunks]) == 4
    (r,) = cap.records
    assert r.stream and r.completion_tokens == 50 and r.ttft_ms is not None and r.status == 200


async def test_stream_cut_by_provider_and_by_client() -> None:
    acc, cap = _accounting()

    async def failing(ctx: RequestContext) -> Result:
        return ChunkStream(_chunks(2, fail=True))

    result = await acc.middleware(_ctx(stream=True), failing)
    assert isinstance(result, ChunkStream)
    with pytest.raises(ProviderError):
        async for _ in result.chunks:
            pass
    assert cap.records[-1].error_source == "provider" and cap.records[-1].status == 502

    async def long(ctx: RequestContext) -> Result:
        return ChunkStream(_chunks(100))

    result = await acc.middleware(_ctx(stream=True), long)
    assert isinstance(result, ChunkStream)
    async for _ in result.chunks:
        break
    await result.aclose()  # the client went away
    assert cap.records[-1].status == CLIENT_CLOSED and cap.records[-1].note
    assert len(cap.records) == 2


async def test_errors_before_answer_recorded() -> None:
    acc, cap = _accounting()

    async def terminal(ctx: RequestContext) -> Result:
        raise ProviderError("rate_limited", "slow down", provider="up", upstream_status=429)

    with pytest.raises(ProviderError):
        await acc.middleware(_ctx(), terminal)
    assert (cap.records[0].status, cap.records[0].error_kind) == (429, "rate_limited")


async def test_an_unexpected_error_is_recorded_as_the_500_it_becomes_and_a_cancel_as_499() -> None:
    import asyncio

    acc, cap = _accounting()

    async def broken(ctx: RequestContext) -> Result:
        raise RecursionError("deep")

    async def cancelled(ctx: RequestContext) -> Result:
        raise asyncio.CancelledError

    ctx = _ctx()
    with pytest.raises(RecursionError):
        await acc.middleware(ctx, broken)
    assert (cap.records[-1].status, cap.records[-1].error_message) == (500, "internal gateway error")
    assert ctx.finished_at is not None  # the dispatcher does not record it a second time
    with pytest.raises(asyncio.CancelledError):
        await acc.middleware(_ctx(), cancelled)
    assert cap.records[-1].status == CLIENT_CLOSED
