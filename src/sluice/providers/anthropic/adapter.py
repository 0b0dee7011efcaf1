"""The Anthropic adapter: Messages API URL, ``x-api-key`` and ``anthropic-version`` headers."""

from __future__ import annotations

from sluice.config.model import ProviderConfig
from sluice.errors import ProviderError
from sluice.providers.anthropic.chat import from_anthropic_response, to_anthropic_request
from sluice.providers.anthropic.errors import anthropic_error
from sluice.providers.anthropic.stream import AnthropicStreamDecoder
from sluice.providers.base import MaxOutput, Target
from sluice.schema.chat import ChatRequest, ChatResponse
from sluice.schema.upstream import UpstreamRequest, UpstreamResponse

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


class AnthropicAdapter:
    type = "anthropic"

    def __init__(self, name: str, config: ProviderConfig, max_output_tokens: MaxOutput | None = None) -> None:
        self.name = name
        #: The model's own output limit (from the price book): Anthropic requires max_tokens.
        self._max_output = max_output_tokens
        base = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        self._secret = config.api_key.reveal() if config.api_key is not None else None
        headers = {"content-type": "application/json", "accept": "application/json",
                   "anthropic-version": config.api_version or API_VERSION}  # fmt: skip
        headers.update({k.lower(): v for k, v in config.headers.items()})
        if self._secret:
            headers["x-api-key"] = self._secret
        self._headers = headers
        self._stream_headers = {**headers, "accept": "text/event-stream"}

    def build_request(self, req: ChatRequest, target: Target) -> UpstreamRequest:
        return UpstreamRequest(
            provider=self.name, method="POST", url=self._url,
            headers=self._stream_headers if req.stream else self._headers,
            body=to_anthropic_request(req, target.model, self._max_output(target.model) if self._max_output else None),
            stream=req.stream,
        )  # fmt: skip

    def parse_response(self, resp: UpstreamResponse, req: ChatRequest) -> ChatResponse:
        return from_anthropic_response(resp.body, self.name)

    def stream_decoder(self, req: ChatRequest) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(self.name, self._secret)

    def parse_error(self, resp: UpstreamResponse) -> ProviderError:
        return anthropic_error(resp, self.name, self._secret)
