"""Canonical answers and stream chunks → Response objects and Responses stream events, each checked
against the spec's own schemas (tests/e2e/fixtures/openai_schemas.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec

from sluice.errors import ProviderError, RateLimited
from sluice.schema.chat import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    FunctionCallDelta,
    ResponseMessage,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from sluice.schema.responses import decode_reasoning_state, parse_responses_request
from sluice.schema.responses_render import ResponseFrame, merge_reasoning, render_response
from sluice.schema.responses_stream import ResponsesStreamEncoder
from sluice.schema.sse import SSEDecoder

SPEC = json.loads((Path(__file__).parents[1] / "e2e/fixtures/openai_schemas.json").read_text())
EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.failed": "ResponseFailedEvent",
    "error": "ResponseErrorEvent",
}
USAGE = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)


def check(name: str, instance: Any) -> None:
    jsonschema.validate(
        instance, {**SPEC, "$ref": f"#/components/schemas/{name}"}, cls=jsonschema.Draft202012Validator
    )


def frame(**body: Any) -> ResponseFrame:
    req = parse_responses_request(msgspec.json.encode({"model": "m", "input": "x", **body}))
    return ResponseFrame(req, "resp_abc", created_at=1)


def events(data: bytes) -> list[dict[str, Any]]:
    out = []
    for ev in SSEDecoder().feed(data):
        body = json.loads(ev.data)
        assert ev.event == body["type"]
        check(EVENT_SCHEMAS[body["type"]], body)
        out.append(body)
    return out


def chunk(delta: Delta, finish: str | None = None, usage: Usage | None = None) -> ChatChunk:
    return ChatChunk(
        id="c", model="served", choices=[ChunkChoice(delta=delta, finish_reason=finish)], usage=usage
    )


def test_text_answer() -> None:
    resp = ChatResponse(
        model="served",
        choices=[Choice(message=ResponseMessage(content="hi"), finish_reason="stop")],
        usage=USAGE,
    )
    obj, turn = render_response(resp, frame(instructions="sys", metadata={"k": "v"}, user="u1"))
    check("Response", obj)
    assert obj["status"] == "completed" and obj["model"] == "served" and obj["instructions"] == "sys"
    assert obj["output"][0]["content"][0]["text"] == "hi" and obj["user"] == "u1"
    assert obj["usage"]["input_tokens"] == 10 and obj["usage"]["total_tokens"] == 15
    assert [(m.role, m.content) for m in turn] == [("assistant", "hi")]


def test_tool_calls_reasoning_and_length() -> None:
    reasoning = [{"type": "thinking", "thinking": "let me see", "signature": "s1"}]
    msg = ResponseMessage(
        content=None,
        tool_calls=[ToolCall(id="call_1", function=FunctionCall(name="w", arguments='{"a":1}'))],
        reasoning=reasoning,
    )
    obj, turn = render_response(
        ChatResponse(choices=[Choice(message=msg, finish_reason="tool_calls")]), frame()
    )
    check("Response", obj)
    kinds = [o["type"] for o in obj["output"]]
    assert kinds == ["reasoning", "function_call"]
    assert obj["output"][0]["content"] == [{"type": "reasoning_text", "text": "let me see"}]
    assert decode_reasoning_state(obj["output"][0]["encrypted_content"]) == reasoning
    assert obj["output"][1]["call_id"] == "call_1" and obj["output"][1]["arguments"] == '{"a":1}'
    assert turn[0].tool_calls is not None and turn[0].reasoning == reasoning
    cut = ChatResponse(choices=[Choice(message=ResponseMessage(content="par"), finish_reason="length")])
    obj, _ = render_response(cut, frame(max_output_tokens=3))
    check("Response", obj)
    assert obj["status"] == "incomplete" and obj["incomplete_details"] == {"reason": "max_output_tokens"}


def test_stream_text_sequence() -> None:
    enc = ResponsesStreamEncoder(frame())
    data = enc.feed(chunk(Delta(role="assistant", content="")))
    data += enc.feed(chunk(Delta(content="echo:")))
    data += enc.feed(chunk(Delta(content=" hi"), "stop"))
    data += enc.feed(ChatChunk(choices=[], usage=USAGE))
    data += enc.finish()
    evs = events(data)
    assert [e["type"] for e in evs] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in evs] == list(range(10))
    assert evs[6]["text"] == "echo: hi"
    final = evs[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "echo: hi" and final["usage"]["output_tokens"] == 5
    assert enc.final == final
    assert [(m.role, m.content) for m in enc.conversation()] == [("assistant", "echo: hi")]


def _call(index: int, args: str, call_id: str | None = None, name: str | None = None) -> Delta:
    fn = FunctionCallDelta(name=name, arguments=args)
    return Delta(
        tool_calls=[ToolCallDelta(index=index, id=call_id, type="function" if call_id else None, function=fn)]
    )


def test_stream_text_then_parallel_tool_calls() -> None:
    enc = ResponsesStreamEncoder(
        frame(tools=[{"type": "function", "name": "w", "parameters": None, "strict": None}])
    )
    data = enc.feed(chunk(Delta(content="checking")))
    data += enc.feed(chunk(_call(0, "", "call_a", "w")))
    data += enc.feed(chunk(_call(0, '{"c":')))
    data += enc.feed(chunk(_call(1, '{"c":2}', "call_b", "w")))
    data += enc.feed(chunk(_call(0, "1}")))  # a late fragment for the first call
    data += enc.feed(chunk(Delta(), "tool_calls"))
    data += enc.finish()
    evs = events(data)
    done = [e["item"] for e in evs if e["type"] == "response.output_item.done"]
    assert [(d["type"], d.get("arguments")) for d in done] == [
        ("message", None),
        ("function_call", '{"c":1}'),
        ("function_call", '{"c":2}'),
    ]
    deltas = [e["delta"] for e in evs if e["type"] == "response.function_call_arguments.delta"]
    assert deltas == ['{"c":', '{"c":2}', "1}"]
    turn = enc.conversation()[0]
    assert turn.content == "checking" and [c.id for c in turn.tool_calls or []] == ["call_a", "call_b"]


def test_stream_reasoning_fragments_are_merged() -> None:
    enc = ResponsesStreamEncoder(frame())
    data = enc.feed(chunk(Delta(reasoning=[{"type": "thinking", "thinking": "a"}])))
    data += enc.feed(chunk(Delta(reasoning=[{"type": "thinking", "thinking": "b"}])))
    data += enc.feed(chunk(Delta(reasoning=[{"type": "thinking", "signature": "sig"}])))
    data += enc.feed(chunk(Delta(content="answer"), "stop"))
    data += enc.finish()
    evs = events(data)
    item = next(e["item"] for e in evs if e["type"] == "response.output_item.done")
    assert item["type"] == "reasoning" and item["content"] == [{"type": "reasoning_text", "text": "ab"}]
    state = [{"type": "thinking", "thinking": "ab", "signature": "sig"}]
    assert decode_reasoning_state(item["encrypted_content"]) == state
    assert enc.conversation()[0].reasoning == state


def test_merge_reasoning_starts_a_new_block_after_a_signature() -> None:
    state: list[dict[str, Any]] = []
    for frag in [
        {"type": "thinking", "thinking": "a", "signature": "s"},
        {"type": "thinking", "thinking": "b"},
        {"type": "redacted_thinking", "data": "x"},
    ]:
        merge_reasoning(state, frag)
    assert [s.get("thinking") for s in state] == ["a", "b", None]


def test_stream_cut_by_max_output_tokens_is_incomplete() -> None:
    enc = ResponsesStreamEncoder(frame(max_output_tokens=2))
    evs = events(enc.feed(chunk(Delta(content="par"), "length")) + enc.finish())
    assert evs[-1]["type"] == "response.incomplete"
    assert evs[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert evs[-2]["item"]["status"] == "incomplete"


def test_stream_failure_after_it_began() -> None:
    enc = ResponsesStreamEncoder(frame())
    data = enc.feed(chunk(Delta(content="par")))
    data += enc.error(ProviderError("connection", "stream cut", provider="up"))
    evs = events(data)
    assert [e["type"] for e in evs[-2:]] == ["error", "response.failed"]
    assert (
        evs[-1]["response"]["status"] == "failed" and evs[-1]["response"]["error"]["code"] == "server_error"
    )
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    evs = events(ResponsesStreamEncoder(frame()).error(RateLimited("slow down")))
    assert (
        evs[0]["type"] == "response.created" and evs[-1]["response"]["error"]["code"] == "rate_limit_exceeded"
    )


def test_an_empty_stream_still_completes() -> None:
    evs = events(ResponsesStreamEncoder(frame()).finish())
    assert [e["type"] for e in evs] == ["response.created", "response.in_progress", "response.completed"]
