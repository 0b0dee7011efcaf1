"""Policy structs for the response cache.

Where they sit in the policy file::

    cache: CacheConfig                 backend, bounds, default ttl, version, semantic settings
    routes[i].cache: RouteCacheConfig  a route opts in; ``ttl_s: 0`` = never read, never written

Nothing is cached unless a route has a ``cache:`` block. Cross-checks (thresholds, what this build
cannot do yet) are in :func:`check_cache`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Literal

import msgspec

from sluice.errors import ConfigError

NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
Scope = Literal["key", "team", "global"]


class EmbedderModelConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An embeddings model of the policy, called through the gateway's own providers."""

    model: str


class SemanticConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = False
    #: Cosine similarity a semantic hit needs; a request may raise it, never lower it.
    threshold: float = 0.95
    #: The hard partition of every entry, exact and semantic: the key, the key's team, or everyone.
    scope: Scope = "team"
    embedder: Literal["local"] | EmbedderModelConfig = "local"


class CacheConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``cache:`` — where entries live and how big they may grow."""

    backend: Literal["memory", "redis"] = "memory"
    #: Redis URL for ``backend: redis`` (else ``state.url``).
    url: str | None = None
    #: The memory backend's bound (least recently used entries go first).
    max_bytes: PositiveInt = 256 * 1024 * 1024
    #: An answer larger than this (encoded) is not cached.
    max_entry_bytes: PositiveInt = 1024 * 1024
    #: The lifetime of an entry on routes whose ``cache:`` gives no ``ttl_s``.
    ttl_s: NonNegativeFloat = 3600.0
    #: Part of every key: bump it to invalidate every entry.
    version: NonNegativeInt = 1
    semantic: SemanticConfig = msgspec.field(default_factory=SemanticConfig)
    #: Redis socket timeout (connect and each command); a slower Redis is a miss.
    socket_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 0.25
    #: Prefix of every Redis key the cache writes (``clear`` deletes only under it).
    key_prefix: str = "sluice:cache:"


class RouteCacheConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``routes[i].cache`` — the route's answers are cached (``ttl_s: 0`` = never)."""

    #: None = ``cache.ttl_s``.
    ttl_s: NonNegativeFloat | None = None
    semantic: bool = False
    threshold: float | None = None
    #: Part of the route's keys: bump it to invalidate the route's entries.
    version: NonNegativeInt = 0


def check_cache(
    cache: CacheConfig,
    routes: list[RouteCacheConfig | None],
    state_url: str,
    models: Collection[str],
    origin: str,
) -> None:
    """What the schema cannot express. Refuses what is accepted but not enforced yet."""
    if cache.backend == "redis" and not (cache.url or state_url).startswith(("redis://", "rediss://")):
        raise ConfigError(
            f"{origin}: backend redis needs cache.url or state.url set to redis://... - at `$.cache.backend`"
        )
    sem = cache.semantic
    _check_threshold(sem.threshold, "$.cache.semantic.threshold", origin)
    if isinstance(sem.embedder, EmbedderModelConfig) and sem.embedder.model not in models:
        raise ConfigError(
            f"{origin}: unknown embedder model '{sem.embedder.model}' (an embeddings model under models:) "
            "- at `$.cache.semantic.embedder.model`"
        )
    for i, route in enumerate(routes):
        if route is None:
            continue
        path = f"$.routes[{i}].cache"
        if route.threshold is not None:
            _check_threshold(route.threshold, f"{path}.threshold", origin)
            if not route.semantic:
                raise ConfigError(
                    f"{origin}: a threshold needs 'semantic: true' on the route - at `{path}.threshold`"
                )
        if route.semantic and not sem.enabled:
            raise ConfigError(
                f"{origin}: 'semantic: true' needs cache.semantic.enabled: true - at `{path}.semantic`"
            )
    if cache.max_entry_bytes > cache.max_bytes:
        raise ConfigError(f"{origin}: must not exceed cache.max_bytes - at `$.cache.max_entry_bytes`")


def _check_threshold(value: float, path: str, origin: str) -> None:
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{origin}: a similarity threshold must be in (0, 1] - at `{path}`")
