"""The cache middleware over the memory store: what is kept, what is served, and to whom."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.cache.store import MemoryStore
from sluice.config.cache import CacheConfig, RouteCacheConfig, Scope, SemanticConfig
from sluice.config.routing import RouteConfig
from sluice.errors import ServiceUnavailable as UpstreamError
from sluice.pipeline.cache import ResponseCache
from sluice.schema.chat import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    Message,
    ResponseMessage,
    Usage,
)
from sluice.schema.context import ChunkStream, Principal, RequestContext, Result

ROUTES = [
    RouteConfig(name="r", cache=RouteCacheConfig(ttl_s=60)),
    RouteConfig(name="zero", cache=RouteCacheConfig(ttl_s=0)),
    RouteConfig(name="plain"),
]


class Upstream:
    """The rest of the pipeline: answers ``<tag>: <prompt>`` and counts its calls."""

    def __init__(self, finish: str = "stop", fail: bool = False) -> None:
        self.calls = 0
        self.finish = finish
        self.fail = fail

    async def __call__(self, ctx: RequestContext) -> Result:
        self.calls += 1
        assert ctx.chat is not None and ctx.principal is not None
        text = f"{ctx.principal.key_id}: {ctx.chat.messages[-1].text()}"
        ctx.served_model, ctx.provider = "gpt-4o-mini", "up"
        usage = Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)
        if ctx.chat.stream:
            return ChunkStream(self._stream(text, usage))
        msg = ResponseMessage(content=text)
        return ChatResponse(id="x", choices=[Choice(message=msg, finish_reason=self.finish)], usage=usage)

    async def _stream(self, text: str, usage: Usage) -> AsyncIterator[ChatChunk]:
        for part in (text[:3], text[3:]):
            yield ChatChunk(choices=[ChunkChoice(delta=Delta(content=part))])
            if self.fail:
                raise UpstreamError("cut")
        yield ChatChunk(choices=[ChunkChoice(delta=Delta(), finish_reason=self.finish)])
        yield ChatChunk(choices=[], usage=usage)


def make_cache(scope: Scope = "team", max_bytes: int = 1 << 20) -> ResponseCache:
    config = CacheConfig(
        max_bytes=max_bytes, max_entry_bytes=min(max_bytes, 65536), semantic=SemanticConfig(scope=scope)
    )
    return ResponseCache(config, ROUTES, MemoryStore(max_bytes), lambda m, p, u: 0.01)


def ctx_for(prompt: str, *, key: str = "k1", team: str = "t1", route: str = "r", **kw: Any) -> RequestContext:
    chat = ChatRequest(model="m", messages=[Message(role="user", content=prompt)], **kw)
    ctx = RequestContext(request_id="id", dialect="openai", endpoint="chat", presented_key=None, chat=chat)
    ctx.principal = Principal(key_id=key, team=team, user=None, name=None, models=None)
    ctx.route, ctx.routed_model, ctx.requested_model = route, "m", "m"
    return ctx


async def drain(result: Result) -> str:
    assert isinstance(result, ChunkStream)
    return "".join([c.choices[0].delta.content or "" async for c in result.chunks if c.choices])


async def settle() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_hit_after_miss_and_headers() -> None:
    cache, up = make_cache(), Upstream()
    first = ctx_for("hello")
    await cache(first, up)
    await settle()
    second = ctx_for("hello")
    hit = await cache(second, up)
    assert up.calls == 1 and isinstance(hit, ChatResponse)
    assert first.response_headers["x-sluice-cache"] == "miss"
    assert second.response_headers["x-sluice-cache"] == "hit" and second.response_headers["age"] == "0"
    assert second.cache == "exact" and second.saved_usd == 0.01 and second.served_model == "gpt-4o-mini"


async def test_denylisted_fields_share_an_entry_and_every_other_field_splits() -> None:
    cache, up = make_cache(), Upstream()
    await cache(ctx_for("q"), up)
    await settle()
    await cache(ctx_for("q", user="u2", metadata={"a": "b"}), up)
    assert up.calls == 1
    for extra in ({"temperature": 0.5}, {"seed": 1}, {"extra_body": {"new_param": True}}, {"n": 2}):
        await cache(ctx_for("q", **extra), up)
    assert up.calls == 5


async def test_route_without_cache_or_ttl_zero_or_no_store_never_stores() -> None:
    cache, up = make_cache(), Upstream()
    for route in ("plain", "zero"):
        for _ in range(2):
            await cache(ctx_for("x", route=route), up)
            await settle()
    for _ in range(2):
        c = ctx_for("y")
        c.cache_control = "no-store"
        await cache(c, up)
        await settle()
    assert up.calls == 6 and len(cache.store) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize("finish", ["content_filter", None])
async def test_filtered_or_unfinished_answers_are_never_stored(finish: str | None) -> None:
    cache, up = make_cache(), Upstream(finish=finish)  # type: ignore[arg-type]
    for stream in (False, True):
        for _ in range(2):
            result = await cache(ctx_for("z", stream=stream), up)
            if stream:
                await drain(result)
            await settle()
    assert up.calls == 4


async def test_stream_kept_only_when_it_ends_and_replayed_whole_or_streamed() -> None:
    cache, up = make_cache(), Upstream()
    streamed = await drain(await cache(ctx_for("a b", stream=True), up))
    await settle()
    whole = await cache(ctx_for("a b"), up)
    assert isinstance(whole, ChatResponse) and whole.choices[0].message.content == streamed
    again = await cache(ctx_for("a b", stream=True), up)
    assert await drain(again) == streamed and up.calls == 1


async def test_cut_stream_or_closed_early_is_not_kept() -> None:
    cache, failing = make_cache(), Upstream(fail=True)
    with pytest.raises(UpstreamError):
        await drain(await cache(ctx_for("cut me", stream=True), failing))
    up = Upstream()
    result = await cache(ctx_for("closed early", stream=True), up)
    assert isinstance(result, ChunkStream)
    await anext(result.chunks)
    await result.aclose()
    await settle()
    assert len(cache.store) == 0  # type: ignore[arg-type]


async def test_memory_store_is_bounded_by_bytes_lru() -> None:
    store = MemoryStore(1000)
    for i in range(30):
        await store.put(f"r/t/{i}", b"x" * 90, 60)
    assert store.bytes <= 1000 and await store.get("r/t/0") is None and await store.get("r/t/29") is not None
    await store.put("r/t/big", b"x" * 2000, 60)
    assert await store.get("r/t/big") is None


async def test_memory_store_expires() -> None:
    now = [0.0]
    store = MemoryStore(1000, clock=lambda: now[0])
    await store.put("r/t/a", b"1", 10)
    assert await store.get("r/t/a") == b"1"
    now[0] = 10.5
    assert await store.get("r/t/a") is None and store.bytes == 0


async def test_clear_and_stats_by_route_and_team() -> None:
    cache, up = make_cache(), Upstream()
    for team in ("t1", "t2"):
        await cache(ctx_for("p", team=team, key=team + "k"), up)
    await settle()
    assert (await cache.stats())["entries"] == 2
    assert (await cache.stats(team="t1"))["entries"] == 1
    assert await cache.clear(team="t1") == 1
    assert (await cache.stats())["entries"] == 1
    assert await cache.clear(route="r") == 1


# ------------------------------------------------------------------ isolation

TENANTS = [("k1", "t1"), ("k2", "t1"), ("k3", "t2"), ("k4", "t3")]


def _owner(scope: Scope, key: str, team: str) -> str:
    return {"key": key, "team": team, "global": ""}[scope]


@settings(max_examples=60, deadline=None)
@given(
    scope=st.sampled_from(["key", "team", "global"]),
    requests=st.lists(
        st.tuples(
            st.sampled_from(TENANTS), st.sampled_from(["hi", "hello", "Hi", "hi ", "what?"]), st.booleans()
        ),
        min_size=1,
        max_size=25,
    ),
)
def test_no_hit_ever_crosses_a_scope(scope: Scope, requests: list[tuple[tuple[str, str], str, bool]]) -> None:
    async def run() -> None:
        cache, up = make_cache(scope), Upstream()
        seen: set[tuple[str, str]] = set()
        for (key, team), prompt, stream in requests:
            ctx = ctx_for(prompt, key=key, team=team, stream=stream)
            result = await cache(ctx, up)
            text = await drain(result) if stream else _text(result)
            writer_key = text.split(":", 1)[0]
            writer_team = dict(TENANTS)[writer_key]
            if ctx.cache is not None:  # a hit: written by someone in the same scope, same prompt
                assert _owner(scope, writer_key, writer_team) == _owner(scope, key, team)
                assert text == f"{writer_key}: {prompt}", "and only for the very same prompt"
            # ...and within a scope, the same prompt always hits once it was answered.
            assert (ctx.cache is not None) == ((_owner(scope, key, team), prompt) in seen)
            seen.add((_owner(scope, key, team), prompt))
            await settle()

    asyncio.run(run())


def _text(result: Result) -> str:
    assert isinstance(result, ChatResponse)
    return result.choices[0].message.content or ""


def test_entry_codec_round_trip() -> None:
    from sluice.cache.entry import CacheEntry, decode_entry, encode_entry

    e = CacheEntry(kind="chat", body=b"{}", stored_at=1.0, expires_at=2.0)
    assert decode_entry(encode_entry(e)) == e
    assert decode_entry(b"garbage") is None
    assert msgspec.msgpack.decode(encode_entry(e))[0] == "chat"
