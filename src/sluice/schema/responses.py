"""The OpenAI Responses dialect, ingress side: a ``POST /v1/responses`` body → the canonical ChatRequest.

What is translated:

- ``input`` as a string (one user turn) or a list of items: messages (``input_text``,
  ``input_image``, ``input_file``; earlier assistant turns as ``output_text`` / ``refusal``),
  ``function_call`` items (merged into the assistant turn before them, as chat wants) and
  ``function_call_output`` items (→ ``tool`` messages); ``reasoning`` items that carry the state
  this gateway handed out (``encrypted_content``) go back to the provider unchanged;
- ``instructions`` → a system message in front (never carried over by ``previous_response_id``);
- function ``tools`` and ``tool_choice``; ``text.format`` (``json_schema`` / ``json_object``) →
  ``response_format``; ``reasoning.effort`` → ``reasoning_effort``; ``max_output_tokens``.

What cannot be honoured is refused with a 400 naming it (built-in tools, ``background``,
``conversation``, ``prompt`` templates, ``item_reference``), as the OpenAI API itself refuses
unknown parameters. ``previous_response_id`` is resolved by the caller of :func:`to_chat_request`
(it needs the store) and handed in as ``history``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final, Literal

import msgspec

from sluice.errors import BadRequest
from sluice.schema.chat import (
    ChatRequest,
    ContentPart,
    FilePart,
    FileRef,
    FunctionCall,
    FunctionDef,
    ImagePart,
    ImageUrl,
    JsonObject,
    Message,
    NamedToolChoice,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceFunction,
)
from sluice.schema.openai import decode_json_object

#: Prefix of ``encrypted_content`` this gateway writes on reasoning items (opaque provider state).
REASONING_STATE_PREFIX: Final = "sluice1:"
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class _W(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


class ReasoningParam(_W):
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class TextParam(_W):
    format: JsonObject | None = None
    verbosity: str | None = None


class ResponsesRequest(_W):
    """The request body, as far as the gateway reads it (fields it does not take are refused)."""

    model: str
    input: str | list[JsonObject] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    stream: bool = False
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    tools: list[JsonObject] | None = None
    tool_choice: str | JsonObject | None = None
    parallel_tool_calls: bool | None = None
    text: TextParam | None = None
    reasoning: ReasoningParam | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    truncation: Literal["disabled"] | None = None
    include: list[str] | None = None
    background: bool | None = None
    top_logprobs: int | None = None
    stream_options: JsonObject | None = None

    @property
    def stored(self) -> bool:
        """``store`` defaults to true, as on OpenAI."""
        return self.store is not False


_FIELDS: Final = frozenset(ResponsesRequest.__struct_fields__)
#: ``include`` values the gateway honours (reasoning state is always included).
_INCLUDABLE: Final = frozenset({"reasoning.encrypted_content"})
#: Chat Completions has the same fields: forwarded as they are to OpenAI-compatible upstreams.
_PASSED_ON: Final = ("service_tier", "prompt_cache_key", "safety_identifier")
_NOT_SUPPORTED: Final = {
    "conversation": "use 'previous_response_id' to continue a conversation",
    "prompt": "prompt templates are not stored on this gateway",
    "max_tool_calls": "it limits built-in tools, which this gateway does not run",
}


def parse_responses_request(body: bytes) -> ResponsesRequest:
    data = decode_json_object(body)
    for name in data:
        if name in _NOT_SUPPORTED:
            raise BadRequest(f"'{name}' is not supported: {_NOT_SUPPORTED[name]}", param=name)
        if name not in _FIELDS:
            raise BadRequest(f"unknown parameter: '{name}'", param=name, code="unknown_parameter")
    if "model" not in data:
        raise BadRequest("missing required field 'model'", param="model")
    if data.get("background"):
        raise BadRequest("'background' responses are not supported by this gateway", param="background")
    if data.get("truncation") not in (None, "disabled"):
        raise BadRequest("only 'truncation: disabled' is supported", param="truncation")
    try:
        req = msgspec.convert(data, ResponsesRequest)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid responses request: {exc}", param=_param(str(exc))) from None
    if not req.model:
        raise BadRequest("'model' must be a non-empty string", param="model")
    if req.max_output_tokens is not None and req.max_output_tokens < 1:
        raise BadRequest("'max_output_tokens' must be at least 1", param="max_output_tokens")
    if req.temperature is not None and not 0 <= req.temperature <= 2:
        raise BadRequest("'temperature' must be between 0 and 2", param="temperature")
    for item in req.include or ():
        if item not in _INCLUDABLE:
            raise BadRequest(f"include '{item}' is not supported by this gateway", param="include")
    if req.top_logprobs:
        raise BadRequest(
            "'top_logprobs' is not supported on /v1/responses by this gateway", param="top_logprobs"
        )
    if req.input is None and req.previous_response_id is None:
        raise BadRequest("missing required field 'input'", param="input")
    return req


def _param(msg: str) -> str | None:
    return msg.rsplit(" - at `$.", 1)[1].rstrip("`") if " - at `$." in msg else None


def input_messages(req: ResponsesRequest) -> list[Message]:
    """This turn's input as canonical messages (without ``instructions``)."""
    if req.input is None:
        return []
    if isinstance(req.input, str):
        return [Message(role="user", content=req.input)]
    return _ItemReader().read(req.input)


def to_chat_request(req: ResponsesRequest, history: list[Message], turn: list[Message]) -> ChatRequest:
    """The canonical request: instructions, the earlier conversation, then this turn's items."""
    messages = [Message(role="system", content=req.instructions)] if req.instructions else []
    messages.extend(history)
    messages.extend(turn)
    if not messages:
        raise BadRequest("'input' must contain at least one item", param="input")
    text_format = req.text.format if req.text is not None else None
    return ChatRequest(
        model=req.model,
        messages=messages,
        stream=req.stream,
        max_completion_tokens=req.max_output_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        user=req.user,
        tools=[to_chat_tool(t, i) for i, t in enumerate(req.tools)] if req.tools else None,
        tool_choice=to_chat_tool_choice(req.tool_choice),
        parallel_tool_calls=req.parallel_tool_calls,
        response_format=to_response_format(text_format),
        metadata=req.metadata,
        reasoning_effort=req.reasoning.effort if req.reasoning is not None else None,
        extra_body=_passed_on(req),
    )


def _passed_on(req: ResponsesRequest) -> JsonObject | None:
    extra = {k: getattr(req, k) for k in _PASSED_ON if getattr(req, k) is not None}
    if req.text is not None and req.text.verbosity is not None:
        extra["verbosity"] = req.text.verbosity  # chat's name for text.verbosity
    return extra or None


def to_chat_tool(tool: JsonObject, index: int) -> Tool:
    kind = tool.get("type")
    if kind != "function":
        raise BadRequest(
            f"tools[{index}]: tool type '{kind}' is not supported by this gateway (only 'function')",
            param=f"tools[{index}].type",
        )
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"tools[{index}]: a function tool needs a 'name'", param=f"tools[{index}].name")
    params = tool.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise BadRequest(
            f"tools[{index}]: 'parameters' must be an object", param=f"tools[{index}].parameters"
        )
    desc = tool.get("description")
    strict = tool.get("strict")
    return Tool(
        function=FunctionDef(
            name=name,
            description=desc if isinstance(desc, str) else None,
            parameters=params,
            strict=strict if isinstance(strict, bool) else None,
        )
    )


def to_chat_tool_choice(choice: str | JsonObject | None) -> ToolChoice | None:
    if choice is None:
        return None
    if choice in ("none", "auto", "required"):
        return choice  # type: ignore[return-value]
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return NamedToolChoice(function=ToolChoiceFunction(name=choice["name"]))
    raise BadRequest(
        "'tool_choice' must be 'none', 'auto', 'required' or {\"type\": \"function\", \"name\": ...}",
        param="tool_choice",
    )


def to_response_format(fmt: JsonObject | None) -> ResponseFormat | None:
    if fmt is None:
        return None
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat(type="json_object")
    if kind == "json_schema":
        if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
            raise BadRequest("text.format json_schema needs 'name' and 'schema'", param="text.format")
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return ResponseFormat(type="json_schema", json_schema=spec)
    raise BadRequest(f"text.format type '{kind}' is not supported", param="text.format.type")


class _ItemReader:
    """Input items → canonical messages. Function calls join the assistant turn before them."""

    def __init__(self) -> None:
        self.out: list[Message] = []
        self._reasoning: list[JsonObject] = []

    def read(self, items: list[JsonObject]) -> list[Message]:
        for i, item in enumerate(items):
            kind = item.get("type", "message")
            if kind == "message":
                self._message(item, i)
            elif kind == "function_call":
                self._function_call(item, i)
            elif kind == "function_call_output":
                self._function_output(item, i)
            elif kind == "reasoning":
                self._reasoning.extend(decode_reasoning_state(item.get("encrypted_content")))
            elif kind == "item_reference":
                raise BadRequest(
                    f"input[{i}]: 'item_reference' is not supported; use 'previous_response_id'",
                    param=f"input[{i}]",
                )
            else:
                raise BadRequest(
                    f"input[{i}]: input item type '{kind}' is not supported by this gateway",
                    param=f"input[{i}].type",
                )
        return self.out

    def _message(self, item: JsonObject, i: int) -> None:
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise BadRequest(f"input[{i}]: unknown role '{role}'", param=f"input[{i}].role")
        content = item.get("content")
        if role == "assistant":
            text, refusal = _assistant_text(content, i)
            msg = Message(role="assistant", content=text, refusal=refusal)
            self._attach_reasoning(msg)
            self.out.append(msg)
            return
        self.out.append(Message(role=role, content=_input_content(content, i)))

    def _function_call(self, item: JsonObject, i: int) -> None:
        call_id, name, args = item.get("call_id"), item.get("name"), item.get("arguments", "")
        if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(args, str):
            raise BadRequest(
                f"input[{i}]: a function_call needs 'call_id', 'name' and 'arguments' (a JSON string)",
                param=f"input[{i}]",
            )
        call = ToolCall(id=call_id, function=FunctionCall(name=name, arguments=args))
        last = self.out[-1] if self.out else None
        if last is not None and last.role == "assistant" and not self._reasoning:
            last.tool_calls = [*(last.tool_calls or []), call]
            return
        msg = Message(role="assistant", tool_calls=[call])
        self._attach_reasoning(msg)
        self.out.append(msg)

    def _function_output(self, item: JsonObject, i: int) -> None:
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not call_id:
            raise BadRequest(
                f"input[{i}]: a function_call_output needs 'call_id'", param=f"input[{i}].call_id"
            )
        if isinstance(output, str):
            content: str | list[ContentPart] = output
        elif isinstance(output, list):
            content = _input_content(output, i)
        else:
            raise BadRequest(f"input[{i}]: 'output' must be a string or a list", param=f"input[{i}].output")
        self.out.append(Message(role="tool", tool_call_id=call_id, content=content))

    def _attach_reasoning(self, msg: Message) -> None:
        if self._reasoning:
            msg.reasoning, self._reasoning = self._reasoning, []


def _assistant_text(content: Any, i: int) -> tuple[str | None, str | None]:
    if isinstance(content, str):
        return content, None
    if not isinstance(content, list):
        raise BadRequest(f"input[{i}]: 'content' must be a string or a list", param=f"input[{i}].content")
    text = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in _TEXT_TYPES]
    refusal = [p.get("refusal", "") for p in content if isinstance(p, dict) and p.get("type") == "refusal"]
    return ("".join(text) or None), ("".join(refusal) or None)


_TEXT_TYPES: Final = frozenset({"output_text", "input_text", "text"})


def _input_content(content: Any, i: int) -> str | list[ContentPart]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise BadRequest(f"input[{i}]: 'content' must be a string or a list", param=f"input[{i}].content")
    return [_input_part(p, i, j) for j, p in enumerate(content)]


def _input_part(part: Any, i: int, j: int) -> ContentPart:
    where = f"input[{i}].content[{j}]"
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in _TEXT_TYPES and isinstance(part.get("text"), str):
        return TextPart(text=part["text"])
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        detail = part.get("detail")
        return ImagePart(
            image_url=ImageUrl(url=part["image_url"], detail=detail if detail != "auto" else None)
        )
    if kind == "input_file" and (part.get("file_data") or part.get("file_id")):
        return FilePart(
            file=FileRef(
                file_data=part.get("file_data"), file_id=part.get("file_id"), filename=part.get("filename")
            )
        )
    if kind == "input_image":
        raise BadRequest(f"{where}: images by 'file_id' are not supported; send 'image_url'", param=where)
    raise BadRequest(f"{where}: content part type '{kind}' is not supported", param=f"{where}.type")


def encode_reasoning_state(items: list[JsonObject]) -> str:
    """Opaque provider reasoning state (thinking signatures, thought signatures) for a stateless
    round trip through a client, as ``encrypted_content`` on a reasoning item."""
    return REASONING_STATE_PREFIX + base64.urlsafe_b64encode(_encode(items)).decode()


def decode_reasoning_state(value: Any) -> list[JsonObject]:
    """Our own ``encrypted_content`` back to reasoning state; anything else (another gateway's,
    OpenAI's own) is meaningless to a different backend and is dropped."""
    if not isinstance(value, str) or not value.startswith(REASONING_STATE_PREFIX):
        return []
    try:
        items = _decode(base64.urlsafe_b64decode(value[len(REASONING_STATE_PREFIX) :]))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise BadRequest("reasoning item: 'encrypted_content' is corrupt", param="input") from None
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise BadRequest("reasoning item: 'encrypted_content' is corrupt", param="input")
    return items
