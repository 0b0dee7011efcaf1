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
from typing import TYPE_CHECKING, Any

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
from sluice.cache.semantic import Probe, SemanticCache, probe, servable
from sluice.cache.store import CacheStore, MemoryStore
from sluice.config.cache import CacheConfig, RouteCacheConfig
from sluice.config.routing import RouteConfig
from sluice.schema.chat import ChatChunk, ChatResponse, Usage
from sluice.schema.context import CallNext, ChunkStream, RequestContext, Result
from sluice.schema.embeddings import EmbeddingResponse
from sluice.telemetry.metrics import METRICS
from sluice.telemetry.tracing import note_cache

if TYPE_CHECKING:  # NumPy is needed only by the semantic cache (the 'semantic' extra)
    from sluice.cache.embedders import Vector

log = logging.getLogger("sluice.cache")

#: (served model, provider, usage) -> what the answer cost in USD, None when the price is unknown.
AnswerCost = Callable[[str | None, str | None, Usage | None], float | None]
HEADER = "x-sluice-cache"
#: Store keys naming the entry each request was answered from or wrote (``req/<request id>``: two
#: parts, so never taken for a ``route/team/digest`` entry by ``clear`` or ``stats``).
ANSWERED = "req/"


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    ttl_s: float
    version: int
    #: The route's semantic threshold (None = no semantic lookups on this route).
    threshold: float | None = None


@dataclass(slots=True)
class _Sem:
    """A request's semantic side: its probe, and its vector once embedded."""

    probe: Probe
    vector: Vector | None = None


@dataclass(slots=True)
class Counters:
    hits: int = 0
    misses: int = 0
    bypass: int = 0
    writes: int = 0
    semantic_hits: int = 0


class ResponseCache:
    def __init__(
        self,
        config: CacheConfig,
        routes: Sequence[RouteConfig],
        store: CacheStore,
        answer_cost: AnswerCost,
        clock: Callable[[], float] = time.time,
        semantic: SemanticCache | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.semantic = semantic
        self._cost = answer_cost
        self._clock = clock
        self._routes = {r.name: self._route_policy(r.cache) for r in routes if r.cache is not None}
        self._scope = config.semantic.scope
        self.counters: dict[tuple[str, str], Counters] = {}
        self._writes: set[asyncio.Task[None]] = set()
        self._get_failed = False
        #: Handed to the cache of a reloaded policy: ``close`` leaves them open for it.
        self._store_handed = self._semantic_handed = False

    def hand_over(self, *, keep_semantic: bool) -> None:
        """A reloaded policy's cache took this one's store (and, if ``keep_semantic``, its
        semantic index): this one's ``close`` must not close them."""
        self._store_handed, self._semantic_handed = True, keep_semantic

    def _route_policy(self, c: RouteCacheConfig) -> RoutePolicy:
        ttl = c.ttl_s if c.ttl_s is not None else self.config.ttl_s
        threshold = None
        if c.semantic and self.config.semantic.enabled and self.semantic is not None:
            threshold = c.threshold if c.threshold is not None else self.config.semantic.threshold
        return RoutePolicy(ttl, c.version, threshold)

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
        keyed = self._key(ctx, policy) if policy.ttl_s > 0 and controls.write else None
        if keyed is None:
            _mark(ctx, "bypass")
            counters.bypass += 1
            return await call_next(ctx)
        key, sem = keyed
        if controls.read:
            hit = await self._lookup(ctx, key)
            if hit is None and sem is not None:
                assert policy.threshold is not None
                hit = await self._semantic_lookup(ctx, sem, max(policy.threshold, controls.threshold or 0.0))
            if hit is not None:
                counters.hits += 1
                counters.semantic_hits += ctx.cache == "semantic"
                return hit
            _mark(ctx, "miss")
            counters.misses += 1
        else:
            _mark(ctx, "bypass")
            counters.bypass += 1
        result = await call_next(ctx)
        return self._keep(ctx, key, policy.ttl_s, result, counters, sem)

    def _counters(self, route: str, team: str) -> Counters:
        c = self.counters.get((route, team))
        if c is None:
            c = self.counters[(route, team)] = Counters()
        return c

    def _key(self, ctx: RequestContext, policy: RoutePolicy) -> tuple[str, _Sem | None] | None:
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
        sem = None
        if policy.threshold is not None and ctx.chat is not None:
            found = probe(parts, ctx.chat)
            sem = _Sem(found) if found is not None else None
        return derive(parts, body), sem

    # ------------------------------------------------------------------ reading

    async def _lookup(self, ctx: RequestContext, key: str, similarity: float | None = None) -> Result | None:
        try:
            data = await self.store.get(key)
        except Exception as exc:  # a store must not raise here; if one does, it is a miss
            if not self._get_failed:
                self._get_failed = True
                log.warning(
                    "cache: %s lookup failed (%s): treated as a miss", self.store.name, type(exc).__name__
                )
            return None
        entry = decode_entry(data) if data is not None else None
        if entry is None or entry.expires_at <= self._clock():
            return None
        want: Kind = "chat" if ctx.chat is not None else "embeddings"
        if entry.kind != want:
            return None
        if want == "embeddings":
            emb = embedding_answer(entry)
            self._hit(ctx, key, entry, None, _embedding_usage(emb))
            return emb
        answer = chat_answer(entry)
        if similarity is not None and not servable(answer):
            return None
        self._hit(ctx, key, entry, similarity, answer.usage)
        ctx.usage = answer.usage
        if ctx.chat is not None and ctx.chat.stream:
            return ChunkStream(replay(answer))
        return answer

    def _hit(
        self, ctx: RequestContext, key: str, entry: CacheEntry, similarity: float | None, usage: Usage | None
    ) -> None:
        # What the answer would have cost: its usage at the served model's price (priced here, on
        # the hit, so a miss does not pay for it).
        ctx.saved_usd = self._cost(entry.served_model, entry.provider, usage)
        ctx.cache = "exact" if similarity is None else "semantic"
        ctx.served_model, ctx.provider = entry.served_model, entry.provider
        self._remember(ctx.request_id, key, entry.expires_at)
        _mark(ctx, "hit" if similarity is None else "semantic-hit")
        if similarity is not None:
            ctx.response_headers["x-sluice-cache-similarity"] = f"{similarity:.4f}"
        ctx.response_headers["age"] = str(max(0, int(self._clock() - entry.stored_at)))

    async def _semantic_lookup(self, ctx: RequestContext, sem: _Sem, threshold: float) -> Result | None:
        assert self.semantic is not None
        sem.vector = await self.semantic.vector(sem.probe.text, ctx)
        if sem.vector is None:
            return None
        found = await asyncio.to_thread(
            self.semantic.nearest, sem.probe, sem.vector, threshold, self._clock()
        )
        if found is None:
            return None
        key, similarity = found
        hit = await self._lookup(ctx, key, similarity)
        if hit is None:
            self.semantic.forget(sem.probe, key)  # its entry expired or was evicted
        return hit

    # ------------------------------------------------------------------ writing

    def _keep(
        self,
        ctx: RequestContext,
        key: str,
        ttl_s: float,
        result: Result,
        counters: Counters,
        sem: _Sem | None,
    ) -> Result:
        if isinstance(result, ChunkStream):
            result.chunks = self._tee(ctx, _Write(key, ttl_s, counters, sem), result.chunks)
            return result
        if isinstance(result, ChatResponse) and not storable(result):
            return result
        self._write(ctx, _Write(key, ttl_s, counters, sem), result)
        return result

    async def _tee(
        self, ctx: RequestContext, w: _Write, chunks: AsyncIterator[ChatChunk]
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
            self._write(ctx, w, answer)

    def _write(self, ctx: RequestContext, w: _Write, answer: ChatResponse | EmbeddingResponse) -> None:
        now = self._clock()
        entry = CacheEntry(
            kind="chat" if isinstance(answer, ChatResponse) else "embeddings", body=encode_answer(answer),
            stored_at=now, expires_at=now + w.ttl_s, served_model=ctx.served_model, provider=ctx.provider,
        )  # fmt: skip
        data = encode_entry(entry)
        if len(data) > self.config.max_entry_bytes:
            return
        w.counters.writes += 1
        self._remember(ctx.request_id, w.key, entry.expires_at)
        sem = w.sem if w.sem is not None and isinstance(answer, ChatResponse) and servable(answer) else None
        if sem is None and isinstance(self.store, MemoryStore):
            self.store.put_now(w.key, data, w.ttl_s)  # no I/O: no task
        else:
            self._spawn(self._put(ctx, w.key, data, w.ttl_s, entry.expires_at, sem))

    async def _put(
        self, ctx: RequestContext, key: str, data: bytes, ttl_s: float, expires_at: float, sem: _Sem | None
    ) -> None:
        await self.store.put(key, data, ttl_s)
        if sem is None or self.semantic is None:
            return
        vec = sem.vector if sem.vector is not None else await self.semantic.vector(sem.probe.text, ctx)
        if vec is not None:
            await self.semantic.learn(sem.probe, vec, key, expires_at)

    def _remember(self, request_id: str, key: str, expires_at: float) -> None:
        """Which entry answered (or was written by) a request, for as long as the entry lives, so
        negative feedback on that request can evict it (on every replica, with Redis)."""
        ttl = expires_at - self._clock()
        if isinstance(self.store, MemoryStore):
            self.store.put_now(ANSWERED + request_id, key.encode(), ttl)
        else:
            self._spawn(self.store.put(ANSWERED + request_id, key.encode(), ttl))

    async def evict_answer(self, request_id: str) -> bool:
        """Drop the cached answer a request got or wrote (negative feedback on it). True if an
        entry was dropped; a store that cannot be reached raises ServiceUnavailable."""
        key = await self.store.get(ANSWERED + request_id)
        if key is None:
            return False
        await self.store.delete(ANSWERED + request_id)
        return await self.store.delete(key.decode())

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
                total.semantic_hits += c.semantic_hits
        looked = total.hits + total.misses
        return {
            "backend": self.store.name, "route": route, "team": team, "entries": held.entries,
            "bytes": held.bytes, "max_bytes": self.config.max_bytes, "hits": total.hits,
            "misses": total.misses, "bypass": total.bypass, "writes": total.writes,
            "semantic_hits": total.semantic_hits,
            "semantic_vectors": self.semantic.index.size if self.semantic is not None else None,
            "hit_rate": round(total.hits / looked, 4) if looked else None,
        }  # fmt: skip

    async def clear(self, route: str | None = None, team: str | None = None) -> int:
        r, t = namespace(route, team)
        cleared = await self.store.clear(r, t)
        if self.semantic is not None and route is None and team is None:
            self.semantic.index.clear()  # otherwise its vectors lead to missing entries: dropped as met
        return cleared

    async def close(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if not self._store_handed:
            await self.store.close()
        if self.semantic is not None and not self._semantic_handed:
            await self.semantic.close()


@dataclass(frozen=True, slots=True)
class _Write:
    key: str
    ttl_s: float
    counters: Counters
    sem: _Sem | None


def _embedding_usage(resp: EmbeddingResponse) -> Usage:
    u = resp.usage
    return Usage(prompt_tokens=u.prompt_tokens, total_tokens=u.total_tokens or u.prompt_tokens)


def _mark(ctx: RequestContext, outcome: str) -> None:
    """Say on the response what the cache did, and count it (``sluice_cache_lookups_total``)."""
    ctx.response_headers[HEADER] = outcome
    METRICS.cache_lookup(ctx.route, outcome.replace("-", "_"))
    note_cache(ctx, outcome)
