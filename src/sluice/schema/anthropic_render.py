"""The Anthropic dialect, egress to the caller: canonical answers → Messages API responses,
canonical stream chunks → Anthropic's named SSE events, errors → Anthropic's error object."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from sluice.errors import GuardrailBlocked, GuardrailUnavailable, ProviderError, SluiceError
from sluice.schema.chat import ChatChunk, ChatResponse, JsonObject, Usage
from sluice.schema.sse import encode_event

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

#: OpenAI finish_reason → Anthropic stop_reason.
STOP_REASONS: Final = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    431: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
}


def anthropic_usage(usage: Usage | None) -> JsonObject:
    """Anthropic's ``input_tokens`` excludes cache reads and writes; OpenAI's prompt_tokens includes them."""
    u = usage or Usage()
    return {
        "input_tokens": max(0, u.prompt_tokens - u.cached_tokens - u.cache_write_tokens),
        "output_tokens": u.completion_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_tokens,
    }


def _tool_input(arguments: str) -> Any:
    try:
        return _decode(arguments) if arguments else {}
    except msgspec.DecodeError:
        return {"_raw_arguments": arguments}  # never drop what the model produced


def render_message(resp: ChatResponse, model: str) -> bytes:
    choice = resp.choices[0] if resp.choices else None
    content: list[JsonObject] = []
    if choice is not None:
        msg = choice.message
        if msg.reasoning:
            content.extend(msg.reasoning)
        if msg.content:
            content.append({"type": "text", "text": msg.content})
        for call in msg.tool_calls or []:
            content.append(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.function.name,
                    "input": _tool_input(call.function.arguments),
                }
            )
    body = {
        "id": _message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": resp.model or model,
        "content": content,
        "stop_reason": STOP_REASONS.get(choice.finish_reason or "stop", "end_turn") if choice else "end_turn",
        "stop_sequence": None,
        "usage": anthropic_usage(resp.usage),
    }
    return _encode(body)


def _message_id(upstream_id: str) -> str:
    return (
        upstream_id
        if upstream_id.startswith("msg_")
        else "msg_" + (upstream_id or "sluice").replace("chatcmpl-", "")
    )


class AnthropicStreamEncoder:
    """Canonical chunks → ``message_start``, content blocks, ``message_delta``, ``message_stop``.

    Text, tool calls (argument fragments as ``input_json_delta``) and thinking each get their own
    content block; a block is closed when another kind starts. ``message_delta`` (stop reason and
    usage) is held until the end, because OpenAI-style upstreams send usage after the last choice.
    """

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._index = -1
        self._open: str | None = None  # "text", "thinking" or "tool:<n>"
        self._stop: str | None = None
        self._usage: Usage | None = None

    def feed(self, chunk: ChatChunk) -> bytes:
        out: list[bytes] = []
        if not self._started:
            out.append(self._message_start(chunk))
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices[:1]:  # the Messages API has one answer
            delta = choice.delta
            for item in delta.reasoning or ():
                out.extend(self._reasoning(item))
            if delta.content:
                out.extend(self._block("text", {"type": "text", "text": ""}))
                out.append(self._delta({"type": "text_delta", "text": delta.content}))
            for call in delta.tool_calls or ():
                key = f"tool:{call.index}"
                if self._open != key:
                    fn = call.function
                    start: JsonObject = {
                        "type": "tool_use",
                        "id": call.id or f"toolu_{call.index}",
                        "name": fn.name if fn else "",
                        "input": {},
                    }
                    out.extend(self._block(key, start))
                if call.function is not None and call.function.arguments:
                    out.append(
                        self._delta({"type": "input_json_delta", "partial_json": call.function.arguments})
                    )
            if choice.finish_reason is not None:
                self._stop = STOP_REASONS.get(choice.finish_reason, "end_turn")
        return b"".join(out)

    def finish(self) -> bytes:
        out = [] if self._started else [self._message_start(None)]
        out.extend(self._close())
        delta = {"type": "message_delta", "delta": {"stop_reason": self._stop or "end_turn", "stop_sequence": None},
                 "usage": anthropic_usage(self._usage)}  # fmt: skip
        out.append(encode_event("message_delta", _encode(delta)))
        out.append(encode_event("message_stop", b'{"type":"message_stop"}'))
        return b"".join(out)

    def error(self, exc: SluiceError) -> bytes:
        """An error event and no ``message_stop``: the stream cannot look complete."""
        return stream_error_event(exc)

    def _message_start(self, chunk: ChatChunk | None) -> bytes:
        self._started = True
        message: JsonObject = {
            "id": _message_id(chunk.id if chunk else ""), "type": "message", "role": "assistant",
            "model": (chunk.model if chunk else "") or self._model, "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0},
        }  # fmt: skip
        return encode_event("message_start", _encode({"type": "message_start", "message": message}))

    def _reasoning(self, item: JsonObject) -> list[bytes]:
        out = self._block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        if item.get("thinking"):
            out.append(self._delta({"type": "thinking_delta", "thinking": item["thinking"]}))
        if item.get("signature"):
            out.append(self._delta({"type": "signature_delta", "signature": item["signature"]}))
        return out

    def _block(self, key: str, start: JsonObject) -> list[bytes]:
        if self._open == key:
            return []
        out = self._close()
        self._index += 1
        self._open = key
        body = {"type": "content_block_start", "index": self._index, "content_block": start}
        out.append(encode_event("content_block_start", _encode(body)))
        return out

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [
            encode_event("content_block_stop", _encode({"type": "content_block_stop", "index": self._index}))
        ]

    def _delta(self, delta: JsonObject) -> bytes:
        body = {"type": "content_block_delta", "index": self._index, "delta": delta}
        return encode_event("content_block_delta", _encode(body))


def _error_type(exc: SluiceError) -> str:
    if isinstance(exc, ProviderError) and exc.kind == "overloaded":
        return "overloaded_error"
    if exc.status in _ERROR_TYPES:
        return _ERROR_TYPES[exc.status]
    return "api_error"


def error_body(exc: SluiceError) -> bytes:
    """Anthropic's error object; ``source`` / ``provider`` tell who failed, as in the OpenAI dialect."""
    err: JsonObject = {"type": _error_type(exc), "message": exc.message, "source": exc.source}
    if isinstance(exc, ProviderError):
        err["provider"] = exc.provider
    elif isinstance(exc, GuardrailBlocked | GuardrailUnavailable):
        err["code"], err["guardrail"] = exc.code, exc.guardrail
    return _encode({"type": "error", "error": err})


def stream_error_event(exc: SluiceError) -> bytes:
    return encode_event("error", error_body(exc))
