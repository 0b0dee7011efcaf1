"""The Gemini adapter: ``{base}/v1beta/models/{model}:generateContent`` with ``x-goog-api-key``."""

from __future__ import annotations

from urllib.parse import quote

from sluice.config.model import ProviderConfig
from sluice.errors import ProviderError
from sluice.providers.base import Target
from sluice.providers.gemini.chat import from_gemini_response, to_gemini_request
from sluice.providers.gemini.errors import gemini_error
from sluice.providers.gemini.stream import GeminiStreamDecoder
from sluice.schema.chat import ChatRequest, ChatResponse
from sluice.schema.upstream import UpstreamRequest, UpstreamResponse

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"


class GeminiAdapter:
    type = "gemini"

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        base = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._models_url = f"{base}/{config.api_version or 'v1beta'}/models/"
        self._secret = config.api_key.reveal() if config.api_key is not None else None
        headers = {"content-type": "application/json", "accept": "application/json"}
        headers.update({k.lower(): v for k, v in config.headers.items()})
        if self._secret:
            headers["x-goog-api-key"] = self._secret
        self._headers = headers

    def build_request(self, req: ChatRequest, target: Target) -> UpstreamRequest:
        model = quote(target.model.removeprefix("models/"), safe="")
        op = ":streamGenerateContent?alt=sse" if req.stream else ":generateContent"
        return UpstreamRequest(
            provider=self.name, method="POST", url=self._models_url + model + op, headers=self._headers,
            body=to_gemini_request(req), stream=req.stream,
        )  # fmt: skip

    def parse_response(self, resp: UpstreamResponse, req: ChatRequest) -> ChatResponse:
        return from_gemini_response(resp.body, self.name)

    def stream_decoder(self, req: ChatRequest) -> GeminiStreamDecoder:
        return GeminiStreamDecoder(self.name, self._secret)

    def parse_error(self, resp: UpstreamResponse) -> ProviderError:
        return gemini_error(resp, self.name, self._secret)
