"""Azure OpenAI: the OpenAI wire format at Azure's URLs, with the ``api-key`` header.

- classic (``api_version`` set, e.g. ``2024-10-21``): ``{base}/openai/deployments/{deployment}/
  chat/completions?api-version=…`` — the target's ``model`` is the deployment name;
- v1 (``api_version`` unset or ``v1``): ``{base}/openai/v1/chat/completions``.
Streams may open with an empty-``choices`` chunk carrying only ``prompt_filter_results``: it is
dropped. Content-filter refusals (``error.code: content_filter``) become kind ``content_filter``.
"""

from __future__ import annotations

from urllib.parse import quote

from sluice.config.model import ProviderConfig
from sluice.errors import ConfigError, ProviderError
from sluice.providers.base import Target
from sluice.providers.openai.chat import (
    from_openai_embedding_response,
    from_openai_response,
    to_openai_embedding_request,
    to_openai_request,
)
from sluice.providers.openai.errors import openai_error
from sluice.providers.openai.stream import OpenAIStreamDecoder
from sluice.schema.chat import ChatChunk, ChatRequest, ChatResponse
from sluice.schema.embeddings import EmbeddingRequest, EmbeddingResponse
from sluice.schema.upstream import UpstreamRequest, UpstreamResponse


class AzureStreamDecoder(OpenAIStreamDecoder):
    def feed(self, data: bytes) -> list[ChatChunk]:
        return [c for c in super().feed(data) if c.choices or c.usage is not None]


class AzureOpenAIAdapter:
    type = "azure"

    def __init__(self, name: str, config: ProviderConfig) -> None:
        if not config.base_url:
            raise ConfigError(
                f"azure providers need base_url (https://<resource>.openai.azure.com) - at `$.providers.{name}.base_url`"
            )
        self.name = name
        self._base = config.base_url.rstrip("/")
        self._version = None if config.api_version in (None, "", "v1") else config.api_version
        self._secret = config.api_key.reveal() if config.api_key is not None else None
        headers = {"content-type": "application/json", "accept": "application/json"}
        headers.update({k.lower(): v for k, v in config.headers.items()})
        if self._secret:
            headers["api-key"] = self._secret
        self._headers = headers
        self._stream_headers = {**headers, "accept": "text/event-stream"}

    def _url(self, deployment: str, operation: str) -> str:
        if self._version is None:
            return f"{self._base}/openai/v1/{operation}"
        return f"{self._base}/openai/deployments/{quote(deployment, safe='')}/{operation}?api-version={self._version}"

    def build_request(self, req: ChatRequest, target: Target) -> UpstreamRequest:
        return UpstreamRequest(
            provider=self.name, method="POST", url=self._url(target.model, "chat/completions"),
            headers=self._stream_headers if req.stream else self._headers,
            body=to_openai_request(req, target.model), stream=req.stream,
        )  # fmt: skip

    def parse_response(self, resp: UpstreamResponse, req: ChatRequest) -> ChatResponse:
        return from_openai_response(resp.body, self.name)

    def stream_decoder(self, req: ChatRequest) -> AzureStreamDecoder:
        return AzureStreamDecoder(self.name, self._secret)

    def parse_error(self, resp: UpstreamResponse) -> ProviderError:
        return openai_error(resp, self.name, self._secret)

    def build_embedding_request(self, req: EmbeddingRequest, target: Target) -> UpstreamRequest:
        return UpstreamRequest(
            provider=self.name, method="POST", url=self._url(target.model, "embeddings"),
            headers=self._headers, body=to_openai_embedding_request(req, target.model),
        )  # fmt: skip

    def parse_embedding_response(self, resp: UpstreamResponse, req: EmbeddingRequest) -> EmbeddingResponse:
        return from_openai_embedding_response(resp.body, self.name)
