"""Incremental decoder of Gemini's ``streamGenerateContent?alt=sse``: each ``data:`` is a whole
response fragment (CRLF framing, no ``[DONE]``); function calls arrive whole; usage comes on the
last fragments. The stream is complete once a candidate carries a ``finishReason``."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from sluice.errors import ProviderError
from sluice.providers.gemini.chat import finish_reason, parts_to_message, usage_from_gemini
from sluice.providers.gemini.errors import stream_error
from sluice.schema.chat import ChatChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta, Usage
from sluice.schema.sse import SSEDecoder

_decode: Final = msgspec.json.Decoder().decode


class GeminiStreamDecoder:
    def __init__(self, provider: str, secret: str | None) -> None:
        self._sse = SSEDecoder(provider)
        self._provider = provider
        self._secret = secret
        self._id = ""
        self._model = ""
        self._calls = 0
        self._started = False
        self._finished = False
        self._usage: Usage | None = None

    def feed(self, data: bytes) -> list[ChatChunk]:
        out: list[ChatChunk] = []
        for event in self._sse.feed(data):
            if event.data:
                out.extend(self._fragment(event.data))
        return out

    def finish(self) -> list[ChatChunk]:
        out: list[ChatChunk] = []
        for event in self._sse.flush():
            if event.data:
                out.extend(self._fragment(event.data))
        if not self._finished:
            raise ProviderError(
                "bad_response", "the stream ended before a finish reason", provider=self._provider
            )
        if self._usage is not None:
            out.append(ChatChunk(id=self._id, model=self._model, choices=[], usage=self._usage))
        return out

    def _fragment(self, data: bytes) -> list[ChatChunk]:
        try:
            frag: Any = _decode(data)
        except msgspec.DecodeError:
            raise ProviderError(
                "bad_response", "the stream carried malformed JSON", provider=self._provider
            ) from None
        if not isinstance(frag, dict):
            raise ProviderError("bad_response", "the stream carried a non-object", provider=self._provider)
        if "error" in frag:
            raise stream_error(frag, self._provider, self._secret)
        self._id = self._id or str(frag.get("responseId", ""))
        self._model = self._model or str(frag.get("modelVersion", ""))
        self._usage = usage_from_gemini(frag.get("usageMetadata")) or self._usage
        out: list[ChatChunk] = []
        if not self._started:
            self._started = True
            out.append(self._chunk(Delta(role="assistant", content="")))
        candidates = frag.get("candidates") or []
        if not candidates and (frag.get("promptFeedback") or {}).get("blockReason"):
            self._finished = True
            out.append(self._chunk(Delta(), "content_filter"))
            return out
        for cand in candidates[:1]:
            out.extend(self._candidate(cand))
        return out

    def _candidate(self, cand: dict[str, Any]) -> list[ChatChunk]:
        out: list[ChatChunk] = []
        text, calls, reasoning = parts_to_message((cand.get("content") or {}).get("parts") or [], self._calls)
        deltas = [
            ToolCallDelta(index=self._calls + i, id=c.id, type="function",
                          function=FunctionCallDelta(name=c.function.name, arguments=c.function.arguments))
            for i, c in enumerate(calls)
        ]  # fmt: skip
        self._calls += len(calls)
        if text or deltas or reasoning:
            out.append(
                self._chunk(
                    Delta(content=text or None, tool_calls=deltas or None, reasoning=reasoning or None)
                )
            )
        if cand.get("finishReason"):
            self._finished = True
            out.append(self._chunk(Delta(), finish_reason(cand["finishReason"], self._calls > 0)))
        return out

    def _chunk(self, delta: Delta, finish: str | None = None) -> ChatChunk:
        return ChatChunk(
            id=self._id, model=self._model, choices=[ChunkChoice(delta=delta, finish_reason=finish)]
        )
