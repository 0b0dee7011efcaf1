"""The cache's policy: what loads, and what is refused with its path."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.config import parse_config
from sluice.errors import ConfigError


def _policy(
    cache: dict[str, Any] | None = None, route_cache: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    route: dict[str, Any] = {"name": "r", "model": "m"}
    if route_cache is not None:
        route["cache"] = route_cache
    data: dict[str, Any] = {
        "providers": {"p": {"type": "openai"}},
        "models": {"m": {"targets": [{"provider": "p", "model": "x"}]}},
        "routes": [route],
        **extra,
    }
    if cache is not None:
        data["cache"] = cache
    return data


def test_the_example_shape_loads() -> None:
    cfg = parse_config(_policy(
        {"backend": "memory", "max_bytes": 1 << 20, "max_entry_bytes": 1 << 16, "ttl_s": 60, "version": 2,
         "semantic": {"enabled": True, "threshold": 0.95, "scope": "key", "embedder": "local"}},
        {"ttl_s": 0, "semantic": True, "threshold": 0.97, "version": 3},
    ))  # fmt: skip
    assert cfg.cache.semantic.scope == "key" and cfg.routes[0].cache is not None
    assert cfg.routes[0].cache.ttl_s == 0 and cfg.routes[0].cache.threshold == 0.97


@pytest.mark.parametrize(
    ("cache", "route_cache", "path", "words"),
    [
        ({"semantic": {"threshold": 0}}, None, "$.cache.semantic.threshold", "(0, 1]"),
        ({"semantic": {"threshold": 1.5}}, None, "$.cache.semantic.threshold", "(0, 1]"),
        ({"semantic": {"enabled": True}}, {"semantic": True, "threshold": -0.1}, "$.routes[0].cache.threshold", "(0, 1]"),
        (None, {"semantic": True}, "$.routes[0].cache.semantic", "cache.semantic.enabled"),
        ({"semantic": {"enabled": True}}, {"threshold": 0.9}, "$.routes[0].cache.threshold", "semantic: true"),
        ({"semantic": {"enabled": True, "embedder": {"model": "nope"}}}, None, "$.cache.semantic.embedder.model", "unknown embedder model"),
        ({"backend": "redis"}, None, "$.cache.backend", "redis://"),
        ({"max_bytes": 100, "max_entry_bytes": 200}, None, "$.cache.max_entry_bytes", "max_bytes"),
    ],
)  # fmt: skip
def test_refused_with_its_path(cache: Any, route_cache: Any, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_policy(cache, route_cache))
    assert path in err.value.message and words in err.value.message


@pytest.mark.parametrize(
    ("cache", "route_cache"),
    [
        ({"scope": "team"}, None),
        (None, {"ttl_s": -1}),
        (None, {"ttl": 5}),
        ({"semantic": {"scope": "org"}}, None),
    ],
)
def test_unknown_or_mistyped_keys_fail(cache: Any, route_cache: Any) -> None:
    with pytest.raises(ConfigError):
        parse_config(_policy(cache, route_cache))


def test_redis_backend_may_use_state_url() -> None:
    cfg = parse_config(_policy({"backend": "redis"}, {"ttl_s": 5}, state={"url": "redis://127.0.0.1:6379/0"}))
    assert cfg.cache.backend == "redis"
