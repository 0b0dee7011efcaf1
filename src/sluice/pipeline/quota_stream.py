"""A streamed answer under quota: settle at the end, stop before the budget runs out.

An iterator class rather than an async generator, because a generator that was never started runs
no ``finally`` on ``aclose()``: a client that disconnects before the first chunk would leak its
concurrency slot and reservation. Here every way out — end of stream, error, cancellation,
``aclose()``, garbage collection — settles the ticket exactly once, synchronously.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal

from sluice.limits import Limiter, Ticket
from sluice.pricing import Price
from sluice.schema.chat import ChatChunk, ChunkChoice, Delta, Usage

#: Called once at the end with the usage to settle (reported, or estimated if the stream was cut).
Finisher = Callable[[Usage, bool], None]


def estimate_chunk_tokens(chunk: ChatChunk) -> int:
    """Output tokens in a chunk, cheaply: ≈ 4 characters a token, at least 1 per non-empty delta."""
    tokens = 0
    for choice in chunk.choices:
        d = choice.delta
        chars = len(d.content or "") + len(d.refusal or "")
        if d.tool_calls:
            for tc in d.tool_calls:
                if tc.function is not None:
                    chars += len(tc.function.arguments or "") + len(tc.function.name or "")
        if chars:
            tokens += (chars + 3) // 4
    return tokens


class MeteredStream:
    """Wraps the chunk iterator of one streamed answer.

    ``room_tokens`` output tokens are covered by the budget reservation; None = no budget watch
    (max_tokens bounds the output already, or no budget applies). When the estimate passes it, the
    reservation grows by ``step_tokens`` at ``price``; if a budget has no room left the stream ends
    with ``finish_reason: "length"`` and ``on_stop`` is called with the note for the record.
    """

    __slots__ = (
        "_done",
        "_finish",
        "_inner",
        "_last",
        "_limiter",
        "_on_stop",
        "_out_tokens",
        "_price",
        "_prompt_tokens",
        "_room",
        "_step",
        "_tail",
        "_ticket",
        "_usage",
        "_want_usage",
    )

    def __init__(
        self,
        inner: AsyncIterator[ChatChunk],
        *,
        limiter: Limiter,
        ticket: Ticket,
        prompt_tokens: int,
        finish: Finisher,
        on_stop: Callable[[str], None],
        price: Price | None = None,
        room_tokens: int | None = None,
        step_tokens: int = 4096,
        want_usage: bool = False,
    ) -> None:
        self._inner = inner
        self._limiter = limiter
        self._ticket = ticket
        self._prompt_tokens = prompt_tokens
        self._finish = finish
        self._on_stop = on_stop
        self._price = price
        self._room = room_tokens
        self._step = step_tokens
        self._want_usage = want_usage
        self._out_tokens = 0
        self._usage: Usage | None = None
        self._last: ChatChunk | None = None
        self._tail: list[ChatChunk] = []
        self._done = False

    def __aiter__(self) -> MeteredStream:
        return self

    async def __anext__(self) -> ChatChunk:
        if self._tail:
            return self._tail.pop(0)
        if self._done:
            raise StopAsyncIteration
        try:
            chunk = await self._inner.__anext__()
        except StopAsyncIteration:
            self._end(cut=False)
            raise
        except BaseException:
            self._end(cut=True)
            raise
        if chunk.usage is not None:
            self._usage = chunk.usage
        self._last = chunk
        if chunk.choices:
            self._out_tokens += estimate_chunk_tokens(chunk)
            if self._room is not None and self._out_tokens > self._room and not await self._grow():
                return await self._stop(chunk)
        return chunk

    async def _grow(self) -> bool:
        assert self._room is not None
        while self._out_tokens > self._room:
            extra = self._step * self._price.output_per_token if self._price is not None else Decimal(0)
            try:
                ok = await self._limiter.extend(self._ticket, extra)
            except BaseException:
                self._end(cut=True)
                raise
            if not ok:
                return False
            self._room += self._step
        return True

    async def _stop(self, chunk: ChatChunk) -> ChatChunk:
        indexes = sorted({c.index for c in chunk.choices}) or [0]
        stop = ChatChunk(
            id=chunk.id,
            created=chunk.created,
            model=chunk.model,
            choices=[ChunkChoice(index=i, delta=Delta(), finish_reason="length") for i in indexes],
        )
        usage = self._estimated_usage()
        if self._want_usage:
            self._tail.append(
                ChatChunk(id=chunk.id, created=chunk.created, model=chunk.model, choices=[], usage=usage)
            )
        level = next((lv.label for lv in self._ticket.levels if lv.budget is not None), "a budget")
        self._on_stop(
            f"stream stopped after ~{self._out_tokens} output tokens: {level} budget has no room left"
        )
        self._end(cut=True, usage=usage)
        await self._close_inner()
        return stop

    def _estimated_usage(self) -> Usage:
        out = self._out_tokens
        return Usage(
            prompt_tokens=self._prompt_tokens, completion_tokens=out, total_tokens=self._prompt_tokens + out
        )

    def _end(self, *, cut: bool, usage: Usage | None = None) -> None:
        if self._done:
            return
        self._done = True
        if usage is None:
            usage = self._usage
        if usage is None:
            usage = self._estimated_usage()
            cut = True
        self._finish(usage, cut)

    async def _close_inner(self) -> None:
        aclose = getattr(self._inner, "aclose", None)
        if aclose is not None:
            await aclose()

    async def aclose(self) -> None:
        try:
            await self._close_inner()
        finally:
            self._end(cut=True)

    def __del__(self) -> None:
        if not self._done:
            self._end(cut=True)
