"""Canonical stream chunks → the Responses API's event stream (see :mod:`responses_render`).

One encoder per stream, fed each chunk as it arrives. Per chunk it writes one delta event (plus
the item's opening events when a new item starts); text and arguments are kept as lists of
fragments and joined once, when the item is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sluice.errors import SluiceError
from sluice.schema.chat import ChatChunk, JsonObject, Message, ToolCall, ToolCallDelta, Usage
from sluice.schema.responses_render import (
    ResponseFrame,
    call_item,
    event,
    failed_events,
    merge_reasoning,
    message_item,
    reasoning_item,
    status_for,
    tool_call,
)


@dataclass(slots=True)
class _Item:
    kind: str  # "message", "function_call" or "reasoning"
    id: str
    index: int
    parts: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""
    reasoning: list[JsonObject] = field(default_factory=list)
    done: JsonObject | None = None


class ResponsesStreamEncoder:
    def __init__(self, frame: ResponseFrame) -> None:
        self._frame = frame
        self._suffix = frame.id[5:]
        self._seq = 0
        self._started = False
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}
        self._usage: Usage | None = None
        self._finish: str | None = None
        self._model = ""
        #: The final Response object, once the stream has finished (or failed).
        self.final: JsonObject | None = None

    def _next(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def feed(self, chunk: ChatChunk) -> bytes:
        out: list[bytes] = []
        if not self._started:
            self._model = chunk.model
            out.append(self._start())
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices[:1]:  # one answer per response
            delta = choice.delta
            for fragment in delta.reasoning or ():
                out.extend(self._reasoning(fragment))
            if delta.content:
                out.extend(self._text(delta.content))
            if delta.refusal:
                item = self._message(out)
                item.refusal.append(delta.refusal)
            for call in delta.tool_calls or ():
                out.extend(self._call(call))
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return b"".join(out)

    def finish(self) -> bytes:
        out = [] if self._started else [self._start()]
        out.extend(self._close())
        for item in self._items:
            if item.done is None:  # parallel calls left open
                out.extend(self._close_item(item))
        status = status_for(self._finish)
        self.final = self._frame.response(status, self._output(), self._usage, self._finish, self._model)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        out.append(event(kind, self._next(), {"response": self.final}))
        return b"".join(out)

    def error(self, exc: SluiceError) -> bytes:
        out = [] if self._started else [self._start()]
        data, self.final = failed_events(exc, self._frame, self._output(), self._seq)
        self._seq += 2
        out.append(data)
        return b"".join(out)

    def conversation(self) -> list[Message]:
        """The assistant turn, for ``previous_response_id``."""
        text = "".join(p for i in self._items if i.kind == "message" for p in i.parts)
        refusal = "".join(p for i in self._items if i.kind == "message" for p in i.refusal)
        calls: list[ToolCall] = [
            tool_call(i.call_id, i.name, "".join(i.parts)) for i in self._items if i.kind == "function_call"
        ]
        reasoning = [r for i in self._items if i.kind == "reasoning" for r in i.reasoning]
        has_text = any(i.kind == "message" and i.parts for i in self._items)
        return [
            Message(role="assistant", content=text if has_text else None, refusal=refusal or None,
                    tool_calls=calls or None, reasoning=reasoning or None)
        ]  # fmt: skip

    # ------------------------------------------------------------ items

    def _start(self) -> bytes:
        self._started = True
        created = self._frame.response("in_progress", [], None, None, self._model)
        return event("response.created", self._next(), {"response": created}) + event(
            "response.in_progress", self._next(), {"response": created}
        )

    def _add(self, kind: str, item_id: str) -> tuple[_Item, list[bytes]]:
        out = self._close()
        item = _Item(kind, item_id, len(self._items))
        self._items.append(item)
        self._open = item
        return item, out

    def _message(self, out: list[bytes]) -> _Item:
        if self._open is not None and self._open.kind == "message":
            return self._open
        item, closed = self._add("message", f"msg_{self._suffix}_{len(self._items)}")
        out.extend(closed)
        added = message_item(item.id, None, None, "in_progress")
        out.append(
            event("response.output_item.added", self._next(), {"output_index": item.index, "item": added})
        )
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        out.append(event("response.content_part.added", self._next(),
                         {"item_id": item.id, "output_index": item.index, "content_index": 0, "part": part}))  # fmt: skip
        return item

    def _text(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        item = self._message(out)
        item.parts.append(text)
        out.append(event("response.output_text.delta", self._next(),
                         {"item_id": item.id, "output_index": item.index, "content_index": 0, "delta": text, "logprobs": []}))  # fmt: skip
        return out

    def _call(self, call: ToolCallDelta) -> list[bytes]:
        out: list[bytes] = []
        item = self._calls.get(call.index)
        fn = call.function
        if item is None:
            item, out = self._add("function_call", f"fc_{self._suffix}_{len(self._items)}")
            item.call_id = call.id or f"call_{self._suffix[:16]}_{call.index}"
            item.name = (fn.name if fn else None) or ""
            self._calls[call.index] = item
            added = call_item(item.id, item.call_id, item.name, "", "in_progress")
            out.append(
                event("response.output_item.added", self._next(), {"output_index": item.index, "item": added})
            )
        if fn is not None and fn.arguments:
            item.parts.append(fn.arguments)
            if item.done is None:  # a fragment for a call already closed is kept, not re-announced
                out.append(event("response.function_call_arguments.delta", self._next(),
                                 {"item_id": item.id, "output_index": item.index, "delta": fn.arguments}))  # fmt: skip
        return out

    def _reasoning(self, fragment: JsonObject) -> list[bytes]:
        out: list[bytes] = []
        item = self._open
        if item is None or item.kind != "reasoning":
            item, out = self._add("reasoning", f"rs_{self._suffix}_{len(self._items)}")
            added = {"id": item.id, "type": "reasoning", "summary": [], "status": "in_progress"}
            out.append(
                event("response.output_item.added", self._next(), {"output_index": item.index, "item": added})
            )
        merge_reasoning(item.reasoning, fragment)
        return out

    def _close(self) -> list[bytes]:
        item, self._open = self._open, None
        if item is None or item.kind == "function_call":
            return []  # calls stay open for late argument fragments; closed at the end
        return self._close_item(item)

    def _close_item(self, item: _Item) -> list[bytes]:
        out: list[bytes] = []
        status = status_for(self._finish) if self._finish else "completed"
        if item.kind == "message":
            text = "".join(item.parts)
            loc = {"item_id": item.id, "output_index": item.index, "content_index": 0}
            out.append(
                event("response.output_text.done", self._next(), {**loc, "text": text, "logprobs": []})
            )
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            out.append(event("response.content_part.done", self._next(), {**loc, "part": part}))
            item.done = message_item(item.id, text, "".join(item.refusal) or None, status)
        elif item.kind == "function_call":
            args = "".join(item.parts)
            out.append(event("response.function_call_arguments.done", self._next(),
                             {"item_id": item.id, "output_index": item.index, "name": item.name, "arguments": args}))  # fmt: skip
            item.done = call_item(item.id, item.call_id, item.name, args, "completed")
        else:
            item.done = reasoning_item(item.id, item.reasoning, "completed")
        out.append(
            event("response.output_item.done", self._next(), {"output_index": item.index, "item": item.done})
        )
        return out

    def _output(self) -> list[JsonObject]:
        return [i.done for i in self._items if i.done is not None]
