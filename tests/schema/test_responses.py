"""The Responses request → canonical ChatRequest translator."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sluice.errors import BadRequest
from sluice.schema.chat import FilePart, ImagePart, Message, NamedToolChoice, TextPart
from sluice.schema.responses import (
    ResponsesRequest,
    decode_reasoning_state,
    encode_reasoning_state,
    input_messages,
    parse_responses_request,
    to_chat_request,
)


def parse(**body: Any) -> ResponsesRequest:
    return parse_responses_request(msgspec.json.encode({"model": "m", **body}))


def chat(**body: Any) -> Any:
    req = parse(**body)
    return to_chat_request(req, [], input_messages(req))


def test_string_input_and_instructions() -> None:
    c = chat(input="hello", instructions="be brief", max_output_tokens=20, temperature=0.2, top_p=0.9)
    assert [(m.role, m.content) for m in c.messages] == [("system", "be brief"), ("user", "hello")]
    assert (c.max_completion_tokens, c.output_limit(), c.temperature, c.top_p) == (20, 20, 0.2, 0.9)
    assert c.stream is False and c.model == "m"


def test_store_defaults_to_true() -> None:
    assert parse(input="x").stored and not parse(input="x", store=False).stored


def test_message_items_with_parts() -> None:
    c = chat(
        input=[
            {"role": "developer", "content": "rules"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "low"},
                    {
                        "type": "input_file",
                        "file_data": "data:application/pdf;base64,AA",
                        "filename": "a.pdf",
                    },
                ],
            },
            {"role": "assistant", "content": [{"type": "output_text", "text": "seen", "annotations": []}]},
        ]
    )
    dev, user, asst = c.messages
    assert (dev.role, dev.content) == ("developer", "rules")
    assert isinstance(user.content, list)
    text, image, file = user.content
    assert isinstance(text, TextPart) and text.text == "look"
    assert isinstance(image, ImagePart) and image.image_url.detail == "low"
    assert isinstance(file, FilePart) and file.file.filename == "a.pdf"
    assert (asst.role, asst.content) == ("assistant", "seen")


def test_function_calls_join_the_assistant_turn_and_outputs_become_tool_messages() -> None:
    c = chat(
        input=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "let me look"},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": '{"city":"Oslo"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "rain"}],
            },
        ]
    )
    roles = [m.role for m in c.messages]
    assert roles == ["user", "assistant", "tool", "tool"]
    asst = c.messages[1]
    assert asst.content == "let me look"
    assert [(t.id, t.function.arguments) for t in asst.tool_calls or []] == [
        ("c1", '{"city":"Paris"}'),
        ("c2", '{"city":"Oslo"}'),
    ]
    assert (c.messages[2].tool_call_id, c.messages[2].content) == ("c1", "sunny")
    assert c.messages[3].text() == "rain"


def test_a_function_call_alone_opens_an_assistant_turn() -> None:
    c = chat(input=[{"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"}])
    assert c.messages[0].role == "assistant" and c.messages[0].content is None
    assert c.messages[0].tool_calls is not None and c.messages[0].tool_calls[0].id == "c1"


def test_reasoning_state_round_trips_to_the_next_assistant_turn() -> None:
    state = [{"type": "thinking", "thinking": "hmm", "signature": "sig"}]
    c = chat(
        input=[
            {"role": "user", "content": "q"},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [],
                "encrypted_content": encode_reasoning_state(state),
            },
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
            {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "gAAAA-openai-own"},
        ]
    )
    assert c.messages[1].reasoning == state and c.messages[1].tool_calls is not None
    assert decode_reasoning_state(None) == [] and decode_reasoning_state("other") == []
    with pytest.raises(BadRequest, match="corrupt"):
        decode_reasoning_state("sluice1:!!!notbase64")


def test_tools_tool_choice_and_formats() -> None:
    tool = {
        "type": "function",
        "name": "w",
        "description": "d",
        "parameters": {"type": "object"},
        "strict": True,
    }
    c = chat(
        input="x", tools=[tool], tool_choice={"type": "function", "name": "w"}, parallel_tool_calls=False
    )
    assert c.tools is not None and c.tools[0].function.name == "w" and c.tools[0].function.strict is True
    assert isinstance(c.tool_choice, NamedToolChoice) and c.tool_choice.function.name == "w"
    assert c.parallel_tool_calls is False
    assert chat(input="x", tools=[tool], tool_choice="required").tool_choice == "required"
    fmt = {"type": "json_schema", "name": "n", "schema": {"type": "object"}, "strict": True}
    rf = chat(input="x", text={"format": fmt}).response_format
    assert rf is not None and rf.type == "json_schema"
    assert rf.json_schema == {"name": "n", "schema": {"type": "object"}, "strict": True}
    rf = chat(input="x", text={"format": {"type": "json_object"}}).response_format
    assert rf is not None and rf.type == "json_object"
    assert chat(input="x", text={"format": {"type": "text"}}).response_format is None
    r = chat(input="x", reasoning={"effort": "high", "summary": "auto"}, metadata={"a": "b"}, user="u")
    assert (r.reasoning_effort, r.metadata, r.user) == ("high", {"a": "b"}, "u")


def test_history_goes_between_instructions_and_this_turn() -> None:
    req = parse(input="now", instructions="sys", previous_response_id="resp_1")
    history = [Message(role="user", content="before"), Message(role="assistant", content="ok")]
    c = to_chat_request(req, history, input_messages(req))
    assert [m.content for m in c.messages] == ["sys", "before", "ok", "now"]
    assert parse(previous_response_id="resp_1").input is None  # input may be omitted with a previous response


@pytest.mark.parametrize(
    ("body", "param", "match"),
    [
        ({"input": "x", "bogus": 1}, "bogus", "unknown parameter"),
        ({"input": "x", "conversation": "c"}, "conversation", "previous_response_id"),
        ({"input": "x", "background": True}, "background", "background"),
        ({"input": "x", "truncation": "auto"}, "truncation", "truncation"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens", "at least 1"),
        ({"input": "x", "temperature": 3}, "temperature", "between 0 and 2"),
        ({"input": 5}, "input", "Expected"),
        ({}, "input", "missing"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type", "web_search"),
        ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name", "name"),
        ({"input": "x", "tool_choice": {"type": "allowed_tools"}}, "tool_choice", "tool_choice"),
        ({"input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format", "name"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]", "previous_response_id"),
        ({"input": [{"type": "web_search_call", "id": "w"}]}, "input[0].type", "web_search_call"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role", "robot"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "input[0].content[0].type",
            "input_audio",
        ),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id", "call_id"),
        ({"input": [{"type": "function_call", "name": "f"}]}, "input[0]", "call_id"),
        ({"input": []}, "input", "at least one"),
        ({"input": "x", "include": ["message.output_text.logprobs"]}, "include", "logprobs"),
        ({"input": "x", "top_logprobs": 3}, "top_logprobs", "top_logprobs"),
    ],
)
def test_refusals_name_the_parameter(body: dict[str, Any], param: str, match: str) -> None:
    with pytest.raises(BadRequest, match=match) as err:
        chat(**body)
    assert err.value.param == param


def test_model_is_required() -> None:
    with pytest.raises(BadRequest, match="model") as err:
        parse_responses_request(b'{"input": "x"}')
    assert err.value.param == "model"
    with pytest.raises(BadRequest, match="JSON"):
        parse_responses_request(b"{nope")


def test_fields_chat_shares_are_passed_on_to_openai_upstreams() -> None:
    c = chat(
        input="x",
        service_tier="flex",
        prompt_cache_key="k",
        safety_identifier="h",
        include=["reasoning.encrypted_content"],
    )
    assert c.extra_body == {"service_tier": "flex", "prompt_cache_key": "k", "safety_identifier": "h"}
    assert chat(input="x").extra_body is None
    assert chat(input="x", text={"verbosity": "low"}).extra_body == {"verbosity": "low"}
