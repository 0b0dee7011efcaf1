"""Building the response cache at start-up: its store, its embedder, its semantic index.

Kept apart from the middleware (:mod:`sluice.pipeline.cache`): app.py calls :func:`open_cache` once,
and ``check-config`` calls :func:`check_embedder`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sluice.cache.semantic import SemanticCache
from sluice.cache.store import open_store
from sluice.config.cache import CacheConfig, EmbedderModelConfig
from sluice.config.model import Config
from sluice.config.routing import RouteConfig
from sluice.errors import ConfigError
from sluice.pipeline.accounting import Accounting
from sluice.pipeline.cache import AnswerCost, ResponseCache
from sluice.pipeline.cache_embed import Embed, UpstreamEmbedder
from sluice.pricing import PriceBook, cost
from sluice.schema.chat import Usage


def _semantic_routes(config: CacheConfig, routes: Sequence[RouteConfig]) -> bool:
    return config.semantic.enabled and any(r.cache is not None and r.cache.semantic for r in routes)


def check_embedder(config: CacheConfig, routes: Sequence[RouteConfig]) -> None:
    """At start and in check-config: what the embedder needs must be installed."""
    if not _semantic_routes(config, routes):
        return
    try:
        from sluice.cache.embedders import local_model_dir

        if config.semantic.embedder == "local":
            local_model_dir()
    except ImportError as exc:
        what = (
            exc
            if "semantic" in str(exc)
            else "the semantic cache needs NumPy: pip install 'sluice-gateway[semantic]'"
        )
        raise ConfigError(f"{what} - at `$.cache.semantic.embedder`") from None


def answer_pricer(prices: PriceBook, provider_types: Mapping[str, str]) -> AnswerCost:
    """What a cached answer would have cost: its usage at the served model's price."""

    def answer_cost(model: str | None, provider: str | None, usage: Usage | None) -> float | None:
        price = prices.lookup(model, provider_types.get(provider)) if model and provider else None
        return float(cost(usage, price)) if price is not None and usage is not None else None

    return answer_cost


async def open_cache(
    config: Config, prices: PriceBook, provider_types: Mapping[str, str], upstream: tuple[Embed, Accounting],
    previous: ResponseCache | None = None,
) -> ResponseCache:  # fmt: skip
    """The cache the policy asks for; the local embedder's model is loaded here, off the loop.
    ``upstream`` (the router's embeddings call, and accounting) serves ``embedder: {model: NAME}``.
    On a reload (``previous``) with the same ``cache:`` settings, the entries carry over: the new
    policy's cache takes the old one's store (and its local embedder's index), so the answers of
    routes whose cache key is unchanged are still served."""
    cost = answer_pricer(prices, provider_types)
    if previous is not None and previous.config == config.cache:
        semantic = previous.semantic if config.cache.semantic.embedder == "local" else None
        if semantic is None and _semantic_routes(config.cache, config.routes):
            semantic = (await _open(config.cache, config.routes, config.state.url, cost, upstream)).semantic
        carried = ResponseCache(config.cache, config.routes, previous.store, cost, semantic=semantic)
        previous.hand_over(keep_semantic=semantic is previous.semantic)
        return carried
    return await _open(config.cache, config.routes, config.state.url, cost, upstream)


async def _open(
    config: CacheConfig, routes: Sequence[RouteConfig], state_url: str, answer_cost: AnswerCost,
    upstream: tuple[Embed, Accounting],
) -> ResponseCache:  # fmt: skip
    semantic = None
    if _semantic_routes(config, routes):
        from sluice.cache.embedders import Embedder, LocalEmbedder

        chosen = config.semantic.embedder
        embedder: Embedder
        if isinstance(chosen, EmbedderModelConfig):
            embedder = UpstreamEmbedder(chosen.model, *upstream)
        else:
            local = LocalEmbedder()
            await local.load()
            embedder = local
        max_vectors = max(1000, config.max_bytes // 4096)
        feed = None
        if config.backend == "redis":
            from sluice.cache.redis_feed import RedisVectorFeed

            url = config.url or state_url
            feed = RedisVectorFeed(
                url, prefix=config.key_prefix, timeout_s=config.socket_timeout_s, max_len=max_vectors
            )
        semantic = SemanticCache(embedder, max_vectors=max_vectors, feed=feed)
    return ResponseCache(config, routes, open_store(config, state_url), answer_cost, semantic=semantic)
