"""The official anthropic SDK through /v1/messages, to an OpenAI-compatible upstream."""

from __future__ import annotations

import anthropic
import httpx2 as httpx
import pytest

from sluice.testing.fake_openai import FakeOpenAI
from tests.e2e.gateway import Gateway

pytestmark = pytest.mark.e2e
TOOL = {
    "name": "get_weather",
    "description": "Weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
def client(gateway: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)


def test_message_with_system_prompt(client: anthropic.Anthropic, fake_upstream: FakeOpenAI) -> None:
    msg = client.messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        system="Be terse.",
        messages=[{"role": "user", "content": "hello there"}],
    )
    assert msg.content[0].type == "text" and msg.content[0].text == "echo: hello there"
    assert msg.stop_reason == "end_turn" and msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    sent = fake_upstream.requests[-1]["body"]
    assert sent["messages"][0] == {"role": "system", "content": "Be terse."}
    assert sent["max_tokens"] == 100


def test_streaming_text(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "a b c"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "echo: a b c"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


def test_tool_use_and_tool_result_round_trip(client: anthropic.Anthropic, fake_upstream: FakeOpenAI) -> None:
    msg = client.messages.create(
        model="gpt-4o-mini", max_tokens=100, tools=[TOOL],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "get_weather"}, messages=[{"role": "user", "content": "Paris?"}],
    )  # fmt: skip
    use = next(b for b in msg.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris"} and msg.stop_reason == "tool_use"
    client.messages.create(
        model="gpt-4o-mini", max_tokens=100, tools=[TOOL],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": use.name, "input": use.input}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "21C"}]},
        ],
    )  # fmt: skip
    sent = fake_upstream.requests[-1]["body"]["messages"]
    assert sent[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert sent[2] == {"role": "tool", "tool_call_id": use.id, "content": "21C"}


def test_streamed_tool_use(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model="parallel",
        max_tokens=100,
        tools=[TOOL],
        messages=[{"role": "user", "content": "x"}],  # type: ignore[list-item]
    ) as s:
        final = s.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert len(uses) == 2 and all(u.input == {"city": "Paris"} for u in uses)
    assert final.stop_reason == "tool_use"


def test_errors_in_anthropic_format(client: anthropic.Anthropic, gateway: Gateway) -> None:
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gateway.base_url, api_key="bad", max_retries=0).messages.create(
            model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.InternalServerError) as err:
        client.messages.create(model="fault-500", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert err.value.body["error"]["source"] == "provider"  # type: ignore[index]
    r = httpx.post(gateway.base_url + "/v1/messages", headers={"x-api-key": "k"}, json={"model": "m"})
    assert r.status_code == 401 and r.json()["type"] == "error"


def test_endpoints_the_gateway_lacks_answer_in_anthropic_format(client: anthropic.Anthropic) -> None:
    """The SDK's batches API is not served: a 404 the SDK parses as Anthropic's own error."""
    with pytest.raises(anthropic.NotFoundError) as err:
        client.messages.batches.list()
    assert err.value.body["type"] == "error"  # type: ignore[index]
    assert err.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_bad_request_names_the_field(gateway: Gateway, key: str) -> None:
    r = httpx.post(
        gateway.base_url + "/v1/messages",
        headers={"x-api-key": key},
        json={"model": "gpt-4o-mini", "messages": []},
    )
    assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"]


def test_mid_stream_failure_is_an_error_event(client: anthropic.Anthropic) -> None:
    with (
        pytest.raises(anthropic.APIError),
        client.messages.stream(
            model="fault-drop-stream", max_tokens=10, messages=[{"role": "user", "content": "a b c d"}]
        ) as s,
    ):
        for _ in s:
            pass


def test_count_tokens_is_an_estimate(client: anthropic.Anthropic) -> None:
    resp = client.messages.with_raw_response.count_tokens(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello, how are you today?"}]
    )
    assert resp.parse().input_tokens > 5
    assert resp.headers["x-sluice-token-count"] in {"exact", "estimate"}
