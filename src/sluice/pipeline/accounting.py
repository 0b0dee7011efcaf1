"""One record per request: identity, models, tokens, cost, latency, time to first token, errors.

Records are handed to the :class:`RecordWriter` (a non-blocking append); the database is written in
batches by its background task, never on the request's path. Streams are wrapped so the record is
made when the stream ends however it ends: completed, failed upstream, or cut by the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import msgspec

from sluice.errors import SluiceError
from sluice.pricing import Price, PriceBook, cost, from_nano_usd, to_nano_usd
from sluice.schema.chat import ChatChunk, ChatResponse, CompletionTokensDetails, PromptTokensDetails, Usage
from sluice.schema.context import CallNext, ChunkStream, RequestContext, Result
from sluice.schema.embeddings import EmbeddingResponse
from sluice.store.records import RequestRecord
from sluice.store.writer import RecordWriter
from sluice.telemetry.logs import bind_request
from sluice.telemetry.metrics import METRICS
from sluice.telemetry.tracing import TRACING, RequestTrace, trace_id_of

access_log = logging.getLogger("sluice.access")
_encode = msgspec.json.Encoder().encode

#: Status recorded when the caller went away before the answer was complete (nginx's convention).
CLIENT_CLOSED = 499


class Accounting:
    def __init__(
        self,
        writer: RecordWriter,
        prices: PriceBook,
        provider_types: Mapping[str, str],
        *,
        log_access: bool,
        policy_version: str | None = None,
    ) -> None:
        self._writer = writer
        #: The policy this accounting belongs to: its records carry the version (one per reload).
        self._policy_version = policy_version
        self._prices = prices
        self._provider_types = provider_types
        self._log_access = log_access
        #: Each price's rates as the record keeps them, by the price's identity (kept alive here).
        self._rates: dict[int, tuple[Price, dict[str, str]]] = {}

    async def middleware(self, ctx: RequestContext, call_next: CallNext) -> Result:
        rt = TRACING.begin(ctx)
        bind_request(ctx.request_id, rt.trace_id_hex if rt is not None else trace_id_of(ctx))
        try:
            result = await call_next(ctx)
        except SluiceError as exc:
            self.fail(ctx, exc)
            raise
        except Exception:
            self.fail(ctx, SluiceError("internal gateway error"))  # answered 500 by the dispatcher
            raise
        except BaseException:
            ctx.status = CLIENT_CLOSED
            self.finish(ctx)
            raise
        if isinstance(result, ChunkStream):
            return ChunkStream(self._metered(ctx, result.chunks))
        if isinstance(result, ChatResponse):
            ctx.usage = result.usage
            if rt is not None:
                rt.finish_reasons.extend(c.finish_reason for c in result.choices if c.finish_reason)
        elif isinstance(result, EmbeddingResponse):
            u = result.usage
            ctx.usage = Usage(prompt_tokens=u.prompt_tokens, total_tokens=u.total_tokens)
        self.finish(ctx)
        return result

    async def _metered(
        self, ctx: RequestContext, chunks: AsyncIterator[ChatChunk]
    ) -> AsyncIterator[ChatChunk]:
        done = False
        rt = ctx.trace if isinstance(ctx.trace, RequestTrace) else None
        try:
            async for chunk in chunks:
                if chunk.choices:
                    if ctx.first_token_at is None:
                        ctx.first_token_at = time.perf_counter()
                    if rt is not None:
                        for c in chunk.choices:  # set on the last chunk only: no allocation per chunk
                            if c.finish_reason:
                                rt.finish_reasons.append(c.finish_reason)
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
        ctx.finished_at = now
        record = self._record(ctx, now)
        self._writer.submit(record)
        METRICS.observe_request(record, ctx.attempts)
        trace_id = trace_id_of(ctx)
        TRACING.finish(ctx, record)
        if self._log_access:
            line = _access_line(record)
            line["trace_id"] = trace_id
            access_log.info("access", extra={"event": line})

    def _charge(
        self, model: str, provider: str, usage: Usage, at: float
    ) -> tuple[int | None, dict[str, object]]:
        """The exact cost in nano-USD at the price in force ``at`` (None = unpriced), and that price."""
        price = self._prices.lookup(model, self._provider_types.get(provider), at)
        ref: dict[str, object] = {"model": model, "provider": provider}
        if price is None:
            return None, ref | {"source": "unpriced"}
        rates = self._rates.get(id(price))
        if rates is None:  # a price book's prices live as long as it: format each one's rates once
            rates = self._rates[id(price)] = (price, price.rates())
        ref |= {"source": price.source, "effective_from": price.effective_from, "rates": rates[1]}
        return to_nano_usd(cost(usage, price)), ref

    def _bill(self, ctx: RequestContext) -> _Bill:
        """Tokens and cost: the sum of what each attempt was billed (routing records it per attempt;
        one answer is billed once), else the answer's usage at the served model's price. Any billed
        attempt without a price leaves the whole request unpriced: a partial sum would read as exact."""
        billed = [a for a in ctx.attempts if a.usage is not None]
        if not billed:
            if ctx.usage is None or ctx.served_model is None or ctx.provider is None:
                return _Bill(ctx.usage, None, [], estimated=False)
            nusd, ref = self._charge(ctx.served_model, ctx.provider, ctx.usage, ctx.started_wall)
            return _Bill(ctx.usage, nusd, [ref], estimated=False)
        total: int | None = 0
        refs: list[dict[str, object]] = []
        for a in billed:
            assert a.usage is not None
            a.cost_nusd, ref = self._charge(a.model, a.provider, a.usage, ctx.started_wall)
            refs.append(ref)  # kept once, in the record's prices (in attempt order), not per attempt
            total = None if total is None or a.cost_nusd is None else total + a.cost_nusd
        estimated = any(a.estimated for a in billed)
        if len(billed) == 1:
            return _Bill(billed[0].usage, total, refs, estimated)
        return _Bill(_sum_usage([a.usage for a in billed if a.usage is not None]), total, refs, estimated)

    def _record(self, ctx: RequestContext, now: float) -> RequestRecord:
        # A cache hit used no tokens and cost nothing (what it saved is ctx.saved_usd).
        bill = self._bill(ctx) if ctx.cache is None else _Bill(None, 0, [], estimated=False)
        usage = bill.usage or Usage()
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
            cost_usd=float(from_nano_usd(bill.nusd)) if bill.nusd is not None else None,
            latency_ms=(now - ctx.started) * 1000.0,
            ttft_ms=(ctx.first_token_at - ctx.started) * 1000.0 if ctx.first_token_at else None,
            attempts=len(ctx.attempts),
            attempts_detail=_encode(ctx.attempts).decode(),  # dataclasses encode natively
            note=ctx.note,
            route_reason=ctx.route_reason,
            shadow_of=ctx.shadow_of,
            comparison=ctx.comparison,
            cost_nusd=bill.nusd,
            prices=_encode(bill.prices).decode() if bill.prices else None,
            cost_estimated=bill.estimated,
            policy_version=self._policy_version,
            guardrails=ctx.guardrails,
            request_body=ctx.request_body,
            response_body=ctx.response_body,
            cache=ctx.cache,
            saved_usd=ctx.saved_usd,
        )


@dataclass(slots=True)
class _Bill:
    usage: Usage | None
    #: Exact cost in nano-USD; None = unpriced (or nothing billed).
    nusd: int | None
    prices: list[dict[str, object]]
    estimated: bool


def _sum_usage(items: list[Usage]) -> Usage:
    """Every token class summed, so a retried request's cached and reasoning tokens are kept."""
    p = sum(u.prompt_tokens for u in items)
    c = sum(u.completion_tokens for u in items)
    return Usage(
        prompt_tokens=p, completion_tokens=c, total_tokens=p + c,
        prompt_tokens_details=PromptTokensDetails(
            cached_tokens=sum(u.cached_tokens for u in items),
            cache_write_tokens=sum(u.cache_write_tokens for u in items),
            cache_write_1h_tokens=sum(u.cache_write_1h_tokens for u in items),
        ),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=sum(u.reasoning_tokens for u in items)),
    )  # fmt: skip


def _access_line(r: RequestRecord) -> dict[str, object]:
    return {
        "request_id": r.id, "key_id": r.key_id, "team": r.team, "user": r.user, "model": r.requested_model,
        "served_model": r.served_model, "provider": r.provider, "route": r.route, "status": r.status,
        "error_source": r.error_source, "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens, "cost_usd": r.cost_usd,
        "latency_ms": round(r.latency_ms, 3), "ttft_ms": r.ttft_ms, "attempts": r.attempts,
    }  # fmt: skip
