"""The OpenAI dialect: parse ingress bodies into canonical requests; render responses and errors."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from sluice.errors import BadRequest, ProviderError, SluiceError
from sluice.schema.chat import ChatChunk, ChatRequest, ChatResponse
from sluice.schema.embeddings import EmbeddingRequest, check_input
from sluice.schema.sse import DONE

_CHAT_FIELDS: Final = frozenset(ChatRequest.__struct_fields__) - {"extra_body"}
_EMBED_FIELDS: Final = frozenset(EmbeddingRequest.__struct_fields__)
_json_decode = msgspec.json.Decoder().decode
encode = msgspec.json.Encoder().encode

#: OpenAI ``error.type`` for each gateway error kind.
_ERROR_TYPES: Final = {
    "bad_request": "invalid_request_error",
    "auth": "authentication_error",
    "permission": "permission_error",
    "not_found": "invalid_request_error",
    "too_large": "invalid_request_error",
    "request_timeout": "invalid_request_error",
    "unsupported_media_type": "invalid_request_error",
    "rate_limited": "rate_limit_error",
    "unavailable": "service_unavailable",
    "internal": "server_error",
    "guardrail_blocked": "invalid_request_error",
    "guardrail_unavailable": "service_unavailable",
}


def decode_json_object(body: bytes) -> dict[str, Any]:
    """Decode a request body that must be one JSON object."""
    if not body:
        raise BadRequest("request body is empty: expected a JSON object")
    try:
        data = _json_decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def _convert(data: dict[str, Any], typ: type[Any], what: str) -> Any:
    try:
        return msgspec.convert(data, typ)
    except RecursionError:
        raise BadRequest(f"invalid {what}: nested too deeply") from None
    except msgspec.ValidationError as exc:
        msg = str(exc)
        param = None
        if " - at `$." in msg:
            param = msg.rsplit(" - at `$.", 1)[1].rstrip("`")
        raise BadRequest(f"invalid {what}: {msg}", param=param) from None


def parse_chat_request(body: bytes) -> ChatRequest:
    data = decode_json_object(body)
    extra = {k: data.pop(k) for k in [k for k in data if k not in _CHAT_FIELDS]}
    if "model" not in data:
        raise BadRequest("missing required field 'model'", param="model")
    if "messages" not in data:
        raise BadRequest("missing required field 'messages'", param="messages")
    req: ChatRequest = _convert(data, ChatRequest, "chat request")
    _validate_chat(req)
    if extra:
        req.extra_body = extra
    return req


def _validate_chat(req: ChatRequest) -> None:
    if not req.model:
        raise BadRequest("'model' must be a non-empty string", param="model")
    if not req.messages:
        raise BadRequest("'messages' must contain at least one message", param="messages")
    if req.n is not None and req.n < 1:
        raise BadRequest("'n' must be at least 1", param="n")
    limit = req.output_limit()
    if limit is not None and limit < 1:
        raise BadRequest("'max_tokens' must be at least 1", param="max_tokens")
    if req.temperature is not None and not 0 <= req.temperature <= 2:
        raise BadRequest("'temperature' must be between 0 and 2", param="temperature")
    for i, m in enumerate(req.messages):
        if m.role == "tool" and not m.tool_call_id:
            raise BadRequest(f"messages[{i}]: a tool message needs 'tool_call_id'", param=f"messages[{i}]")


def parse_embedding_request(body: bytes) -> EmbeddingRequest:
    data = decode_json_object(body)
    for key in ("model", "input"):
        if key not in data:
            raise BadRequest(f"missing required field '{key}'", param=key)
    unknown = [k for k in data if k not in _EMBED_FIELDS]
    for k in unknown:
        data.pop(k)
    req: EmbeddingRequest = _convert(data, EmbeddingRequest, "embeddings request")
    if not req.model:
        raise BadRequest("'model' must be a non-empty string", param="model")
    problem = check_input(req.input)
    if problem is not None:
        raise BadRequest(problem, param="input")
    return req


def render_response(resp: ChatResponse) -> bytes:
    return encode(resp)


def render_chunk(chunk: ChatChunk) -> bytes:
    return encode(chunk)


class OpenAIStreamEncoder:
    """Canonical chunks → ``data:`` events, ``[DONE]`` at the end. The usage chunk is passed on
    only when the caller asked for it (``stream_options.include_usage``): the gateway asks every
    upstream for usage on its own account."""

    __slots__ = ("_include_usage",)

    def __init__(self, include_usage: bool) -> None:
        self._include_usage = include_usage

    def feed(self, chunk: ChatChunk) -> bytes:
        if chunk.usage is not None and not self._include_usage:
            if not chunk.choices:
                return b""  # the usage-only chunk the gateway asked for on its own account
            chunk.usage = None
        return b"data: " + encode(chunk) + b"\n\n"

    def finish(self) -> bytes:
        return DONE

    def error(self, exc: SluiceError) -> bytes:
        # No [DONE] after it, so the stream cannot look complete.
        return b"data: " + error_body(exc) + b"\n\n"


class _ErrorBody(msgspec.Struct, omit_defaults=True):
    message: str
    type: str
    param: str | None
    code: str | None
    source: str
    provider: str | None = None


class _ErrorEnvelope(msgspec.Struct):
    error: _ErrorBody


def error_body(exc: SluiceError) -> bytes:
    """OpenAI's error object; ``source`` says whether the gateway or the provider failed."""
    if isinstance(exc, ProviderError):
        etype = "invalid_request_error" if exc.status == 400 else _ERROR_TYPES.get(exc.kind, "provider_error")
        if exc.status >= 500:
            etype = "provider_error"
        body = _ErrorBody(exc.message, etype, None, exc.code, "provider", exc.provider)
    else:
        etype = _ERROR_TYPES.get(exc.kind, "server_error")
        body = _ErrorBody(exc.message, etype, exc.param, exc.code, exc.source)
    return encode(_ErrorEnvelope(body))
