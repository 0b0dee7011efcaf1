"""The Responses dialect's own state: what parse_chat leaves on the context, and when an answer is
kept (rendered, or the stream's terminal event made) and when not (store: false, a failed stream,
no response store at all: refused before anything is spent)."""

from __future__ import annotations

import json
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sluice.errors import ProviderError, ServiceUnavailable
from sluice.schema.chat import ChatChunk, ChatResponse, Choice, ChunkChoice, Delta, Message, Usage
from sluice.schema.context import Principal, RequestContext
from sluice.server.responses_dialect import RESPONSES, ResponsesTurn
from sluice.store.responses import ResponseStore
from sluice.store.responses_sql import open_table


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ResponseStore]:
    st = ResponseStore(open_table(f"sqlite:///{tmp_path}/r.db"), retention_s=86400.0)
    await st.start()
    try:
        yield st
    finally:
        await st.close()


def ctx() -> RequestContext:
    c = RequestContext(request_id="req_1", dialect="responses", endpoint="chat", presented_key=None)
    c.principal = Principal(key_id="k", team="eng", user=None, name=None, models=None)
    return c


def request(store: ResponseStore | None) -> Any:
    return types.SimpleNamespace(services=types.SimpleNamespace(responses=store))


async def parsed(responses: ResponseStore | None, **body: Any) -> RequestContext:
    c = ctx()
    chat = await RESPONSES.parse_chat(request(responses), c, json.dumps({"model": "m", **body}).encode())
    assert chat.messages[-1].content == body.get("input")
    return c


def chunk(text: str | None = None, finish: str | None = None) -> ChatChunk:
    return ChatChunk(
        id="c",
        model="m",
        created=0,
        choices=[ChunkChoice(index=0, delta=Delta(content=text), finish_reason=finish)],
    )


async def test_parse_leaves_the_turn_on_the_context(store: ResponseStore) -> None:
    c = await parsed(store, input="hi", instructions="be terse")
    turn = c.dialect_state
    assert isinstance(turn, ResponsesTurn)
    assert turn.frame.id.startswith("resp_") and turn.team == "eng" and turn.store is store
    assert [m.role for m in turn.conversation] == ["user"], "instructions are not part of the conversation"


async def test_a_rendered_answer_is_kept_with_its_conversation(store: ResponseStore) -> None:
    c = await parsed(store, input="hi")
    answer = ChatResponse(
        id="x", model="m", created=0, usage=Usage(prompt_tokens=1, completion_tokens=1),
        choices=[Choice(index=0, message=Message(role="assistant", content="hello"), finish_reason="stop")],
    )  # fmt: skip
    body = RESPONSES.render_response(answer, c)
    obj = json.loads(body)
    row = await store.get(obj["id"], "eng")
    assert row is not None and row.body == body
    assert [(m["role"], m["content"]) for m in json.loads(row.conversation)] == [
        ("user", "hi"),
        ("assistant", "hello"),
    ]
    assert await store.get(obj["id"], "other") is None


async def test_a_stream_is_kept_when_its_terminal_event_is_made(store: ResponseStore) -> None:
    c = await parsed(store, input="hi", stream=True)
    enc = RESPONSES.stream_encoder(c)
    enc.feed(chunk("hel"))
    enc.feed(chunk("lo", "stop"))
    response_id = c.dialect_state.frame.id  # type: ignore[attr-defined]
    assert await store.get(response_id, "eng") is None, "not before the stream is done"
    tail = enc.finish()
    assert b"response.completed" in tail
    row = await store.get(response_id, "eng")
    assert row is not None and json.loads(row.body)["output"][0]["content"][0]["text"] == "hello"


async def test_a_failed_stream_is_not_kept(store: ResponseStore) -> None:
    c = await parsed(store, input="hi", stream=True)
    enc = RESPONSES.stream_encoder(c)
    enc.feed(chunk("hel"))
    assert b"response.failed" in enc.error(ProviderError("connection", "cut", provider="up"))
    assert await store.get(c.dialect_state.frame.id, "eng") is None  # type: ignore[attr-defined]


async def test_store_false_keeps_nothing_and_needs_no_store() -> None:
    c = await parsed(None, input="hi", store=False)
    assert c.dialect_state.store is None  # type: ignore[attr-defined]
    enc = RESPONSES.stream_encoder(c)
    enc.feed(chunk("x", "stop"))
    enc.finish()


async def test_store_true_without_a_response_store_is_refused_before_the_pipeline() -> None:
    with pytest.raises(ServiceUnavailable, match="stored responses are not available"):
        await parsed(None, input="hi")
