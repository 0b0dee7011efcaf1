"""Canonical ⇄ Bedrock Converse bodies.

system messages → ``system`` blocks; ``tool`` messages → one user turn of ``toolResult`` blocks;
assistant ``tool_calls`` → ``toolUse`` (JSON string → object); reasoning blocks
(``{"type": "reasoning", "text", "signature"}``) go back as ``reasoningContent``; inline images →
``image`` bytes (Bedrock takes no image URLs); Bedrock has no tool_choice "none": tools are
dropped, unless the history has tool use, which needs the toolConfig kept.
Usage: ``inputTokens`` excludes cache reads/writes, so prompt_tokens adds them back.
"""

from __future__ import annotations

from typing import Final

import msgspec

from sluice.errors import ProviderError
from sluice.providers.base import append_turn, arguments_object
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

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
DEFAULT_MAX_TOKENS: Final = 4096

STOP_REASONS: Final = {
    "end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length",
    "model_context_window_exceeded": "length", "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}  # fmt: skip


def to_converse_request(req: ChatRequest, provider: str) -> bytes:
    system: list[JsonObject] = []
    turns: list[JsonObject] = []
    for msg in req.messages:
        if msg.role in ("system", "developer"):
            system.append({"text": msg.text()})
        elif msg.role == "tool":
            result = {
                "toolResult": {
                    "toolUseId": msg.tool_call_id or "",
                    "content": [{"text": msg.text()}],
                    "status": "success",
                }
            }
            append_turn(turns, "user", [result])
        elif msg.role == "assistant":
            append_turn(turns, "assistant", _assistant(msg))
        else:
            append_turn(turns, "user", _user(msg, provider))
    body: JsonObject = {"messages": turns}
    if system:
        body["system"] = system
    config: JsonObject = {"maxTokens": req.output_limit() or DEFAULT_MAX_TOKENS}
    for key, value in (("temperature", req.temperature), ("topP", req.top_p)):
        if value is not None:
            config[key] = value
    if req.stop_list():
        config["stopSequences"] = req.stop_list()
    body["inferenceConfig"] = config
    _tools(req, body)
    if req.extra_body and isinstance(req.extra_body.get("top_k"), int):
        body["additionalModelRequestFields"] = {"top_k": req.extra_body["top_k"]}
    return _encode(body)


def _user(msg: Message, provider: str) -> list[JsonObject]:
    if msg.content is None or isinstance(msg.content, str):
        return [{"text": msg.content or ""}]
    blocks: list[JsonObject] = []
    for part in msg.content:
        if isinstance(part, TextPart):
            blocks.append({"text": part.text})
        elif isinstance(part, ImagePart):
            url = part.image_url.url
            if not (url.startswith("data:image/") and ";base64," in url):
                raise ProviderError(
                    "bad_request", "Bedrock takes inline (data:) images only, not URLs", provider=provider
                )
            media, data = url[5:].split(";base64,", 1)
            blocks.append({"image": {"format": media.split("/", 1)[1], "source": {"bytes": data}}})
    return blocks or [{"text": ""}]


def _assistant(msg: Message) -> list[JsonObject]:
    blocks: list[JsonObject] = []
    for r in msg.reasoning or ():
        if r.get("type") == "reasoning":
            blocks.append(
                {"reasoningContent": {"reasoningText": {k: r[k] for k in ("text", "signature") if r.get(k)}}}
            )
    text = msg.text()
    if text:
        blocks.append({"text": text})
    for call in msg.tool_calls or ():
        blocks.append(
            {
                "toolUse": {
                    "toolUseId": call.id,
                    "name": call.function.name,
                    "input": arguments_object(call.function.arguments),
                }
            }
        )
    return blocks or [{"text": ""}]


def _tools(req: ChatRequest, body: JsonObject) -> None:
    if not req.tools:
        return
    history_uses_tools = any(m.tool_calls for m in req.messages) or any(
        m.role == "tool" for m in req.messages
    )
    if req.tool_choice == "none" and not history_uses_tools:
        return
    specs = [{"toolSpec": {"name": t.function.name, **({"description": t.function.description} if t.function.description else {}),
                           "inputSchema": {"json": t.function.parameters or {"type": "object", "properties": {}}}}}
             for t in req.tools]  # fmt: skip
    config: JsonObject = {"tools": specs}
    if isinstance(req.tool_choice, NamedToolChoice):
        config["toolChoice"] = {"tool": {"name": req.tool_choice.function.name}}
    elif req.tool_choice == "required":
        config["toolChoice"] = {"any": {}}
    elif req.tool_choice == "auto":
        config["toolChoice"] = {"auto": {}}
    body["toolConfig"] = config


def usage_from_bedrock(u: JsonObject | None) -> Usage | None:
    if not u:
        return None
    read, written = int(u.get("cacheReadInputTokens") or 0), int(u.get("cacheWriteInputTokens") or 0)
    prompt = int(u.get("inputTokens") or 0) + read + written
    out = int(u.get("outputTokens") or 0)
    return Usage(
        prompt_tokens=prompt, completion_tokens=out, total_tokens=prompt + out,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=read, cache_write_tokens=written),
        completion_tokens_details=CompletionTokensDetails(),
    )  # fmt: skip


def from_converse_response(body: bytes, provider: str) -> ChatResponse:
    try:
        data = _decode(body)
        blocks = data["output"]["message"]["content"]
    except (msgspec.DecodeError, KeyError, TypeError) as exc:
        raise ProviderError(
            "bad_response", f"unreadable response body ({type(exc).__name__})", provider=provider
        ) from None
    text: list[str] = []
    calls: list[ToolCall] = []
    reasoning: list[JsonObject] = []
    for block in blocks:
        if "text" in block:
            text.append(str(block["text"]))
        elif "toolUse" in block:
            use = block["toolUse"]
            args = _encode(use.get("input") or {}).decode()
            calls.append(
                ToolCall(
                    id=str(use.get("toolUseId", "")),
                    function=FunctionCall(name=str(use.get("name", "")), arguments=args),
                )
            )
        elif "reasoningContent" in block:
            rt = (block["reasoningContent"] or {}).get("reasoningText") or {}
            reasoning.append({"type": "reasoning", **{k: rt[k] for k in ("text", "signature") if k in rt}})
    message = ResponseMessage(
        content="".join(text) or None, tool_calls=calls or None, reasoning=reasoning or None
    )
    finish = STOP_REASONS.get(str(data.get("stopReason", "end_turn")), "stop")
    return ChatResponse(
        choices=[Choice(message=message, finish_reason=finish)], usage=usage_from_bedrock(data.get("usage"))
    )
