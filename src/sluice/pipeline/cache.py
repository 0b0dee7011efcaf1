"""Cache middleware: answer from the response cache, or call on and keep the answer.

It sits after the quotas (a hit is admitted like any request, so it counts against requests/min;
the quotas then settle it at zero tokens and zero cost, so it takes nothing from tokens/min or a
budget) and before routing's upstream calls. Only routes with a ``cache:`` block are cached;
``ttl_s: 0`` and ``Cache-Control: no-store`` neither read nor write, ``no-cache`` writes only.

Response headers: ``x-sluice-cache: hit | miss | bypass`` and, on a hit, ``age``; a malformed
cache header is named in ``x-sluice-cache-warning``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from sluice.cache.controls import parse_controls
from sluice.cache.entry import (
    CacheEntry,
    Kind,
    chat_answer,
    decode_entry,
    embedding_answer,
    encode_answer,
    encode_entry,
    storable,
)
from sluice.cache.keys import KeyParts, chat_body, derive, embedding_body, namespace, partition
from sluice.cache.replay import StreamAssembler, replay
from sluice.cache.store import CacheStore
from sluice.config.cache import CacheConfig
from sluice.config.routing import RouteConfig
from sluice.schema.chat import ChatChunk, ChatResponse, Usage
from sluice.schema.context import CallNext, ChunkStream, RequestContext, Result
from sluice.schema.embeddings import EmbeddingResponse

log = logging.getLogger("sluice.cache")

#: (served model, provider, usage) -> what the answer cost in USD, None when the price is unknown.
AnswerCost = Callable[[str | None, str | None, Usage | None], float | None]
HEADER = "x-sluice-cache"


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    ttl_s: float
    version: int


@dataclass(slots=True)
class Counters:
    hits: int = 0
    misses: int = 0
    bypass: int = 0
    writes: int = 0


class ResponseCache:
    def __init__(
        self,
        config: CacheConfig,
        routes: Sequence[RouteConfig],
        store: CacheStore,
        answer_cost: AnswerCost,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self._cost = answer_cost
        self._clock = clock
        self._routes = {
            r.name: RoutePolicy(r.cache.ttl_s if r.cache.ttl_s is not None else config.ttl_s, r.cache.version)
            for r in routes
            if r.cache is not None
        }
        self._scope = config.semantic.scope
        self.counters: dict[tuple[str, str], Counters] = {}
        self._writes: set[asyncio.Task[None]] = set()

    def policy(self, route: str | None) -> RoutePolicy | None:
        return self._routes.get(route) if route is not None else None

    async def __call__(self, ctx: RequestContext, call_next: CallNext) -> Result:
        policy = self.policy(ctx.route)
        principal = ctx.principal
        if policy is None or principal is None or ctx.route is None:
            return await call_next(ctx)
        controls = parse_controls(ctx.cache_control, ctx.cache_threshold)
        if controls.warning is not None:
            ctx.response_headers["x-sluice-cache-warning"] = controls.warning
        counters = self._counters(ctx.route, principal.team)
        key = self._key(ctx, policy) if policy.ttl_s > 0 and controls.write else None
        if key is None:
            ctx.response_headers[HEADER] = "bypass"
            counters.bypass += 1
            return await call_next(ctx)
        if controls.read:
            hit = await self._lookup(ctx, key)
            if hit is not None:
                counters.hits += 1
                return hit
            ctx.response_headers[HEADER] = "miss"
            counters.misses += 1
        else:
            ctx.response_headers[HEADER] = "bypass"
            counters.bypass += 1
        result = await call_next(ctx)
        return self._keep(ctx, key, policy.ttl_s, result, counters)

    def _counters(self, route: str, team: str) -> Counters:
        c = self.counters.get((route, team))
        if c is None:
            c = self.counters[(route, team)] = Counters()
        return c

    def _key(self, ctx: RequestContext, policy: RoutePolicy) -> str | None:
        assert ctx.principal is not None and ctx.route is not None
        if ctx.chat is not None:
            if ctx.chat.logprobs:
                return None  # streamed logprobs are not replayed exactly: never cached
            endpoint, body = "chat", chat_body(ctx.chat)
        elif ctx.embedding is not None:
            endpoint, body = "embeddings", embedding_body(ctx.embedding)
        else:
            return None
        parts = KeyParts(
            endpoint=endpoint, route=ctx.route, model=ctx.routed_model or ctx.requested_model,
            part=partition(self._scope, ctx.principal), version=self.config.version,
            route_version=policy.version,
        )  # fmt: skip
        return derive(parts, body)

    # ------------------------------------------------------------------ reading

    async def _lookup(self, ctx: RequestContext, key: str) -> Result | None:
        data = await self.store.get(key)
        entry = decode_entry(data) if data is not None else None
        if entry is None or entry.expires_at <= self._clock():
            return None
        want: Kind = "chat" if ctx.chat is not None else "embeddings"
        if entry.kind != want:
            return None
        ctx.cache, ctx.saved_usd = "exact", entry.cost_usd
        ctx.served_model, ctx.provider = entry.served_model, entry.provider
        ctx.response_headers[HEADER] = "hit"
        ctx.response_headers["age"] = str(max(0, int(self._clock() - entry.stored_at)))
        if want == "embeddings":
            return embedding_answer(entry)
        answer = chat_answer(entry)
        ctx.usage = answer.usage
        if ctx.chat is not None and ctx.chat.stream:
            return ChunkStream(replay(answer))
        return answer

    # ------------------------------------------------------------------ writing

    def _keep(
        self, ctx: RequestContext, key: str, ttl_s: float, result: Result, counters: Counters
    ) -> Result:
        if isinstance(result, ChunkStream):
            result.chunks = self._tee(ctx, key, ttl_s, result.chunks, counters)
            return result
        if isinstance(result, ChatResponse) and not storable(result):
            return result
        usage = result.usage if isinstance(result, ChatResponse) else _embedding_usage(result)
        self._write(ctx, key, ttl_s, result, usage, counters)
        return result

    async def _tee(
        self,
        ctx: RequestContext,
        key: str,
        ttl_s: float,
        chunks: AsyncIterator[ChatChunk],
        counters: Counters,
    ) -> AsyncIterator[ChatChunk]:
        """Relay the stream; keep it only if it reached its end with a terminal finish reason.
        An error, a cut or a stop by the quotas ends this generator early: nothing is kept."""
        assembler = StreamAssembler()
        try:
            async for chunk in chunks:
                assembler.feed(chunk)
                yield chunk
        finally:
            closer = getattr(chunks, "aclose", None)
            if closer is not None:
                await closer()
        answer = assembler.answer()
        if answer is not None and ctx.error is None and storable(answer):
            self._write(ctx, key, ttl_s, answer, answer.usage, counters)

    def _write(
        self, ctx: RequestContext, key: str, ttl_s: float, answer: ChatResponse | EmbeddingResponse,
        usage: Usage | None, counters: Counters,
    ) -> None:  # fmt: skip
        now = self._clock()
        entry = CacheEntry(
            kind="chat" if isinstance(answer, ChatResponse) else "embeddings", body=encode_answer(answer),
            stored_at=now, expires_at=now + ttl_s, cost_usd=self._cost(ctx.served_model, ctx.provider, usage),
            served_model=ctx.served_model, provider=ctx.provider,
        )  # fmt: skip
        data = encode_entry(entry)
        if len(data) > self.config.max_entry_bytes:
            return
        counters.writes += 1
        self._spawn(self.store.put(key, data, ttl_s))

    def _spawn(self, write: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(write)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    # ------------------------------------------------------------------ admin

    async def stats(self, route: str | None = None, team: str | None = None) -> dict[str, Any]:
        r, t = namespace(route, team)
        held = await self.store.stats(r, t)
        total = Counters()
        for (c_route, c_team), c in self.counters.items():
            if (route is None or c_route == route) and (team is None or c_team == team):
                total.hits += c.hits
                total.misses += c.misses
                total.bypass += c.bypass
                total.writes += c.writes
        looked = total.hits + total.misses
        return {
            "backend": self.store.name, "route": route, "team": team, "entries": held.entries,
            "bytes": held.bytes, "max_bytes": self.config.max_bytes, "hits": total.hits,
            "misses": total.misses, "bypass": total.bypass, "writes": total.writes,
            "hit_rate": round(total.hits / looked, 4) if looked else None,
        }  # fmt: skip

    async def clear(self, route: str | None = None, team: str | None = None) -> int:
        r, t = namespace(route, team)
        return await self.store.clear(r, t)

    async def close(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self.store.close()


def _embedding_usage(resp: EmbeddingResponse) -> Usage:
    u = resp.usage
    return Usage(prompt_tokens=u.prompt_tokens, total_tokens=u.total_tokens or u.prompt_tokens)
