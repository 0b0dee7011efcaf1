"""The real gateway process driven by the official openai SDK (sync and async) over loopback."""

from __future__ import annotations

import base64
import struct

import openai
import pytest

from tests.e2e.gateway import Gateway

pytestmark = pytest.mark.e2e

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=15)


@pytest.fixture
def aclient(gateway: Gateway, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=15)


def test_chat_non_streaming(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello gateway"}]
    )
    resp = raw.parse()
    assert resp.choices[0].message.content == "echo: hello gateway"
    assert resp.choices[0].finish_reason == "stop"
    assert (
        resp.usage is not None
        and resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    )
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-sluice-provider"] == "up"
    assert raw.headers["x-sluice-model"] == "gpt-4o-mini"


def test_chat_streaming_relays_chunks_and_strips_unrequested_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks), "usage chunk must be stripped when not asked for"
    assert len(chunks) >= 5, "chunks are relayed one by one, not re-buffered"


def test_chat_streaming_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "count me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_tools_non_streaming(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    call = resp.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert call.function.arguments == '{"city": "Paris"}'  # type: ignore[union-attr]
    assert resp.choices[0].finish_reason == "tool_calls"


def test_parallel_tool_call_deltas_streamed(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="parallel",
        messages=[{"role": "user", "content": "x"}],
        tools=[WEATHER_TOOL],
        stream=True,  # type: ignore[list-item]
    )
    args: dict[int, str] = {}
    names: dict[int, str] = {}
    for chunk in stream:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if tc.function and tc.function.name:
                names[tc.index] = tc.function.name
            args[tc.index] = args.get(tc.index, "") + ((tc.function.arguments or "") if tc.function else "")
    assert names == {0: "get_weather", 1: "get_weather"}
    assert args == {0: '{"city": "Paris"}', 1: '{"city": "Paris"}'}


def test_multimodal_content_passes_through(client: openai.OpenAI, fake_upstream) -> None:  # type: ignore[no-untyped-def]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": [{"type": "text", "text": "what is this?"}, image]}],  # type: ignore[list-item]
        extra_body={"verbosity": "low"},
    )
    sent = fake_upstream.requests[-1]["body"]
    assert sent["messages"][0]["content"][1] == image
    assert sent["verbosity"] == "low", "unknown fields reach OpenAI-compatible upstreams"


def test_embeddings_base64_default_and_float(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model="embed-small", input=["a", "b"])  # SDK asks for base64
    assert len(resp.data) == 2 and len(resp.data[0].embedding) == 8
    floats = client.embeddings.create(model="embed-small", input="a", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(resp.data[0].embedding, rel=1e-6)


def test_embeddings_raw_base64(gateway: Gateway, key: str) -> None:
    import httpx2 as httpx

    r = httpx.post(
        gateway.base_url + "/v1/embeddings",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "embed-small", "input": "a", "encoding_format": "base64"},
    )
    vec = r.json()["data"][0]["embedding"]
    assert isinstance(vec, str) and len(struct.unpack("<8f", base64.b64decode(vec))) == 8


def test_models_listing_and_retrieve(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini", "embed-small"} <= ids
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


async def test_async_client_stream_and_plain(aclient: openai.AsyncOpenAI) -> None:
    resp = await aclient.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert resp.choices[0].message.content == "echo: hi"
    stream = await aclient.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi there"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: hi there"
