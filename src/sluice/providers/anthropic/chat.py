"""Canonical ⇄ Anthropic Messages API bodies (egress: Sluice as the Anthropic API's client).

- system / developer messages (anywhere) → top-level ``system``;
- consecutive ``tool`` messages → one user turn of ``tool_result`` blocks;
- assistant ``tool_calls`` → ``tool_use`` blocks (arguments JSON string → ``input`` object);
  ``reasoning`` (thinking blocks with signatures) → sent back first, unchanged;
- images: data URLs → base64 sources, http(s) URLs → url sources;
- ``max_tokens`` is required by Anthropic: the request's, else the model's maximum from the price
  book, else ``DEFAULT_MAX_TOKENS``;
- usage normalised to OpenAI's convention (prompt_tokens = input + cache writes + cache reads).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from sluice.errors import ProviderError
from sluice.providers.base import append_turn, arguments_object
from sluice.schema.anthropic_ingress import thinking_block
from sluice.schema.chat import (
    ChatRequest,
    ChatResponse,
    Choice,
    CompletionTokensDetails,
    FunctionCall,
    ImagePart,
    JsonObject,
    Message,
    NamedToolChoice,
    PromptTokensDetails,
    ResponseMessage,
    TextPart,
    ToolCall,
    Usage,
)

DEFAULT_MAX_TOKENS: Final = 4096
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

#: Anthropic stop_reason → OpenAI finish_reason.
FINISH_REASONS: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def to_anthropic_request(req: ChatRequest, model: str, default_max_tokens: int | None) -> bytes:
    system: list[str] = []
    turns: list[JsonObject] = []
    for msg in req.messages:
        if msg.role in ("system", "developer"):
            system.append(msg.text())
        elif msg.role == "tool":
            block = {"type": "tool_result", "tool_use_id": msg.tool_call_id or "", "content": msg.text()}
            append_turn(turns, "user", [block])
        elif msg.role == "assistant":
            append_turn(turns, "assistant", _assistant_blocks(msg))
        else:
            append_turn(turns, "user", _user_blocks(msg))
    body: JsonObject = {
        "model": model,
        "max_tokens": req.output_limit() or default_max_tokens or DEFAULT_MAX_TOKENS,
        "messages": turns,
    }
    if req.response_format is not None and req.response_format.type != "text":
        # Anthropic has no JSON mode: ask for it in the system prompt (the schema, if given).
        schema = req.response_format.json_schema
        system.append(
            "Respond with a single valid JSON object and nothing else."
            + (f" Schema: {_encode(schema).decode()}" if schema else "")
        )
    if system:
        body["system"] = "\n\n".join(s for s in system if s)
    _sampling(req, body)
    _tools(req, body)
    if req.stream:
        body["stream"] = True
    return _encode(body)


def _user_blocks(msg: Message) -> list[JsonObject]:
    if msg.content is None:
        return [{"type": "text", "text": ""}]
    if isinstance(msg.content, str):
        return [{"type": "text", "text": msg.content}]
    blocks: list[JsonObject] = []
    for part in msg.content:
        if isinstance(part, TextPart):
            block: JsonObject = {"type": "text", "text": part.text}
            if part.cache_control is not None:
                block["cache_control"] = part.cache_control
            blocks.append(block)
        elif isinstance(part, ImagePart):
            blocks.append(_image(part.image_url.url))
    return blocks


def _image(url: str) -> JsonObject:
    if url.startswith("data:") and ";base64," in url:
        media, data = url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _assistant_blocks(msg: Message) -> list[JsonObject]:
    blocks: list[JsonObject] = [dict(r) for r in msg.reasoning or ()]  # signatures back unchanged
    text = msg.text()
    if text:
        blocks.append({"type": "text", "text": text})
    for call in msg.tool_calls or ():
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": arguments_object(call.function.arguments),
            }
        )
    return blocks or [{"type": "text", "text": ""}]


def _sampling(req: ChatRequest, body: JsonObject) -> None:
    if req.temperature is not None:
        body["temperature"] = min(req.temperature, 1.0)  # Anthropic's range is 0-1
    if req.top_p is not None:
        body["top_p"] = req.top_p
    stops = req.stop_list()
    if stops:
        body["stop_sequences"] = stops
    if req.extra_body and isinstance(req.extra_body.get("top_k"), int):
        body["top_k"] = req.extra_body["top_k"]
    if req.user:
        body["metadata"] = {"user_id": req.user}


def _tools(req: ChatRequest, body: JsonObject) -> None:
    if not req.tools or req.tool_choice == "none":
        if req.tools and any(m.tool_calls for m in req.messages):
            body["tools"] = [_tool(t) for t in req.tools]
            body["tool_choice"] = {"type": "none"}
        return
    body["tools"] = [_tool(t) for t in req.tools]
    choice: JsonObject | None = None
    if req.tool_choice == "required":
        choice = {"type": "any"}
    elif isinstance(req.tool_choice, NamedToolChoice):
        choice = {"type": "tool", "name": req.tool_choice.function.name}
    elif req.tool_choice == "auto":
        choice = {"type": "auto"}
    if req.parallel_tool_calls is False:
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if choice is not None:
        body["tool_choice"] = choice


def _tool(tool: Any) -> JsonObject:
    fn = tool.function
    out: JsonObject = {"name": fn.name, "input_schema": fn.parameters or {"type": "object", "properties": {}}}
    if fn.description:
        out["description"] = fn.description
    return out


class _Block(msgspec.Struct):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


class _Usage(msgspec.Struct):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    #: ``{ephemeral_5m_input_tokens, ephemeral_1h_input_tokens}``: the writes split by lifetime.
    cache_creation: dict[str, int | None] | None = None


class _Message(msgspec.Struct):
    content: list[_Block]
    id: str = ""
    model: str = ""
    stop_reason: str | None = None
    usage: _Usage = msgspec.field(default_factory=_Usage)


_message_decoder: Final = msgspec.json.Decoder(_Message)


def usage_from_anthropic(u: _Usage) -> Usage:
    written = u.cache_creation_input_tokens or 0
    read = u.cache_read_input_tokens or 0
    written_1h = min(written, (u.cache_creation or {}).get("ephemeral_1h_input_tokens") or 0)
    prompt = u.input_tokens + written + read
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=u.output_tokens,
        total_tokens=prompt + u.output_tokens,
        prompt_tokens_details=PromptTokensDetails(
            cached_tokens=read, cache_write_tokens=written, cache_write_1h_tokens=written_1h
        ),
        completion_tokens_details=CompletionTokensDetails(),
    )


def from_anthropic_response(body: bytes, provider: str) -> ChatResponse:
    try:
        msg = _message_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProviderError("bad_response", f"unreadable response body ({exc})", provider=provider) from None
    text: list[str] = []
    calls: list[ToolCall] = []
    reasoning: list[JsonObject] = []
    for block in msg.content:
        if block.type == "text":
            text.append(block.text or "")
        elif block.type == "tool_use":
            args = _encode(block.input if block.input is not None else {}).decode()
            calls.append(
                ToolCall(id=block.id or "", function=FunctionCall(name=block.name or "", arguments=args))
            )
        elif block.type in ("thinking", "redacted_thinking"):
            reasoning.append(thinking_block(block.type, block.thinking, block.signature, block.data))
    message = ResponseMessage(
        content="".join(text) if text else None, tool_calls=calls or None, reasoning=reasoning or None
    )
    finish = FINISH_REASONS.get(msg.stop_reason or "end_turn", "stop")
    return ChatResponse(
        id=msg.id, model=msg.model, choices=[Choice(message=message, finish_reason=finish)],
        usage=usage_from_anthropic(msg.usage),
    )  # fmt: skip
