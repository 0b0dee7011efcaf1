"""The entry codec: what one cached answer is, as bytes a store keeps (msgpack).

The answer itself is kept as its canonical JSON and decoded afresh on every hit, so no caller (or
middleware) can change what the next caller gets.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from sluice.schema.chat import ChatResponse
from sluice.schema.embeddings import EmbeddingResponse

Kind = Literal["chat", "embeddings"]
CACHEABLE_FINISH = frozenset({"stop", "length", "tool_calls"})


class CacheEntry(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    kind: Kind
    #: The canonical answer, JSON.
    body: bytes
    stored_at: float
    expires_at: float
    served_model: str | None = None
    provider: str | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CacheEntry)
_json = msgspec.json.Encoder()
_chat = msgspec.json.Decoder(ChatResponse)
_emb = msgspec.json.Decoder(EmbeddingResponse)


def encode_entry(entry: CacheEntry) -> bytes:
    return _encoder.encode(entry)


def decode_entry(data: bytes) -> CacheEntry | None:
    """None for bytes that are not an entry (another version's format): a miss, not an error."""
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def encode_answer(answer: ChatResponse | EmbeddingResponse) -> bytes:
    return _json.encode(answer)


def chat_answer(entry: CacheEntry) -> ChatResponse:
    return _chat.decode(entry.body)


def embedding_answer(entry: CacheEntry) -> EmbeddingResponse:
    return _emb.decode(entry.body)


def storable(resp: ChatResponse) -> bool:
    """Only whole answers: every choice ended with a terminal finish reason (never a content
    filter or an unfinished answer), and nothing the cache cannot replay exactly (logprobs)."""
    if not resp.choices:
        return False
    for choice in resp.choices:
        if choice.finish_reason not in CACHEABLE_FINISH or choice.logprobs is not None:
            return False
    return True
