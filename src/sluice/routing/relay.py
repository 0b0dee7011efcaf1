"""Relaying a committed upstream stream to the caller, and ending its attempt exactly once.

An iterator class rather than an async generator: a generator that never started runs no
``finally`` on ``aclose()``, and the attempt must end (in-flight count, retry budget, breaker,
provider-limit handle, billed usage) however the stream ends — completed, broken upstream, cut by the
caller, closed before its first read, or garbage-collected.

A stream that breaks after its first chunk is never retried: the error propagates to the server,
which writes an error event in the caller's dialect and never the end-of-stream marker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from sluice.errors import ProviderError, ProviderErrorKind
from sluice.providers.base import StreamDecoder
from sluice.routing.attempt import AttemptTracker
from sluice.routing.strategies import estimate_prompt_tokens
from sluice.schema.chat import ChatChunk, ChatRequest, Usage
from sluice.transport.client import UpstreamStream

_CHARS_PER_TOKEN = 4

#: Called once when the stream ends: the answer's text (if collected), usage, and error kind.
StreamEnd = Callable[[str, Usage | None, str | None], None]


class Relay:
    __slots__ = (
        "_buf",
        "_chunks",
        "_decoder",
        "_done",
        "_i",
        "_on_end",
        "_out_chars",
        "_req",
        "_stream",
        "_texts",
        "_tracker",
        "_upstream_done",
        "_usage",
    )

    def __init__(
        self,
        stream: UpstreamStream,
        chunks: AsyncIterator[bytes],
        decoder: StreamDecoder,
        first: list[ChatChunk],
        *,
        ended: bool,
        tracker: AttemptTracker,
        req: ChatRequest,
        on_end: StreamEnd | None = None,
    ) -> None:
        self._stream = stream
        self._chunks = chunks
        self._decoder = decoder
        self._buf = first
        self._i = 0
        self._upstream_done = ended
        self._tracker = tracker
        self._req = req
        self._on_end = on_end
        self._texts: list[str] | None = [] if on_end is not None else None
        self._usage: Usage | None = None
        self._out_chars = 0
        self._done = False

    def __aiter__(self) -> Relay:
        return self

    async def __anext__(self) -> ChatChunk:
        while self._i >= len(self._buf):
            if self._done:
                raise StopAsyncIteration
            try:
                await self._fill()
            except StopAsyncIteration:
                self._end(None)
                raise
            except ProviderError as exc:
                self._end(exc.kind)
                raise
            except BaseException:
                self._end(None)
                raise
        chunk = self._buf[self._i]
        self._i += 1
        self._see(chunk)
        return chunk

    async def _fill(self) -> None:
        if self._upstream_done:
            raise StopAsyncIteration
        try:
            data = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._upstream_done = True
            self._buf, self._i = self._decoder.finish(), 0  # raises if the stream was cut short
            return
        self._buf, self._i = self._decoder.feed(data), 0

    def _see(self, chunk: ChatChunk) -> None:
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            d = choice.delta
            if d.content:
                self._out_chars += len(d.content)
                if self._texts is not None:
                    self._texts.append(d.content)
            if d.tool_calls:
                for tc in d.tool_calls:
                    if tc.function is not None:
                        self._out_chars += len(tc.function.arguments or "") + len(tc.function.name or "")

    def billed(self) -> tuple[Usage | None, bool]:
        """The usage to bill: the provider's report, else an estimate of what was relayed."""
        if self._usage is not None:
            return self._usage, False
        if not self._out_chars:
            return None, False
        out = max(1, self._out_chars // _CHARS_PER_TOKEN)
        p = estimate_prompt_tokens(self._req)  # only when the provider sent no usage
        return Usage(prompt_tokens=p, completion_tokens=out, total_tokens=p + out), True

    def _end(self, kind: ProviderErrorKind | None) -> None:
        if self._done:
            return
        self._done = True
        self._stream.close()
        usage, estimated = self.billed()
        self._tracker.end(kind, usage, estimated=estimated)
        if self._on_end is not None:
            self._on_end("".join(self._texts or ()), usage, kind)

    async def aclose(self) -> None:
        if self._done:
            return
        try:
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            self._end(None)

    def __del__(self) -> None:
        if not self._done:
            self._end(None)
