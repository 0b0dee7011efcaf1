"""The attempt loop: resolve a model to targets, try them in order, fall back on retryable errors.

A streamed answer is committed to a target only once its first chunk arrived: until then a failure
(connection refused, error status, a stream that dies before its first chunk) falls through to the
next target; after it, errors surface in the stream and are never retried.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sluice.config.model import ModelConfig, ProviderConfig
from sluice.errors import BadRequest, NotFound, ProviderError, RateLimited
from sluice.pipeline.context import Attempt, ChunkStream, RequestContext
from sluice.providers.base import ChatAdapter, EmbeddingAdapter, StreamDecoder, Target
from sluice.schema.chat import ChatChunk, ChatRequest, ChatResponse, Usage
from sluice.schema.embeddings import EmbeddingResponse
from sluice.schema.upstream import UpstreamResponse
from sluice.transport.client import Deadline, Transport, UpstreamStream


class AttemptGuard(Protocol):
    """Admission of one upstream attempt (provider-account rate limits). ``admit_attempt`` raises
    ``RateLimited`` to refuse; the handle it returns is settled exactly once, however it ends."""

    async def admit_attempt(self, ctx: RequestContext, provider: str) -> Any: ...

    def settle_attempt(self, handle: Any, usage: Usage | None) -> None: ...

    def meter_attempt_stream(
        self, chunks: AsyncIterator[ChatChunk], handle: Any, ctx: RequestContext
    ) -> AsyncIterator[ChatChunk]: ...


class _NoGuard:
    async def admit_attempt(self, ctx: RequestContext, provider: str) -> None:
        return None

    def settle_attempt(self, handle: Any, usage: Usage | None) -> None:
        return None

    def meter_attempt_stream(
        self, chunks: AsyncIterator[ChatChunk], handle: Any, ctx: RequestContext
    ) -> AsyncIterator[ChatChunk]:
        return chunks


@dataclass(frozen=True, slots=True)
class ModelRoute:
    name: str
    targets: tuple[Target, ...]


class Router:
    def __init__(
        self,
        models: Mapping[str, ModelConfig],
        providers: Mapping[str, ProviderConfig],
        adapters: Mapping[str, ChatAdapter],
        transport: Transport,
        request_timeout_s: float = 600.0,
        guard: AttemptGuard | None = None,
    ) -> None:
        self._request_timeout_s = request_timeout_s
        self._guard: AttemptGuard = guard or _NoGuard()
        self._adapters = adapters
        self._providers = providers
        self._transport = transport
        self._routes = {
            name: ModelRoute(
                name,
                tuple(Target(t.provider, t.model, t.weight, t.timeout_s) for t in cfg.targets),
            )
            for name, cfg in models.items()
        }

    def targets(self, model: str) -> tuple[Target, ...]:
        route = self._routes.get(model)
        if route is None:
            raise NotFound(
                f"model '{model}' does not exist on this gateway", param="model", code="model_not_found"
            )
        return route.targets

    def adapter(self, provider: str) -> ChatAdapter:
        return self._adapters[provider]

    def _deadline(self, ctx: RequestContext, target: Target) -> Deadline:
        """The attempt's limit: its target's timeout, capped by what is left of the request's."""
        timeout = target.timeout_s or self._providers[target.provider].timeout_s
        left = self._request_timeout_s - (time.perf_counter() - ctx.started)
        if left <= 0:
            raise ProviderError(
                "timeout", "the request ran out of time (server.request_timeout_s)", provider=target.provider
            )
        first = min(timeout, left)
        return Deadline(total_s=first, first_byte_s=first, idle_s=timeout)

    async def chat(self, ctx: RequestContext) -> ChatResponse | ChunkStream:
        req = ctx.chat
        assert req is not None
        last: ProviderError | RateLimited | None = None
        for target in self.targets(ctx.requested_model):
            try:
                handle = await self._guard.admit_attempt(ctx, target.provider)
            except RateLimited as exc:  # this provider account is at its limit: try the next target
                last = exc
                continue
            attempt = Attempt(provider=target.provider, model=target.model)
            ctx.attempts.append(attempt)
            started = time.perf_counter()
            try:
                if req.stream:
                    stream = await self._open_stream(ctx, req, target, attempt)
                    stream.chunks = self._guard.meter_attempt_stream(stream.chunks, handle, ctx)
                    handle = None  # settled by the metered stream, however it ends
                    return stream
                response = await self._complete(ctx, req, target, attempt)
                self._guard.settle_attempt(handle, response.usage)
                handle = None
                ctx.provider, ctx.served_model = target.provider, target.model
                return response
            except ProviderError as exc:
                attempt.status = exc.upstream_status
                attempt.error_kind = exc.kind
                last = exc
                if not exc.retryable:
                    raise
            finally:
                if handle is not None:
                    self._guard.settle_attempt(handle, None)
                attempt.latency_ms = (time.perf_counter() - started) * 1000.0
        assert last is not None
        raise last

    async def _complete(
        self, ctx: RequestContext, req: ChatRequest, target: Target, attempt: Attempt
    ) -> ChatResponse:
        adapter = self._adapters[target.provider]
        upstream = adapter.build_request(req, target)
        resp = await self._transport.send(upstream, self._deadline(ctx, target))
        attempt.status = resp.status
        if resp.status >= 400:
            raise adapter.parse_error(resp)
        return adapter.parse_response(resp, req)

    async def _open_stream(
        self, ctx: RequestContext, req: ChatRequest, target: Target, attempt: Attempt
    ) -> ChunkStream:
        adapter = self._adapters[target.provider]
        upstream = adapter.build_request(req, target)
        stream = await self._transport.open_stream(upstream, self._deadline(ctx, target))
        attempt.status = stream.status
        try:
            if stream.status >= 400:
                body = await stream.read_all()
                raise adapter.parse_error(UpstreamResponse(stream.status, stream.headers, body))
            decoder = adapter.stream_decoder(req)
            chunks = stream.chunks()
            first, ended = await _first_chunks(chunks, decoder)
        except BaseException:
            stream.close()
            raise
        ctx.provider = target.provider
        ctx.served_model = target.model
        return ChunkStream(_relay(stream, chunks, decoder, first, ended))

    async def embed(self, ctx: RequestContext) -> EmbeddingResponse:
        req = ctx.embedding
        assert req is not None
        last: ProviderError | None = None
        for target in self.targets(ctx.requested_model):
            adapter = self._adapters[target.provider]
            if not isinstance(adapter, EmbeddingAdapter):
                continue
            attempt = Attempt(provider=target.provider, model=target.model)
            ctx.attempts.append(attempt)
            started = time.perf_counter()
            try:
                resp = await self._transport.send(
                    adapter.build_embedding_request(req, target), self._deadline(ctx, target)
                )
                attempt.status = resp.status
                if resp.status >= 400:
                    raise self._adapters[target.provider].parse_error(resp)
                result = adapter.parse_embedding_response(resp, req)
                ctx.provider, ctx.served_model = target.provider, target.model
                return result
            except ProviderError as exc:
                attempt.error_kind = exc.kind
                last = exc
                if not exc.retryable:
                    raise
            finally:
                attempt.latency_ms = (time.perf_counter() - started) * 1000.0
        if last is not None:
            raise last
        raise BadRequest(f"model '{ctx.requested_model}' does not serve embeddings", param="model")


async def _first_chunks(chunks: AsyncIterator[bytes], decoder: StreamDecoder) -> tuple[list[ChatChunk], bool]:
    """Read until the decoder yields its first chunk, so failures before it can fall back.
    Returns the chunks and whether the upstream body already ended."""
    async for data in chunks:
        out = decoder.feed(data)
        if out:
            return out, False
    return decoder.finish(), True


async def _relay(
    stream: UpstreamStream,
    chunks: AsyncIterator[bytes],
    decoder: StreamDecoder,
    first: list[ChatChunk],
    ended: bool,
) -> AsyncIterator[ChatChunk]:
    try:
        for chunk in first:
            yield chunk
        if ended:
            return
        async for data in chunks:
            for chunk in decoder.feed(data):
                yield chunk
        for chunk in decoder.finish():
            yield chunk
    finally:
        stream.close()
