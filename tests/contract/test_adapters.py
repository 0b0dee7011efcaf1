"""One contract every provider adapter passes, over real loopback HTTP against its fake upstream.

Adding a provider = one row in ``PROVIDERS`` (its type, its fake, the fake's base_url).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from sluice.config.model import ProviderConfig
from sluice.config.secret import Secret
from sluice.errors import ProviderError
from sluice.pricing import PriceBook, cost
from sluice.providers.base import ChatAdapter, Target
from sluice.providers.registry import create_adapter
from sluice.schema.chat import ChatChunk, ChatRequest, ChatResponse
from sluice.schema.openai import parse_chat_request
from sluice.schema.upstream import UpstreamResponse
from sluice.testing.fake_anthropic import FakeAnthropic
from sluice.testing.fake_azure import FakeAzure
from sluice.testing.fake_bedrock import FakeBedrock
from sluice.testing.fake_gemini import FakeGemini
from sluice.testing.fake_openai import FakeOpenAI
from sluice.testing.loopback import LoopbackServer
from sluice.transport.client import Deadline, Transport

SECRET = "sk-provider-SECRET-0123456789"
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@dataclass(frozen=True)
class Provider:
    type: str
    fake: Callable[[], LoopbackServer]
    model: str  # a model name with a known price, to check cost
    api_version: str | None = None


PROVIDERS = [
    Provider("openai", lambda: FakeOpenAI(slow_s=1.0), "gpt-4o-mini"),
    Provider("anthropic", lambda: FakeAnthropic(slow_s=1.0), "claude-sonnet-4-5"),
    Provider("azure", lambda: FakeAzure(slow_s=1.0), "gpt-4o-mini", "2024-10-21"),
    Provider("azure", lambda: FakeAzure(slow_s=1.0), "gpt-4o-mini", "v1"),
    Provider("gemini", lambda: FakeGemini(slow_s=1.0), "gemini-2.5-flash"),
    Provider("bedrock", lambda: FakeBedrock(slow_s=1.0), "anthropic.claude-3-5-haiku-20241022-v1:0"),
]


@pytest.fixture(params=PROVIDERS, ids=lambda p: p.type + (f"-{p.api_version}" if p.api_version else ""))
async def env(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Provider, ChatAdapter, Transport, Any]]:
    spec: Provider = request.param
    fake = await spec.fake().start()
    adapter = create_adapter(
        "p",
        ProviderConfig(
            type=spec.type,
            base_url=fake.base_url,
            api_key=Secret(SECRET, "env:X"),
            api_version=spec.api_version,
        ),
    )
    transport = Transport()
    yield spec, adapter, transport, fake
    await transport.close()
    await fake.stop()


def _req(model_hint: str = "x", **fields: Any) -> ChatRequest:
    body = {
        "model": model_hint,
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "one two three"},
        ],
        **fields,
    }
    return parse_chat_request(msgspec.json.encode(body))


async def complete(adapter: ChatAdapter, transport: Transport, req: ChatRequest, model: str) -> ChatResponse:
    resp = await transport.send(adapter.build_request(req, Target("p", model)), Deadline(5))
    if resp.status >= 400:
        raise adapter.parse_error(resp)
    return adapter.parse_response(resp, req)


async def stream(adapter: ChatAdapter, transport: Transport, req: ChatRequest, model: str) -> list[ChatChunk]:
    up = await transport.open_stream(adapter.build_request(req, Target("p", model)), Deadline(5, 5, 5))
    try:
        if up.status >= 400:
            raise adapter.parse_error(UpstreamResponse(up.status, up.headers, await up.read_all()))
        decoder = adapter.stream_decoder(req)
        out: list[ChatChunk] = []
        async for data in up.chunks():
            out += decoder.feed(data)
        return out + decoder.finish()
    finally:
        up.close()


def _text(chunks: list[ChatChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def test_plain_chat_with_system_prompt_usage_and_cost(env) -> None:  # type: ignore[no-untyped-def]
    spec, adapter, transport, fake = env
    resp = await complete(adapter, transport, _req(), spec.model)
    assert resp.choices[0].message.content == "echo: one two three"
    assert resp.choices[0].finish_reason == "stop"
    u = resp.usage
    assert u is not None and u.prompt_tokens > 0 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.cached_tokens + u.cache_write_tokens <= u.prompt_tokens, "prompt_tokens includes cache tokens"
    price = PriceBook.load().lookup(spec.model, adapter.type)
    assert price is not None and cost(u, price) > 0
    sent = str(fake.requests[-1]["body"])
    assert "Be terse." in sent, "the system prompt reached the provider"
    headers = str(fake.requests[-1]["headers"])
    assert SECRET in headers and "sk-sluice" not in headers


async def test_streaming(env) -> None:  # type: ignore[no-untyped-def]
    spec, adapter, transport, _ = env
    chunks = await stream(adapter, transport, _req(stream=True), spec.model)
    assert _text(chunks) == "echo: one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert any(c.usage is not None and c.usage.completion_tokens > 0 for c in chunks)


@pytest.mark.parametrize(
    ("choice", "expect_call"),
    [
        ("auto", True),
        ("required", True),
        ("none", False),
        ({"type": "function", "function": {"name": "get_weather"}}, True),
    ],
)
async def test_tools(env, choice: Any, expect_call: bool) -> None:  # type: ignore[no-untyped-def]
    spec, adapter, transport, _ = env
    resp = await complete(adapter, transport, _req(tools=[TOOL], tool_choice=choice), spec.model)
    calls = resp.choices[0].message.tool_calls or []
    if expect_call:
        assert [(c.function.name, msgspec.json.decode(c.function.arguments)) for c in calls] == [
            ("get_weather", {"city": "Paris"})
        ]
        assert resp.choices[0].finish_reason == "tool_calls"
    else:
        assert not calls and resp.choices[0].message.content


async def test_parallel_tool_calls_in_a_stream(env) -> None:  # type: ignore[no-untyped-def]
    _, adapter, transport, _ = env
    chunks = await stream(adapter, transport, _req(tools=[TOOL], stream=True), "parallel-tools")
    args: dict[int, str] = {}
    names: dict[int, str] = {}
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            if tc.function and tc.function.name:
                names[tc.index] = tc.function.name
            args[tc.index] = args.get(tc.index, "") + ((tc.function.arguments or "") if tc.function else "")
    assert names == {0: "get_weather", 1: "get_weather"}
    assert {i: msgspec.json.decode(a) for i, a in args.items()} == {
        0: {"city": "Paris"},
        1: {"city": "Paris"},
    }


async def test_json_mode_is_accepted(env) -> None:  # type: ignore[no-untyped-def]
    spec, adapter, transport, _ = env
    resp = await complete(adapter, transport, _req(response_format={"type": "json_object"}), spec.model)
    assert resp.choices[0].message.content


@pytest.mark.parametrize(
    ("model", "kind", "retryable"),
    [
        ("fault-500", "server", True), ("fault-429", "rate_limited", True), ("fault-529", "overloaded", True),
        ("fault-400", "bad_request", False), ("fault-401", "auth", False), ("fault-context", "context_window", False),
        ("fault-malformed", "bad_response", True),
    ],
)  # fmt: skip
async def test_error_kinds(env, model: str, kind: str, retryable: bool) -> None:  # type: ignore[no-untyped-def]
    _, adapter, transport, _ = env
    with pytest.raises(ProviderError) as err:
        await complete(adapter, transport, _req(), model)
    assert (err.value.kind, err.value.retryable) == (kind, retryable)
    assert SECRET not in err.value.message
    if model == "fault-429":
        assert err.value.retry_after == 1


@pytest.mark.parametrize("model", ["fault-drop-stream", "fault-stream-error", "fault-malformed"])
async def test_a_stream_that_breaks_midway_raises(env, model: str) -> None:  # type: ignore[no-untyped-def]
    _, adapter, transport, _ = env
    with pytest.raises(ProviderError):
        await stream(adapter, transport, _req(stream=True), model)
