"""The Anthropic dialect, ingress side: a Messages API request body → the canonical ChatRequest.

So that Claude-native clients (the anthropic SDK, agent frameworks) can use any backend. The
mapping, in the direction this module goes:

- top-level ``system`` (string or text blocks) → a leading system message;
- a user turn's ``tool_result`` blocks → one ``tool`` message each (in order), then the rest of the
  turn (text, images) as a user message;
- an assistant turn's ``tool_use`` blocks → ``tool_calls`` (``input`` object → JSON string);
  ``thinking`` / ``redacted_thinking`` blocks → ``reasoning`` (carried unchanged, signatures included);
- ``tool_choice`` any → required, tool → a named tool; ``disable_parallel_tool_use`` → parallel off;
- ``stop_sequences`` → stop; ``metadata.user_id`` → user; ``thinking.budget_tokens`` → reasoning_effort.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from sluice.errors import BadRequest
from sluice.schema.chat import (
    ChatRequest,
    ContentPart,
    FunctionCall,
    FunctionDef,
    ImagePart,
    ImageUrl,
    JsonObject,
    Message,
    NamedToolChoice,
    StreamOptions,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceFunction,
)
from sluice.schema.openai import decode_json_object

_encode = msgspec.json.Encoder().encode


class _Block(msgspec.Struct, kw_only=True):
    """Any content block; which fields matter depends on ``type``."""

    type: str
    text: str | None = None
    source: JsonObject | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    tool_use_id: str | None = None
    content: str | list[_Block] | None = None
    is_error: bool | None = None
    cache_control: JsonObject | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


class _Turn(msgspec.Struct, kw_only=True):
    role: Literal["user", "assistant"]
    content: str | list[_Block]


class _Tool(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    input_schema: JsonObject | None = None
    type: str | None = None


class _ToolChoice(msgspec.Struct, kw_only=True):
    type: Literal["auto", "any", "none", "tool"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class _Thinking(msgspec.Struct, kw_only=True):
    type: str
    budget_tokens: int | None = None


class _Metadata(msgspec.Struct, kw_only=True):
    user_id: str | None = None


class MessagesRequest(msgspec.Struct, kw_only=True):
    model: str
    max_tokens: int
    messages: list[_Turn]
    system: str | list[_Block] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stream: bool = False
    tools: list[_Tool] | None = None
    tool_choice: _ToolChoice | None = None
    metadata: _Metadata | None = None
    thinking: _Thinking | None = None


def parse_messages_request(body: bytes) -> ChatRequest:
    data = decode_json_object(body)
    for key in ("model", "max_tokens", "messages"):
        if key not in data:
            raise BadRequest(f"missing required field '{key}'", param=key)
    try:
        req = msgspec.convert(data, MessagesRequest)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        param = msg.rsplit(" - at `$.", 1)[1].rstrip("`") if " - at `$." in msg else None
        raise BadRequest(f"invalid messages request: {msg}", param=param) from None
    if req.max_tokens < 1:
        raise BadRequest("'max_tokens' must be at least 1", param="max_tokens")
    if not req.messages:
        raise BadRequest("'messages' must contain at least one message", param="messages")
    if req.temperature is not None and not 0 <= req.temperature <= 1:
        raise BadRequest("'temperature' must be between 0 and 1", param="temperature")
    return to_canonical(req)


def to_canonical(req: MessagesRequest) -> ChatRequest:
    messages: list[Message] = []
    system = _system_text(req.system)
    if system:
        messages.append(Message(role="system", content=system))
    for i, turn in enumerate(req.messages):
        messages.extend(_turn(turn, i))
    extra: JsonObject = {}
    if req.top_k is not None:
        extra["top_k"] = req.top_k
    choice = req.tool_choice
    return ChatRequest(
        model=req.model,
        messages=messages,
        max_tokens=req.max_tokens,
        stream=req.stream,
        stream_options=StreamOptions(include_usage=True) if req.stream else None,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=req.stop_sequences or None,
        tools=[_tool(t) for t in req.tools] if req.tools else None,
        tool_choice=_tool_choice(choice) if choice is not None else None,
        parallel_tool_calls=False if choice is not None and choice.disable_parallel_tool_use else None,
        user=req.metadata.user_id if req.metadata else None,
        reasoning_effort=_effort(req.thinking),
        extra_body=extra or None,
    )


def _system_text(system: str | list[_Block] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    return "\n".join(b.text or "" for b in system if b.type == "text")


def _turn(turn: _Turn, i: int) -> list[Message]:
    if isinstance(turn.content, str):
        return [Message(role=turn.role, content=turn.content)]
    if turn.role == "assistant":
        return [_assistant(turn.content)]
    out: list[Message] = []
    parts: list[ContentPart] = []
    for block in turn.content:
        if block.type == "tool_result":
            if not block.tool_use_id:
                raise BadRequest(f"messages[{i}]: a tool_result needs 'tool_use_id'", param=f"messages[{i}]")
            text = _result_text(block)
            out.append(Message(role="tool", tool_call_id=block.tool_use_id, content=text))
        elif block.type == "text":
            parts.append(TextPart(text=block.text or "", cache_control=block.cache_control))
        elif block.type == "image":
            parts.append(_image(block, i))
        else:
            raise BadRequest(
                f"messages[{i}]: unsupported content block type '{block.type}'", param=f"messages[{i}]"
            )
    if parts:
        only_text = all(isinstance(p, TextPart) and p.cache_control is None for p in parts)
        content: str | list[ContentPart] = "".join(p.text for p in parts) if only_text else parts  # type: ignore[union-attr]
        out.append(Message(role="user", content=content))
    return out


def _result_text(block: _Block) -> str:
    content = block.content
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        text = "".join(b.text or "" for b in content if b.type == "text")
    return f"[error] {text}" if block.is_error else text


def _image(block: _Block, i: int) -> ImagePart:
    src = block.source or {}
    if src.get("type") == "base64" and src.get("data"):
        return ImagePart(
            image_url=ImageUrl(url=f"data:{src.get('media_type', 'image/png')};base64,{src['data']}")
        )
    if src.get("type") == "url" and src.get("url"):
        return ImagePart(image_url=ImageUrl(url=str(src["url"])))
    raise BadRequest(f"messages[{i}]: image source must be base64 data or a url", param=f"messages[{i}]")


def _assistant(blocks: list[_Block]) -> Message:
    text: list[str] = []
    calls: list[ToolCall] = []
    reasoning: list[JsonObject] = []
    for block in blocks:
        if block.type == "text":
            text.append(block.text or "")
        elif block.type == "tool_use":
            args = _encode(block.input if block.input is not None else {}).decode()
            calls.append(
                ToolCall(id=block.id or "", function=FunctionCall(name=block.name or "", arguments=args))
            )
        elif block.type in ("thinking", "redacted_thinking"):
            reasoning.append(thinking_block(block.type, block.thinking, block.signature, block.data))
    return Message(
        role="assistant",
        content="".join(text) if text else None,
        tool_calls=calls or None,
        reasoning=reasoning or None,
    )


def thinking_block(kind: str, thinking: str | None, signature: str | None, data: str | None) -> JsonObject:
    """A thinking block as Anthropic wants it back on the next turn (signature unchanged)."""
    block: JsonObject = {"type": kind}
    for key, value in (("thinking", thinking), ("signature", signature), ("data", data)):
        if value is not None:
            block[key] = value
    return block


def _tool(tool: _Tool) -> Tool:
    return Tool(
        function=FunctionDef(name=tool.name, description=tool.description, parameters=tool.input_schema)
    )


def _tool_choice(choice: _ToolChoice) -> ToolChoice:
    if choice.type == "tool":
        if not choice.name:
            raise BadRequest("tool_choice of type 'tool' needs a 'name'", param="tool_choice")
        return NamedToolChoice(function=ToolChoiceFunction(name=choice.name))
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]  # type: ignore[return-value]


def _effort(thinking: _Thinking | None) -> str | None:
    if thinking is None or thinking.type != "enabled":
        return None
    budget = thinking.budget_tokens or 0
    return "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"
