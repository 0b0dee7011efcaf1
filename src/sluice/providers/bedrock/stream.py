"""ConverseStream: binary event-stream frames → canonical chunks, incrementally."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from sluice.errors import ProviderError
from sluice.providers.bedrock.chat import STOP_REASONS, usage_from_bedrock
from sluice.providers.bedrock.errors import stream_exception
from sluice.providers.bedrock.eventstream import EventStreamDecoder, EventStreamError
from sluice.schema.chat import ChatChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta

_decode: Final = msgspec.json.Decoder().decode


class ConverseStreamDecoder:
    def __init__(self, provider: str, secret: str | None, model: str) -> None:
        self._frames = EventStreamDecoder()
        self._provider = provider
        self._secret = secret
        self._model = model
        self._tools: dict[int, int] = {}  # content block index → tool-call index
        self._stopped = False

    def feed(self, data: bytes) -> list[ChatChunk]:
        try:
            frames = self._frames.feed(data)
        except EventStreamError as exc:
            raise ProviderError(
                "bad_response", f"corrupt event stream ({exc})", provider=self._provider
            ) from None
        out: list[ChatChunk] = []
        for frame in frames:
            kind = frame.headers.get(":message-type", "event")
            if kind != "event":
                name = frame.headers.get(":exception-type") or frame.headers.get(":error-code") or "error"
                raise stream_exception(name, frame.payload, self._provider, self._secret)
            try:
                payload: Any = _decode(frame.payload) if frame.payload else {}
            except msgspec.DecodeError:
                raise ProviderError(
                    "bad_response", "the stream carried malformed JSON", provider=self._provider
                ) from None
            chunk = self._event(frame.headers.get(":event-type", ""), payload)
            if chunk is not None:
                out.append(chunk)
        return out

    def finish(self) -> list[ChatChunk]:
        if not self._stopped or self._frames.pending:
            raise ProviderError(
                "bad_response", "the stream ended before messageStop", provider=self._provider
            )
        return []

    def _chunk(self, delta: Delta, finish: str | None = None) -> ChatChunk:
        return ChatChunk(model=self._model, choices=[ChunkChoice(delta=delta, finish_reason=finish)])

    def _event(self, kind: str, p: dict[str, Any]) -> ChatChunk | None:
        if kind == "messageStart":
            return self._chunk(Delta(role="assistant", content=""))
        if kind == "contentBlockStart":
            use = (p.get("start") or {}).get("toolUse")
            if use:
                n = self._tools.setdefault(int(p.get("contentBlockIndex", 0)), len(self._tools))
                fn = FunctionCallDelta(name=str(use.get("name", "")), arguments="")
                return self._chunk(
                    Delta(
                        tool_calls=[
                            ToolCallDelta(
                                index=n, id=str(use.get("toolUseId", "")), type="function", function=fn
                            )
                        ]
                    )
                )
            return None
        if kind == "contentBlockDelta":
            return self._delta(int(p.get("contentBlockIndex", 0)), p.get("delta") or {})
        if kind == "messageStop":
            self._stopped = True
            return self._chunk(Delta(), STOP_REASONS.get(str(p.get("stopReason", "end_turn")), "stop"))
        if kind == "metadata":
            usage = usage_from_bedrock(p.get("usage"))
            return ChatChunk(model=self._model, choices=[], usage=usage) if usage else None
        return None

    def _delta(self, index: int, delta: dict[str, Any]) -> ChatChunk | None:
        if "text" in delta:
            return self._chunk(Delta(content=str(delta["text"])))
        if "toolUse" in delta:
            n = self._tools.setdefault(index, len(self._tools))
            fn = FunctionCallDelta(arguments=str((delta["toolUse"] or {}).get("input", "")))
            return self._chunk(Delta(tool_calls=[ToolCallDelta(index=n, function=fn)]))
        if "reasoningContent" in delta:
            rc = delta["reasoningContent"] or {}
            item = {"type": "reasoning", **{k: rc[k] for k in ("text", "signature") if k in rc}}
            return self._chunk(Delta(reasoning=[item]))
        return None
