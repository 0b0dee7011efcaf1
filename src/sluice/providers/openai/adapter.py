"""The OpenAI adapter: URL, headers and credential for one configured OpenAI-compatible provider."""

from __future__ import annotations

from sluice.config.model import ProviderConfig
from sluice.errors import ProviderError
from sluice.providers.base import Target
from sluice.providers.openai.chat import (
    from_openai_embedding_response,
    from_openai_response,
    to_openai_embedding_request,
    to_openai_request,
)
from sluice.providers.openai.errors import openai_error
from sluice.providers.openai.stream import OpenAIStreamDecoder
from sluice.schema.chat import ChatRequest, ChatResponse
from sluice.schema.embeddings import EmbeddingRequest, EmbeddingResponse
from sluice.schema.upstream import UpstreamRequest, UpstreamResponse

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIAdapter:
    type = "openai"

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self._base = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._secret = config.api_key.reveal() if config.api_key is not None else None
        headers = {"content-type": "application/json", "accept": "application/json"}
        headers.update({k.lower(): v for k, v in config.headers.items()})
        if self._secret:
            headers["authorization"] = f"Bearer {self._secret}"
        self._headers = headers
        self._stream_headers = {**headers, "accept": "text/event-stream"}

    def build_request(self, req: ChatRequest, target: Target) -> UpstreamRequest:
        return UpstreamRequest(
            provider=self.name,
            method="POST",
            url=self._base + "/chat/completions",
            headers=self._stream_headers if req.stream else self._headers,
            body=to_openai_request(req, target.model),
            stream=req.stream,
        )

    def parse_response(self, resp: UpstreamResponse, req: ChatRequest) -> ChatResponse:
        return from_openai_response(resp.body, self.name)

    def stream_decoder(self, req: ChatRequest) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(self.name, self._secret)

    def parse_error(self, resp: UpstreamResponse) -> ProviderError:
        return openai_error(resp, self.name, self._secret)

    def build_embedding_request(self, req: EmbeddingRequest, target: Target) -> UpstreamRequest:
        return UpstreamRequest(
            provider=self.name,
            method="POST",
            url=self._base + "/embeddings",
            headers=self._headers,
            body=to_openai_embedding_request(req, target.model),
        )

    def parse_embedding_response(self, resp: UpstreamResponse, req: EmbeddingRequest) -> EmbeddingResponse:
        return from_openai_embedding_response(resp.body, self.name)
