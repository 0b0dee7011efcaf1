"""The gateway's answers validate against OpenAI's own OpenAPI schemas (extracted by
scripts/extract_openai_schemas.py from the reference spec)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2 as httpx
import jsonschema
import pytest

from tests.e2e.gateway import Gateway

pytestmark = pytest.mark.e2e
SPEC = json.loads((Path(__file__).parent / "fixtures/openai_schemas.json").read_text())
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def check(name: str, instance: Any) -> None:
    schema = {**SPEC, "$ref": f"#/components/schemas/{name}"}
    jsonschema.validate(instance, schema, cls=jsonschema.Draft202012Validator)


def post(gateway: Gateway, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        gateway.base_url + path, json=body, headers={"authorization": f"Bearer {key}"}, timeout=10
    )


@pytest.mark.parametrize("extra", [{}, {"tools": [TOOL], "tool_choice": "required"}])
def test_chat_completion(gateway: Gateway, key: str, extra: dict[str, Any]) -> None:
    r = post(
        gateway,
        key,
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra},
    )
    assert r.status_code == 200
    check("CreateChatCompletionResponse", r.json())


@pytest.mark.parametrize("extra", [{}, {"tools": [TOOL]}, {"stream_options": {"include_usage": True}}])
def test_chat_stream_chunks(gateway: Gateway, key: str, extra: dict[str, Any]) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "a b c"}],
        "stream": True,
        **extra,
    }
    r = post(gateway, key, "/v1/chat/completions", body)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in r.text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    for event in events[:-1]:
        check("CreateChatCompletionStreamResponse", json.loads(event))


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings(gateway: Gateway, key: str, encoding: str) -> None:
    r = post(
        gateway,
        key,
        "/v1/embeddings",
        {"model": "embed-small", "input": ["a", "b"], "encoding_format": encoding},
    )
    body = r.json()
    if encoding == "base64":
        # The spec types `embedding` as numbers only, though the API (and the SDK's default
        # request) use base64 strings: check the strings, then the rest against the schema.
        assert all(isinstance(d["embedding"], str) for d in body["data"])
        body["data"] = [{**d, "embedding": [0.0]} for d in body["data"]]
    check("CreateEmbeddingResponse", body)


def test_models(gateway: Gateway, key: str) -> None:
    headers = {"authorization": f"Bearer {key}"}
    check("ListModelsResponse", httpx.get(gateway.base_url + "/v1/models", headers=headers).json())
    check("Model", httpx.get(gateway.base_url + "/v1/models/gpt-4o-mini", headers=headers).json())


@pytest.mark.parametrize("model", ["nope", "fault-500", "fault-429"])
def test_errors(gateway: Gateway, key: str, model: str) -> None:
    r = post(
        gateway, key, "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "x"}]}
    )
    assert r.status_code >= 400
    check("ErrorResponse", r.json())


# ---------------------------------------------------------------- the Responses API

#: Stream event type → the spec's schema for it.
RESPONSE_EVENTS = {
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
RESPONSES_TOOL = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object"},
    "strict": False,
}
RESPONSES_CASES: list[dict[str, Any]] = [
    {},
    {"instructions": "terse", "metadata": {"app": "t"}, "temperature": 0.5, "max_output_tokens": 40},
    {"tools": [RESPONSES_TOOL], "tool_choice": "required"},
    {"model": "parallel", "tools": [RESPONSES_TOOL]},
    {"text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}}},
    {"store": False, "reasoning": {"effort": "low"}},
]


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "data" in lines:
            out.append((lines.get("event", ""), json.loads(lines["data"])))
    return out


@pytest.mark.parametrize("extra", RESPONSES_CASES)
def test_response_object(gateway: Gateway, key: str, extra: dict[str, Any]) -> None:
    r = post(gateway, key, "/v1/responses", {"model": "gpt-4o-mini", "input": "hi", **extra})
    assert r.status_code == 200, r.text
    check("Response", r.json())
    if extra.get("store") is not False:
        got = httpx.get(
            f"{gateway.base_url}/v1/responses/{r.json()['id']}", headers={"authorization": f"Bearer {key}"}
        )
        assert got.status_code == 200 and got.json() == r.json()


@pytest.mark.parametrize("extra", [*RESPONSES_CASES, {"model": "fault-drop-stream", "input": "a b c d e f"}])
def test_response_stream_events(gateway: Gateway, key: str, extra: dict[str, Any]) -> None:
    body = {"model": "gpt-4o-mini", "input": "a b c", "stream": True, **extra}
    r = post(gateway, key, "/v1/responses", body)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
    for name, event in events:
        assert name == event["type"]
        check(RESPONSE_EVENTS[name], event)
    last = events[-1][0]
    assert last == ("response.failed" if "fault" in body["model"] else "response.completed")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/responses", {"model": "nope", "input": "x"}),
        ("POST", "/v1/responses", {"model": "gpt-4o-mini", "input": "x", "tools": [{"type": "web_search"}]}),
        ("POST", "/v1/responses", {"model": "gpt-4o-mini"}),
        ("POST", "/v1/responses", {"model": "fault-429", "input": "x"}),
        ("GET", "/v1/responses/resp_nope", None),
        ("DELETE", "/v1/responses/resp_nope", None),
    ],
)
def test_response_errors(gateway: Gateway, key: str, method: str, path: str, body: Any) -> None:
    r = httpx.request(
        method, gateway.base_url + path, json=body, headers={"authorization": f"Bearer {key}"}, timeout=10
    )
    assert r.status_code >= 400
    check("ErrorResponse", r.json())
