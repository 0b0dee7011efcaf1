"""Incremental decoder of Anthropic's named-event stream into canonical chunks.

message_start (id, model, input and cache usage) → a role chunk; text_delta → content;
tool_use block start → a tool-call delta with id and name, input_json_delta → argument fragments
(one OpenAI tool-call index per tool_use block); thinking_delta / signature_delta → reasoning;
message_delta → the finish chunk plus the usage chunk (output_tokens is cumulative); ping is
ignored; an ``error`` event raises; a stream that ends without message_stop was cut.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from sluice.errors import ProviderError
from sluice.providers.anthropic.chat import FINISH_REASONS, _Usage, usage_from_anthropic
from sluice.providers.anthropic.errors import stream_error
from sluice.schema.chat import ChatChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta
from sluice.schema.sse import SSEDecoder, SSEEvent

_decode: Final = msgspec.json.Decoder().decode


class AnthropicStreamDecoder:
    def __init__(self, provider: str, secret: str | None) -> None:
        self._sse = SSEDecoder(provider)
        self._provider = provider
        self._secret = secret
        self._id = ""
        self._model = ""
        self._usage = _Usage()
        self._tool_index: dict[int, int] = {}  # Anthropic block index → OpenAI tool-call index
        self._done = False

    def feed(self, data: bytes) -> list[ChatChunk]:
        return self._decode(self._sse.feed(data))

    def finish(self) -> list[ChatChunk]:
        chunks = self._decode(self._sse.flush())
        if not self._done:
            raise ProviderError(
                "bad_response", "the stream ended before message_stop", provider=self._provider
            )
        return chunks

    def _chunk(self, delta: Delta | None, finish: str | None = None) -> ChatChunk:
        choices = [ChunkChoice(delta=delta or Delta(), finish_reason=finish)] if delta or finish else []
        return ChatChunk(id=self._id, model=self._model, choices=choices)

    def _decode(self, events: list[SSEEvent]) -> list[ChatChunk]:
        out: list[ChatChunk] = []
        for event in events:
            if not event.data:
                continue
            try:
                payload = _decode(event.data)
            except msgspec.DecodeError:
                raise ProviderError(
                    "bad_response", "the stream carried malformed JSON", provider=self._provider
                ) from None
            if not isinstance(payload, dict):
                continue
            chunk = self._event(str(payload.get("type") or event.event or ""), payload)
            if chunk is not None:
                out.extend(chunk)
        return out

    def _event(self, kind: str, p: dict[str, Any]) -> list[ChatChunk] | None:
        if kind == "message_start":
            msg = p.get("message") or {}
            self._id, self._model = str(msg.get("id", "")), str(msg.get("model", ""))
            self._usage = msgspec.convert(msg.get("usage") or {}, _Usage)
            return [self._chunk(Delta(role="assistant", content=""))]
        if kind == "content_block_start":
            return self._block_start(int(p.get("index", 0)), p.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(int(p.get("index", 0)), p.get("delta") or {})
        if kind == "message_delta":
            return self._message_delta(p)
        if kind == "message_stop":
            self._done = True
            return None
        if kind == "error":
            raise stream_error(p, self._provider, self._secret)
        return None  # ping, content_block_stop, unknown future events

    def _block_start(self, index: int, block: dict[str, Any]) -> list[ChatChunk] | None:
        kind = block.get("type")
        if kind == "tool_use":
            n = self._tool_index.setdefault(index, len(self._tool_index))
            call = ToolCallDelta(
                index=n, id=str(block.get("id", "")), type="function",
                function=FunctionCallDelta(name=str(block.get("name", "")), arguments=""),
            )  # fmt: skip
            return [self._chunk(Delta(tool_calls=[call]))]
        if kind == "redacted_thinking":
            return [
                self._chunk(Delta(reasoning=[{"type": "redacted_thinking", "data": block.get("data", "")}]))
            ]
        if kind == "text" and block.get("text"):
            return [self._chunk(Delta(content=str(block["text"])))]
        return None

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[ChatChunk] | None:
        kind = delta.get("type")
        if kind == "text_delta":
            return [self._chunk(Delta(content=str(delta.get("text", ""))))]
        if kind == "input_json_delta":
            n = self._tool_index.setdefault(index, len(self._tool_index))
            fn = FunctionCallDelta(arguments=str(delta.get("partial_json", "")))
            return [self._chunk(Delta(tool_calls=[ToolCallDelta(index=n, function=fn)]))]
        if kind == "thinking_delta":
            return [
                self._chunk(Delta(reasoning=[{"type": "thinking", "thinking": delta.get("thinking", "")}]))
            ]
        if kind == "signature_delta":
            return [
                self._chunk(Delta(reasoning=[{"type": "thinking", "signature": delta.get("signature", "")}]))
            ]
        return None

    def _message_delta(self, p: dict[str, Any]) -> list[ChatChunk]:
        stop = (p.get("delta") or {}).get("stop_reason")
        usage = p.get("usage") or {}
        # output_tokens is cumulative; newer servers may repeat input and cache counts here.
        merged = msgspec.structs.asdict(self._usage) | {k: v for k, v in usage.items() if v is not None}
        self._usage = msgspec.convert(merged, _Usage)
        finish = FINISH_REASONS.get(stop or "end_turn", "stop")
        usage_chunk = ChatChunk(
            id=self._id, model=self._model, choices=[], usage=usage_from_anthropic(self._usage)
        )
        return [self._chunk(None, finish), usage_chunk]
