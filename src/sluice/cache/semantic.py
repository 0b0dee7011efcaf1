"""The semantic cache's lookups and learning, over an :class:`Embedder` and a :class:`VectorIndex`.

Only the last user turn is embedded; everything else in the request (system prompt, earlier turns,
tools, sampling parameters, model) goes, with the scope, route and versions, into the *bucket* — an
exact digest — so it must match exactly for a semantic hit. So does the last turn's *guard*: the
numbers it contains and its negation polarity, because a sentence embedding barely tells "5 miles"
from "12 miles" or "contains" from "does not contain" (see docs/cache.md for the measured effect).
Answers with tool calls are never indexed, so never served semantically. An embedder failure is a
miss, logged once per outage.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from sluice.cache.keys import KeyParts, chat_body, derive
from sluice.schema.chat import ChatRequest, ChatResponse, Message, TextPart

if TYPE_CHECKING:  # NumPy comes with the 'semantic' extra; the exact cache runs without it
    from sluice.cache.embedders import Embedder, Vector
    from sluice.cache.redis_feed import RedisVectorFeed
    from sluice.schema.context import RequestContext

log = logging.getLogger("sluice.cache")
_HOLE = "\x00last user turn\x00"
_NUMBER = re.compile(r"\d+(?:[.,:/-]\d+)*")
_NEGATION = re.compile(
    r"\b(?:not|no|never|none|nor|neither|without|cannot|nothing|nobody|nowhere)\b|n't\b", re.IGNORECASE
)
#: Longer last turns are not embedded (and so not served semantically): the model reads 256 tokens.
MAX_TEXT_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Probe:
    """One request's semantic identity: its bucket and the text that is embedded."""

    bucket: str
    text: str


def probe(parts: KeyParts, req: ChatRequest) -> Probe | None:
    """None when the request cannot be matched semantically (the last turn is not plain user text)."""
    if not req.messages:
        return None
    last = req.messages[-1]
    if last.role != "user" or last.content is None:
        return None
    if not isinstance(last.content, str) and not all(isinstance(p, TextPart) for p in last.content):
        return None
    text = last.text().strip()
    if not text or len(text) > MAX_TEXT_CHARS:
        return None
    holed = msgspec.structs.replace(
        req, messages=[*req.messages[:-1], Message(role="user", content=_HOLE + guard(text))]
    )
    return Probe(derive(_semantic(parts), chat_body(holed)), text)


def guard(text: str) -> str:
    """What must be equal besides the meaning: the numbers in the text, and its negation parity."""
    numbers = ",".join(sorted(_NUMBER.findall(text)))
    return f"{numbers}|{len(_NEGATION.findall(text)) % 2}"


def _semantic(parts: KeyParts) -> KeyParts:
    return KeyParts(
        endpoint="chat~semantic", route=parts.route, model=parts.model, part=parts.part,
        version=parts.version, route_version=parts.route_version,
    )  # fmt: skip


def servable(answer: ChatResponse) -> bool:
    return not any(isinstance(c.message.tool_calls, list) and c.message.tool_calls for c in answer.choices)


class SemanticCache:
    def __init__(self, embedder: Embedder, max_vectors: int, feed: RedisVectorFeed | None = None) -> None:
        from sluice.cache.vectors import VectorIndex

        self.embedder = embedder
        self.index = VectorIndex(max_vectors)
        self.feed = feed
        self._failing = False
        if feed is not None:
            feed.start(self.index)

    async def vector(self, text: str, ctx: RequestContext | None = None) -> Vector | None:
        try:
            vec = await self.embedder.embed(text, ctx)
        except Exception as exc:  # any embedder failure is a miss, never a failed request
            if not self._failing:
                self._failing = True
                log.warning("cache: embedder %s failed (%s): semantic lookups miss until it works",
                            self.embedder.name, type(exc).__name__)  # fmt: skip
            return None
        if self._failing:
            self._failing = False
            log.warning("cache: embedder %s works again", self.embedder.name)
        return vec

    def nearest(self, p: Probe, vec: Vector, threshold: float, now: float) -> tuple[str, float] | None:
        return self.index.nearest(p.bucket, vec, threshold, now)

    async def learn(self, p: Probe, vec: Vector, key: str, expires_at: float) -> None:
        """Index the entry here, and (with Redis) on every other replica."""
        self.index.add(p.bucket, vec, key, expires_at)
        if self.feed is not None:
            await self.feed.publish(p.bucket, key, vec, expires_at)

    def forget(self, p: Probe, key: str) -> None:
        self.index.remove(p.bucket, key)

    async def close(self) -> None:
        if self.feed is not None:
            await self.feed.close()
        close = getattr(self.embedder, "close", None)
        if close is not None:
            close()
