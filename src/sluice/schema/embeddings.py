"""Canonical embeddings request and response (OpenAI's shape)."""

from __future__ import annotations

import base64
import struct
from typing import Any, Literal

import msgspec


class EmbeddingRequest(msgspec.Struct, omit_defaults=True, kw_only=True):
    model: str
    #: a string, a list of strings, a list of token ids, or a list of token-id lists
    #: (msgspec cannot express that union; :func:`check_input` validates the list forms).
    input: str | list[Any]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = None
    user: str | None = None


class Embedding(msgspec.Struct, kw_only=True):
    index: int
    #: floats, or a base64 string of little-endian float32s
    embedding: list[float] | str
    object: Literal["embedding"] = "embedding"


class EmbeddingUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingResponse(msgspec.Struct, kw_only=True):
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage = msgspec.field(default_factory=EmbeddingUsage)
    object: Literal["list"] = "list"


def check_input(value: str | list[Any]) -> str | None:
    """Why ``input`` is invalid, or None when it is one of the four accepted forms."""
    if isinstance(value, str):
        return None
    if not value:
        return "'input' must not be empty"
    if all(isinstance(v, str) for v in value):
        return None
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return None
    if all(
        isinstance(v, list) and v and all(isinstance(t, int) and not isinstance(t, bool) for t in v)
        for v in value
    ):
        return None
    return "'input' must be a string, a list of strings, a list of token ids, or a list of token-id lists"


def floats_to_base64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def base64_to_floats(data: str) -> list[float]:
    raw = base64.b64decode(data)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def with_encoding(resp: EmbeddingResponse, encoding: Literal["float", "base64"]) -> EmbeddingResponse:
    """Return ``resp`` with every vector in the encoding the caller asked for."""
    out: list[Embedding] = []
    changed = False
    for item in resp.data:
        vec = item.embedding
        if encoding == "base64" and isinstance(vec, list):
            out.append(Embedding(index=item.index, embedding=floats_to_base64(vec)))
            changed = True
        elif encoding == "float" and isinstance(vec, str):
            out.append(Embedding(index=item.index, embedding=base64_to_floats(vec)))
            changed = True
        else:
            out.append(item)
    if not changed:
        return resp
    return EmbeddingResponse(data=out, model=resp.model, usage=resp.usage)
