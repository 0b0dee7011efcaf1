"""Canonical ⇄ OpenAI Chat Completions / Embeddings bodies. The canonical shape *is* OpenAI's, so
these are thin: set the upstream model, ask for usage on streams, drop canonical-only fields."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from sluice.errors import ProviderError
from sluice.schema.chat import ChatRequest, ChatResponse
from sluice.schema.embeddings import EmbeddingRequest, EmbeddingResponse

_encode = msgspec.json.Encoder().encode
_response_decoder: Final = msgspec.json.Decoder(ChatResponse)
_embedding_decoder: Final = msgspec.json.Decoder(EmbeddingResponse)


def to_openai_request(req: ChatRequest, model: str) -> bytes:
    body: dict[str, Any] = dict(req.extra_body) if req.extra_body else {}
    known = msgspec.to_builtins(req)
    known.pop("extra_body", None)
    for message in known["messages"]:
        message.pop("reasoning", None)  # canonical-only; OpenAI has no such field
    body.update(known)
    body["model"] = model
    if req.stream:
        # Always ask for usage so every stream can be metered; the server strips the extra
        # chunk again for callers that did not ask for it.
        options = dict(body.get("stream_options") or {})
        options["include_usage"] = True
        body["stream_options"] = options
    return _encode(body)


def from_openai_response(body: bytes, provider: str) -> ChatResponse:
    try:
        return _response_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ProviderError("bad_response", f"unreadable response body ({exc})", provider=provider) from None


def to_openai_embedding_request(req: EmbeddingRequest, model: str) -> bytes:
    body = msgspec.to_builtins(req)
    body["model"] = model
    return _encode(body)


def from_openai_embedding_response(body: bytes, provider: str) -> EmbeddingResponse:
    try:
        return _embedding_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ProviderError(
            "bad_response", f"unreadable embeddings body ({exc})", provider=provider
        ) from None
