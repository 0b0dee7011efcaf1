"""The Bedrock adapter: Converse / ConverseStream URLs, SigV4 (or a Bedrock API key as bearer).

Credentials, in order: ``api_key`` (a Bedrock API key, sent as ``Authorization: Bearer``);
``aws_access_key_id`` + ``aws_secret_access_key`` (+ ``aws_session_token``) from the policy;
else the standard AWS environment variables, read once at start-up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from urllib.parse import quote

from sluice.config.model import ProviderConfig
from sluice.errors import ConfigError, ProviderError
from sluice.providers.base import Target
from sluice.providers.bedrock.chat import from_converse_response, to_converse_request
from sluice.providers.bedrock.errors import bedrock_error
from sluice.providers.bedrock.sigv4 import AwsCredentials, sign
from sluice.providers.bedrock.stream import ConverseStreamDecoder
from sluice.schema.chat import ChatRequest, ChatResponse
from sluice.schema.upstream import UpstreamRequest, UpstreamResponse


def _credentials(name: str, config: ProviderConfig) -> tuple[str | None, AwsCredentials | None]:
    if config.api_key is not None:
        return config.api_key.reveal(), None
    if config.aws_access_key_id is not None and config.aws_secret_access_key is not None:
        token = config.aws_session_token.reveal() if config.aws_session_token else None
        return None, AwsCredentials(
            config.aws_access_key_id.reveal(), config.aws_secret_access_key.reveal(), token
        )
    env = os.environ
    if env.get("AWS_BEARER_TOKEN_BEDROCK"):
        return env["AWS_BEARER_TOKEN_BEDROCK"], None
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return None, AwsCredentials(
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN")
        )
    raise ConfigError(
        f"bedrock needs credentials: api_key (a Bedrock API key), aws_access_key_id + aws_secret_access_key, "
        f"or AWS_* environment variables - at `$.providers.{name}`"
    )


class BedrockAdapter:
    type = "bedrock"

    def __init__(self, name: str, config: ProviderConfig, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._region = config.region or "us-east-1"
        self._base = (config.base_url or f"https://bedrock-runtime.{self._region}.amazonaws.com").rstrip("/")
        self._bearer, self._creds = _credentials(name, config)
        self._secret = self._bearer or (self._creds.secret_access_key if self._creds else None)
        self._clock = clock
        self._headers = {
            "content-type": "application/json",
            **{k.lower(): v for k, v in config.headers.items()},
        }

    def build_request(self, req: ChatRequest, target: Target) -> UpstreamRequest:
        op = "converse-stream" if req.stream else "converse"
        url = f"{self._base}/model/{quote(target.model, safe='')}/{op}"
        body = to_converse_request(req, self.name)
        headers = dict(self._headers)
        headers["accept"] = "application/vnd.amazon.eventstream" if req.stream else "application/json"
        if self._bearer is not None:
            headers["authorization"] = f"Bearer {self._bearer}"
        elif self._creds is not None:
            headers = sign("POST", url, headers, body, self._creds, self._region, self._clock())
        return UpstreamRequest(
            provider=self.name, method="POST", url=url, headers=headers, body=body, stream=req.stream
        )

    def parse_response(self, resp: UpstreamResponse, req: ChatRequest) -> ChatResponse:
        out = from_converse_response(resp.body, self.name)
        out.model = req.model
        return out

    def stream_decoder(self, req: ChatRequest) -> ConverseStreamDecoder:
        return ConverseStreamDecoder(self.name, self._secret, req.model)

    def parse_error(self, resp: UpstreamResponse) -> ProviderError:
        return bedrock_error(resp, self.name, self._secret)
