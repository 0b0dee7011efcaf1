"""Streams ⇄ whole answers: assemble a streamed answer for the cache, replay a cached one as a stream.

Replayed streams are canonical chunks; the server renders them in the caller's dialect like any
upstream stream (OpenAI SSE with ``[DONE]``, or Anthropic's events), with the usage chunk last.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sluice.schema.chat import (
    UNSET,
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    FunctionCallDelta,
    JsonObject,
    ResponseMessage,
    ToolCall,
    ToolCallDelta,
    Usage,
)

#: A stream with more choices or tool calls than this is not assembled (and so not cached).
_MAX_PARTS = 128


@dataclass(slots=True)
class _Call:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Choice:
    content: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    calls: dict[int, _Call] = field(default_factory=dict)
    reasoning: list[JsonObject] = field(default_factory=list)
    finish: str | None = None


class StreamAssembler:
    """Fed every chunk of a stream; :meth:`answer` is the whole answer it made, or None when the
    stream cannot be cached (logprobs, too many parts)."""

    __slots__ = ("_choices", "_created", "_fingerprint", "_id", "_model", "_ok", "_usage")

    def __init__(self) -> None:
        self._choices: dict[int, _Choice] = {}
        self._usage: Usage | None = None
        self._id = ""
        self._model = ""
        self._created = 0
        self._fingerprint: str | None = None
        self._ok = True

    def feed(self, chunk: ChatChunk) -> None:
        if chunk.usage is not None:
            self._usage = chunk.usage
        if not self._ok:
            return
        if not self._id:
            self._id, self._model, self._created = chunk.id, chunk.model, chunk.created
            self._fingerprint = chunk.system_fingerprint
        for c in chunk.choices:
            self._feed_choice(c)

    def _feed_choice(self, c: ChunkChoice) -> None:
        choice = self._choices.get(c.index)
        if choice is None:
            if len(self._choices) >= _MAX_PARTS:
                self._ok = False
                return
            choice = self._choices[c.index] = _Choice()
        if c.logprobs is not UNSET:
            self._ok = False
        d = c.delta
        if d.content:
            choice.content.append(d.content)
        if d.refusal:
            choice.refusal.append(d.refusal)
        if d.reasoning:
            choice.reasoning.extend(d.reasoning)
        for t in d.tool_calls or ():
            self._feed_call(choice, t)
        if c.finish_reason is not None:
            choice.finish = c.finish_reason

    def _feed_call(self, choice: _Choice, t: ToolCallDelta) -> None:
        call = choice.calls.get(t.index)
        if call is None:
            if len(choice.calls) >= _MAX_PARTS:
                self._ok = False
                return
            call = choice.calls[t.index] = _Call()
        if t.id:
            call.id = t.id
        if t.function is not None:
            if t.function.name:
                call.name = t.function.name
            if t.function.arguments:
                call.arguments.append(t.function.arguments)

    def answer(self) -> ChatResponse | None:
        if not self._ok or not self._choices:
            return None
        choices = [self._choice(i, c) for i, c in sorted(self._choices.items())]
        return ChatResponse(
            id=self._id, created=self._created, model=self._model, choices=choices, usage=self._usage,
            system_fingerprint=self._fingerprint,
        )  # fmt: skip

    @staticmethod
    def _choice(index: int, c: _Choice) -> Choice:
        calls = [
            ToolCall(id=call.id, function=FunctionCall(name=call.name, arguments="".join(call.arguments)))
            for _, call in sorted(c.calls.items())
        ]
        message = ResponseMessage(
            content="".join(c.content) if c.content or not calls else None,
            refusal="".join(c.refusal) if c.refusal else None,
            tool_calls=calls or None,
            reasoning=c.reasoning or None,
        )
        return Choice(index=index, message=message, finish_reason=c.finish)


async def replay(resp: ChatResponse) -> AsyncIterator[ChatChunk]:
    """A whole answer as the chunks an upstream would have streamed: per choice the role, its
    reasoning, content, refusal and tool calls, then the finish reason; the usage chunk last."""
    rid, created, model = resp.id, resp.created, resp.model
    for choice in resp.choices:
        for delta in _deltas(choice.message):
            one = ChunkChoice(index=choice.index, delta=delta)
            yield ChatChunk(id=rid, created=created, model=model, choices=[one])
        last = ChunkChoice(index=choice.index, delta=Delta(), finish_reason=choice.finish_reason)
        yield ChatChunk(id=rid, created=created, model=model, choices=[last])
    if resp.usage is not None:
        yield ChatChunk(id=rid, created=created, model=model, choices=[], usage=resp.usage)


def _deltas(m: ResponseMessage) -> list[Delta]:
    out = [Delta(role="assistant", content="")]
    if isinstance(m.reasoning, list) and m.reasoning:
        out.append(Delta(reasoning=list(m.reasoning)))
    if m.content:
        out.append(Delta(content=m.content))
    if m.refusal:
        out.append(Delta(refusal=m.refusal))
    if isinstance(m.tool_calls, list):
        for i, call in enumerate(m.tool_calls):
            fn = FunctionCallDelta(name=call.function.name, arguments=call.function.arguments)
            out.append(Delta(tool_calls=[ToolCallDelta(index=i, id=call.id, type="function", function=fn)]))
    return out
