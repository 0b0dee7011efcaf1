"""The official SDKs through the real gateway to non-OpenAI providers: switching provider is a
one-line change in the policy file, and callers do not notice which one answered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from sluice.testing.fake_anthropic import FakeAnthropic
from sluice.testing.fake_bedrock import FakeBedrock
from sluice.testing.fake_gemini import FakeGemini
from tests.e2e.gateway import UPSTREAM_KEY, Gateway, make_gateway

pytestmark = pytest.mark.e2e
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def fake_claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def fake_gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture(scope="module")
def fake_bedrock() -> Iterator[FakeBedrock]:
    with FakeBedrock() as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory,
    fake_claude: FakeAnthropic,
    fake_gemini: FakeGemini,
    fake_bedrock: FakeBedrock,
) -> Iterator[Gateway]:
    workdir: Path = tmp_path_factory.mktemp("providers")
    config = f"""
store: {{url: "sqlite:///{workdir}/sluice.db", flush_interval_s: 0.05}}
providers:
  claude: {{type: anthropic, base_url: "{fake_claude.base_url}", api_key: env:SLUICE_TEST_UPSTREAM_KEY}}
  gem: {{type: gemini, base_url: "{fake_gemini.base_url}", api_key: env:SLUICE_TEST_UPSTREAM_KEY}}
  aws: {{type: bedrock, base_url: "{fake_bedrock.base_url}", region: us-east-1, aws_access_key_id: env:SLUICE_TEST_UPSTREAM_KEY, aws_secret_access_key: env:SLUICE_TEST_UPSTREAM_KEY}}
models:
  gemini-flash: {{targets: [{{provider: gem, model: gemini-2.5-flash}}]}}
  claude-bedrock: {{targets: [{{provider: aws, model: "anthropic.claude-3-5-haiku-20241022-v1:0"}}]}}
  claude-sonnet: {{targets: [{{provider: claude, model: claude-sonnet-4-5}}]}}
  claude-parallel: {{targets: [{{provider: claude, model: parallel-tools}}]}}
  claude-broken: {{targets: [{{provider: claude, model: fault-drop-stream}}]}}
  claude-overloaded: {{targets: [{{provider: claude, model: fault-529}}]}}
teams: {{eng: {{}}}}
"""
    g = make_gateway(workdir, config)
    g.create_key("eng")
    g.start()
    yield g
    g.stop()


def _key(gw: Gateway) -> str:
    return next(iter(gw.keys.values()))


def test_openai_sdk_to_anthropic(gw: Gateway, fake_claude: FakeAnthropic) -> None:
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=_key(gw), max_retries=0)
    resp = client.chat.completions.create(
        model="claude-sonnet",
        messages=[{"role": "system", "content": "terse"}, {"role": "user", "content": "hi there"}],
    )
    assert resp.choices[0].message.content == "echo: hi there"
    assert resp.usage is not None and resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == 5
    sent = fake_claude.requests[-1]
    assert sent["body"]["system"] == "terse" and sent["headers"]["x-api-key"] == UPSTREAM_KEY
    assert sent["body"]["max_tokens"] == 64000, "no max_tokens asked: the model's own limit (price book)"
    stream = client.chat.completions.create(
        model="claude-parallel",
        messages=[{"role": "user", "content": "x"}],
        tools=[TOOL],
        stream=True,  # type: ignore[list-item]
    )
    names = {
        tc.index: tc.function.name
        for c in stream
        if c.choices
        for tc in c.choices[0].delta.tool_calls or []
        if tc.function and tc.function.name
    }
    assert names == {0: "get_weather", 1: "get_weather"}


def test_anthropic_sdk_to_anthropic(gw: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=_key(gw), max_retries=0)
    msg = client.messages.create(
        model="claude-sonnet", max_tokens=64, messages=[{"role": "user", "content": "hello"}]
    )
    assert msg.content[0].text == "echo: hello"  # type: ignore[union-attr]
    assert (msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens) == (5, 2)
    with client.messages.stream(
        model="claude-sonnet", max_tokens=64, messages=[{"role": "user", "content": "a b"}]
    ) as s:
        assert "".join(s.text_stream) == "echo: a b"


def test_provider_errors_and_cut_streams(gw: Gateway) -> None:
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=_key(gw), max_retries=0)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="claude-overloaded", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 503 and "provider 'claude'" in err.value.message
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(
            model="claude-broken", messages=[{"role": "user", "content": "a b c d"}], stream=True
        ):
            pass


@pytest.mark.parametrize("model", ["gemini-flash", "claude-bedrock"])
def test_openai_and_anthropic_sdks_to_gemini_and_bedrock(gw: Gateway, model: str) -> None:
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=_key(gw), max_retries=0)
    resp = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi there"}])
    assert resp.choices[0].message.content == "echo: hi there" and resp.usage is not None
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "a b c"}], stream=True
        )
        if c.choices
    )
    assert text == "echo: a b c"
    claude = anthropic.Anthropic(base_url=gw.base_url, api_key=_key(gw), max_retries=0)
    with claude.messages.stream(
        model=model, max_tokens=20, messages=[{"role": "user", "content": "x y"}]
    ) as s:
        assert "".join(s.text_stream) == "echo: x y"
