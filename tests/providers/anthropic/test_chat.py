"""Anthropic translators against exact wire bodies (request in → upstream JSON out; body in → canonical)."""

from __future__ import annotations

import msgspec
import pytest

from sluice.errors import ProviderError
from sluice.providers.anthropic.chat import from_anthropic_response, to_anthropic_request
from sluice.providers.anthropic.stream import AnthropicStreamDecoder
from sluice.schema.openai import parse_chat_request

THINKING = {"type": "thinking", "thinking": "Let me check.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"}


def test_request_translation_is_exact() -> None:
    req = parse_chat_request(msgspec.json.encode({
        "model": "alias", "temperature": 1.7, "stop": "END", "user": "u1", "max_tokens": 300,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}]},
            {"role": "assistant", "content": None, "reasoning": [THINKING], "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Paris"}'}},
                {"id": "toolu_2", "type": "function", "function": {"name": "w", "arguments": '{"city":"Rome"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "21C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "25C"},
        ],
        "tools": [{"type": "function", "function": {"name": "w", "description": "Weather", "parameters": {"type": "object"}}}],
        "tool_choice": "required", "parallel_tool_calls": False,
    }))  # fmt: skip
    body = msgspec.json.decode(to_anthropic_request(req, "claude-sonnet-4-5", None))
    assert body == {
        "model": "claude-sonnet-4-5", "max_tokens": 300, "system": "You are terse.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}]},
            {"role": "assistant", "content": [THINKING,
                                              {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Paris"}},
                                              {"type": "tool_use", "id": "toolu_2", "name": "w", "input": {"city": "Rome"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C"},
                                         {"type": "tool_result", "tool_use_id": "toolu_2", "content": "25C"}]},
        ],
        "temperature": 1.0, "stop_sequences": ["END"], "metadata": {"user_id": "u1"},
        "tools": [{"name": "w", "input_schema": {"type": "object"}, "description": "Weather"}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }  # fmt: skip


def test_default_max_tokens_and_stream_flag() -> None:
    req = parse_chat_request(b'{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}')
    body = msgspec.json.decode(to_anthropic_request(req, "m", 8192))
    assert body["max_tokens"] == 8192 and body["stream"] is True


def test_response_with_thinking_tool_use_and_cache_usage() -> None:
    wire = {
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [THINKING, {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_01", "name": "w", "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 25, "output_tokens": 12, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 40},
    }  # fmt: skip
    resp = from_anthropic_response(msgspec.json.encode(wire), "p")
    msg = resp.choices[0].message
    assert msg.content == "Let me check." and msg.reasoning == [THINKING]
    assert msg.tool_calls[0].function.arguments == '{"city":"Paris"}'  # type: ignore[index, union-attr]
    assert resp.choices[0].finish_reason == "tool_calls"
    u = resp.usage
    assert u is not None and (
        u.prompt_tokens,
        u.cached_tokens,
        u.cache_write_tokens,
        u.completion_tokens,
    ) == (165, 40, 100, 12)


STREAM = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1,"cache_read_input_tokens":4}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Hmm."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig=="}}

event: ping
data: {"type":"ping"}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_9","name":"w","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Pa"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ris\\"}"}}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":30}}

event: message_stop
data: {"type":"message_stop"}

"""


@pytest.mark.parametrize("step", [1, 7, 64, len(STREAM)])
def test_stream_decoding_any_split(step: int) -> None:
    decoder = AnthropicStreamDecoder("p", None)
    chunks = []
    for i in range(0, len(STREAM), step):
        chunks += decoder.feed(STREAM[i : i + step])
    chunks += decoder.finish()
    reasoning = [r for c in chunks if c.choices for r in c.choices[0].delta.reasoning or []]
    assert reasoning == [{"type": "thinking", "thinking": "Hmm."}, {"type": "thinking", "signature": "sig=="}]
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id == "toolu_9" and calls[0].function.name == "w"  # type: ignore[union-attr]
    assert "".join(tc.function.arguments or "" for tc in calls if tc.function) == '{"city": "Paris"}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]
    usage = [c.usage for c in chunks if c.usage][-1]
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == (14, 4, 30)


def test_cut_stream_and_error_event() -> None:
    decoder = AnthropicStreamDecoder("p", None)
    decoder.feed(STREAM[:400])
    with pytest.raises(ProviderError, match="before message_stop"):
        decoder.finish()
    err = (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    with pytest.raises(ProviderError) as exc:
        AnthropicStreamDecoder("p", None).feed(err)
    assert exc.value.kind == "overloaded"
