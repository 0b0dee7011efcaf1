"""The OpenAI Responses dialect, egress side: canonical answers → the Response object, canonical
stream chunks → the Responses event stream, errors → OpenAI's error object (and, mid-stream,
``error`` + ``response.failed``).

The stream follows the documented sequence: ``response.created``, ``response.in_progress``; per
output item ``response.output_item.added``, then for a message ``response.content_part.added``,
``response.output_text.delta``…, ``response.output_text.done``, ``response.content_part.done``, or
for a function call ``response.function_call_arguments.delta``…, ``…arguments.done``; then
``response.output_item.done``; and last ``response.completed`` (``response.incomplete`` when the
answer was cut by ``max_output_tokens`` or a content filter). Every event has a ``sequence_number``.

Each answer also yields the assistant turn as canonical messages (``conversation``), which the
store keeps so ``previous_response_id`` can replay it.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Final

import msgspec

from sluice.errors import ProviderError, SluiceError
from sluice.schema.chat import ChatResponse, FunctionCall, JsonObject, Message, ToolCall, Usage
from sluice.schema.responses import ResponsesRequest, encode_reasoning_state
from sluice.schema.sse import encode_event

_encode = msgspec.json.Encoder().encode
#: finish_reason → incomplete_details.reason
_INCOMPLETE: Final = {"length": "max_output_tokens", "content_filter": "content_filter"}
_REASONING_TEXT_KEYS: Final = ("thinking", "text")


def new_response_id() -> str:
    return "resp_" + secrets.token_hex(24)


class ResponseFrame:
    """What every Response object of one request repeats: its id, creation time and the request's
    settings, as the API echoes them."""

    __slots__ = ("base", "id", "model")

    def __init__(self, req: ResponsesRequest, response_id: str, created_at: int | None = None) -> None:
        self.id = response_id
        self.model = req.model
        fmt = req.text.format if req.text is not None and req.text.format is not None else {"type": "text"}
        self.base: JsonObject = {
            "id": response_id, "object": "response", "created_at": created_at or int(time.time()),
            "status": "in_progress", "background": False, "error": None, "incomplete_details": None,
            "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "model": req.model, "output": [], "parallel_tool_calls": req.parallel_tool_calls is not False,
            "previous_response_id": req.previous_response_id,
            "reasoning": {"effort": req.reasoning.effort, "summary": req.reasoning.summary} if req.reasoning else None,
            "store": req.stored, "temperature": req.temperature, "text": {"format": fmt},
            "tool_choice": req.tool_choice if req.tool_choice is not None else "auto",
            "tools": [_echo_tool(t) for t in req.tools or ()], "top_p": req.top_p,
            "truncation": "disabled", "metadata": req.metadata or {},
        }  # fmt: skip
        for name in ("user", "safety_identifier", "prompt_cache_key"):
            if getattr(req, name) is not None:  # the spec does not allow null for these
                self.base[name] = getattr(req, name)

    def response(
        self, status: str, output: list[JsonObject], usage: Usage | None, finish: str | None, model: str = ""
    ) -> JsonObject:
        body = dict(self.base)
        body["status"] = status
        body["output"] = output
        body["model"] = model or self.model
        if status == "incomplete":
            body["incomplete_details"] = {"reason": _INCOMPLETE.get(finish or "", "max_output_tokens")}
        if status in ("completed", "incomplete"):
            body["completed_at"] = int(time.time())
        if usage is not None:
            body["usage"] = responses_usage(usage)
        return body


def _echo_tool(tool: JsonObject) -> JsonObject:
    return {
        "type": "function", "name": tool.get("name"), "description": tool.get("description"),
        "parameters": tool.get("parameters"), "strict": tool.get("strict"),
    }  # fmt: skip


def responses_usage(u: Usage) -> JsonObject:
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cached_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens or u.prompt_tokens + u.completion_tokens,
    }


def status_for(finish: str | None) -> str:
    return "incomplete" if finish in _INCOMPLETE else "completed"


# ---------------------------------------------------------------- output items


def message_item(item_id: str, text: str | None, refusal: str | None, status: str) -> JsonObject:
    content: list[JsonObject] = []
    if text is not None:
        content.append(_text_part(text))
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def _text_part(text: str) -> JsonObject:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> JsonObject:
    return {
        "id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
        "arguments": arguments,
    }  # fmt: skip


def reasoning_item(item_id: str, state: list[JsonObject], status: str) -> JsonObject:
    """Visible reasoning text as ``reasoning_text`` parts; the provider's opaque state (signatures)
    in ``encrypted_content``, so a stateless client can send it back."""
    texts = [t for r in state for k in _REASONING_TEXT_KEYS if isinstance(t := r.get(k), str) and t]
    item: JsonObject = {"id": item_id, "type": "reasoning", "summary": [], "status": status}
    if texts:
        item["content"] = [{"type": "reasoning_text", "text": "".join(texts)}]
    item["encrypted_content"] = encode_reasoning_state(state)
    return item


def render_response(resp: ChatResponse, frame: ResponseFrame) -> tuple[JsonObject, list[Message]]:
    """A non-streamed answer → (the Response object, the assistant turn as canonical messages)."""
    choice = resp.choices[0] if resp.choices else None
    output: list[JsonObject] = []
    if choice is None:
        return frame.response("completed", output, resp.usage, None, resp.model), []
    msg, finish = choice.message, choice.finish_reason
    status = status_for(finish)
    suffix = frame.id[5:]
    if msg.reasoning:
        output.append(reasoning_item(f"rs_{suffix}", list(msg.reasoning), "completed"))
    if msg.content is not None or msg.refusal:
        output.append(message_item(f"msg_{suffix}", msg.content, msg.refusal, status))
    for i, call in enumerate(msg.tool_calls or ()):
        output.append(
            call_item(f"fc_{suffix}_{i}", call.id, call.function.name, call.function.arguments, "completed")
        )
    turn = Message(
        role="assistant", content=msg.content, refusal=msg.refusal,
        tool_calls=list(msg.tool_calls) if msg.tool_calls else None,
        reasoning=list(msg.reasoning) if msg.reasoning else None,
    )  # fmt: skip
    return frame.response(status, output, resp.usage, finish, resp.model), [turn]


def merge_reasoning(state: list[JsonObject], fragment: JsonObject) -> None:
    """Stream fragments of one reasoning block back into the block (text joined, the signature
    kept); a fragment after a signed block starts the next block."""
    last = state[-1] if state else None
    if last is None or last.get("type") != fragment.get("type") or ("signature" in last and "signature" not in fragment and any(k in fragment for k in _REASONING_TEXT_KEYS)):  # fmt: skip
        state.append(dict(fragment))
        return
    for key, value in fragment.items():
        if key in _REASONING_TEXT_KEYS and isinstance(value, str) and isinstance(last.get(key), str):
            last[key] += value
        else:
            last[key] = value


# ---------------------------------------------------------------- errors


def _error_code(exc: SluiceError) -> str:
    if exc.status == 429:
        return "rate_limit_exceeded"
    if exc.status == 400 and not isinstance(exc, ProviderError):
        return "invalid_prompt"
    return "server_error"


def failed_events(
    exc: SluiceError, frame: ResponseFrame, output: list[JsonObject], seq: int
) -> tuple[bytes, JsonObject]:
    """A stream that broke after it began: an ``error`` event, then ``response.failed``."""
    err: JsonObject = {"type": "error", "code": exc.code or _error_code(exc), "message": exc.message,
                       "param": exc.param, "sequence_number": seq}  # fmt: skip
    failed = frame.response("failed", output, None, None)
    failed["error"] = {"code": _error_code(exc), "message": exc.message}
    body = {"type": "response.failed", "response": failed, "sequence_number": seq + 1}
    return encode_event("error", _encode(err)) + encode_event("response.failed", _encode(body)), failed


def event(kind: str, seq: int, fields: dict[str, Any]) -> bytes:
    fields["type"] = kind
    fields["sequence_number"] = seq
    return encode_event(kind, _encode(fields))


def tool_call(call_id: str, name: str, arguments: str) -> ToolCall:
    return ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments))
