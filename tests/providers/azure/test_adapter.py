from __future__ import annotations

import msgspec
import pytest

from sluice.config.model import ProviderConfig
from sluice.config.secret import Secret
from sluice.errors import ConfigError
from sluice.providers.azure import AzureOpenAIAdapter
from sluice.providers.base import Target
from sluice.schema.openai import parse_chat_request
from sluice.schema.upstream import UpstreamResponse

REQ = parse_chat_request(b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}')


def _adapter(version: str | None) -> AzureOpenAIAdapter:
    cfg = ProviderConfig(
        type="azure",
        base_url="https://acme.openai.azure.com/",
        api_version=version,
        api_key=Secret("az-key", "env:A"),
    )
    return AzureOpenAIAdapter("az", cfg)


@pytest.mark.parametrize(
    ("version", "url"),
    [
        (
            "2024-10-21",
            "https://acme.openai.azure.com/openai/deployments/prod%2Fgpt/chat/completions?api-version=2024-10-21",
        ),
        (None, "https://acme.openai.azure.com/openai/v1/chat/completions"),
        ("v1", "https://acme.openai.azure.com/openai/v1/chat/completions"),
    ],
)
def test_urls_and_api_key(version: str | None, url: str) -> None:
    up = _adapter(version).build_request(REQ, Target("az", "prod/gpt"))
    assert up.url == url
    assert up.headers["api-key"] == "az-key" and "authorization" not in up.headers


def test_base_url_is_required() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        AzureOpenAIAdapter("az", ProviderConfig(type="azure"))


def test_content_filter_error_and_filter_chunk() -> None:
    body = {
        "error": {
            "code": "content_filter",
            "message": "The response was filtered",
            "innererror": {"code": "ResponsibleAIPolicyViolation"},
        }
    }
    err = _adapter("2024-10-21").parse_error(UpstreamResponse(400, {}, msgspec.json.encode(body)))
    assert err.kind == "content_filter" and not err.retryable
    decoder = _adapter(None).stream_decoder(REQ)
    head = b'data: {"id":"","object":"","created":0,"model":"","choices":[],"prompt_filter_results":[]}\n\n'
    first = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\n'
    assert [c.choices[0].delta.content for c in decoder.feed(head + first)] == ["x"]
