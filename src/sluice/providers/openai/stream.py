"""Incremental decoder of an OpenAI-style SSE stream into canonical chunks."""

from __future__ import annotations

from typing import Final

import msgspec

from sluice.errors import ProviderError
from sluice.providers.openai.errors import stream_error
from sluice.schema.chat import ChatChunk
from sluice.schema.sse import SSEDecoder, SSEEvent

_chunk_decoder: Final = msgspec.json.Decoder(ChatChunk)
_DONE: Final = b"[DONE]"


class OpenAIStreamDecoder:
    __slots__ = ("_done", "_finished_choices", "_provider", "_secret", "_sse")

    def __init__(self, provider: str, secret: str | None) -> None:
        self._sse = SSEDecoder(provider)
        self._provider = provider
        self._secret = secret
        self._done = False
        self._finished_choices = 0

    def feed(self, data: bytes) -> list[ChatChunk]:
        return self._decode(self._sse.feed(data))

    def finish(self) -> list[ChatChunk]:
        chunks = self._decode(self._sse.flush())
        if not self._done and not self._finished_choices:
            raise ProviderError(
                "bad_response", "the stream ended before it was complete", provider=self._provider
            )
        return chunks

    def _decode(self, events: list[SSEEvent]) -> list[ChatChunk]:
        out: list[ChatChunk] = []
        for event in events:
            data = event.data
            if not data:
                continue
            if data == _DONE:
                self._done = True
                continue
            try:
                if b'"error"' in data:  # only ever unescaped as a key or a bare value
                    payload = msgspec.json.decode(data)
                    if isinstance(payload, dict) and "error" in payload:
                        raise stream_error(payload, self._provider, self._secret)
                chunk = _chunk_decoder.decode(data)
            except msgspec.DecodeError:
                raise ProviderError(
                    "bad_response", "the stream carried malformed JSON", provider=self._provider
                ) from None
            for choice in chunk.choices:
                if choice.finish_reason is not None:
                    self._finished_choices += 1
            out.append(chunk)
        return out
