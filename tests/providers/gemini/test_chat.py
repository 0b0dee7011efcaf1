"""Gemini translators against exact wire bodies."""

from __future__ import annotations

import msgspec
import pytest

from sluice.errors import ProviderError
from sluice.providers.gemini.chat import from_gemini_response, to_gemini_request
from sluice.providers.gemini.stream import GeminiStreamDecoder
from sluice.schema.openai import parse_chat_request


def test_request_translation_round_trips_signatures_and_tool_results() -> None:
    req = parse_chat_request(msgspec.json.encode({
        "model": "m", "max_tokens": 50, "temperature": 0.2, "stop": ["END"],
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "call_0_w", "type": "function", "function": {"name": "w", "arguments": '{"city":"Paris"}'}}],
             "reasoning": [{"type": "thought_signature", "tool_call_id": "call_0_w", "signature": "EjQK"}]},
            {"role": "tool", "tool_call_id": "call_0_w", "content": "21C"},
        ],
        "tools": [{"type": "function", "function": {"name": "w", "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False,
            "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "w"}},
        "response_format": {"type": "json_object"},
    }))  # fmt: skip
    assert msgspec.json.decode(to_gemini_request(req)) == {
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "w", "args": {"city": "Paris"}}, "thoughtSignature": "EjQK"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "w", "response": {"result": "21C"}}}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "w", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["w"]}},
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 50, "stopSequences": ["END"], "responseMimeType": "application/json"},
    }  # fmt: skip


def test_response_function_calls_get_ids_and_signatures_and_usage() -> None:
    wire = {"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "w", "args": {"city": "Paris"}}, "thoughtSignature": "sig"}]},
            "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 15, "candidatesTokenCount": 6, "cachedContentTokenCount": 4, "thoughtsTokenCount": 10}}  # fmt: skip
    resp = from_gemini_response(msgspec.json.encode(wire), "g")
    msg = resp.choices[0].message
    assert msg.tool_calls[0].id == "call_0_w" and resp.choices[0].finish_reason == "tool_calls"  # type: ignore[index]
    assert msg.reasoning == [{"type": "thought_signature", "tool_call_id": "call_0_w", "signature": "sig"}]
    u = resp.usage
    assert u is not None and (u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.reasoning_tokens) == (
        15,
        16,
        4,
        10,
    )


@pytest.mark.parametrize("reason", ["SAFETY", "RECITATION", "PROHIBITED_CONTENT"])
def test_safety_blocks_are_content_filter(reason: str) -> None:
    wire = {"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": reason}]}
    assert from_gemini_response(msgspec.json.encode(wire), "g").choices[0].finish_reason == "content_filter"
    blocked = {"promptFeedback": {"blockReason": "SAFETY"}}
    assert (
        from_gemini_response(msgspec.json.encode(blocked), "g").choices[0].finish_reason == "content_filter"
    )


def test_crlf_stream_without_done_and_cut_stream() -> None:
    frags = [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}]},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]}, "finishReason": "STOP"}],
         "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}},
    ]  # fmt: skip
    data = b"".join(b"data: " + msgspec.json.encode(f) + b"\r\n\r\n" for f in frags)
    decoder = GeminiStreamDecoder("g", None)
    chunks = [c for i in range(0, len(data), 5) for c in decoder.feed(data[i : i + 5])] + decoder.finish()
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5
    cut = GeminiStreamDecoder("g", None)
    cut.feed(data[: data.index(b"\r\n\r\n") + 4])
    with pytest.raises(ProviderError):
        cut.finish()
