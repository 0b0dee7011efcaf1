"""Canonical ⇄ Gemini ``generateContent`` bodies.

- system / developer messages → ``systemInstruction``; roles user / model;
- assistant ``tool_calls`` → ``functionCall`` parts, each with its ``thoughtSignature`` put back
  (kept in ``reasoning`` as ``{"type": "thought_signature", "tool_call_id", "signature"}``);
- ``tool`` messages → one user turn of ``functionResponse`` parts (name looked up from the call;
  the response must be an object, so text is wrapped as ``{"result": …}``);
- Gemini gives older function calls no ids: ids are synthesised (``call_<n>_<name>``) and mapped
  back by the tool message's ``tool_call_id``;
- tool JSON schemas lose ``$schema`` / ``additionalProperties`` (Gemini's OpenAPI subset).
"""

from __future__ import annotations

from typing import Any, Final

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
_DROP_SCHEMA_KEYS: Final = frozenset({"$schema", "additionalProperties", "strict", "$id", "$defs"})
_FILTERED: Final = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE", "IMAGE_SAFETY"}
)


def finish_reason(gemini: str | None, has_calls: bool) -> str:
    if has_calls:
        return "tool_calls"
    if gemini == "MAX_TOKENS":
        return "length"
    if gemini in _FILTERED or (gemini or "").startswith("IMAGE_"):
        return "content_filter"
    return "stop"


def to_gemini_request(req: ChatRequest) -> bytes:
    system: list[str] = []
    contents: list[JsonObject] = []
    names: dict[str, str] = {}  # tool_call_id → function name
    for msg in req.messages:
        if msg.role in ("system", "developer"):
            system.append(msg.text())
        elif msg.role == "tool":
            name = names.get(msg.tool_call_id or "", "")
            part = {"functionResponse": {"name": name, "response": _tool_result(msg.text())}}
            append_turn(contents, "user", [part], "parts")
        elif msg.role == "assistant":
            for call in msg.tool_calls or ():
                names[call.id] = call.function.name
            append_turn(contents, "model", _model_parts(msg), "parts")
        else:
            append_turn(contents, "user", _user_parts(msg), "parts")
    body: JsonObject = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    _tools(req, body)
    config = _generation_config(req)
    if config:
        body["generationConfig"] = config
    return _encode(body)


def _tool_result(text: str) -> JsonObject:
    try:
        value = _decode(text) if text else {}
    except msgspec.DecodeError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def _user_parts(msg: Message) -> list[JsonObject]:
    if msg.content is None or isinstance(msg.content, str):
        return [{"text": msg.content or ""}]
    parts: list[JsonObject] = []
    for part in msg.content:
        if isinstance(part, TextPart):
            parts.append({"text": part.text})
        elif isinstance(part, ImagePart):
            url = part.image_url.url
            if url.startswith("data:") and ";base64," in url:
                mime, data = url[5:].split(";base64,", 1)
                parts.append({"inlineData": {"mimeType": mime, "data": data}})
            else:
                parts.append({"fileData": {"fileUri": url}})
    return parts or [{"text": ""}]


def _model_parts(msg: Message) -> list[JsonObject]:
    signatures = {
        r.get("tool_call_id"): r.get("signature")
        for r in msg.reasoning or ()
        if r.get("type") == "thought_signature"
    }
    parts: list[JsonObject] = []
    text = msg.text()
    if text:
        parts.append({"text": text})
    for call in msg.tool_calls or ():
        part: JsonObject = {
            "functionCall": {"name": call.function.name, "args": arguments_object(call.function.arguments)}
        }
        if signatures.get(call.id):
            part["thoughtSignature"] = signatures[call.id]
        parts.append(part)
    return parts or [{"text": ""}]


def clean_schema(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: clean_schema(v) for k, v in schema.items() if k not in _DROP_SCHEMA_KEYS}
    if isinstance(schema, list):
        return [clean_schema(v) for v in schema]
    return schema


def _tools(req: ChatRequest, body: JsonObject) -> None:
    if not req.tools:
        return
    decls = []
    for tool in req.tools:
        decl: JsonObject = {"name": tool.function.name}
        if tool.function.description:
            decl["description"] = tool.function.description
        if tool.function.parameters:
            decl["parameters"] = clean_schema(tool.function.parameters)
        decls.append(decl)
    body["tools"] = [{"functionDeclarations": decls}]
    choice = req.tool_choice
    if isinstance(choice, NamedToolChoice):
        config: JsonObject = {"mode": "ANY", "allowedFunctionNames": [choice.function.name]}
    else:
        config = {"mode": {"required": "ANY", "none": "NONE"}.get(choice or "auto", "AUTO")}
    body["toolConfig"] = {"functionCallingConfig": config}


def _generation_config(req: ChatRequest) -> JsonObject:
    config: JsonObject = {}
    for key, value in (("temperature", req.temperature), ("topP", req.top_p), ("maxOutputTokens", req.output_limit()),
                       ("candidateCount", req.n), ("seed", req.seed), ("presencePenalty", req.presence_penalty),
                       ("frequencyPenalty", req.frequency_penalty)):  # fmt: skip
        if value is not None:
            config[key] = value
    stops = req.stop_list()
    if stops:
        config["stopSequences"] = stops
    fmt = req.response_format
    if fmt is not None and fmt.type != "text":
        config["responseMimeType"] = "application/json"
        schema = (fmt.json_schema or {}).get("schema")
        if schema:
            config["responseSchema"] = clean_schema(schema)
    if req.extra_body and isinstance(req.extra_body.get("top_k"), int):
        config["topK"] = req.extra_body["top_k"]
    return config


def usage_from_gemini(meta: JsonObject | None) -> Usage | None:
    if not meta:
        return None
    prompt = int(meta.get("promptTokenCount", 0))
    thoughts = int(meta.get("thoughtsTokenCount", 0))
    completion = int(meta.get("candidatesTokenCount", 0)) + thoughts
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=int(meta.get("cachedContentTokenCount", 0))),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=thoughts),
    )  # fmt: skip


def parts_to_message(
    parts: list[JsonObject], call_offset: int
) -> tuple[str, list[ToolCall], list[JsonObject]]:
    """Text, tool calls (ids synthesised) and reasoning (thought text, signatures) from parts."""
    text: list[str] = []
    calls: list[ToolCall] = []
    reasoning: list[JsonObject] = []
    for part in parts:
        if "functionCall" in part:
            fc = part["functionCall"]
            name = str(fc.get("name", ""))
            call_id = str(fc.get("id") or f"call_{call_offset + len(calls)}_{name}")
            calls.append(
                ToolCall(
                    id=call_id,
                    function=FunctionCall(name=name, arguments=_encode(fc.get("args") or {}).decode()),
                )
            )
            if part.get("thoughtSignature"):
                reasoning.append(
                    {
                        "type": "thought_signature",
                        "tool_call_id": call_id,
                        "signature": part["thoughtSignature"],
                    }
                )
        elif part.get("thought"):
            reasoning.append({"type": "thought", "text": part.get("text", "")})
        elif "text" in part:
            text.append(str(part["text"]))
    return "".join(text), calls, reasoning


def from_gemini_response(body: bytes, provider: str) -> ChatResponse:
    try:
        data = _decode(body)
    except msgspec.DecodeError as exc:
        raise ProviderError("bad_response", f"unreadable response body ({exc})", provider=provider) from None
    if not isinstance(data, dict):
        raise ProviderError("bad_response", "response body is not an object", provider=provider)
    candidates = data.get("candidates") or []
    if not candidates:  # the prompt itself was blocked
        message = ResponseMessage(content=None)
        choice = Choice(message=message, finish_reason="content_filter")
    else:
        cand = candidates[0]
        text, calls, reasoning = parts_to_message((cand.get("content") or {}).get("parts") or [], 0)
        message = ResponseMessage(content=text or None, tool_calls=calls or None, reasoning=reasoning or None)
        choice = Choice(message=message, finish_reason=finish_reason(cand.get("finishReason"), bool(calls)))
    return ChatResponse(
        id=str(data.get("responseId", "")), model=str(data.get("modelVersion", "")), choices=[choice],
        usage=usage_from_gemini(data.get("usageMetadata")),
    )  # fmt: skip
