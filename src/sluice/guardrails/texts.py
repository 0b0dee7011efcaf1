"""Every text a request or an answer carries, as slots a guardrail can read and rewrite in place.

Both ingress dialects arrive here as the canonical request, so one walk covers them: message content
(a string or text/refusal parts), system and developer prompts, tool results (``tool`` messages),
an assistant's refusal and tool-call arguments; an embeddings request's input strings; an answer's
content, refusal and tool-call arguments.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from sluice.schema.chat import ChatRequest, ChatResponse, RefusalPart, TextPart
from sluice.schema.embeddings import EmbeddingRequest

#: (object, attribute) or (list, index): ``get``/``put`` read and write the text there.
Slot: TypeAlias = tuple[Any, str | int]


def get(slot: Slot) -> str:
    owner, key = slot
    return owner[key] if isinstance(key, int) else getattr(owner, key)  # type: ignore[no-any-return]


def put(slot: Slot, text: str) -> None:
    owner, key = slot
    if isinstance(key, int):
        owner[key] = text
    else:
        setattr(owner, key, text)


def request_slots(chat: ChatRequest) -> list[tuple[str, Slot]]:
    """(role, slot) for every text of a chat request, in order."""
    out: list[tuple[str, Slot]] = []
    for m in chat.messages:
        content = m.content
        if isinstance(content, str):
            if content:
                out.append((m.role, (m, "content")))
        elif content is not None:
            for part in content:
                if isinstance(part, TextPart):
                    out.append((m.role, (part, "text")))
                elif isinstance(part, RefusalPart):
                    out.append((m.role, (part, "refusal")))
        if m.refusal:
            out.append((m.role, (m, "refusal")))
        for call in m.tool_calls or ():
            out.append(("tool_call", (call.function, "arguments")))
    return out


def embedding_slots(req: EmbeddingRequest) -> list[tuple[str, Slot]]:
    if isinstance(req.input, str):
        return [("user", (req, "input"))]
    return [("user", (req.input, i)) for i, item in enumerate(req.input) if isinstance(item, str)]


def response_slots(resp: ChatResponse) -> list[Slot]:
    out: list[Slot] = []
    for choice in resp.choices:
        msg = choice.message
        if msg.content:
            out.append((msg, "content"))
        if msg.refusal:
            out.append((msg, "refusal"))
        if isinstance(msg.tool_calls, list):
            out.extend((call.function, "arguments") for call in msg.tool_calls)
    return out
