"""One record per request: identity, models, tokens, cost, latency, time to first token, errors.

Records are handed to the :class:`RecordWriter` (a non-blocking append); the database is written in
batches by its background task, never on the request's path. Streams are wrapped so the record is
made when the stream ends however it ends: completed, failed upstream, or cut by the client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping

import msgspec

from sluice.errors import SluiceError
from sluice.pricing import PriceBook, cost
from sluice.schema.chat import ChatChunk, ChatResponse, Usage
from sluice.schema.context import CallNext, ChunkStream, RequestContext, Result
from sluice.schema.embeddings import EmbeddingResponse
from sluice.store.records import RequestRecord
from sluice.store.writer import RecordWriter

access_log = logging.getLogger("sluice.access")
_encode = msgspec.json.Encoder().encode

#: Status recorded when the caller went away before the answer was complete (nginx's convention).
CLIENT_CLOSED = 499


class Accounting:
    def __init__(
        self, writer: RecordWriter, prices: PriceBook, provider_types: Mapping[str, str], *, log_access: bool
    ) -> None:
        self._writer = writer
        self._prices = prices
        self._provider_types = provider_types
        self._log_access = log_access

    async def middleware(self, ctx: RequestContext, call_next: CallNext) -> Result:
        try:
            result = await call_next(ctx)
        except SluiceError as exc:
            self.fail(ctx, exc)
            raise
        except BaseException:
            ctx.status = CLIENT_CLOSED
            self.finish(ctx)
            raise
        if isinstance(result, ChunkStream):
            return ChunkStream(self._metered(ctx, result.chunks))
        if isinstance(result, ChatResponse):
            ctx.usage = result.usage
        elif isinstance(result, EmbeddingResponse):
            u = result.usage
            ctx.usage = Usage(prompt_tokens=u.prompt_tokens, total_tokens=u.total_tokens)
        self.finish(ctx)
        return result

    async def _metered(
        self, ctx: RequestContext, chunks: AsyncIterator[ChatChunk]
    ) -> AsyncIterator[ChatChunk]:
        done = False
        try:
            async for chunk in chunks:
                if ctx.first_token_at is None and chunk.choices:
                    ctx.first_token_at = time.perf_counter()
                if chunk.usage is not None:
                    ctx.usage = chunk.usage
                yield chunk
            done = True
        except SluiceError as exc:
            ctx.error, ctx.status = exc, exc.status
            raise
        finally:
            if not done and ctx.error is None:
                ctx.status = CLIENT_CLOSED
                ctx.note = ctx.note or "client disconnected before the stream ended"
            closer = getattr(chunks, "aclose", None)
            if closer is not None:
                await asyncio.shield(closer())
            self.finish(ctx)

    def fail(self, ctx: RequestContext, exc: SluiceError) -> None:
        ctx.error, ctx.status = exc, exc.status
        self.finish(ctx)

    def finish(self, ctx: RequestContext) -> None:
        now = time.perf_counter()
        record = self._record(ctx, now)
        self._writer.submit(record)
        if self._log_access:
            access_log.info("%s", json.dumps(_access_line(record), separators=(",", ":")))

    def _cost(self, ctx: RequestContext) -> float | None:
        if ctx.usage is None or ctx.served_model is None or ctx.provider is None:
            return None
        price = self._prices.lookup(ctx.served_model, self._provider_types.get(ctx.provider))
        return float(cost(ctx.usage, price)) if price is not None else None

    def _bill(self, ctx: RequestContext) -> tuple[Usage | None, float | None]:
        """Tokens and cost: the sum of what each attempt was billed (routing records it per attempt;
        one answer is billed once), else the answer's usage at the served model's price."""
        billed = [a for a in ctx.attempts if a.usage is not None]
        if not billed:
            return ctx.usage, self._cost(ctx)
        total: float | None = None
        for a in billed:
            assert a.usage is not None
            price = self._prices.lookup(a.model, self._provider_types.get(a.provider))
            if price is not None:
                a.cost_usd = float(cost(a.usage, price))
                total = (total or 0.0) + a.cost_usd
        if len(billed) == 1:
            return billed[0].usage, total
        return _sum_usage([a.usage for a in billed if a.usage is not None]), total

    def _record(self, ctx: RequestContext, now: float) -> RequestRecord:
        billed_usage, cost_usd = self._bill(ctx) if ctx.cache is None else (None, 0.0)
        usage = billed_usage or Usage()  # a cache hit used no tokens and cost nothing
        principal = ctx.principal
        err = ctx.error
        return RequestRecord(
            id=ctx.request_id,
            ts=ctx.started_wall,
            endpoint=ctx.endpoint,
            key_id=principal.key_id if principal else None,
            team=principal.team if principal else None,
            user=ctx.user,
            tags=list(ctx.tags),
            requested_model=ctx.requested_model or None,
            served_model=ctx.served_model,
            provider=ctx.provider,
            route=ctx.route,
            stream=ctx.stream,
            status=ctx.status,
            error_source=err.source if err is not None else None,
            error_kind=err.kind if err is not None else None,
            error_message=err.message if err is not None else None,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost_usd=cost_usd,
            latency_ms=(now - ctx.started) * 1000.0,
            ttft_ms=(ctx.first_token_at - ctx.started) * 1000.0 if ctx.first_token_at else None,
            attempts=len(ctx.attempts),
            attempts_detail=_encode(ctx.attempts).decode(),  # dataclasses encode natively
            note=ctx.note,
            route_reason=ctx.route_reason,
            shadow_of=ctx.shadow_of,
            comparison=ctx.comparison,
            cache=ctx.cache,
            saved_usd=ctx.saved_usd,
        )


def _sum_usage(items: list[Usage]) -> Usage:
    p = sum(u.prompt_tokens for u in items)
    c = sum(u.completion_tokens for u in items)
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)


def _access_line(r: RequestRecord) -> dict[str, object]:
    return {
        "request_id": r.id, "key_id": r.key_id, "team": r.team, "user": r.user, "model": r.requested_model,
        "served_model": r.served_model, "provider": r.provider, "route": r.route, "status": r.status,
        "error_source": r.error_source, "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens, "cost_usd": r.cost_usd,
        "latency_ms": round(r.latency_ms, 3), "ttft_ms": r.ttft_ms, "attempts": r.attempts,
    }  # fmt: skip
