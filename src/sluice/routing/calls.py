"""What one upstream attempt does, per kind of request: a chat answer, a chat stream, embeddings.

Each call sends one request through the transport and raises :class:`ProviderError` on failure.
On success a plain call ends its :class:`AttemptTracker` itself; a stream hands it to the
:class:`Relay`, which ends it when the stream is over. A stream is committed on its first decoded
chunk: failures before it can still fall back, failures after it reach the caller as an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Protocol, TypeVar

from sluice.errors import ProviderError
from sluice.providers.base import ChatAdapter, EmbeddingAdapter, StreamDecoder, Target, upstream_request_id
from sluice.routing.attempt import AttemptTracker
from sluice.routing.relay import Relay, StreamEnd
from sluice.schema.chat import ChatChunk, ChatRequest, ChatResponse, Usage
from sluice.schema.context import ChunkStream
from sluice.schema.embeddings import EmbeddingRequest, EmbeddingResponse
from sluice.schema.upstream import UpstreamRequest, UpstreamResponse
from sluice.transport.client import Deadline, Transport

T_co = TypeVar("T_co", covariant=True)


class Call(Protocol[T_co]):
    def applies(self, target: Target) -> bool:
        """Whether this target can serve the call at all (skipped without an attempt if not)."""
        ...

    async def __call__(self, target: Target, tracker: AttemptTracker, deadline: Deadline) -> T_co: ...


class ChatCall:
    __slots__ = ("_adapters", "_req", "_transport")

    def __init__(self, adapters: Mapping[str, ChatAdapter], transport: Transport, req: ChatRequest) -> None:
        self._adapters = adapters
        self._transport = transport
        self._req = req

    def applies(self, target: Target) -> bool:
        return True

    async def __call__(self, target: Target, tracker: AttemptTracker, deadline: Deadline) -> ChatResponse:
        adapter = self._adapters[target.provider]
        resp = await self._transport.send(
            _traced(adapter.build_request(self._req, target), tracker), deadline
        )
        tracker.attempt.status = resp.status
        if resp.status >= 400:
            raise adapter.parse_error(resp)
        result = adapter.parse_response(resp, self._req)
        tracker.attempt.upstream_id = upstream_request_id(resp.headers, result.id)
        tracker.end(None, result.usage)
        return result


class StreamCall:
    __slots__ = ("_adapters", "_first_token_s", "_on_end", "_req", "_transport")

    def __init__(
        self,
        adapters: Mapping[str, ChatAdapter],
        transport: Transport,
        req: ChatRequest,
        *,
        first_token_s: float | None,
        on_end: StreamEnd | None = None,
    ) -> None:
        self._adapters = adapters
        self._transport = transport
        self._req = req
        self._first_token_s = first_token_s
        self._on_end = on_end

    def applies(self, target: Target) -> bool:
        return True

    async def __call__(self, target: Target, tracker: AttemptTracker, deadline: Deadline) -> ChunkStream:
        adapter = self._adapters[target.provider]
        stream = await self._transport.open_stream(
            _traced(adapter.build_request(self._req, target), tracker), deadline
        )
        tracker.attempt.status = stream.status
        tracker.attempt.upstream_id = upstream_request_id(stream.headers)
        limit = (
            deadline.total_s if self._first_token_s is None else min(deadline.total_s, self._first_token_s)
        )
        try:
            if stream.status >= 400:
                body = await stream.read_all()
                raise adapter.parse_error(UpstreamResponse(stream.status, stream.headers, body))
            decoder = adapter.stream_decoder(self._req)
            chunks = stream.chunks()
            try:
                async with asyncio.timeout(max(0.0, limit - tracker.elapsed_ms() / 1000.0)):
                    first, ended = await _first_chunks(chunks, decoder)
            except TimeoutError:
                raise ProviderError(
                    "timeout", f"no first token within {limit:g}s", provider=target.provider
                ) from None
        except BaseException:
            stream.close()
            raise
        tracker.commit()
        if tracker.attempt.upstream_id is None and first:
            tracker.attempt.upstream_id = first[0].id or None
        relay = Relay(
            stream, chunks, decoder, first, ended=ended, tracker=tracker,
            req=self._req, on_end=self._on_end,
        )  # fmt: skip
        return ChunkStream(relay)


class EmbedCall:
    __slots__ = ("_adapters", "_req", "_transport")

    def __init__(
        self, adapters: Mapping[str, ChatAdapter], transport: Transport, req: EmbeddingRequest
    ) -> None:
        self._adapters = adapters
        self._transport = transport
        self._req = req

    def applies(self, target: Target) -> bool:
        return isinstance(self._adapters[target.provider], EmbeddingAdapter)

    async def __call__(
        self, target: Target, tracker: AttemptTracker, deadline: Deadline
    ) -> EmbeddingResponse:
        adapter = self._adapters[target.provider]
        assert isinstance(adapter, EmbeddingAdapter)
        resp = await self._transport.send(
            _traced(adapter.build_embedding_request(self._req, target), tracker), deadline
        )
        tracker.attempt.status = resp.status
        if resp.status >= 400:
            raise self._adapters[target.provider].parse_error(resp)
        result = adapter.parse_embedding_response(resp, self._req)
        tracker.attempt.upstream_id = upstream_request_id(resp.headers)
        u = result.usage
        tracker.end(
            None, Usage(prompt_tokens=u.prompt_tokens, total_tokens=u.total_tokens or u.prompt_tokens)
        )
        return result


async def _first_chunks(chunks: AsyncIterator[bytes], decoder: StreamDecoder) -> tuple[list[ChatChunk], bool]:
    """Read until the decoder yields its first chunk, so failures before it can fall back.
    Returns the chunks and whether the upstream body already ended."""
    async for data in chunks:
        out = decoder.feed(data)
        if out:
            return out, False
    return decoder.finish(), True


def _traced(req: UpstreamRequest, tracker: AttemptTracker) -> UpstreamRequest:
    """The attempt's W3C trace context goes upstream with it (adapters share one headers dict
    between requests: it is copied, never changed)."""
    if tracker.traceparent is not None:
        req.headers = {**req.headers, "traceparent": tracker.traceparent}
    return req
